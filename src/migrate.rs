//! Moving a store: `artifact-store migrate` copies a single-host store
//! (local blobs + sled) into the configured storage and index (S3 +
//! PostgreSQL), and `artifact-store reindex` rebuilds the index from the
//! record copies kept beside the blobs (a lost database).
//!
//! Migration is idempotent (blobs already held are skipped, rows are
//! replaced by the same rows), so an interrupted run is simply run again.
//! Blobs are re-hashed as they are copied: a corrupt one is reported, not
//! copied. Blobs first, then rows, then record copies: the target never
//! has a row without its blob.

use std::sync::Arc;

use serde::Serialize;

use crate::components::{RecordCopies, ReindexReport};
use crate::index::{Entry, Index, IndexError};
use crate::model::JobState;
use crate::store::{BlobStore, Scratch};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MigrateError {
    let what = what.into();
    move |err| MigrateError::Io { what, err }
}

/// What a migration did.
#[derive(Debug, Default, Serialize)]
pub struct MigrateReport {
    pub blobs_copied: usize,
    pub bytes_copied: u64,
    /// Blobs the target held already.
    pub blobs_present: usize,
    /// Source blobs whose content did not match their name (not copied).
    pub blobs_corrupt: Vec<String>,
    pub components: usize,
    pub images: usize,
    /// Index entries of every kind (records, derived blobs, downloads, jobs...).
    pub entries: usize,
    /// Jobs that were unfinished in the source, imported as interrupted.
    pub jobs_interrupted: usize,
}

const BATCH: usize = 1000;

/// Copies every blob and index entry of the source into the target.
/// `scratch` is local temp space; `progress` gets a line now and then.
pub fn migrate(
    src_blobs: &dyn BlobStore,
    src_index: &dyn Index,
    dst_blobs: Arc<dyn BlobStore>,
    dst_index: &dyn Index,
    scratch: &Scratch,
    progress: &dyn Fn(&str),
) -> Result<MigrateReport, MigrateError> {
    let mut report = MigrateReport::default();
    let blobs = src_blobs.list().map_err(io("listing the source blobs"))?;
    progress(&format!("{} blobs to check", blobs.len()));
    for (i, b) in blobs.iter().enumerate() {
        let hex = b.hash.to_hex().to_string();
        if dst_blobs
            .size(&b.hash)
            .map_err(io(format!("checking blob {hex} in the target")))?
            == Some(b.size)
        {
            report.blobs_present += 1;
            continue;
        }
        let mut r = src_blobs
            .read(&b.hash)
            .map_err(io(format!("reading blob {hex}")))?;
        let mut w = scratch.writer().map_err(io("a temp file"))?;
        std::io::copy(&mut r, &mut w).map_err(io(format!("copying blob {hex}")))?;
        let (tmp, info) = w.finish().map_err(io(format!("copying blob {hex}")))?;
        if info.hash != b.hash {
            report.blobs_corrupt.push(hex);
            continue;
        }
        dst_blobs
            .put(tmp, &info)
            .map_err(io(format!("storing blob {hex} in the target")))?;
        report.blobs_copied += 1;
        report.bytes_copied += info.size;
        if (i + 1).is_multiple_of(100) {
            progress(&format!("{} of {} blobs", i + 1, blobs.len()));
        }
    }
    progress(&format!(
        "blobs: {} copied ({} bytes), {} already there, {} corrupt",
        report.blobs_copied,
        report.bytes_copied,
        report.blobs_present,
        report.blobs_corrupt.len()
    ));
    let copies = RecordCopies::new(Some(dst_blobs.clone()));
    let mut batch = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<Entry>, report: &mut MigrateReport| {
        dst_index.import(batch)?;
        for e in batch.iter() {
            match e {
                Entry::Component(r) => copies.write(r),
                Entry::Image(r) => copies.write_image(r),
                _ => {}
            }
        }
        report.entries += batch.len();
        batch.clear();
        progress(&format!("{} index entries", report.entries));
        Ok::<_, MigrateError>(())
    };
    for e in src_index.export() {
        let mut e = e?;
        match &mut e {
            Entry::Component(_) => report.components += 1,
            Entry::Image(_) => report.images += 1,
            Entry::Job(j) if !j.state.is_final() => {
                j.state = JobState::Interrupted;
                j.error = Some("the store was migrated while this job ran".into());
                report.jobs_interrupted += 1;
            }
            _ => {}
        }
        batch.push(e);
        if batch.len() >= BATCH {
            flush(&mut batch, &mut report)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut report)?;
    }
    Ok(report)
}

/// Rebuilds index rows from the record copies beside the blobs.
pub fn reindex(
    blobs: Arc<dyn BlobStore>,
    index: &dyn Index,
) -> Result<ReindexReport, MigrateError> {
    Ok(RecordCopies::new(Some(blobs)).reindex(index)?)
}
