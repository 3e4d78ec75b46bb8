//! API keys as data (admin): `POST /v1/keys` creates one (its secret shown
//! once), `GET /v1/keys` lists them (the config file's too; never a secret
//! nor a hash), `DELETE /v1/keys/{name}` revokes one on every replica.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use crate::api::{
    self, CreateKeyRequest, KeyCreated, KeyCreatedStatus, KeyList, KeyRevoked, KeyRevokedStatus,
    KeyView, OkStatus,
};
use crate::auth::NewKey;
use crate::http::caller::{authorize, identity};
use crate::http::error::ApiError;
use crate::http::openapi::IdentityHeaders;
use crate::http::AppState;
use crate::model::Role;

/// The caller, refused unless it may manage keys (an admin key without a
/// component scope).
fn key_admin(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let p = authorize(state, req, Role::Admin)?;
    state.keys.require_key_admin(&p)?;
    Ok(())
}

/// POST /v1/keys
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    summary = "Create an API key (admin)",
    description = "Makes a key with a role, an optional expiry (`expires_at` or \
`expires_in_days`) and an optional scope (`components`: the component-name patterns it may \
write; `*` stands for any run of characters). The secret is in this answer only: the service \
keeps its blake3. Needs an admin key without a scope. The key works on every replica at once.",
    params(IdentityHeaders),
    request_body(content = CreateKeyRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created: `secret` is shown this once", body = api::KeyCreated),
        (status = 400, description = "Invalid JSON, name, role, expiry or pattern; an unknown field", body = api::ErrorBody),
        (status = 401, description = "No API key, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "Not an admin key, or one with a component scope", body = api::ErrorBody),
        (status = 409, description = "A key of that name exists (created here or in the config file; revoked ones too)", body = api::ErrorBody),
    ),
)]
pub async fn create_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    key_admin(&state, &req)?;
    let b = body.into_inner();
    let new = NewKey {
        name: b.name,
        role: b.role,
        expires_at: b.expires_at,
        expires_in_days: b.expires_in_days,
        components: b.components,
    };
    let by = identity(&req);
    let st = state.clone();
    let (secret, info) = tokio::task::spawn_blocking(move || st.keys.create(new, by)).await??;
    let view = KeyView::new(info, Utc::now());
    tracing::info!(
        name = %view.name,
        role = %view.role,
        by_key = view.created_by.as_ref().and_then(|b| b.key.as_deref()).unwrap_or("-"),
        "key created"
    );
    Ok(HttpResponse::Created().json(KeyCreated {
        status: KeyCreatedStatus::Created,
        secret,
        key: view,
    }))
}

/// GET /v1/keys
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    summary = "List the API keys (admin)",
    description = "Every key: those of the config file (`source` `config`, and `generated` for \
the first-start admin key), then those created through the API, with their role, scope, \
creation, expiry, last use (to the minute) and revocation. Never a secret nor a hash.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = api::KeyList),
        (status = 401, description = "No API key, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "Not an admin key, or one with a component scope", body = api::ErrorBody),
    ),
)]
pub async fn list_keys(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    key_admin(&state, &req)?;
    let st = state.clone();
    let keys = tokio::task::spawn_blocking(move || st.keys.list()).await??;
    let now = Utc::now();
    Ok(HttpResponse::Ok().json(KeyList {
        status: OkStatus::Ok,
        keys: keys.into_iter().map(|k| KeyView::new(k, now)).collect(),
    }))
}

/// DELETE /v1/keys/{name}
#[utoipa::path(
    delete,
    path = "/v1/keys/{name}",
    tag = "keys",
    summary = "Revoke an API key (admin)",
    description = "Revokes a key created through the API, on every replica from the next \
request: it is then refused (401, saying it was revoked). The key stays listed, revoked; its \
name is not reused. Revoking it again changes nothing. Keys of the config file are revoked by \
editing the file.",
    params(
        ("name" = String, Path, description = "The key's name."),
        IdentityHeaders,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked", body = api::KeyRevoked),
        (status = 400, description = "Invalid name", body = api::ErrorBody),
        (status = 401, description = "No API key, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "Not an admin key, or one with a component scope", body = api::ErrorBody),
        (status = 404, description = "No key of that name", body = api::ErrorBody),
        (status = 409, description = "A key of the config file (edit the file), or the generated first-start key", body = api::ErrorBody),
    ),
)]
pub async fn revoke_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    key_admin(&state, &req)?;
    let name = name.into_inner();
    let by = identity(&req);
    let by_key = by.key.clone().unwrap_or_default();
    let st = state.clone();
    let info = tokio::task::spawn_blocking(move || st.keys.revoke(&name, by)).await??;
    let view = KeyView::new(info, Utc::now());
    tracing::info!(name = %view.name, by_key, "key revoked");
    Ok(HttpResponse::Ok().json(KeyRevoked {
        status: KeyRevokedStatus::Revoked,
        key: view,
    }))
}
