//! Domain vocabulary shared by every layer: validated names, the
//! (component, tag, arch) key, and the record the index keeps for it.
//!
//! Nothing here touches disk, sled or HTTP.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct ComponentKey {
    pub component: String,
    pub tag: String,
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linux_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_username: Option<String>,
}

/// Where a built component came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A dependency as it was resolved for a build: pinned to the blob it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedDependency {
    pub component: String,
    pub tag: String,
    pub arch: String,
    pub blake3: String,
}

/// What the index stores for a (component, tag, arch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub component: String,
    pub tag: String,
    pub arch: String,
    /// blake3 (hex) of the canonical tar.zst blob.
    pub blake3: String,
    /// Size in bytes of the canonical tar.zst blob.
    pub size: u64,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub uploaded_by: Identity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default)]
    pub dependencies: Vec<ResolvedDependency>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    fn arch_is_case_insensitive() {
        let a = ComponentKey::new("asyn", "R4", "ROCKY9").unwrap();
        let b = ComponentKey::new("asyn", "R4", "rocky9").unwrap();
        assert_eq!(a, b);
    }
}
