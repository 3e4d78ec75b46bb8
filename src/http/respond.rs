//! Answers shared by the handlers: links, component and image answers
//! (the hot lookups rendered once per record bytes), stored-component
//! answers, and serving a component or a blob in the asked encoding.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use super::error::ApiError;
use super::files::{self, FileSpec};
use super::{blocking, AppState};
use crate::api::{
    ClosureEntry, ComponentAnswer, ComponentRecord, ComponentStatus, EntryState, ImageAnswer,
    ImageStatus, ImageView, LockDocument, LockedComponent, ResolveAnswer, ResolveStatus,
    LOCK_VERSION,
};
use crate::components::{BlobHandle, ComponentError, Stored};
use crate::model::{ComponentKey, ImageKey, Record, Requirement, Source};

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
        .filter(|h| is_host(h))
        .map(str::to_owned)
        .unwrap_or_else(|| req.app_config().host().to_owned());
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// `host`, `host:port`, or `[v6]:port`: nothing that could add a path or
/// a query to the URLs built from it.
fn is_host(h: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']');
    !h.is_empty() && h.len() <= 255 && h.bytes().all(ok)
}

/// A record with its links, as answered.
pub fn view(state: &AppState, req: &HttpRequest, rec: Record) -> ComponentRecord {
    ComponentRecord::new(rec, &base_url(state, req))
}

/// The answer to a successful store: 201 when new, 200 when already there.
pub fn stored(state: &AppState, req: &HttpRequest, s: Stored) -> HttpResponse {
    let (status, word) = if s.created {
        (StatusCode::CREATED, ComponentStatus::Created)
    } else {
        (StatusCode::OK, ComponentStatus::Unchanged)
    };
    HttpResponse::build(status).json(ComponentAnswer {
        status: word,
        component: view(state, req, s.record),
    })
}

/// `found` and the record, rendered once per (record bytes, base URL): the
/// cache-hit check is the hottest request.
pub fn component_info(
    state: &AppState,
    req: &HttpRequest,
    key: &ComponentKey,
) -> Result<HttpResponse, ApiError> {
    let raw = state.components.raw(key)?;
    crate::metrics::cache("component", raw.is_some());
    let raw = raw.ok_or_else(|| ApiError::from(ComponentError::NotFound(key.clone())))?;
    let base = base_url(state, req);
    let body = match state.info_cache.get(key, &base, raw.as_bytes()) {
        Some(body) => body,
        None => {
            let answer = ComponentAnswer {
                status: ComponentStatus::Found,
                component: ComponentRecord::new(raw.decode()?, &base),
            };
            let body = Bytes::from(serde_json::to_vec(&answer).map_err(ApiError::internal)?);
            state
                .info_cache
                .put(key.clone(), base, raw.as_bytes(), body.clone());
            body
        }
    };
    Ok(json_bytes(body))
}

/// `found` and the image, rendered once per record bytes.
pub fn image_info(state: &AppState, key: &ImageKey) -> Result<HttpResponse, ApiError> {
    let raw = state.images.raw(key)?;
    crate::metrics::cache("image", raw.is_some());
    let Some(raw) = raw else {
        return Err(ApiError::not_found(format!("no image for {key}")));
    };
    let body = match state.image_cache.get(key, "", raw.as_bytes()) {
        Some(body) => body,
        None => {
            let answer = ImageAnswer {
                status: ImageStatus::Found,
                cached: None,
                job: None,
                links: None,
                image: ImageView::from(&raw.decode_image()?),
            };
            let body = Bytes::from(serde_json::to_vec(&answer).map_err(ApiError::internal)?);
            state
                .image_cache
                .put(key.clone(), String::new(), raw.as_bytes(), body.clone());
            body
        }
    };
    Ok(json_bytes(body))
}

fn json_bytes(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

/// A resolved closure as answered (with its lock when complete).
pub fn closure(
    state: &AppState,
    req: &HttpRequest,
    res: &crate::build::closure::Resolution,
) -> ResolveAnswer {
    let base = base_url(state, req);
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    let mut locked = Vec::new();
    for e in &res.entries {
        let k = &e.key;
        let requirement = Requirement {
            component: k.component.clone(),
            tag: k.tag.clone(),
        };
        match &e.record {
            Some(rec) => {
                locked.push(LockedComponent {
                    component: k.component.clone(),
                    tag: k.tag.clone(),
                    blake3: rec.blake3.clone(),
                    size: rec.size,
                    source: rec.source.clone(),
                    dependencies: e.requires.clone(),
                });
                entries.push(ClosureEntry {
                    component: k.component.clone(),
                    tag: k.tag.clone(),
                    arch: k.arch.clone(),
                    state: EntryState::Stored,
                    dependencies: e.requires.clone(),
                    stored: Some(ComponentRecord::new(rec.clone(), &base)),
                    source: None,
                });
            }
            None => {
                missing.push(requirement);
                entries.push(ClosureEntry {
                    component: k.component.clone(),
                    tag: k.tag.clone(),
                    arch: k.arch.clone(),
                    state: EntryState::Missing,
                    dependencies: e.requires.clone(),
                    stored: None,
                    source: e.repository.clone().map(|url| Source {
                        url,
                        commit: e.commit.clone(),
                        kind: None,
                        fetched_from: None,
                        submodules: Vec::new(),
                    }),
                });
            }
        }
    }
    let complete = missing.is_empty();
    ResolveAnswer {
        status: if complete {
            ResolveStatus::Complete
        } else {
            ResolveStatus::Incomplete
        },
        arch: res.arch.clone(),
        roots: res.roots.clone(),
        stored: locked.len(),
        entries,
        missing,
        lock: complete.then(|| LockDocument {
            lock_version: LOCK_VERSION,
            arch: res.arch.clone(),
            roots: res.roots.clone(),
            components: locked,
        }),
        job: None,
        links: None,
    }
}

/// Which encoding a download asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Encoding {
    Zstd,
    Gzip,
}

impl Encoding {
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Zstd => "tar.zst",
            Encoding::Gzip => "tar.gz",
        }
    }
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

/// Streams the stored component in the asked encoding, as `filename`.
pub async fn component(
    state: &AppState,
    req: &HttpRequest,
    rec: &Record,
    enc: Encoding,
    filename: String,
) -> Result<HttpResponse, ApiError> {
    state.components.note_download(&rec.key());
    let c = state.components.clone();
    let r = rec.clone();
    let (blob, content_type) = match enc {
        Encoding::Zstd => (blocking(move || c.record_blob(&r)).await?, ZSTD),
        Encoding::Gzip => (blocking(move || c.gzip_blob(&r.blake3)).await?, GZIP),
    };
    blob_file(req, blob, content_type, Some(filename), false).await
}

/// Serves a blob handed out by the domain: its local file, a `307` to the
/// object store (`storage.redirect`, GET only: HEAD is answered here), or
/// streamed from the store.
pub async fn blob_file(
    req: &HttpRequest,
    blob: BlobHandle,
    content_type: &'static str,
    filename: Option<String>,
    immutable: bool,
) -> Result<HttpResponse, ApiError> {
    let spec = FileSpec {
        etag: blob.hash.clone(),
        content_type,
        filename,
        immutable,
    };
    if let Some(path) = blob.local {
        return files::serve(req, path, spec);
    }
    if let (Some(ttl), true) = (blob.redirect, req.method() == actix_web::http::Method::GET) {
        let (reader, name) = (blob.reader.clone(), spec.filename.clone());
        let url = blocking(move || reader.presign(name.as_deref(), ttl)).await?;
        if let Some(url) = url {
            return Ok(files::redirect(req, &blob.hash, &url));
        }
    }
    let reader = blob.reader;
    let open: files::Opener =
        Box::new(move |start, len| reader.open(start, len).map_err(ApiError::from));
    files::serve_reader(req, blob.size, open, spec).await
}

/// Rendered answers by key, each valid while the index holds the same
/// record bytes for that key and the base URL is the same: always fresh,
/// without invalidation. Bounded: cleared when full.
pub struct RenderCache<K> {
    map: Mutex<HashMap<K, CachedInfo>>,
}

impl<K> Default for RenderCache<K> {
    fn default() -> Self {
        Self {
            map: Default::default(),
        }
    }
}

struct CachedInfo {
    base: String,
    raw: Vec<u8>,
    body: Bytes,
}

const RENDER_CACHE_ENTRIES: usize = 10_000;

impl<K: std::hash::Hash + Eq> RenderCache<K> {
    fn get(&self, key: &K, base: &str, raw: &[u8]) -> Option<Bytes> {
        let map = self.map.lock().ok()?;
        let e = map.get(key)?;
        (e.base == base && e.raw == raw).then(|| e.body.clone())
    }

    fn put(&self, key: K, base: String, raw: &[u8], body: Bytes) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= RENDER_CACHE_ENTRIES {
                map.clear();
            }
            map.insert(
                key,
                CachedInfo {
                    base,
                    raw: raw.to_vec(),
                    body,
                },
            );
        }
    }
}
