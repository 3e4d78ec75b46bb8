//! A client's dependency closure, resolved against the store: the roots
//! (a recipe's dependencies, or a list), each component's direct
//! dependencies (a stored record's, else its recipe read at the tag from
//! its repository), in build order, each stored one pinned to its blob.
//! Two tags of one component and cycles are errors naming their chains.
//! Also: verifying a lock (every pinned blob still stored under its key)
//! and building what is missing, dependencies first, as one job.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::recipe::Recipe;
use super::{Builder, SubmitError, Submitted};
use crate::model::{ClosureStep, ComponentKey, Identity, JobTarget, Record, Requirement};

/// One component of a closure.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: ComponentKey,
    /// The stored record, or `None` when missing.
    pub record: Option<Record>,
    /// Its direct dependencies.
    pub requires: Vec<Requirement>,
    /// Missing: the repository it would be built from, if known.
    pub repository: Option<String>,
    /// Missing: the commit its tag names in the repository now.
    pub commit: Option<String>,
}

/// A resolved closure, in build order (every entry after its dependencies).
#[derive(Debug, Clone)]
pub struct Resolution {
    pub arch: String,
    pub roots: Vec<Requirement>,
    pub entries: Vec<Entry>,
}

impl Resolution {
    pub fn missing(&self) -> Vec<&Entry> {
        self.entries.iter().filter(|e| e.record.is_none()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("two tags of {component} in the dependency closure: {}", chains.join("; "))]
    Conflict {
        component: String,
        chains: Vec<String>,
    },
    #[error("dependency cycle: {0}")]
    Cycle(String),
    #[error("{0}")]
    Invalid(String),
    /// A missing component's recipe could not be read from its repository.
    #[error("{0}")]
    Source(String),
    /// A lock names blobs that are no longer stored under their keys.
    #[error("the lock no longer matches the store: {}", .0.join("; "))]
    LockMismatch(Vec<String>),
    #[error("{0}")]
    Internal(String),
}

/// Recipes of missing components read recently, by (url, tag): a
/// resolution asks again for each request while the component is missing.
#[derive(Default)]
pub struct RecipeCache {
    map: Mutex<HashMap<(String, String), CachedRecipe>>,
}

/// When it was read, the commit, the direct dependencies, for which arch.
type CachedRecipe = (Instant, String, Vec<Requirement>, String);

const RECIPE_CACHE_TTL: Duration = Duration::from_secs(120);

/// Where resolution starts.
pub enum Roots {
    /// A recipe's text (the client's own component): its dependencies.
    Recipe(String),
    List(Vec<Requirement>),
}

impl Builder {
    /// Resolves the closure of `roots` for `arch`. Blocking: reads recipes
    /// of missing components from their repositories.
    pub fn resolve(&self, roots: Roots, arch: &str) -> Result<Resolution, ResolveError> {
        let arch = arch.to_ascii_lowercase();
        let (roots, root_label) = match roots {
            Roots::Recipe(text) => {
                let r = Recipe::parse(&text, "config.yaml")
                    .map_err(|e| ResolveError::Invalid(e.to_string()))?;
                let deps = r
                    .dependencies_for(&arch)
                    .map_err(|e| ResolveError::Invalid(e.to_string()))?;
                let roots = deps
                    .into_iter()
                    .map(|d| Requirement {
                        component: d.name,
                        tag: d.tag,
                    })
                    .collect();
                (roots, Some("config.yaml".to_owned()))
            }
            Roots::List(v) => (v, None),
        };
        let mut walk = Walk {
            builder: self,
            arch: arch.clone(),
            seen: BTreeMap::new(),
            order: Vec::new(),
        };
        for r in &roots {
            let chain: Vec<String> = root_label.iter().cloned().collect();
            walk.visit(r, &chain)?;
        }
        Ok(Resolution {
            arch,
            roots,
            entries: walk.order,
        })
    }

    /// Checks that every pinned entry is still stored with its blake3.
    pub fn verify_lock(
        &self,
        arch: &str,
        roots: Vec<Requirement>,
        pinned: &[(Requirement, String)],
    ) -> Result<Resolution, ResolveError> {
        let mut entries = Vec::new();
        let mut wrong = Vec::new();
        for (r, blake3) in pinned {
            let key = ComponentKey::new(&r.component, &r.tag, arch)
                .map_err(|e| ResolveError::Invalid(e.to_string()))?;
            match self.components.lookup(&key) {
                Ok(Some(rec)) if rec.blake3 == *blake3 => entries.push(Entry {
                    key,
                    requires: requires_of(&rec),
                    record: Some(rec),
                    repository: None,
                    commit: None,
                }),
                Ok(Some(rec)) => wrong.push(format!(
                    "{} {} ({arch}) is now stored with blake3 {}, the lock says {blake3}",
                    r.component, r.tag, rec.blake3
                )),
                Ok(None) => wrong.push(format!(
                    "{} {} ({arch}) is no longer stored (the lock says blake3 {blake3})",
                    r.component, r.tag
                )),
                Err(e) => return Err(ResolveError::Internal(e.to_string())),
            }
        }
        if !wrong.is_empty() {
            return Err(ResolveError::LockMismatch(wrong));
        }
        Ok(Resolution {
            arch: arch.to_owned(),
            roots,
            entries,
        })
    }

    /// Builds the missing entries of `res` in order, as one job (joined by
    /// an identical request while it runs).
    pub fn submit_closure(
        &self,
        res: &Resolution,
        who: Identity,
    ) -> Result<Submitted, SubmitError> {
        let mut todo = Vec::new();
        for e in res.missing() {
            let url = e.repository.clone().ok_or_else(|| {
                SubmitError::Invalid(format!(
                    "{} {} ({}) is missing and its repository is unknown (configure build.catalog or build.url_template)",
                    e.key.component, e.key.tag, e.key.arch
                ))
            })?;
            todo.push((e.key.clone(), url));
        }
        let flight = format!(
            "closure:{}:{}",
            res.arch,
            todo.iter()
                .map(|(k, _)| format!("{}@{}", k.component, k.tag))
                .collect::<Vec<_>>()
                .join(",")
        );
        let target = JobTarget::Closure {
            arch: res.arch.clone(),
            components: todo
                .iter()
                .map(|(k, url)| ClosureStep {
                    component: k.component.clone(),
                    tag: k.tag.clone(),
                    url: Some(url.clone()),
                })
                .collect(),
        };
        let (job, new) = self.jobs.submit(&flight, "closure", target, who)?;
        Ok(Submitted { job, new })
    }

    /// A missing component's direct dependencies, from its recipe at the
    /// tag (and the commit the tag names), cached for a while.
    fn recipe_requires(
        &self,
        url: &str,
        tag: &str,
        arch: &str,
    ) -> Result<(String, Vec<Requirement>), ResolveError> {
        let key = (url.to_owned(), tag.to_owned());
        if let Ok(map) = self.recipes.map.lock() {
            if let Some((at, commit, reqs, a)) = map.get(&key) {
                if at.elapsed() < RECIPE_CACHE_TTL && a == arch {
                    return Ok((commit.clone(), reqs.clone()));
                }
            }
        }
        let work = self
            .components
            .scratch()
            .work_dir()
            .map_err(|e| ResolveError::Internal(e.to_string()))?;
        let dir = work.path().join("src");
        let checkout = self
            .git
            .checkout(url, tag, &dir, &|l| tracing::debug!("{l}"))
            .map_err(ResolveError::Source)?;
        let recipe = Recipe::from_dir(&dir).map_err(|e| {
            ResolveError::Source(
                format!("{url} at {tag}: {e}").replace(&work.path().display().to_string(), ""),
            )
        })?;
        let reqs: Vec<Requirement> = recipe
            .dependencies_for(arch)
            .map_err(|e| ResolveError::Source(format!("{url} at {tag}: {e}")))?
            .into_iter()
            .map(|d| Requirement {
                component: d.name,
                tag: d.tag,
            })
            .collect();
        if let Ok(mut map) = self.recipes.map.lock() {
            if map.len() > 1000 {
                map.clear();
            }
            map.insert(
                key,
                (
                    Instant::now(),
                    checkout.commit.clone(),
                    reqs.clone(),
                    arch.to_owned(),
                ),
            );
        }
        Ok((checkout.commit, reqs))
    }
}

/// A stored record's direct dependencies: its recipe's when recorded, else
/// its closure (uploads have none; older builds recorded only the closure,
/// which as edges gives the same closure and a valid order).
fn requires_of(rec: &Record) -> Vec<Requirement> {
    if !rec.requires.is_empty() {
        return rec.requires.clone();
    }
    rec.dependencies
        .iter()
        .map(|d| Requirement {
            component: d.component.clone(),
            tag: d.tag.clone(),
        })
        .collect()
}

struct Walk<'a> {
    builder: &'a Builder,
    arch: String,
    /// component -> (tag, the chain that first reached it)
    seen: BTreeMap<String, (String, String)>,
    order: Vec<Entry>,
}

impl Walk<'_> {
    fn visit(&mut self, r: &Requirement, chain: &[String]) -> Result<(), ResolveError> {
        let here = format!("{}@{}", r.component, r.tag);
        let path = |end: &str| {
            let mut p: Vec<&str> = chain.iter().map(String::as_str).collect();
            p.push(end);
            p.join(" -> ")
        };
        if chain
            .iter()
            .any(|c| c.split('@').next() == Some(r.component.as_str()))
        {
            return Err(ResolveError::Cycle(path(&here)));
        }
        if let Some((tag, first)) = self.seen.get(&r.component) {
            if *tag != r.tag {
                return Err(ResolveError::Conflict {
                    component: r.component.clone(),
                    chains: vec![first.clone(), path(&here)],
                });
            }
            return Ok(());
        }
        self.seen
            .insert(r.component.clone(), (r.tag.clone(), path(&here)));
        let key = ComponentKey::new(&r.component, &r.tag, &self.arch)
            .map_err(|e| ResolveError::Invalid(format!("{}: {e}", path(&here))))?;
        let record = self
            .builder
            .components
            .lookup(&key)
            .map_err(|e| ResolveError::Internal(e.to_string()))?;
        let (requires, repository, commit) = match &record {
            Some(rec) => (requires_of(rec), None, None),
            None => match self.builder.url_for(&r.component) {
                Some(url) => {
                    let (commit, reqs) = self
                        .builder
                        .recipe_requires(&url, &r.tag, &self.arch)
                        .map_err(|e| match e {
                            ResolveError::Source(m) => {
                                ResolveError::Source(format!("{}: {m}", path(&here)))
                            }
                            other => other,
                        })?;
                    (reqs, Some(url), Some(commit))
                }
                None => (Vec::new(), None, None),
            },
        };
        let mut next = chain.to_vec();
        next.push(here);
        for d in &requires {
            self.visit(d, &next)?;
        }
        self.order.push(Entry {
            key,
            record,
            requires,
            repository,
            commit,
        });
        Ok(())
    }
}
