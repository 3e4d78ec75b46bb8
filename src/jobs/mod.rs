//! Jobs: durable records in the index, queued there and claimed by a
//! bounded pool of workers on any replica that shares the index;
//! single-flight by key (across replicas), steps, live logs, and leases so
//! a job whose replica died is started again elsewhere or marked
//! interrupted.
//!
//! Main types: [`Jobs`] (submit, get, wait, list, logs), [`Job`] (the
//! persisted record), [`JobCtx`] (what running work uses to log and mark
//! steps), [`Runner`] (turns a claimed job's record back into work).
//!
//! A job is data: its kind and target say what to do, so any replica can
//! run it ([`Jobs::submit`]). Work whose inputs live on one replica (an
//! uploaded image context) is pinned to it ([`Jobs::submit_pinned`]).
//!
//! Architecture invariant: a job's work never writes the index directly on
//! failure paths; work either finishes and stores, or fails and stores
//! nothing. With an index of its own (sled), a job found `queued` or
//! `running` at start-up was cut off by a crash and is marked
//! `interrupted`; with a shared index, the job's lease tells.

mod log;
pub mod token;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{watch, Notify};

pub use log::{redact, JobLog};

use crate::index::{Enqueued, Index, IndexError};
use crate::model::{Dispatch, Identity, Job, JobResult, JobState, JobTarget, Step};
use crate::store::BlobStore;

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
pub type Work = Box<dyn FnOnce(JobCtx) -> WorkFuture + Send>;

/// Turns a claimed job's record back into work (any replica runs it).
pub trait Runner: Send + Sync + 'static {
    /// The work for `job`, or `None` when this kind cannot run from its
    /// record alone.
    fn work(&self, job: &Job) -> Option<Work>;
    /// Stops what `job` handed to a cluster (it was cancelled).
    fn cancel_dispatch(&self, _job: &Job) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

/// Why a job token is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the job token is not valid (or has expired)")]
    Invalid,
    #[error("the job token is for another job")]
    OtherJob,
    #[error("the job has ended: its token is no longer valid")]
    Ended,
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// How the job system is set up.
pub struct JobsConfig {
    pub logs: PathBuf,
    pub log_cap: u64,
    pub workers: usize,
    /// Paths hidden from logs and errors (see [`log::redact`]).
    pub redact: Vec<String>,
    /// This process's name among the replicas.
    pub replica: String,
    /// How long a claimed job is held without a renewal.
    pub lease: Duration,
    /// Where logs go for other replicas to read (shared stores only).
    pub archive: Option<Arc<dyn BlobStore>>,
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
        self.jobs.update(&self.id, |j| {
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
    cfg: JobsConfig,
    redact: Arc<Vec<String>>,
    /// State changes of jobs this process submitted or runs (waiters).
    live: Mutex<HashMap<String, watch::Sender<JobState>>>,
    /// Work of jobs pinned to this replica, until a worker claims them.
    pinned: Mutex<HashMap<String, Work>>,
    /// Logs of the jobs running here (for the archive).
    running: Mutex<HashMap<String, JobLog>>,
    runner: OnceLock<Arc<dyn Runner>>,
    /// Wakes a worker when a job is queued here.
    wake: Notify,
    /// The key of job tokens (shared by replicas through the index).
    token_key: OnceLock<[u8; 32]>,
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

/// Where a job's log can be read.
pub enum LogSource {
    /// A file on this replica (growing while the job runs here).
    Local(PathBuf),
    /// A copy kept in the blob store by the replica that ran it (complete
    /// once the job ended; refreshed while it runs).
    Archived(Vec<u8>),
    /// No log (yet).
    None,
}

impl Jobs {
    /// Marks jobs cut off by a crash `interrupted` (own index only), and
    /// starts the workers (and, with a shared index, the lease keeper) on
    /// the current tokio runtime. Call [`Jobs::set_runner`] before work is
    /// queued.
    pub fn start(index: Arc<dyn Index>, cfg: JobsConfig) -> Result<Self, JobError> {
        std::fs::create_dir_all(&cfg.logs)?;
        if !index.shared() {
            for mut job in index.unfinished_jobs()? {
                if job.dispatch.is_some() && job.pinned.is_none() {
                    // its build runs on a cluster: taken up again, the job
                    // finds it there (no second build)
                    job.state = JobState::Queued;
                    job.replica = None;
                } else {
                    interrupt(
                        &mut job,
                        "the service stopped while this job ran; nothing was stored",
                    );
                }
                index.put_job(&job, true)?;
            }
        }
        let jobs = Jobs {
            shared: Arc::new(Shared {
                index,
                redact: Arc::new(cfg.redact.clone()),
                cfg,
                live: Mutex::new(HashMap::new()),
                pinned: Mutex::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
                runner: OnceLock::new(),
                wake: Notify::new(),
                token_key: OnceLock::new(),
            }),
        };
        worker::start(&jobs);
        Ok(jobs)
    }

    /// Sets what turns claimed jobs into work (once).
    pub fn set_runner(&self, runner: Arc<dyn Runner>) {
        let _ = self.shared.runner.set(runner);
    }

    /// This process's name among the replicas.
    pub fn replica(&self) -> &str {
        &self.shared.cfg.replica
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.shared.cfg.logs.join(format!("{id}.log"))
    }

    /// Where the log of `id` can be read from here.
    pub fn log_source(&self, id: &str) -> LogSource {
        let path = self.log_path(id);
        if path.is_file() {
            return LogSource::Local(path);
        }
        if let Some(a) = &self.shared.cfg.archive {
            if let Ok(Some(v)) = a.get_object(&log_object(id)) {
                return LogSource::Archived(v);
            }
        }
        match self
            .shared
            .index
            .job_log(id, 0, self.shared.cfg.log_cap as usize)
        {
            Ok(v) if !v.is_empty() => LogSource::Archived(v),
            _ => LogSource::None,
        }
    }

    /// The last `max` bytes of a job's log, wherever it is.
    pub fn log_tail(&self, id: &str, max: usize) -> String {
        match self.log_source(id) {
            LogSource::Local(p) => JobLog::tail(&p, max),
            LogSource::Archived(v) => log::tail_of(&v, max),
            LogSource::None => String::new(),
        }
    }

    /// Writes a job this replica holds (dropped when it no longer holds it).
    fn save(&self, job: &Job) -> bool {
        match self
            .shared
            .index
            .replace_job(job, Some(&self.shared.cfg.replica))
        {
            Ok(held) => {
                if !held {
                    tracing::warn!(job = %job.id, "job was taken over by another replica; not saved");
                }
                held
            }
            Err(e) => {
                tracing::error!(job = %job.id, "cannot persist job: {e}");
                false
            }
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Ok(Some(mut j)) = self.get(id) {
            f(&mut j);
            self.save(&j);
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        Ok(self.shared.index.job(id)?)
    }

    /// The newest jobs first.
    pub fn list(&self, limit: usize) -> Result<Vec<Job>, JobError> {
        Ok(self.shared.index.jobs(limit)?)
    }

    /// Jobs not in a final state.
    pub fn unfinished(&self) -> Result<Vec<Job>, JobError> {
        Ok(self.shared.index.unfinished_jobs()?)
    }

    /// Queues a job any replica may run (its [`Runner`] makes the work from
    /// the record), unless a job for `flight` is in flight: then that job.
    /// Returns the job id and whether it is a new job.
    pub fn submit(
        &self,
        flight: &str,
        kind: &str,
        target: JobTarget,
        who: Identity,
    ) -> Result<(String, bool), JobError> {
        self.enqueue(flight, kind, target, who, None)
    }

    /// Queues `work`, run on this replica only (its inputs live here),
    /// unless a job for `flight` is in flight: then that job.
    pub fn submit_pinned<F>(
        &self,
        flight: &str,
        kind: &str,
        target: JobTarget,
        who: Identity,
        work: F,
    ) -> Result<(String, bool), JobError>
    where
        F: FnOnce(JobCtx) -> WorkFuture + Send + 'static,
    {
        self.enqueue(flight, kind, target, who, Some(Box::new(work)))
    }

    fn enqueue(
        &self,
        flight: &str,
        kind: &str,
        target: JobTarget,
        who: Identity,
        work: Option<Work>,
    ) -> Result<(String, bool), JobError> {
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
            flight: Some(flight.to_owned()),
            replica: None,
            pinned: work.as_ref().map(|_| self.shared.cfg.replica.clone()),
            attempts: 0,
            dispatch: None,
        };
        let pinned = work.is_some();
        if let Some(w) = work {
            lock(&self.shared.pinned)?.insert(id.clone(), w);
        }
        self.watch(&id);
        match self.shared.index.enqueue_job(&job) {
            Ok(Enqueued::New) => {
                self.shared.wake.notify_one();
                Ok((id, true))
            }
            Ok(Enqueued::Joined(other)) => {
                self.forget(&id, pinned);
                Ok((other.id, false))
            }
            Err(e) => {
                self.forget(&id, pinned);
                Err(e.into())
            }
        }
    }

    fn watch(&self, id: &str) {
        if let Ok(mut live) = self.shared.live.lock() {
            live.entry(id.to_owned())
                .or_insert_with(|| watch::channel(JobState::Queued).0);
        }
    }

    fn forget(&self, id: &str, pinned: bool) {
        if pinned {
            if let Ok(mut p) = self.shared.pinned.lock() {
                p.remove(id);
            }
        }
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

    /// Waits up to `timeout` for the job to end (wherever it runs);
    /// returns the job as it is then.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<Job>, JobError> {
        let mut rx = self
            .shared
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(id).map(|tx| tx.subscribe()));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.get(id)?;
            match &job {
                Some(j) if !j.state.is_final() => {}
                _ => return Ok(job),
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(job);
            }
            // local jobs wake us at once; others are polled
            let poll = tokio::time::sleep_until(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)),
            );
            match rx.as_mut() {
                Some(r) => {
                    tokio::select! {
                        res = r.changed() => if res.is_err() { rx = None },
                        _ = poll => {}
                    }
                }
                None => poll.await,
            }
        }
    }
}

impl Jobs {
    fn token_key(&self) -> Result<[u8; 32], JobError> {
        if let Some(k) = self.shared.token_key.get() {
            return Ok(*k);
        }
        let stored = self
            .shared
            .index
            .set_meta_if_absent(token::KEY_META, &token::new_key())?;
        let key: [u8; 32] = stored.as_slice().try_into().map_err(|_| {
            JobError::Index(IndexError::Db(
                "the job token key in the index is damaged".into(),
            ))
        })?;
        Ok(*self.shared.token_key.get_or_init(|| key))
    }

    /// A token for the worker of hand-over `dispatch` of job `job`, valid
    /// for `ttl` at most (and only while the job runs).
    pub fn mint_token(&self, job: &str, dispatch: &str, ttl: Duration) -> Result<String, JobError> {
        let claims = token::Claims {
            job: job.to_owned(),
            dispatch: dispatch.to_owned(),
            exp: Utc::now().timestamp() + ttl.as_secs() as i64,
        };
        Ok(token::mint(&self.token_key()?, &claims))
    }

    /// Checks a job token for job `id`: genuine, unexpired, of this job,
    /// whose current hand-over it names, and the job not final.
    pub fn check_token(&self, token: &str, id: &str) -> Result<(token::Claims, Job), TokenError> {
        let key = self.token_key().map_err(|e| match e {
            JobError::Index(i) => TokenError::Index(i),
            _ => TokenError::Invalid,
        })?;
        let claims = token::verify(&key, token).ok_or(TokenError::Invalid)?;
        if claims.job != id {
            return Err(TokenError::OtherJob);
        }
        let job = self.shared.index.job(id)?.ok_or(TokenError::Invalid)?;
        if job.state.is_final() {
            return Err(TokenError::Ended);
        }
        if job.dispatch.as_ref().map(|d| d.id.as_str()) != Some(claims.dispatch.as_str()) {
            return Err(TokenError::Ended);
        }
        Ok((claims, job))
    }

    /// Whether a job token (any job) is genuine and unexpired: such a
    /// worker may read what anyone with the read role may.
    pub fn token_reads(&self, token: &str) -> bool {
        let Ok(key) = self.token_key() else {
            return false;
        };
        let Some(claims) = token::verify(&key, token) else {
            return false;
        };
        matches!(
            self.shared.index.job(&claims.job),
            Ok(Some(j)) if !j.state.is_final()
                && j.dispatch.as_ref().is_some_and(|d| d.id == claims.dispatch)
        )
    }

    /// Records (or clears) where a running job's build was handed.
    /// A job handed over holds nothing on this replica any more (an image
    /// build's context went with it): it is no longer pinned, so whichever
    /// replica takes it up follows the hand-over.
    pub fn set_dispatch(&self, id: &str, d: Option<Dispatch>) {
        self.update(id, |j| {
            if d.is_some() {
                j.pinned = None;
            }
            j.dispatch = d
        });
    }

    /// Appends a worker's lines to the log of job `id` (a cluster job
    /// posting them), at most the log cap in all.
    pub fn append_worker_log(&self, id: &str, chunk: &[u8]) -> Result<bool, JobError> {
        let have = self
            .shared
            .index
            .job_log(id, self.shared.cfg.log_cap, 1)?
            .len();
        if have > 0 {
            return Ok(false); // past the cap: dropped
        }
        let text = log::redact(&self.shared.redact, &String::from_utf8_lossy(chunk));
        self.shared.index.append_job_log(id, text.as_bytes())?;
        Ok(true)
    }

    /// A worker's lines from byte `from`.
    pub fn worker_log(&self, id: &str, from: u64) -> Result<Vec<u8>, JobError> {
        Ok(self.shared.index.job_log(id, from, 1 << 20)?)
    }

    /// The index (for the build's hand-over state: specs, results).
    pub fn index(&self) -> &Arc<dyn Index> {
        &self.shared.index
    }

    /// Cancels a job: a queued one at once; a running one by the replica
    /// running it (within a second or two), which also stops what it
    /// handed to a cluster. Returns the job as it is now.
    pub fn cancel(&self, id: &str, who: &Identity) -> Result<Option<Job>, JobError> {
        let Some(mut job) = self.get(id)? else {
            return Ok(None);
        };
        if job.state.is_final() {
            return Ok(Some(job));
        }
        let mut by = who
            .linux_username
            .clone()
            .or_else(|| who.github_username.clone())
            .unwrap_or_else(|| "a client".into());
        if let Some(k) = &who.key {
            by = format!("{by} (key {k})");
        }
        if job.state == JobState::Queued {
            let mut c = job.clone();
            c.state = JobState::Cancelled;
            c.finished = Some(Utc::now());
            c.error = Some(format!("cancelled by {by} before it started"));
            if self.shared.index.replace_job(&c, None)? {
                self.notify(id, JobState::Cancelled);
                // queued again after a restart with its hand-over still
                // running on a cluster: cancel that too
                if job.dispatch.is_some() {
                    if let (Some(r), Ok(rt)) = (
                        self.shared.runner.get().cloned(),
                        tokio::runtime::Handle::try_current(),
                    ) {
                        let j = job.clone();
                        rt.spawn(async move { r.cancel_dispatch(&j).await });
                    }
                }
                return Ok(Some(c));
            }
            job = self.get(id)?.unwrap_or(job);
        }
        self.shared.index.set_meta(&cancel_key(id), by.as_bytes())?;
        Ok(Some(job))
    }

    /// Who asked to cancel a running job, if anyone did.
    fn cancel_requested(&self, id: &str) -> Option<String> {
        self.shared
            .index
            .meta(&cancel_key(id))
            .ok()
            .flatten()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

fn cancel_key(id: &str) -> String {
    format!("cancel/{id}")
}

/// The name of a job's archived log.
fn log_object(id: &str) -> String {
    format!("logs/{id}.log")
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, JobError> {
    m.lock().map_err(|_| JobError::Closed)
}

/// Marks a job (and its unfinished steps) interrupted, with `why`.
fn interrupt(job: &mut Job, why: &str) {
    job.state = JobState::Interrupted;
    job.finished = Some(Utc::now());
    job.error = Some(why.to_owned());
    for s in job.steps.iter_mut().filter(|s| !s.state.is_final()) {
        s.state = JobState::Interrupted;
    }
}
