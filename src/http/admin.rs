//! Service routes: `/metrics`, `/readyz`, and the admin passes
//! `POST /v1/admin/gc` and `POST /v1/admin/verify`.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::caller::authorize;
use super::error::ApiError;
use super::openapi::{schema as doc, IdentityHeaders};
use super::{blocking, AppState};
use crate::auth::Role;
use crate::metrics::METRICS;

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
        (status = 200, description = "Ready", body = doc::Ready),
        (status = 503, description = "Not ready (`code` is `not_ready`)", body = doc::ErrorBody),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let c = state.components.clone();
    let floor = state.cfg.min_free_bytes;
    let check = web::block(move || -> Result<(), String> {
        c.index()
            .meta("readyz")
            .map_err(|e| format!("index: {e}"))?;
        let free = crate::store::free_bytes(c.blobs().root())
            .map_err(|e| format!("data directory: {e}"))?;
        if free < floor {
            return Err(format!(
                "the data directory's disk has {free} bytes free, below min_free_bytes ({floor}): uploads and builds are refused"
            ));
        }
        let f = c
            .blobs()
            .temp_file()
            .map_err(|e| format!("data directory: {e}"))?;
        drop(f);
        Ok(())
    })
    .await;
    match check {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "error", "errorMessage": e, "code": "not_ready"})),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "error", "errorMessage": e.to_string(), "code": "not_ready"})),
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
        (status = 200, description = "What was done", body = doc::GcAnswer),
        (status = 401, description = "No or invalid API key", body = doc::ErrorBody),
        (status = 403, description = "Not an admin key", body = doc::ErrorBody),
    ),
)]
pub async fn gc(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Admin)?;
    let c = state.components.clone();
    let (rules, grace) = (
        state.cfg.retention.clone(),
        Duration::from_secs(state.cfg.gc.grace_secs),
    );
    let report = blocking(move || crate::gc::collect(&c, &rules, grace)).await?;
    let mut v = serde_json::to_value(report).unwrap_or_default();
    v["status"] = json!("ok");
    Ok(HttpResponse::Ok().json(v))
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
        (status = 200, description = "What was found", body = doc::VerifyAnswer),
        (status = 401, description = "No or invalid API key", body = doc::ErrorBody),
        (status = 403, description = "Not an admin key", body = doc::ErrorBody),
    ),
)]
pub async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Admin)?;
    let c = state.components.clone();
    let q = state.cfg.data_dir.join("quarantine");
    let report = blocking(move || crate::gc::verify(&c, q)).await?;
    let mut v = serde_json::to_value(report).unwrap_or_default();
    v["status"] = json!("ok");
    Ok(HttpResponse::Ok().json(v))
}
