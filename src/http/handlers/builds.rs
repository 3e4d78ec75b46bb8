//! Build and job routes: `POST /v1/builds`, `GET /v1/jobs[/{id}[/log]]`.
//! (`POST /component`, the original API's build, is in `original`.)

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;

use crate::api::{self, BuildRequest, JobAnswer, JobLinks, JobList, OkStatus};
use crate::http::caller::authorize;
use crate::http::error::ApiError;
use crate::http::jobs::start_build;
use crate::http::openapi::IdentityHeaders;
use crate::http::params::WaitQuery;
use crate::http::AppState;
use crate::jobs::LogSource;
use crate::model::Role;

/// POST /v1/builds
#[utoipa::path(
    post,
    path = "/v1/builds",
    tag = "builds",
    summary = "Build a component",
    description = "Builds a component from its git repository at the tag, and stores it. Already \
stored: 200 with `cached`. The same build already in flight is joined (single-flight).",
    params(WaitQuery, IdentityHeaders),
    request_body(content = BuildRequest, content_type = "application/json",
        example = json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9", "url": "https://git.example.org/epics/asyn.git"})),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Built (with `wait`), or already stored (`cached`)", body = api::BuildAnswer),
        (status = 202, description = "Queued, or joined; not ended yet", body = api::JobAccepted),
        (status = 400, description = "Invalid JSON, name or request", body = api::ErrorBody),
        (status = 401, description = "No or invalid API key", body = api::ErrorBody),
        (status = 403, description = "The key's role is too small (write)", body = api::ErrorBody),
        (status = 422, description = "With `wait`: the build failed", body = api::BuildFailed),
        (status = 503, description = "With `wait`: the build was interrupted", body = api::BuildFailed),
    ),
)]
pub async fn post_build(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<WaitQuery>,
    body: web::Json<BuildRequest>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Write)?;
    let key = state
        .components
        .key(&body.component, &body.tag, body.arch.as_deref())?;
    start_build(&state, &req, key, body.url.clone(), q.wait).await
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
        (status = 200, description = "The jobs", body = api::JobList),
        (status = 400, description = "Invalid query", body = api::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = api::ErrorBody),
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
    Ok(HttpResponse::Ok().json(JobList {
        status: OkStatus::Ok,
        jobs,
    }))
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
        (status = 200, description = "The job", body = api::JobAnswer),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "No such job", body = api::ErrorBody),
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
    Ok(HttpResponse::Ok().json(JobAnswer {
        status: OkStatus::Ok,
        duration_secs: job.duration_secs(),
        links: JobLinks::new(&id),
        job,
    }))
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
        (status = 400, description = "Invalid query", body = api::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "No such job", body = api::ErrorBody),
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
    let path = match jobs.log_source(&id) {
        LogSource::Local(p) => p,
        LogSource::Archived(text) => {
            // run on another replica: its latest copy (complete once it ended)
            return Ok(HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body(text));
        }
        LogSource::None => jobs.log_path(&id),
    };
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
