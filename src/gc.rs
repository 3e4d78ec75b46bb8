//! Retention, garbage collection and verification, run without stopping
//! the service: periodically (`[gc] interval_secs`) and on demand
//! (`artifact-store gc` / `verify`, through the admin routes).
//!
//! Deleting a component only drops its index entry; a GC pass then removes
//! blobs that no entry refers to, once older than the grace period. A blob
//! an upload or build is writing lives in `tmp/` (or an unfinished
//! multipart upload) until it is stored, and a blob that is reused is
//! noted in the index (and its mtime refreshed on disk), so a young
//! unreferenced blob (one about to be indexed) is never removed.
//!
//! With replicas, one pass runs at a time: the pass holds the lease `gc`
//! in the index (renewed as it goes); others keep serving reads and writes.

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
    /// Record copies beside the blobs written or removed (object storage).
    #[serde(flatten)]
    pub copies: crate::components::CopiesReport,
}

/// The lease a GC or verify pass holds, and for how long without renewal.
const LEASE: &str = "gc";
const LEASE_TTL: Duration = Duration::from_secs(600);

/// Holds the `gc` lease for a pass; renewed by [`Pass::renew`], given up
/// when dropped.
struct Pass<'a> {
    c: &'a Components,
    holder: &'a str,
}

impl<'a> Pass<'a> {
    fn take(c: &'a Components, holder: &'a str) -> Result<Self, ComponentError> {
        if !c.index().try_lease(LEASE, holder, LEASE_TTL)? {
            return Err(ComponentError::Busy(
                "a GC or verify pass is running on another replica; try again when it ends".into(),
            ));
        }
        Ok(Self { c, holder })
    }

    fn renew(&self) -> Result<(), ComponentError> {
        if !self.c.index().try_lease(LEASE, self.holder, LEASE_TTL)? {
            return Err(ComponentError::Busy(
                "this pass lost its lease to another replica and stopped".into(),
            ));
        }
        Ok(())
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.c.index().release_lease(LEASE, self.holder) {
            tracing::warn!("cannot give up the gc lease: {e}");
        }
    }
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
            c.delete(&key)?;
            tracing::info!(%key, "retention: dropped");
            dropped.push(key.display_path());
        }
    }
    Ok(dropped)
}

/// One GC pass: retention, then unreferenced blobs older than `grace`
/// (and not noted as reused within it). `holder` names this replica.
pub fn collect(
    c: &Components,
    rules: &RetentionConfig,
    grace: Duration,
    holder: &str,
) -> Result<GcReport, ComponentError> {
    let pass = Pass::take(c, holder)?;
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
    // what builds handed to workers still fetch: an image's context, named
    // in its spec (not in the job, which readers see)
    for j in c.index().unfinished_jobs()? {
        let Some(d) = j.dispatch else { continue };
        let spec = c
            .index()
            .meta(&crate::build::dispatch::image_spec_key(&d.id))?;
        if let Some(ctx) = spec.as_deref().and_then(context_of) {
            referenced.insert(ctx);
        }
    }
    report.blobs_referenced = referenced.len();
    let now = SystemTime::now();
    let recent = chrono::Utc::now().timestamp() - grace.as_secs() as i64;
    for blob in c.blobs().list()? {
        report.blobs_scanned += 1;
        if report.blobs_scanned.is_multiple_of(1000) {
            pass.renew()?;
        }
        let hex = blob.hash.to_hex().to_string();
        if referenced.contains(&hex) {
            continue;
        }
        let age = now.duration_since(blob.modified).unwrap_or_default();
        let reused = c.index().blob_used_at(&hex)?.is_some_and(|t| t > recent);
        if age < grace || reused {
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

/// The context blob an image build's spec names.
fn context_of(spec: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(spec).ok()?;
    v.get("context")?.as_str().map(str::to_owned)
}

/// Re-hashes every blob; corrupt ones are quarantined so they are never
/// served again; reports index entries whose blob is gone; brings the
/// record copies in line with the index.
pub fn verify(c: &Components, holder: &str) -> Result<VerifyReport, ComponentError> {
    let pass = Pass::take(c, holder)?;
    let mut report = VerifyReport::default();
    let mut present: HashSet<blake3::Hash> = HashSet::new();
    for blob in c.blobs().list()? {
        report.blobs_checked += 1;
        if report.blobs_checked.is_multiple_of(100) {
            pass.renew()?;
        }
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
    report.copies = c.copies().repair(c.index())?;
    Ok(report)
}
