//! Service routes: `/metrics`, `/readyz`, and the admin passes
//! `POST /v1/admin/gc` and `POST /v1/admin/verify`.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::caller::authorize;
use super::error::ApiError;
use super::{blocking, AppState};
use crate::auth::Role;
use crate::metrics::METRICS;

/// GET /metrics (Prometheus text format).
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let c = state.components.clone();
    let text = web::block(move || METRICS.render(&c)).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// GET /readyz: the index answers and the data directory takes writes.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let c = state.components.clone();
    let check = web::block(move || -> Result<(), String> {
        c.index()
            .meta("readyz")
            .map_err(|e| format!("index: {e}"))?;
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
