//! Where builds run: the executors and their settings (`[build.slurm]`,
//! `[build.kubernetes]`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a build runs once the service decided what to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// In the service's own worker pool (the default).
    Local,
    /// An `artifact-store worker` job submitted to Slurm (`[build.slurm]`).
    Slurm,
    /// A Kubernetes `batch/v1` Job running `artifact-store worker`
    /// (`[build.kubernetes]`).
    Kubernetes,
    /// Whichever `artifact-store worker --poll` claims it first.
    Worker,
}

impl Executor {
    pub fn name(self) -> &'static str {
        match self {
            Executor::Local => "local",
            Executor::Slurm => "slurm",
            Executor::Kubernetes => "kubernetes",
            Executor::Worker => "worker",
        }
    }
}

/// Builds handed to Slurm: `sbatch` on this host (a Slurm submit host),
/// states from `squeue`/`scontrol`, `scancel` to cancel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// The job's time limit in minutes; 0: `build.timeout_secs` rounded up.
    pub time_limit_minutes: u64,
    /// CPUs asked for (`--cpus-per-task`); 0: `build.jobs` (all cores).
    pub cpus: usize,
    /// Memory asked for in MiB (`--mem`); 0: the partition's default.
    pub memory_mb: u64,
    /// `slurm.conf` to use (exported as `SLURM_CONF` to the Slurm commands).
    pub conf: Option<PathBuf>,
    /// Where `sbatch`, `squeue`, `scontrol`, `scancel` are (else on PATH).
    pub bin_dir: Option<PathBuf>,
    /// The job's own output (the worker's stderr, before it reaches the
    /// service), on the node: an `sbatch --output` pattern.
    pub output: String,
    /// More `sbatch` arguments, e.g. `["--qos=build"]`.
    pub extra_args: Vec<String>,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        Self {
            partition: None,
            account: None,
            time_limit_minutes: 0,
            cpus: 0,
            memory_mb: 0,
            conf: None,
            bin_dir: None,
            output: "/tmp/artifact-store-worker-%j.out".into(),
            extra_args: Vec::new(),
        }
    }
}

/// Builds handed to Kubernetes: a `batch/v1` Job per build in `namespace`,
/// the worker's token in a Secret, watched until it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    pub namespace: String,
    /// The image with `artifact-store` and the build tools, when the arch
    /// has no `image` of its own.
    pub image: Option<String>,
    pub service_account: Option<String>,
    /// CPU and memory requests and limits (`cpu = "4"`, `memory = "8Gi"`).
    pub cpu: String,
    pub memory: String,
    /// Finished Jobs are deleted by the cluster after this long.
    pub ttl_seconds_after_finished: u32,
    /// The worker command inside the image.
    pub worker: String,
    /// Node selector labels.
    pub node_selector: std::collections::BTreeMap<String, String>,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            image: None,
            service_account: None,
            cpu: "2".into(),
            memory: "4Gi".into(),
            ttl_seconds_after_finished: 3600,
            worker: "/usr/local/bin/artifact-store".into(),
            node_selector: Default::default(),
        }
    }
}
