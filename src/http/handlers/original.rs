//! The original API that the lab's build scripts call today, kept
//! drop-in compatible, in one place: `GET /component` (download, or the
//! record with `view=info`), `PUT /component` (publish from a shared
//! path), `POST /component` (build), `GET /image` (what to pull), and the
//! documentation of `POST /image` (routed to the image build handler, which
//! takes both forms). Fields come from a JSON body (sent even on GET) or the
//! query string, read into the types of `api::original`.
//!
//! Differences from the REST routes, on purpose: downloads default to
//! gzip (the scripts open `r:gz`), and `Accept: application/json` alone does
//! not switch to JSON (their documented curl sends it and expects the file).

use std::path::PathBuf;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::{self, ComponentAnswer, ComponentStatus};
use crate::build::closure::Roots;
use crate::components::PutRequest;
use crate::http::body::{read_small, SMALL_BODY};
use crate::http::caller::{authorize, authorize_original_write, identity, may_write};
use crate::http::error::ApiError;
use crate::http::jobs::{build_on_miss, start_build};
use crate::http::openapi::IdentityHeaders;
use crate::http::params::{arch_of, BuildQuery, Params};
use crate::http::respond::{self, parse_format, Encoding};
use crate::http::{blocking, AppState};
use crate::model::{ImageKey, Requirement, Role};

/// The original API's component fields in the query string (they may come
/// in a JSON body instead; the query string wins).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LegacyQuery {
    /// The component (required: here or in the JSON body).
    component: Option<String>,
    /// The tag (required: here or in the JSON body).
    tag: Option<String>,
    /// Absent or `null`: the configured `default_arch`.
    architecture: Option<String>,
    /// Alias of `architecture`.
    arch: Option<String>,
    /// `tar.gz` (default) or `tar.zst`.
    format: Option<String>,
    /// `info`: the record as JSON instead of the tarball; `closure`: the
    /// component's dependency closure, as `POST /v1/resolve` answers it.
    view: Option<String>,
}

/// GET /component: the tarball (gzip unless zstd is asked for), or with
/// `view=info` the record as JSON. A miss is a 404 with a JSON error.
#[utoipa::path(
    method(get, head),
    path = "/component",
    tag = "original-api",
    summary = "Download a component (original API)",
    description = "The tarball, gzip by default (the scripts open it with tarfile `r:gz`); zstd with \
`format=tar.zst` or `Accept: application/zstd` (`Accept: application/json` alone does not switch to \
JSON). `view=info` answers the record as JSON; `view=closure` answers the component's dependency \
closure (schema `ResolveAnswer`, as `POST /v1/resolve`; 409 on a conflict or a cycle). Fields come \
from a JSON body (sent even on GET) or the query string. Supports `Range` and `If-None-Match` like the REST download. A component that is \
not stored but whose repository is known is built first (202 with the job after \
`build.on_miss_wait_secs`).",
    params(
        LegacyQuery,
        ("Accept" = Option<String>, Header, description = "`application/zstd` selects zstd when `format` is absent."),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag seen before: 304 when it still matches."),
    ),
    request_body(content = api::LegacyComponentRequest, content_type = "application/json",
        description = "The fields, as today's scripts send them (optional: the query string may carry them)"),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The tarball (gzip unless zstd is asked for), or with `view=info` the record", content(
            ("application/gzip"),
            ("application/zstd"),
            (api::ComponentAnswer = "application/json"),
        ), headers(
            ("ETag" = String, description = "The blake3 of what is served, quoted"),
            ("Content-Disposition" = String, description = "`attachment; filename=\"{tag}.tar.gz\"` (or `.tar.zst`)"),
        )),
        (status = 202, description = "Not stored: a build was queued and has not ended yet", body = api::JobAccepted),
        (status = 206, description = "The asked range", content(("application/gzip"), ("application/zstd"))),
        (status = 304, description = "Not modified: `If-None-Match` matches the ETag"),
        (status = 400, description = "Missing field, invalid JSON, name or `format`", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "Not stored, and its repository is unknown", body = api::ErrorBody),
        (status = 409, description = "`view=closure`: two tags of one component, or a cycle", body = api::ErrorBody),
        (status = 416, description = "The range is outside the file", body = api::ErrorBody),
        (status = 422, description = "It was not stored, and its build failed", body = api::BuildFailed),
        (status = 503, description = "It was not stored, and its build was interrupted", body = api::BuildFailed),
    ),
)]
pub async fn get_component(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let body = read_small(payload, SMALL_BODY).await?;
    let r = Params::parse(&req, &body)?.component_request()?;
    let key = state
        .components
        .key(&r.component, &r.tag, arch_of(&r.architecture, &r.arch))?;
    if r.view.as_deref() == Some("closure") {
        let builder = state.builder.clone();
        let (roots, arch) = (
            vec![Requirement {
                component: key.component.clone(),
                tag: key.tag.clone(),
            }],
            key.arch.clone(),
        );
        let res = tokio::task::spawn_blocking(move || builder.resolve(Roots::List(roots), &arch))
            .await??;
        return Ok(HttpResponse::Ok().json(respond::closure(&state, &req, &res)));
    }
    let found = state.components.lookup(&key)?;
    crate::metrics::cache("component", found.is_some());
    let rec = match found {
        Some(r) => r,
        None => {
            if let Some(resp) = build_on_miss(&state, &req, &key).await? {
                return Ok(resp);
            }
            state.components.find(&key)?
        }
    };
    if r.view.as_deref() == Some("info") {
        return Ok(HttpResponse::Ok().json(ComponentAnswer {
            status: ComponentStatus::Found,
            component: respond::view(&state, &req, rec),
        }));
    }
    let wants_zstd = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/zstd"));
    let enc = match r.format.as_deref() {
        Some(f) => parse_format(f)?,
        None if wants_zstd => Encoding::Zstd,
        None => Encoding::Gzip,
    };
    let name = format!("{}.{}", rec.tag, enc.extension());
    respond::component(&state, &req, &rec, enc, name).await
}

/// PUT /component with `{"component", "tag", "results_tarball", "arch"?}`:
/// imports a tarball from a path under `compat.import_roots`. Needs a write
/// key, or a client in `compat.trusted_networks`.
#[utoipa::path(
    put,
    path = "/component",
    tag = "original-api",
    summary = "Publish a tarball from a shared path (original API)",
    description = "Imports a tarball (tar.gz, tar.zst or tar) from a path the service also sees, \
under one of `compat.import_roots`. Needs a write key, or a client in `compat.trusted_networks`. \
Fields come from the JSON body or the query string. Tags are immutable, as for the REST upload, \
and a tarball whose only top directory is named like another tag is refused (400 \
`wrong_top_directory`) unless `wrap` is true.",
    params(IdentityHeaders),
    request_body(content = api::LegacyPutRequest, content_type = "application/json",
        example = json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9", "results_tarball": "/mnt/builds/asyn/R4.39.tar.gz"})),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "The same content was already stored (`status` is `unchanged`)", body = api::ComponentAnswer),
        (status = 201, description = "Stored (`status` is `created`)", body = api::ComponentAnswer),
        (status = 400, description = "Missing field, invalid JSON, name or archive, an unreadable path, or a top directory named like another tag (without `wrap`)", body = api::ErrorBody),
        (status = 401, description = "No API key from outside the trusted networks, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "The key's role is too small, its scope does not name the component, or the path is not under `compat.import_roots`", body = api::ErrorBody),
        (status = 409, description = "The tag is stored with other content", body = api::ErrorBody),
        (status = 413, description = "Unpacks to more than `max_unpacked_bytes`", body = api::ErrorBody),
    ),
)]
pub async fn put_component(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize_original_write(&state, &req)?;
    let body = read_small(payload, SMALL_BODY).await?;
    let r = Params::parse(&req, &body)?.put_request()?;
    let key = state
        .components
        .key(&r.component, &r.tag, arch_of(&r.architecture, &r.arch))?;
    may_write(&req, &key.component)?;
    let path = PathBuf::from(&r.results_tarball);
    let wrap = match r.wrap.as_deref() {
        None | Some("false" | "0" | "") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "wrap is {other:?}: expected true or false"
            )))
        }
    };
    let put_req = PutRequest {
        who: identity(&req),
        ..Default::default()
    };
    let c = state.components.clone();
    let stored = blocking(move || c.import_path(&key, &path, put_req, wrap)).await?;
    Ok(respond::stored(&state, &req, stored))
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
    request_body(content = api::LegacyBuildRequest, content_type = "application/json",
        example = json!({"component": "asyn", "tag": "R4.39", "architecture": "rocky9", "url": "https://git.example.org/epics/asyn.git"})),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "Built (with `wait`), or already stored (`cached`)", body = api::BuildAnswer),
        (status = 202, description = "Queued, or joined; not ended yet", body = api::JobAccepted),
        (status = 400, description = "Missing field, invalid JSON, name or request", body = api::ErrorBody),
        (status = 401, description = "No API key from outside the trusted networks, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "The key's role is too small (write), or its scope does not name the component", body = api::ErrorBody),
        (status = 422, description = "With `wait`: the build failed", body = api::BuildFailed),
        (status = 503, description = "With `wait`: the build was interrupted", body = api::BuildFailed),
    ),
)]
pub async fn post_component(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize_original_write(&state, &req)?;
    let body = read_small(payload, SMALL_BODY).await?;
    let r = Params::parse(&req, &body)?.build_request()?;
    let key = state
        .components
        .key(&r.component, &r.tag, arch_of(&r.architecture, &r.arch))?;
    let wait = matches!(r.wait.as_deref(), Some("true" | "1"));
    start_build(&state, &req, key, r.url, wait).await
}

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
    request_body(content = api::LegacyImageRequest, content_type = "application/json",
        description = "The fields, as today's scripts send them (optional: the query string may carry them)"),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Found", body = api::ImageAnswer),
        (status = 400, description = "Missing field, invalid JSON or name", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "No such image", body = api::ErrorBody),
    ),
)]
pub async fn get_image(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let body = read_small(payload, SMALL_BODY).await?;
    let r = Params::parse(&req, &body)?.image_request()?;
    let arch = state.cfg.arch_or_default(arch_of(&r.architecture, &r.arch));
    let key = ImageKey::new(&r.component, r.branch.as_deref(), &arch)?;
    respond::image_info(&state, &key)
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
        (api::ImageBuildJson = "application/json"),
        (api::ImageBuildForm = "multipart/form-data"),
    ), example = json!({"dockerfile": "ioc-base", "branch": "main", "architecture": "rocky9"})),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "Built (with `wait`), or already built (`cached`)", body = api::ImageAnswer),
        (status = 202, description = "Queued, or joined; not ended yet", body = api::JobAccepted),
        (status = 400, description = "A missing field, no `image.dockerfiles_dir`, an invalid name, or an unsafe context", body = api::ErrorBody),
        (status = 401, description = "No API key from outside the trusted networks, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "The key's role is too small (write), or its scope does not name the component", body = api::ErrorBody),
        (status = 413, description = "The Dockerfile, context or JSON body is too large", body = api::ErrorBody),
        (status = 422, description = "With `wait`: the build failed", body = api::BuildFailed),
        (status = 503, description = "No podman or registry available, or with `wait`: the build was interrupted", body = api::ErrorBody),
    ),
)]
#[allow(dead_code)]
fn post_image_original() {}
