//! REST handlers for components: `/v1/components/...` and `/v1/blobs/...`.
//! Thin: extract, call [`crate::components::Components`], map the answer.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::{authorize, identity};
use super::error::ApiError;
use super::files::{self, FileSpec};
use super::{blocking, upload, AppState};
use crate::auth::Role;
use crate::components::{PutRequest, Stored};
use crate::model::{ComponentKey, Record};

pub const ZSTD: &str = "application/zstd";
pub const GZIP: &str = "application/gzip";

/// The base URL clients should use for links in answers.
pub fn base_url(state: &AppState, req: &HttpRequest) -> String {
    match &state.cfg.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let ci = req.connection_info();
            format!("{}://{}", ci.scheme(), ci.host())
        }
    }
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

#[derive(Deserialize)]
pub struct KeyPath {
    component: String,
    tag: String,
    arch: String,
}

#[derive(Deserialize, Default)]
pub struct DownloadQuery {
    format: Option<String>,
    /// `missing`: build the component when it is not stored (and its URL is known).
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
    let (rec, _) = state.components.find(&key)?;
    let ext = if enc == Encoding::Zstd {
        "tar.zst"
    } else {
        "tar.gz"
    };
    let name = format!("{}-{}-{}.{ext}", rec.component, rec.tag, rec.arch);
    serve_component(&state, &req, &rec, enc, name).await
}

/// GET /v1/components/{component}/{tag}/{arch}/info
pub async fn info(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<KeyPath>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let key = key_of(&state, &path)?;
    let (rec, _) = state.components.find(&key)?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "found",
        "component": record_json(&rec, &base_url(&state, &req)),
    })))
}

#[derive(Deserialize, Default)]
pub struct PutQuery {
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

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
}

const MAX_PAGE: usize = 1000;

/// GET /v1/components?prefix=&after=component/tag/arch&limit=
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

#[derive(Deserialize)]
pub struct WantedItem {
    component: String,
    tag: String,
    #[serde(alias = "architecture")]
    arch: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum MissingBody {
    List(Vec<WantedItem>),
    Wrapped { components: Vec<WantedItem> },
}

const MAX_MISSING: usize = 10_000;

/// POST /v1/components/missing: which of these are not stored.
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
