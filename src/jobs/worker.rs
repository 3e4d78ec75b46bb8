//! The workers: claim a queued job from the index, run it, store the end;
//! and, with a shared index, the lease renewal (its own loop, so nothing
//! slow delays it) and the job keeper: archives the logs of the jobs
//! running here for other replicas, and takes up jobs whose replica died
//! (started again once, else interrupted).

use std::time::Duration;

use chrono::Utc;

use super::{interrupt, log_object, JobCtx, JobLog, Jobs, WorkError};
use crate::model::{Job, JobResult, JobState};

/// A job whose replica died is started again this many times at most.
const MAX_ATTEMPTS: u32 = 2;

/// The lease a replica renews while it lives.
fn alive_lease(replica: &str) -> String {
    format!("replica-alive/{replica}")
}

pub(super) fn start(jobs: &Jobs) {
    let shared = jobs.shared.index.shared();
    // With a shared index, other replicas queue work we only see by asking.
    let poll = if shared {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    for _ in 0..jobs.shared.cfg.workers.max(1) {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            loop {
                match jobs.claim().await {
                    Some(job) => jobs.run_claimed(job).await,
                    None => {
                        let _ = tokio::time::timeout(poll, jobs.shared.wake.notified()).await;
                    }
                }
            }
        });
    }
    if shared {
        // Renewals have a loop of their own: nothing slow (the object
        // store, a long list of expired jobs) may delay them.
        let every = (jobs.shared.cfg.lease / 3).max(Duration::from_millis(200));
        let j = jobs.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let j = j.clone();
                let res = tokio::task::spawn_blocking(move || {
                    let (index, me, lease) =
                        (&j.shared.index, &j.shared.cfg.replica, j.shared.cfg.lease);
                    // this replica is alive (for the jobs pinned to it)...
                    index.try_lease(&alive_lease(me), me, lease)?;
                    // ...and holds the jobs it runs
                    index.renew_leases(me, lease)
                })
                .await;
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("cannot renew job leases: {e}"),
                    Err(e) => tracing::error!("lease renewal panicked: {e}"),
                }
            }
        });
        let j = jobs.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let j = j.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || j.look_after()).await {
                    tracing::error!("job keeper panicked: {e}");
                }
            }
        });
    }
}

impl Jobs {
    async fn claim(&self) -> Option<Job> {
        let j = self.clone();
        let res = tokio::task::spawn_blocking(move || {
            j.shared
                .index
                .claim_job(&j.shared.cfg.replica, j.shared.cfg.lease)
        })
        .await;
        match res {
            Ok(Ok(job)) => job,
            Ok(Err(e)) => {
                tracing::error!("cannot claim a job: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
            Err(e) => {
                tracing::error!("job claim panicked: {e}");
                None
            }
        }
    }

    async fn run_claimed(&self, job: Job) {
        let id = job.id.clone();
        self.watch(&id);
        self.notify(&id, JobState::Running);
        let pinned = self
            .shared
            .pinned
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&id));
        let work = pinned.or_else(|| self.shared.runner.get().and_then(|r| r.work(&job)));
        let Some(work) = work else {
            self.finish(
                &id,
                Err(WorkError {
                    step: "start".into(),
                    message: format!(
                        "this replica cannot run a '{}' job from its record",
                        job.kind
                    ),
                }),
            );
            return;
        };
        let log = match JobLog::create(
            &self.log_path(&id),
            self.shared.cfg.log_cap,
            self.shared.redact.clone(),
        ) {
            Ok(l) => l,
            Err(e) => {
                self.finish(
                    &id,
                    Err(WorkError {
                        step: "start".into(),
                        message: format!("cannot create the log: {e}"),
                    }),
                );
                return;
            }
        };
        if job.attempts > 1 {
            log.line(&format!(
                "==> started again (attempt {}): the replica that ran it stopped",
                job.attempts
            ));
        }
        if let Ok(mut r) = self.shared.running.lock() {
            r.insert(id.clone(), log.clone());
        }
        let ctx = JobCtx {
            id: id.clone(),
            log: log.clone(),
            jobs: self.clone(),
        };
        // Each job runs in its own task, so a panic fails that job only; a
        // cancel request aborts the task (its processes die with it).
        let task = tokio::spawn(work(ctx));
        let abort = task.abort_handle();
        let mut cancelled = None;
        let res = tokio::select! {
            r = task => match r {
                Ok(r) => r,
                Err(e) => Err(WorkError {
                    step: "internal".into(),
                    message: format!("the job panicked: {e}"),
                }),
            },
            by = self.cancel_wait(&id) => {
                abort.abort();
                if let (Some(runner), Ok(Some(now))) = (self.shared.runner.get(), self.get(&id)) {
                    runner.cancel_dispatch(&now).await;
                }
                let msg = format!("cancelled by {by}");
                cancelled = Some(msg.clone());
                Err(WorkError { step: "cancel".into(), message: msg })
            }
        };
        match &res {
            Ok(_) => log.line("==> success"),
            Err(e) if cancelled.is_some() => log.line(&format!("==> {}", e.message)),
            Err(e) => log.line(&format!("==> failed: {e}")),
        }
        log.close();
        if let Ok(mut r) = self.shared.running.lock() {
            r.remove(&id);
        }
        self.archive_log(&id);
        let _ = self.shared.index.delete_meta(&super::cancel_key(&id));
        if let Some(msg) = cancelled {
            self.finish_as(
                &id,
                JobState::Cancelled,
                Err(WorkError {
                    step: "cancel".into(),
                    message: msg,
                }),
            );
        } else {
            self.finish(&id, res);
        }
    }

    /// Resolves when someone asked to cancel `id` (polled every second).
    async fn cancel_wait(&self, id: &str) -> String {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let j = self.clone();
            let i = id.to_owned();
            if let Ok(Some(by)) = tokio::task::spawn_blocking(move || j.cancel_requested(&i)).await
            {
                return by;
            }
        }
    }

    fn finish(&self, id: &str, res: Result<JobResult, WorkError>) {
        let state = if res.is_ok() {
            JobState::Success
        } else {
            JobState::Failed
        };
        self.finish_as(id, state, res)
    }

    fn finish_as(&self, id: &str, state: JobState, res: Result<JobResult, WorkError>) {
        let redact = self.shared.redact.clone();
        let mut ended = None;
        self.update(id, |j| {
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
                Err(e) if state == JobState::Cancelled => j.error = Some(e.message),
                Err(e) => j.error = Some(super::redact(&redact, &e.to_string())),
            }
            ended = Some(j.clone());
        });
        if let Some(j) = ended {
            let result = match state {
                JobState::Success => "success",
                JobState::Cancelled => "cancelled",
                _ => "failed",
            };
            crate::metrics::job_finished(&j.kind, result, j.duration_secs().unwrap_or(0.0));
        }
        self.notify(id, state);
        if let Ok(mut live) = self.shared.live.lock() {
            live.remove(id);
        }
    }

    /// Copies a job's log to the archive (shared stores), for other replicas.
    fn archive_log(&self, id: &str) {
        let Some(a) = &self.shared.cfg.archive else {
            return;
        };
        let Ok(body) = std::fs::read(self.log_path(id)) else {
            return;
        };
        if let Err(e) = a.put_object(&log_object(id), &body) {
            tracing::warn!(job = %id, "cannot archive the job's log: {e}");
        }
    }

    /// One round of the job keeper (blocking): archives the logs of the
    /// jobs running here, takes up jobs whose replica stopped.
    fn look_after(&self) {
        let index = &self.shared.index;
        let running: Vec<String> = self
            .shared
            .running
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        for id in running {
            self.archive_log(&id);
        }
        let expired = match index.expired_jobs() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("cannot list expired jobs: {e}");
                return;
            }
        };
        for job in expired {
            self.take_up(job);
        }
        self.drop_orphans();
    }

    /// Queued jobs pinned to a replica that stopped (its inputs were on
    /// its disk): nobody else can run them, so they end as interrupted
    /// (which also frees their flight key).
    fn drop_orphans(&self) {
        let index = &self.shared.index;
        let me = &self.shared.cfg.replica;
        let Ok(jobs) = index.unfinished_jobs() else {
            return;
        };
        for mut job in jobs {
            let Some(owner) = job.pinned.clone() else {
                continue;
            };
            if job.state != JobState::Queued || &owner == me {
                continue;
            }
            // the owner renews this lease while it lives: free means gone
            let name = alive_lease(&owner);
            match index.try_lease(&name, me, Duration::from_secs(1)) {
                Ok(true) => {
                    let _ = index.release_lease(&name, me);
                }
                _ => continue,
            }
            interrupt(
                &mut job,
                &format!(
                    "the replica holding this job's inputs ({owner}) stopped; nothing was stored"
                ),
            );
            match index.replace_job(&job, None) {
                Ok(true) => {
                    tracing::warn!(job = %job.id, replica = %owner, "job pinned to a stopped replica: interrupted")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(job = %job.id, "cannot end the job: {e}"),
            }
        }
    }

    /// A job whose replica stopped renewing its lease: queued again (once,
    /// when any replica can run it from its record), else interrupted.
    fn take_up(&self, mut job: Job) {
        let dead = job.replica.clone();
        let again = job.pinned.is_none()
            && job.attempts < MAX_ATTEMPTS
            && self
                .shared
                .runner
                .get()
                .is_some_and(|r| r.work(&job).is_some());
        for s in job.steps.iter_mut().filter(|s| !s.state.is_final()) {
            s.state = JobState::Interrupted;
            s.finished = Some(Utc::now());
        }
        let who = dead.as_deref().unwrap_or("?");
        if again {
            job.state = JobState::Queued;
            job.replica = None;
            tracing::warn!(job = %job.id, replica = who, "job's replica stopped; queued again");
        } else {
            interrupt(
                &mut job,
                &format!(
                    "the replica running this job ({who}) stopped answering; nothing was stored"
                ),
            );
            tracing::warn!(job = %job.id, replica = who, "job's replica stopped; interrupted");
        }
        let Some(dead) = dead else { return };
        match self.shared.index.take_up_job(&job, &dead) {
            Ok(true) if again => self.shared.wake.notify_one(),
            Ok(_) => {}
            Err(e) => tracing::error!(job = %job.id, "cannot take up the job: {e}"),
        }
    }
}
