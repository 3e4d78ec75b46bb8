//! Bytes: the content-addressed blob store behind the [`BlobStore`] trait
//! (local directory: [`local::LocalBlobs`]), local scratch space
//! ([`Scratch`]), and the tarball pipeline (safe unpack, deterministic pack,
//! gzip conversion), with the path guards they use ([`beneath`]).
//!
//! Architecture invariant: a blob becomes visible only after it was fully
//! written to scratch, hashed, and stored durably under its hash; a crash
//! leaves at worst an orphan in `tmp/` (cleared at start-up). This module
//! knows nothing of the index or HTTP.

pub mod beneath;
pub mod local;
pub mod pack;
pub mod reserve;
#[cfg(feature = "s3")]
pub mod s3;
pub mod scratch;
pub mod unpack;

use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tempfile::NamedTempFile;

pub use reserve::Reserve;
pub use scratch::{hash_file, BlobWriter, Scratch};

/// Hash and size of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    pub hash: blake3::Hash,
    pub size: u64,
}

impl BlobInfo {
    pub fn hex(&self) -> String {
        self.hash.to_hex().to_string()
    }
}

/// A stored blob as listed (for GC and verification).
#[derive(Debug, Clone, Copy)]
pub struct BlobMeta {
    pub hash: blake3::Hash,
    pub size: u64,
    /// When it was stored or last reused (GC's grace period counts from it).
    pub modified: SystemTime,
}

/// Where blobs live, named by their blake3. Blocking: call from blocking
/// threads. Implementations: a local directory ([`local::LocalBlobs`]) and
/// S3-compatible object storage (`s3::S3Blobs`).
pub trait BlobStore: Send + Sync + 'static {
    /// For logs and `/readyz`: what and where this store is.
    fn describe(&self) -> String;
    /// Stores the fully written temp file as the blob `info` (durably, before
    /// returning). Storing content already held keeps it (and refreshes it).
    fn put(&self, tmp: NamedTempFile, info: &BlobInfo) -> io::Result<()>;
    /// The size of a stored blob, or `None`.
    fn size(&self, hash: &blake3::Hash) -> io::Result<Option<u64>>;
    /// Whether the blob is stored.
    fn contains(&self, hash: &blake3::Hash) -> io::Result<bool> {
        Ok(self.size(hash)?.is_some())
    }
    /// Reads `len` bytes (all with `None`) from `start`; `NotFound` if absent.
    fn read_range(
        &self,
        hash: &blake3::Hash,
        start: u64,
        len: Option<u64>,
    ) -> io::Result<Box<dyn Read + Send>>;
    /// Reads the whole blob.
    fn read(&self, hash: &blake3::Hash) -> io::Result<Box<dyn Read + Send>> {
        self.read_range(hash, 0, None)
    }
    /// Removes a blob (absent is fine).
    fn delete(&self, hash: &blake3::Hash) -> io::Result<()>;
    /// Every stored blob.
    fn list(&self) -> io::Result<Vec<BlobMeta>>;
    /// Marks a blob as just used (the GC grace period starts again).
    fn touch(&self, hash: &blake3::Hash);
    /// A local file holding the blob, when there is one: the HTTP layer
    /// serves it with mmap windows, the fastest path.
    fn local_path(&self, hash: &blake3::Hash) -> Option<PathBuf>;
    /// Takes a corrupt blob out of service, kept aside for inspection.
    fn quarantine(&self, hash: &blake3::Hash) -> io::Result<()>;
    /// Free space where blobs are written, when the store can tell.
    fn free_bytes(&self) -> io::Result<Option<u64>>;
    /// A URL a client may fetch the blob from directly for `ttl`, saved as
    /// `filename` (`Content-Disposition`): object stores presign one;
    /// `None` when the store cannot.
    fn presigned_url(
        &self,
        _hash: &blake3::Hash,
        _filename: Option<&str>,
        _ttl: Duration,
    ) -> io::Result<Option<String>> {
        Ok(None)
    }
    /// Whether the store answers (`/readyz`).
    fn ping(&self) -> io::Result<()> {
        Ok(())
    }

    // --- small named objects beside the blobs ---
    // Per-record copies for `reindex` (`records/...`) and the logs of
    // finished jobs (`logs/...`). Names are checked with [`object_name`].
    /// Stores (replaces) a small object, durably.
    fn put_object(&self, name: &str, body: &[u8]) -> io::Result<()>;
    /// A small object's content, or `None`.
    fn get_object(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// The names of the objects under `prefix` (which ends with `/`).
    fn list_objects(&self, prefix: &str) -> io::Result<Vec<String>>;
    /// Removes a small object (absent is fine).
    fn delete_object(&self, name: &str) -> io::Result<()>;
}

/// Checks the name of a small object: `/`-separated segments of ASCII
/// letters, digits, `.`, `_`, `-` (none empty, `.` or `..`), at most 512
/// bytes.
pub fn object_name(name: &str) -> io::Result<&str> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(name)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a valid object name: {name:?}"),
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The upload is not something we accept; the message says why.
    #[error("{0}")]
    BadArchive(String),
    #[error("the archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the archive holds more than {limit} entries (max_unpacked_entries)")]
    TooManyEntries { limit: u64 },
}

impl StoreError {
    pub fn bad(msg: impl Into<String>) -> Self {
        StoreError::BadArchive(msg.into())
    }
}

/// Whether an I/O error says the disk (or the user's quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

/// Bytes available to the service on the file system holding `path`.
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}
