//! Container images (`[image]`): podman, the registry, where image builds
//! run.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Executor;

/// Container images: built with podman, pushed to an OCI registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Registry `host:port` to push to; unset: images stay in local podman storage.
    pub registry: Option<String>,
    /// Verify the registry's TLS certificate (false for a plain-HTTP registry).
    pub tls_verify: bool,
    /// How an image is built (then `-f DOCKERFILE -t NAME CONTEXT` is added).
    pub podman_build: Vec<String>,
    /// How an image is pushed (then `--tls-verify`, `--digestfile F` and the name).
    pub podman_push: Vec<String>,
    /// Where `POST /image {"dockerfile": name}` finds Dockerfiles (original API).
    pub dockerfiles_dir: Option<PathBuf>,
    /// Largest Dockerfile accepted (413 above it).
    pub max_dockerfile_bytes: u64,
    /// Largest build context upload accepted (413 above it).
    pub max_context_bytes: u64,
    /// Where image builds run: `local` (podman on the service's host, the
    /// default), `slurm`, `kubernetes` (`[build.slurm]`,
    /// `[build.kubernetes]`) or `worker` (a polling worker). Not `local`:
    /// `registry` must be set (the worker pushes there).
    pub executor: Executor,
    /// Kubernetes: the image the worker runs in for image builds (it needs
    /// podman); unset: `build.kubernetes.image`.
    pub worker_image: Option<String>,
    /// Check a worker's report in the registry (the digest of the
    /// immutable tag) before indexing it; off: reports are taken unchecked.
    pub verify_push: bool,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            registry: None,
            tls_verify: true,
            podman_build: ["podman", "build", "--isolation", "chroot"]
                .map(String::from)
                .to_vec(),
            podman_push: ["podman", "push"].map(String::from).to_vec(),
            dockerfiles_dir: None,
            max_dockerfile_bytes: 1 << 20,
            max_context_bytes: 1 << 30,
            executor: Executor::Local,
            worker_image: None,
            verify_push: true,
        }
    }
}
