//! Domain vocabulary shared by every layer: validated names, the
//! (component, tag, arch) key, the records the index keeps (components,
//! images, jobs), and roles.
//!
//! Nothing here touches disk, sled or HTTP. The types derive `ToSchema` so
//! that the wire types in `api` can embed them as they are.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The longest component, tag or architecture name accepted.
pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{kind} is missing")]
    Missing { kind: &'static str },
    #[error("{kind} '{value}' is longer than {MAX_NAME_LEN} characters")]
    TooLong { kind: &'static str, value: String },
    #[error("{kind} '{value}' may only hold letters, digits and . _ + - (and no '..')")]
    Invalid { kind: &'static str, value: String },
}

/// Checks one name against `[A-Za-z0-9._+-]`, rejecting `.`/`..` tricks.
pub fn validate_name(kind: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Missing { kind });
    }
    if value.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            value: value.chars().take(40).collect(),
        });
    }
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if !ok_chars || value.contains("..") || value == "." || value.starts_with('-') {
        return Err(NameError::Invalid {
            kind,
            value: value.chars().take(80).collect(),
        });
    }
    Ok(())
}

/// Identifies one stored component build. The architecture is kept lower
/// case: `ROCKY9` and `rocky9` are the same architecture.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, ToSchema)]
pub struct ComponentKey {
    pub component: String,
    pub tag: String,
    /// Lower case.
    pub arch: String,
}

impl ComponentKey {
    pub fn new(component: &str, tag: &str, arch: &str) -> Result<Self, NameError> {
        validate_name("component", component)?;
        validate_name("tag", tag)?;
        validate_name("architecture", arch)?;
        Ok(Self {
            component: component.to_owned(),
            tag: tag.to_owned(),
            arch: arch.to_ascii_lowercase(),
        })
    }

    /// `component/tag/arch`, as used in URLs and log lines.
    pub fn display_path(&self) -> String {
        format!("{}/{}/{}", self.component, self.tag, self.arch)
    }
}

impl std::fmt::Display for ComponentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.component, self.tag, self.arch)
    }
}

/// Who asked: the identity headers build scripts send. Informational only;
/// authorisation is by API key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linux_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_username: Option<String>,
    /// The name of the API key the write was authorised by (none: a client
    /// of a trusted network, or anonymous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// What a build's `tag` named in the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RefKind {
    Tag,
    /// A branch moves: its record is rebuilt when the branch has a new commit.
    Branch,
    Commit,
}

/// Where a built component came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Source {
    /// The git repository.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Whether the tag was a git tag, a branch or a commit id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RefKind>,
    /// The URL actually fetched, when a mirror rewrite applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_from: Option<String>,
    /// The submodules checked out (recursively), each at its pinned commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub submodules: Vec<SubmodulePin>,
}

/// A submodule of a build's source, at the commit its parent pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmodulePin {
    /// Its path in the source tree (nested ones as `a/b`).
    pub path: String,
    /// Its URL as `.gitmodules` names it (relative ones resolved).
    pub url: String,
    /// The URL actually fetched, when a mirror rewrite applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_from: Option<String>,
    pub commit: String,
}

/// A component at a tag, as a recipe names it (`- epics-base: R7.0.8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct Requirement {
    pub component: String,
    pub tag: String,
}

/// One component a closure job builds, and its repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClosureStep {
    pub component: String,
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The outcome of rebuilding a component from the same inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reproducibility {
    /// True when the rebuild gave the same blake3.
    pub matched: bool,
    /// The blake3 the rebuild gave.
    pub rebuilt_blake3: String,
    pub checked: DateTime<Utc>,
    /// The rebuild's job.
    pub job: String,
}

/// A dependency as it was resolved for a build: pinned to the blob it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResolvedDependency {
    pub component: String,
    pub tag: String,
    pub arch: String,
    pub blake3: String,
}

/// What the index stores for a (component, tag, arch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Record {
    pub component: String,
    pub tag: String,
    pub arch: String,
    /// blake3 (hex) of the canonical tar.zst blob.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub blake3: String,
    /// Size in bytes of the canonical tar.zst blob.
    pub size: u64,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub uploaded_by: Identity,
    /// Set for components built by the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The dependency closure the build used, each pinned to its blob.
    #[serde(default)]
    pub dependencies: Vec<ResolvedDependency>,
    /// The direct dependencies of a built component (its recipe's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Requirement>,
    /// Built by the service: the blake3 of its inputs (source commit, recipe,
    /// dependencies' blobs, sandbox and builder image, arch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
    /// Set when the build found its inputs already built under another key
    /// and reused that output instead of building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<ResolvedDependency>,
    /// The last rebuild check (`POST .../rebuild`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducible: Option<Reproducibility>,
}

impl Record {
    pub fn key(&self) -> ComponentKey {
        ComponentKey {
            component: self.component.clone(),
            tag: self.tag.clone(),
            arch: self.arch.clone(),
        }
    }
}

/// A branch name: like other names, but `/` is allowed (`feature/x`).
pub fn validate_branch(value: &str) -> Result<(), NameError> {
    let kind = "branch";
    validate_name(kind, &value.replace('/', "_")).map_err(|e| match e {
        NameError::Invalid { .. } => NameError::Invalid {
            kind,
            value: value.chars().take(80).collect(),
        },
        other => other,
    })?;
    if value.starts_with('/') || value.ends_with('/') || value.contains("//") {
        return Err(NameError::Invalid {
            kind,
            value: value.chars().take(80).collect(),
        });
    }
    Ok(())
}

/// Identifies one image: (component, branch, arch). Images built from a
/// named Dockerfile alone (the original API) have no branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageKey {
    pub component: String,
    pub branch: Option<String>,
    pub arch: String,
}

impl ImageKey {
    pub fn new(component: &str, branch: Option<&str>, arch: &str) -> Result<Self, NameError> {
        validate_name("component", component)?;
        if let Some(b) = branch {
            validate_branch(b)?;
        }
        validate_name("architecture", arch)?;
        Ok(Self {
            component: component.to_owned(),
            branch: branch.map(str::to_owned),
            arch: arch.to_ascii_lowercase(),
        })
    }
}

impl std::fmt::Display for ImageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.branch {
            Some(b) => write!(f, "{} {} ({})", self.component, b, self.arch),
            None => write!(f, "{} ({})", self.component, self.arch),
        }
    }
}

/// What the index stores for an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageRecord {
    pub component: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub arch: String,
    /// `<registry>/<repository>:<arch>`: the moving tag.
    pub image: String,
    /// `<registry>/<repository>:<arch>-<key12>`: the immutable tag.
    pub immutable: String,
    /// Manifest digest in the registry, or the local image id when not pushed.
    pub digest: String,
    /// blake3 of the Dockerfile plus the canonical context.
    pub key: String,
    pub size: u64,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub built_by: Identity,
    /// Where the image is: `registry` or `local` (no registry configured).
    pub location: String,
}

/// What an API key may do: `read < write < admin`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role '{s}' (read, write, admin)")),
        }
    }
}

/// An API key created through the API (`POST /v1/keys`), as the index
/// keeps it: the blake3 of its secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub name: String,
    pub role: Role,
    /// blake3 (hex) of the secret.
    pub blake3: String,
    /// Patterns of the component names it may write (`*` matches any run
    /// of characters); empty: every component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    pub created: DateTime<Utc>,
    /// The admin key that created it, and the identity headers sent.
    pub created_by: Identity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (noted at most once a minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

/// When and by whom a key was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Revocation {
    pub at: DateTime<Utc>,
    pub by: Identity,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Success,
    Failed,
    Interrupted,
    /// Cancelled on request (`DELETE /v1/jobs/{id}`).
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Success | JobState::Failed | JobState::Interrupted | JobState::Cancelled
        )
    }
}

/// Where a job's current build was handed to (an executor other than the
/// service's own pool), so a replica taking the job up finds it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Dispatch {
    /// `slurm`, `kubernetes` or `worker` (a polling worker).
    pub executor: String,
    /// The executor's id for it (Slurm job id, Kubernetes Job name).
    pub remote_id: String,
    /// This hand-over's id: the worker's token names it, so a token of an
    /// earlier hand-over of the same job is refused.
    pub id: String,
    /// The component it builds.
    pub component: String,
    pub tag: String,
    pub arch: String,
    pub at: DateTime<Utc>,
}

/// One step of a job (`clone`, `recipe`, `dependencies`, `build`, `pack`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Step {
    pub name: String,
    pub state: JobState,
    pub started: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
}

/// What a job builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum JobTarget {
    /// A component from its repository.
    Component {
        component: String,
        tag: String,
        arch: String,
        /// The repository.
        url: Option<String>,
    },
    /// An image from a Dockerfile (and context) with this content key.
    Image {
        component: String,
        branch: Option<String>,
        arch: String,
        key: String,
    },
    /// The missing part of a dependency closure, in build order.
    Closure {
        arch: String,
        components: Vec<ClosureStep>,
    },
}

impl JobTarget {
    /// The components the job writes (an image's component too).
    pub fn components(&self) -> Vec<&str> {
        match self {
            JobTarget::Component { component, .. } | JobTarget::Image { component, .. } => {
                vec![component.as_str()]
            }
            JobTarget::Closure { components, .. } => {
                components.iter().map(|c| c.component.as_str()).collect()
            }
        }
    }
}

/// What a successful job produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobResult {
    /// The component record stored.
    Component(Box<Record>),
    /// The image record indexed.
    Image(Box<ImageRecord>),
}

/// A build job, as persisted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    /// `component` or `image`.
    pub kind: String,
    pub state: JobState,
    /// What the job builds (the request).
    pub target: JobTarget,
    #[serde(default)]
    pub requested_by: Identity,
    pub created: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// On failure: which step failed and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On success: what was produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    /// The single-flight key: one job at a time per key, across replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flight: Option<String>,
    /// The replica running the job (while it runs) or that ran it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Only this replica may run the job (its inputs live there: images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// How many times a replica started the job (a job whose replica died
    /// is started again once, then marked interrupted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// The build handed to a cluster or a worker, while it runs there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<Dispatch>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Job {
    /// Seconds from start to end (or now).
    pub fn duration_secs(&self) -> Option<f64> {
        let s = self.started?;
        let e = self.finished.unwrap_or_else(Utc::now);
        Some((e - s).num_milliseconds() as f64 / 1000.0)
    }
}

/// `ADBS_DEP_<NAME>`: upper case, non-alphanumerics as `_`.
pub fn dep_var(name: &str) -> String {
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ADBS_DEP_{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches() {
        assert!(validate_branch("main").is_ok());
        assert!(validate_branch("feature/new-ioc").is_ok());
        assert!(validate_branch("a//b").is_err());
        assert!(validate_branch("/a").is_err());
        assert!(validate_branch("a/../b").is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("tag", "R7.0.8").is_ok());
        assert!(validate_name("tag", "boost-1.85.0+b2_x").is_ok());
        assert!(validate_name("tag", "").is_err());
        assert!(validate_name("tag", "..").is_err());
        assert!(validate_name("tag", "a..b").is_err());
        assert!(validate_name("tag", "a/b").is_err());
        assert!(validate_name("tag", "a b").is_err());
        assert!(validate_name("tag", "-rf").is_err());
        assert!(validate_name("tag", &"x".repeat(129)).is_err());
    }

    #[test]
    fn dep_vars() {
        assert_eq!(dep_var("epics-base"), "ADBS_DEP_EPICS_BASE");
        assert_eq!(dep_var("asyn"), "ADBS_DEP_ASYN");
    }

    #[test]
    fn arch_is_case_insensitive() {
        let a = ComponentKey::new("asyn", "R4", "ROCKY9").unwrap();
        let b = ComponentKey::new("asyn", "R4", "rocky9").unwrap();
        assert_eq!(a, b);
    }
}
