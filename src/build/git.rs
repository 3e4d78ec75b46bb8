//! Cloning with git2: which URLs are allowed, and checking out a tag, a
//! branch or a commit. Records the commit id and its time.

use std::path::Path;

use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{Cred, CredentialType, Direction, FetchOptions, RemoteCallbacks, Repository};

use crate::model::RefKind;

/// The commit a build used.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub commit: String,
    /// Commit time (unix seconds), used to clamp mtimes in the tarball.
    pub time: i64,
    /// What the reference named: a tag, a branch or a commit.
    pub kind: RefKind,
}

/// Refuses URL schemes we do not clone (local ones unless allowed).
pub fn check_url(url: &str, allow_local: bool) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let remote = ["https://", "http://", "ssh://", "git://"]
        .iter()
        .any(|p| lower.starts_with(p))
        || (url.contains('@') && url.contains(':') && !url.contains("://")); // git@host:org/repo
    if remote {
        return Ok(());
    }
    let local = lower.starts_with("file://") || url.starts_with('/') || url.starts_with('.');
    if local {
        return if allow_local {
            Ok(())
        } else {
            Err(format!(
                "local repository URLs ({url}) are not allowed (set build.allow_local_urls)"
            ))
        };
    }
    Err(format!(
        "unsupported repository URL '{url}' (https, ssh, git:// or, where allowed, file://)"
    ))
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

/// Clones `url` into `dest` and checks out `reference` (a tag, a branch or a commit id).
pub fn clone_at(url: &str, reference: &str, dest: &Path) -> Result<Checkout, String> {
    let mut fetch = FetchOptions::new();
    fetch.remote_callbacks(callbacks());
    let repo = RepoBuilder::new()
        .fetch_options(fetch)
        .clone(url, dest)
        .map_err(|e| format!("cannot clone {url}: {}", e.message()))?;
    let (obj, kind) = resolve(&repo, reference)
        .ok_or_else(|| format!("{url} has no tag, branch or commit named '{reference}'"))?;
    let commit = obj
        .peel_to_commit()
        .map_err(|e| format!("'{reference}' is not a commit: {}", e.message()))?;
    repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().force()))
        .map_err(|e| format!("checkout of {reference}: {}", e.message()))?;
    repo.set_head_detached(commit.id())
        .map_err(|e| format!("checkout of {reference}: {}", e.message()))?;
    Ok(Checkout {
        commit: commit.id().to_string(),
        time: commit.time().seconds(),
        kind,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("https://github.com/a/b", false).is_ok());
        assert!(check_url("git://127.0.0.1:9418/x", false).is_ok());
        assert!(check_url("git@github.com:a/b.git", false).is_ok());
        assert!(check_url("file:///srv/x", false).is_err());
        assert!(check_url("/srv/x", false).is_err());
        assert!(check_url("file:///srv/x", true).is_ok());
        assert!(check_url("ftp://x", true).is_err());
    }
}
