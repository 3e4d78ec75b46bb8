//! Executors: where a build the service decided on runs when it is not the
//! service's own pool. Each hands `artifact-store worker` to an engine the
//! lab already runs — Slurm (`slurm`), Kubernetes (`kubernetes`) — or
//! leaves it for a polling worker to claim (`worker`); the service then
//! follows the engine's state while the worker posts its log and uploads
//! the result (see `build::dispatch`).

pub mod kubernetes;
pub mod slurm;

use std::time::Duration;

use futures_util::future::BoxFuture;

/// What an engine is asked to run.
#[derive(Debug, Clone)]
pub struct WorkerRun {
    /// The job and the hand-over.
    pub job: String,
    pub dispatch: String,
    /// The worker's job token (a secret: never on a command line).
    pub token: String,
    /// The service's URL as the worker reaches it.
    pub server: String,
    /// The `artifact-store` binary on the node.
    pub command: String,
    pub component: String,
    pub tag: String,
    pub arch: String,
    /// CPUs the build uses.
    pub cpus: usize,
    /// The build's wall-clock limit (the engine's limit is a bit more).
    pub timeout: Duration,
    /// The builder image (Kubernetes: the pod's image).
    pub image: Option<String>,
}

impl WorkerRun {
    /// The worker's arguments (after the binary).
    pub fn args(&self) -> Vec<String> {
        vec![
            "worker".into(),
            "--server".into(),
            self.server.clone(),
            "--job".into(),
            self.job.clone(),
        ]
    }
}

/// An engine's word on a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteState {
    /// Waiting for resources.
    Pending,
    Running,
    /// Ended well (the worker exited 0).
    Completed,
    /// Ended badly: the engine's reason.
    Failed(String),
    /// Killed at the engine's time limit.
    TimedOut,
    Cancelled,
    /// The engine no longer knows it, or lost the node: the reason.
    Lost(String),
}

impl RemoteState {
    pub fn is_final(&self) -> bool {
        !matches!(self, RemoteState::Pending | RemoteState::Running)
    }
}

/// An engine that runs workers.
pub trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    /// Starts a worker; the engine's id for it.
    fn submit<'a>(&'a self, run: &'a WorkerRun) -> BoxFuture<'a, Result<String, String>>;
    fn state<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<RemoteState, String>>;
    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), String>>;
}
