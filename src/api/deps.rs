//! Dependency resolution for build scripts: the closure of a recipe (or of
//! a list) in one call, pinned to blobs; the lock document; inputs keys.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ComponentRecord, JobLinks, OkStatus};
use crate::model::{Requirement, Source};

/// What to resolve: a recipe's text, a list, or a lock to verify.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ResolveRequest {
    /// A `config.yaml` (any shape the recipe parser accepts): its
    /// dependencies for `arch` are the roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// Or the roots as a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<Requirement>>,
    /// Or a lock document: verified (every entry still stored with its
    /// blake3) rather than resolved again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockDocument>,
    /// The architecture (alias `architecture`); absent: the lock's, else
    /// the configured `default_arch`.
    #[serde(
        alias = "architecture",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub arch: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    Stored,
    Missing,
}

/// One component of a closure.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClosureEntry {
    pub component: String,
    pub tag: String,
    pub arch: String,
    #[schema(inline)]
    pub state: EntryState,
    /// Its direct dependencies.
    pub dependencies: Vec<Requirement>,
    /// Stored: the record with its links (`blake3`, `size`,
    /// `download_url`, `blob_url`, `source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<ComponentRecord>,
    /// Missing: where it would be built from (`url`, and the `commit` its
    /// tag names now); absent when the repository is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResolveStatus {
    /// Every component of the closure is stored (`lock` is set).
    Complete,
    /// Some are missing (listed in `missing`).
    Incomplete,
}

/// A closure in build order: every entry after its dependencies.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResolveAnswer {
    #[schema(inline)]
    pub status: ResolveStatus,
    pub arch: String,
    /// The roots (a recipe's dependencies, or the list asked for).
    pub roots: Vec<Requirement>,
    pub entries: Vec<ClosureEntry>,
    /// How many entries are stored.
    pub stored: usize,
    /// The entries not stored, in build order.
    pub missing: Vec<Requirement>,
    /// The lock document of the closure, when complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockDocument>,
    /// `build_missing=true`: the job building the missing entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<JobLinks>,
}

/// The lock's format version this service writes and reads.
pub const LOCK_VERSION: u32 = 1;

/// A resolved closure, pinned: given back to `POST /v1/resolve`, it is
/// verified rather than resolved again. Written by `artifact-store deps
/// fetch` (as `deps.lock.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LockDocument {
    /// `1`.
    #[serde(rename = "lockVersion")]
    pub lock_version: u32,
    pub arch: String,
    pub roots: Vec<Requirement>,
    /// In build order.
    pub components: Vec<LockedComponent>,
}

/// One pinned component of a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LockedComponent {
    pub component: String,
    pub tag: String,
    /// blake3 of its canonical tar.zst.
    pub blake3: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Its direct dependencies.
    #[serde(default)]
    pub dependencies: Vec<Requirement>,
}

/// Whether an artifact with these inputs exists (`GET /v1/inputs/{key}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InputsAnswer {
    #[schema(inline)]
    pub status: OkStatus,
    pub inputs: String,
    pub found: bool,
    /// The records built from these inputs (under any tag).
    pub components: Vec<ComponentRecord>,
}
