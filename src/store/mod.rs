//! Bytes on disk: the content-addressed blob directory and the tarball
//! pipeline (safe unpack, deterministic pack, gzip conversion).
//!
//! Main types: [`BlobStore`], [`BlobWriter`], [`pack::PackOptions`].
//!
//! Architecture invariant: a blob becomes visible under `blobs/` only after
//! it was fully written to `tmp/`, hashed, fsynced and renamed into place, so
//! a crash leaves at worst an orphan in `tmp/` (cleared at start-up).
//! This module knows nothing of sled or HTTP.

pub mod blobs;
pub mod pack;
pub mod unpack;

pub use blobs::{BlobInfo, BlobStore, BlobWriter};

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
