//! A job's log: lines appended to `data/logs/<job>.log`, capped in size,
//! with a notification so followers see new lines as they come.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Clone)]
pub struct JobLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Host paths replaced by `$DATA` in every line (the data directory):
    /// logs are readable by anyone who may read, and need not show the host.
    redact: Arc<Vec<String>>,
    file: Mutex<Option<File>>,
    written: AtomicU64,
    cap: u64,
    notify: Notify,
}

impl JobLog {
    pub fn create(path: &Path, cap: u64, redact: Arc<Vec<String>>) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                redact,
                file: Mutex::new(Some(file)),
                written: AtomicU64::new(written),
                cap,
                notify: Notify::new(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends one line (a newline is added). Past the cap, one marker line
    /// is written and the rest dropped.
    pub fn line(&self, s: &str) {
        let redacted = redact(&self.inner.redact, s);
        let s = redacted.as_str();
        let Ok(mut guard) = self.inner.file.lock() else {
            return;
        };
        let Some(f) = guard.as_mut() else { return };
        let n = s.len() as u64 + 1;
        let before = self.inner.written.fetch_add(n, Ordering::SeqCst);
        if before + n > self.inner.cap {
            if before <= self.inner.cap {
                let _ = writeln!(f, "[log truncated at {} bytes]", self.inner.cap);
            }
            return;
        }
        let _ = f.write_all(s.as_bytes());
        let _ = f.write_all(b"\n");
        drop(guard);
        self.inner.notify.notify_waiters();
    }

    /// Closes the file and wakes followers for the last time.
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.file.lock() {
            if let Some(f) = g.take() {
                let _ = f.sync_all();
            }
        }
        self.inner.notify.notify_waiters();
    }

    /// Resolves when a line is written or the log is closed.
    pub async fn changed(&self) {
        self.inner.notify.notified().await
    }

    /// The last `max` bytes of a log file (for error messages).
    pub fn tail(path: &Path, max: usize) -> String {
        match std::fs::read(path) {
            Ok(bytes) => tail_of(&bytes, max),
            Err(_) => String::new(),
        }
    }
}

/// The last `max` bytes of a log, from a line start.
pub fn tail_of(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    let s = String::from_utf8_lossy(&bytes[start..]);
    match (start > 0, s.find('\n')) {
        (true, Some(i)) => s[i + 1..].to_owned(),
        _ => s.into_owned(),
    }
}

impl crate::process::LineSink for JobLog {
    fn line(&self, s: &str) {
        JobLog::line(self, s)
    }
}

/// `s` with every occurrence of the `paths` replaced by `$DATA`.
pub fn redact(paths: &[String], s: &str) -> String {
    let mut out = s.to_owned();
    for p in paths.iter().filter(|p| p.len() > 1) {
        if out.contains(p.as_str()) {
            out = out.replace(p.as_str(), "$DATA");
        }
    }
    out
}
