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

use super::caller::{authorize, from_trusted_network, identity};
use super::components::{
    base_url, parse_format, record_json, serve_component, stored_response, Encoding,
};
use super::error::ApiError;
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

/// GET /component: the tarball (gzip unless zstd is asked for), or with
/// `view=info` the record as JSON. A miss is a 404 with a JSON error.
pub async fn get_component(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Read)?;
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
pub async fn put_component(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !from_trusted_network(&state, &req) {
        authorize(&state, &req, Role::Write)?;
    }
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
