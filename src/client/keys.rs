//! `key create | list | revoke`: API keys managed on a running service
//! (an admin key without a scope), as `POST /v1/keys`, `GET /v1/keys` and
//! `DELETE /v1/keys/{name}`.

use super::{ClientError, Remote, Result};
use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::api::{CreateKeyRequest, KeyCreated, KeyList, KeyRevoked, KeyView};
use crate::model::validate_name;

/// `key create`: the new key, its secret included (shown this once).
pub fn key_create(r: &Remote, req: &CreateKeyRequest) -> Result<KeyCreated> {
    validate_name("key name", &req.name).map_err(|e| ClientError::Other(e.to_string()))?;
    let url = r.url("/v1/keys");
    r.json(r.http.post(&url).json(req), &url)
}

/// `key list`: every key (never a secret).
pub fn key_list(r: &Remote) -> Result<KeyList> {
    let url = r.url("/v1/keys");
    r.json(r.http.get(&url), &url)
}

/// `key revoke NAME`.
pub fn key_revoke(r: &Remote, name: &str) -> Result<KeyRevoked> {
    validate_name("key name", name).map_err(|e| ClientError::Other(e.to_string()))?;
    let url = r.url(&format!("/v1/keys/{name}"));
    r.json(r.http.delete(&url), &url)
}

/// A value's word in the API (`"api"`, `"revoked"`).
fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Keys as a table: name, role, source, state, components, expiry, last
/// use (one line each, under a header line).
pub fn key_table(keys: &[KeyView]) -> String {
    let when = |t: &Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "{:<24} {:<6} {:<9} {:<8} {:<24} {:<17} {:<17}\n",
        "NAME", "ROLE", "SOURCE", "STATE", "COMPONENTS", "EXPIRES", "LAST USED"
    );
    for k in keys {
        let _ = writeln!(
            out,
            "{:<24} {:<6} {:<9} {:<8} {:<24} {:<17} {:<17}",
            k.name,
            k.role,
            word(&k.source),
            word(&k.state),
            k.components.as_ref().map_or("*".into(), |c| c.join(",")),
            when(&k.expires_at),
            when(&k.last_used),
        );
    }
    out
}
