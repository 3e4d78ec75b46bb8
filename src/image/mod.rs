//! Container images: a Dockerfile (plus an optional build context) is built
//! with rootless podman, pushed to the configured OCI registry, and indexed
//! by (component, branch, arch).
//!
//! Naming (documented in the README): the repository is
//! `<component>-<branch>-image` (or the Dockerfile's name alone, original
//! API), each part lower-cased with every run of characters outside `a-z0-9`
//! turned into one `-`; the moving tag is the arch, the immutable tag
//! `<arch>-<first 12 hex of the content key>`. The content key is the
//! blake3 of the Dockerfile and the canonical (deterministically re-packed)
//! context, so an unchanged build is a cache hit.
//!
//! Where the build runs is `[image] executor`: the service's host
//! (`local`, the default), or `artifact-store worker` through Slurm,
//! Kubernetes or a polling worker, handed over like a component build
//! ([`crate::build::dispatch`]): the Dockerfile and context go to the worker
//! as a blob it fetches with its job token, the worker builds and pushes
//! ([`execute`], the same code), and reports what it pushed; the service
//! checks the digest in the registry and writes the record.
//!
//! Main type: [`Images`]. Architecture invariant: the index entry is
//! replaced only after a successful push, so a failed build or push leaves
//! the previous image entry intact.

pub mod execute;
mod verify;

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tempfile::TempDir;

pub use execute::{Built, ImageSpec};

use crate::build::dispatch::{self, HandOver, WorkerError};
use crate::build::{Builder, Submitted};
use crate::components::RecordCopies;
use crate::config::{Config, Executor};
use crate::index::{Index, RawRecord};
use crate::jobs::{JobCtx, JobError, WorkError};
use crate::model::{Identity, ImageKey, ImageRecord, JobResult, JobTarget};
use crate::process::{self, LineSink};
use crate::store::pack::{pack_dir, PackOptions};
use crate::store::{unpack, Scratch, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    #[error(transparent)]
    Jobs(#[from] JobError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
}

impl From<std::io::Error> for ImageError {
    fn from(e: std::io::Error) -> Self {
        ImageError::Store(StoreError::Io(e))
    }
}

/// One part of an OCI repository name: lower case, runs of other
/// characters as one `-`, no leading or trailing `-`.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// The repository (without registry) of an image key.
pub fn repository(key: &ImageKey) -> String {
    match &key.branch {
        Some(b) => format!("{}-{}-image", sanitize(&key.component), sanitize(b)),
        None => sanitize(&key.component),
    }
}

/// A prepared build: the context directory with the Dockerfile beside it,
/// and the content key.
pub struct Prepared {
    pub work: TempDir,
    pub key: String,
}

impl Prepared {
    fn dockerfile(&self) -> PathBuf {
        self.work.path().join("Dockerfile")
    }
    fn context(&self) -> PathBuf {
        self.work.path().join("context")
    }
}

/// The answer to a build request.
pub enum Requested {
    /// Same Dockerfile and context as the indexed image: nothing to do.
    Cached(Box<ImageRecord>),
    Job(Submitted),
}

#[derive(Clone)]
pub struct Images {
    index: Arc<dyn Index>,
    scratch: Scratch,
    cfg: Arc<Config>,
    copies: RecordCopies,
    /// The job queue, and hand-overs to workers (`[image] executor`).
    builder: Builder,
    /// One build per image key at a time, in request order.
    locks: Arc<std::sync::Mutex<std::collections::HashMap<ImageKey, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Images {
    pub fn new(
        index: Arc<dyn Index>,
        scratch: Scratch,
        cfg: Arc<Config>,
        copies: RecordCopies,
        builder: Builder,
    ) -> Self {
        Self {
            index,
            scratch,
            cfg,
            copies,
            builder,
            locks: Default::default(),
        }
    }

    fn lock_for(&self, key: &ImageKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key.clone()).or_default().clone()
    }

    pub fn lookup(&self, key: &ImageKey) -> Result<Option<ImageRecord>, ImageError> {
        Ok(self.index.image(key)?)
    }

    /// The record as stored, undecoded (for answers cached by its bytes).
    pub fn raw(&self, key: &ImageKey) -> Result<Option<RawRecord>, ImageError> {
        Ok(self.index.image_raw(key)?)
    }

    /// Scratch space for request bodies (Dockerfiles, contexts).
    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    pub fn list(&self, prefix: &str, limit: usize) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.index.images(prefix, limit)?)
    }

    /// The Dockerfile at `dockerfiles_dir/<name>` (original API).
    pub fn named_dockerfile(&self, name: &str) -> Result<PathBuf, ImageError> {
        let dir = self.cfg.image.dockerfiles_dir.as_ref().ok_or_else(|| {
            ImageError::BadRequest("no dockerfiles_dir is configured (image.dockerfiles_dir): upload the Dockerfile instead".into())
        })?;
        if name.is_empty() || name.contains('/') || name.contains("..") || name.starts_with('.') {
            return Err(ImageError::BadRequest(format!(
                "dockerfile '{name}' must be a plain file name inside the dockerfiles directory"
            )));
        }
        let p = dir.join(name);
        if !p.is_file() {
            return Err(ImageError::BadRequest(format!(
                "no Dockerfile named '{name}' in {}",
                dir.display()
            )));
        }
        Ok(p)
    }

    /// Checks that podman runs and the registry answers; 503 material otherwise.
    pub fn check_ready(&self) -> Result<(), ImageError> {
        let podman = process::podman_program(&self.cfg.image.podman_build);
        // with a worker executor podman runs on the workers, not here
        if self.cfg.image.executor == Executor::Local && !process::on_path(podman) {
            return Err(ImageError::Unavailable(format!(
                "podman is not available on the service host ('{podman}' not found)"
            )));
        }
        if let Some(reg) = &self.cfg.image.registry {
            let addr = if reg.contains(':') {
                reg.clone()
            } else {
                format!("{reg}:443")
            };
            let reachable = addr
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
            if !reachable {
                return Err(ImageError::Unavailable(format!(
                    "the registry {reg} is not reachable"
                )));
            }
        }
        Ok(())
    }

    /// Copies the Dockerfile and unpacks the context (refusing paths that
    /// escape), and computes the content key. Blocking.
    pub fn prepare(
        &self,
        dockerfile: &Path,
        context: Option<&Path>,
    ) -> Result<Prepared, ImageError> {
        let work = self.scratch.temp_dir()?;
        let df = std::fs::read(dockerfile)?;
        if df.len() as u64 > self.cfg.image.max_dockerfile_bytes {
            return Err(ImageError::TooLarge(format!(
                "the Dockerfile is larger than {} bytes (image.max_dockerfile_bytes)",
                self.cfg.image.max_dockerfile_bytes
            )));
        }
        std::fs::write(work.path().join("Dockerfile"), &df)?;
        let ctx = work.path().join("context");
        std::fs::create_dir_all(&ctx)?;
        let mut h = blake3::Hasher::new();
        h.update(b"artifact-store image key v1\0");
        h.update(&(df.len() as u64).to_le_bytes());
        h.update(&df);
        if let Some(c) = context {
            let f = std::fs::File::open(c)?;
            let tar = unpack::open_tar(f)?;
            unpack::unpack_safe(tar, &ctx, self.cfg.unpack_limits())?;
            let opts = PackOptions {
                prefix: "context".into(),
                mtime_clamp: Some(0),
                level: 1,
                max_bytes: self.cfg.max_unpacked_bytes,
                max_entries: self.cfg.max_unpacked_entries,
            };
            let sink = pack_dir(&ctx, &opts, blake3::Hasher::new())?;
            h.update(b"context\0");
            h.update(sink.finalize().as_bytes());
        }
        Ok(Prepared {
            work,
            key: h.finalize().to_hex().to_string(),
        })
    }

    /// A cache hit, or a build job. Requests for the same image key *and*
    /// content share one job; different content for one image key builds in
    /// request order (the last request decides what the moving tag names).
    pub fn request(
        &self,
        key: &ImageKey,
        prepared: Prepared,
        no_cache: bool,
        who: Identity,
    ) -> Result<Requested, ImageError> {
        if !no_cache {
            if let Some(rec) = self.index.image(key)? {
                if rec.key == prepared.key {
                    return Ok(Requested::Cached(Box::new(rec)));
                }
            }
        }
        self.check_ready()?;
        let target = JobTarget::Image {
            component: key.component.clone(),
            branch: key.branch.clone(),
            arch: key.arch.clone(),
            key: prepared.key.clone(),
        };
        let flight = format!(
            "image:{}/{}/{}/{}{}",
            key.component,
            key.branch.as_deref().unwrap_or(""),
            key.arch,
            prepared.key,
            if no_cache { "/no-cache" } else { "" }
        );
        let this = self.clone();
        let k = key.clone();
        let (job, new) = self.builder.jobs().submit_pinned(
            &flight,
            "image",
            target,
            who.clone(),
            move |ctx| {
                Box::pin(async move {
                    let lock = this.lock_for(&k);
                    let _one_at_a_time = lock.lock().await;
                    let rec = this.build(&ctx, &k, prepared, no_cache, who).await?;
                    Ok(JobResult::Image(Box::new(rec)))
                })
            },
        )?;
        Ok(Requested::Job(Submitted { job, new }))
    }

    /// The spec of a build of `key` from `p`.
    fn spec(&self, key: &ImageKey, p: &Prepared, no_cache: bool, who: Identity) -> ImageSpec {
        let repo = repository(key);
        let base = match &self.cfg.image.registry {
            Some(r) => format!("{}/{repo}", r.trim_end_matches('/')),
            None => format!("localhost/{repo}"),
        };
        ImageSpec {
            job: String::new(),
            dispatch: String::new(),
            component: key.component.clone(),
            branch: key.branch.clone(),
            arch: key.arch.clone(),
            key: p.key.clone(),
            image: format!("{base}:{}", key.arch),
            immutable: format!("{base}:{}-{}", key.arch, &p.key[..12]),
            no_cache,
            registry: self.cfg.image.registry.clone(),
            tls_verify: self.cfg.image.tls_verify,
            podman_build: self.cfg.image.podman_build.clone(),
            podman_push: self.cfg.image.podman_push.clone(),
            timeout_secs: self.cfg.build.timeout_secs,
            context: None,
            built_by: who,
        }
    }

    async fn build(
        &self,
        ctx: &JobCtx,
        key: &ImageKey,
        p: Prepared,
        no_cache: bool,
        who: Identity,
    ) -> Result<ImageRecord, WorkError> {
        let mut spec = self.spec(key, &p, no_cache, who);
        spec.job = ctx.id.clone();
        if self.cfg.image.executor != Executor::Local {
            return self.dispatch(ctx, spec, p).await;
        }
        let built = execute::execute(ctx, &spec, &p.dockerfile(), &p.context(), p.work.path())
            .await
            .map_err(|e| ctx.fail(e))?;
        ctx.step("index");
        let rec = record(&spec, &built);
        let this = self.clone();
        let r = rec.clone();
        tokio::task::spawn_blocking(move || this.put_record(&r))
            .await
            .map_err(|e| ctx.fail(e.to_string()))?
            .map_err(|e| ctx.fail(e.to_string()))?;
        Ok(rec)
    }

    fn put_record(&self, rec: &ImageRecord) -> Result<(), crate::index::IndexError> {
        self.index.put_image(rec)?;
        self.copies.write_image(rec);
        Ok(())
    }

    /// Hands the build to a worker (`[image] executor`): the Dockerfile
    /// and context as a blob, the spec naming it; the record once the
    /// worker's push is checked.
    async fn dispatch(
        &self,
        ctx: &JobCtx,
        mut spec: ImageSpec,
        p: Prepared,
    ) -> Result<ImageRecord, WorkError> {
        let label = match &spec.branch {
            Some(b) => format!("{} {b}", spec.component),
            None => spec.component.clone(),
        };
        ctx.step(&format!("dispatch image {label}"));
        let components = self.builder.components().clone();
        let work = p.work.path().to_owned();
        let context = tokio::task::spawn_blocking(move || components.put_context(&work))
            .await
            .map_err(|e| ctx.fail(e.to_string()))?
            .map_err(|e| ctx.fail(format!("cannot keep the build context for the worker: {e}")))?;
        drop(p);
        spec.dispatch = dispatch::new_dispatch_id();
        spec.context = Some(context);
        let body = serde_json::to_vec(&spec).map_err(|e| ctx.fail(e.to_string()))?;
        self.builder
            .hand_over(
                ctx,
                HandOver {
                    id: spec.dispatch.clone(),
                    executor: self.cfg.image.executor,
                    spec_key: dispatch::image_spec_key,
                    spec: body,
                    component: spec.component.clone(),
                    tag: spec.branch.clone().unwrap_or_default(),
                    arch: spec.arch.clone(),
                    cpus: self.cfg.build_jobs(),
                    timeout: Duration::from_secs(spec.timeout_secs),
                    image: self.cfg.image.worker_image.clone(),
                },
            )
            .await
    }

    /// The image build a worker's token names (checked), if it is one.
    pub fn worker_spec(&self, token: &str, job: &str) -> Result<Option<ImageSpec>, WorkerError> {
        self.builder
            .handed_spec(token, job, dispatch::image_spec_key)
    }

    /// Checks what a worker says it pushed: a manifest digest, the one the
    /// registry names for the spec's immutable tag (unless
    /// `image.verify_push` is off).
    pub async fn verify_pushed(&self, spec: &ImageSpec, built: &Built) -> Result<(), WorkerError> {
        let digest = built.digest.as_deref().unwrap_or_default();
        if !verify::is_digest(digest) {
            return Err(WorkerError::Rejected(format!(
                "'{digest}' is not a manifest digest (sha256:<64 hex>)"
            )));
        }
        if !self.cfg.image.verify_push {
            tracing::warn!(image = %spec.immutable, %digest, "image.verify_push is off: a worker's report taken unchecked");
            return Ok(());
        }
        verify::pushed(spec, digest).await.map_err(|r| match r {
            verify::Refusal::Wrong(m) => WorkerError::Rejected(m),
            verify::Refusal::Unavailable(m) => WorkerError::Unavailable(m),
        })
    }

    /// Indexes what a worker pushed (checked with [`Images::verify_pushed`]),
    /// once per hand-over (blocking). The record is the spec's; the worker
    /// only says what podman made.
    pub fn store_worker_image(
        &self,
        token: &str,
        job: &str,
        spec: &ImageSpec,
        built: &Built,
    ) -> Result<ImageRecord, WorkerError> {
        self.builder.store_once(token, job, |_| {
            let rec = record(spec, built);
            self.put_record(&rec).map_err(JobError::from)?;
            let v = serde_json::to_vec(&rec).unwrap_or_default();
            Ok((rec, v))
        })
    }
}

/// The record of a build from its spec and what podman made.
fn record(spec: &ImageSpec, built: &Built) -> ImageRecord {
    let (digest, location) = match &built.digest {
        Some(d) => (d.clone(), "registry"),
        None => (built.image_id.clone(), "local"),
    };
    ImageRecord {
        component: spec.component.clone(),
        branch: spec.branch.clone(),
        arch: spec.arch.clone(),
        image: spec.image.clone(),
        immutable: spec.immutable.clone(),
        digest,
        key: spec.key.clone(),
        size: built.size,
        created: Utc::now(),
        built_by: spec.built_by.clone(),
        location: location.into(),
    }
}

/// A job's log and steps, for [`execute::execute`] on the service's host.
impl execute::ImageHost for JobCtx {
    fn sink(&self) -> Arc<dyn LineSink> {
        Arc::new(self.log.clone())
    }
    fn step(&self, name: &str) {
        JobCtx::step(self, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(sanitize("Test_IOC"), "test-ioc");
        assert_eq!(sanitize("feature/New..Thing"), "feature-new-thing");
        assert_eq!(sanitize("--x--"), "x");
        let k = ImageKey::new("test-ioc", Some("dev/patrick"), "ROCKY9").unwrap();
        assert_eq!(repository(&k), "test-ioc-dev-patrick-image");
        let k = ImageKey::new("test-ioc-dev-patrick-rocky9", None, "rocky9").unwrap();
        assert_eq!(repository(&k), "test-ioc-dev-patrick-rocky9");
    }
}
