//! The clone cache: one bare mirror per (rewritten) repository URL under
//! `data/git/`, fetched incrementally (only new objects travel) and shared
//! by every build of that repository. A build copies what it needs from
//! the mirror into its own work tree (no hard links: a recipe can never
//! write into the cache).
//!
//! Concurrency: each mirror has a lock file; a fetch holds it exclusively,
//! a checkout from it shared, and eviction takes it only when free. The
//! lock is `flock(2)`, so it also holds between processes on one host.
//! Bounded by `build.git.cache_max_bytes`: least recently used mirrors go
//! first (the lock file's mtime says when a mirror was last used).

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use git2::{AutotagOption, FetchOptions, FetchPrune, Repository};

/// A mirror being read: the shared lock is held until this is dropped.
pub struct Lease {
    pub path: PathBuf,
    _lock: File,
}

pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
}

fn flock(f: &File, op: i32) -> bool {
    // SAFETY: a valid descriptor; flock only locks.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

/// What a fetch brought.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fetched {
    pub objects: usize,
    pub bytes: usize,
}

impl Cache {
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self { dir, max_bytes }
    }

    fn mirror_of(&self, url: &str) -> PathBuf {
        let h = blake3::hash(url.as_bytes()).to_hex();
        self.dir.join(format!("{}.git", &h[..32]))
    }

    /// Brings the mirror of `url` up to date (creating it on first use) and
    /// leases it for reading. When the fetch fails but a mirror exists, the
    /// mirror is used as it is (the checkout then says if it lacks the ref).
    pub fn update(
        &self,
        url: &str,
        callbacks: git2::RemoteCallbacks<'static>,
        log: &dyn Fn(&str),
    ) -> Result<(Lease, Fetched), String> {
        fs::create_dir_all(&self.dir).map_err(|e| format!("the clone cache: {e}"))?;
        let path = self.mirror_of(url);
        let lock_path = path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("the clone cache: {e}"))?;
        if !flock(&lock, libc::LOCK_EX) {
            return Err(format!(
                "the clone cache: cannot lock {}",
                lock_path.display()
            ));
        }
        let _ = lock.set_modified(SystemTime::now());
        let existed = path.join("HEAD").is_file();
        let fetched = match self.fetch(&path, url, callbacks) {
            Ok(f) => f,
            Err(e) if existed => {
                log(&format!(
                    "warning: cannot update the cached mirror of {url} ({e}); using it as it is"
                ));
                Fetched::default()
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&path);
                return Err(e);
            }
        };
        log(&format!(
            "{} {url}: {} objects, {} bytes received",
            if existed {
                "updated the cached mirror of"
            } else {
                "cached a mirror of"
            },
            fetched.objects,
            fetched.bytes
        ));
        // readers may share it now
        flock(&lock, libc::LOCK_SH);
        let lease = Lease { path, _lock: lock };
        if let Err(e) = self.evict(&lease.path) {
            log(&format!("warning: clone cache eviction: {e}"));
        }
        Ok((lease, fetched))
    }

    fn fetch(
        &self,
        path: &Path,
        url: &str,
        mut callbacks: git2::RemoteCallbacks<'static>,
    ) -> Result<Fetched, String> {
        let repo = match Repository::open_bare(path) {
            Ok(r) => r,
            Err(_) => Repository::init_bare(path)
                .map_err(|e| format!("the clone cache: {}", e.message()))?,
        };
        let mut remote = repo
            .remote_anonymous(url)
            .map_err(|e| format!("{url}: {}", e.message()))?;
        let got = std::sync::Arc::new(std::sync::Mutex::new(Fetched::default()));
        let seen = got.clone();
        callbacks.transfer_progress(move |p| {
            if let Ok(mut g) = seen.lock() {
                *g = Fetched {
                    objects: p.received_objects(),
                    bytes: p.received_bytes(),
                };
            }
            true
        });
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks)
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::All);
        remote
            .fetch(
                &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                Some(&mut opts),
                None,
            )
            .map_err(|e| format!("cannot fetch {url}: {}", e.message()))?;
        drop(opts);
        let got = got.lock().map(|g| *g).unwrap_or_default();
        Ok(got)
    }

    /// Removes the least recently used mirrors (not in use, never `keep`)
    /// while the cache is over its size.
    pub fn evict(&self, keep: &Path) -> std::io::Result<u64> {
        let mut mirrors: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        let mut total = 0u64;
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "git") {
                continue;
            }
            let size: u64 = walkdir::WalkDir::new(&p)
                .into_iter()
                .flatten()
                .filter_map(|f| f.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum();
            let used = fs::metadata(p.with_extension("lock"))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            total += size;
            mirrors.push((used, size, p));
        }
        mirrors.sort();
        let mut freed = 0;
        for (_, size, p) in mirrors {
            if total <= self.max_bytes {
                break;
            }
            if p == keep {
                continue;
            }
            let Ok(lock) = File::options().write(true).open(p.with_extension("lock")) else {
                continue;
            };
            if !flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
                continue; // in use
            }
            fs::remove_dir_all(&p)?;
            tracing::info!(mirror = %p.display(), bytes = size, "clone cache: evicted");
            total -= size;
            freed += size;
        }
        Ok(freed)
    }
}
