//! The original API that the lab's build scripts call today, kept
//! drop-in compatible: `GET /component` and `PUT /component`, with fields
//! from a JSON body (sent even on GET) or the query string.
//!
//! Differences from the REST routes, on purpose: downloads default to
//! gzip (the scripts open `r:gz`), and `Accept: application/json` alone does
//! not switch to JSON (their documented curl sends it and expects the file).

use std::collections::HashMap;
use std::path::PathBuf;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::caller::{authorize, authorize_original_write, identity};
use super::components::{
    base_url, parse_format, record_json, serve_component, stored_response, Encoding,
};
use super::error::ApiError;
use super::openapi::{schema as doc, IdentityHeaders};
use super::{blocking, AppState};
use crate::auth::Role;
use crate::components::PutRequest;

/// Fields from the JSON body, overridden by the query string.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(req: &HttpRequest, body: &[u8]) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        let trimmed = body.iter().position(|b| !b.is_ascii_whitespace());
        if trimmed.is_some() {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
            let Value::Object(obj) = v else {
                return Err(ApiError::bad_request("the JSON body must be an object"));
            };
            for (k, v) in obj {
                let s = match v {
                    Value::String(s) => s,
                    Value::Null => continue,
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                map.insert(k, s);
            }
        }
        let q: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        map.extend(q);
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::bad_request(format!("'{name}' is required (JSON body or query string)"))
        })
    }

    /// `architecture`, or its alias `arch`.
    pub fn arch(&self) -> Option<&str> {
        self.get("architecture").or_else(|| self.get("arch"))
    }
}

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
    /// `info`: the record as JSON instead of the tarball.
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
JSON). `view=info` answers the record as JSON. Fields come from a JSON body (sent even on GET) or \
the query string. Supports `Range` and `If-None-Match` like the REST download. A component that is \
not stored but whose repository is known is built first (202 with the job after \
`build.on_miss_wait_secs`).",
    params(
        LegacyQuery,
        ("Accept" = Option<String>, Header, description = "`application/zstd` selects zstd when `format` is absent."),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag seen before: 304 when it still matches."),
    ),
    request_body(content = doc::LegacyComponentRequest, content_type = "application/json",
        description = "The fields, as today's scripts send them (optional: the query string may carry them)"),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The tarball (gzip unless zstd is asked for), or with `view=info` the record", content(
            ("application/gzip"),
            ("application/zstd"),
            (doc::ComponentAnswer = "application/json"),
        ), headers(
            ("ETag" = String, description = "The blake3 of what is served, quoted"),
            ("Content-Disposition" = String, description = "`attachment; filename=\"{tag}.tar.gz\"` (or `.tar.zst`)"),
        )),
        (status = 202, description = "Not stored: a build was queued and has not ended yet", body = doc::JobAccepted),
        (status = 206, description = "The asked range", content(("application/gzip"), ("application/zstd"))),
        (status = 304, description = "Not modified: `If-None-Match` matches the ETag"),
        (status = 400, description = "Missing field, invalid JSON, name or `format`", body = doc::ErrorBody),
        (status = 401, description = "Invalid API key, or none while anonymous reads are off", body = doc::ErrorBody),
        (status = 404, description = "Not stored, and its repository is unknown", body = doc::ErrorBody),
        (status = 416, description = "The range is outside the file", body = doc::ErrorBody),
        (status = 422, description = "It was not stored, and its build failed", body = doc::BuildFailed),
        (status = 503, description = "It was not stored, and its build was interrupted", body = doc::BuildFailed),
    ),
)]
pub async fn get_component(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
    let body = super::upload::read_small(payload, super::upload::SMALL_BODY).await?;
    let p = Params::parse(&req, &body)?;
    let key = state
        .components
        .key(p.require("component")?, p.require("tag")?, p.arch())?;
    let found = state.components.lookup(&key)?;
    crate::metrics::cache("component", found.is_some());
    let rec = match found {
        Some(r) => r,
        None => {
            if let Some(resp) = super::builds::build_on_miss(&state, &req, &key).await? {
                return Ok(resp);
            }
            state.components.find(&key)?.0
        }
    };
    if p.get("view") == Some("info") {
        return Ok(HttpResponse::Ok().json(json!({
            "status": "found",
            "component": record_json(&rec, &base_url(&state, &req)),
        })));
    }
    let wants_zstd = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/zstd"));
    let enc = match p.get("format") {
        Some(f) => parse_format(f)?,
        None if wants_zstd => Encoding::Zstd,
        None => Encoding::Gzip,
    };
    let name = match enc {
        Encoding::Gzip => format!("{}.tar.gz", rec.tag),
        Encoding::Zstd => format!("{}.tar.zst", rec.tag),
    };
    serve_component(&state, &req, &rec, enc, name).await
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
Fields come from the JSON body or the query string. Tags are immutable, as for the REST upload.",
    params(IdentityHeaders),
    request_body(content = doc::LegacyPutRequest, content_type = "application/json",
        example = json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9", "results_tarball": "/mnt/builds/asyn/R4.39.tar.gz"})),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "The same content was already stored (`status` is `unchanged`)", body = doc::ComponentAnswer),
        (status = 201, description = "Stored (`status` is `created`)", body = doc::ComponentAnswer),
        (status = 400, description = "Missing field, invalid JSON, name or archive, or an unreadable path", body = doc::ErrorBody),
        (status = 401, description = "No or invalid API key (from outside the trusted networks)", body = doc::ErrorBody),
        (status = 403, description = "The key's role is too small, or the path is not under `compat.import_roots`", body = doc::ErrorBody),
        (status = 409, description = "The tag is stored with other content", body = doc::ErrorBody),
        (status = 413, description = "Unpacks to more than `max_unpacked_bytes`", body = doc::ErrorBody),
    ),
)]
pub async fn put_component(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize_original_write(&state, &req)?;
    let body = super::upload::read_small(payload, super::upload::SMALL_BODY).await?;
    let p = Params::parse(&req, &body)?;
    let key = state
        .components
        .key(p.require("component")?, p.require("tag")?, p.arch())?;
    let path = PathBuf::from(p.require("results_tarball")?);
    let put_req = PutRequest {
        who: identity(&req),
        ..Default::default()
    };
    let c = state.components.clone();
    let stored = blocking(move || c.import_path(&key, &path, put_req)).await?;
    Ok(stored_response(&state, &req, &stored))
}
