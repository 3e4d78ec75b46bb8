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
pub mod scratch;
pub mod unpack;

use std::io::{self, Read};
use std::path::PathBuf;
use std::time::SystemTime;

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
/// threads. Implementations: a local directory ([`local::LocalBlobs`]).
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
