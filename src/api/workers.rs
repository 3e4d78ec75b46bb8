//! What workers and the service say to each other: a dispatched build's
//! spec (with where to fetch each dependency), a polling worker's claim,
//! and a worker's report that it gave up.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::OkStatus;
use crate::build::execute::BuildSpec;
use crate::image::ImageSpec;

/// A dependency blob to fetch (and check) before the build.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerBlob {
    pub component: String,
    pub tag: String,
    pub blake3: String,
    /// `GET` it with the job token.
    pub url: String,
}

/// `GET /v1/jobs/{id}/spec`: what the worker runs — a component build
/// (`spec`) or an image build (`image`) — and the blobs it fetches first
/// (dependencies; an image's Dockerfile and context).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerSpec {
    #[schema(inline)]
    pub status: OkStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<BuildSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    pub blobs: Vec<WorkerBlob>,
}

/// `POST /v1/workers/claim`: a polling worker asks for work.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The worker's name (for the job's log).
    pub worker: String,
    /// The architectures it builds for (none: any).
    #[serde(default)]
    pub arch: Vec<String>,
    /// What it runs: `build` (component builds), `image` (image builds:
    /// it has podman). None: component builds only.
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// A build handed to a polling worker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Claimed {
    #[schema(inline)]
    pub status: OkStatus,
    pub job: String,
    /// The job token for it (valid while the job runs).
    pub token: String,
}

/// `POST /v1/jobs/{id}/failed`: the worker gave up.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerFailure {
    pub message: String,
}

/// `{"status": "ok"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OkStatusAnswer {
    #[schema(inline)]
    pub status: OkStatus,
}
