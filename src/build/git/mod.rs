//! Sources from git (git2, no child processes): checking out a tag, a
//! branch or a commit into a work tree, through the clone cache (`cache`),
//! with mirror rewrites and the URL policy (`url`), and the submodules the
//! commit pins, recursively, each through the same policy and cache, and
//! each commit's tree checked before it is written (`tree`). Resolving
//! reads a recipe straight from a mirror's tree, with no work tree and no
//! submodules.
//!
//! Network errors are logged, not answered: a caller learns that a fetch
//! failed, not whether a port was closed or what a server said.

pub mod cache;
pub mod tree;
pub mod url;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use git2::build::{CheckoutBuilder, CloneLocal, RepoBuilder};
use git2::{Cred, CredentialType, Direction, ObjectType, RemoteCallbacks, Repository};

pub use url::check_url;

use crate::build::recipe::{DETECTED_BUILDS, MAX_RECIPE_BYTES, RECIPE_FILES};
use crate::model::{RefKind, SubmodulePin};
use crate::store::beneath;

/// The commit a build used.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub commit: String,
    /// Commit time (unix seconds), used to clamp mtimes in the tarball.
    pub time: i64,
    /// What the reference named: a tag, a branch or a commit.
    pub kind: RefKind,
    /// The URL fetched from (after `build.git.rewrites`).
    pub fetched_from: String,
    /// Every submodule checked out (recursively), at the commit pinned.
    pub submodules: Vec<SubmodulePin>,
}

/// A recipe read from a commit's tree (no work tree).
#[derive(Debug, Clone)]
pub struct TreeRecipe {
    /// The full commit id the reference named.
    pub commit: String,
    /// The recipe file's path in the tree and its text, when there is one.
    pub file: Option<(String, String)>,
    /// A file a build can be detected from is at the tree's root.
    pub detectable: bool,
}

/// How sources are fetched: the URL policy, mirror rewrites, the clone
/// cache, the submodule bounds.
pub struct Git {
    pub allow_local: bool,
    pub rewrites: BTreeMap<String, String>,
    pub cache: Option<cache::Cache>,
    pub submodule_depth: u32,
    /// Submodules one checkout may hold, every depth together.
    pub max_submodules: usize,
    /// Hosts submodules may use besides their parent's (`url::check_submodule_host`).
    pub allowed_hosts: Vec<String>,
    /// Fetches outside the cache (`build.git.cache = false`).
    pub limits: cache::Limits,
    /// Where fetches outside the cache go (`data/tmp`).
    pub tmp_dir: PathBuf,
}

/// Sets libgit2's network timeouts (process-wide): a server must accept a
/// connection within `connect` and may stay silent for `idle`.
pub fn set_timeouts(connect: Duration, idle: Duration) {
    let ms = |d: Duration| d.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: plain integer options of libgit2, set before and between fetches.
    let r = unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms(connect))
            .and_then(|_| git2::opts::set_server_timeout_in_milliseconds(ms(idle)))
    };
    if let Err(e) = r {
        tracing::warn!("cannot set git network timeouts: {}", e.message());
    }
}

/// `msg` without the path of `dir` (an absolute path under the data
/// directory is nobody's business).
fn hide_path(msg: String, dir: &Path) -> String {
    let d = dir.display().to_string();
    if d.is_empty() {
        return msg;
    }
    msg.replace(&format!("{d}/"), "").replace(&d, ".")
}

fn hexish(reference: &str) -> bool {
    (7..=40).contains(&reference.len()) && reference.chars().all(|c| c.is_ascii_hexdigit())
}

impl Git {
    /// `url` as fetched: rewritten by the longest matching rule, else as is.
    pub fn fetch_url(&self, url: &str) -> String {
        url::rewrite(url, &self.rewrites).unwrap_or_else(|| url.to_owned())
    }

    /// Checks `reference` of `url` out into `dest` (which must not exist or
    /// be empty), with its submodules; `log` hears what happens.
    pub fn checkout(
        &self,
        url: &str,
        reference: &str,
        dest: &Path,
        log: &dyn Fn(&str),
    ) -> Result<Checkout, String> {
        self.checkout_in(url, reference, dest, log)
            .map_err(|e| hide_path(e, dest))
    }

    fn checkout_in(
        &self,
        url: &str,
        reference: &str,
        dest: &Path,
        log: &dyn Fn(&str),
    ) -> Result<Checkout, String> {
        check_url(url, self.allow_local)?;
        let used = self.fetch_url(url);
        if used != url {
            log(&format!(
                "{url} is fetched from {used} (build.git.rewrites)"
            ));
        }
        let repo = self.clone_into(&used, dest, log)?;
        let (obj, kind) = resolve(&repo, reference, "refs/remotes/origin/")
            .ok_or_else(|| format!("{url} has no tag, branch or commit named '{reference}'"))?;
        let commit = obj
            .peel_to_commit()
            .map_err(|e| format!("'{reference}' is not a commit: {}", e.message()))?;
        checkout_commit(&repo, &commit, &format!("{reference} of {url}"))?;
        let mut count = 0usize;
        let submodules = self.submodules(dest, url, &commit, 1, "", &mut count, log)?;
        Ok(Checkout {
            commit: commit.id().to_string(),
            time: commit.time().seconds(),
            kind,
            fetched_from: used,
            submodules,
        })
    }

    /// A full clone of `url` at `dest`, nothing checked out yet: copied
    /// from the cached mirror (only new objects fetched), or from a mirror
    /// fetched for this clone alone without a cache.
    fn clone_into(&self, url: &str, dest: &Path, log: &dyn Fn(&str)) -> Result<Repository, String> {
        let clone = |mirror: &Path| {
            let mut nothing = CheckoutBuilder::new();
            nothing.dry_run();
            let repo = RepoBuilder::new()
                .clone_local(CloneLocal::NoLinks)
                .with_checkout(nothing)
                .clone(&mirror.to_string_lossy(), dest)
                .map_err(|e| {
                    tracing::error!("copy of the mirror of {url}: {}", e.message());
                    format!(
                        "cannot copy {url} from its mirror (the details are in the service's log)"
                    )
                })?;
            let _ = repo.remote_set_url("origin", url);
            Ok(repo)
        };
        match &self.cache {
            Some(cache) => {
                let (lease, _) = cache.update(url, callbacks(), None, log)?;
                clone(&lease.path)
            }
            None => {
                let tmp = self.tmp_mirror()?;
                self.limits.check_room()?;
                cache::fetch(tmp.path(), url, callbacks(), &self.limits)
                    .map_err(|e| e.to_string())?;
                clone(tmp.path())
            }
        }
    }

    fn tmp_mirror(&self) -> Result<tempfile::TempDir, String> {
        std::fs::create_dir_all(&self.tmp_dir)
            .and_then(|_| {
                tempfile::Builder::new()
                    .prefix("git-")
                    .tempdir_in(&self.tmp_dir)
            })
            .map_err(|e| {
                tracing::error!("git temp dir: {e}");
                "cannot make a temporary directory for a fetch (the details are in the service's log)".to_owned()
            })
    }

    /// The recipe of `url` at `reference`, read from the commit's tree in
    /// a mirror: no work tree, no submodules. A commit id the cached
    /// mirror already has is read without a fetch (commits never change);
    /// a mirror fetched within `fresh` is used as it is.
    pub fn read_recipe(
        &self,
        url: &str,
        reference: &str,
        fresh: Duration,
    ) -> Result<TreeRecipe, String> {
        check_url(url, self.allow_local)?;
        let used = self.fetch_url(url);
        let missing = || format!("{url} has no tag, branch or commit named '{reference}'");
        let log = |l: &str| tracing::debug!("{l}");
        match &self.cache {
            Some(cache) => {
                if hexish(reference) {
                    if let Some(lease) = cache.existing(&used)? {
                        let repo = open_mirror(&lease.path)?;
                        let named = resolve(&repo, reference, "refs/heads/")
                            .is_some_and(|(_, k)| k != RefKind::Commit);
                        if !named {
                            if let Some((obj, _)) = resolve(&repo, reference, "refs/heads/") {
                                return recipe_of(&repo, &obj, url, reference);
                            }
                        }
                    }
                }
                let (lease, _) = cache.update(&used, callbacks(), Some(fresh), &log)?;
                let repo = open_mirror(&lease.path)?;
                let (obj, _) = resolve(&repo, reference, "refs/heads/").ok_or_else(missing)?;
                recipe_of(&repo, &obj, url, reference)
            }
            None => {
                let tmp = self.tmp_mirror()?;
                self.limits.check_room()?;
                cache::fetch(tmp.path(), &used, callbacks(), &self.limits)
                    .map_err(|e| e.to_string())?;
                let repo = open_mirror(tmp.path())?;
                let (obj, _) = resolve(&repo, reference, "refs/heads/").ok_or_else(missing)?;
                recipe_of(&repo, &obj, url, reference)
            }
        }
    }

    /// Checks out the submodules `commit` pins (per `.gitmodules`), each at
    /// the pinned commit, recursively up to `submodule_depth` levels and
    /// `max_submodules` in all (`count` so far); each URL must pass the
    /// URL policy and the host policy (`url::check_submodule_host`).
    #[allow(clippy::too_many_arguments)]
    fn submodules(
        &self,
        workdir: &Path,
        parent_url: &str,
        commit: &git2::Commit<'_>,
        depth: u32,
        prefix: &str,
        count: &mut usize,
        log: &dyn Fn(&str),
    ) -> Result<Vec<SubmodulePin>, String> {
        let declared = read_gitmodules(workdir)?;
        if declared.is_empty() {
            return Ok(Vec::new());
        }
        if depth > self.submodule_depth {
            return Err(format!(
                "submodules nested deeper than {} levels at {prefix} (build.git.submodule_depth)",
                self.submodule_depth
            ));
        }
        let tree = commit
            .tree()
            .map_err(|e| format!("reading the tree: {}", e.message()))?;
        let mut pins = Vec::new();
        for (name, path, raw_url) in declared {
            let shown = format!("submodule {name} ({prefix}{path})");
            let rel = Path::new(&path);
            if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(format!("{shown}: its path must lie inside the repository"));
            }
            let Ok(entry) = tree.get_path(rel) else {
                log(&format!(
                    "{shown} is declared but not pinned by the commit: skipped"
                ));
                continue;
            };
            if entry.kind() != Some(ObjectType::Commit) {
                return Err(format!("{shown}: the commit pins no submodule at {path}"));
            }
            *count += 1;
            if *count > self.max_submodules {
                return Err(format!(
                    "more than {} submodules in one checkout (build.git.max_submodules), at {shown}",
                    self.max_submodules
                ));
            }
            let pinned = entry.id();
            let written = url::resolve_relative(parent_url, &raw_url);
            check_url(&written, self.allow_local).map_err(|e| format!("{shown}: {e}"))?;
            url::check_submodule_host(&written, parent_url, &self.allowed_hosts, &self.rewrites)
                .map_err(|e| format!("{shown}: {e}"))?;
            let used = self.fetch_url(&written);
            log(&format!(
                "{shown}: {written}{} at {pinned}",
                if used != written {
                    format!(" (fetched from {used})")
                } else {
                    String::new()
                }
            ));
            // the checkout left an empty directory there, in the tree itself
            match beneath::lstat_direct(workdir, rel) {
                Ok(Some(m)) if m.is_dir() => {}
                Ok(None) => {
                    beneath::create_dirs(workdir, rel).map_err(|e| format!("{shown}: {e}"))?
                }
                Ok(Some(_)) => return Err(format!("{shown}: {path} is not a directory")),
                Err(e) => return Err(format!("{shown}: {e}")),
            }
            let dest = workdir.join(rel);
            let sub = self.clone_into(&used, &dest, log).map_err(|e| {
                tracing::warn!("{shown} from {written}: {e}");
                format!("cannot fetch {shown} from {written} (as written in .gitmodules)")
            })?;
            let c = sub.find_commit(pinned).map_err(|_| {
                format!("{shown}: {written} has no commit {pinned} (the parent pins it)")
            })?;
            checkout_commit(&sub, &c, &shown)?;
            let here = format!("{prefix}{path}");
            pins.push(SubmodulePin {
                path: here.clone(),
                url: written.clone(),
                fetched_from: (used != written).then_some(used),
                commit: pinned.to_string(),
            });
            let inner = self.submodules(
                &dest,
                &written,
                &c,
                depth + 1,
                &format!("{here}/"),
                count,
                log,
            )?;
            pins.extend(inner);
        }
        Ok(pins)
    }
}

fn open_mirror(path: &Path) -> Result<Repository, String> {
    Repository::open_bare(path).map_err(|e| {
        tracing::error!("open mirror {}: {}", path.display(), e.message());
        "cannot open a mirror of the clone cache (the details are in the service's log)".to_owned()
    })
}

/// The recipe in the tree of the commit `obj` names.
fn recipe_of(
    repo: &Repository,
    obj: &git2::Object<'_>,
    url: &str,
    reference: &str,
) -> Result<TreeRecipe, String> {
    let commit = obj
        .peel_to_commit()
        .map_err(|e| format!("'{reference}' of {url} is not a commit: {}", e.message()))?;
    let tree = commit
        .tree()
        .map_err(|e| format!("{url} at {reference}: reading the tree: {}", e.message()))?;
    let detectable = DETECTED_BUILDS.iter().any(|(f, _)| {
        tree.get_name(f)
            .is_some_and(|e| e.kind() == Some(ObjectType::Blob))
    });
    let mut file = None;
    for name in RECIPE_FILES {
        if let Some(text) =
            blob_at(repo, &tree, name).map_err(|e| format!("{url} at {reference}: {name}: {e}"))?
        {
            file = Some((name.to_owned(), text));
            break;
        }
    }
    Ok(TreeRecipe {
        commit: commit.id().to_string(),
        file,
        detectable,
    })
}

/// The text of the regular file at `path` in `tree`, symlinks followed
/// inside the tree (never above its root); `None` when there is none.
fn blob_at(repo: &Repository, tree: &git2::Tree<'_>, path: &str) -> Result<Option<String>, String> {
    let mut at = PathBuf::from(path);
    for _ in 0..8 {
        let Ok(entry) = tree.get_path(&at) else {
            return Ok(None);
        };
        if entry.kind() != Some(ObjectType::Blob) {
            return Ok(None);
        }
        let blob = repo
            .find_blob(entry.id())
            .map_err(|e| format!("cannot read it: {}", e.message()))?;
        if entry.filemode() == 0o120000 {
            let target = String::from_utf8_lossy(blob.content()).into_owned();
            let mut parts: Vec<String> = at
                .parent()
                .map(|p| p.iter().map(|c| c.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            if target.starts_with('/') {
                return Err("a symbolic link out of the repository".into());
            }
            for c in target.split('/') {
                match c {
                    "" | "." => {}
                    ".." => {
                        parts
                            .pop()
                            .ok_or_else(|| "a symbolic link out of the repository".to_owned())?;
                    }
                    n => parts.push(n.to_owned()),
                }
            }
            at = parts.iter().collect();
            continue;
        }
        if blob.size() as u64 > MAX_RECIPE_BYTES {
            return Err(format!(
                "{} bytes; a recipe may have at most {MAX_RECIPE_BYTES}",
                blob.size()
            ));
        }
        return Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()));
    }
    Err("too many levels of symbolic links".into())
}

/// Checks `commit` out (its tree checked first: see `tree`).
fn checkout_commit(repo: &Repository, commit: &git2::Commit<'_>, what: &str) -> Result<(), String> {
    tree::check(repo, commit.tree_id(), what)?;
    repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().force()))
        .map_err(|e| format!("checkout of {what}: {}", e.message()))?;
    repo.set_head_detached(commit.id())
        .map_err(|e| format!("checkout of {what}: {}", e.message()))
}

/// `(name, path, url)` of each submodule in the work tree's `.gitmodules`
/// (read only when it is a regular file of the tree itself).
fn read_gitmodules(workdir: &Path) -> Result<Vec<(String, String, String)>, String> {
    let file = match beneath::open_regular(workdir, Path::new(".gitmodules"), "the repository") {
        Ok(f) => f,
        Err(beneath::BeneathError::Io { err, .. })
            if err.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(format!(".gitmodules: {e}")),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, 1 << 20), &mut text)
        .map_err(|e| format!(".gitmodules: {e}"))?;
    let tmp = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(tmp.path(), &text).map_err(|e| e.to_string())?;
    let cfg =
        git2::Config::open(tmp.path()).map_err(|e| format!(".gitmodules: {}", e.message()))?;
    let mut found: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut entries = cfg
        .entries(Some(r"^submodule\..*\.(path|url)$"))
        .map_err(|e| format!(".gitmodules: {}", e.message()))?;
    while let Some(Ok(e)) = entries.next() {
        let (Some(key), Some(value)) = (e.name(), e.value()) else {
            continue;
        };
        let Some(rest) = key.strip_prefix("submodule.") else {
            continue;
        };
        let Some((name, field)) = rest.rsplit_once('.') else {
            continue;
        };
        let slot = found.entry(name.to_owned()).or_default();
        match field {
            "path" => slot.0 = Some(value.to_owned()),
            "url" => slot.1 = Some(value.to_owned()),
            _ => {}
        }
    }
    Ok(found
        .into_iter()
        .filter_map(|(name, (path, url))| Some((name, path?, url?)))
        .collect())
}

fn callbacks() -> RemoteCallbacks<'static> {
    let mut callbacks = RemoteCallbacks::new();
    let mut tries = 0;
    callbacks.credentials(move |_url, user, allowed| {
        tries += 1;
        if tries > 4 {
            return Err(git2::Error::from_str("no usable credentials"));
        }
        let user = user.unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            if tries == 1 {
                return Cred::ssh_key_from_agent(user);
            }
            let home = std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_default();
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let key = home.join(".ssh").join(name);
                if key.is_file() {
                    return Cred::ssh_key(user, None, &key, None);
                }
            }
        }
        if allowed.contains(CredentialType::DEFAULT) {
            return Cred::default();
        }
        Err(git2::Error::from_str(
            "the repository needs credentials the service does not have",
        ))
    });
    callbacks
}

/// The commit a branch of `url` points at now (`git ls-remote`), or `None`
/// when `url` has no such branch.
pub fn branch_head(url: &str, branch: &str) -> Result<Option<String>, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let repo = Repository::init_bare(tmp.path()).map_err(|e| e.message().to_owned())?;
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(|e| format!("{url}: {}", e.message()))?;
    let conn = remote
        .connect_auth(Direction::Fetch, Some(callbacks()), None)
        .map_err(|e| {
            tracing::warn!(url, "git ls-remote failed: {}", e.message());
            format!("cannot reach {url} (the details are in the service's log)")
        })?;
    let want = format!("refs/heads/{branch}");
    let found = conn
        .list()
        .map_err(|e| format!("{url}: {}", e.message()))?
        .iter()
        .find(|h| h.name() == want)
        .map(|h| h.oid().to_string());
    Ok(found)
}

/// What `reference` names in `repo`: a tag, a branch (under
/// `branches`: `refs/remotes/origin/` in a clone, `refs/heads/` in a
/// mirror), or a commit id (full or abbreviated, any case).
fn resolve<'r>(
    repo: &'r Repository,
    reference: &str,
    branches: &str,
) -> Option<(git2::Object<'r>, RefKind)> {
    [
        (format!("refs/tags/{reference}"), RefKind::Tag),
        (format!("{branches}{reference}"), RefKind::Branch),
    ]
    .into_iter()
    .find_map(|(r, kind)| repo.revparse_single(&r).ok().map(|o| (o, kind)))
    .or_else(|| {
        // A commit id (full or abbreviated), never an arbitrary rev expression.
        hexish(reference)
            .then(|| repo.revparse_single(&reference.to_ascii_lowercase()).ok())
            .flatten()
            .map(|o| (o, RefKind::Commit))
    })
}
