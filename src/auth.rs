//! API keys and roles. Keys are random tokens; only their blake3 is kept
//! (in the config, or in the index for the generated first-start key).
//!
//! This module knows nothing of HTTP: the HTTP layer passes the bearer token
//! it found and gets a role (or a reason to refuse) back.

use std::collections::HashMap;

use rand::RngCore;

use crate::config::AuthConfig;
use crate::model::Role;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("an API key is required (Authorization: Bearer <key>)")]
    MissingKey,
    #[error("the API key is not valid")]
    InvalidKey,
    #[error("this needs the {needed} role; the key '{name}' has {has}")]
    Forbidden {
        needed: Role,
        has: Role,
        name: String,
    },
}

/// A caller that proved a key, or an anonymous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Key name, or "anonymous".
    pub name: String,
    pub role: Option<Role>,
}

/// The set of valid keys, by hash.
#[derive(Debug, Clone)]
pub struct KeyRing {
    by_hash: HashMap<[u8; 32], (String, Role)>,
    anonymous_read: bool,
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

impl KeyRing {
    pub fn new(cfg: &AuthConfig, extra: impl IntoIterator<Item = (String, Role, String)>) -> Self {
        let mut by_hash = HashMap::new();
        let configured = cfg
            .keys
            .iter()
            .map(|k| (k.name.clone(), k.role, k.blake3.clone()));
        for (name, role, hex) in configured.chain(extra) {
            if let Ok(h) = blake3::Hash::from_hex(hex.trim()) {
                by_hash.insert(*h.as_bytes(), (name, role));
            }
        }
        Self {
            by_hash,
            anonymous_read: cfg.anonymous_read,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Who presents this (optional) key. A key that is present but unknown is
    /// refused even for reads, so a typo is noticed.
    pub fn identify(&self, bearer: Option<&str>) -> Result<Principal, AuthError> {
        match bearer {
            None => Ok(Principal {
                name: "anonymous".into(),
                role: self.anonymous_read.then_some(Role::Read),
            }),
            Some(key) => {
                let h = blake3::hash(key.trim().as_bytes());
                match self.by_hash.get(h.as_bytes()) {
                    Some((name, role)) => Ok(Principal {
                        name: name.clone(),
                        role: Some(*role),
                    }),
                    None => Err(AuthError::InvalidKey),
                }
            }
        }
    }

    /// Checks that the caller holds at least `needed`.
    pub fn require(&self, p: &Principal, needed: Role) -> Result<(), AuthError> {
        match p.role {
            Some(r) if r >= needed => Ok(()),
            Some(has) if p.name != "anonymous" => Err(AuthError::Forbidden {
                needed,
                has,
                name: p.name.clone(),
            }),
            _ => Err(AuthError::MissingKey),
        }
    }
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
        assert!(ring.require(&ci, Role::Write).is_ok());
        assert!(matches!(
            ring.require(&ci, Role::Admin),
            Err(AuthError::Forbidden { .. })
        ));
        assert_eq!(ring.identify(Some("nope")), Err(AuthError::InvalidKey));
    }
}
