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
//! Main type: [`Images`]. Architecture invariant: the index entry is
//! replaced only after a successful push, so a failed build or push leaves
//! the previous image entry intact.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tempfile::TempDir;

use crate::build::Submitted;
use crate::components::RecordCopies;
use crate::config::Config;
use crate::index::{Index, RawRecord};
use crate::jobs::{JobCtx, JobError, Jobs, WorkError};
use crate::model::{Identity, ImageKey, ImageRecord, JobResult, JobTarget};
use crate::process::{self, Outcome, RunSpec};
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

/// A job's log that also notes podman's "layer not known" race.
struct Watch {
    log: crate::jobs::JobLog,
    seen: std::sync::atomic::AtomicBool,
}

impl process::LineSink for Watch {
    fn line(&self, s: &str) {
        if s.contains("layer not known") {
            self.seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.log.line(s);
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
    jobs: Jobs,
    cfg: Arc<Config>,
    copies: RecordCopies,
    /// One build per image key at a time, in request order.
    locks: Arc<std::sync::Mutex<std::collections::HashMap<ImageKey, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Images {
    pub fn new(
        index: Arc<dyn Index>,
        scratch: Scratch,
        jobs: Jobs,
        cfg: Arc<Config>,
        copies: RecordCopies,
    ) -> Self {
        Self {
            index,
            scratch,
            jobs,
            cfg,
            copies,
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
        if !process::on_path(podman) {
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
        let (job, new) =
            self.jobs
                .submit_pinned(&flight, "image", target, who.clone(), move |ctx| {
                    Box::pin(async move {
                        let lock = this.lock_for(&k);
                        let _one_at_a_time = lock.lock().await;
                        let rec = this.build(&ctx, &k, prepared, no_cache, who).await?;
                        Ok(JobResult::Image(Box::new(rec)))
                    })
                })?;
        Ok(Requested::Job(Submitted { job, new }))
    }

    async fn build(
        &self,
        ctx: &JobCtx,
        key: &ImageKey,
        p: Prepared,
        no_cache: bool,
        who: Identity,
    ) -> Result<ImageRecord, WorkError> {
        let repo = repository(key);
        let key12 = &p.key[..12];
        let base = match &self.cfg.image.registry {
            Some(r) => format!("{}/{repo}", r.trim_end_matches('/')),
            None => format!("localhost/{repo}"),
        };
        let moving = format!("{base}:{}", key.arch);
        let immutable = format!("{base}:{}-{key12}", key.arch);
        let timeout = Duration::from_secs(self.cfg.build.timeout_secs);
        let iidfile = p.work.path().join("iid");

        ctx.step("build");
        let mut argv: Vec<String> = Vec::new();
        if no_cache {
            argv.push("--no-cache".into());
        }
        argv.extend([
            "-f".into(),
            p.dockerfile().display().to_string(),
            "-t".into(),
            moving.clone(),
            "-t".into(),
            immutable.clone(),
            "--iidfile".into(),
            iidfile.display().to_string(),
            p.context().display().to_string(),
        ]);
        let spec = process::podman(&self.cfg.image.podman_build, argv, p.work.path(), timeout);
        self.run(ctx, spec).await?;
        let image_id = std::fs::read_to_string(&iidfile)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let size = self.image_size(ctx, &image_id, p.work.path()).await;

        let (digest, location) = if self.cfg.image.registry.is_some() {
            ctx.step("push");
            let digestfile = p.work.path().join("digest");
            let mut digest = String::new();
            for name in [&immutable, &moving] {
                let argv = vec![
                    format!("--tls-verify={}", self.cfg.image.tls_verify),
                    "--digestfile".into(),
                    digestfile.display().to_string(),
                    name.clone(),
                ];
                let spec =
                    process::podman(&self.cfg.image.podman_push, argv, p.work.path(), timeout);
                self.run(ctx, spec).await?;
                digest = std::fs::read_to_string(&digestfile)
                    .map(|s| s.trim().to_owned())
                    .map_err(|e| ctx.fail(format!("podman push wrote no digest: {e}")))?;
            }
            (digest, "registry")
        } else {
            ctx.log
                .line("no registry is configured: the image stays in local podman storage");
            (image_id, "local")
        };

        ctx.step("index");
        let rec = ImageRecord {
            component: key.component.clone(),
            branch: key.branch.clone(),
            arch: key.arch.clone(),
            image: moving,
            immutable,
            digest,
            key: p.key.clone(),
            size,
            created: Utc::now(),
            built_by: who,
            location: location.into(),
        };
        let (index, r, copies) = (self.index.clone(), rec.clone(), self.copies.clone());
        tokio::task::spawn_blocking(move || {
            index.put_image(&r)?;
            copies.write_image(&r);
            Ok::<_, crate::index::IndexError>(())
        })
        .await
        .map_err(|e| ctx.fail(e.to_string()))?
        .map_err(|e| ctx.fail(e.to_string()))?;
        Ok(rec)
    }

    /// Runs a podman command; once more when podman's storage changed
    /// under it (an image removed meanwhile: "layer not known"), which is
    /// podman's race, not the build's fault.
    async fn run(&self, ctx: &JobCtx, spec: RunSpec) -> Result<(), WorkError> {
        for attempt in 0..2 {
            let sink = Arc::new(Watch {
                log: ctx.log.clone(),
                seen: Default::default(),
            });
            match process::run(&spec, sink.clone()).await {
                Ok(Outcome::Success) => return Ok(()),
                Ok(o) => {
                    if attempt == 0 && sink.seen.load(std::sync::atomic::Ordering::Relaxed) {
                        ctx.log.line(
                            "podman's storage changed during the build (layer not known): trying once more",
                        );
                        continue;
                    }
                    return Err(ctx.fail(format!("{} {o}", spec.program)));
                }
                Err(e) => return Err(ctx.fail(e.to_string())),
            }
        }
        Err(ctx.fail(format!("{} failed", spec.program)))
    }

    async fn image_size(&self, ctx: &JobCtx, id: &str, cwd: &Path) -> u64 {
        let podman = process::podman_program(&self.cfg.image.podman_build);
        match process::output(
            podman,
            &["image", "inspect", "--format", "{{.Size}}", id],
            cwd,
        )
        .await
        {
            Some(size) => size.parse().unwrap_or(0),
            None => {
                ctx.log.line("could not read the image size");
                0
            }
        }
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
