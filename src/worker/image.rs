//! An image build on a worker: the Dockerfile and context fetched as one
//! blob (blake3 checked as it streams, unpacked within the limits), then
//! the service's own pipeline ([`crate::image::execute`]): `podman build`,
//! `podman push` of both tags; what podman made goes back to the service
//! (`PUT /v1/jobs/{id}/image`), which checks it in the registry and writes
//! the record.

use std::path::Path;
use std::sync::Arc;

use super::{fetch_blob, patiently, LogPoster, Service, WorkerError};
use crate::api::WorkerBlob;
use crate::config::Config;
use crate::image::execute::{self, ImageHost, ImageSpec};
use crate::process::LineSink;

pub fn run(
    svc: &Service,
    token: &str,
    spec: &ImageSpec,
    blobs: &[WorkerBlob],
    cfg: &Config,
    work_root: &Path,
    poster: &LogPoster,
) -> Result<(), WorkerError> {
    let blob = blobs
        .iter()
        .find(|b| Some(&b.blake3) == spec.context.as_ref())
        .ok_or_else(|| {
            WorkerError::Service("the image build's spec names no context blob".into())
        })?;
    if spec.registry.is_none() {
        return Err(WorkerError::Service(
            "the image build names no registry: a worker's image would stay on the worker".into(),
        ));
    }
    std::fs::create_dir_all(work_root)?;
    let work = tempfile::Builder::new()
        .prefix("artifact-store-image-")
        .tempdir_in(work_root)?;
    poster.line(&format!(
        "worker on {} building image {} ({})",
        crate::app::host_name(),
        spec.immutable,
        spec.arch
    ));
    poster.step("context");
    let unpacked = work.path().join("in");
    fetch_blob(svc, token, blob, &unpacked, cfg.unpack_limits())
        .map_err(|e| WorkerError::Build(format!("fetching the Dockerfile and context: {e}")))?;
    let root = unpacked.join("image");
    let dockerfile = root.join("Dockerfile");
    let context = root.join("context");
    // what the service packed: a regular Dockerfile and a context directory
    let is = |p: &Path, dir: bool| {
        std::fs::symlink_metadata(p).is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() })
    };
    if !is(&dockerfile, false) || !is(&context, true) {
        return Err(WorkerError::Build(
            "the context blob holds no image/Dockerfile and image/context/".into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let built = rt
        .block_on(execute::execute(
            poster,
            spec,
            &dockerfile,
            &context,
            work.path(),
        ))
        .map_err(WorkerError::Build)?;
    drop(rt);
    poster.step("report");
    poster.line(&format!(
        "pushed {} as {}",
        spec.immutable,
        built.digest.as_deref().unwrap_or("?")
    ));
    patiently(svc, "reporting the image", || {
        Ok(svc
            .http
            .put(svc.url(&format!("/v1/jobs/{}/image", spec.job)))
            .bearer_auth(token)
            .json(&built))
    })?;
    Ok(())
}

/// Lines and steps to the service.
impl ImageHost for LogPoster {
    fn sink(&self) -> Arc<dyn LineSink> {
        Arc::new(self.clone())
    }
    fn step(&self, name: &str) {
        LogPoster::step(self, name)
    }
}
