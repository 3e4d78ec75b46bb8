//! REST handlers for components: `/v1/components/...` and `/v1/blobs/...`.
//! Thin: extract, call [`crate::components::Components`], answer.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::{
    self, ComponentList, ComponentVersions, DeletedAnswer, DeletedStatus, MissingAnswer,
    MissingRequest, OkStatus,
};
use crate::components::PutRequest;
use crate::http::body;
use crate::http::caller::{authorize, identity, may_write};
use crate::http::error::ApiError;
use crate::http::jobs::{self, build_on_miss};
use crate::http::openapi::IdentityHeaders;
use crate::http::respond::{self, parse_format, Encoding};
use crate::http::{blocking, AppState};
use crate::model::{ComponentKey, Role};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The component, e.g. `asyn`.
    component: String,
    /// The tag, e.g. `R4.39`.
    tag: String,
    /// The architecture, e.g. `rocky9` (case-insensitive).
    arch: String,
}

#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// `tar.zst` (default; also `zst`, `zstd`) or `tar.gz` (also `gz`, `gzip`, `tgz`).
    format: Option<String>,
    /// `missing`: build the component when it is not stored (and its URL is
    /// known); `never` (default): answer 404.
    build: Option<String>,
}

fn key_of(state: &AppState, p: &KeyPath) -> Result<ComponentKey, ApiError> {
    Ok(state.components.key(&p.component, &p.tag, Some(&p.arch))?)
}

/// GET/HEAD /v1/components/{component}/{tag}/{arch}
#[utoipa::path(
    method(get, head),
    path = "/v1/components/{component}/{tag}/{arch}",
    tag = "components",
    summary = "Download a component",
    description = "The stored tarball, zstd unless `format=tar.gz`. Supports `Range` (one range), \
`If-None-Match` and `If-Range`; the ETag is the blob's blake3. HEAD checks for a cache hit without \
the body. With `build=missing` a component that is not stored is built from its repository first: \
the answer waits up to `build.on_miss_wait_secs`, then is 202 with the job.",
    params(
        KeyPath,
        DownloadQuery,
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag seen before: 304 when it still matches."),
        ("If-Range" = Option<String>, Header, description = "Honour `Range` only while the ETag is this one."),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The tarball", content(("application/zstd"), ("application/gzip")), headers(
            ("ETag" = String, description = "The blake3 of what is served, quoted"),
            ("Content-Disposition" = String, description = "`attachment; filename=\"{component}-{tag}-{arch}.tar.zst\"` (or `.tar.gz`)"),
            ("Accept-Ranges" = String, description = "`bytes`"),
            ("Cache-Control" = String, description = "`no-cache`: revalidate with If-None-Match"),
        )),
        (status = 202, description = "`build=missing`: the build was queued and has not ended yet", body = api::JobAccepted),
        (status = 206, description = "The asked range", content(("application/zstd"), ("application/gzip")), headers(
            ("Content-Range" = String, description = "`bytes first-last/size`"),
        )),
        (status = 304, description = "Not modified: `If-None-Match` matches the ETag"),
        (status = 400, description = "Invalid name, `format` or `build`", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "Not stored (and not buildable with `build=missing`)", body = api::ErrorBody),
        (status = 416, description = "The range is outside the file", body = api::ErrorBody, headers(
            ("Content-Range" = String, description = "`bytes */size`"),
        )),
        (status = 422, description = "`build=missing`: the build failed", body = api::BuildFailed),
        (status = 503, description = "`build=missing`: the build was interrupted", body = api::BuildFailed),
    ),
)]
pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<KeyPath>,
    q: web::Query<DownloadQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let key = key_of(&state, &path)?;
    let enc = q
        .format
        .as_deref()
        .map(parse_format)
        .transpose()?
        .unwrap_or(Encoding::Zstd);
    match q.build.as_deref() {
        None | Some("never") => {}
        Some("missing") => {
            if !state.components.contains(&key)? {
                if let Some(resp) = build_on_miss(&state, &req, &key).await? {
                    return Ok(resp);
                }
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "build={other}: expected 'missing' or 'never'"
            )))
        }
    }
    let found = state.components.find(&key);
    crate::metrics::cache("component", found.is_ok());
    let rec = found?;
    let name = format!(
        "{}-{}-{}.{}",
        rec.component,
        rec.tag,
        rec.arch,
        enc.extension()
    );
    respond::component(&state, &req, &rec, enc, name).await
}

/// GET /v1/components/{component}/{tag}/{arch}/info
#[utoipa::path(
    get,
    path = "/v1/components/{component}/{tag}/{arch}/info",
    tag = "components",
    summary = "A component's record",
    description = "The record of a stored component, with its links.",
    params(KeyPath),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Found (`status` is `found`)", body = api::ComponentAnswer),
        (status = 400, description = "Invalid name", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "Not stored", body = api::ErrorBody),
    ),
)]
pub async fn info(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<KeyPath>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let key = key_of(&state, &path)?;
    respond::component_info(&state, &req, &key)
}

#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// Replace a tag stored with other content (admin key only).
    #[serde(default)]
    overwrite: bool,
    /// Store a tarball whose only top directory is named like another tag
    /// (`R4.39/` uploaded as `R4.40`) under `<tag>/` anyway; without it such
    /// an upload is refused (400 `wrong_top_directory`).
    #[serde(default)]
    wrap: bool,
}

/// PUT /v1/components/{component}/{tag}/{arch}
#[utoipa::path(
    put,
    path = "/v1/components/{component}/{tag}/{arch}",
    tag = "components",
    summary = "Upload a component",
    description = "Stores a tarball (tar.zst, tar.gz or plain tar), normalised to the canonical \
tar.zst: sorted entries, owner 0:0, a single top-level directory named after the tag. Tags are \
immutable: the same content again is 200 `unchanged`, other content is 409 unless an admin adds \
`overwrite=true`. A tarball whose only top-level entry is the tag's directory is kept as it is; \
any other layout goes under `<tag>/`, except a single top directory named like another tag \
(`R4.39/` uploaded as `R4.40`: a stored tag of the component, or the tag's letters then a digit), \
refused with 400 `wrong_top_directory` unless `wrap=true`. Archives with absolute paths, `..`, links pointing outside or device files are \
refused (400) and nothing is stored. With an empty body and `X-Checksum-Blake3`, the blob already \
stored under that hash is deployed under this key (checksum deploy).",
    params(
        KeyPath,
        PutQuery,
        ("X-Checksum-Blake3" = Option<String>, Header, description = "blake3 (64 hex) of the body as sent: \
checked (400 on mismatch); with an empty body, the stored blob to deploy."),
        IdentityHeaders,
    ),
    request_body(
        description = "The tarball (tar.zst, tar.gz or tar); empty for a checksum deploy",
        content(("application/octet-stream"), ("application/zstd"), ("application/gzip"), ("application/x-tar")),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The same content was already stored (`status` is `unchanged`)", body = api::ComponentAnswer),
        (status = 201, description = "Stored (`status` is `created`)", body = api::ComponentAnswer),
        (status = 400, description = "Invalid name or archive, checksum mismatch, an empty body without `X-Checksum-Blake3`, or a top directory named like another tag (without `wrap`)", body = api::ErrorBody),
        (status = 401, description = "No API key, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "The key's role is too small (write; admin for `overwrite`), or its scope does not name the component", body = api::ErrorBody),
        (status = 404, description = "Checksum deploy: no blob with that hash", body = api::ErrorBody),
        (status = 409, description = "The tag is stored with other content", body = api::ErrorBody),
        (status = 413, description = "Larger than `max_upload_bytes` (or unpacks to more than `max_unpacked_bytes`)", body = api::ErrorBody),
    ),
)]
pub async fn put(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<KeyPath>,
    q: web::Query<PutQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let needed = if q.overwrite {
        Role::Admin
    } else {
        Role::Write
    };
    let who = authorize(&state, &req, needed)?;
    let key = key_of(&state, &path)?;
    may_write(&req, &key.component)?;
    let expected = match req.headers().get("x-checksum-blake3") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| blake3::Hash::from_hex(s.trim()).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("X-Checksum-Blake3 must be 64 hex characters")
                })?,
        ),
    };
    body::check_room(&req, &state.components)?;
    let body = body::receive(&req, payload, &state.components, state.cfg.max_upload_bytes).await?;
    let put_req = PutRequest {
        who: identity(&req),
        overwrite: q.overwrite,
        ..Default::default()
    };
    let c = state.components.clone();
    let k = key.clone();
    let stored = if body.size == 0 {
        let hash = expected.ok_or_else(|| {
            ApiError::bad_request(
                "the body is empty: send a tarball (or X-Checksum-Blake3 of a stored one)",
            )
        })?;
        blocking(move || c.put_existing(&k, hash, put_req)).await?
    } else {
        let file = body.file.reopen().map_err(ApiError::internal)?;
        let raw = body.hash;
        let wrap = q.wrap;
        let stored = blocking(move || c.put_upload(&k, file, raw, expected, put_req, wrap)).await?;
        drop(body.file);
        stored
    };
    tracing::info!(key = %key, blake3 = %stored.record.blake3, created = stored.created, by = %who.name, "stored");
    Ok(respond::stored(&state, &req, stored))
}

/// POST /v1/components/{component}/{tag}/{arch}/rebuild (admin)
#[utoipa::path(
    post,
    path = "/v1/components/{component}/{tag}/{arch}/rebuild",
    tag = "components",
    summary = "Check that a build is reproducible (admin)",
    description = "Rebuilds a component built by the service from the same inputs (its commit, \
exactly the dependency blobs it used, the same sandbox) without storing the result, and records \
in its record (`reproducible`) whether the blake3 matched. Answers the job (202; with `wait`, \
when it ends).",
    params(KeyPath, crate::http::params::WaitQuery, IdentityHeaders),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "With `wait`: the rebuild ended; `component.reproducible` says whether it matched", body = api::BuildAnswer),
        (status = 202, description = "Queued, or joined", body = api::JobAccepted),
        (status = 400, description = "Not stored, or not built by the service", body = api::ErrorBody),
        (status = 401, description = "No API key, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "Not an admin key, or its scope does not name the component", body = api::ErrorBody),
        (status = 422, description = "With `wait`: the rebuild failed", body = api::BuildFailed),
    ),
)]
pub async fn rebuild(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<KeyPath>,
    q: web::Query<crate::http::params::WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Admin)?;
    let key = key_of(&state, &path)?;
    may_write(&req, &key.component)?;
    let s = state.builder.submit_rebuild(&key, identity(&req))?;
    let max =
        std::time::Duration::from_secs(state.cfg.build.timeout_secs.saturating_mul(4).max(60));
    jobs::answer(&state, &req, &s, q.wait.then_some(max)).await
}

/// DELETE /v1/components/{component}/{tag}/{arch} (admin): drops the index
/// entry; the blob stays until garbage collection.
#[utoipa::path(
    delete,
    path = "/v1/components/{component}/{tag}/{arch}",
    tag = "components",
    summary = "Delete a component (admin)",
    description = "Drops the index entry; the blob stays until garbage collection.",
    params(KeyPath, IdentityHeaders),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted: the record that was dropped", body = api::DeletedAnswer),
        (status = 400, description = "Invalid name", body = api::ErrorBody),
        (status = 401, description = "No API key, or an invalid, expired or revoked one", body = api::ErrorBody),
        (status = 403, description = "Not an admin key, or its scope does not name the component", body = api::ErrorBody),
        (status = 404, description = "Not stored", body = api::ErrorBody),
    ),
)]
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<KeyPath>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Admin)?;
    let key = key_of(&state, &path)?;
    may_write(&req, &key.component)?;
    let c = state.components.clone();
    let k = key.clone();
    let rec = blocking(move || c.delete(&k)).await?;
    let who = identity(&req);
    tracing::info!(
        key = %key,
        blake3 = %rec.blake3,
        by_key = who.key.as_deref().unwrap_or("-"),
        linux_user = who.linux_username.as_deref().unwrap_or("-"),
        github_user = who.github_username.as_deref().unwrap_or("-"),
        "deleted"
    );
    Ok(HttpResponse::Ok().json(DeletedAnswer {
        status: DeletedStatus::Deleted,
        component: rec,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only components whose name starts with this.
    #[serde(default)]
    #[param(required = false)]
    prefix: String,
    /// Search: words (separated by spaces) that `component/tag/arch` must
    /// all contain, case aside (`asyn rocky9`, `R4.3`).
    #[serde(default)]
    #[param(required = false)]
    q: String,
    /// `component/tag/arch`: start after this one (the previous page's `next`).
    after: Option<String>,
    /// Page size: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Also count what matches over every page (`count`: records and
    /// distinct components); costs a pass over the matching keys.
    #[serde(default)]
    count: bool,
}

const MAX_PAGE: usize = 1000;
/// At most this many search words, each at most `MAX_WORD` bytes.
const MAX_WORDS: usize = 8;
const MAX_WORD: usize = 128;

/// GET /v1/components?prefix=&after=component/tag/arch&limit=
#[utoipa::path(
    get,
    path = "/v1/components",
    tag = "components",
    summary = "List and search components",
    description = "A page of stored components (one record per component, tag and arch), ordered \
by component/tag/arch; follow `next` with `after`. `prefix` keeps the components whose name \
starts with it, `q` the records whose `component/tag/arch` contains each of its words (case \
aside); `count=true` adds how many records and distinct components match in all.",
    params(ListQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page", body = api::ComponentList),
        (status = 400, description = "Invalid `after`, `limit`, `count` or `q` (more than 8 words, or a word over 128 bytes)", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
    ),
)]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let after = match &q.after {
        None => None,
        Some(a) => {
            let parts: Vec<&str> = a.split('/').collect();
            match parts.as_slice() {
                [c, t, ar] => Some(ComponentKey::new(c, t, ar)?),
                _ => return Err(ApiError::bad_request("after must be component/tag/arch")),
            }
        }
    };
    let words: Vec<String> =
        q.q.split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
    if words.len() > MAX_WORDS || words.iter().any(|w| w.len() > MAX_WORD) {
        return Err(ApiError::bad_request(format!(
            "q holds at most {MAX_WORDS} words of at most {MAX_WORD} bytes each"
        )));
    }
    let (c, prefix, want_count) = (state.components.clone(), q.prefix.clone(), q.count);
    let (recs, count) = blocking(move || {
        let recs = if words.is_empty() {
            c.list(&prefix, after.as_ref(), limit)?
        } else {
            c.search(&prefix, &words, after.as_ref(), limit)?
        };
        let count = want_count.then(|| c.count(&prefix, &words)).transpose()?;
        Ok::<_, crate::components::ComponentError>((recs, count))
    })
    .await?;
    let base = respond::base_url(&state, &req);
    let next = (recs.len() == limit)
        .then(|| recs.last().map(|r| r.key().display_path()))
        .flatten();
    Ok(HttpResponse::Ok().json(ComponentList {
        status: OkStatus::Ok,
        components: recs
            .into_iter()
            .map(|r| api::ComponentRecord::new(r, &base))
            .collect(),
        next,
        count: count.map(|n| api::ListCount {
            records: n.records,
            components: n.components,
        }),
    }))
}

/// GET /v1/components/{component}: every tag and arch of one component.
#[utoipa::path(
    get,
    path = "/v1/components/{component}",
    tag = "components",
    summary = "Every version of a component",
    description = "Every stored tag and architecture of one component.",
    params(("component" = String, Path, description = "The component, e.g. `asyn`.")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Its versions", body = api::ComponentVersions),
        (status = 400, description = "Invalid name", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "No stored version", body = api::ErrorBody),
    ),
)]
pub async fn versions(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let recs = state.components.versions(&path)?;
    if recs.is_empty() {
        return Err(ApiError::not_found(format!(
            "component {path} has no stored versions"
        )));
    }
    let base = respond::base_url(&state, &req);
    Ok(HttpResponse::Ok().json(ComponentVersions {
        status: OkStatus::Ok,
        component: path.into_inner(),
        versions: recs
            .into_iter()
            .map(|r| api::ComponentRecord::new(r, &base))
            .collect(),
    }))
}

const MAX_MISSING: usize = 10_000;

/// POST /v1/components/missing: which of these are not stored.
#[utoipa::path(
    post,
    path = "/v1/components/missing",
    tag = "components",
    summary = "Which of these are not stored",
    description = "One request for a whole dependency tree (at most 10000 components).",
    request_body(content = MissingRequest, content_type = "application/json",
        example = json!({"components": [{"component": "asyn", "tag": "R4.39", "arch": "rocky9"}, {"component": "epics-base", "tag": "R7.0.8", "arch": "rocky9"}]})),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The ones not stored", body = api::MissingAnswer),
        (status = 400, description = "Invalid JSON or name", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 413, description = "More than 10000 components", body = api::ErrorBody),
    ),
)]
pub async fn missing(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<MissingRequest>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let items = body.items();
    if items.len() > MAX_MISSING {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("at most {MAX_MISSING} components per request"),
        ));
    }
    let keys = items
        .iter()
        .map(|i| {
            state
                .components
                .key(&i.component, &i.tag, i.arch.as_deref())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let missing = state.components.missing(&keys)?;
    let base = respond::base_url(&state, &req);
    let mut same_inputs = Vec::new();
    for (item, key) in items.iter().zip(&keys) {
        let Some(inputs) = item.inputs.as_deref().filter(|_| missing.contains(key)) else {
            continue;
        };
        if let Some(rec) = state.components.by_inputs(inputs)?.into_iter().next() {
            same_inputs.push(api::SameInputs {
                component: key.component.clone(),
                tag: key.tag.clone(),
                arch: key.arch.clone(),
                inputs: inputs.to_owned(),
                built_as: api::ComponentRecord::new(rec, &base),
            });
        }
    }
    Ok(HttpResponse::Ok().json(MissingAnswer {
        status: OkStatus::Ok,
        checked: keys.len(),
        missing,
        same_inputs,
    }))
}

/// GET/HEAD /v1/blobs/{blake3}: a blob by content; never changes.
#[utoipa::path(
    method(get, head),
    path = "/v1/blobs/{blake3}",
    tag = "components",
    summary = "A blob by content",
    description = "A stored tar.zst by its blake3: never changes, so it is cached for a year. \
Supports `Range`, `If-None-Match` and `If-Range`.",
    params(
        ("blake3" = String, Path, description = "64 hex characters", pattern = "^[0-9a-fA-F]{64}$"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag seen before: 304 when it still matches."),
        ("If-Range" = Option<String>, Header, description = "Honour `Range` only while the ETag is this one."),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The blob", content_type = "application/octet-stream", headers(
            ("ETag" = String, description = "The blake3, quoted"),
            ("Cache-Control" = String, description = "`public, max-age=31536000, immutable`"),
        )),
        (status = 206, description = "The asked range", content_type = "application/octet-stream", headers(
            ("Content-Range" = String, description = "`bytes first-last/size`"),
        )),
        (status = 304, description = "Not modified: `If-None-Match` matches"),
        (status = 400, description = "Not 64 hex characters", body = api::ErrorBody),
        (status = 401, description = "An invalid, expired or revoked API key, or none while anonymous reads are off", body = api::ErrorBody),
        (status = 404, description = "No such blob", body = api::ErrorBody),
        (status = 416, description = "The range is outside the file", body = api::ErrorBody),
    ),
)]
pub async fn blob(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let hex = path.to_ascii_lowercase();
    let c = state.components.clone();
    let blob = blocking(move || c.blob(&hex)).await?;
    respond::blob_file(&req, blob, "application/octet-stream", None, true).await
}
