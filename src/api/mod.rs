//! Wire types: the JSON bodies of the HTTP API, defined once and used by
//! the handlers (to answer), the OpenAPI document (to describe) and the CLI
//! client (to parse). Nothing here knows actix: these are plain serde types
//! with `ToSchema`.
//!
//! Layout: `components` (records with links, lists, the missing-check),
//! `deps` (closures, the lock document, inputs keys),
//! `jobs` (builds and their jobs), `images`, `keys` (API keys), `service`
//! (health, readiness, GC, verify), `original` (the original API's
//! requests), `workers` (what workers on a cluster and the service say to
//! each other), and here the
//! error body and the `status` words shared by several answers.

pub mod components;
pub mod deps;
pub mod images;
pub mod jobs;
pub mod keys;
pub mod original;
pub mod service;
pub mod workers;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use components::*;
pub use deps::*;
pub use images::*;
pub use jobs::*;
pub use keys::*;
pub use original::*;
pub use service::*;
pub use workers::*;

/// `"error"`: the `status` of every error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorStatus {
    Error,
}

/// `"ok"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OkStatus {
    Ok,
}

/// The answer of every error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "error", "errorMessage": "component asyn tag R4.39 does not exist for architecture rocky9", "code": "not_found"}))]
pub struct ErrorBody {
    #[schema(inline)]
    pub status: ErrorStatus,
    /// What went wrong, for people.
    #[serde(rename = "errorMessage")]
    pub error_message: String,
    /// What went wrong, for programs: `bad_request`, `invalid_name`,
    /// `bad_archive`, `checksum_mismatch`, `unauthorized`, `forbidden`,
    /// `not_found`, `blob_not_found`, `method_not_allowed`, `conflict`,
    /// `too_large`, `unsupported_media_type`, `body_timeout`,
    /// `range_not_satisfiable`, `insufficient_storage`, `unavailable`,
    /// `not_ready`, `internal`.
    pub code: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: ErrorStatus::Error,
            error_message: message.into(),
            code: code.into(),
        }
    }
}
