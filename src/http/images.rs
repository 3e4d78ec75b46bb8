//! Image routes: `POST /image` and `POST /v1/images` (multipart upload, or
//! the original API's JSON naming a Dockerfile in `dockerfiles_dir`),
//! `GET /image`, `GET /v1/images[/{component}/{branch}/{arch}]`.

use std::path::PathBuf;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::io::Write;

use super::builds::answer_job;
use super::caller::{authorize, authorize_original_write, identity};
use super::error::ApiError;
use super::legacy::Params;
use super::openapi::{schema as doc, IdentityHeaders};
use super::AppState;
use crate::auth::Role;
use crate::image::{describe, ImageError, Requested};
use crate::model::ImageKey;
use crate::store::StoreError;

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        let msg = e.to_string();
        match e {
            ImageError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg)
            }
            ImageError::BadRequest(_) | ImageError::Store(StoreError::BadArchive(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", msg)
            }
            ImageError::TooLarge(_) | ImageError::Store(StoreError::TooLarge { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg)
            }
            ImageError::Store(_) | ImageError::Index(_) | ImageError::Jobs(_) => {
                ApiError::internal(msg)
            }
        }
    }
}

/// Fields of an image build request, however they came.
#[derive(Default)]
struct Form {
    fields: std::collections::HashMap<String, String>,
    dockerfile: Option<tempfile::NamedTempFile>,
    context: Option<tempfile::NamedTempFile>,
}

async fn read_multipart(state: &AppState, mut mp: Multipart) -> Result<Form, ApiError> {
    let mut form = Form::default();
    while let Some(field) = mp.next().await {
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        let limit = match name.as_str() {
            "dockerfile" => state.cfg.image.max_dockerfile_bytes,
            "context" => state.cfg.image.max_context_bytes,
            _ => 4096,
        };
        let mut tmp = state
            .components
            .blobs()
            .temp_file()
            .map_err(ApiError::internal)?;
        let mut n = 0u64;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(format!("the upload did not arrive whole: {e}"))
            })?;
            n += chunk.len() as u64;
            if n > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the field '{name}' is larger than {limit} bytes"),
                ));
            }
            tmp.write_all(&chunk).map_err(ApiError::internal)?;
        }
        match name.as_str() {
            "dockerfile" => form.dockerfile = Some(tmp),
            "context" => form.context = (n > 0).then_some(tmp),
            _ => {
                let text = std::fs::read_to_string(tmp.path()).map_err(|_| {
                    ApiError::bad_request(format!("the field '{name}' is not text"))
                })?;
                form.fields.insert(name, text.trim().to_owned());
            }
        }
    }
    Ok(form)
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BuildQuery {
    /// Wait for the build to end (up to twice `build.timeout_secs`) instead of answering 202.
    #[serde(default)]
    wait: bool,
    /// Rebuild even when unchanged, without podman's layer cache (also a form or JSON field).
    #[serde(default)]
    no_cache: bool,
}

/// POST /image and POST /v1/images.
#[utoipa::path(
    post,
    path = "/v1/images",
    tag = "images",
    summary = "Build an image",
    description = "Builds a container image from an uploaded Dockerfile (and optional context) \
with podman, and pushes it to the configured registry. An identical image (same Dockerfile and \
context) already built: 200 with `cached`. The original API's JSON naming a Dockerfile in \
`image.dockerfiles_dir` is accepted too.",
    params(BuildQuery, IdentityHeaders),
    request_body(content(
        (doc::ImageBuildForm = "multipart/form-data"),
        (doc::ImageBuildJson = "application/json"),
    )),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Built (with `wait`), or already built (`cached`)", body = doc::ImageAnswer),
        (status = 202, description = "Queued, or joined; not ended yet", body = doc::JobAccepted),
        (status = 400, description = "A missing field or file, invalid name, or an unsafe context", body = doc::ErrorBody),
        (status = 401, description = "No or invalid API key", body = doc::ErrorBody),
        (status = 403, description = "The key's role is too small (write)", body = doc::ErrorBody),
        (status = 413, description = "The Dockerfile, context or JSON body is too large", body = doc::ErrorBody),
        (status = 422, description = "With `wait`: the build failed", body = doc::BuildFailed),
        (status = 503, description = "No podman or registry available, or with `wait`: the build was interrupted", body = doc::ErrorBody),
    ),
)]
pub async fn post_image(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<BuildQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if req.path() == "/image" {
        authorize_original_write(&state, &req)?;
    } else {
        authorize(&state, &req, Role::Write)?;
    }
    let is_multipart = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (form, dockerfile_path): (Form, PathBuf) = if is_multipart {
        let mp = Multipart::new(req.headers(), payload);
        let form = read_multipart(&state, mp).await?;
        let path = form
            .dockerfile
            .as_ref()
            .map(|f| f.path().to_owned())
            .ok_or_else(|| ApiError::bad_request("the multipart body has no 'dockerfile' file"))?;
        (form, path)
    } else {
        let body = super::upload::read_small(payload, 64 << 10).await?;
        let p = Params::parse(&req, &body)?;
        let name = p.require("dockerfile")?.to_owned();
        let path = state.images.named_dockerfile(&name)?;
        let mut form = Form::default();
        for k in ["component", "branch", "architecture", "arch", "no_cache"] {
            if let Some(v) = p.get(k) {
                form.fields.insert(k.into(), v.into());
            }
        }
        form.fields.entry("component".into()).or_insert(name);
        (form, path)
    };
    let f = |k: &str| {
        form.fields
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let component =
        f("component").ok_or_else(|| ApiError::bad_request("'component' is required"))?;
    let branch = f("branch");
    if is_multipart && branch.is_none() {
        return Err(ApiError::bad_request("'branch' is required"));
    }
    let arch = state.cfg.arch_or_default(f("architecture").or(f("arch")));
    let key = ImageKey::new(component, branch, &arch)?;
    let no_cache = q.no_cache || matches!(f("no_cache"), Some("true" | "1"));
    let images = state.images.clone();
    let context = form.context.as_ref().map(|c| c.path().to_owned());
    let prepared =
        tokio::task::spawn_blocking(move || images.prepare(&dockerfile_path, context.as_deref()))
            .await??;
    drop(form);
    let images = state.images.clone();
    let (k, who) = (key.clone(), identity(&req));
    let requested =
        tokio::task::spawn_blocking(move || images.request(&k, prepared, no_cache, who)).await??;
    match requested {
        Requested::Cached(rec) => {
            crate::metrics::cache("image", true);
            let mut v = describe(&rec);
            v["status"] = json!("success");
            v["cached"] = json!(true);
            Ok(HttpResponse::Ok().json(v))
        }
        Requested::Job(s) => {
            crate::metrics::cache("image", false);
            let wait = std::time::Duration::from_secs(
                state.cfg.build.timeout_secs.saturating_mul(2).max(60),
            );
            answer_job(&state, &req, &s, q.wait.then_some(wait)).await
        }
    }
}

/// POST /image: documentation only, the route is [`post_image`].
#[utoipa::path(
    post,
    path = "/image",
    tag = "original-api",
    summary = "Build an image (original API)",
    description = "As `POST /v1/images`; the original API sends JSON naming a Dockerfile in \
`image.dockerfiles_dir` (fields from the body or the query string). Needs a write key, or a \
client in `compat.trusted_networks`.",
    params(BuildQuery, IdentityHeaders),
    request_body(content(
        (doc::ImageBuildJson = "application/json"),
        (doc::ImageBuildForm = "multipart/form-data"),
    ), example = json!({"dockerfile": "ioc-base", "branch": "main", "architecture": "rocky9"})),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "Built (with `wait`), or already built (`cached`)", body = doc::ImageAnswer),
        (status = 202, description = "Queued, or joined; not ended yet", body = doc::JobAccepted),
        (status = 400, description = "A missing field, no `image.dockerfiles_dir`, an invalid name, or an unsafe context", body = doc::ErrorBody),
        (status = 401, description = "No or invalid API key (from outside the trusted networks)", body = doc::ErrorBody),
        (status = 403, description = "The key's role is too small (write)", body = doc::ErrorBody),
        (status = 413, description = "The Dockerfile, context or JSON body is too large", body = doc::ErrorBody),
        (status = 422, description = "With `wait`: the build failed", body = doc::BuildFailed),
        (status = 503, description = "No podman or registry available, or with `wait`: the build was interrupted", body = doc::ErrorBody),
    ),
)]
#[allow(dead_code)]
fn post_image_original() {}

/// GET /image (original API): `component`, `branch`, `architecture` from a JSON body or the query.
#[utoipa::path(
    get,
    path = "/image",
    tag = "original-api",
    summary = "Look up an image (original API)",
    description = "The image built for a component, branch and architecture; fields from a JSON \
body (sent even on GET) or the query string.",
    params(
        ("component" = Option<String>, Query, description = "The component (required: here or in the JSON body)."),
        ("branch" = Option<String>, Query, description = "The branch."),
        ("architecture" = Option<String>, Query, description = "Absent or `null`: the configured `default_arch`."),
        ("arch" = Option<String>, Query, description = "Alias of `architecture`."),
    ),
    request_body(content = doc::LegacyImageRequest, content_type = "application/json",
        description = "The fields, as today's scripts send them (optional: the query string may carry them)"),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Found", body = doc::ImageAnswer),
        (status = 400, description = "Missing field, invalid JSON or name", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 404, description = "No such image", body = doc::ErrorBody),
    ),
)]
pub async fn get_image(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let body = super::upload::read_small(payload, super::upload::SMALL_BODY).await?;
    let p = Params::parse(&req, &body)?;
    let arch = state.cfg.arch_or_default(p.arch());
    let key = ImageKey::new(
        p.require("component")?,
        p.get("branch").filter(|b| !b.is_empty()),
        &arch,
    )?;
    lookup(&state, &key)
}

fn lookup(state: &AppState, key: &ImageKey) -> Result<HttpResponse, ApiError> {
    let raw = state.components.index().image_raw(key)?;
    crate::metrics::cache("image", raw.is_some());
    let Some(raw) = raw else {
        return Err(ApiError::not_found(format!("no image for {key}")));
    };
    let body = match state.image_cache.get(key, "", raw.as_bytes()) {
        Some(body) => body,
        None => {
            let mut v = describe(&raw.decode_image()?);
            v["status"] = json!("found");
            let body = bytes::Bytes::from(serde_json::to_vec(&v).map_err(ApiError::internal)?);
            state
                .image_cache
                .put(key.clone(), String::new(), raw.as_bytes(), body.clone());
            body
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// GET /v1/images/{component}/{branch}/{arch}
#[utoipa::path(
    get,
    path = "/v1/images/{component}/{branch}/{arch}",
    tag = "images",
    summary = "An image",
    description = "The image built for a component, branch and architecture.",
    params(
        ("component" = String, Path, description = "The component."),
        ("branch" = String, Path, description = "The branch (a `/` in it must be sent as `%2F`)."),
        ("arch" = String, Path, description = "The architecture."),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Found", body = doc::ImageAnswer),
        (status = 400, description = "Invalid name", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 404, description = "No such image", body = doc::ErrorBody),
    ),
)]
pub async fn get_image_rest(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let (c, b, a) = path.into_inner();
    let key = ImageKey::new(&c, Some(&b), &a)?;
    lookup(&state, &key)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only images whose component starts with this.
    #[serde(default)]
    #[param(required = false)]
    prefix: String,
    /// How many: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// GET /v1/images
#[utoipa::path(
    get,
    path = "/v1/images",
    tag = "images",
    summary = "List images",
    description = "Built images, ordered by key.",
    params(ListQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The images", body = doc::ImageList),
        (status = 400, description = "Invalid query", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
    ),
)]
pub async fn list_images(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let recs = state
        .images
        .list(&q.prefix, q.limit.unwrap_or(100).clamp(1, 1000))?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "images": recs.iter().map(describe).collect::<Vec<_>>(),
    })))
}
