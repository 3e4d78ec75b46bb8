//! Record copies: each component and image record is also kept as a small
//! object beside the blobs (`records/c/<blake3 of the key>.json`,
//! `records/i/...`) when blobs live in shared object storage, so a lost
//! database can be rebuilt from the bucket (`artifact-store reindex`).
//!
//! Written after the index row (a refused put leaves no copy), removed
//! after it; `verify` writes missing copies and removes stale ones.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::index::{Index, IndexError, PutOutcome};
use crate::model::{ComponentKey, ImageKey, ImageRecord, Record};
use crate::store::BlobStore;

const COMPONENTS: &str = "records/c/";
const IMAGES: &str = "records/i/";

/// Where record copies go (`None`: not kept, blobs are local).
#[derive(Clone, Default)]
pub struct RecordCopies {
    store: Option<Arc<dyn BlobStore>>,
}

/// What `reindex` did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReindexReport {
    /// Records written to the index from their copies.
    pub components_restored: usize,
    /// Records the index already held with the same blob.
    pub components_present: usize,
    /// Copies naming another blob than the index holds (the index wins).
    pub components_conflicting: Vec<String>,
    pub images_restored: usize,
    /// Copies that could not be read (named, with why).
    pub unreadable: Vec<String>,
}

/// What `verify` did to the copies.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CopiesReport {
    pub copies_written: usize,
    pub copies_removed: usize,
}

fn component_object(key: &ComponentKey) -> String {
    let h = blake3::hash(format!("{}\0{}\0{}", key.component, key.tag, key.arch).as_bytes());
    format!("{COMPONENTS}{}.json", h.to_hex())
}

fn image_object(key: &ImageKey) -> String {
    let h = blake3::hash(
        format!(
            "{}\0{}\0{}",
            key.component,
            key.branch.as_deref().unwrap_or(""),
            key.arch
        )
        .as_bytes(),
    );
    format!("{IMAGES}{}.json", h.to_hex())
}

impl RecordCopies {
    pub fn new(store: Option<Arc<dyn BlobStore>>) -> Self {
        Self { store }
    }

    pub fn enabled(&self) -> bool {
        self.store.is_some()
    }

    fn put(&self, name: &str, body: serde_json::Result<Vec<u8>>) {
        let Some(s) = &self.store else { return };
        let res = body
            .map_err(std::io::Error::other)
            .and_then(|b| s.put_object(name, &b));
        if let Err(e) = res {
            // the row stands; `verify` writes the copy later
            tracing::error!(object = name, "cannot write a record copy: {e}");
        }
    }

    pub fn write(&self, rec: &Record) {
        self.put(&component_object(&rec.key()), serde_json::to_vec(rec));
    }

    pub fn remove(&self, key: &ComponentKey) {
        if let Some(s) = &self.store {
            if let Err(e) = s.delete_object(&component_object(key)) {
                tracing::error!(%key, "cannot remove a record copy: {e}");
            }
        }
    }

    pub fn write_image(&self, rec: &ImageRecord) {
        let key = ImageKey {
            component: rec.component.clone(),
            branch: rec.branch.clone(),
            arch: rec.arch.clone(),
        };
        self.put(&image_object(&key), serde_json::to_vec(rec));
    }

    /// Writes the copies the index has rows for but the store lacks, and
    /// removes copies whose row is gone. The copies are listed before the
    /// rows: a copy is written only after its row, so one listed without
    /// a row was removed.
    pub fn repair(&self, index: &dyn Index) -> Result<CopiesReport, IndexError> {
        let mut report = CopiesReport::default();
        let Some(s) = &self.store else {
            return Ok(report);
        };
        let io = |e: std::io::Error| IndexError::Db(format!("record copies: {e}"));
        let mut stale: HashSet<String> = s
            .list_objects(COMPONENTS)
            .map_err(io)?
            .into_iter()
            .collect();
        for rec in index.all() {
            let rec = rec?;
            let name = component_object(&rec.key());
            if !stale.remove(&name) {
                self.write(&rec);
                report.copies_written += 1;
            }
        }
        for name in stale {
            s.delete_object(&name).map_err(io)?;
            report.copies_removed += 1;
        }
        let mut stale: HashSet<String> = s.list_objects(IMAGES).map_err(io)?.into_iter().collect();
        for rec in index.images("", 10_000_000)? {
            let key = ImageKey {
                component: rec.component.clone(),
                branch: rec.branch.clone(),
                arch: rec.arch.clone(),
            };
            if !stale.remove(&image_object(&key)) {
                self.write_image(&rec);
                report.copies_written += 1;
            }
        }
        for name in stale {
            s.delete_object(&name).map_err(io)?;
            report.copies_removed += 1;
        }
        Ok(report)
    }

    /// Rebuilds index rows from the copies (a lost database): rows the
    /// index holds are kept.
    pub fn reindex(&self, index: &dyn Index) -> Result<ReindexReport, IndexError> {
        let mut report = ReindexReport::default();
        let Some(s) = &self.store else {
            return Err(IndexError::Db(
                "record copies are kept only with storage.kind = \"s3\": nothing to reindex from"
                    .into(),
            ));
        };
        let io = |e: std::io::Error| IndexError::Db(format!("record copies: {e}"));
        for name in s.list_objects(COMPONENTS).map_err(io)? {
            let Some(body) = s.get_object(&name).map_err(io)? else {
                continue; // removed meanwhile
            };
            let rec: Record = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    report.unreadable.push(format!("{name}: {e}"));
                    continue;
                }
            };
            if ComponentKey::new(&rec.component, &rec.tag, &rec.arch).is_err() {
                report
                    .unreadable
                    .push(format!("{name}: not a valid component key"));
                continue;
            }
            match index.put(&rec, false)? {
                PutOutcome::Created | PutOutcome::Replaced(_) => {
                    if let Some(inputs) = &rec.inputs {
                        index.add_inputs(inputs, &rec.key())?;
                    }
                    report.components_restored += 1
                }
                PutOutcome::Unchanged(_) => report.components_present += 1,
                PutOutcome::Conflict(existing) => report.components_conflicting.push(format!(
                    "{}: the copy says {}, the index {}",
                    rec.key().display_path(),
                    rec.blake3,
                    existing.blake3
                )),
            }
        }
        for name in s.list_objects(IMAGES).map_err(io)? {
            let Some(body) = s.get_object(&name).map_err(io)? else {
                continue;
            };
            let rec: ImageRecord = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    report.unreadable.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let key = ImageKey {
                component: rec.component.clone(),
                branch: rec.branch.clone(),
                arch: rec.arch.clone(),
            };
            if index.image(&key)?.is_none() {
                index.put_image(&rec)?;
                report.images_restored += 1;
            }
        }
        Ok(report)
    }
}
