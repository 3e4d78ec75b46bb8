//! Building components from git: clone -> recipe -> dependencies (built
//! first when missing) -> sandboxed build -> pack -> store.
//!
//! Layout: `git` (clone, checkout), `recipe` (the repo's build
//! instructions), `resolve` (dependency closure, cycles), `sandbox` (where
//! the command runs). Main type: [`Builder`].
//!
//! Architecture invariant: a build stores nothing unless every step
//! succeeded; the tarball is packed from the finished tree only.

pub mod git;
pub mod recipe;
pub mod resolve;
pub mod sandbox;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::components::{Components, PutRequest};
use crate::config::Config;
use crate::jobs::{JobCtx, JobError, Jobs, WorkError};
use crate::model::{ComponentKey, Identity, JobResult, JobTarget, Record, Source};
use crate::store::beneath;

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
}

fn flight_key(k: &ComponentKey) -> String {
    format!("component:{}", k.display_path())
}

impl Builder {
    pub fn new(components: Components, jobs: Jobs, cfg: Arc<Config>) -> Self {
        Self {
            components,
            jobs,
            cfg,
            locks: Default::default(),
        }
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
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

    /// Queues a build job (or joins the one in flight for the same key).
    pub fn submit(
        &self,
        key: &ComponentKey,
        url: Option<String>,
        who: Identity,
    ) -> Result<Submitted, SubmitError> {
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
        let target = JobTarget::Component {
            component: key.component.clone(),
            tag: key.tag.clone(),
            arch: key.arch.clone(),
            url: Some(url.clone()),
        };
        let this = self.clone();
        let k = key.clone();
        let (job, new) = self.jobs.submit(
            &flight_key(key),
            "component",
            target,
            who.clone(),
            move |ctx| {
                Box::pin(async move {
                    let rec = this.build_locked(&ctx, k, url, Vec::new(), who).await?;
                    Ok(JobResult::Component(rec))
                })
            },
        )?;
        Ok(Submitted { job, new })
    }

    /// Builds `key` unless stored already, holding the per-key lock.
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
                ctx.log
                    .line(&format!("{key} is stored already ({})", rec.blake3));
                return Ok(rec);
            }
            self.build(ctx, &key, &url, chain, who).await
        })
    }

    async fn build(
        &self,
        ctx: &JobCtx,
        key: &ComponentKey,
        url: &str,
        mut chain: Vec<String>,
        who: Identity,
    ) -> Result<Record, WorkError> {
        let fail = |m: String| ctx.fail(m);
        chain.push(key.component.clone());
        let label = format!("{} {}", key.component, key.tag);
        let work = self
            .components
            .scratch()
            .temp_dir()
            .map_err(|e| fail(format!("cannot create a work directory: {e}")))?;
        let src = work.path().join("src");
        let deps_dir = work.path().join("deps");
        std::fs::create_dir_all(&deps_dir).map_err(|e| fail(e.to_string()))?;

        ctx.step(&format!("clone {label}"));
        ctx.log.line(&format!("cloning {url} at {}", key.tag));
        let (u, t, s) = (url.to_owned(), key.tag.clone(), src.clone());
        let checkout = tokio::task::spawn_blocking(move || git::clone_at(&u, &t, &s))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(fail)?;
        ctx.log.line(&format!("commit {}", checkout.commit));

        ctx.step(&format!("recipe {label}"));
        let recipe = recipe::Recipe::from_dir(&src).map_err(|e| fail(e.to_string()))?;
        let plan = recipe.plan(&key.arch).map_err(|e| fail(e.to_string()))?;
        ctx.log.line(&format!("build command: {}", plan.command));

        ctx.step(&format!("dependencies {label}"));
        let mut direct = Vec::new();
        for d in &plan.dependencies {
            resolve::check_cycle(&chain, &d.name).map_err(fail)?;
            let dkey = ComponentKey::new(&d.name, &d.tag, &key.arch)
                .map_err(|e| fail(format!("dependency {}: {e}", d.name)))?;
            let rec = match self
                .components
                .lookup(&dkey)
                .map_err(|e| fail(e.to_string()))?
            {
                Some(r) => r,
                None => {
                    let durl = self.url_for(&d.name).ok_or_else(|| {
                        fail(format!(
                            "dependency {} {} ({}) is not stored and its repository URL is unknown (chain: {} -> {})",
                            d.name,
                            d.tag,
                            key.arch,
                            chain.join(" -> "),
                            d.name
                        ))
                    })?;
                    ctx.log.line(&format!(
                        "dependency {dkey} is missing: building it from {durl}"
                    ));
                    let r = self
                        .build_locked(ctx, dkey, durl, chain.clone(), who.clone())
                        .await?;
                    ctx.step(&format!("dependencies {label}"));
                    r
                }
            };
            direct.push(rec);
        }
        let closure = resolve::closure(&key.component, &direct).map_err(fail)?;
        let mut vars = vec![
            ("ADBS_COMPONENT".to_owned(), key.component.clone()),
            ("ADBS_TAG".to_owned(), key.tag.clone()),
            ("ADBS_OS_ENVIRONMENT".to_owned(), key.arch.clone()),
            ("ADBS_SOURCE".to_owned(), sandbox::SRC_IN.to_owned()),
            ("ADBS_DEPS".to_owned(), sandbox::DEPS_IN.to_owned()),
        ];
        for d in &closure {
            ctx.log
                .line(&format!("using {} {} ({})", d.component, d.tag, d.blake3));
            let dest = deps_dir.join(&d.component);
            let (comps, hex) = (self.components.clone(), d.blake3.clone());
            tokio::task::spawn_blocking(move || comps.unpack_blob(&hex, &dest))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(format!("unpacking {}: {e}", d.component)))?;
            vars.push((
                dep_var(&d.component),
                format!("{}/{}/{}", sandbox::DEPS_IN, d.component, d.tag),
            ));
        }

        ctx.step(&format!("build {label}"));
        let sb = sandbox::choose(&self.cfg, &key.arch, plan.image.as_deref()).map_err(fail)?;
        ctx.log.line(&format!("sandbox: {}", sb.name()));
        let out = sandbox::run(
            &sb,
            &self.cfg,
            sandbox::Job {
                work: work.path(),
                command: &plan.command,
                vars,
                timeout: Duration::from_secs(self.cfg.build.timeout_secs),
            },
            std::sync::Arc::new(ctx.log.clone()),
        )
        .await
        .map_err(fail)?;

        ctx.step(&format!("pack {label}"));
        let staged =
            select_artifacts(&out, work.path(), plan.artifacts.as_deref()).map_err(fail)?;
        let comps = self.components.clone();
        let k = key.clone();
        let req = PutRequest {
            who,
            source: Some(Source {
                url: url.to_owned(),
                commit: Some(checkout.commit.clone()),
            }),
            dependencies: closure,
            overwrite: false,
            mtime_clamp: Some(checkout.time.max(0) as u64),
        };
        let stored = tokio::task::spawn_blocking(move || comps.put_dir(&k, &staged, req))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        ctx.log.line(&format!(
            "stored {key}: blake3 {} ({} bytes)",
            stored.record.blake3, stored.record.size
        ));
        Ok(stored.record)
    }
}

/// `ADBS_DEP_<NAME>`: upper case, non-alphanumerics as `_`.
pub fn dep_var(name: &str) -> String {
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ADBS_DEP_{n}")
}

/// The tree to pack: the built tree minus `.git`, or only the recipe's
/// `artifacts` (paths or glob patterns, relative to the tree).
///
/// Every match is checked on the real file system: it must be reached from
/// the tree's root without passing through a symlink (a symlinked directory
/// in the tree can point anywhere, the store included), so only entries of
/// the tree itself are moved, by a rename inside the work directory. A
/// matched symlink is moved as the link itself; packing then refuses it if
/// it resolves outside the tree.
pub fn select_artifacts(
    out: &Path,
    work: &Path,
    artifacts: Option<&[String]>,
) -> Result<PathBuf, String> {
    let _ = std::fs::remove_dir_all(out.join(".git"));
    let Some(list) = artifacts else {
        return Ok(out.to_owned());
    };
    let mut chosen: Vec<PathBuf> = Vec::new();
    for pat in list {
        let p = Path::new(pat);
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!("artifact '{pat}' must be a path inside the tree"));
        }
        let full = out.join(pat);
        let mut found = 0;
        let matches = glob::glob(&full.to_string_lossy())
            .map_err(|e| format!("artifact pattern '{pat}': {e}"))?;
        for m in matches.filter_map(Result::ok) {
            let rel = m
                .strip_prefix(out)
                .map_err(|_| format!("artifact '{pat}' matched outside the tree"))?
                .to_owned();
            match beneath::lstat_direct(out, &rel) {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) => {
                    return Err(format!(
                        "artifact '{pat}': {e}: artifacts are taken from the tree itself, never through a link"
                    ))
                }
            }
            found += 1;
            chosen.push(rel);
        }
        if found == 0 {
            return Err(format!("artifact '{pat}' was not produced by the build"));
        }
    }
    // a match inside another match moves with it
    chosen.sort();
    chosen.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for rel in chosen {
        if !kept.iter().any(|k| rel.starts_with(k)) {
            kept.push(rel);
        }
    }
    let stage = work.join("artifacts");
    std::fs::create_dir_all(&stage).map_err(|e| e.to_string())?;
    for rel in kept {
        if let Some(parent) = rel.parent() {
            beneath::create_dirs(&stage, parent).map_err(|e| e.to_string())?;
        }
        std::fs::rename(out.join(&rel), stage.join(&rel))
            .map_err(|e| format!("artifact {}: {e}", rel.display()))?;
    }
    Ok(stage)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dep_vars() {
        assert_eq!(super::dep_var("epics-base"), "ADBS_DEP_EPICS_BASE");
        assert_eq!(super::dep_var("asyn"), "ADBS_DEP_ASYN");
    }
}
