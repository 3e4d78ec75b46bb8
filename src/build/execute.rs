//! Running a build the service has decided on: what a [`BuildSpec`] says
//! (the commit, the command, the sandbox, the exact dependency blobs) run
//! on a checked-out tree, wherever it runs. The service's own pool runs
//! it in-process ([`BuildHost`] backed by the store); `artifact-store
//! worker` runs the same code on a cluster node (backed by the HTTP API).
//!
//! The spec is the service's word: a worker executes it and uploads the
//! tree it produced; the record stored for it is composed by the service
//! from the spec, never from what a worker says.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::sandbox::{self, Sandbox};
use super::{artifacts, dep_var};
use crate::config::Config;
use crate::model::{Identity, Requirement, ResolvedDependency, Source};
use crate::process::LineSink;

/// Everything a build needs once the service has decided on it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildSpec {
    /// The job and the hand-over this spec belongs to.
    pub job: String,
    pub dispatch: String,
    pub component: String,
    pub tag: String,
    pub arch: String,
    /// Where to fetch the source (after mirror rewrites) and the commit.
    pub fetch_url: String,
    pub commit: String,
    pub command: String,
    /// The recipe's artifacts (what of the tree is packed); none: all.
    pub artifacts: Option<Vec<String>>,
    /// `bwrap`, `podman` or `process`.
    pub sandbox: String,
    /// The builder image (podman sandbox).
    pub image: Option<String>,
    /// The exact dependency blobs, the closure in build order.
    pub dependencies: Vec<ResolvedDependency>,
    pub timeout_secs: u64,
    /// CPUs the build may use (`ADBS_JOBS`, `MAKEFLAGS`).
    pub cpus: usize,
    /// mtimes in the tarball are clamped to this (the commit time).
    pub mtime_clamp: Option<u64>,
    /// How submodules are fetched (the service's policy).
    pub git: GitPolicy,
    /// The record the service stores for the result (besides its blob).
    pub record: RecordMeta,
}

/// The service's submodule policy, for a worker's checkout.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct GitPolicy {
    pub rewrites: std::collections::BTreeMap<String, String>,
    pub submodule_depth: u32,
    pub max_submodules: usize,
    pub allowed_hosts: Vec<String>,
    pub allow_local: bool,
}

/// What the stored record says besides its blob.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordMeta {
    pub who: Identity,
    pub source: Source,
    pub requires: Vec<Requirement>,
    pub inputs: String,
    /// A branch's record follows the branch.
    pub overwrite: bool,
}

impl BuildSpec {
    pub fn sandbox(&self) -> Result<Sandbox, String> {
        match self.sandbox.as_str() {
            "bwrap" => Ok(Sandbox::Bwrap),
            "process" => Ok(Sandbox::Process),
            "podman" => Ok(Sandbox::Podman {
                image: self
                    .image
                    .clone()
                    .ok_or("the podman sandbox needs an image")?,
            }),
            other => Err(format!("unknown sandbox {other:?}")),
        }
    }

    /// The `ADBS_*` variables (and `MAKEFLAGS`) of the build.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("ADBS_COMPONENT".to_owned(), self.component.clone()),
            ("ADBS_TAG".to_owned(), self.tag.clone()),
            ("ADBS_OS_ENVIRONMENT".to_owned(), self.arch.clone()),
            ("ADBS_SOURCE".to_owned(), sandbox::SRC_IN.to_owned()),
            ("ADBS_DEPS".to_owned(), sandbox::DEPS_IN.to_owned()),
            // the CPUs a build may use, for make and its kin
            ("ADBS_JOBS".to_owned(), self.cpus.to_string()),
            ("MAKEFLAGS".to_owned(), format!("-j{}", self.cpus)),
        ];
        for d in &self.dependencies {
            vars.push((
                dep_var(&d.component),
                format!("{}/{}/{}", sandbox::DEPS_IN, d.component, d.tag),
            ));
        }
        vars
    }
}

/// Where a build's dependencies come from and where its lines go.
pub trait BuildHost: Send + Sync {
    fn sink(&self) -> Arc<dyn LineSink>;
    /// Starts a step (its name also goes to the log as `==> name`).
    fn step(&self, name: &str);
    /// Unpacks the blob of `d` into `dest` (checking its blake3).
    fn fetch_dependency<'a>(
        &'a self,
        d: &'a ResolvedDependency,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Stages the dependencies under `work/deps`, runs the command in the
/// sandbox on `work/src` (checked out at the spec's commit), and selects
/// the artifacts: the tree to pack.
pub async fn execute(
    host: &dyn BuildHost,
    cfg: &Config,
    spec: &BuildSpec,
    work: &Path,
) -> Result<PathBuf, String> {
    let label = format!("{} {}", spec.component, spec.tag);
    let sink = host.sink();
    std::fs::create_dir_all(work.join("deps")).map_err(|e| e.to_string())?;
    for d in &spec.dependencies {
        sink.line(&format!("using {} {} ({})", d.component, d.tag, d.blake3));
        let dest = work.join("deps").join(&d.component);
        host.fetch_dependency(d, &dest)
            .await
            .map_err(|e| format!("dependency {} {}: {e}", d.component, d.tag))?;
    }
    let sb = spec.sandbox()?;
    host.step(&format!("build {label}"));
    sink.line(&format!("sandbox: {}", sb.name()));
    let out = sandbox::run(
        &sb,
        cfg,
        sandbox::Job {
            work,
            command: &spec.command,
            vars: spec.vars(),
            timeout: Duration::from_secs(spec.timeout_secs),
        },
        sink,
    )
    .await?;
    host.step(&format!("pack {label}"));
    artifacts::select(&out, work, spec.artifacts.as_deref())
}
