//! REST handlers for components: `/v1/components/...` and `/v1/blobs/...`.
//! Thin: extract, call [`crate::components::Components`], map the answer.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::caller::{authorize, identity};
use super::error::ApiError;
use super::files::{self, FileSpec};
use super::openapi::{schema as doc, IdentityHeaders};
use super::{blocking, upload, AppState};
use crate::auth::Role;
use crate::components::{ComponentError, PutRequest, Stored};
use crate::model::{ComponentKey, Record};

pub const ZSTD: &str = "application/zstd";
pub const GZIP: &str = "application/gzip";

/// The base URL clients should use for links in answers: `public_url`,
/// else the request's own `Host`. `Forwarded` / `X-Forwarded-*` headers are
/// believed only from `http.trusted_proxies`.
pub fn base_url(state: &AppState, req: &HttpRequest) -> String {
    if let Some(u) = &state.cfg.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let proxied = req.peer_addr().is_some_and(|p| {
        state
            .cfg
            .http
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&p.ip()))
    });
    if proxied {
        let ci = req.connection_info();
        return format!("{}://{}", ci.scheme(), ci.host());
    }
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| req.app_config().host().to_owned());
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// A record as answered to clients, with links.
pub fn record_json(rec: &Record, base: &str) -> Value {
    let path = format!("/v1/components/{}/{}/{}", rec.component, rec.tag, rec.arch);
    let mut v = serde_json::to_value(rec).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("path".into(), json!(path));
        m.insert("download_url".into(), json!(format!("{base}{path}")));
        m.insert(
            "blob_url".into(),
            json!(format!("{base}/v1/blobs/{}", rec.blake3)),
        );
        m.insert("info_url".into(), json!(format!("{base}{path}/info")));
    }
    v
}

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

/// Which encoding a download asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Encoding {
    Zstd,
    Gzip,
}

pub fn parse_format(f: &str) -> Result<Encoding, ApiError> {
    match f.to_ascii_lowercase().as_str() {
        "tar.zst" | "zst" | "zstd" | "tar.zstd" => Ok(Encoding::Zstd),
        "tar.gz" | "gz" | "gzip" | "tgz" => Ok(Encoding::Gzip),
        other => Err(ApiError::bad_request(format!(
            "unknown format '{other}' (tar.zst or tar.gz)"
        ))),
    }
}

/// Streams the stored component in the asked encoding.
pub async fn serve_component(
    state: &AppState,
    req: &HttpRequest,
    rec: &Record,
    enc: Encoding,
    filename: String,
) -> Result<HttpResponse, ApiError> {
    // for the retention rule "keep what was downloaded recently"
    if let Err(e) = state.components.index().note_download(&rec.key()) {
        tracing::warn!("cannot note a download: {e}");
    }
    match enc {
        Encoding::Zstd => {
            let path = state
                .components
                .blobs()
                .path_hex(&rec.blake3)
                .ok_or_else(|| ApiError::internal("corrupt blob reference"))?;
            files::serve(
                req,
                FileSpec {
                    path,
                    etag: rec.blake3.clone(),
                    content_type: ZSTD,
                    filename: Some(filename),
                    immutable: false,
                },
            )
        }
        Encoding::Gzip => {
            let c = state.components.clone();
            let hex = rec.blake3.clone();
            let (path, gz) = blocking(move || c.gzip_blob(&hex)).await?;
            files::serve(
                req,
                FileSpec {
                    path,
                    etag: gz,
                    content_type: GZIP,
                    filename: Some(filename),
                    immutable: false,
                },
            )
        }
    }
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
        (status = 202, description = "`build=missing`: the build was queued and has not ended yet", body = doc::JobAccepted),
        (status = 206, description = "The asked range", content(("application/zstd"), ("application/gzip")), headers(
            ("Content-Range" = String, description = "`bytes first-last/size`"),
        )),
        (status = 304, description = "Not modified: `If-None-Match` matches the ETag"),
        (status = 400, description = "Invalid name, `format` or `build`", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 404, description = "Not stored (and not buildable with `build=missing`)", body = doc::ErrorBody),
        (status = 416, description = "The range is outside the file", body = doc::ErrorBody, headers(
            ("Content-Range" = String, description = "`bytes */size`"),
        )),
        (status = 422, description = "`build=missing`: the build failed", body = doc::BuildFailed),
        (status = 503, description = "`build=missing`: the build was interrupted", body = doc::BuildFailed),
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
            if !state.components.index().contains(&key)? {
                if let Some(resp) = super::builds::build_on_miss(&state, &req, &key).await? {
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
    let (rec, _) = found?;
    let ext = if enc == Encoding::Zstd {
        "tar.zst"
    } else {
        "tar.gz"
    };
    let name = format!("{}-{}-{}.{ext}", rec.component, rec.tag, rec.arch);
    serve_component(&state, &req, &rec, enc, name).await
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
        (status = 200, description = "Found (`status` is `found`)", body = doc::ComponentAnswer),
        (status = 400, description = "Invalid name", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 404, description = "Not stored", body = doc::ErrorBody),
    ),
)]
pub async fn info(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<KeyPath>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let key = key_of(&state, &path)?;
    let raw = state.components.index().raw(&key)?;
    crate::metrics::cache("component", raw.is_some());
    let raw = raw.ok_or_else(|| ApiError::from(ComponentError::NotFound(key.clone())))?;
    let base = base_url(&state, &req);
    let body = match state.info_cache.get(&key, &base, raw.as_bytes()) {
        Some(body) => body,
        None => {
            let rec = raw.decode()?;
            let body = serde_json::to_vec(&json!({
                "status": "found",
                "component": record_json(&rec, &base),
            }))
            .map_err(ApiError::internal)?;
            let body = bytes::Bytes::from(body);
            state
                .info_cache
                .put(key, base, raw.as_bytes(), body.clone());
            body
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// Replace a tag stored with other content (admin key only).
    #[serde(default)]
    overwrite: bool,
}

/// The answer to a successful store: 201 when new, 200 when already there.
pub fn stored_response(state: &AppState, req: &HttpRequest, s: &Stored) -> HttpResponse {
    let (status, word) = if s.created {
        (StatusCode::CREATED, "created")
    } else {
        (StatusCode::OK, "unchanged")
    };
    HttpResponse::build(status).json(json!({
        "status": word,
        "component": record_json(&s.record, &base_url(state, req)),
    }))
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
`overwrite=true`. Archives with absolute paths, `..`, links pointing outside or device files are \
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
        (status = 200, description = "The same content was already stored (`status` is `unchanged`)", body = doc::ComponentAnswer),
        (status = 201, description = "Stored (`status` is `created`)", body = doc::ComponentAnswer),
        (status = 400, description = "Invalid name or archive, checksum mismatch, or an empty body without `X-Checksum-Blake3`", body = doc::ErrorBody),
        (status = 401, description = "No or invalid API key", body = doc::ErrorBody),
        (status = 403, description = "The key's role is too small (write; admin for `overwrite`)", body = doc::ErrorBody),
        (status = 404, description = "Checksum deploy: no blob with that hash", body = doc::ErrorBody),
        (status = 409, description = "The tag is stored with other content", body = doc::ErrorBody),
        (status = 413, description = "Larger than `max_upload_bytes` (or unpacks to more than `max_unpacked_bytes`)", body = doc::ErrorBody),
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
    upload::check_room(&req, state.components.blobs(), state.cfg.min_free_bytes)?;
    let body = upload::receive(
        &req,
        payload,
        state.components.blobs(),
        state.cfg.max_upload_bytes,
    )
    .await?;
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
        let stored = blocking(move || c.put_upload(&k, file, raw, expected, put_req)).await?;
        drop(body.file);
        stored
    };
    tracing::info!(key = %key, blake3 = %stored.record.blake3, created = stored.created, by = %who.name, "stored");
    Ok(stored_response(&state, &req, &stored))
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
        (status = 200, description = "Deleted: the record that was dropped", body = doc::DeletedAnswer),
        (status = 400, description = "Invalid name", body = doc::ErrorBody),
        (status = 401, description = "No or invalid API key", body = doc::ErrorBody),
        (status = 403, description = "Not an admin key", body = doc::ErrorBody),
        (status = 404, description = "Not stored", body = doc::ErrorBody),
    ),
)]
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<KeyPath>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Admin)?;
    let key = key_of(&state, &path)?;
    let c = state.components.clone();
    let rec = blocking(move || c.delete(&key)).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "deleted", "component": rec})))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only components whose name starts with this.
    #[serde(default)]
    #[param(required = false)]
    prefix: String,
    /// `component/tag/arch`: start after this one (the previous page's `next`).
    after: Option<String>,
    /// Page size: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

const MAX_PAGE: usize = 1000;

/// GET /v1/components?prefix=&after=component/tag/arch&limit=
#[utoipa::path(
    get,
    path = "/v1/components",
    tag = "components",
    summary = "List components",
    description = "A page of stored components, ordered by component/tag/arch; follow `next` with `after`.",
    params(ListQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page", body = doc::ComponentList),
        (status = 400, description = "Invalid `after` or query", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
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
    let recs = state.components.list(&q.prefix, after.as_ref(), limit)?;
    let base = base_url(&state, &req);
    let next = (recs.len() == limit)
        .then(|| recs.last().map(|r| r.key().display_path()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "components": recs.iter().map(|r| record_json(r, &base)).collect::<Vec<_>>(),
        "next": next,
    })))
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
        (status = 200, description = "Its versions", body = doc::ComponentVersions),
        (status = 400, description = "Invalid name", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 404, description = "No stored version", body = doc::ErrorBody),
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
    let base = base_url(&state, &req);
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "component": path.as_str(),
        "versions": recs.iter().map(|r| record_json(r, &base)).collect::<Vec<_>>(),
    })))
}

/// One component asked about.
#[derive(Deserialize, ToSchema)]
pub struct WantedItem {
    component: String,
    tag: String,
    /// The architecture (alias `architecture`); absent: the configured `default_arch`.
    #[serde(alias = "architecture")]
    arch: Option<String>,
}

/// The components to check: a list, or `{"components": [...]}`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MissingBody {
    List(Vec<WantedItem>),
    Wrapped { components: Vec<WantedItem> },
}

const MAX_MISSING: usize = 10_000;

/// POST /v1/components/missing: which of these are not stored.
#[utoipa::path(
    post,
    path = "/v1/components/missing",
    tag = "components",
    summary = "Which of these are not stored",
    description = "One request for a whole dependency tree (at most 10000 components).",
    request_body(content = MissingBody, content_type = "application/json",
        example = json!({"components": [{"component": "asyn", "tag": "R4.39", "arch": "rocky9"}, {"component": "epics-base", "tag": "R7.0.8", "arch": "rocky9"}]})),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The ones not stored", body = doc::MissingAnswer),
        (status = 400, description = "Invalid JSON or name", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 413, description = "More than 10000 components", body = doc::ErrorBody),
    ),
)]
pub async fn missing(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<MissingBody>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let items = match body.into_inner() {
        MissingBody::List(v) | MissingBody::Wrapped { components: v } => v,
    };
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
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "checked": keys.len(),
        "missing": missing,
    })))
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
        (status = 400, description = "Not 64 hex characters", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 404, description = "No such blob", body = doc::ErrorBody),
        (status = 416, description = "The range is outside the file", body = doc::ErrorBody),
    ),
)]
pub async fn blob(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let hex = path.to_ascii_lowercase();
    let p =
        state.components.blobs().path_hex(&hex).ok_or_else(|| {
            ApiError::bad_request("a blob is named by its blake3: 64 hex characters")
        })?;
    if !p.is_file() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "blob_not_found",
            format!("no blob {hex}"),
        ));
    }
    files::serve(
        &req,
        FileSpec {
            path: p,
            etag: hex.clone(),
            content_type: "application/octet-stream",
            filename: None,
            immutable: true,
        },
    )
}
