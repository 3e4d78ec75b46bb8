//! Paths resolved under a root on the real file system, never by reasoning
//! about their text: each component is looked up with `lstat`, symlinks are
//! followed the way the kernel would follow them, and stepping above the
//! root (by `..`, an absolute link, or a chain of links) is an error rather
//! than being clamped. Used for everything a request or a recipe names:
//! tarball entries, build artifacts, recipe files, symlinks in a tree.
//!
//! The trees checked here are private to the service while they are
//! checked (a temp dir being unpacked, a work tree whose sandbox has
//! exited), so a check is not raced by the tree's author.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one resolution before giving up (as Linux's ELOOP).
const MAX_LINK_HOPS: usize = 40;

/// Path components one resolution may walk: chains of long links could
/// otherwise make a tiny archive cost minutes of lookups.
pub const MAX_STEPS: usize = 4096;

/// Path components all the resolutions of one tree may walk together.
pub const MAX_TREE_STEPS: usize = 1 << 20;

/// Why a path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("{path} points outside {what}")]
    Escapes { path: String, what: &'static str },
    #[error("{path}: too many levels of symbolic links")]
    Loop { path: String },
    #[error("{path}: the symbolic links are too complex to resolve (over {MAX_STEPS} steps, or {MAX_TREE_STEPS} for the whole tree)")]
    TooComplex { path: String },
    #[error("{path} goes through the symbolic link {link}")]
    ThroughLink { path: String, link: String },
    #[error("{path}: {err}")]
    Io { path: String, err: io::Error },
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// Where a path led: the real path relative to the root (no symlinks in
/// it), and whether something exists there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub rel: PathBuf,
    pub exists: bool,
}

/// Resolves `rel` (relative to `root`) following every symlink, the last
/// one too, and fails if any step leaves `root`. Components after one that
/// does not exist are resolved as text (nothing can redirect them).
/// `what` names the root in errors ("the component", "the work tree").
pub fn resolve(root: &Path, rel: &Path, what: &'static str) -> Result<Resolved, BeneathError> {
    let mut budget = MAX_STEPS;
    resolve_with(root, rel, what, &mut budget)
}

/// [`resolve`], spending steps from `budget` (shared across a tree).
pub fn resolve_with(
    root: &Path,
    rel: &Path,
    what: &'static str,
    budget: &mut usize,
) -> Result<Resolved, BeneathError> {
    let escapes = || BeneathError::Escapes {
        path: show(rel),
        what,
    };
    let mut todo: VecDeque<OsString> = VecDeque::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => todo.push_back(n.to_owned()),
            Component::ParentDir => todo.push_back("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(escapes()),
        }
    }
    let mut at: Vec<OsString> = Vec::new();
    // how many trailing components of `at` do not exist: nothing can
    // redirect them, but a `..` back to an existing directory resumes the
    // lookup on the real tree
    let mut virtual_depth = 0usize;
    let mut hops = 0;
    let mut steps = 0;
    while let Some(name) = todo.pop_front() {
        steps += 1;
        if steps > MAX_STEPS || *budget == 0 {
            return Err(BeneathError::TooComplex { path: show(rel) });
        }
        *budget -= 1;
        if name == ".." {
            if at.pop().is_none() {
                return Err(escapes());
            }
            virtual_depth = virtual_depth.saturating_sub(1);
            continue;
        }
        if virtual_depth > 0 {
            at.push(name);
            virtual_depth += 1;
            continue;
        }
        let here: PathBuf = root.join(at.iter().collect::<PathBuf>()).join(&name);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(BeneathError::Loop { path: show(rel) });
                }
                let target = fs::read_link(&here).map_err(|err| BeneathError::Io {
                    path: show(rel),
                    err,
                })?;
                let mut front: Vec<OsString> = Vec::new();
                for c in target.components() {
                    match c {
                        Component::Normal(n) => front.push(n.to_owned()),
                        Component::ParentDir => front.push("..".into()),
                        Component::CurDir => {}
                        Component::RootDir | Component::Prefix(_) => return Err(escapes()),
                    }
                }
                for n in front.into_iter().rev() {
                    todo.push_front(n);
                }
            }
            Ok(_) => at.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                virtual_depth = 1;
                at.push(name);
            }
            Err(err) => {
                return Err(BeneathError::Io {
                    path: show(rel),
                    err,
                })
            }
        }
    }
    Ok(Resolved {
        rel: at.iter().collect(),
        exists: virtual_depth == 0,
    })
}

/// `rel` must name an entry reached without passing through any symlink
/// (the last component itself may be one). Returns its `lstat`, or `None`
/// when it does not exist.
pub fn lstat_direct(root: &Path, rel: &Path) -> Result<Option<fs::Metadata>, BeneathError> {
    let comps: Vec<&std::ffi::OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(BeneathError::Escapes {
                path: show(rel),
                what: "the tree",
            }),
        })
        .collect::<Result<_, _>>()?;
    let mut here = root.to_owned();
    for (i, name) in comps.iter().enumerate() {
        here.push(name);
        let m = match fs::symlink_metadata(&here) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(BeneathError::Io {
                    path: show(rel),
                    err,
                })
            }
        };
        let last = i + 1 == comps.len();
        if last {
            return Ok(Some(m));
        }
        if m.file_type().is_symlink() {
            let link: PathBuf = comps[..=i].iter().collect();
            return Err(BeneathError::ThroughLink {
                path: show(rel),
                link: show(&link),
            });
        }
        if !m.is_dir() {
            return Err(BeneathError::Io {
                path: show(rel),
                err: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
    }
    Ok(fs::symlink_metadata(root).ok())
}

/// Creates the directories of `rel` under `root` (like `create_dir_all`),
/// refusing to pass through a symlink or a file.
pub fn create_dirs(root: &Path, rel: &Path) -> Result<(), BeneathError> {
    let mut here = root.to_owned();
    let mut so_far = PathBuf::new();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(BeneathError::Escapes {
                path: show(rel),
                what: "the tree",
            });
        };
        here.push(name);
        so_far.push(name);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(BeneathError::ThroughLink {
                    path: show(rel),
                    link: show(&so_far),
                })
            }
            Ok(_) => {
                return Err(BeneathError::Io {
                    path: show(rel),
                    err: io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{} is a file, not a directory", so_far.display()),
                    ),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&here).map_err(|err| BeneathError::Io {
                    path: show(rel),
                    err,
                })?;
            }
            Err(err) => {
                return Err(BeneathError::Io {
                    path: show(rel),
                    err,
                })
            }
        }
    }
    Ok(())
}

/// Opens the regular file `rel` under `root` without a race: the path is
/// resolved on the real tree (links inside `root` followed), then opened
/// one component at a time with `openat(O_NOFOLLOW)` from a descriptor of
/// `root`, so a directory swapped for a symlink meanwhile makes the open
/// fail instead of leaving the root. Fifos and devices are refused.
pub fn open_regular(root: &Path, rel: &Path, what: &'static str) -> Result<fs::File, BeneathError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let io_err = |err: io::Error| BeneathError::Io {
        path: show(rel),
        err,
    };
    let resolved = resolve(root, rel, what)?;
    if !resolved.exists {
        return Err(io_err(io::Error::from(io::ErrorKind::NotFound)));
    }
    let comps: Vec<&std::ffi::OsStr> = resolved.rel.iter().collect();
    if comps.is_empty() {
        return Err(io_err(io::Error::other("is a directory")));
    }
    let mut dir = fs::File::open(root).map_err(io_err)?;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let name = std::ffi::CString::new(c.as_bytes())
            .map_err(|e| io_err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let flags = libc::O_RDONLY
            | libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | if last {
                libc::O_NONBLOCK
            } else {
                libc::O_DIRECTORY
            };
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let f = unsafe { fs::File::from_raw_fd(fd) };
        if last {
            let m = f.metadata().map_err(io_err)?;
            if !m.is_file() {
                return Err(io_err(io::Error::other("not a regular file")));
            }
            return Ok(f);
        }
        dir = f;
    }
    Err(io_err(io::Error::from(io::ErrorKind::NotFound)))
}

/// Every symlink under `root` (not following any) must resolve inside it.
/// Returns the first that does not, as an error naming it and its target.
pub fn check_links(root: &Path, what: &'static str) -> Result<usize, BeneathError> {
    let mut budget = MAX_TREE_STEPS;
    check_links_with(root, what, &mut budget)
}

/// [`check_links`], spending steps from `budget`.
pub fn check_links_with(
    root: &Path,
    what: &'static str,
    budget: &mut usize,
) -> Result<usize, BeneathError> {
    let mut n = 0;
    for entry in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let entry = entry.map_err(|e| BeneathError::Io {
            path: show(root),
            err: io::Error::other(e),
        })?;
        if !entry.path_is_symlink() {
            continue;
        }
        n += 1;
        let rel = entry
            .path()
            .strip_prefix(root)
            .map_err(|e| BeneathError::Io {
                path: show(entry.path()),
                err: io::Error::other(e),
            })?;
        if let Err(e) = resolve_with(root, rel, what, budget) {
            let target = fs::read_link(entry.path()).unwrap_or_default();
            return Err(match e {
                BeneathError::Escapes { .. } => BeneathError::Escapes {
                    path: format!("symlink {} -> {}", rel.display(), target.display()),
                    what,
                },
                other => other,
            });
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn chains_and_through_links() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        symlink(".", r.join("dot")).unwrap();
        symlink("dot/dot/../../..", r.join("up")).unwrap();
        assert!(matches!(
            resolve(r, Path::new("up"), "t"),
            Err(BeneathError::Escapes { .. })
        ));
        symlink("../..", r.join("a/b/top")).unwrap();
        assert_eq!(
            resolve(r, Path::new("a/b/top"), "t").unwrap().rel,
            PathBuf::new()
        );
        symlink("../../..", r.join("a/b/over")).unwrap();
        assert!(resolve(r, Path::new("a/b/over"), "t").is_err());
        symlink("/etc", r.join("abs")).unwrap();
        assert!(resolve(r, Path::new("abs"), "t").is_err());
        symlink("a", r.join("la")).unwrap();
        assert_eq!(
            resolve(r, Path::new("la/b/../x"), "t").unwrap(),
            Resolved {
                rel: "a/x".into(),
                exists: false
            }
        );
        assert!(matches!(
            lstat_direct(r, Path::new("la/b")),
            Err(BeneathError::ThroughLink { .. })
        ));
        assert!(lstat_direct(r, Path::new("a/b")).unwrap().is_some());
        assert!(create_dirs(r, Path::new("la/new")).is_err());
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        assert!(matches!(
            resolve(r, Path::new("loop1"), "t"),
            Err(BeneathError::Loop { .. })
        ));
        // up and over escape: check_links finds one of them
        assert!(check_links(r, "t").is_err());
    }

    #[test]
    fn a_missing_directory_does_not_hide_a_link_after_it() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("a")).unwrap();
        symlink("../..", r.join("a/up")).unwrap();
        // `nothere` is missing; `..` comes back to `a`, whose `up` climbs out
        assert!(matches!(
            resolve(r, Path::new("a/nothere/../up/x"), "t"),
            Err(BeneathError::Escapes { .. })
        ));
        assert_eq!(
            resolve(r, Path::new("a/nothere/../x"), "t").unwrap(),
            Resolved {
                rel: "a/x".into(),
                exists: false
            }
        );
    }

    #[test]
    fn open_regular_never_leaves_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::write(r.join("a/b/f"), "inside").unwrap();
        symlink("a/b", r.join("in")).unwrap();
        symlink("/etc", r.join("out")).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(
            &mut open_regular(r, Path::new("in/f"), "t").unwrap(),
            &mut s,
        )
        .unwrap();
        assert_eq!(s, "inside");
        assert!(open_regular(r, Path::new("out/passwd"), "t").is_err());
        assert!(
            open_regular(r, Path::new("a/b"), "t").is_err(),
            "a directory"
        );
        assert!(open_regular(r, Path::new("a/nothere"), "t").is_err());
    }

    #[test]
    fn long_chains_are_refused_quickly() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("d")).unwrap();
        // each link names the previous one many times
        let mut prev = "d".to_owned();
        for i in 0..30 {
            let target = std::iter::repeat_n(format!("{prev}/.."), 60)
                .collect::<Vec<_>>()
                .join("/")
                + "/d";
            let name = format!("l{i}");
            symlink(&target, r.join(&name)).unwrap();
            prev = name;
        }
        let t0 = std::time::Instant::now();
        let res = check_links(r, "t");
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t0.elapsed()
        );
        assert!(res.is_err());
    }
}
