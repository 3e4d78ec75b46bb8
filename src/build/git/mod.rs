//! Sources from git (git2, no child processes): checking out a tag, a
//! branch or a commit into a work tree, through the clone cache (`cache`),
//! with mirror rewrites and the URL policy (`url`), and the submodules the
//! commit pins, recursively, each through the same policy and cache.

pub mod cache;
pub mod url;

use std::collections::BTreeMap;
use std::path::{Component, Path};

use git2::build::{CheckoutBuilder, CloneLocal, RepoBuilder};
use git2::{
    Cred, CredentialType, Direction, FetchOptions, ObjectType, RemoteCallbacks, Repository,
};

pub use url::check_url;

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

/// How sources are fetched: the URL policy, mirror rewrites, the clone
/// cache, the submodule depth.
pub struct Git {
    pub allow_local: bool,
    pub rewrites: BTreeMap<String, String>,
    pub cache: Option<cache::Cache>,
    pub submodule_depth: u32,
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
        check_url(url, self.allow_local)?;
        let used = self.fetch_url(url);
        if used != url {
            log(&format!(
                "{url} is fetched from {used} (build.git.rewrites)"
            ));
        }
        let repo = self.clone_into(&used, dest, log)?;
        let (obj, kind) = resolve(&repo, reference)
            .ok_or_else(|| format!("{url} has no tag, branch or commit named '{reference}'"))?;
        let commit = obj
            .peel_to_commit()
            .map_err(|e| format!("'{reference}' is not a commit: {}", e.message()))?;
        checkout_commit(&repo, &commit, reference)?;
        let submodules = self.submodules(dest, url, &commit, 1, "", log)?;
        Ok(Checkout {
            commit: commit.id().to_string(),
            time: commit.time().seconds(),
            kind,
            fetched_from: used,
            submodules,
        })
    }

    /// A full clone of `url` at `dest`: copied from the cached mirror (only
    /// new objects fetched), or straight from `url` without a cache.
    fn clone_into(&self, url: &str, dest: &Path, log: &dyn Fn(&str)) -> Result<Repository, String> {
        match &self.cache {
            Some(cache) => {
                let (lease, _) = cache.update(url, callbacks(), log)?;
                let mirror = lease.path.to_string_lossy().into_owned();
                let repo = RepoBuilder::new()
                    .clone_local(CloneLocal::NoLinks)
                    .clone(&mirror, dest)
                    .map_err(|e| {
                        format!("checkout from the clone cache of {url}: {}", e.message())
                    })?;
                drop(lease);
                let _ = repo.remote_set_url("origin", url);
                Ok(repo)
            }
            None => {
                let mut fetch = FetchOptions::new();
                fetch.remote_callbacks(callbacks());
                RepoBuilder::new()
                    .fetch_options(fetch)
                    .clone(url, dest)
                    .map_err(|e| format!("cannot clone {url}: {}", e.message()))
            }
        }
    }

    /// Checks out the submodules `commit` pins (per `.gitmodules`), each at
    /// the pinned commit, recursively up to `submodule_depth` levels.
    #[allow(clippy::too_many_arguments)]
    fn submodules(
        &self,
        workdir: &Path,
        parent_url: &str,
        commit: &git2::Commit<'_>,
        depth: u32,
        prefix: &str,
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
            let pinned = entry.id();
            let written = url::resolve_relative(parent_url, &raw_url);
            check_url(&written, self.allow_local).map_err(|e| format!("{shown}: {e}"))?;
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
            let sub = self
                .clone_into(&used, &dest, log)
                .map_err(|e| format!("{shown} from {written}: {e}"))?;
            let c = sub.find_commit(pinned).map_err(|_| {
                format!("{shown}: {written} has no commit {pinned} (the parent pins it)")
            })?;
            checkout_commit(&sub, &c, &pinned.to_string())?;
            let here = format!("{prefix}{path}");
            pins.push(SubmodulePin {
                path: here.clone(),
                url: written.clone(),
                fetched_from: (used != written).then_some(used),
                commit: pinned.to_string(),
            });
            let inner =
                self.submodules(&dest, &written, &c, depth + 1, &format!("{here}/"), log)?;
            pins.extend(inner);
        }
        Ok(pins)
    }
}

fn checkout_commit(repo: &Repository, commit: &git2::Commit<'_>, what: &str) -> Result<(), String> {
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
        .map_err(|e| format!("cannot reach {url}: {}", e.message()))?;
    let want = format!("refs/heads/{branch}");
    let found = conn
        .list()
        .map_err(|e| format!("{url}: {}", e.message()))?
        .iter()
        .find(|h| h.name() == want)
        .map(|h| h.oid().to_string());
    Ok(found)
}

fn resolve<'r>(repo: &'r Repository, reference: &str) -> Option<(git2::Object<'r>, RefKind)> {
    [
        (format!("refs/tags/{reference}"), RefKind::Tag),
        (format!("refs/remotes/origin/{reference}"), RefKind::Branch),
    ]
    .into_iter()
    .find_map(|(r, kind)| repo.revparse_single(&r).ok().map(|o| (o, kind)))
    .or_else(|| {
        // A commit id (full or abbreviated), never an arbitrary rev expression.
        let hexish = reference.len() >= 7 && reference.chars().all(|c| c.is_ascii_hexdigit());
        hexish
            .then(|| repo.revparse_single(reference).ok())
            .flatten()
            .map(|o| (o, RefKind::Commit))
    })
}
