//! Build and job routes: `POST /v1/builds`, `POST /component` (original
//! API), `GET /v1/jobs[/{id}[/log]]`, and build-on-miss for downloads.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::caller::{authorize, authorize_original_write, identity};
use super::components::{base_url, record_json};
use super::error::ApiError;
use super::legacy::Params;
use super::openapi::{schema as doc, IdentityHeaders};
use super::AppState;
use crate::auth::Role;
use crate::build::{SubmitError, Submitted};
use crate::image::describe;
use crate::jobs::{Job, JobLog, JobState};
use crate::model::{ComponentKey, ImageRecord, Record};

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(m) => ApiError::bad_request(m),
            SubmitError::Jobs(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::jobs::JobError> for ApiError {
    fn from(e: crate::jobs::JobError) -> Self {
        ApiError::internal(e)
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Wait for the build to end (up to 4 times `build.timeout_secs`) instead of answering 202.
    #[serde(default)]
    wait: bool,
}

fn links(id: &str) -> serde_json::Value {
    json!({
        "job": format!("/v1/jobs/{id}"),
        "log": format!("/v1/jobs/{id}/log"),
        "follow": format!("/v1/jobs/{id}/log?follow=true"),
    })
}

/// 202 with the job.
pub fn queued(s: &Submitted) -> HttpResponse {
    HttpResponse::Accepted().json(json!({
        "status": "queued",
        "job": s.job,
        "joined": !s.new,
        "links": links(&s.job),
    }))
}

/// The answer for a job that ended (or `None` if it has not).
fn finished(state: &AppState, req: &HttpRequest, job: &Job) -> Option<HttpResponse> {
    let tail = || JobLog::tail(&state.builder.jobs().log_path(&job.id), 4000);
    match job.state {
        JobState::Success => {
            let result = job.result.clone().unwrap_or_default();
            if let Ok(img) = serde_json::from_value::<ImageRecord>(result["image"].clone()) {
                let mut v = describe(&img);
                v["status"] = json!("success");
                v["job"] = json!(job.id);
                v["links"] = links(&job.id);
                return Some(HttpResponse::Ok().json(v));
            }
            let rec: Option<Record> = serde_json::from_value(result["component"].clone()).ok();
            Some(HttpResponse::Ok().json(json!({
                "status": "success",
                "job": job.id,
                "component": rec.map(|r| record_json(&r, &base_url(state, req))),
                "links": links(&job.id),
            })))
        }
        JobState::Failed | JobState::Interrupted => {
            let code = if job.state == JobState::Failed {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Some(HttpResponse::build(code).json(json!({
                "status": "error",
                "errorMessage": format!(
                    "{}\n--- end of the log ---\n{}",
                    job.error.as_deref().unwrap_or("the job failed"),
                    tail()
                ),
                "code": if job.state == JobState::Failed { "build_failed" } else { "interrupted" },
                "job": job.id,
                "links": links(&job.id),
            })))
        }
        JobState::Queued | JobState::Running => None,
    }
}

/// Waits up to `wait` for the job; its final answer, or 202.
pub async fn answer_job(
    state: &AppState,
    req: &HttpRequest,
    s: &Submitted,
    wait: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    if let Some(w) = wait {
        if let Some(job) = state.builder.jobs().wait(&s.job, w).await? {
            if let Some(resp) = finished(state, req, &job) {
                return Ok(resp);
            }
        }
    }
    Ok(queued(s))
}

async fn start_build(
    state: &AppState,
    req: &HttpRequest,
    key: ComponentKey,
    url: Option<String>,
    wait: bool,
) -> Result<HttpResponse, ApiError> {
    if let Some(rec) = state.components.lookup(&key)? {
        return Ok(HttpResponse::Ok().json(json!({
            "status": "success",
            "cached": true,
            "component": record_json(&rec, &base_url(state, req)),
        })));
    }
    let b = state.builder.clone();
    let who = identity(req);
    let s = b.submit(&key, url, who)?;
    let max = Duration::from_secs(state.cfg.build.timeout_secs.saturating_mul(4).max(60));
    answer_job(state, req, &s, wait.then_some(max)).await
}

/// A component to build from git.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct BuildBody {
    component: String,
    tag: String,
    /// The architecture (alias `architecture`); absent: the configured `default_arch`.
    #[serde(alias = "architecture")]
    arch: Option<String>,
    /// The git repository; may be left out when the service knows the component's repository.
    url: Option<String>,
}

/// POST /v1/builds
#[utoipa::path(
    post,
    path = "/v1/builds",
    tag = "builds",
    summary = "Build a component",
    description = "Builds a component from its git repository at the tag, and stores it. Already \
stored: 200 with `cached`. The same build already in flight is joined (single-flight).",
    params(WaitQuery, IdentityHeaders),
    request_body(content = BuildBody, content_type = "application/json",
        example = json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9", "url": "https://git.example.org/epics/asyn.git"})),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Built (with `wait`), or already stored (`cached`)", body = doc::BuildAnswer),
        (status = 202, description = "Queued, or joined; not ended yet", body = doc::JobAccepted),
        (status = 400, description = "Invalid JSON, name or request", body = doc::ErrorBody),
        (status = 401, description = "No or invalid API key", body = doc::ErrorBody),
        (status = 403, description = "The key's role is too small (write)", body = doc::ErrorBody),
        (status = 422, description = "With `wait`: the build failed", body = doc::BuildFailed),
        (status = 503, description = "With `wait`: the build was interrupted", body = doc::BuildFailed),
    ),
)]
pub async fn post_build(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<WaitQuery>,
    body: web::Json<BuildBody>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Write)?;
    let key = state
        .components
        .key(&body.component, &body.tag, body.arch.as_deref())?;
    start_build(&state, &req, key, body.url.clone(), q.wait).await
}

/// POST /component (original API): JSON `url`, `component`, `tag`, `architecture`/`arch`.
#[utoipa::path(
    post,
    path = "/component",
    tag = "original-api",
    summary = "Build a component (original API)",
    description = "As `POST /v1/builds`, with the fields from a JSON body or the query string. Needs \
a write key, or a client in `compat.trusted_networks`.",
    params(
        ("wait" = Option<String>, Query, description = "`true` or `1`: wait for the build to end instead of answering 202 (also a body field)."),
        IdentityHeaders,
    ),
    request_body(content = doc::LegacyBuildRequest, content_type = "application/json",
        example = json!({"component": "asyn", "tag": "R4.39", "architecture": "rocky9", "url": "https://git.example.org/epics/asyn.git"})),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "Built (with `wait`), or already stored (`cached`)", body = doc::BuildAnswer),
        (status = 202, description = "Queued, or joined; not ended yet", body = doc::JobAccepted),
        (status = 400, description = "Missing field, invalid JSON, name or request", body = doc::ErrorBody),
        (status = 401, description = "No or invalid API key (from outside the trusted networks)", body = doc::ErrorBody),
        (status = 403, description = "The key's role is too small (write)", body = doc::ErrorBody),
        (status = 422, description = "With `wait`: the build failed", body = doc::BuildFailed),
        (status = 503, description = "With `wait`: the build was interrupted", body = doc::BuildFailed),
    ),
)]
pub async fn post_component(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize_original_write(&state, &req)?;
    let body = super::upload::read_small(payload, super::upload::SMALL_BODY).await?;
    let p = Params::parse(&req, &body)?;
    let key = state
        .components
        .key(p.require("component")?, p.require("tag")?, p.arch())?;
    let wait = matches!(p.get("wait"), Some("true" | "1"));
    start_build(&state, &req, key, p.get("url").map(str::to_owned), wait).await
}

/// Build-on-miss for a download: `Some(response)` when the caller should
/// answer that (202 or a failure), `None` when the component is now stored.
pub async fn build_on_miss(
    state: &AppState,
    req: &HttpRequest,
    key: &ComponentKey,
) -> Result<Option<HttpResponse>, ApiError> {
    use crate::config::OnMiss;
    let has_write_key = super::caller::authorize(state, req, Role::Write).is_ok();
    let allowed = match state.cfg.build.on_miss {
        OnMiss::Anyone => true,
        OnMiss::Keys => has_write_key,
        OnMiss::Trusted => has_write_key || super::caller::from_trusted_network(state, req),
    };
    if !allowed {
        return Err(ApiError::not_found(format!(
            "component {} tag {} does not exist for architecture {}; it is built on a miss only \
             for {} (build.on_miss): send a key with the write role, or ask for the build with \
             POST /v1/builds",
            key.component,
            key.tag,
            key.arch,
            match state.cfg.build.on_miss {
                OnMiss::Keys => "clients with a write key",
                _ => "clients with a write key or from compat.trusted_networks",
            }
        )));
    }
    let Some(url) = state.builder.url_for(&key.component) else {
        return Err(ApiError::not_found(format!(
            "component {} tag {} does not exist for architecture {} (and its repository is unknown, so it cannot be built)",
            key.component, key.tag, key.arch
        )));
    };
    let s = state.builder.submit(key, Some(url), identity(req))?;
    let wait = Duration::from_secs(state.cfg.build.on_miss_wait_secs);
    let job = state.builder.jobs().wait(&s.job, wait).await?;
    match job {
        Some(j) if j.state == JobState::Success => Ok(None),
        Some(j) => Ok(Some(finished(state, req, &j).unwrap_or_else(|| queued(&s)))),
        None => Ok(Some(queued(&s))),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many: 1 to 1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// GET /v1/jobs: the newest jobs first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    summary = "List jobs",
    description = "The newest jobs first.",
    params(ListQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The jobs", body = doc::JobList),
        (status = 400, description = "Invalid query", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
    ),
)]
pub async fn list_jobs(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let jobs = state
        .builder
        .jobs()
        .list(q.limit.unwrap_or(50).clamp(1, 1000))?;
    Ok(HttpResponse::Ok().json(json!({"status": "ok", "jobs": jobs})))
}

/// GET /v1/jobs/{id}
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    summary = "A job",
    description = "A job's state, steps, and result or error.",
    params(("id" = String, Path, description = "The job's id.")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The job", body = doc::JobAnswer),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 404, description = "No such job", body = doc::ErrorBody),
    ),
)]
pub async fn get_job(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let job = state
        .builder
        .jobs()
        .get(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let duration = job.duration_secs();
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "job": job,
        "duration_secs": duration,
        "links": links(&id),
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Stream the log as it grows, until the job ends.
    #[serde(default)]
    follow: bool,
}

/// GET /v1/jobs/{id}/log; `?follow=true` streams until the job ends.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/log",
    tag = "jobs",
    summary = "A job's log",
    description = "The log so far; with `follow=true`, streamed until the job ends.",
    params(("id" = String, Path, description = "The job's id."), LogQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The log", body = String, content_type = "text/plain"),
        (status = 400, description = "Invalid query", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 404, description = "No such job", body = doc::ErrorBody),
    ),
)]
pub async fn get_log(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let jobs = state.builder.jobs().clone();
    if jobs.get(&id)?.is_none() {
        return Err(ApiError::not_found(format!("no job {id}")));
    }
    let path = jobs.log_path(&id);
    if !q.follow {
        let text = std::fs::read(&path).unwrap_or_default();
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(text));
    }
    let id = id.into_inner();
    let stream = futures_util::stream::unfold((0u64, false), move |(offset, done)| {
        let (jobs, path, id) = (jobs.clone(), path.clone(), id.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let ended = jobs
                    .get(&id)
                    .ok()
                    .flatten()
                    .is_none_or(|j| j.state.is_final());
                let chunk = read_from(&path, offset);
                if !chunk.is_empty() {
                    let n = chunk.len() as u64;
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(chunk)),
                        (offset + n, false),
                    ));
                }
                if ended {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(1 << 20).read_to_end(&mut buf);
    buf
}
