//! What workers on a cluster call, each with its job token: the build's
//! spec (`GET /v1/jobs/{id}/spec`), its log lines (`POST
//! /v1/jobs/{id}/log`), the built tree (`PUT /v1/jobs/{id}/result`) or
//! the image it pushed (`PUT /v1/jobs/{id}/image`), its failure (`POST /v1/jobs/{id}/failed`); and a polling worker's claim
//! (`POST /v1/workers/claim`, with a write key). Cancelling a job
//! (`DELETE /v1/jobs/{id}`) is here too: it stops a worker's build.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::{
    self, ClaimRequest, Claimed, JobAnswer, JobLinks, OkStatus, WorkerBlob, WorkerFailure,
    WorkerSpec,
};
use crate::build::dispatch::WorkerError;
use crate::http::body;
use crate::http::caller::{authorize, bearer, identity};
use crate::http::error::ApiError;
use crate::http::openapi::IdentityHeaders;
use crate::http::respond;
use crate::http::{blocking, AppState};
use crate::model::Role;

/// The job token of the request (401 without one).
fn token(req: &HttpRequest) -> Result<String, ApiError> {
    bearer(req)
        .filter(|t| crate::jobs::token::is_job_token(t))
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route takes the job token the worker was given (Authorization: Bearer adbsjob_...)",
            )
        })
}

/// GET /v1/jobs/{id}/spec
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/spec",
    tag = "workers",
    summary = "A dispatched build's spec (job token)",
    description = "What the worker runs: for a component build (`spec`) the commit, the \
command, the sandbox, the exact dependency blobs (with where to fetch them); for an image build \
(`image`) the names, the registry and the blob holding the Dockerfile and context. Only with the \
job's own token, while it runs.",
    params(("id" = String, Path, description = "The job's id.")),
    security(("job_token" = [])),
    responses(
        (status = 200, description = "The spec", body = api::WorkerSpec),
        (status = 401, description = "No job token", body = api::ErrorBody),
        (status = 403, description = "A token of another job, or of a job that has ended", body = api::ErrorBody),
        (status = 409, description = "The build was handed over again", body = api::ErrorBody),
    ),
)]
pub async fn spec(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let t = token(&req)?;
    let base = respond::base_url(&state, &req);
    let (images, t2, i2) = (state.images.clone(), t.clone(), id.clone());
    if let Some(image) = blocking(move || images.worker_spec(&t2, &i2)).await? {
        let blobs = image
            .context
            .iter()
            .map(|c| WorkerBlob {
                component: image.component.clone(),
                tag: image.branch.clone().unwrap_or_default(),
                blake3: c.clone(),
                url: format!("{base}/v1/blobs/{c}"),
            })
            .collect();
        return Ok(HttpResponse::Ok().json(WorkerSpec {
            status: OkStatus::Ok,
            spec: None,
            image: Some(image),
            blobs,
        }));
    }
    let b = state.builder.clone();
    let spec = blocking(move || b.worker_spec(&t, &id)).await?;
    let blobs = spec
        .dependencies
        .iter()
        .map(|d| WorkerBlob {
            component: d.component.clone(),
            tag: d.tag.clone(),
            blake3: d.blake3.clone(),
            url: format!("{base}/v1/blobs/{}", d.blake3),
        })
        .collect();
    Ok(HttpResponse::Ok().json(WorkerSpec {
        status: OkStatus::Ok,
        spec: Some(spec),
        image: None,
        blobs,
    }))
}

/// POST /v1/jobs/{id}/log
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/log",
    tag = "workers",
    summary = "Append a worker's log lines (job token)",
    description = "Lines of the build's log as the worker produces them (`==> name` starts a \
step); shown live by `GET /v1/jobs/{id}/log?follow=true`. At most 1 MiB per request.",
    params(("id" = String, Path, description = "The job's id.")),
    request_body(content = String, content_type = "text/plain"),
    security(("job_token" = [])),
    responses(
        (status = 200, description = "Appended (or dropped past the log's cap)", body = api::OkStatusAnswer),
        (status = 401, description = "No job token", body = api::ErrorBody),
        (status = 403, description = "A token of another job, or of a job that has ended", body = api::ErrorBody),
        (status = 413, description = "More than 1 MiB", body = api::ErrorBody),
    ),
)]
pub async fn log(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let t = token(&req)?;
    // the token before the body: nobody else makes the service read 1 MiB
    let (jobs, t2, i2) = (state.builder.jobs().clone(), t.clone(), id.clone());
    blocking(move || jobs.check_token(&t2, &i2)).await?;
    let chunk = body::read_small(payload, 1 << 20).await?;
    let b = state.builder.clone();
    blocking(move || b.worker_log_lines(&t, &id, &chunk)).await?;
    Ok(HttpResponse::Ok().json(api::OkStatusAnswer {
        status: OkStatus::Ok,
    }))
}

/// POST /v1/jobs/{id}/failed
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/failed",
    tag = "workers",
    summary = "A worker gave up (job token)",
    description = "The build failed on the worker: the job fails with this message at once \
(without waiting for the cluster to report the worker's end).",
    params(("id" = String, Path, description = "The job's id.")),
    request_body(content = WorkerFailure, content_type = "application/json"),
    security(("job_token" = [])),
    responses(
        (status = 200, description = "Noted", body = api::OkStatusAnswer),
        (status = 401, description = "No job token", body = api::ErrorBody),
        (status = 403, description = "A token of another job, or of a job that has ended", body = api::ErrorBody),
    ),
)]
pub async fn failed(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    f: web::Json<WorkerFailure>,
) -> Result<HttpResponse, ApiError> {
    let t = token(&req)?;
    let b = state.builder.clone();
    blocking(move || b.worker_failed(&t, &id, &f.message)).await?;
    Ok(HttpResponse::Ok().json(api::OkStatusAnswer {
        status: OkStatus::Ok,
    }))
}

/// PUT /v1/jobs/{id}/result
#[utoipa::path(
    put,
    path = "/v1/jobs/{id}/result",
    tag = "workers",
    summary = "Store a dispatched build's result (job token)",
    description = "The tarball the worker built (`<tag>/...`, tar.zst): normalised like any \
upload and stored under the component, tag and arch of the job's spec, with the record the \
service composed (source, dependencies, inputs). Once per hand-over.",
    params(("id" = String, Path, description = "The job's id.")),
    request_body(content = Vec<u8>, content_type = "application/zstd"),
    security(("job_token" = [])),
    responses(
        (status = 201, description = "Stored", body = api::ComponentAnswer),
        (status = 200, description = "The same content was stored already", body = api::ComponentAnswer),
        (status = 400, description = "Not a valid tarball", body = api::ErrorBody),
        (status = 401, description = "No job token", body = api::ErrorBody),
        (status = 403, description = "A token of another job, of a job that has ended, or a result already stored", body = api::ErrorBody),
        (status = 413, description = "Larger than `max_upload_bytes`", body = api::ErrorBody),
    ),
)]
pub async fn result(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let t = token(&req)?;
    {
        // refuse a stranger before reading a large body
        let (b, images, t, id) = (
            state.builder.clone(),
            state.images.clone(),
            t.clone(),
            id.clone(),
        );
        blocking(move || {
            if images.worker_spec(&t, &id)?.is_some() {
                return Err(WorkerError::WrongKind(
                    "this job is an image build: its worker reports what it pushed with PUT \
                     /v1/jobs/{id}/image",
                ));
            }
            b.worker_spec(&t, &id)
        })
        .await?;
    }
    body::check_room(&req, &state.components)?;
    let body = body::receive(&req, payload, &state.components, state.cfg.max_upload_bytes).await?;
    let file = body.file.reopen().map_err(ApiError::internal)?;
    let raw = body.hash;
    let b = state.builder.clone();
    let stored = blocking(move || b.store_worker_result(&t, &id, file, raw)).await?;
    drop(body.file);
    tracing::info!(key = %stored.record.key(), blake3 = %stored.record.blake3, "stored a worker's result");
    Ok(respond::stored(&state, &req, stored))
}

/// PUT /v1/jobs/{id}/image
#[utoipa::path(
    put,
    path = "/v1/jobs/{id}/image",
    tag = "workers",
    summary = "Report a dispatched image build's push (job token)",
    description = "What podman made on the worker: the image id, the manifest digest it pushed \
and the size. The service asks the registry for the spec's immutable tag (or its moving tag): \
only a digest the registry names is indexed, with the names and key of the job's spec. Once per \
hand-over.",
    params(("id" = String, Path, description = "The job's id.")),
    request_body(content = crate::image::Built, content_type = "application/json"),
    security(("job_token" = [])),
    responses(
        (status = 200, description = "Indexed", body = api::ImageView),
        (status = 401, description = "No job token", body = api::ErrorBody),
        (status = 403, description = "A token of another job, of a job that has ended, or a result already stored", body = api::ErrorBody),
        (status = 409, description = "The job is not an image build, or a report is being stored", body = api::ErrorBody),
        (status = 422, description = "Not a manifest digest, or not the one the registry names for the immutable tag (or the registry cannot be read with what the service has)", body = api::ErrorBody),
        (status = 503, description = "The registry could not be asked now: report again", body = api::ErrorBody),
    ),
)]
pub async fn image(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    built: web::Json<crate::image::Built>,
) -> Result<HttpResponse, ApiError> {
    let t = token(&req)?;
    let built = built.into_inner();
    let (images, t2, i2) = (state.images.clone(), t.clone(), id.clone());
    let spec = blocking(move || images.worker_spec(&t2, &i2))
        .await?
        .ok_or(WorkerError::WrongKind(
            "this job is not an image build (or it has ended): a component build's worker \
             stores its result with PUT /v1/jobs/{id}/result",
        ))?;
    state.images.verify_pushed(&spec, &built).await?;
    let images = state.images.clone();
    let rec = blocking(move || images.store_worker_image(&t, &id, &spec, &built)).await?;
    tracing::info!(image = %rec.immutable, digest = %rec.digest, "indexed a worker's image");
    Ok(HttpResponse::Ok().json(api::ImageView::from(&rec)))
}

/// POST /v1/workers/claim
#[utoipa::path(
    post,
    path = "/v1/workers/claim",
    tag = "workers",
    summary = "Claim a build (polling worker: a key in build.worker_keys, or admin)",
    description = "For `artifact-store worker --poll`: the oldest build waiting for a polling \
worker (`executor = \"worker\"`, `[image] executor = \"worker\"`) for one of the architectures \
and of one of the kinds (`build`, `image`), with its job token; 204 when there is none.",
    params(IdentityHeaders),
    request_body(content = ClaimRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A build to run", body = api::Claimed),
        (status = 204, description = "Nothing to do"),
        (status = 401, description = "No or invalid API key", body = api::ErrorBody),
        (status = 403, description = "Not an admin key, nor one named in build.worker_keys; or a key with a component scope", body = api::ErrorBody),
    ),
)]
pub async fn claim(
    state: web::Data<AppState>,
    req: HttpRequest,
    c: web::Json<ClaimRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = authorize(&state, &req, Role::Write)?;
    if p.role != Some(Role::Admin) && !state.cfg.build.worker_keys.contains(&p.name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "key '{}' may not claim builds: name it in build.worker_keys (or use an admin key)",
                p.name
            ),
        ));
    }
    p.unscoped(
        "a polling worker builds whatever it is handed, so it needs a key without a component scope",
    )?;
    let c = c.into_inner();
    crate::model::validate_name("worker", &c.worker)?;
    if let Some(k) = c
        .kinds
        .iter()
        .find(|k| !matches!(k.as_str(), "build" | "image"))
    {
        return Err(ApiError::bad_request(format!(
            "kinds: '{k}' is not a kind of build: say \"build\" (component builds) or \"image\" (image builds)"
        )));
    }
    let b = state.builder.clone();
    let got = blocking(move || b.claim_for_worker(&c.worker, &c.arch, &c.kinds)).await?;
    Ok(match got {
        Some((job, token)) => HttpResponse::Ok().json(Claimed {
            status: OkStatus::Ok,
            job,
            token,
        }),
        None => HttpResponse::NoContent().finish(),
    })
}

/// DELETE /v1/jobs/{id}
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    summary = "Cancel a job (write key)",
    description = "A queued job ends as `cancelled` at once; a running one within a second or \
two, by the replica running it, which also cancels what it handed to a cluster (`scancel`, \
deleting the Kubernetes Job). Nothing is stored. A job that has ended is answered as it is.",
    params(("id" = String, Path, description = "The job's id."), IdentityHeaders),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Ended (cancelled now, or before)", body = api::JobAnswer),
        (status = 202, description = "Cancelling: the replica running it stops it", body = api::JobAnswer),
        (status = 401, description = "No or invalid API key", body = api::ErrorBody),
        (status = 403, description = "The key's role is too small (write), or its scope does not name the job's components", body = api::ErrorBody),
        (status = 404, description = "No such job", body = api::ErrorBody),
    ),
)]
pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let p = authorize(&state, &req, Role::Write)?;
    if !p.scope.is_all() {
        // a key with a scope cancels only jobs that write components in it
        let (jobs, i) = (state.builder.jobs().clone(), id.clone());
        if let Some(job) = blocking(move || jobs.get(&i)).await? {
            for c in job.target.components() {
                p.may_write(c)?;
            }
        }
    }
    let who = identity(&req);
    let jobs = state.builder.jobs().clone();
    let i = id.clone();
    let job = blocking(move || jobs.cancel(&i, &who))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let status = if job.state.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(HttpResponse::build(status).json(JobAnswer {
        status: OkStatus::Ok,
        duration_secs: job.duration_secs(),
        links: JobLinks::new(&id),
        job,
    }))
}
