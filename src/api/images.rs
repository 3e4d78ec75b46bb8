//! Container images: what a built image is, and how to ask for one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{JobLinks, OkStatus};
use crate::model::{Identity, ImageRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageLocation {
    /// Pushed to the configured registry.
    Registry,
    /// Only in the service's local podman storage (no registry is configured).
    Local,
}

/// A built image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageView {
    /// `<registry>/<repository>:<arch>`: the moving tag.
    #[serde(rename = "imageName")]
    pub image_name: String,
    /// `<registry>/<repository>:<arch>-<key12>`: the tag that never moves.
    #[serde(rename = "immutableName")]
    pub immutable_name: String,
    /// Manifest digest in the registry, or the local image id.
    pub digest: String,
    /// `podman pull <repository>@<digest>` (registry images only).
    #[serde(rename = "pullCommand")]
    pub pull_command: Option<String>,
    #[schema(inline)]
    pub location: ImageLocation,
    /// Set for local images.
    pub note: Option<String>,
    pub component: String,
    pub branch: Option<String>,
    pub arch: String,
    /// blake3 of the Dockerfile plus the canonical context.
    pub key: String,
    pub size: u64,
    pub created: DateTime<Utc>,
    pub built_by: Identity,
}

impl From<&ImageRecord> for ImageView {
    fn from(rec: &ImageRecord) -> Self {
        let repo = rec
            .image
            .rsplit_once(':')
            .map(|(r, _)| r)
            .unwrap_or(&rec.image);
        let registry = rec.location == "registry";
        Self {
            image_name: rec.image.clone(),
            immutable_name: rec.immutable.clone(),
            digest: rec.digest.clone(),
            pull_command: registry.then(|| format!("podman pull {repo}@{}", rec.digest)),
            location: if registry {
                ImageLocation::Registry
            } else {
                ImageLocation::Local
            },
            note: (!registry).then(|| {
                "no registry is configured: the image is only in the service's local podman storage"
                    .to_owned()
            }),
            component: rec.component.clone(),
            branch: rec.branch.clone(),
            arch: rec.arch.clone(),
            key: rec.key.clone(),
            size: rec.size,
            created: rec.created,
            built_by: rec.built_by.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    Found,
    Success,
}

/// An image: `found` (a lookup) or `success` (a build that ended, or `cached`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageAnswer {
    #[schema(inline)]
    pub status: ImageStatus,
    /// True when an identical image was already built: no job ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    /// The job's id, when a build ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<JobLinks>,
    #[serde(flatten)]
    pub image: ImageView,
}

/// What an image build request answers: done (or cached), or still running.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ImageOutcome {
    Done(Box<ImageAnswer>),
    Accepted(super::JobAccepted),
}

/// A page of images.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageList {
    #[schema(inline)]
    pub status: OkStatus,
    pub images: Vec<ImageView>,
}

/// An image build with the Dockerfile uploaded (multipart/form-data fields).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageBuildForm {
    /// The Dockerfile.
    #[schema(value_type = String, content_media_type = "application/octet-stream")]
    pub dockerfile: Vec<u8>,
    /// The build context: a tar, tar.gz or tar.zst (unpacked safely).
    #[schema(value_type = Option<String>, content_media_type = "application/octet-stream")]
    pub context: Option<Vec<u8>>,
    pub component: String,
    pub branch: String,
    /// Absent or `"null"`: the configured `default_arch`.
    pub architecture: Option<String>,
    /// Alias of `architecture`.
    pub arch: Option<String>,
    /// `true` or `1`: build without podman's layer cache.
    pub no_cache: Option<String>,
}

/// An image build from a Dockerfile in the configured `image.dockerfiles_dir`
/// (the original API; fields from the JSON body or the query string).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ImageBuildJson {
    /// The file name in `image.dockerfiles_dir`.
    pub dockerfile: String,
    /// Default: the `dockerfile` name.
    pub component: Option<String>,
    pub branch: Option<String>,
    /// Absent or `"null"`: the configured `default_arch`.
    pub architecture: Option<String>,
    /// Alias of `architecture`.
    pub arch: Option<String>,
    /// `true` or `1`: build without podman's layer cache.
    pub no_cache: Option<String>,
}
