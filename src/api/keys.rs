//! API keys: the request that creates one, the answer that shows its
//! secret once, and the public view of a key (never a secret, nor a hash).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::OkStatus;
use crate::auth::{KeyInfo, KeySource};
use crate::model::{Identity, Revocation, Role};

/// `POST /v1/keys`. Unknown fields are refused (a misspelt `components`
/// must not make a key for every component).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ci-asyn", "role": "write", "expires_in_days": 90, "components": ["asyn*", "motor"]}))]
pub struct CreateKeyRequest {
    /// Unique among all keys (the config file's too): letters, digits and
    /// `. _ + -`, as component names.
    pub name: String,
    pub role: Role,
    /// When the key stops working (RFC 3339); or `expires_in_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Days from now until the key stops working (1 to 3660).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 3660)]
    pub expires_in_days: Option<i64>,
    /// The components it may write (uploads, builds, images, deletes):
    /// component names where `*` stands for any run of characters. Absent:
    /// every component. Reads are not limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
}

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrigin {
    /// Created through the API (`POST /v1/keys`).
    Api,
    /// `[[auth.keys]]` of the config file: edit the file to change it.
    Config,
    /// The admin key generated at the first start (no key configured).
    Generated,
}

/// Whether a key works now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Expired,
    Revoked,
}

/// A key as listed: never its secret nor its hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub name: String,
    pub role: Role,
    pub source: KeyOrigin,
    pub state: KeyState,
    /// The component patterns it may write; absent: every component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// The admin key that created it (`key`) and the identity headers sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used, to the minute (noted at most once a minute;
    /// not kept for keys of the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

impl KeyView {
    /// The view of `k` at `now` (its state).
    pub fn new(k: KeyInfo, now: DateTime<Utc>) -> Self {
        let state = if k.revoked.is_some() {
            KeyState::Revoked
        } else if k.expires_at.is_some_and(|at| at <= now) {
            KeyState::Expired
        } else {
            KeyState::Active
        };
        KeyView {
            name: k.name,
            role: k.role,
            source: match k.source {
                KeySource::Api => KeyOrigin::Api,
                KeySource::Config => KeyOrigin::Config,
                KeySource::Generated => KeyOrigin::Generated,
            },
            state,
            components: (!k.components.is_empty()).then_some(k.components),
            created: k.created,
            created_by: k.created_by,
            expires_at: k.expires_at,
            last_used: k.last_used,
            revoked: k.revoked,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyCreatedStatus {
    Created,
}

/// 201: the new key. `secret` is shown this once: only its blake3 is kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyCreated {
    #[schema(inline)]
    pub status: KeyCreatedStatus,
    /// The key to send as `Authorization: Bearer <secret>`.
    pub secret: String,
    pub key: KeyView,
}

/// `GET /v1/keys`: the config file's keys, then those created through the
/// API, each by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    #[schema(inline)]
    pub status: OkStatus,
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyRevokedStatus {
    Revoked,
}

/// `DELETE /v1/keys/{name}`: the key, revoked (the first revocation stays
/// when it was revoked before).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyRevoked {
    #[schema(inline)]
    pub status: KeyRevokedStatus,
    pub key: KeyView,
}
