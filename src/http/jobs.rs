//! Answers about jobs, shared by every route that starts or joins one:
//! 202 with the job, the final answer once it ended (success, 422 failed,
//! 503 interrupted), waiting for a job, starting a component build, and
//! build-on-miss for downloads (with its policy, `build.on_miss`).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};

use super::caller::{from_trusted_network, identity, may_write};
use super::error::ApiError;
use super::respond::view;
use super::AppState;
use crate::api::{
    BuildAnswer, BuildFailed, ErrorStatus, ImageAnswer, ImageStatus, ImageView, JobAccepted,
    JobLinks, QueuedStatus, SuccessStatus,
};
use crate::auth::Principal;
use crate::build::Submitted;
use crate::config::OnMiss;
use crate::model::{ComponentKey, Job, JobResult, JobState, Role};

/// 202 with the job.
pub fn queued(s: &Submitted) -> HttpResponse {
    HttpResponse::Accepted().json(JobAccepted {
        status: QueuedStatus::Queued,
        job: s.job.clone(),
        joined: !s.new,
        links: JobLinks::new(&s.job),
    })
}

/// The answer for a job that ended (or `None` if it has not).
fn finished(state: &AppState, req: &HttpRequest, job: &Job) -> Option<HttpResponse> {
    match job.state {
        JobState::Success => Some(match &job.result {
            Some(JobResult::Image(img)) => HttpResponse::Ok().json(ImageAnswer {
                status: ImageStatus::Success,
                cached: None,
                job: Some(job.id.clone()),
                links: Some(JobLinks::new(&job.id)),
                image: ImageView::from(img.as_ref()),
            }),
            Some(JobResult::Component(rec)) => HttpResponse::Ok().json(BuildAnswer {
                status: SuccessStatus::Success,
                cached: None,
                job: Some(job.id.clone()),
                component: Some(view(state, req, rec.as_ref().clone())),
                links: Some(JobLinks::new(&job.id)),
            }),
            None => HttpResponse::Ok().json(BuildAnswer {
                status: SuccessStatus::Success,
                cached: None,
                job: Some(job.id.clone()),
                component: None,
                links: Some(JobLinks::new(&job.id)),
            }),
        }),
        JobState::Failed | JobState::Interrupted | JobState::Cancelled => {
            let (status, code) = match job.state {
                JobState::Failed => (StatusCode::UNPROCESSABLE_ENTITY, "build_failed"),
                JobState::Cancelled => (StatusCode::CONFLICT, "cancelled"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "interrupted"),
            };
            let tail = state.builder.jobs().log_tail(&job.id, 4000);
            Some(HttpResponse::build(status).json(BuildFailed {
                status: ErrorStatus::Error,
                error_message: format!(
                    "{}\n--- end of the log ---\n{tail}",
                    job.error.as_deref().unwrap_or("the job failed"),
                ),
                code: code.into(),
                job: job.id.clone(),
                links: JobLinks::new(&job.id),
            }))
        }
        JobState::Queued | JobState::Running => None,
    }
}

/// Waits up to `wait` for the job; its final answer, or 202.
pub async fn answer(
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

/// A component build: 200 `cached` when stored, else the job (waited for
/// when `wait`). Refused (403) when the caller's key may not write the
/// component (its scope).
pub async fn start_build(
    state: &AppState,
    req: &HttpRequest,
    key: ComponentKey,
    url: Option<String>,
    wait: bool,
) -> Result<HttpResponse, ApiError> {
    may_write(req, &key.component)?;
    if let Some(rec) = state.components.lookup(&key)? {
        // a branch's record stands while the branch has not moved
        let (b, r) = (state.builder.clone(), rec.clone());
        let current = tokio::task::spawn_blocking(move || b.is_current(&r)).await?;
        if current {
            return Ok(HttpResponse::Ok().json(BuildAnswer {
                status: SuccessStatus::Success,
                cached: Some(true),
                job: None,
                component: Some(view(state, req, rec)),
                links: None,
            }));
        }
    }
    let s = state.builder.submit(&key, url, identity(req))?;
    let max = Duration::from_secs(state.cfg.build.timeout_secs.saturating_mul(4).max(60));
    answer(state, req, &s, wait.then_some(max)).await
}

/// Whether this caller may start builds of `components` by reading
/// (`build.on_miss`): else the 404 that says how to ask for a build. `what`
/// starts the message. A write key counts only for components in its scope,
/// and a key whose scope does not name them is not made good by a trusted
/// network; the caller is the one the read route authorised.
pub fn may_build(
    state: &AppState,
    req: &HttpRequest,
    what: &str,
    components: &[&str],
) -> Result<(), ApiError> {
    let (has_write_key, in_scope) = match req.extensions().get::<Principal>() {
        Some(p) => {
            let in_scope = components.iter().all(|c| p.may_write(c).is_ok());
            (p.role >= Some(Role::Write) && in_scope, in_scope)
        }
        None => (false, true),
    };
    let allowed = match state.cfg.build.on_miss {
        OnMiss::Anyone => true,
        OnMiss::Keys => has_write_key,
        OnMiss::Trusted => has_write_key || (in_scope && from_trusted_network(state, req)),
    };
    if allowed {
        return Ok(());
    }
    Err(ApiError::not_found(format!(
        "{what}: builds on a miss are started only for {} (build.on_miss): send a key with the \
         write role, or ask for the build with POST /v1/builds",
        match state.cfg.build.on_miss {
            OnMiss::Keys => "clients with a write key (whose scope names the component)",
            _ =>
                "clients with a write key (whose scope names the component) or from \
                  compat.trusted_networks",
        }
    )))
}

/// Build-on-miss for a download: `Some(response)` when the caller should
/// answer that (202 or a failure), `None` when the component is now stored.
/// Who may start it is `build.on_miss`; anyone else gets the 404 saying how
/// to ask for a build.
pub async fn build_on_miss(
    state: &AppState,
    req: &HttpRequest,
    key: &ComponentKey,
) -> Result<Option<HttpResponse>, ApiError> {
    may_build(
        state,
        req,
        &format!(
            "component {} tag {} does not exist for architecture {}",
            key.component, key.tag, key.arch
        ),
        &[&key.component],
    )?;
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
