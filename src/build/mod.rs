//! Building components from git: clone -> recipe -> dependencies (built
//! first when missing) -> inputs key (reuse an identical build) ->
//! sandboxed build -> artifacts -> pack -> store; the dependency closure
//! for clients (`closure`); rebuild checks (reproducibility).
//!
//! Layout: `git` (clone, checkout, branch heads), `recipe` (the repo's
//! build instructions), `resolve` (pure graph work: closures, cycles,
//! conflicts, order), `closure` (resolving a client's dependencies),
//! `inputs` (the inputs key), `sandbox` (where the command runs),
//! `artifacts` (what is packed), `run` (the pipeline). Main type: [`Builder`].
//!
//! Architecture invariant: a build stores nothing unless every step
//! succeeded; the tarball is packed from the finished tree only.

pub mod artifacts;
pub mod closure;
pub mod dispatch;
pub mod execute;
pub mod executor;
pub mod git;
pub mod inputs;
pub mod recipe;
pub mod resolve;
mod run;
pub mod sandbox;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::components::Components;
use crate::config::Config;
use crate::jobs::{JobCtx, JobError, Jobs, Runner, Work, WorkError};
pub use crate::model::dep_var;
use crate::model::{ComponentKey, Identity, Job, JobResult, JobTarget, Record, RefKind};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Jobs(#[from] JobError),
}

/// The outcome of asking for a build.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub job: String,
    /// False when an identical build was already in flight (single-flight).
    pub new: bool,
}

#[derive(Clone)]
pub struct Builder {
    components: Components,
    jobs: Jobs,
    cfg: Arc<Config>,
    /// One build of a (component, tag, arch) at a time, also for builds of
    /// dependencies inside other jobs.
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Recipes of missing components, read while resolving closures.
    recipes: Arc<closure::RecipeCache>,
    /// Fetching sources (URL policy, rewrites, clone cache, submodules).
    git: Arc<git::Git>,
    /// Engines builds are handed to (`build.executor`).
    slurm: Arc<executor::slurm::Slurm>,
    kubernetes: Arc<executor::kubernetes::Kubernetes>,
    /// The service's URL as workers reach it, when not configured: the
    /// address it listens on (known once bound).
    listen_url: Arc<std::sync::OnceLock<String>>,
}

fn flight_key(k: &ComponentKey) -> String {
    format!("component:{}", k.display_path())
}

impl Builder {
    pub fn new(components: Components, jobs: Jobs, cfg: Arc<Config>) -> Self {
        let g = &cfg.build.git;
        git::set_timeouts(
            Duration::from_secs(g.connect_timeout_secs),
            Duration::from_secs(g.timeout_secs),
        );
        let limits = git::cache::Limits {
            max_bytes: None,
            min_free_bytes: cfg.min_free_bytes,
            floor_dir: cfg.data_dir.clone(),
            max_time: Duration::from_secs(g.fetch_max_secs),
        };
        let git = Arc::new(git::Git {
            allow_local: cfg.build.allow_local_urls,
            rewrites: g.rewrites.clone(),
            cache: g.cache.then(|| {
                git::cache::Cache::new(
                    cfg.data_dir.join("git"),
                    g.cache_max_bytes,
                    Duration::from_secs(g.lock_wait_secs),
                    limits.clone(),
                )
            }),
            submodule_depth: g.submodule_depth,
            max_submodules: g.max_submodules,
            allowed_hosts: g.allowed_hosts.clone(),
            limits,
            tmp_dir: cfg.data_dir.join("tmp"),
        });
        let recipes = Arc::new(closure::RecipeCache::new(
            g.max_concurrent_fetches,
            g.max_waiting_fetches,
        ));
        Self {
            slurm: Arc::new(executor::slurm::Slurm::new(cfg.build.slurm.clone())),
            kubernetes: Arc::new(executor::kubernetes::Kubernetes::new(
                cfg.build.kubernetes.clone(),
            )),
            listen_url: Default::default(),
            components,
            jobs,
            cfg,
            locks: Default::default(),
            recipes,
            git,
        }
    }

    /// The address the service listens on (for workers, when
    /// `build.worker_url` and `public_url` are unset).
    pub fn set_listen_url(&self, url: String) {
        let _ = self.listen_url.set(url);
    }

    /// The service's URL as workers reach it.
    pub fn worker_url(&self) -> String {
        self.cfg
            .build
            .worker_url
            .clone()
            .or_else(|| self.cfg.public_url.clone())
            .or_else(|| self.listen_url.get().cloned())
            .unwrap_or_else(|| format!("http://{}", self.cfg.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The worker binary on the nodes.
    pub fn worker_command(&self) -> String {
        self.cfg.build.worker_command.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "artifact-store".into())
        })
    }

    fn engine(&self, e: crate::config::Executor) -> Option<&dyn executor::Engine> {
        self.engine_named(e.name())
    }

    fn engine_named(&self, name: &str) -> Option<&dyn executor::Engine> {
        match name {
            "slurm" => Some(self.slurm.as_ref()),
            "kubernetes" => Some(self.kubernetes.as_ref()),
            _ => None,
        }
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    pub fn components(&self) -> &Components {
        &self.components
    }

    /// Evicts clone-cache mirrors past the cache's size (GC passes).
    pub fn evict_clone_cache(&self) {
        if let Some(c) = &self.git.cache {
            if let Err(e) = c.evict(std::path::Path::new("")) {
                tracing::warn!("clone cache eviction: {e}");
            }
        }
    }

    /// The repository of `component`: the catalog, else the newest earlier
    /// build of it, else the URL template.
    pub fn url_for(&self, component: &str) -> Option<String> {
        if let Some(u) = self.cfg.build.catalog.get(component) {
            return Some(u.clone());
        }
        let from_index = self
            .components
            .versions(component)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|r| r.source.map(|s| (r.created, s.url)))
            .max()
            .map(|(_, u)| u);
        from_index.or_else(|| {
            self.cfg
                .build
                .url_template
                .as_ref()
                .map(|t| t.replace("{component}", component))
        })
    }

    /// The repository URL to build `key` from: `url` when given, else
    /// [`Builder::url_for`]; checked against the URL policy.
    pub fn repository(
        &self,
        key: &ComponentKey,
        url: Option<String>,
    ) -> Result<String, SubmitError> {
        let url = match url.filter(|u| !u.trim().is_empty()) {
            Some(u) => u,
            None => self.url_for(&key.component).ok_or_else(|| {
                SubmitError::Invalid(format!(
                    "the repository URL of {} is unknown (give 'url', or configure build.catalog / build.url_template)",
                    key.component
                ))
            })?,
        };
        git::check_url(&url, self.cfg.build.allow_local_urls).map_err(SubmitError::Invalid)?;
        Ok(url)
    }

    /// Whether a stored record still stands for its key: always for tags
    /// and commits; for a branch, while the branch has not moved. Blocking
    /// (asks the repository for a branch).
    pub fn is_current(&self, rec: &Record) -> bool {
        let Some(src) = &rec.source else { return true };
        if src.kind != Some(RefKind::Branch) {
            return true;
        }
        match git::branch_head(&self.git.fetch_url(&src.url), &rec.tag) {
            Ok(Some(head)) => src.commit.as_deref() == Some(head.as_str()),
            Ok(None) => true,
            Err(e) => {
                tracing::warn!("cannot check branch {} of {}: {e}", rec.tag, src.url);
                true
            }
        }
    }

    /// Queues a build job (or joins the one in flight for the same key).
    pub fn submit(
        &self,
        key: &ComponentKey,
        url: Option<String>,
        who: Identity,
    ) -> Result<Submitted, SubmitError> {
        let url = self.repository(key, url)?;
        let target = JobTarget::Component {
            component: key.component.clone(),
            tag: key.tag.clone(),
            arch: key.arch.clone(),
            url: Some(url.clone()),
        };
        let (job, new) = self
            .jobs
            .submit(&flight_key(key), "component", target, who)?;
        Ok(Submitted { job, new })
    }

    /// The work of a queued job, from its record (any replica runs it).
    fn work_for(&self, job: &Job) -> Option<Work> {
        if let (JobTarget::Image { .. }, Some(d)) = (&job.target, job.dispatch.clone()) {
            return Some(self.image_work(d));
        }
        let work = self.fresh_work(job)?;
        let Some(d) = job.dispatch.clone() else {
            return Some(work);
        };
        // taken up with a build handed to a cluster: follow that one first
        // (one build, not two), then go on with the job
        let this = self.clone();
        Some(Box::new(move |ctx: JobCtx| {
            Box::pin(async move {
                // a stored result makes the work a cache hit; what was
                // started and ended without one fails the job
                this.reattach::<crate::model::Record>(&ctx, &d, false)
                    .await?;
                work(ctx).await
            })
        }))
    }

    /// An image build taken up with its hand-over (its replica died, or
    /// the service restarted): the worker's push, followed to its end. It
    /// cannot be built afresh here (its upload lived on the first replica).
    fn image_work(&self, d: crate::model::Dispatch) -> Work {
        let this = self.clone();
        Box::new(move |ctx: JobCtx| {
            Box::pin(async move {
                match this
                    .reattach::<crate::model::ImageRecord>(&ctx, &d, true)
                    .await?
                {
                    Some(rec) => Ok(JobResult::Image(Box::new(rec))),
                    None => Err(ctx.fail(
                        "the service stopped while handing the image build to its engine, \
                         and cannot tell whether it started: ask for it again"
                            .to_owned(),
                    )),
                }
            })
        })
    }

    fn fresh_work(&self, job: &Job) -> Option<Work> {
        let this = self.clone();
        let who = job.requested_by.clone();
        match (job.kind.as_str(), &job.target) {
            (
                "component",
                JobTarget::Component {
                    component,
                    tag,
                    arch,
                    url: Some(url),
                },
            ) => {
                let key = ComponentKey::new(component, tag, arch).ok()?;
                let url = url.clone();
                Some(Box::new(move |ctx: JobCtx| {
                    Box::pin(async move {
                        let rec = this.build_locked(&ctx, key, url, Vec::new(), who).await?;
                        Ok(JobResult::Component(Box::new(rec)))
                    })
                }))
            }
            (
                "rebuild",
                JobTarget::Component {
                    component,
                    tag,
                    arch,
                    ..
                },
            ) => {
                let key = ComponentKey::new(component, tag, arch).ok()?;
                Some(Box::new(move |ctx: JobCtx| {
                    Box::pin(async move {
                        let rec = this
                            .components
                            .lookup(&key)
                            .map_err(|e| ctx.fail(e.to_string()))?
                            .ok_or_else(|| ctx.fail(format!("{key} is no longer stored")))?;
                        let rec = this.rebuild(&ctx, rec).await?;
                        Ok(JobResult::Component(Box::new(rec)))
                    })
                }))
            }
            ("closure", JobTarget::Closure { arch, components }) => {
                let mut todo = Vec::new();
                for c in components {
                    let key = ComponentKey::new(&c.component, &c.tag, arch).ok()?;
                    todo.push((key, c.url.clone()?));
                }
                Some(Box::new(move |ctx: JobCtx| {
                    Box::pin(async move {
                        let mut last = None;
                        for (key, url) in todo {
                            ctx.log.line(&format!("==> {key}"));
                            last = Some(
                                this.build_locked(&ctx, key, url, Vec::new(), who.clone())
                                    .await?,
                            );
                        }
                        let rec = last.ok_or_else(|| WorkError {
                            step: "start".into(),
                            message: "nothing was missing".into(),
                        })?;
                        Ok(JobResult::Component(Box::new(rec)))
                    })
                }))
            }
            _ => None,
        }
    }

    /// Builds `key` unless stored (and current), holding the per-key lock.
    fn build_locked<'a>(
        &'a self,
        ctx: &'a JobCtx,
        key: ComponentKey,
        url: String,
        chain: Vec<String>,
        who: Identity,
    ) -> BoxFuture<'a, Result<Record, WorkError>> {
        Box::pin(async move {
            let lock = {
                let mut m = self.locks.lock().map_err(|_| ctx.fail("lock poisoned"))?;
                m.entry(flight_key(&key)).or_default().clone()
            };
            let _guard = lock.lock().await;
            if let Ok(Some(rec)) = self.components.lookup(&key) {
                let (this, r) = (self.clone(), rec.clone());
                let current = tokio::task::spawn_blocking(move || this.is_current(&r))
                    .await
                    .unwrap_or(true);
                if current {
                    ctx.log
                        .line(&format!("{key} is stored already ({})", rec.blake3));
                    return Ok(rec);
                }
                ctx.log.line(&format!(
                    "{key} was built from branch {} at another commit: building it again",
                    key.tag
                ));
            }
            self.build(ctx, &key, &url, chain, who).await
        })
    }
}

impl Runner for Builder {
    fn work(&self, job: &Job) -> Option<Work> {
        self.work_for(job)
    }

    fn cancel_dispatch(
        &self,
        job: &Job,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let (this, d, job_id) = (self.clone(), job.dispatch.clone(), job.id.clone());
        Box::pin(async move {
            let Some(d) = d else { return };
            // no result lands from now on, and the worker's token is dead
            if this.close(&d.id, &mut None).await.is_none() {
                tracing::warn!(job = %d.id, "cancelled while its result was being stored");
            }
            this.jobs.set_dispatch(&job_id, None);
            if let Some(engine) = this.engine_named(&d.executor) {
                if !d.remote_id.is_empty() {
                    if let Err(e) = engine.cancel(&d.remote_id).await {
                        tracing::warn!("cannot cancel {} job {}: {e}", d.executor, d.remote_id);
                    }
                }
            }
        })
    }
}
