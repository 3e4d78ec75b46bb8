//! Retention, garbage collection and verification, run without stopping
//! the service: periodically (`[gc] interval_secs`) and on demand
//! (`artifact-store gc` / `verify`, through the admin routes).
//!
//! Deleting a component only drops its index entry; a GC pass then removes
//! blobs that no entry refers to, once older than the grace period. A blob
//! an upload or build is writing lives in `tmp/` until it is renamed into
//! place, and a blob that is reused gets its mtime refreshed, so a young
//! unreferenced blob (one about to be indexed) is never removed.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::components::{ComponentError, Components};
use crate::config::RetentionConfig;
use crate::model::Record;

/// What a garbage collection did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct GcReport {
    /// Index entries dropped by the retention rules (`component/tag/arch`).
    pub retention_dropped: Vec<String>,
    pub blobs_scanned: usize,
    pub blobs_referenced: usize,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_young: usize,
    /// The blobs removed (blake3).
    pub blobs_removed: Vec<String>,
    pub bytes_freed: u64,
}

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    pub blobs_checked: usize,
    /// Blobs whose content did not match their name, taken out of service (`quarantine/`).
    pub corrupt: Vec<String>,
    /// Index entries whose blob is missing (or was quarantined).
    pub missing: Vec<String>,
}

/// Applies the retention rules: per (component, arch), keep the newest
/// `keep_newest` tags, plus any downloaded within `keep_downloaded_within_days`.
pub fn apply_retention(
    c: &Components,
    rules: &RetentionConfig,
) -> Result<Vec<String>, ComponentError> {
    if rules.keep_newest == 0 {
        return Ok(Vec::new());
    }
    let mut groups: BTreeMap<(String, String), Vec<Record>> = BTreeMap::new();
    for r in c.index().all() {
        let r = r?;
        groups
            .entry((r.component.clone(), r.arch.clone()))
            .or_default()
            .push(r);
    }
    let recent = Utc::now().timestamp() - (rules.keep_downloaded_within_days as i64) * 86_400;
    let mut dropped = Vec::new();
    for (_, mut recs) in groups {
        recs.sort_by_key(|r| std::cmp::Reverse(r.created));
        for r in recs.into_iter().skip(rules.keep_newest) {
            let key = r.key();
            if rules.keep_downloaded_within_days > 0 {
                if let Some(t) = c.index().last_download(&key)? {
                    if t >= recent {
                        continue;
                    }
                }
            }
            c.index().remove(&key)?;
            tracing::info!(%key, "retention: dropped");
            dropped.push(key.display_path());
        }
    }
    Ok(dropped)
}

/// One GC pass: retention, then unreferenced blobs older than `grace`.
pub fn collect(
    c: &Components,
    rules: &RetentionConfig,
    grace: Duration,
) -> Result<GcReport, ComponentError> {
    let mut report = GcReport {
        retention_dropped: apply_retention(c, rules)?,
        ..Default::default()
    };
    let mut referenced: HashSet<String> = HashSet::new();
    for r in c.index().all() {
        let r = r?;
        if let Some(gz) = c.index().derived(&r.blake3, "tar.gz")? {
            referenced.insert(gz);
        }
        referenced.insert(r.blake3);
    }
    report.blobs_referenced = referenced.len();
    let now = SystemTime::now();
    for blob in c.blobs().list()? {
        report.blobs_scanned += 1;
        let hex = blob.hash.to_hex().to_string();
        if referenced.contains(&hex) {
            continue;
        }
        let age = now.duration_since(blob.modified).unwrap_or_default();
        if age < grace {
            report.blobs_young += 1;
            continue;
        }
        c.blobs().delete(&blob.hash)?;
        c.index().remove_derived(&hex)?;
        report.bytes_freed += blob.size;
        tracing::info!(blob = %hex, bytes = blob.size, "gc: removed");
        report.blobs_removed.push(hex);
    }
    Ok(report)
}

/// Re-hashes every blob; corrupt ones are quarantined so they are never
/// served again; reports index entries whose blob is gone.
pub fn verify(c: &Components) -> Result<VerifyReport, ComponentError> {
    let mut report = VerifyReport::default();
    let mut present: HashSet<blake3::Hash> = HashSet::new();
    for blob in c.blobs().list()? {
        report.blobs_checked += 1;
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(c.blobs().read(&blob.hash)?)?;
        let actual = hasher.finalize();
        if actual != blob.hash {
            let hex = blob.hash.to_hex().to_string();
            c.blobs().quarantine(&blob.hash)?;
            c.index().remove_derived(&hex)?;
            c.index().drop_derived_target(&hex)?;
            tracing::error!(blob = %hex, actual = %actual.to_hex(), "verify: corrupt blob quarantined");
            report.corrupt.push(hex);
        } else {
            present.insert(blob.hash);
        }
    }
    for r in c.index().all() {
        let r = r?;
        let held = blake3::Hash::from_hex(&r.blake3).is_ok_and(|h| present.contains(&h));
        if !held {
            report
                .missing
                .push(format!("{} -> {}", r.key().display_path(), r.blake3));
        }
    }
    Ok(report)
}
