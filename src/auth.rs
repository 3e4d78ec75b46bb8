//! API keys and roles. Keys are random tokens; only their blake3 is kept:
//! in the config file (`[[auth.keys]]`), in the index for the generated
//! first-start key, and in the index for keys created through the API
//! (`manage`: create, list, revoke; each with a role, an optional expiry
//! and an optional scope of component names it may write, see `scope`).
//!
//! Keys of the config file are held in memory; a key created through the
//! API is looked up in the index by the hash of the secret on every
//! request that sends it, so a revocation on one replica holds on every
//! replica from the next request (no cache). Lookups are by hash: the time
//! they take depends on the hash, never on how much of a secret matched.
//!
//! This module knows nothing of HTTP: the HTTP layer passes the bearer token
//! it found and gets a principal (or a reason to refuse) back.

mod manage;
mod scope;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::RngCore;

use crate::config::AuthConfig;
use crate::index::{Index, KEY_USE_EVERY_SECS};
use crate::model::Role;

pub use manage::{KeyError, KeyInfo, KeySource, NewKey, MAX_DAYS};
pub use scope::Scope;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("an API key is required (Authorization: Bearer <key>)")]
    MissingKey,
    #[error("the API key is not valid")]
    InvalidKey,
    #[error("the API key '{name}' expired at {at}: ask an admin for a new one")]
    Expired { name: String, at: String },
    #[error("the API key '{name}' was revoked at {at}: ask an admin for a new one")]
    Revoked { name: String, at: String },
    #[error("this needs the {needed} role; the key '{name}' has {has}")]
    Forbidden {
        needed: Role,
        has: Role,
        name: String,
    },
    #[error("the key '{name}' may write only components matching {scope}; not '{component}'")]
    OutOfScope {
        name: String,
        component: String,
        scope: String,
    },
    /// A key with a scope, where only one without may go (`needs` says why).
    #[error("the key '{name}' may write only components matching {scope}: {needs}")]
    Scoped {
        name: String,
        scope: String,
        needs: &'static str,
    },
    /// The index could not be asked (logged, answered without details).
    #[error("the keys could not be read: {0}")]
    Unavailable(String),
}

/// A caller that proved a key, or an anonymous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Key name, or "anonymous".
    pub name: String,
    pub role: Option<Role>,
    /// Whether a key identified the caller (else anonymous).
    pub key: bool,
    /// The component names it may write.
    pub scope: Scope,
}

impl Principal {
    fn anonymous(role: Option<Role>) -> Self {
        Self {
            name: "anonymous".into(),
            role,
            key: false,
            scope: Scope::all(),
        }
    }

    /// The name of the key that identified the caller, if one did.
    pub fn key_name(&self) -> Option<&str> {
        self.key.then_some(self.name.as_str())
    }

    /// Refused unless the caller's key has no scope (`needs` says why it
    /// must not have one).
    pub fn unscoped(&self, needs: &'static str) -> Result<(), AuthError> {
        if self.scope.is_all() {
            return Ok(());
        }
        Err(AuthError::Scoped {
            name: self.name.clone(),
            scope: self.scope.to_string(),
            needs,
        })
    }

    /// Whether this caller's key may write the component `component`.
    pub fn may_write(&self, component: &str) -> Result<(), AuthError> {
        if self.scope.allows(component) {
            return Ok(());
        }
        Err(AuthError::OutOfScope {
            name: self.name.clone(),
            component: component.to_owned(),
            scope: self.scope.to_string(),
        })
    }
}

/// A key of the config file (or the generated first-start key).
#[derive(Debug, Clone)]
struct FixedKey {
    name: String,
    role: Role,
    source: KeySource,
}

/// The set of valid keys: those of the config file by hash, and the index
/// holding the keys created through the API.
#[derive(Clone)]
pub struct KeyRing {
    by_hash: HashMap<[u8; 32], FixedKey>,
    /// The same keys by name (listing, unique names).
    fixed: Vec<FixedKey>,
    anonymous_read: bool,
    index: Option<Arc<dyn Index>>,
}

/// Hashes a key the way the config stores it.
pub fn hash_key(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

/// A new random key: `as_` and 64 hex characters (256 bits).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("as_{}", hex::encode(bytes))
}

/// Whether `key` has the form of [`generate_key`]'s keys (only those can be
/// in the index: anything else is refused without asking it).
fn looks_generated(key: &str) -> bool {
    key.strip_prefix("as_")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl KeyRing {
    /// The keys of `cfg`, and `extra` (name, role, blake3 hex): the
    /// generated first-start key.
    pub fn new(cfg: &AuthConfig, extra: impl IntoIterator<Item = (String, Role, String)>) -> Self {
        let mut by_hash = HashMap::new();
        let mut fixed = Vec::new();
        let configured = cfg
            .keys
            .iter()
            .map(|k| (k.name.clone(), k.role, k.blake3.clone(), KeySource::Config));
        let extra = extra
            .into_iter()
            .map(|(n, r, h)| (n, r, h, KeySource::Generated));
        for (name, role, hex, source) in configured.chain(extra) {
            if let Ok(h) = blake3::Hash::from_hex(hex.trim()) {
                let k = FixedKey { name, role, source };
                fixed.push(k.clone());
                by_hash.insert(*h.as_bytes(), k);
            }
        }
        fixed.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            by_hash,
            fixed,
            anonymous_read: cfg.anonymous_read,
            index: None,
        }
    }

    /// Keys created through the API live in (and are checked against) `index`.
    pub fn with_index(mut self, index: Arc<dyn Index>) -> Self {
        self.index = Some(index);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty() && self.index.is_none()
    }

    /// Who presents this (optional) key. A key that is present but unknown,
    /// expired or revoked is refused even for reads, so a typo (or a key
    /// that stopped working) is noticed.
    pub fn identify(&self, bearer: Option<&str>) -> Result<Principal, AuthError> {
        let Some(key) = bearer else {
            return Ok(Principal::anonymous(
                self.anonymous_read.then_some(Role::Read),
            ));
        };
        let key = key.trim();
        let h = blake3::hash(key.as_bytes());
        if let Some(k) = self.by_hash.get(h.as_bytes()) {
            return Ok(Principal {
                name: k.name.clone(),
                role: Some(k.role),
                key: true,
                scope: Scope::all(),
            });
        }
        let Some(index) = self.index.as_ref().filter(|_| looks_generated(key)) else {
            return Err(AuthError::InvalidKey);
        };
        let stored = index
            .api_key_by_hash(&h.to_hex())
            .map_err(|e| AuthError::Unavailable(e.to_string()))?
            .ok_or(AuthError::InvalidKey)?;
        let now = Utc::now();
        if let Some(r) = &stored.revoked {
            return Err(AuthError::Revoked {
                name: stored.name,
                at: shown(r.at),
            });
        }
        if let Some(at) = stored.expires_at.filter(|at| *at <= now) {
            return Err(AuthError::Expired {
                name: stored.name,
                at: shown(at),
            });
        }
        let due = stored
            .last_used
            .is_none_or(|l| (now - l).num_seconds() >= KEY_USE_EVERY_SECS);
        if due {
            // a lost note only makes last_used older; the request goes on
            if let Err(e) = index.note_api_key_use(&stored.name, now) {
                tracing::warn!(key = %stored.name, "cannot note the use of a key: {e}");
            }
        }
        Ok(Principal {
            name: stored.name,
            role: Some(stored.role),
            key: true,
            scope: Scope::from_stored(stored.components),
        })
    }

    /// Checks that the caller holds at least `needed`.
    pub fn require(&self, p: &Principal, needed: Role) -> Result<(), AuthError> {
        match p.role {
            Some(r) if r >= needed => Ok(()),
            Some(has) if p.key => Err(AuthError::Forbidden {
                needed,
                has,
                name: p.name.clone(),
            }),
            _ => Err(AuthError::MissingKey),
        }
    }

    /// Checks that the caller may manage keys: an admin key without a scope
    /// (a key limited to some components may not make one that is not).
    pub fn require_key_admin(&self, p: &Principal) -> Result<(), AuthError> {
        self.require(p, Role::Admin)?;
        p.unscoped("managing keys needs an admin key without a component scope")
    }
}

/// A time as answers show it (RFC 3339, whole seconds, UTC).
fn shown(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyConfig;

    #[test]
    fn roles_and_keys() {
        let key = generate_key();
        let cfg = AuthConfig {
            anonymous_read: true,
            keys: vec![KeyConfig {
                name: "ci".into(),
                role: Role::Write,
                blake3: hash_key(&key),
            }],
        };
        let ring = KeyRing::new(&cfg, []);
        let anon = ring.identify(None).unwrap();
        assert!(ring.require(&anon, Role::Read).is_ok());
        assert_eq!(ring.require(&anon, Role::Write), Err(AuthError::MissingKey));
        let ci = ring.identify(Some(&key)).unwrap();
        assert_eq!(ci.key_name(), Some("ci"));
        assert!(ring.require(&ci, Role::Write).is_ok());
        assert!(matches!(
            ring.require(&ci, Role::Admin),
            Err(AuthError::Forbidden { .. })
        ));
        assert_eq!(ring.identify(Some("nope")), Err(AuthError::InvalidKey));
        // a key of the stored form, with no index to look it up in
        assert_eq!(
            ring.identify(Some(&generate_key())),
            Err(AuthError::InvalidKey)
        );
    }

    #[test]
    fn generated_keys_have_one_form() {
        assert!(looks_generated(&generate_key()));
        assert!(!looks_generated("as_"));
        assert!(!looks_generated(&format!("as_{}", "g".repeat(64))));
        assert!(!looks_generated(&format!("xx_{}", "a".repeat(64))));
        assert!(!looks_generated(&format!("as_{}", "a".repeat(65))));
    }
}
