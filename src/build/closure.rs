//! A client's dependency closure, resolved against the store: the roots
//! (a recipe's dependencies, or a list), each component's direct
//! dependencies (a stored record's, else its recipe read at the tag from
//! its repository), in build order, each stored one pinned to its blob.
//! Two tags of one component and cycles are errors naming their chains.
//! Also: verifying a lock (every pinned blob still stored under its key)
//! and building what is missing, dependencies first, as one job.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex};
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
    /// Too many resolves are reading repositories: retry later.
    #[error("{0}")]
    Busy(String),
    /// A lock names blobs that are no longer stored under their keys.
    #[error("the lock no longer matches the store: {}", .0.join("; "))]
    LockMismatch(Vec<String>),
    #[error("{0}")]
    Internal(String),
}

/// Recipes of missing components read recently, and the bound on reading
/// them: a resolution asks again for each request while the component is
/// missing, and anyone may ask. What a tag names is kept for
/// [`REF_TTL`], a commit's dependencies (commits never change) for
/// [`RECIPE_TTL`], a failure for [`FAILURE_TTL`]; a commit id in any
/// abbreviation or letter case maps to the full id without a fetch once
/// the mirror has it. At most `max_running` resolves read repositories at
/// once, `max_waiting` more wait (up to [`GATE_WAIT`]); past that, a
/// resolve is refused as busy rather than holding a thread.
pub struct RecipeCache {
    /// (url, reference) -> what it named.
    refs: Mutex<HashMap<(String, String), (Instant, String)>>,
    /// (url, commit, arch) -> its direct dependencies.
    recipes: Mutex<HashMap<Triple, (Instant, Vec<Requirement>)>>,
    /// (url, reference, arch) -> why it could not be read.
    failures: Mutex<HashMap<Triple, (Instant, String)>>,
    gate: Gate,
}

/// (url, commit or reference, arch)
type Triple = (String, String, String);

const REF_TTL: Duration = Duration::from_secs(120);
const RECIPE_TTL: Duration = Duration::from_secs(600);
const FAILURE_TTL: Duration = Duration::from_secs(60);
/// A mirror fetched this recently is read as it is while resolving.
const FRESH: Duration = Duration::from_secs(30);
/// Longest a resolve waits for a slot to read a repository.
pub const GATE_WAIT: Duration = Duration::from_secs(60);
/// Entries a map of the cache holds before it is cleared.
const MAX_ENTRIES: usize = 4096;

impl RecipeCache {
    pub fn new(max_running: usize, max_waiting: usize) -> Self {
        Self {
            refs: Mutex::default(),
            recipes: Mutex::default(),
            failures: Mutex::default(),
            gate: Gate {
                max_running: max_running.max(1),
                max_waiting,
                state: Mutex::new((0, 0)),
                freed: Condvar::new(),
            },
        }
    }

    /// A recent answer for (url, reference, arch): its commit and
    /// dependencies, or the error it gave.
    fn lookup(&self, url: &str, reference: &str, arch: &str) -> Option<Result<Known, String>> {
        let fk = (url.to_owned(), reference.to_owned(), arch.to_owned());
        if let Ok(f) = self.failures.lock() {
            if let Some((at, why)) = f.get(&fk) {
                if at.elapsed() < FAILURE_TTL {
                    return Some(Err(why.clone()));
                }
            }
        }
        let commit = {
            let refs = self.refs.lock().ok()?;
            let (at, c) = refs.get(&(url.to_owned(), reference.to_owned()))?;
            (at.elapsed() < REF_TTL).then(|| c.clone())?
        };
        let recipes = self.recipes.lock().ok()?;
        let (at, reqs) = recipes.get(&(url.to_owned(), commit.clone(), arch.to_owned()))?;
        (at.elapsed() < RECIPE_TTL).then(|| Ok((commit, reqs.clone())))
    }

    fn remember(&self, url: &str, reference: &str, arch: &str, got: &Result<Known, ResolveError>) {
        fn put<K: std::hash::Hash + Eq, V>(m: &Mutex<HashMap<K, V>>, k: K, v: V) {
            if let Ok(mut m) = m.lock() {
                if m.len() >= MAX_ENTRIES {
                    m.clear();
                }
                m.insert(k, v);
            }
        }
        let now = Instant::now();
        match got {
            Ok((commit, reqs)) => {
                put(
                    &self.refs,
                    (url.to_owned(), reference.to_owned()),
                    (now, commit.clone()),
                );
                put(
                    &self.recipes,
                    (url.to_owned(), commit.clone(), arch.to_owned()),
                    (now, reqs.clone()),
                );
            }
            Err(ResolveError::Source(why)) => put(
                &self.failures,
                (url.to_owned(), reference.to_owned(), arch.to_owned()),
                (now, why.clone()),
            ),
            Err(_) => {}
        }
    }
}

/// A commit and its direct dependencies.
type Known = (String, Vec<Requirement>);

/// A counting gate for blocking threads with a bounded queue.
struct Gate {
    max_running: usize,
    max_waiting: usize,
    /// (running, waiting)
    state: Mutex<(usize, usize)>,
    freed: Condvar,
}

struct Slot<'a>(&'a Gate);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.state.lock() {
            st.0 = st.0.saturating_sub(1);
        }
        // every waiter looks: one whose wait just ran out must not swallow
        // the wake-up another needs
        self.0.freed.notify_all();
    }
}

fn busy() -> ResolveError {
    ResolveError::Busy("too many resolves are reading repositories right now: retry later".into())
}

impl Gate {
    fn enter(&self) -> Result<Slot<'_>, ResolveError> {
        let poisoned = |_| ResolveError::Internal("the resolve gate is poisoned".into());
        let mut st = self.state.lock().map_err(poisoned)?;
        if st.0 < self.max_running {
            st.0 += 1;
            return Ok(Slot(self));
        }
        if st.1 >= self.max_waiting {
            return Err(busy());
        }
        st.1 += 1;
        let end = Instant::now() + GATE_WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let (g, _) = self
                .freed
                .wait_timeout(st, left)
                .map_err(|_| ResolveError::Internal("the resolve gate is poisoned".into()))?;
            st = g;
            if st.0 < self.max_running {
                st.1 -= 1;
                st.0 += 1;
                return Ok(Slot(self));
            }
            if Instant::now() >= end {
                st.1 -= 1;
                return Err(busy());
            }
        }
    }
}

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
        check_lock(arch, &roots, pinned)?;
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
    /// tag (and the commit the tag names), read from the commit's tree in
    /// the mirror (no work tree, no submodules), cached (see
    /// [`RecipeCache`]) and bounded by its gate.
    fn recipe_requires(
        &self,
        url: &str,
        tag: &str,
        arch: &str,
    ) -> Result<(String, Vec<Requirement>), ResolveError> {
        if let Some(hit) = self.recipes.lookup(url, tag, arch) {
            return hit.map_err(ResolveError::Source);
        }
        let _slot = self.recipes.gate.enter()?;
        // another request may have read it while this one waited
        if let Some(hit) = self.recipes.lookup(url, tag, arch) {
            return hit.map_err(ResolveError::Source);
        }
        let got = self.read_requires(url, tag, arch);
        self.recipes.remember(url, tag, arch, &got);
        got
    }

    fn read_requires(
        &self,
        url: &str,
        tag: &str,
        arch: &str,
    ) -> Result<(String, Vec<Requirement>), ResolveError> {
        let found = self
            .git
            .read_recipe(url, tag, FRESH)
            .map_err(ResolveError::Source)?;
        let at = |e: String| ResolveError::Source(format!("{url} at {tag}: {e}"));
        let deps = match &found.file {
            Some((name, text)) => Recipe::parse(text, name)
                .and_then(|r| r.dependencies_for(arch))
                .map_err(|e| at(e.to_string()))?,
            None if found.detectable => Vec::new(),
            None => {
                return Err(at(format!(
                    "no build recipe: looked for {} (a recipe) and {} (to detect a build from), found none",
                    super::recipe::RECIPE_FILES.join(", "),
                    super::recipe::DETECTED_BUILDS
                        .iter()
                        .map(|(f, _)| *f)
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        let reqs = deps
            .into_iter()
            .map(|d| Requirement {
                component: d.name,
                tag: d.tag,
            })
            .collect();
        Ok((found.commit, reqs))
    }
}

/// A lock document's names and shape, before anything is looked up: every
/// name valid (the field named when not), each component once, every root
/// among the components at the same tag.
fn check_lock(
    arch: &str,
    roots: &[Requirement],
    pinned: &[(Requirement, String)],
) -> Result<(), ResolveError> {
    use crate::model::validate_name;
    let bad =
        |field: String, e: crate::model::NameError| ResolveError::Invalid(format!("{field}: {e}"));
    validate_name("architecture", arch).map_err(|e| bad("lock.arch".into(), e))?;
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (i, (r, blake3)) in pinned.iter().enumerate() {
        validate_name("component", &r.component)
            .map_err(|e| bad(format!("lock.components[{i}].component"), e))?;
        validate_name("tag", &r.tag).map_err(|e| bad(format!("lock.components[{i}].tag"), e))?;
        if blake3.len() != 64 || !blake3.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ResolveError::Invalid(format!(
                "lock.components[{i}].blake3: expected 64 hex characters"
            )));
        }
        if let Some(prev) = seen.insert(&r.component, &r.tag) {
            return Err(ResolveError::Invalid(format!(
                "lock.components[{i}]: {} is listed twice ({prev} and {}); a closure holds one tag of each component",
                r.component, r.tag
            )));
        }
    }
    for (i, r) in roots.iter().enumerate() {
        validate_name("component", &r.component)
            .map_err(|e| bad(format!("lock.roots[{i}].component"), e))?;
        validate_name("tag", &r.tag).map_err(|e| bad(format!("lock.roots[{i}].tag"), e))?;
        if seen.get(r.component.as_str()) != Some(&r.tag.as_str()) {
            return Err(ResolveError::Invalid(format!(
                "lock.roots[{i}]: {} {} is not among the lock's components",
                r.component, r.tag
            )));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_runs_a_few_queues_a_few_and_refuses_the_rest() {
        let cache = RecipeCache::new(1, 1);
        let first = cache.gate.enter().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| cache.gate.enter().map(|_| ()));
            // let the waiter queue up, then one more is refused at once
            while cache.gate.state.lock().unwrap().1 == 0 {
                std::thread::yield_now();
            }
            let t0 = Instant::now();
            assert!(matches!(cache.gate.enter(), Err(ResolveError::Busy(_))));
            assert!(t0.elapsed() < Duration::from_secs(1));
            drop(first);
            assert!(waiter.join().unwrap().is_ok());
        });
        assert_eq!(*cache.gate.state.lock().unwrap(), (0, 0));
    }

    #[test]
    fn locks_are_checked_field_by_field() {
        let r = |c: &str, t: &str| Requirement {
            component: c.into(),
            tag: t.into(),
        };
        let h = "a".repeat(64);
        let ok = [(r("base", "R1"), h.clone())];
        assert!(check_lock("rocky9", &[r("base", "R1")], &ok).is_ok());
        let err = |arch: &str, roots: &[Requirement], pinned: &[(Requirement, String)]| {
            check_lock(arch, roots, pinned).unwrap_err().to_string()
        };
        assert!(err("rocky9", &[r("evil", "../../x")], &ok).starts_with("lock.roots[0].tag"));
        assert!(err("rocky9", &[r("base", "R2")], &ok).contains("not among"));
        let twice = [(r("base", "R1"), h.clone()), (r("base", "R2"), h.clone())];
        assert!(err("rocky9", &[], &twice).contains("listed twice"));
        assert!(err("../x", &[], &ok).starts_with("lock.arch"));
    }
}
