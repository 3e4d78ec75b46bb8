//! Image routes: `POST /v1/images` and `POST /image` (multipart upload, or
//! the original API's JSON naming a Dockerfile in `dockerfiles_dir`),
//! `GET /v1/images[/{component}/{branch}/{arch}]`. (`GET /image` is in
//! `original`.)

use std::io::Write;
use std::path::PathBuf;

use actix_multipart::Multipart;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::api::{self, ImageAnswer, ImageList, ImageStatus, ImageView, OkStatus};
use crate::http::body::read_small;
use crate::http::caller::{authorize, authorize_original_write, identity, may_write};
use crate::http::error::ApiError;
use crate::http::jobs;
use crate::http::openapi::IdentityHeaders;
use crate::http::params::{BuildQuery, Params};
use crate::http::respond;
use crate::http::AppState;
use crate::image::Requested;
use crate::model::{ImageKey, Role};

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
        let mut field = field.map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not a multipart/form-data form that can be read ({e}): send the \
                 fields dockerfile (a file), component, branch and arch, and context (a tarball) \
                 if the build needs one"
            ))
        })?;
        let name = field.name().unwrap_or_default().to_owned();
        let limit = match name.as_str() {
            "dockerfile" => state.cfg.image.max_dockerfile_bytes,
            "context" => state.cfg.image.max_context_bytes,
            _ => 4096,
        };
        let mut tmp = state
            .images
            .scratch()
            .temp_file()
            .map_err(|e| ApiError::io(&e))?;
        let mut n = 0u64;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(format!("the upload did not arrive whole: {e}"))
            })?;
            n += chunk.len() as u64;
            if n > limit {
                return Err(ApiError::too_large(format!(
                    "the field '{name}' is larger than {limit} bytes"
                )));
            }
            tmp.write_all(&chunk).map_err(|e| ApiError::io(&e))?;
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
        (api::ImageBuildForm = "multipart/form-data"),
        (api::ImageBuildJson = "application/json"),
    )),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Built (with `wait`), or already built (`cached`)", body = api::ImageAnswer),
        (status = 202, description = "Queued, or joined; not ended yet", body = api::JobAccepted),
        (status = 400, description = "A missing field or file, invalid name, or an unsafe context", body = api::ErrorBody),
        (status = 401, description = "No API key, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "The key's role is too small (write), or its scope does not name the component", body = api::ErrorBody),
        (status = 413, description = "The Dockerfile, context or JSON body is too large", body = api::ErrorBody),
        (status = 422, description = "With `wait`: the build failed", body = api::BuildFailed),
        (status = 503, description = "No podman or registry available, or with `wait`: the build was interrupted", body = api::ErrorBody),
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
        let body = read_small(payload, 64 << 10).await?;
        let r = Params::parse(&req, &body)?.image_build()?;
        let path = state.images.named_dockerfile(&r.dockerfile)?;
        let mut form = Form::default();
        for (k, v) in [
            ("component", &r.component),
            ("branch", &r.branch),
            ("architecture", &r.architecture),
            ("arch", &r.arch),
            ("no_cache", &r.no_cache),
        ] {
            if let Some(v) = v {
                form.fields.insert(k.into(), v.clone());
            }
        }
        form.fields
            .entry("component".into())
            .or_insert(r.dockerfile);
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
    may_write(&req, &key.component)?;
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
            Ok(HttpResponse::Ok().json(ImageAnswer {
                status: ImageStatus::Success,
                cached: Some(true),
                job: None,
                links: None,
                image: ImageView::from(rec.as_ref()),
            }))
        }
        Requested::Job(s) => {
            crate::metrics::cache("image", false);
            let wait = std::time::Duration::from_secs(
                state.cfg.build.timeout_secs.saturating_mul(2).max(60),
            );
            jobs::answer(&state, &req, &s, q.wait.then_some(wait)).await
        }
    }
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
        (status = 200, description = "Found", body = api::ImageAnswer),
        (status = 400, description = "Invalid name", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "No such image", body = api::ErrorBody),
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
    respond::image_info(&state, &key)
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
        (status = 200, description = "The images", body = api::ImageList),
        (status = 400, description = "Invalid query", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
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
    Ok(HttpResponse::Ok().json(ImageList {
        status: OkStatus::Ok,
        images: recs.iter().map(ImageView::from).collect(),
    }))
}
