//! Dependency resolution for build scripts: `POST /v1/resolve` (the
//! closure of a recipe or list in one call, or a lock verified; with
//! `build_missing=true` the missing part built as one job) and
//! `GET /v1/inputs/{key}` (has an artifact with these inputs been built?).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::api::{self, InputsAnswer, JobLinks, OkStatus, ResolveRequest};
use crate::build::closure::Roots;
use crate::http::caller::{authorize, identity};
use crate::http::error::ApiError;
use crate::http::jobs::may_build;
use crate::http::openapi::IdentityHeaders;
use crate::http::respond;
use crate::http::AppState;
use crate::model::{Requirement, Role};

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResolveQuery {
    /// Build what is missing (dependencies first, as one job; the same
    /// policy as build-on-miss, `build.on_miss`) and answer the job (202).
    #[serde(default)]
    build_missing: bool,
}

/// POST /v1/resolve
#[utoipa::path(
    post,
    path = "/v1/resolve",
    tag = "dependencies",
    summary = "Resolve a dependency closure",
    description = "The transitive closure of a recipe's dependencies (`recipe`: the text of a \
`config.yaml`) or of a list (`components`), for `arch`, in build order, every stored entry pinned \
to its blob (`blake3`, `size`, `download_url`, `blob_url`, `source`), missing ones with the \
repository they would be built from. Complete closures carry a `lock` document; given back as \
`lock`, it is verified (every entry still stored with the same blake3) instead of resolved again. \
Two tags of one component, or a cycle, answer 409 naming the chains. Missing components' recipes \
are read from their repositories at the tag.",
    params(ResolveQuery, IdentityHeaders),
    request_body(content = ResolveRequest, content_type = "application/json",
        example = json!({"recipe": "dependencies:\n  - asyn: R4.39\n", "arch": "rocky9"})),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The closure (`complete` or `incomplete`)", body = api::ResolveAnswer),
        (status = 202, description = "`build_missing`: the missing entries are being built; `job` names the job", body = api::ResolveAnswer),
        (status = 400, description = "Invalid request, recipe or name", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "`build_missing` without the right to start builds", body = api::ErrorBody),
        (status = 409, description = "Two tags of one component, a cycle, or a lock that no longer matches", body = api::ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = api::ErrorBody),
        (status = 422, description = "A missing component's recipe could not be read from its repository", body = api::ErrorBody),
        (status = 503, description = "Too many resolves are reading repositories: retry after `Retry-After` seconds", body = api::ErrorBody),
    ),
)]
pub async fn resolve(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ResolveQuery>,
    body: web::Json<ResolveRequest>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let body = body.into_inner();
    let asked = [
        body.recipe.is_some(),
        body.components.is_some(),
        body.lock.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if asked != 1 {
        return Err(ApiError::bad_request(
            "send exactly one of 'recipe' (config.yaml text), 'components' (a list of {component, tag}) or 'lock'",
        ));
    }
    let arch = state.cfg.arch_or_default(
        body.arch
            .as_deref()
            .or(body.lock.as_ref().map(|l| l.arch.as_str())),
    );
    crate::model::validate_name("architecture", &arch)?;
    let arch = arch.to_ascii_lowercase();
    let builder = state.builder.clone();
    let res = if let Some(lock) = body.lock {
        if lock.lock_version != api::LOCK_VERSION {
            return Err(ApiError::bad_request(format!(
                "lockVersion {} is not supported (this service reads version {})",
                lock.lock_version,
                api::LOCK_VERSION
            )));
        }
        crate::model::validate_name("architecture", &lock.arch)
            .map_err(|e| ApiError::bad_request(format!("lock.arch: {e}")))?;
        if lock.arch.to_ascii_lowercase() != arch {
            return Err(ApiError::bad_request(format!(
                "the lock is for {}, not {arch}",
                lock.arch
            )));
        }
        let pinned: Vec<(Requirement, String)> = lock
            .components
            .iter()
            .map(|c| {
                (
                    Requirement {
                        component: c.component.clone(),
                        tag: c.tag.clone(),
                    },
                    c.blake3.clone(),
                )
            })
            .collect();
        let (a, roots) = (arch.clone(), lock.roots);
        tokio::task::spawn_blocking(move || builder.verify_lock(&a, roots, &pinned)).await??
    } else {
        let roots = match (body.recipe, body.components) {
            (Some(text), _) => Roots::Recipe(text),
            (_, Some(list)) => Roots::List(list),
            (None, None) => return Err(ApiError::bad_request("nothing to resolve")),
        };
        let a = arch.clone();
        tokio::task::spawn_blocking(move || builder.resolve(roots, &a)).await??
    };
    let mut answer = respond::closure(&state, &req, &res);
    if q.build_missing && !res.missing().is_empty() {
        let missing = res.missing();
        let names: Vec<&str> = missing.iter().map(|e| e.key.component.as_str()).collect();
        may_build(&state, &req, "the closure has missing components", &names)?;
        let s = state.builder.submit_closure(&res, identity(&req))?;
        answer.links = Some(JobLinks::new(&s.job));
        answer.job = Some(s.job);
        return Ok(HttpResponse::Accepted().json(answer));
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// GET /v1/inputs/{key}
#[utoipa::path(
    get,
    path = "/v1/inputs/{key}",
    tag = "dependencies",
    summary = "Was this build done before?",
    description = "Whether an artifact built from exactly these inputs (a record's `inputs`: the \
blake3 of its source commit, recipe, dependencies' blobs, sandbox and builder image, and arch) \
is stored, under any tag.",
    params(("key" = String, Path, description = "The inputs key (64 hex characters).", pattern = "^[0-9a-f]{64}$")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "`found`, and the records built from these inputs", body = api::InputsAnswer),
        (status = 400, description = "Not 64 hex characters", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
    ),
)]
pub async fn inputs(
    state: web::Data<AppState>,
    req: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let key = key.into_inner().to_ascii_lowercase();
    if blake3::Hash::from_hex(&key).is_err() {
        return Err(ApiError::bad_request(
            "an inputs key is 64 hex characters (a record's `inputs`)",
        ));
    }
    let recs = state.components.by_inputs(&key)?;
    let base = respond::base_url(&state, &req);
    Ok(HttpResponse::Ok().json(InputsAnswer {
        status: OkStatus::Ok,
        found: !recs.is_empty(),
        components: recs
            .into_iter()
            .map(|r| api::ComponentRecord::new(r, &base))
            .collect(),
        inputs: key,
    }))
}
