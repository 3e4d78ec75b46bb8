//! One image build, wherever it runs: `podman build` of a Dockerfile and
//! its context, then `podman push` of both tags with the digest read
//! back. The service's own jobs and `artifact-store worker` (an image
//! build handed to Slurm, Kubernetes or a polling worker) run this same
//! code; what to build, the names and the record are the service's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Identity;
use crate::process::{self, LineSink, Outcome, RunSpec};

/// Everything an image build needs once the service decided on it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageSpec {
    /// The job and the hand-over this spec belongs to.
    pub job: String,
    pub dispatch: String,
    pub component: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub arch: String,
    /// blake3 of the Dockerfile plus the canonical context.
    pub key: String,
    /// The moving name (`<registry>/<repository>:<arch>`) and the
    /// immutable one (`...:<arch>-<key12>`).
    pub image: String,
    pub immutable: String,
    pub no_cache: bool,
    /// The registry pushed to (`host:port`); none: the image stays in the
    /// local podman storage (never for a build handed to a worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    pub tls_verify: bool,
    /// `image.podman_build` and `image.podman_push` of the service.
    pub podman_build: Vec<String>,
    pub podman_push: Vec<String>,
    pub timeout_secs: u64,
    /// The blob holding `image/Dockerfile` and `image/context/` (a
    /// canonical tar.zst): a worker fetches it with its job token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default)]
    pub built_by: Identity,
}

/// What a build made: podman's image id, the registry's digest (none when
/// not pushed), the image's size.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Built {
    pub image_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub size: u64,
}

/// A build's log and steps.
pub trait ImageHost: Send + Sync {
    fn sink(&self) -> Arc<dyn LineSink>;
    fn step(&self, name: &str);
}

/// A log that also notes podman's "layer not known" race.
struct Watch {
    log: Arc<dyn LineSink>,
    seen: AtomicBool,
}

impl LineSink for Watch {
    fn line(&self, s: &str) {
        if s.contains("layer not known") {
            self.seen.store(true, Ordering::Relaxed);
        }
        self.log.line(s);
    }
}

/// Builds `dockerfile` with `context` (and pushes when the spec names a
/// registry); `work` holds podman's id and digest files.
pub async fn execute(
    host: &dyn ImageHost,
    spec: &ImageSpec,
    dockerfile: &Path,
    context: &Path,
    work: &Path,
) -> Result<Built, String> {
    let timeout = Duration::from_secs(spec.timeout_secs);
    let iidfile = work.join("iid");
    host.step("build");
    let mut argv: Vec<String> = Vec::new();
    if spec.no_cache {
        argv.push("--no-cache".into());
    }
    argv.extend([
        "-f".into(),
        dockerfile.display().to_string(),
        "-t".into(),
        spec.image.clone(),
        "-t".into(),
        spec.immutable.clone(),
        "--iidfile".into(),
        iidfile.display().to_string(),
        context.display().to_string(),
    ]);
    run(
        host,
        process::podman(&spec.podman_build, argv, work, timeout),
    )
    .await?;
    let image_id = std::fs::read_to_string(&iidfile)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let size = image_size(host, &spec.podman_build, &image_id, work).await;
    if spec.registry.is_none() {
        host.sink()
            .line("no registry is configured: the image stays in local podman storage");
        return Ok(Built {
            image_id,
            digest: None,
            size,
        });
    }
    host.step("push");
    let digestfile: PathBuf = work.join("digest");
    let mut digest = String::new();
    for name in [&spec.immutable, &spec.image] {
        let argv = vec![
            format!("--tls-verify={}", spec.tls_verify),
            "--digestfile".into(),
            digestfile.display().to_string(),
            name.clone(),
        ];
        run(
            host,
            process::podman(&spec.podman_push, argv, work, timeout),
        )
        .await?;
        digest = std::fs::read_to_string(&digestfile)
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("podman push wrote no digest: {e}"))?;
    }
    Ok(Built {
        image_id,
        digest: Some(digest),
        size,
    })
}

/// Runs a podman command; once more when podman's storage changed under
/// it (an image removed meanwhile: "layer not known"), which is podman's
/// race, not the build's fault.
async fn run(host: &dyn ImageHost, spec: RunSpec) -> Result<(), String> {
    for attempt in 0..2 {
        let sink = Arc::new(Watch {
            log: host.sink(),
            seen: AtomicBool::new(false),
        });
        match process::run(&spec, sink.clone()).await {
            Ok(Outcome::Success) => return Ok(()),
            Ok(o) => {
                if attempt == 0 && sink.seen.load(Ordering::Relaxed) {
                    host.sink().line(
                        "podman's storage changed during the build (layer not known): trying once more",
                    );
                    continue;
                }
                return Err(format!("{} {o}", spec.program));
            }
            Err(e) => return Err(format!("{}: {e}", spec.program)),
        }
    }
    Err(format!("{} failed", spec.program))
}

async fn image_size(host: &dyn ImageHost, podman_build: &[String], id: &str, cwd: &Path) -> u64 {
    let podman = process::podman_program(podman_build);
    match process::output(
        podman,
        &["image", "inspect", "--format", "{{.Size}}", id],
        cwd,
    )
    .await
    {
        Some(size) => size.parse().unwrap_or(0),
        None => {
            host.sink().line("could not read the image size");
            0
        }
    }
}
