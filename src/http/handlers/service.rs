//! Service routes: `/healthz`, `/metrics`, `/readyz`, and the admin passes
//! `POST /v1/admin/gc` and `POST /v1/admin/verify`.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::{self, ErrorBody, GcAnswer, Health, OkStatus, Ready, ReadyStatus, VerifyAnswer};
use crate::http::caller::authorize;
use crate::http::error::ApiError;
use crate::http::openapi::IdentityHeaders;
use crate::http::{blocking, AppState};
use crate::metrics::METRICS;
use crate::model::Role;

/// GET /healthz
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    summary = "Liveness",
    description = "The process answers.",
    security(()),
    responses((status = 200, description = "Alive", body = api::Health)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: OkStatus::Ok,
    })
}

/// GET /metrics (Prometheus text format).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    summary = "Metrics",
    description = "Prometheus text format: requests, cache hits, bytes served, store size, jobs.",
    security(()),
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain")),
)]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let c = state.components.clone();
    let text = web::block(move || METRICS.render(&c)).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// GET /readyz: the index answers and the data directory takes writes.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    summary = "Readiness",
    description = "Ready when the index answers, the data directory takes writes and its disk \
has at least `min_free_bytes` free.",
    security(()),
    responses(
        (status = 200, description = "Ready", body = api::Ready),
        (status = 503, description = "Not ready (`code` is `not_ready`)", body = api::ErrorBody),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let c = state.components.clone();
    let check = web::block(move || c.ready()).await;
    let fail = |e: String| HttpResponse::ServiceUnavailable().json(ErrorBody::new("not_ready", e));
    match check {
        Ok(Ok(())) => HttpResponse::Ok().json(Ready {
            status: ReadyStatus::Ready,
        }),
        Ok(Err(e)) => fail(e),
        Err(e) => fail(e.to_string()),
    }
}

/// POST /v1/admin/gc: retention + garbage collection now.
#[utoipa::path(
    post,
    path = "/v1/admin/gc",
    tag = "service",
    params(IdentityHeaders),
    summary = "Garbage collection now (admin)",
    description = "Applies the retention rules, then removes the blobs no index entry refers to \
(older than `gc.grace_secs`).",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What was done", body = api::GcAnswer),
        (status = 401, description = "No API key, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "Not an admin key", body = api::ErrorBody),
    ),
)]
pub async fn gc(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Admin)?;
    let c = state.components.clone();
    let (rules, grace) = (
        state.cfg.retention.clone(),
        Duration::from_secs(state.cfg.gc.grace_secs),
    );
    let me = state.builder.jobs().replica().to_owned();
    let report = blocking(move || crate::gc::collect(&c, &rules, grace, &me)).await?;
    Ok(HttpResponse::Ok().json(GcAnswer {
        status: OkStatus::Ok,
        report,
    }))
}

/// POST /v1/admin/verify: re-hash every blob, quarantine corrupt ones.
#[utoipa::path(
    post,
    path = "/v1/admin/verify",
    tag = "service",
    params(IdentityHeaders),
    summary = "Verify the store (admin)",
    description = "Re-hashes every blob, moves corrupt ones to `quarantine/`, and lists index \
entries whose blob is missing.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What was found", body = api::VerifyAnswer),
        (status = 401, description = "No API key, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "Not an admin key", body = api::ErrorBody),
    ),
)]
pub async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Admin)?;
    let c = state.components.clone();
    let me = state.builder.jobs().replica().to_owned();
    let report = blocking(move || crate::gc::verify(&c, &me)).await?;
    Ok(HttpResponse::Ok().json(VerifyAnswer {
        status: OkStatus::Ok,
        report,
    }))
}
