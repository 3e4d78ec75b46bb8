//! Who is calling: the identity headers (both spellings) and the API key.

use actix_web::{HttpMessage, HttpRequest};

use super::error::ApiError;
use super::AppState;
use crate::auth::{Principal, Scope};
use crate::model::Identity;
use crate::model::Role;

fn header<'a>(req: &'a HttpRequest, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .filter_map(|n| req.headers().get(*n))
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .find(|v| !v.is_empty())
}

/// `linux_username` / `X-adbs-linux-user` and `github_username` /
/// `X-adbs-github-user`, and the name of the key [`authorize`] accepted for
/// this request (so every write records the key as well as the headers).
pub fn identity(req: &HttpRequest) -> Identity {
    let clip = |s: &str| s.chars().take(128).collect::<String>();
    Identity {
        linux_username: header(req, &["linux_username", "x-adbs-linux-user"]).map(clip),
        github_username: header(req, &["github_username", "x-adbs-github-user"]).map(clip),
        key: key_name(req),
    }
}

/// The name of the key that identified this request's caller, if any.
pub fn key_name(req: &HttpRequest) -> Option<String> {
    req.extensions()
        .get::<Principal>()
        .and_then(|p| p.key_name().map(str::to_owned))
}

/// The key from `Authorization: Bearer <key>`, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, key) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// The caller, refused (401/403) unless it holds `role`. The caller is kept
/// with the request: [`identity`] names its key, [`may_write`] checks its
/// scope.
pub fn authorize(state: &AppState, req: &HttpRequest, role: Role) -> Result<Principal, ApiError> {
    if let Some(t) = bearer(req).filter(|t| crate::jobs::token::is_job_token(t)) {
        // a worker's job token: it may download blobs (its dependencies;
        // its job's own routes check it themselves), nothing else
        if role != Role::Read || !req.path().starts_with("/v1/blobs/") {
            return Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "forbidden",
                "a job token may only fetch its job's spec and blobs, post its log and store its result",
            ));
        }
        if state.builder.jobs().token_reads(t) {
            // not an API key: no key is recorded for it, and it writes nothing
            // through the routes that check a scope
            return Ok(Principal {
                name: "worker".into(),
                role: Some(Role::Read),
                key: false,
                scope: Scope::all(),
            });
        }
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "forbidden",
            "the job token is not valid (its job has ended, or it has expired)",
        ));
    }
    let p = state.keys.identify(bearer(req))?;
    if p.key {
        req.extensions_mut().insert(p.clone());
    }
    state.keys.require(&p, role)?;
    Ok(p)
}

/// Refused (403, naming the scope) unless the key this request was
/// authorised by may write the component `component`. A request without a
/// key (a trusted network, or `build.on_miss = "anyone"`) has no scope.
pub fn may_write(req: &HttpRequest, component: &str) -> Result<(), ApiError> {
    match req.extensions().get::<Principal>() {
        Some(p) => Ok(p.may_write(component)?),
        None => Ok(()),
    }
}

/// Writes on the original API's routes: a write key, or a client in
/// `compat.trusted_networks` (today's scripts send no key). A key that is
/// sent is the authority, from a trusted network too: it must be valid
/// (not expired, not revoked), hold the role, and its scope applies.
pub fn authorize_original_write(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    if bearer(req).is_some() || !from_trusted_network(state, req) {
        authorize(state, req, Role::Write)?;
    }
    Ok(())
}

/// Whether the peer address is in one of the configured trusted networks.
pub fn from_trusted_network(state: &AppState, req: &HttpRequest) -> bool {
    let Some(peer) = req.peer_addr() else {
        return false;
    };
    state
        .cfg
        .compat
        .trusted_networks
        .iter()
        .any(|n| n.contains(&peer.ip()))
}
