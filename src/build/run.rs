//! The build pipeline: clone -> recipe -> dependencies (built first when
//! missing) -> inputs key (an identical build is reused, not run again) ->
//! sandboxed build -> artifacts -> pack -> store; and the rebuild check,
//! which runs the same pipeline from a record's exact inputs and compares
//! the result.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use super::execute::{self, BuildHost, BuildSpec, GitPolicy, RecordMeta};
use super::inputs::Inputs;
use super::recipe::{BuildPlan, Recipe};
use super::sandbox::{self, Sandbox};
use super::{git, resolve, Builder, SubmitError, Submitted};
use crate::components::PutRequest;
use crate::config::Executor;
use crate::jobs::{JobCtx, WorkError};
use crate::model::{
    ComponentKey, Identity, JobTarget, Record, RefKind, Reproducibility, Requirement,
    ResolvedDependency, Source,
};
use crate::process;

/// Runs a build in the service's pool: dependencies from the store, lines
/// into the job's log.
struct LocalHost<'a> {
    ctx: &'a JobCtx,
    components: &'a crate::components::Components,
}

impl BuildHost for LocalHost<'_> {
    fn sink(&self) -> Arc<dyn process::LineSink> {
        Arc::new(self.ctx.log.clone())
    }

    fn step(&self, name: &str) {
        self.ctx.step(name);
    }

    fn fetch_dependency<'a>(
        &'a self,
        d: &'a ResolvedDependency,
        dest: &'a std::path::Path,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        let (comps, hex, dest) = (self.components.clone(), d.blake3.clone(), dest.to_owned());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || comps.unpack_blob(&hex, &dest))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        })
    }
}

/// A checked-out tree with its recipe: what every build starts from.
pub(super) struct Checked {
    work: crate::store::scratch::WorkDir,
    checkout: git::Checkout,
    recipe: Recipe,
    plan: BuildPlan,
}

impl Builder {
    /// Clones `url` at `reference` into a fresh work directory and plans the
    /// build of `arch` from its recipe.
    async fn checkout(
        &self,
        ctx: &JobCtx,
        label: &str,
        url: &str,
        reference: &str,
        arch: &str,
    ) -> Result<Checked, WorkError> {
        let fail = |m: String| ctx.fail(m);
        let work = self
            .components
            .scratch()
            .work_dir()
            .map_err(|e| fail(format!("cannot create a work directory: {e}")))?;
        let src = work.path().join("src");
        std::fs::create_dir_all(work.path().join("deps")).map_err(|e| fail(e.to_string()))?;

        ctx.step(&format!("clone {label}"));
        ctx.log.line(&format!("cloning {url} at {reference}"));
        let (u, r, s) = (url.to_owned(), reference.to_owned(), src.clone());
        let (git, log) = (self.git.clone(), ctx.log.clone());
        let checkout =
            tokio::task::spawn_blocking(move || git.checkout(&u, &r, &s, &|l| log.line(l)))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(fail)?;
        ctx.log.line(&format!("commit {}", checkout.commit));

        ctx.step(&format!("recipe {label}"));
        // errors name files in the tree, not where the tree is
        let hide = |m: String| m.replace(&format!("{}/", src.display()), "");
        let recipe = Recipe::from_dir(&src).map_err(|e| fail(hide(e.to_string())))?;
        let plan = recipe.plan(arch).map_err(|e| fail(hide(e.to_string())))?;
        ctx.log.line(&format!("build command: {}", plan.command));
        Ok(Checked {
            work,
            checkout,
            recipe,
            plan,
        })
    }

    /// The builder image's id for the inputs key (`host` outside podman).
    async fn image_id(&self, sb: &Sandbox, work: &Path) -> String {
        match sb {
            Sandbox::Podman { image } => {
                let podman = process::podman_program(&self.cfg.build.podman_build);
                process::output(
                    podman,
                    &["image", "inspect", "--format", "{{.Id}}", image],
                    work,
                )
                .await
                .map(|id| format!("{image}@{id}"))
                .unwrap_or_else(|| image.clone())
            }
            _ => "host".into(),
        }
    }

    /// The spec of a build decided on (`checked` at its commit).
    fn spec(
        &self,
        ctx: &JobCtx,
        key: &ComponentKey,
        checked: &Checked,
        sb: &Sandbox,
        dependencies: Vec<ResolvedDependency>,
        record: RecordMeta,
    ) -> BuildSpec {
        let g = &self.cfg.build.git;
        BuildSpec {
            job: ctx.id.clone(),
            dispatch: String::new(),
            component: key.component.clone(),
            tag: key.tag.clone(),
            arch: key.arch.clone(),
            fetch_url: checked.checkout.fetched_from.clone(),
            commit: checked.checkout.commit.clone(),
            command: checked.plan.command.clone(),
            artifacts: checked.plan.artifacts.clone(),
            sandbox: sb.name().to_owned(),
            image: match sb {
                Sandbox::Podman { image } => Some(image.clone()),
                _ => None,
            },
            dependencies,
            timeout_secs: self.cfg.build.timeout_secs,
            cpus: self.cfg.build_jobs(),
            mtime_clamp: Some(checked.checkout.time.max(0) as u64),
            git: GitPolicy {
                rewrites: g.rewrites.clone(),
                submodule_depth: g.submodule_depth,
                max_submodules: g.max_submodules,
                allowed_hosts: g.allowed_hosts.clone(),
                allow_local: self.cfg.build.allow_local_urls,
            },
            record,
        }
    }

    /// Runs `spec` here, in the service's pool: the tree to pack.
    async fn execute_here(
        &self,
        ctx: &JobCtx,
        spec: &BuildSpec,
        checked: &Checked,
    ) -> Result<std::path::PathBuf, WorkError> {
        let host = LocalHost {
            ctx,
            components: &self.components,
        };
        execute::execute(&host, &self.cfg, spec, checked.work.path())
            .await
            .map_err(|m| ctx.fail(m))
    }

    pub(super) async fn build(
        &self,
        ctx: &JobCtx,
        key: &ComponentKey,
        url: &str,
        mut chain: Vec<String>,
        who: Identity,
    ) -> Result<Record, WorkError> {
        let fail = |m: String| ctx.fail(m);
        self.components
            .ensure_room()
            .map_err(|e| fail(format!("{e}: builds are refused until space is freed")))?;
        chain.push(key.component.clone());
        let label = format!("{} {}", key.component, key.tag);
        let checked = self.checkout(ctx, &label, url, &key.tag, &key.arch).await?;

        ctx.step(&format!("dependencies {label}"));
        let mut direct = Vec::new();
        for d in &checked.plan.dependencies {
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
        let sb =
            sandbox::choose(&self.cfg, &key.arch, checked.plan.image.as_deref()).map_err(fail)?;
        let image = self.image_id(&sb, checked.work.path()).await;
        let repository = git::url::canonical(&checked.checkout.fetched_from);
        let inputs = Inputs {
            url: &repository,
            component: &key.component,
            tag: (!self.cfg.build.reuse_across_tags).then_some(key.tag.as_str()),
            commit: &checked.checkout.commit,
            submodules: &checked.checkout.submodules,
            recipe: &checked.recipe.text,
            dependencies: &closure,
            sandbox: sb.name(),
            image: &image,
            arch: &key.arch,
        }
        .key();
        ctx.log.line(&format!("inputs {inputs}"));
        let requires: Vec<Requirement> = checked
            .plan
            .dependencies
            .iter()
            .map(|d| Requirement {
                component: d.name.clone(),
                tag: d.tag.clone(),
            })
            .collect();
        let req = PutRequest {
            who,
            source: Some(Source {
                url: url.to_owned(),
                commit: Some(checked.checkout.commit.clone()),
                kind: Some(checked.checkout.kind),
                fetched_from: (checked.checkout.fetched_from != url)
                    .then(|| checked.checkout.fetched_from.clone()),
                submodules: checked.checkout.submodules.clone(),
            }),
            dependencies: closure.clone(),
            // a branch's record follows the branch
            overwrite: checked.checkout.kind == RefKind::Branch,
            mtime_clamp: Some(checked.checkout.time.max(0) as u64),
            requires,
            inputs: Some(inputs.clone()),
            reused_from: None,
        };

        // the same inputs built before (this component from this repository
        // at this commit; under another tag only with reuse_across_tags):
        // reuse that output, do not build
        let comps = self.components.clone();
        let (i, k) = (inputs.clone(), key.clone());
        let earlier = tokio::task::spawn_blocking(move || comps.built_from(&i, &k))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        if let Some(prev) = earlier {
            ctx.step(&format!("reuse {label}"));
            ctx.log.line(&format!(
                "these inputs were built as {} {} ({}): reusing that output (blake3 {}) instead of building",
                prev.component, prev.tag, prev.arch, prev.blake3
            ));
            let (comps, k) = (self.components.clone(), key.clone());
            let stored = tokio::task::spawn_blocking(move || comps.put_reused(&k, &prev, req))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(e.to_string()))?;
            ctx.log.line(&format!(
                "stored {key}: blake3 {} ({} bytes), reused",
                stored.record.blake3, stored.record.size
            ));
            return Ok(stored.record);
        }

        let meta = RecordMeta {
            who: req.who.clone(),
            source: req.source.clone().unwrap_or_default(),
            requires: req.requires.clone(),
            inputs: inputs.clone(),
            overwrite: req.overwrite,
        };
        let spec = self.spec(ctx, key, &checked, &sb, closure, meta);
        let executor = self.cfg.executor(&key.arch);
        if executor != Executor::Local {
            let label = label.clone();
            drop(checked); // the worker fetches its own copy
            let rec = self.dispatch(ctx, executor, spec, &label).await?;
            ctx.log.line(&format!(
                "stored {key}: blake3 {} ({} bytes), built by a {} worker",
                rec.blake3,
                rec.size,
                executor.name()
            ));
            return Ok(rec);
        }
        let staged = self.execute_here(ctx, &spec, &checked).await?;
        let (comps, k) = (self.components.clone(), key.clone());
        let stored = tokio::task::spawn_blocking(move || comps.put_dir(&k, &staged, req))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        ctx.log.line(&format!(
            "stored {key}: blake3 {} ({} bytes)",
            stored.record.blake3, stored.record.size
        ));
        drop(checked);
        Ok(stored.record)
    }

    /// Queues a rebuild check of a stored component built by the service:
    /// the same commit, the same dependency blobs, the same sandbox; the
    /// record then says whether the blake3 matched.
    pub fn submit_rebuild(
        &self,
        key: &ComponentKey,
        who: Identity,
    ) -> Result<Submitted, SubmitError> {
        let rec = self
            .components
            .lookup(key)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?
            .ok_or_else(|| SubmitError::Invalid(format!("{key} is not stored")))?;
        let url = match &rec.source {
            Some(Source {
                url,
                commit: Some(_),
                ..
            }) => url.clone(),
            _ => {
                return Err(SubmitError::Invalid(format!(
                    "{key} was uploaded, not built by the service: there are no inputs to rebuild it from"
                )))
            }
        };
        let target = JobTarget::Component {
            component: key.component.clone(),
            tag: key.tag.clone(),
            arch: key.arch.clone(),
            url: Some(url),
        };
        drop(rec);
        let (job, new) = self.jobs.submit(
            &format!("rebuild:{}", key.display_path()),
            "rebuild",
            target,
            who,
        )?;
        Ok(Submitted { job, new })
    }

    pub(super) async fn rebuild(&self, ctx: &JobCtx, rec: Record) -> Result<Record, WorkError> {
        let fail = |m: String| ctx.fail(m);
        let key = rec.key();
        let label = format!("{} {} (rebuild)", key.component, key.tag);
        let src = rec.source.clone().ok_or_else(|| fail("no source".into()))?;
        let commit = src.commit.clone().ok_or_else(|| fail("no commit".into()))?;
        let checked = self
            .checkout(ctx, &label, &src.url, &commit, &key.arch)
            .await?;
        ctx.step(&format!("dependencies {label}"));
        ctx.log
            .line("using exactly the dependency blobs the record was built with");
        let sb =
            sandbox::choose(&self.cfg, &key.arch, checked.plan.image.as_deref()).map_err(fail)?;
        let meta = RecordMeta {
            who: rec.uploaded_by.clone(),
            source: src.clone(),
            requires: rec.requires.clone(),
            inputs: rec.inputs.clone().unwrap_or_default(),
            overwrite: false,
        };
        let spec = self.spec(ctx, &key, &checked, &sb, rec.dependencies.clone(), meta);
        let staged = self.execute_here(ctx, &spec, &checked).await?;
        let (comps, tag) = (self.components.clone(), key.tag.clone());
        let clamp = Some(checked.checkout.time.max(0) as u64);
        let info = tokio::task::spawn_blocking(move || comps.pack_hash(&staged, &tag, clamp))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        let matched = info.hex() == rec.blake3;
        ctx.log.line(&format!(
            "rebuilt blake3 {} {} the stored {}: {}",
            info.hex(),
            if matched { "matches" } else { "differs from" },
            rec.blake3,
            if matched {
                "reproducible"
            } else {
                "not reproducible"
            }
        ));
        let mut updated = rec.clone();
        updated.reproducible = Some(Reproducibility {
            matched,
            rebuilt_blake3: info.hex(),
            checked: Utc::now(),
            job: ctx.id.clone(),
        });
        let comps = self.components.clone();
        let u = updated.clone();
        let saved = tokio::task::spawn_blocking(move || comps.update_record(&u))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        if !saved {
            return Err(fail(format!(
                "{key} changed while it was rebuilt; the result was not recorded"
            )));
        }
        Ok(updated)
    }
}
