//! `artifact-store worker`: runs one build the service handed over, on any
//! machine that reaches the service over HTTP(S) — a Slurm node, a
//! Kubernetes pod, a plain VM with `--poll`.
//!
//! It fetches the build's spec with its job token, checks the source out
//! at the spec's commit (the service's submodule policy), fetches each
//! dependency blob (blake3 checked as it streams) through the public
//! download API, runs the same pipeline as the service's own pool
//! ([`crate::build::execute`]) in the same sandbox, packs the tree and
//! uploads it; its log lines (`==> step` lines start steps) go to the
//! service as they come. It decides nothing: what to build and what the
//! record says are the service's.

mod image;
mod log;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::blocking::Client;

use crate::api::{ClaimRequest, Claimed, WorkerBlob, WorkerFailure, WorkerSpec};
use crate::build::execute::{self, BuildHost, BuildSpec};
use crate::build::git;
use crate::config::Config;
use crate::model::ResolvedDependency;
use crate::process::LineSink;
use crate::store::pack::{self, PackOptions};
use crate::store::unpack;

pub use log::LogPoster;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Service(String),
    #[error("{0}")]
    Build(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The service and this worker's credentials.
#[derive(Clone)]
pub struct Service {
    pub base: String,
    http: Client,
}

impl Service {
    pub fn new(base: &str) -> Result<Service, WorkerError> {
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(None)
            .build()
            .map_err(|e| WorkerError::Service(e.to_string()))?;
        Ok(Service {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn check(
        &self,
        what: &str,
        r: reqwest::Result<reqwest::blocking::Response>,
    ) -> Result<reqwest::blocking::Response, WorkerError> {
        let r =
            r.map_err(|e| WorkerError::Service(format!("{what}: cannot reach the service: {e}")))?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status();
        let text = r.text().unwrap_or_default();
        let msg = serde_json::from_str::<crate::api::ErrorBody>(&text)
            .map(|e| e.error_message)
            .unwrap_or(text);
        Err(WorkerError::Service(format!("{what}: {status}: {msg}")))
    }
}

/// How this machine runs builds.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where builds are unpacked.
    pub work_root: PathBuf,
    /// Run a spec that names the `process` sandbox (no isolation: the
    /// build would see this worker's token). Refused unless set.
    pub allow_process_sandbox: bool,
}

/// Runs the build of `job` with `token`; `Ok` when its result is stored.
pub fn run_one(
    svc: &Service,
    job: &str,
    token: &str,
    cfg: &Config,
    opts: &Options,
) -> Result<(), WorkerError> {
    let r = svc.check(
        "fetching the build's spec",
        svc.http
            .get(svc.url(&format!("/v1/jobs/{job}/spec")))
            .bearer_auth(token)
            .send(),
    )?;
    let ws: WorkerSpec = r
        .json()
        .map_err(|e| WorkerError::Service(format!("the build's spec: {e}")))?;
    let poster = LogPoster::start(svc.clone(), job.to_owned(), token.to_owned());
    let res = match (&ws.image, &ws.spec) {
        (Some(spec), _) => image::run(svc, token, spec, &ws.blobs, cfg, &opts.work_root, &poster),
        (None, Some(spec)) if spec.sandbox == "process" && !opts.allow_process_sandbox => {
            Err(WorkerError::Build(
                "the build names the `process` sandbox (no isolation: it could read this worker's \
                 token); this worker runs it only with --allow-process-sandbox"
                    .into(),
            ))
        }
        (None, Some(spec)) => build(svc, token, spec, &ws.blobs, cfg, &opts.work_root, &poster),
        (None, None) => Err(WorkerError::Service(
            "the service's spec names neither a build nor an image build (a newer service?)".into(),
        )),
    };
    poster.finish();
    if let Err(e) = &res {
        // the service writes the failure into the job (the step it failed in)
        eprintln!("artifact-store worker: the build failed: {e}");
    }
    if let Err(e) = &res {
        let _ = svc
            .http
            .post(svc.url(&format!("/v1/jobs/{job}/failed")))
            .bearer_auth(token)
            .json(&WorkerFailure {
                message: e.to_string(),
            })
            .send();
    }
    res
}

fn build(
    svc: &Service,
    token: &str,
    spec: &BuildSpec,
    blobs: &[WorkerBlob],
    cfg: &Config,
    work_root: &Path,
    poster: &LogPoster,
) -> Result<(), WorkerError> {
    let label = format!("{} {}", spec.component, spec.tag);
    std::fs::create_dir_all(work_root)?;
    let work = tempfile::Builder::new()
        .prefix("artifact-store-build-")
        .tempdir_in(work_root)?;
    poster.line(&format!(
        "worker on {} building {label} ({})",
        crate::app::host_name(),
        spec.arch
    ));
    poster.step(&format!("clone {label}"));
    let g = git::Git {
        allow_local: spec.git.allow_local,
        rewrites: spec.git.rewrites.clone(),
        cache: None,
        submodule_depth: spec.git.submodule_depth,
        max_submodules: spec.git.max_submodules,
        allowed_hosts: spec.git.allowed_hosts.clone(),
        limits: git::cache::Limits {
            max_bytes: None,
            min_free_bytes: 0,
            floor_dir: work.path().to_owned(),
            max_time: Duration::from_secs(3600),
        },
        tmp_dir: work.path().to_owned(),
    };
    let src = work.path().join("src");
    let checkout = g
        .checkout(&spec.fetch_url, &spec.commit, &src, &|l| poster.line(l))
        .map_err(WorkerError::Build)?;
    if checkout.commit != spec.commit {
        return Err(WorkerError::Build(format!(
            "checked out {} where the spec says {}",
            checkout.commit, spec.commit
        )));
    }
    let host = WorkerHost {
        svc: svc.clone(),
        token: token.to_owned(),
        blobs: blobs.to_vec(),
        poster: poster.clone(),
        limits: cfg.unpack_limits(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tree = rt
        .block_on(execute::execute(&host, cfg, spec, work.path()))
        .map_err(WorkerError::Build)?;
    drop(rt);
    let tarball = pack_tree(&tree, spec, cfg, work.path())?;
    let size = std::fs::metadata(&tarball)?.len();
    poster.line(&format!("uploading the result ({size} bytes)"));
    let r = upload(svc, token, &spec.job, &tarball)?;
    let v: serde_json::Value = r.json().unwrap_or_default();
    poster.line(&format!(
        "stored: blake3 {}",
        v["component"]["blake3"].as_str().unwrap_or("?")
    ));
    Ok(())
}

/// How long a worker keeps trying to hand its result to a service that
/// does not answer (restarting, or a replica going away).
const UPLOAD_PATIENCE: Duration = Duration::from_secs(180);

/// `PUT /v1/jobs/{id}/result`, again while the service cannot be reached
/// or answers 5xx (a restart must not throw a finished build away); a 4xx
/// is the service's final word.
fn upload(
    svc: &Service,
    token: &str,
    job: &str,
    tarball: &Path,
) -> Result<reqwest::blocking::Response, WorkerError> {
    patiently(svc, "storing the result", || {
        Ok(svc
            .http
            .put(svc.url(&format!("/v1/jobs/{job}/result")))
            .bearer_auth(token)
            .header("content-type", "application/zstd")
            .body(std::fs::File::open(tarball)?))
    })
}

/// Sends what `request` makes, again while the service cannot be reached
/// or answers 5xx (for [`UPLOAD_PATIENCE`]); a 4xx is its final word.
fn patiently(
    svc: &Service,
    what: &str,
    request: impl Fn() -> Result<reqwest::blocking::RequestBuilder, WorkerError>,
) -> Result<reqwest::blocking::Response, WorkerError> {
    let deadline = std::time::Instant::now() + UPLOAD_PATIENCE;
    let mut wait = Duration::from_millis(500);
    loop {
        let sent = request()?.send();
        let again = match &sent {
            Err(_) => true,
            Ok(r) => r.status().is_server_error(),
        };
        if !again || std::time::Instant::now() + wait > deadline {
            return svc.check(what, sent);
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

/// Packs the built tree as the canonical tarball (the service normalises
/// it again, to the same bytes).
fn pack_tree(
    tree: &Path,
    spec: &BuildSpec,
    cfg: &Config,
    work: &Path,
) -> Result<PathBuf, WorkerError> {
    let opts = PackOptions {
        prefix: spec.tag.clone(),
        mtime_clamp: spec.mtime_clamp,
        level: cfg.zstd_level,
        max_bytes: cfg.max_unpacked_bytes,
        max_entries: cfg.max_unpacked_entries,
    };
    let path = work.join("result.tar.zst");
    let f = std::fs::File::create(&path)?;
    let f = pack::pack_dir(tree, &opts, std::io::BufWriter::new(f))
        .map_err(|e| WorkerError::Build(format!("packing the result: {e}")))?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(path)
}

/// Dependencies from the service's download API, lines to the service.
struct WorkerHost {
    svc: Service,
    token: String,
    blobs: Vec<WorkerBlob>,
    poster: LogPoster,
    /// What one dependency may unpack to (before its blake3 is known).
    limits: unpack::Limits,
}

impl BuildHost for WorkerHost {
    fn sink(&self) -> Arc<dyn LineSink> {
        Arc::new(self.poster.clone())
    }

    fn step(&self, name: &str) {
        self.poster.step(name);
    }

    fn fetch_dependency<'a>(
        &'a self,
        d: &'a ResolvedDependency,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), String>> {
        let blob = self.blobs.iter().find(|b| b.blake3 == d.blake3).cloned();
        let (svc, token, dest) = (self.svc.clone(), self.token.clone(), dest.to_owned());
        let limits = self.limits;
        Box::pin(async move {
            let blob = blob.ok_or("the spec names no URL for it")?;
            tokio::task::spawn_blocking(move || fetch_blob(&svc, &token, &blob, &dest, limits))
                .await
                .map_err(|e| e.to_string())?
        })
    }
}

/// Downloads a blob, unpacks it into `dest` as it streams (within the
/// upload limits), and checks its blake3: on a mismatch nothing is kept.
fn fetch_blob(
    svc: &Service,
    token: &str,
    blob: &WorkerBlob,
    dest: &Path,
    limits: unpack::Limits,
) -> Result<(), String> {
    // from the service as this worker reaches it (`--server`), whatever
    // public URL the service names: the token goes there and nowhere else
    let url = url::Url::parse(&blob.url).map_err(|e| format!("{}: {e}", blob.url))?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let rb = svc.http.get(svc.url(&path)).bearer_auth(token);
    let resp = svc
        .check(&format!("fetching {}", blob.component), rb.send())
        .map_err(|e| e.to_string())?;
    // a redirect to the object store is followed by the client (the token
    // is not sent across origins by reqwest)
    std::fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    let mut hashing = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 20, resp),
        hasher: blake3::Hasher::new(),
    };
    let res = zstd::stream::read::Decoder::new(&mut hashing)
        .map_err(|e| e.to_string())
        .and_then(|dec| unpack::unpack_safe(dec, dest, limits).map_err(|e| e.to_string()));
    let res = res.and_then(|_| {
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| e.to_string())?;
        let got = hashing.hasher.finalize().to_hex().to_string();
        if got == blob.blake3 {
            Ok(())
        } else {
            Err(format!(
                "blake3 mismatch: expected {}, got {got}",
                blob.blake3
            ))
        }
    });
    if res.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    res
}

struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// `--poll`: claims builds waiting for a worker (for `arches`) and runs
/// them, one at a time, until stopped.
pub fn poll(
    svc: &Service,
    key: &str,
    name: &str,
    arches: &[String],
    cfg: &Config,
    opts: &Options,
    once: bool,
) -> Result<(), WorkerError> {
    // image builds only where podman is
    let mut kinds = vec!["build".to_owned()];
    if crate::process::on_path("podman") {
        kinds.push("image".into());
    } else {
        eprintln!("artifact-store worker: no podman here: claiming component builds only");
    }
    loop {
        let r = svc.check(
            "claiming a build",
            svc.http
                .post(svc.url("/v1/workers/claim"))
                .bearer_auth(key)
                .json(&ClaimRequest {
                    worker: name.to_owned(),
                    arch: arches.to_vec(),
                    kinds: kinds.clone(),
                })
                .send(),
        )?;
        if r.status() == reqwest::StatusCode::NO_CONTENT {
            if once {
                return Ok(());
            }
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        let c: Claimed = r
            .json()
            .map_err(|e| WorkerError::Service(format!("the claim's answer: {e}")))?;
        eprintln!("artifact-store worker: running job {}", c.job);
        if let Err(e) = run_one(svc, &c.job, &c.token, cfg, opts) {
            eprintln!("artifact-store worker: job {} failed: {e}", c.job);
        }
        if once {
            return Ok(());
        }
    }
}

/// Where builds are unpacked: `--work-dir`, else `$TMPDIR` (or `/tmp`).
pub fn default_work_root() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}
