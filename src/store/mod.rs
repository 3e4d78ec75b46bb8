//! Bytes on disk: the content-addressed blob directory and the tarball
//! pipeline (safe unpack, deterministic pack, gzip conversion).
//!
//! Main types: [`BlobStore`], [`BlobWriter`], [`pack::PackOptions`].
//!
//! Architecture invariant: a blob becomes visible under `blobs/` only after
//! it was fully written to `tmp/`, hashed, fsynced and renamed into place, so
//! a crash leaves at worst an orphan in `tmp/` (cleared at start-up).
//! This module knows nothing of sled or HTTP.

pub mod beneath;
pub mod blobs;
pub mod pack;
pub mod reserve;
pub mod unpack;

pub use blobs::{BlobInfo, BlobStore, BlobWriter};
pub use reserve::Reserve;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The upload is not something we accept; the message says why.
    #[error("{0}")]
    BadArchive(String),
    #[error("the archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
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
