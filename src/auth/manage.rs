//! Keys as data: created (the secret shown once, only its blake3 kept),
//! listed (never a secret nor a hash) and revoked through the API; stored
//! in the index, so every replica sees the same keys. Keys of the config
//! file are listed too, and cannot be revoked here (edit the file).

use chrono::{DateTime, Duration, Utc};

use super::{generate_key, hash_key, KeyRing, Scope};
use crate::index::IndexError;
use crate::model::{validate_name, ApiKey, Identity, NameError, Revocation, Role};

/// The longest life `expires_in_days` may give a key (about 10 years).
pub const MAX_DAYS: i64 = 3660;

/// What a new key is asked to be.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
    pub expires_in_days: Option<i64>,
    /// Patterns of the component names it may write; `None`: all.
    pub components: Option<Vec<String>>,
}

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// Created through the API (stored in the index).
    Api,
    /// `[[auth.keys]]` of the config file.
    Config,
    /// The admin key generated at the first start (no key configured).
    Generated,
}

/// A key as it may be shown: no secret, no hash.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub source: KeySource,
    pub name: String,
    pub role: Role,
    /// Empty: every component.
    pub components: Vec<String>,
    pub created: Option<DateTime<Utc>>,
    pub created_by: Option<Identity>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
    pub revoked: Option<Revocation>,
}

impl From<ApiKey> for KeyInfo {
    fn from(k: ApiKey) -> Self {
        KeyInfo {
            source: KeySource::Api,
            name: k.name,
            role: k.role,
            components: k.components,
            created: Some(k.created),
            created_by: Some(k.created_by),
            expires_at: k.expires_at,
            last_used: k.last_used,
            revoked: k.revoked,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("a key named '{0}' exists already (names are unique, revoked keys included)")]
    Exists(String),
    #[error("no key named '{0}'")]
    NotFound(String),
    #[error(
        "the key '{0}' is set in the configuration file ([[auth.keys]]): remove it there and \
         restart the service to revoke it"
    )]
    InConfig(String),
    #[error(
        "the key '{0}' is the admin key generated at the first start: it stops working once a \
         key is configured in [[auth.keys]]"
    )]
    Generated(String),
    #[error("keys cannot be managed: the service has no index for them")]
    NoIndex,
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl KeyRing {
    fn store(&self) -> Result<&dyn crate::index::Index, KeyError> {
        self.index.as_deref().ok_or(KeyError::NoIndex)
    }

    /// Refuses a name a fixed key has.
    fn fixed_named(&self, name: &str) -> Option<&super::FixedKey> {
        self.fixed.iter().find(|k| k.name == name)
    }

    /// Creates a key: the secret (shown this once) and what is kept of it.
    pub fn create(&self, req: NewKey, by: Identity) -> Result<(String, KeyInfo), KeyError> {
        let index = self.store()?;
        validate_name("key name", &req.name)?;
        if req.name == "anonymous" || self.fixed_named(&req.name).is_some() {
            return Err(KeyError::Exists(req.name));
        }
        let now = Utc::now();
        let expires_at = match (req.expires_at, req.expires_in_days) {
            (Some(_), Some(_)) => {
                return Err(KeyError::Invalid(
                    "give expires_at or expires_in_days, not both".into(),
                ))
            }
            (Some(at), None) if at <= now => {
                return Err(KeyError::Invalid(format!(
                    "expires_at {} is not in the future",
                    super::shown(at)
                )))
            }
            (Some(at), None) => Some(at),
            (None, Some(d)) if !(1..=MAX_DAYS).contains(&d) => {
                return Err(KeyError::Invalid(format!(
                    "expires_in_days must be 1 to {MAX_DAYS} (is {d})"
                )))
            }
            (None, Some(d)) => Some(now + Duration::days(d)),
            (None, None) => None,
        };
        let scope = match &req.components {
            None => Scope::all(),
            Some(p) => Scope::parse(p).map_err(KeyError::Invalid)?,
        };
        // 256 random bits: a second try is for form's sake
        for _ in 0..3 {
            let secret = generate_key();
            let key = ApiKey {
                name: req.name.clone(),
                role: req.role,
                blake3: hash_key(&secret),
                components: scope.patterns().to_vec(),
                created: now,
                created_by: by.clone(),
                expires_at,
                last_used: None,
                revoked: None,
            };
            if index.create_api_key(&key)? {
                return Ok((secret, key.into()));
            }
            if index.api_key(&req.name)?.is_some() {
                return Err(KeyError::Exists(req.name));
            }
        }
        Err(KeyError::Invalid(
            "no new key could be made; try again".into(),
        ))
    }

    /// Every key: those of the config file (and the generated one), then
    /// those created through the API, each by name.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let mut out: Vec<KeyInfo> = self
            .fixed
            .iter()
            .map(|k| KeyInfo {
                source: k.source,
                name: k.name.clone(),
                role: k.role,
                components: Vec::new(),
                created: None,
                created_by: None,
                expires_at: None,
                last_used: None,
                revoked: None,
            })
            .collect();
        if let Some(index) = &self.index {
            out.extend(index.api_keys()?.into_iter().map(KeyInfo::from));
        }
        Ok(out)
    }

    /// Revokes the key `name` at once (on every replica: the next request
    /// that sends it looks it up). Revoking it again changes nothing.
    pub fn revoke(&self, name: &str, by: Identity) -> Result<KeyInfo, KeyError> {
        if let Some(k) = self.fixed_named(name) {
            return Err(match k.source {
                KeySource::Generated => KeyError::Generated(name.to_owned()),
                _ => KeyError::InConfig(name.to_owned()),
            });
        }
        validate_name("key name", name)?;
        let index = self.store()?;
        let rev = Revocation { at: Utc::now(), by };
        let key = index
            .revoke_api_key(name, &rev)?
            .ok_or_else(|| KeyError::NotFound(name.to_owned()))?;
        Ok(key.into())
    }
}
