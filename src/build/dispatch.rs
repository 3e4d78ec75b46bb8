//! Handing a build to a worker elsewhere and following it: the spec is
//! kept in the index under the hand-over's id, a job token is minted for
//! it, the engine (Slurm, Kubernetes) starts `artifact-store worker` — or
//! a polling worker claims it — and the service follows the engine's state
//! and the worker's log lines until the worker has stored the result
//! (`PUT /v1/jobs/{id}/result`, any replica) or the engine says it ended
//! without one. A replica taking the job up (its replica died, or the
//! service restarted) finds the hand-over in the job and follows it again:
//! one build, not two.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::execute::BuildSpec;
use super::executor::{RemoteState, WorkerRun};
use super::Builder;
use crate::config::Executor;
use crate::jobs::{JobCtx, WorkError};
use crate::model::{Dispatch, Record};

/// Index meta keys of a hand-over.
pub fn spec_key(dispatch: &str) -> String {
    format!("dispatch/{dispatch}/spec")
}
/// An image build's spec (an [`crate::image::ImageSpec`]).
pub fn image_spec_key(dispatch: &str) -> String {
    format!("dispatch/{dispatch}/image")
}
pub fn result_key(dispatch: &str) -> String {
    format!("dispatch/{dispatch}/result")
}
pub fn claim_key(dispatch: &str) -> String {
    format!("dispatch/{dispatch}/claim")
}
/// Who decided the hand-over's outcome first: `storing:<n>` (an upload
/// is being stored) or `closed` (the service gave up, or cancelled).
pub fn outcome_key(dispatch: &str) -> String {
    format!("dispatch/{dispatch}/outcome")
}
/// Set by a worker that gave up (its message).
pub fn failed_key(dispatch: &str) -> String {
    format!("dispatch/{dispatch}/failed")
}

/// A new hand-over's id.
pub fn new_dispatch_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// What [`Builder::hand_over`] hands to an engine.
pub struct HandOver {
    /// The hand-over's id ([`new_dispatch_id`]), also in its spec.
    pub id: String,
    pub executor: Executor,
    /// Where the spec is kept ([`spec_key`], [`image_spec_key`]) and its JSON.
    pub spec_key: fn(&str) -> String,
    pub spec: Vec<u8>,
    /// What it builds (for the engine's job name and the job's dispatch).
    pub component: String,
    pub tag: String,
    pub arch: String,
    pub cpus: usize,
    pub timeout: Duration,
    /// The image the engine runs the worker in (Kubernetes).
    pub image: Option<String>,
}

/// How often the engine is asked.
const POLL: Duration = Duration::from_secs(1);

/// Why a worker's call is refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Token(#[from] crate::jobs::TokenError),
    #[error("this build has no spec (it has ended, or was handed over again)")]
    NoSpec,
    #[error("a result of this build is being stored already")]
    Storing,
    #[error(transparent)]
    Store(#[from] crate::components::ComponentError),
    #[error(transparent)]
    Jobs(#[from] crate::jobs::JobError),
    /// What the worker reported does not hold (an image's digest).
    #[error("{0}")]
    Rejected(String),
    /// What the worker reported cannot be checked now (the registry).
    #[error("{0}")]
    Unavailable(String),
    /// A route of the other kind of build (component / image).
    #[error("{0}")]
    WrongKind(&'static str),
}

impl Builder {
    /// The spec of the build a worker's token names (checked).
    pub fn worker_spec(&self, token: &str, job: &str) -> Result<BuildSpec, WorkerError> {
        self.handed_spec(token, job, spec_key)?
            .ok_or(WorkerError::NoSpec)
    }

    /// The spec kept under `key` ([`spec_key`], [`image_spec_key`]) for
    /// the hand-over a worker's token names (checked); `None` when that
    /// hand-over keeps none there (it is of the other kind, or ended).
    pub fn handed_spec<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        job: &str,
        key: fn(&str) -> String,
    ) -> Result<Option<T>, WorkerError> {
        let (claims, _) = self.jobs.check_token(token, job)?;
        Ok(self.meta_json(&key(&claims.dispatch)))
    }

    /// Appends a worker's lines to its job's log (checked); false past the
    /// log's cap.
    pub fn worker_log_lines(
        &self,
        token: &str,
        job: &str,
        chunk: &[u8],
    ) -> Result<bool, WorkerError> {
        self.jobs.check_token(token, job)?;
        Ok(self.jobs.append_worker_log(job, chunk)?)
    }

    /// A worker gave up: the job fails with its message.
    pub fn worker_failed(&self, token: &str, job: &str, message: &str) -> Result<(), WorkerError> {
        let (claims, _) = self.jobs.check_token(token, job)?;
        let msg: String = message.chars().take(2000).collect();
        self.jobs
            .index()
            .set_meta(&failed_key(&claims.dispatch), msg.as_bytes())
            .map_err(crate::jobs::JobError::from)?;
        Ok(())
    }

    /// Stores the tree a worker built (blocking): the record is the one
    /// the spec says, its blob what the worker sent (normalised like any
    /// upload). Only once per hand-over.
    pub fn store_worker_result(
        &self,
        token: &str,
        job: &str,
        body: std::fs::File,
        raw: blake3::Hash,
    ) -> Result<crate::components::Stored, WorkerError> {
        self.store_once(token, job, |dispatch| {
            let stored = self.store_result_of(dispatch, body, raw)?;
            let rec = serde_json::to_vec(&stored.record).unwrap_or_default();
            Ok((stored, rec))
        })
    }

    /// Stores a worker's result once per hand-over (blocking), and only
    /// while the service has not given up on it: `store` gets the
    /// hand-over's id and stores; the bytes it returns are the result the
    /// job follows ([`result_key`]).
    pub fn store_once<T>(
        &self,
        token: &str,
        job: &str,
        store: impl FnOnce(&str) -> Result<(T, Vec<u8>), WorkerError>,
    ) -> Result<T, WorkerError> {
        let (claims, _) = self.jobs.check_token(token, job)?;
        // one upload decides, and only while the service has not given up
        // on the hand-over (a result never lands after "nothing was stored")
        let index = self.jobs.index();
        let outcome = outcome_key(&claims.dispatch);
        let me = format!("storing:{:016x}", rand::random::<u64>());
        let won = index
            .set_meta_if_absent(&outcome, me.as_bytes())
            .map_err(crate::jobs::JobError::from)?;
        if won != me.as_bytes() {
            return Err(if won.starts_with(b"storing:") {
                WorkerError::Storing
            } else {
                WorkerError::Token(crate::jobs::TokenError::Ended)
            });
        }
        // the hand-over may have been closed and forgotten (its outcome
        // removed) between the token's check and winning it: check again
        if let Err(e) = self.jobs.check_token(token, job) {
            let _ = index.delete_meta(&outcome);
            return Err(e.into());
        }
        let res = store(&claims.dispatch).and_then(|(t, result)| {
            index
                .set_meta(&result_key(&claims.dispatch), &result)
                .map_err(crate::jobs::JobError::from)?;
            Ok(t)
        });
        if res.is_err() {
            // a later upload may try again
            let _ = index.delete_meta(&outcome);
        }
        res
    }

    fn store_result_of(
        &self,
        dispatch: &str,
        body: std::fs::File,
        raw: blake3::Hash,
    ) -> Result<crate::components::Stored, WorkerError> {
        let spec = self.dispatched_spec(dispatch).ok_or(WorkerError::NoSpec)?;
        let key = crate::model::ComponentKey::new(&spec.component, &spec.tag, &spec.arch)
            .map_err(crate::components::ComponentError::from)?;
        let req = crate::components::PutRequest {
            who: spec.record.who.clone(),
            source: Some(spec.record.source.clone()),
            dependencies: spec.dependencies.clone(),
            overwrite: spec.record.overwrite,
            mtime_clamp: spec.mtime_clamp,
            requires: spec.record.requires.clone(),
            inputs: Some(spec.record.inputs.clone()),
            reused_from: None,
        };
        // a worker's output, packed under the tag by the worker: never
        // refused for its top directory (wrap = true keeps it as it is)
        Ok(self
            .components
            .put_upload(&key, body, raw, None, req, true)?)
    }

    /// A polling worker asks for work: the oldest build waiting for one
    /// (for one of `arches`, any when empty; of one of `kinds`, `build` or
    /// `image`; none: component builds only, as a worker that does not say
    /// may have no podman), with a token for it.
    pub fn claim_for_worker(
        &self,
        worker: &str,
        arches: &[String],
        kinds: &[String],
    ) -> Result<Option<(String, String)>, WorkerError> {
        let mut waiting: Vec<_> = self
            .jobs
            .unfinished()?
            .into_iter()
            .filter_map(|j| {
                let d = j.dispatch.clone()?;
                let kind = match j.target {
                    crate::model::JobTarget::Image { .. } => "image",
                    _ => "build",
                };
                (d.executor == "worker"
                    && d.remote_id.is_empty()
                    && (if kinds.is_empty() {
                        kind == "build"
                    } else {
                        kinds.iter().any(|k| k == kind)
                    })
                    && (arches.is_empty()
                        || arches.iter().any(|a| a.eq_ignore_ascii_case(&d.arch))))
                .then_some((j.id, d))
            })
            .collect();
        waiting.sort_by_key(|w| w.1.at);
        // each claim is its own (two workers of one name, or one asking
        // twice, never get the same build)
        let me = format!("{worker} ({:08x})", rand::random::<u32>());
        for (job, d) in waiting {
            let won = self
                .jobs
                .index()
                .set_meta_if_absent(&claim_key(&d.id), me.as_bytes())
                .map_err(crate::jobs::JobError::from)?;
            if won == me.as_bytes() {
                let ttl = Duration::from_secs(self.cfg.build.timeout_secs + 24 * 3600);
                let token = self.jobs.mint_token(&job, &d.id, ttl)?;
                return Ok(Some((job, token)));
            }
        }
        Ok(None)
    }
}

impl Builder {
    fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let v = self.jobs.index().meta(key).ok().flatten()?;
        serde_json::from_slice(&v).ok()
    }

    /// The spec of hand-over `dispatch` (for its worker).
    pub fn dispatched_spec(&self, dispatch: &str) -> Option<BuildSpec> {
        self.meta_json(&spec_key(dispatch))
    }

    /// Hands `spec` to `executor` and follows it to its end: the stored
    /// record.
    pub(super) async fn dispatch(
        &self,
        ctx: &JobCtx,
        executor: Executor,
        mut spec: BuildSpec,
        label: &str,
    ) -> Result<Record, WorkError> {
        ctx.step(&format!("dispatch {label}"));
        let id = new_dispatch_id();
        spec.dispatch = id.clone();
        let body = serde_json::to_vec(&spec).map_err(|e| ctx.fail(e.to_string()))?;
        let image = spec
            .image
            .clone()
            .or_else(|| self.cfg.arch(&spec.arch).image);
        self.hand_over(
            ctx,
            HandOver {
                id,
                executor,
                spec_key,
                spec: body,
                component: spec.component.clone(),
                tag: spec.tag.clone(),
                arch: spec.arch.clone(),
                cpus: spec.cpus,
                timeout: Duration::from_secs(spec.timeout_secs),
                image,
            },
        )
        .await
    }

    /// Keeps a hand-over's spec, mints its token, hands the worker to the
    /// engine (or leaves it for a polling worker) and follows it to its
    /// end: the result the worker stored (`T`: a component's record, an
    /// image's).
    pub async fn hand_over<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &JobCtx,
        h: HandOver,
    ) -> Result<T, WorkError> {
        let fail = |m: String| ctx.fail(m);
        let id = h.id.clone();
        let index = self.jobs.index().clone();
        let (key, body) = ((h.spec_key)(&id), h.spec);
        tokio::task::spawn_blocking(move || index.set_meta(&key, &body))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(format!("cannot keep the build's spec: {e}")))?;
        let mut d = Dispatch {
            executor: h.executor.name().to_owned(),
            remote_id: String::new(),
            id: id.clone(),
            component: h.component.clone(),
            tag: h.tag.clone(),
            arch: h.arch.clone(),
            at: Utc::now(),
        };
        self.jobs.set_dispatch(&ctx.id, Some(d.clone()));
        let token = self
            .jobs
            .mint_token(&ctx.id, &id, h.timeout + Duration::from_secs(24 * 3600))
            .map_err(|e| fail(e.to_string()))?;
        let run = WorkerRun {
            job: ctx.id.clone(),
            dispatch: id.clone(),
            token,
            server: self.worker_url(),
            command: self.worker_command(),
            component: h.component,
            tag: h.tag,
            arch: h.arch,
            cpus: h.cpus,
            timeout: h.timeout,
            image: h.image,
        };
        match self.engine(h.executor) {
            Some(engine) => {
                let submitted = engine
                    .submit(&run)
                    .await
                    .map_err(|e| fail(format!("cannot hand the build to {}: {e}", engine.name())));
                let remote = match submitted {
                    Ok(r) => r,
                    Err(e) => {
                        self.forget_dispatch(ctx, &id).await;
                        return Err(e);
                    }
                };
                // kept before anything is said: a restart follows this job
                d.remote_id = remote.clone();
                self.jobs.set_dispatch(&ctx.id, Some(d.clone()));
                ctx.log.line(&format!(
                    "handed to {} as job {remote}; its worker reports to {}",
                    engine.name(),
                    run.server
                ));
            }
            None => ctx.log.line(&format!(
                "waiting for a worker (`artifact-store worker --poll`) to claim it at {}",
                run.server
            )),
        }
        let res = self.follow(ctx, &d, h.timeout).await;
        self.forget_dispatch(ctx, &id).await;
        res
    }

    /// Removes what a hand-over kept in the index.
    async fn forget_dispatch(&self, ctx: &JobCtx, id: &str) {
        self.jobs.set_dispatch(&ctx.id, None);
        let index = self.jobs.index().clone();
        let id = id.to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            for k in [
                spec_key(&id),
                image_spec_key(&id),
                result_key(&id),
                outcome_key(&id),
                claim_key(&id),
                failed_key(&id),
            ] {
                let _ = index.delete_meta(&k);
            }
        })
        .await;
    }

    /// Follows a hand-over until the worker stored its result (the record)
    /// or the engine says it ended without one.
    pub(super) async fn follow<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &JobCtx,
        d: &Dispatch,
        timeout: Duration,
    ) -> Result<T, WorkError> {
        let fail = |m: String| ctx.fail(m);
        let mut offset = self.worker_log_len(&ctx.id).await;
        let mut partial = String::new();
        let started = Instant::now();
        let mut last_news = Instant::now();
        let mut ended: Option<(RemoteState, Instant)> = None;
        let silence = Duration::from_secs(self.cfg.build.worker_silence_secs.max(10));
        let mut remote = d.remote_id.clone();
        let mut steps = 0usize;
        let mut storing_since: Option<Instant> = None;
        // gives up unless an upload is being stored (then waits for it)
        macro_rules! give_up {
            ($msg:expr) => {{
                match self.close(&d.id, &mut storing_since).await {
                    Some(late) => return Err(fail(format!("{}{late}", $msg))),
                    None => continue,
                }
            }};
        }
        loop {
            tokio::time::sleep(if started.elapsed() < Duration::from_secs(2) {
                Duration::from_millis(200)
            } else {
                POLL
            })
            .await;
            if remote.is_empty() {
                // a polling worker's claim (said before its lines)
                if let Some(by) = self.jobs.index().meta(&claim_key(&d.id)).ok().flatten() {
                    remote = String::from_utf8_lossy(&by).into_owned();
                    ctx.log.line(&format!("claimed by worker {remote}"));
                    let mut nd = d.clone();
                    nd.remote_id = remote.clone();
                    self.jobs.set_dispatch(&ctx.id, Some(nd));
                    last_news = Instant::now();
                }
            }
            // the worker's lines (and steps) into the job's own log
            let (jobs, id) = (self.jobs.clone(), ctx.id.clone());
            let chunk = tokio::task::spawn_blocking(move || jobs.worker_log(&id, offset))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            if !chunk.is_empty() {
                offset += chunk.len() as u64;
                last_news = Instant::now();
                partial.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(nl) = partial.find('\n') {
                    let line: String = partial.drain(..=nl).collect();
                    let line = line.trim_end_matches('\n');
                    match line.strip_prefix("==> ") {
                        Some(step) if steps < MAX_WORKER_STEPS => {
                            steps += 1;
                            let name: String = step.chars().take(MAX_STEP_NAME).collect();
                            ctx.step(&name)
                        }
                        _ => ctx.log.line(line),
                    }
                }
            }
            if let Some(rec) = self.meta_json::<T>(&result_key(&d.id)) {
                return Ok(rec);
            }
            if let Ok(Some(why)) = self.jobs.index().meta(&failed_key(&d.id)) {
                // the step is the worker's last (`==> ` lines)
                give_up!(format!(
                    "{} (on the worker); nothing was stored",
                    String::from_utf8_lossy(&why)
                ));
            }
            if remote.is_empty() {
                if started.elapsed() > timeout {
                    give_up!(format!(
                        "no worker claimed the build within {} s",
                        timeout.as_secs()
                    ));
                }
                continue;
            }
            let Some(engine) = self.engine_named(&d.executor) else {
                // a polling worker: it is alive while it posts its log
                if last_news.elapsed() > silence {
                    give_up!(format!(
                        "worker {remote} sent nothing for {} s: given up; nothing was stored",
                        silence.as_secs()
                    ));
                }
                if started.elapsed() > timeout + GRACE {
                    give_up!(format!(
                        "worker {remote} did not finish within build.timeout_secs ({} s); nothing was stored",
                        timeout.as_secs()
                    ));
                }
                continue;
            };
            if let Some((state, at)) = &ended {
                // a result may be on its way just as the engine reports the end
                if at.elapsed() > Duration::from_secs(3) {
                    give_up!(ended_without_result(engine.name(), &remote, state));
                }
                continue;
            }
            match engine.state(&remote).await {
                Ok(s) if s.is_final() => ended = Some((s, Instant::now())),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(job = %ctx.id, "cannot ask {} about job {remote}: {e}", engine.name())
                }
            }
        }
    }

    /// Closes hand-over `dispatch` so that no result lands after the job
    /// failed: `Some(note)` when it is closed (the caller fails the job);
    /// `None` while an upload is being stored (wait for its result), for at
    /// most [`STORING_PATIENCE`].
    pub(super) async fn close(
        &self,
        dispatch: &str,
        storing_since: &mut Option<Instant>,
    ) -> Option<String> {
        let index = self.jobs.index().clone();
        let key = outcome_key(dispatch);
        let won = tokio::task::spawn_blocking(move || index.set_meta_if_absent(&key, b"closed"))
            .await
            .ok()
            .and_then(Result::ok);
        match won {
            Some(v) if v.starts_with(b"storing:") => {
                let since = storing_since.get_or_insert_with(Instant::now);
                (since.elapsed() > STORING_PATIENCE)
                    .then(|| " (an upload of its result never finished)".to_owned())
            }
            _ => Some(String::new()),
        }
    }

    /// The length of the worker lines a job's log holds so far.
    async fn worker_log_len(&self, id: &str) -> u64 {
        let (jobs, id) = (self.jobs.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut n = 0u64;
            while let Ok(c) = jobs.worker_log(&id, n) {
                if c.is_empty() {
                    break;
                }
                n += c.len() as u64;
            }
            n
        })
        .await
        .unwrap_or(0)
    }

    /// A job taken up with a hand-over in it (its replica died, or the
    /// service restarted): follows the hand-over again while it runs.
    /// `Ok(Some(record))` when it stored its result; `Ok(None)` when nothing
    /// was ever started (not submitted, not claimed) and the job may build
    /// afresh; `Err` when what was started ended without a result (the job
    /// fails with the engine's reason: a build is never run twice).
    /// `keep_unclaimed`: a hand-over still waiting for a polling worker is
    /// waited for again rather than given up (an image build, which cannot
    /// start afresh: its upload lived on the first replica).
    pub(super) async fn reattach<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &JobCtx,
        d: &Dispatch,
        keep_unclaimed: bool,
    ) -> Result<Option<T>, WorkError> {
        if let Some(rec) = self.meta_json::<T>(&result_key(&d.id)) {
            ctx.log.line(&format!(
                "the build handed to {} ({}) had stored its result",
                d.executor, d.remote_id
            ));
            self.forget_dispatch(ctx, &d.id).await;
            return Ok(Some(rec));
        }
        let unclaimed = d.remote_id.is_empty() && self.engine_named(&d.executor).is_none();
        if d.remote_id.is_empty() && !(keep_unclaimed && unclaimed) {
            self.forget_dispatch(ctx, &d.id).await;
            return Ok(None);
        }
        ctx.step(&format!("dispatch {} {}", d.component, d.tag));
        if let Some(engine) = self.engine_named(&d.executor) {
            match engine.state(&d.remote_id).await {
                Ok(s) if s.is_final() => {
                    // its result may have landed as it ended
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Some(rec) = self.meta_json::<T>(&result_key(&d.id)) {
                        self.forget_dispatch(ctx, &d.id).await;
                        return Ok(Some(rec));
                    }
                    if let Some(note) = self.close(&d.id, &mut None).await {
                        self.forget_dispatch(ctx, &d.id).await;
                        let why = ended_without_result(engine.name(), &d.remote_id, &s);
                        return Err(ctx.fail(format!("{why}{note}")));
                    }
                    // an upload is being stored: follow it to its end
                }
                Ok(_) => {}
                Err(e) => {
                    self.forget_dispatch(ctx, &d.id).await;
                    return Err(ctx.fail(format!(
                        "{} job {} cannot be followed after the restart ({e}); nothing was stored",
                        d.executor, d.remote_id
                    )));
                }
            }
        }
        ctx.log.line(&if d.remote_id.is_empty() {
            "waiting again for a worker (`artifact-store worker --poll`) to claim it".to_owned()
        } else {
            format!(
                "following {} job {} again (started before this replica took the job up)",
                d.executor, d.remote_id
            )
        });
        let timeout = Duration::from_secs(self.cfg.build.timeout_secs);
        let res = self.follow(ctx, d, timeout).await;
        self.forget_dispatch(ctx, &d.id).await;
        res.map(Some)
    }
}

/// How long past `build.timeout_secs` a claimed build may run.
const GRACE: Duration = Duration::from_secs(300);
/// How long an upload that started being stored may take to land.
const STORING_PATIENCE: Duration = Duration::from_secs(600);

/// A worker's steps (`==> ` lines) taken as steps of the job, at most
/// (its pipeline has a handful; the rest are kept as lines).
const MAX_WORKER_STEPS: usize = 64;
/// A step name's length at most, in characters.
const MAX_STEP_NAME: usize = 200;

fn ended_without_result(engine: &str, remote: &str, state: &RemoteState) -> String {
    match state {
        RemoteState::TimedOut => format!(
            "the build exceeded its {engine} time limit ({engine} job {remote}: TIMEOUT); nothing was stored"
        ),
        RemoteState::Cancelled => {
            format!("{engine} cancelled job {remote}; nothing was stored")
        }
        RemoteState::Failed(why) => {
            format!("the worker failed ({engine} job {remote}: {why}); nothing was stored")
        }
        RemoteState::Lost(why) => format!("{why}; nothing was stored"),
        RemoteState::Completed => format!(
            "{engine} job {remote} ended without storing a result (see the worker's lines above); nothing was stored"
        ),
        RemoteState::Pending | RemoteState::Running => {
            format!("{engine} job {remote} is still running")
        }
    }
}
