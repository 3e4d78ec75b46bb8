//! The clone cache: one bare mirror per (rewritten) repository URL under
//! `data/git/`, fetched incrementally (only new objects travel) and shared
//! by every build of that repository. A build copies what it needs from
//! the mirror into its own work tree (no hard links: a recipe can never
//! write into the cache).
//!
//! Concurrency: each mirror has a lock file; a fetch holds it exclusively,
//! a checkout from it shared, and eviction takes it only when free. The
//! lock is `flock(2)`, so it also holds between processes on one host; a
//! wait for it ends after `build.git.lock_wait_secs`. Lock files are
//! opened without following symlinks, and anything else found under a
//! lock's name (a directory, say) is removed and the lock made again.
//!
//! Bounds: no fetch starts while the disk is below `min_free_bytes`, and a
//! fetch stops when it would take the disk below it; the cache holds
//! `build.git.cache_max_bytes`: a fetch stops once it has received more,
//! a mirror larger than that alone is removed and refused, and after every
//! update the least recently used other mirrors not in use are evicted
//! (the lock file's mtime says when a mirror was last used).

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use git2::{AutotagOption, FetchOptions, FetchPrune, RemoteRedirect, Repository};

/// A mirror being read: the shared lock is held until this is dropped.
pub struct Lease {
    pub path: PathBuf,
    _lock: File,
}

/// What a fetch may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Stop past this many bytes received (`None`: no cap).
    pub max_bytes: Option<u64>,
    /// Keep this much free on the disk of `floor_dir`.
    pub min_free_bytes: u64,
    pub floor_dir: PathBuf,
    /// One fetch, start to end.
    pub max_time: Duration,
}

impl Limits {
    /// Refuses to start when the disk is below its floor.
    pub fn check_room(&self) -> Result<(), String> {
        match crate::store::free_bytes(&self.floor_dir) {
            Ok(free) if free < self.min_free_bytes => Err(format!(
                "the data directory's disk has {free} bytes free, below min_free_bytes ({}): repositories are not fetched until space is freed",
                self.min_free_bytes
            )),
            _ => Ok(()),
        }
    }
}

pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    lock_wait: Duration,
    limits: Limits,
    /// When each mirror was last fetched successfully (this process).
    fetched: Mutex<HashMap<PathBuf, Instant>>,
}

fn flock(f: &File, op: i32) -> bool {
    // SAFETY: a valid descriptor; flock only locks.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

/// `flock(op)`, retried without blocking until `wait` has passed.
fn flock_within(f: &File, op: i32, wait: Duration) -> bool {
    let end = Instant::now() + wait;
    loop {
        if flock(f, op | libc::LOCK_NB) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens (creating) the lock file at `path` without following a symlink
/// there; whatever else sits under its name (a directory, a link, a fifo)
/// is removed and the file made again.
fn open_lock(path: &Path) -> std::io::Result<File> {
    let open = || {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
    };
    let regular = |f: &File| f.metadata().map(|m| m.is_file()).unwrap_or(false);
    if let Ok(f) = open() {
        if regular(&f) {
            return Ok(f);
        }
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            tracing::warn!(path = %path.display(), "clone cache: a directory sat where a lock file belongs; removed");
            fs::remove_dir_all(path)?
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "clone cache: something other than a lock file sat under its name; removed");
            fs::remove_file(path)?
        }
        Err(_) => {}
    }
    let f = open()?;
    if !regular(&f) {
        return Err(std::io::Error::other("the lock is not a regular file"));
    }
    Ok(f)
}

/// Bytes of the regular files under `dir`.
fn size_of(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|f| f.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// What a fetch brought.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fetched {
    pub objects: usize,
    pub bytes: usize,
}

impl Cache {
    pub fn new(dir: PathBuf, max_bytes: u64, lock_wait: Duration, limits: Limits) -> Self {
        Self {
            dir,
            max_bytes,
            lock_wait,
            limits: Limits {
                max_bytes: Some(max_bytes),
                ..limits
            },
            fetched: Mutex::default(),
        }
    }

    fn mirror_of(&self, url: &str) -> PathBuf {
        let h = blake3::hash(url.as_bytes()).to_hex();
        self.dir.join(format!("{}.git", &h[..32]))
    }

    fn lock_of(&self, mirror: &Path) -> Result<File, String> {
        let lock_path = mirror.with_extension("lock");
        open_lock(&lock_path).map_err(|e| {
            tracing::error!(path = %lock_path.display(), "clone cache lock: {e}");
            "the clone cache cannot lock a mirror (the details are in the service's log)".to_owned()
        })
    }

    fn fresh(&self, path: &Path, within: Duration) -> bool {
        self.fetched
            .lock()
            .ok()
            .and_then(|m| m.get(path).map(|t| t.elapsed() < within))
            .unwrap_or(false)
    }

    /// Leases the mirror of `url` as it is, without fetching (`None` when
    /// there is none yet).
    pub fn existing(&self, url: &str) -> Result<Option<Lease>, String> {
        let path = self.mirror_of(url);
        if !path.join("HEAD").is_file() {
            return Ok(None);
        }
        let lock = self.lock_of(&path)?;
        if !flock_within(&lock, libc::LOCK_SH, self.lock_wait) {
            return Err(self.lock_timeout(url));
        }
        if !path.join("HEAD").is_file() {
            return Ok(None); // evicted meanwhile
        }
        Ok(Some(Lease { path, _lock: lock }))
    }

    fn lock_timeout(&self, url: &str) -> String {
        format!(
            "{url}: another fetch of it held the clone cache for more than {} s (build.git.lock_wait_secs)",
            self.lock_wait.as_secs()
        )
    }

    /// Brings the mirror of `url` up to date (creating it on first use) and
    /// leases it for reading; with `fresh`, a mirror fetched that recently
    /// is used as it is. When the fetch fails but a mirror exists, the
    /// mirror is used as it is (the checkout then says if it lacks the
    /// ref), unless the fetch failed for want of room.
    pub fn update(
        &self,
        url: &str,
        callbacks: git2::RemoteCallbacks<'static>,
        fresh: Option<Duration>,
        log: &dyn Fn(&str),
    ) -> Result<(Lease, Fetched), String> {
        fs::create_dir_all(&self.dir).map_err(|e| {
            tracing::error!("clone cache {}: {e}", self.dir.display());
            "the clone cache cannot be created (the details are in the service's log)".to_owned()
        })?;
        let path = self.mirror_of(url);
        if let Some(within) = fresh.filter(|w| self.fresh(&path, *w)) {
            if let Some(lease) = self.existing(url)? {
                log(&format!(
                    "using the cached mirror of {url} (fetched less than {} s ago)",
                    within.as_secs()
                ));
                return Ok((lease, Fetched::default()));
            }
        }
        let lock = self.lock_of(&path)?;
        if !flock_within(&lock, libc::LOCK_EX, self.lock_wait) {
            return Err(self.lock_timeout(url));
        }
        let _ = lock.set_modified(SystemTime::now());
        let existed = path.join("HEAD").is_file();
        let result = self
            .limits
            .check_room()
            .map_err(FetchError::Room)
            .and_then(|_| fetch(&path, url, callbacks, &self.limits));
        let fetched = match result {
            Ok(f) => f,
            Err(FetchError::Other(e)) if existed => {
                log(&format!(
                    "warning: cannot update the cached mirror of {url} ({e}); using it as it is"
                ));
                Fetched::default()
            }
            Err(e) => {
                if !existed {
                    let _ = fs::remove_dir_all(&path);
                }
                return Err(e.to_string());
            }
        };
        let size = size_of(&path);
        if size > self.max_bytes {
            let _ = fs::remove_dir_all(&path);
            return Err(too_large(url, self.max_bytes));
        }
        if let Ok(mut m) = self.fetched.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(path.clone(), Instant::now());
        }
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
            let size = size_of(&p);
            let used = fs::symlink_metadata(p.with_extension("lock"))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            total = total.saturating_add(size);
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
            let Ok(lock) = open_lock(&p.with_extension("lock")) else {
                continue;
            };
            if !flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
                continue; // in use
            }
            fs::remove_dir_all(&p)?;
            if let Ok(mut m) = self.fetched.lock() {
                m.remove(&p);
            }
            tracing::info!(mirror = %p.display(), bytes = size, "clone cache: evicted");
            total -= size;
            freed += size;
        }
        Ok(freed)
    }
}

fn too_large(url: &str, max: u64) -> String {
    format!(
        "{url} is larger than the clone cache may hold (build.git.cache_max_bytes = {max} bytes): refused"
    )
}

/// Why a fetch failed: for want of room (a mirror is then not used as it
/// is), or anything else.
#[derive(Debug)]
pub enum FetchError {
    Room(String),
    Other(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Room(m) | FetchError::Other(m) => f.write_str(m),
        }
    }
}

/// Fetches every branch and tag of `url` into the bare repository at
/// `path` (made when absent), within `limits`. The error says what was
/// refused, or only that the fetch failed: transport errors (refused
/// connections, status codes, banners) are logged, never answered, so
/// that a repository cannot turn the service into a port scanner.
pub fn fetch(
    path: &Path,
    url: &str,
    mut callbacks: git2::RemoteCallbacks<'static>,
    limits: &Limits,
) -> Result<Fetched, FetchError> {
    let repo = match Repository::open_bare(path) {
        Ok(r) => r,
        Err(_) => Repository::init_bare(path).map_err(|e| {
            tracing::error!("clone cache: init {}: {}", path.display(), e.message());
            FetchError::Other(
                "the clone cache cannot hold a new mirror (the details are in the service's log)"
                    .into(),
            )
        })?,
    };
    let mut remote = repo.remote_anonymous(url).map_err(|e| {
        tracing::warn!("git remote {url}: {}", e.message());
        FetchError::Other(format!("{url} is not a URL git can fetch"))
    })?;
    let got = std::sync::Arc::new(Mutex::new(Fetched::default()));
    let stopped: std::sync::Arc<Mutex<Option<FetchError>>> = Default::default();
    let (seen, why) = (got.clone(), stopped.clone());
    let start = Instant::now();
    let lim = limits.clone();
    let mut next_room_check = 0usize;
    let u = url.to_owned();
    callbacks.transfer_progress(move |p| {
        if let Ok(mut g) = seen.lock() {
            *g = Fetched {
                objects: p.received_objects(),
                bytes: p.received_bytes(),
            };
        }
        let stop = if lim.max_bytes.is_some_and(|m| p.received_bytes() as u64 > m) {
            Some(FetchError::Room(too_large(&u, lim.max_bytes.unwrap_or(0))))
        } else if start.elapsed() > lim.max_time {
            Some(FetchError::Other(format!(
                "fetching {u} took longer than {} s (build.git.fetch_max_secs): stopped",
                lim.max_time.as_secs()
            )))
        } else if p.received_bytes() >= next_room_check {
            next_room_check = p.received_bytes() + (16 << 20);
            lim.check_room().err().map(FetchError::Room)
        } else {
            None
        };
        match stop {
            Some(e) => {
                if let Ok(mut w) = why.lock() {
                    *w = Some(e);
                }
                false
            }
            None => true,
        }
    });
    let (max_time, start2) = (limits.max_time, start);
    callbacks.sideband_progress(move |_| start2.elapsed() <= max_time);
    let mut opts = FetchOptions::new();
    // a redirect to another host would take the fetch past the host policy
    opts.remote_callbacks(callbacks)
        .follow_redirects(RemoteRedirect::None)
        .prune(FetchPrune::On)
        .download_tags(AutotagOption::All);
    let res = remote.fetch(
        &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
        Some(&mut opts),
        None,
    );
    drop(opts);
    if let Err(e) = res {
        if let Some(why) = stopped.lock().ok().and_then(|mut w| w.take()) {
            return Err(why);
        }
        if start.elapsed() > limits.max_time {
            return Err(FetchError::Other(format!(
                "fetching {url} took longer than {} s (build.git.fetch_max_secs): stopped",
                limits.max_time.as_secs()
            )));
        }
        tracing::warn!(url, "git fetch failed: {}", e.message());
        return Err(FetchError::Other(format!(
            "cannot fetch {url} (the details are in the service's log)"
        )));
    }
    let got = got.lock().map(|g| *g).unwrap_or_default();
    Ok(got)
}
