//! Jobs: durable records in the index, a bounded worker pool started once at
//! start-up, single-flight by key, steps and live logs.
//!
//! Main types: [`Jobs`] (submit, get, wait, list), [`Job`] (the persisted
//! record), [`JobCtx`] (what running work uses to log and mark steps).
//!
//! Architecture invariant: a job's work never writes the index directly on
//! failure paths; work either finishes and stores, or fails and stores
//! nothing. A job found `queued` or `running` at start-up was cut off by a
//! crash and is marked `interrupted`.

mod log;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};

pub use log::{redact, JobLog};

use crate::index::{Index, IndexError};
use crate::model::{Identity, Job, JobResult, JobState, JobTarget, Step};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the job queue is shut down")]
    Closed,
}

/// A failure of the work itself: the step that failed and the message.
#[derive(Debug, Clone)]
pub struct WorkError {
    pub step: String,
    pub message: String,
}

impl std::fmt::Display for WorkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step '{}' failed: {}", self.step, self.message)
    }
}

pub type WorkFuture = Pin<Box<dyn Future<Output = Result<JobResult, WorkError>> + Send>>;
type Work = Box<dyn FnOnce(JobCtx) -> WorkFuture + Send>;

struct Queued {
    id: String,
    work: Work,
}

/// Running work's handle on its job: log lines and steps.
#[derive(Clone)]
pub struct JobCtx {
    pub id: String,
    pub log: JobLog,
    jobs: Jobs,
}

impl JobCtx {
    /// Starts a step (finishing the previous one as a success).
    pub fn step(&self, name: &str) {
        self.log.line(&format!("==> {name}"));
        self.jobs.update(&self.id, false, |j| {
            let now = Utc::now();
            if let Some(last) = j.steps.last_mut() {
                if last.state == JobState::Running {
                    last.state = JobState::Success;
                    last.finished = Some(now);
                }
            }
            j.steps.push(Step {
                name: name.to_owned(),
                state: JobState::Running,
                started: now,
                finished: None,
            });
        });
    }

    /// A `WorkError` for the current step.
    pub fn fail(&self, message: impl Into<String>) -> WorkError {
        let step = self
            .jobs
            .get(&self.id)
            .ok()
            .flatten()
            .and_then(|j| j.steps.last().map(|s| s.name.clone()))
            .unwrap_or_else(|| "start".into());
        WorkError {
            step,
            message: message.into(),
        }
    }
}

struct Shared {
    index: Arc<dyn Index>,
    logs: PathBuf,
    /// Paths hidden from logs and errors (see [`log::redact`]).
    redact: Arc<Vec<String>>,
    log_cap: u64,
    /// Final-state notifications for jobs of this process.
    live: Mutex<HashMap<String, watch::Sender<JobState>>>,
    /// Single-flight: key -> job id of the job in flight for it.
    inflight: Mutex<HashMap<String, String>>,
    queue: mpsc::UnboundedSender<Queued>,
}

/// The job system; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    shared: Arc<Shared>,
}

fn new_id() -> String {
    let ms = Utc::now().timestamp_millis() as u64;
    format!("{ms:012x}{:06x}", rand::random::<u32>() & 0xff_ffff)
}

impl Jobs {
    /// Marks jobs cut off by a crash `interrupted`, and starts `workers`
    /// worker tasks on the current tokio runtime.
    pub fn start(
        index: Arc<dyn Index>,
        logs: PathBuf,
        log_cap: u64,
        workers: usize,
        redact: Vec<String>,
    ) -> Result<Self, JobError> {
        std::fs::create_dir_all(&logs)?;
        for mut job in index.unfinished_jobs()? {
            job.state = JobState::Interrupted;
            job.finished = Some(Utc::now());
            job.error = Some("the service stopped while this job ran; nothing was stored".into());
            for s in job.steps.iter_mut().filter(|s| !s.state.is_final()) {
                s.state = JobState::Interrupted;
            }
            index.put_job(&job, true)?;
        }
        let (tx, rx) = mpsc::unbounded_channel::<Queued>();
        let jobs = Jobs {
            shared: Arc::new(Shared {
                index,
                logs,
                log_cap,
                redact: Arc::new(redact),
                live: Mutex::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
                queue: tx,
            }),
        };
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let jobs = jobs.clone();
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(q) = next else { break };
                    // Each job runs in its own task, so a panic fails that job only.
                    let id = q.id.clone();
                    let j = jobs.clone();
                    let res = tokio::spawn(async move { j.run(q).await }).await;
                    if let Err(e) = res {
                        jobs.finish(
                            &id,
                            Err(WorkError {
                                step: "internal".into(),
                                message: format!("the job panicked: {e}"),
                            }),
                        );
                    }
                }
            });
        }
        Ok(jobs)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.shared.logs.join(format!("{id}.log"))
    }

    fn put(&self, job: &Job, durable: bool) {
        if let Err(e) = self.shared.index.put_job(job, durable) {
            tracing::error!(job = %job.id, "cannot persist job: {e}");
        }
    }

    fn update(&self, id: &str, durable: bool, f: impl FnOnce(&mut Job)) {
        if let Ok(Some(mut j)) = self.get(id) {
            f(&mut j);
            self.put(&j, durable);
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        Ok(self.shared.index.job(id)?)
    }

    /// The newest jobs first.
    pub fn list(&self, limit: usize) -> Result<Vec<Job>, JobError> {
        Ok(self.shared.index.jobs(limit)?)
    }

    /// Queues `work` unless a job for `key` is already in flight; returns
    /// the job id and whether it is a new job.
    pub fn submit<F>(
        &self,
        key: &str,
        kind: &str,
        target: JobTarget,
        who: Identity,
        work: F,
    ) -> Result<(String, bool), JobError>
    where
        F: FnOnce(JobCtx) -> WorkFuture + Send + 'static,
    {
        let mut inflight = self.shared.inflight.lock().map_err(|_| JobError::Closed)?;
        if let Some(id) = inflight.get(key) {
            return Ok((id.clone(), false));
        }
        let id = new_id();
        let job = Job {
            id: id.clone(),
            kind: kind.to_owned(),
            state: JobState::Queued,
            target,
            requested_by: who,
            created: Utc::now(),
            started: None,
            finished: None,
            steps: Vec::new(),
            error: None,
            result: None,
        };
        self.shared.index.put_job(&job, true)?;
        let (tx, _) = watch::channel(JobState::Queued);
        if let Ok(mut live) = self.shared.live.lock() {
            live.insert(id.clone(), tx);
        }
        inflight.insert(key.to_owned(), id.clone());
        drop(inflight);
        let key = key.to_owned();
        let jobs = self.clone();
        let wrapped: Work = Box::new(move |ctx: JobCtx| {
            let fut = work(ctx);
            Box::pin(async move {
                let r = fut.await;
                if let Ok(mut m) = jobs.shared.inflight.lock() {
                    m.remove(&key);
                }
                r
            })
        });
        self.shared
            .queue
            .send(Queued {
                id: id.clone(),
                work: wrapped,
            })
            .map_err(|_| JobError::Closed)?;
        Ok((id, true))
    }

    async fn run(&self, q: Queued) {
        let log = match JobLog::create(
            &self.log_path(&q.id),
            self.shared.log_cap,
            self.shared.redact.clone(),
        ) {
            Ok(l) => l,
            Err(e) => {
                self.finish(
                    &q.id,
                    Err(WorkError {
                        step: "start".into(),
                        message: format!("cannot create the log: {e}"),
                    }),
                );
                return;
            }
        };
        self.update(&q.id, false, |j| {
            j.state = JobState::Running;
            j.started = Some(Utc::now());
        });
        self.notify(&q.id, JobState::Running);
        let ctx = JobCtx {
            id: q.id.clone(),
            log: log.clone(),
            jobs: self.clone(),
        };
        let res = (q.work)(ctx).await;
        match &res {
            Ok(_) => log.line("==> success"),
            Err(e) => log.line(&format!("==> failed: {e}")),
        }
        log.close();
        self.finish(&q.id, res);
    }

    fn finish(&self, id: &str, res: Result<JobResult, WorkError>) {
        let state = if res.is_ok() {
            JobState::Success
        } else {
            JobState::Failed
        };
        self.update(id, true, |j| {
            let now = Utc::now();
            j.state = state;
            j.finished = Some(now);
            if let Some(last) = j.steps.last_mut() {
                if !last.state.is_final() {
                    last.state = state;
                    last.finished = Some(now);
                }
            }
            match res {
                Ok(v) => j.result = Some(v),
                Err(e) => j.error = Some(log::redact(&self.shared.redact, &e.to_string())),
            }
        });
        if let Ok(Some(j)) = self.get(id) {
            let result = if state == JobState::Success {
                "success"
            } else {
                "failed"
            };
            crate::metrics::job_finished(&j.kind, result, j.duration_secs().unwrap_or(0.0));
        }
        self.notify(id, state);
        if let Ok(mut live) = self.shared.live.lock() {
            live.remove(id);
        }
    }

    fn notify(&self, id: &str, s: JobState) {
        if let Ok(live) = self.shared.live.lock() {
            if let Some(tx) = live.get(id) {
                let _ = tx.send(s);
            }
        }
    }

    /// Waits up to `timeout` for the job to end; returns the job as it is then.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<Job>, JobError> {
        let rx = self
            .shared
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(id).map(|tx| tx.subscribe()));
        if let Some(mut rx) = rx {
            let _ = tokio::time::timeout(timeout, async {
                while !rx.borrow_and_update().is_final() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        self.get(id)
    }
}
