//! The embedded index: sled trees `components` (`component\0tag\0arch` ->
//! JSON [`Record`]), `derived` (`<blake3>\0<kind>` -> blake3), `downloads`
//! (key -> unix seconds), `images`, `jobs` (id -> JSON [`Job`]; ids sort by
//! time), `flights` (flight key -> job id), `queue` (ids of queued jobs),
//! `blob_uses` (blake3 -> unix seconds), `api_keys` (by name and by hash,
//! see `api_keys.rs`) and `meta`.
//!
//! Reads are in-memory lookups; record writes are compare-and-swap per key
//! and flushed (fsync) before returning. One process owns the database, so
//! job claims and leases are serialised by a mutex, and a job cut off by a
//! crash is found at start-up (not by its lease).

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod api_keys;
mod export;
mod search;

use chrono::{DateTime, Utc};

use super::{
    decode, encode, Counts, Enqueued, Entry, Index, IndexError, PutOutcome, RawRecord, Result,
};
use crate::model::{
    ApiKey, ComponentKey, ImageKey, ImageRecord, Job, JobState, Record, Revocation,
};

impl From<::sled::Error> for IndexError {
    fn from(e: ::sled::Error) -> Self {
        match &e {
            ::sled::Error::Io(io) if crate::store::is_disk_full(io) => IndexError::DiskFull,
            _ => IndexError::Db(e.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct SledIndex {
    db: ::sled::Db,
    components: ::sled::Tree,
    derived: ::sled::Tree,
    downloads: ::sled::Tree,
    images: ::sled::Tree,
    inputs: ::sled::Tree,
    jobs: ::sled::Tree,
    flights: ::sled::Tree,
    queue: ::sled::Tree,
    job_logs: ::sled::Tree,
    blob_uses: ::sled::Tree,
    api_keys: ::sled::Tree,
    meta: ::sled::Tree,
    /// Serialises job enqueues, claims and replacements.
    job_lock: Arc<Mutex<()>>,
    /// Leases: name -> (holder, until).
    leases: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    /// The component keys, for searching (see `search`).
    keys: Arc<search::Keys>,
}

fn key_bytes(k: &ComponentKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(k.component.len() + k.tag.len() + k.arch.len() + 2);
    v.extend_from_slice(k.component.as_bytes());
    v.push(0);
    v.extend_from_slice(k.tag.as_bytes());
    v.push(0);
    v.extend_from_slice(k.arch.as_bytes());
    v
}

fn image_key_bytes(k: &ImageKey) -> Vec<u8> {
    format!(
        "{}\0{}\0{}",
        k.component,
        k.branch.as_deref().unwrap_or(""),
        k.arch
    )
    .into_bytes()
}

fn show(k: &[u8]) -> String {
    String::from_utf8_lossy(k).replace('\0', "/")
}

fn key_of(k: &[u8]) -> Option<ComponentKey> {
    let s = std::str::from_utf8(k).ok()?;
    let mut it = s.split('\0');
    let (c, t, a) = (it.next()?, it.next()?, it.next()?);
    Some(ComponentKey {
        component: c.to_owned(),
        tag: t.to_owned(),
        arch: a.to_owned(),
    })
}

fn seconds(v: &[u8]) -> Option<i64> {
    <[u8; 8]>::try_from(v).ok().map(i64::from_be_bytes)
}

fn poisoned() -> IndexError {
    IndexError::Db("an index lock was poisoned by a panic".into())
}

fn raw(v: ::sled::IVec) -> RawRecord {
    RawRecord(bytes::Bytes::from_owner(v))
}

impl SledIndex {
    pub fn open(path: &Path) -> Result<Self> {
        let db = ::sled::Config::new()
            .path(path)
            .cache_capacity(16 << 20)
            .flush_every_ms(Some(500))
            .open()?;
        Ok(Self {
            components: db.open_tree("components")?,
            derived: db.open_tree("derived")?,
            downloads: db.open_tree("downloads")?,
            images: db.open_tree("images")?,
            inputs: db.open_tree("inputs")?,
            jobs: db.open_tree("jobs")?,
            flights: db.open_tree("flights")?,
            queue: db.open_tree("queue")?,
            job_logs: db.open_tree("job_logs")?,
            blob_uses: db.open_tree("blob_uses")?,
            api_keys: db.open_tree("api_keys")?,
            meta: db.open_tree("meta")?,
            job_lock: Arc::new(Mutex::new(())),
            leases: Arc::new(Mutex::new(HashMap::new())),
            keys: Arc::default(),
            db,
        })
    }
}

impl Index for SledIndex {
    fn get(&self, key: &ComponentKey) -> Result<Option<Record>> {
        let k = key_bytes(key);
        self.components
            .get(&k)?
            .map(|v| decode(&show(&k), &v))
            .transpose()
    }

    fn raw(&self, key: &ComponentKey) -> Result<Option<RawRecord>> {
        Ok(self.components.get(key_bytes(key))?.map(raw))
    }

    fn contains(&self, key: &ComponentKey) -> Result<bool> {
        Ok(self.components.contains_key(key_bytes(key))?)
    }

    fn put(&self, rec: &Record, overwrite: bool) -> Result<PutOutcome> {
        let k = key_bytes(&rec.key());
        let new = encode(&show(&k), rec)?;
        loop {
            let old = self.components.get(&k)?;
            let outcome = match &old {
                None => PutOutcome::Created,
                Some(v) => {
                    let existing: Record = decode(&show(&k), v)?;
                    if existing.blake3 == rec.blake3 {
                        return Ok(PutOutcome::Unchanged(existing));
                    }
                    if !overwrite {
                        return Ok(PutOutcome::Conflict(existing));
                    }
                    PutOutcome::Replaced(existing)
                }
            };
            if self
                .components
                .compare_and_swap(&k, old, Some(new.clone()))?
                .is_ok()
            {
                if matches!(outcome, PutOutcome::Created) {
                    self.keys.added(&k);
                }
                self.db.flush()?;
                return Ok(outcome);
            }
        }
    }

    fn remove(&self, key: &ComponentKey) -> Result<Option<Record>> {
        let k = key_bytes(key);
        let old = self.components.remove(&k)?;
        self.keys.removed(&k);
        self.db.flush()?;
        old.map(|v| decode(&show(&k), &v)).transpose()
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        // from the later of `after` and the prefix's first key
        let start = match after.map(key_bytes) {
            Some(a) if a.as_slice() >= prefix.as_bytes() => Bound::Excluded(a),
            _ => Bound::Included(prefix.as_bytes().to_vec()),
        };
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for kv in self.components.range((start, Bound::Unbounded)) {
            let (k, v) = kv?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push(decode(&show(&k), &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn search(
        &self,
        prefix: &str,
        words: &[String],
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        self.search_records(prefix, words, after, limit)
    }

    fn count_matching(&self, prefix: &str, words: &[String]) -> Result<Counts> {
        self.count_records(prefix, words)
    }

    fn versions(&self, component: &str) -> Result<Vec<Record>> {
        let mut p = component.as_bytes().to_vec();
        p.push(0);
        self.components
            .scan_prefix(&p)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&show(&k), &v)
            })
            .collect()
    }

    fn all(&self) -> Box<dyn Iterator<Item = Result<Record>> + '_> {
        Box::new(self.components.iter().map(|kv| {
            let (k, v) = kv?;
            decode(&show(&k), &v)
        }))
    }

    fn component_count(&self) -> Result<u64> {
        Ok(self.components.len() as u64)
    }

    fn update_record(&self, rec: &Record) -> Result<bool> {
        let k = key_bytes(&rec.key());
        let new = encode(&show(&k), rec)?;
        loop {
            let Some(old) = self.components.get(&k)? else {
                return Ok(false);
            };
            let existing: Record = decode(&show(&k), &old)?;
            if existing.blake3 != rec.blake3 {
                return Ok(false);
            }
            if self
                .components
                .compare_and_swap(&k, Some(old), Some(new.clone()))?
                .is_ok()
            {
                self.db.flush()?;
                return Ok(true);
            }
        }
    }

    fn add_inputs(&self, inputs: &str, key: &ComponentKey) -> Result<()> {
        let mut k = inputs.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(&key_bytes(key));
        self.inputs.insert(k, &[])?;
        self.db.flush()?;
        Ok(())
    }

    fn by_inputs(&self, inputs: &str) -> Result<Vec<Record>> {
        let mut p = inputs.as_bytes().to_vec();
        p.push(0);
        let mut out = Vec::new();
        for k in self.inputs.scan_prefix(&p).keys() {
            let k = k?;
            let rec_key = &k[p.len()..];
            if let Some(v) = self.components.get(rec_key)? {
                let rec: Record = decode(&show(rec_key), &v)?;
                if rec.inputs.as_deref() == Some(inputs) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    fn derived(&self, source: &str, kind: &str) -> Result<Option<String>> {
        let k = format!("{source}\0{kind}");
        Ok(self
            .derived
            .get(k.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_derived(&self, source: &str, kind: &str, blob: &str) -> Result<()> {
        let k = format!("{source}\0{kind}");
        self.derived.insert(k.as_bytes(), blob.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    fn remove_derived(&self, source: &str) -> Result<()> {
        let mut p = source.as_bytes().to_vec();
        p.push(0);
        for k in self.derived.scan_prefix(&p).keys() {
            self.derived.remove(k?)?;
        }
        Ok(())
    }

    fn drop_derived_target(&self, blob: &str) -> Result<()> {
        for kv in self.derived.iter() {
            let (k, v) = kv?;
            if v.as_ref() == blob.as_bytes() {
                self.derived.remove(k)?;
            }
        }
        Ok(())
    }

    /// At most one write an hour per key.
    fn note_download(&self, key: &ComponentKey) -> Result<()> {
        let now = chrono::Utc::now().timestamp();
        let k = key_bytes(key);
        if let Some(v) = self.downloads.get(&k)? {
            if let Ok(b) = <[u8; 8]>::try_from(v.as_ref()) {
                if now - i64::from_be_bytes(b) < 3600 {
                    return Ok(());
                }
            }
        }
        self.downloads.insert(k, &now.to_be_bytes())?;
        Ok(())
    }

    fn last_download(&self, key: &ComponentKey) -> Result<Option<i64>> {
        Ok(self
            .downloads
            .get(key_bytes(key))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    fn image_raw(&self, key: &ImageKey) -> Result<Option<RawRecord>> {
        Ok(self.images.get(image_key_bytes(key))?.map(raw))
    }

    fn image(&self, key: &ImageKey) -> Result<Option<ImageRecord>> {
        self.images
            .get(image_key_bytes(key))?
            .map(|v| decode(&key.to_string(), &v))
            .transpose()
    }

    fn put_image(&self, rec: &ImageRecord) -> Result<()> {
        let key = ImageKey {
            component: rec.component.clone(),
            branch: rec.branch.clone(),
            arch: rec.arch.clone(),
        };
        let v = encode(&key.to_string(), rec)?;
        self.images.insert(image_key_bytes(&key), v)?;
        self.db.flush()?;
        Ok(())
    }

    fn images(&self, prefix: &str, limit: usize) -> Result<Vec<ImageRecord>> {
        self.images
            .scan_prefix(prefix.as_bytes())
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&show(&k), &v)
            })
            .collect()
    }

    fn job(&self, id: &str) -> Result<Option<Job>> {
        self.jobs
            .get(id.as_bytes())?
            .map(|v| decode(id, &v))
            .transpose()
    }

    fn put_job(&self, job: &Job, durable: bool) -> Result<()> {
        self.jobs.insert(job.id.as_bytes(), encode(&job.id, job)?)?;
        if job.state == JobState::Queued {
            self.queue.insert(job.id.as_bytes(), &[])?;
        } else {
            self.queue.remove(job.id.as_bytes())?;
        }
        if durable {
            self.jobs.flush()?;
        }
        Ok(())
    }

    fn jobs(&self, limit: usize) -> Result<Vec<Job>> {
        self.jobs
            .iter()
            .rev()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&show(&k), &v)
            })
            .collect()
    }

    fn unfinished_jobs(&self) -> Result<Vec<Job>> {
        let mut out = Vec::new();
        for kv in self.jobs.iter() {
            let (k, v) = kv?;
            let job: Job = decode(&show(&k), &v)?;
            if !job.state.is_final() {
                out.push(job);
            }
        }
        Ok(out)
    }

    fn shared(&self) -> bool {
        false
    }

    fn enqueue_job(&self, job: &Job) -> Result<Enqueued> {
        let _g = self.job_lock.lock().map_err(|_| poisoned())?;
        if let Some(flight) = &job.flight {
            if let Some(id) = self.flights.get(flight.as_bytes())? {
                let id = String::from_utf8_lossy(&id).into_owned();
                if let Some(other) = self.job(&id)? {
                    if !other.state.is_final() {
                        return Ok(Enqueued::Joined(Box::new(other)));
                    }
                }
            }
            self.flights.insert(flight.as_bytes(), job.id.as_bytes())?;
        }
        self.jobs.insert(job.id.as_bytes(), encode(&job.id, job)?)?;
        if job.state == JobState::Queued {
            self.queue.insert(job.id.as_bytes(), &[])?;
        }
        self.db.flush()?;
        Ok(Enqueued::New)
    }

    fn claim_job(&self, replica: &str, _lease: Duration) -> Result<Option<Job>> {
        let _g = self.job_lock.lock().map_err(|_| poisoned())?;
        for id in self.queue.iter().keys() {
            let id = id?;
            let Some(v) = self.jobs.get(&id)? else {
                self.queue.remove(&id)?;
                continue;
            };
            let mut job: Job = decode(&show(&id), &v)?;
            if job.state != JobState::Queued {
                self.queue.remove(&id)?;
                continue;
            }
            if job.pinned.as_deref().is_some_and(|p| p != replica) {
                continue;
            }
            job.state = JobState::Running;
            job.replica = Some(replica.to_owned());
            job.started.get_or_insert_with(chrono::Utc::now);
            job.attempts += 1;
            self.jobs.insert(&id, encode(&job.id, &job)?)?;
            self.queue.remove(&id)?;
            return Ok(Some(job));
        }
        Ok(None)
    }

    fn renew_leases(&self, _replica: &str, _lease: Duration) -> Result<()> {
        Ok(())
    }

    fn expired_jobs(&self) -> Result<Vec<Job>> {
        Ok(Vec::new())
    }

    fn replace_job(&self, job: &Job, holder: Option<&str>) -> Result<bool> {
        let _g = self.job_lock.lock().map_err(|_| poisoned())?;
        let Some(v) = self.jobs.get(job.id.as_bytes())? else {
            return Ok(false);
        };
        let stored: Job = decode(&job.id, &v)?;
        if stored.replica.as_deref() != holder {
            return Ok(false);
        }
        self.jobs.insert(job.id.as_bytes(), encode(&job.id, job)?)?;
        if job.state == JobState::Queued {
            self.queue.insert(job.id.as_bytes(), &[])?;
        } else {
            self.queue.remove(job.id.as_bytes())?;
        }
        // a final state, and where a build was handed, must survive a crash
        // (a restart follows the hand-over instead of building again)
        if job.state.is_final() || job.dispatch.is_some() {
            self.jobs.flush()?;
        }
        Ok(true)
    }

    /// Jobs never expire here (one process; see `expired_jobs`).
    fn take_up_job(&self, _job: &Job, _holder: &str) -> Result<bool> {
        Ok(false)
    }

    fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut m = self.leases.lock().map_err(|_| poisoned())?;
        let now = Instant::now();
        match m.get(name) {
            Some((h, until)) if h != holder && *until > now => Ok(false),
            _ => {
                m.insert(name.to_owned(), (holder.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let mut m = self.leases.lock().map_err(|_| poisoned())?;
        if m.get(name).is_some_and(|(h, _)| h == holder) {
            m.remove(name);
        }
        Ok(())
    }

    fn note_blob_use(&self, blob: &str) -> Result<()> {
        let now = chrono::Utc::now().timestamp();
        // not flushed: after a crash, the blob's mtime still counts
        self.blob_uses.insert(blob.as_bytes(), &now.to_be_bytes())?;
        Ok(())
    }

    fn blob_used_at(&self, blob: &str) -> Result<Option<i64>> {
        Ok(self
            .blob_uses
            .get(blob.as_bytes())?
            .and_then(|v| seconds(&v)))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.meta.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    fn set_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        match self
            .meta
            .compare_and_swap(key, None::<&[u8]>, Some(value))?
        {
            Ok(()) => {
                self.db.flush()?;
                Ok(value.to_vec())
            }
            Err(e) => Ok(e.current.map(|v| v.to_vec()).unwrap_or_default()),
        }
    }

    fn delete_meta(&self, key: &str) -> Result<()> {
        self.meta.remove(key)?;
        Ok(())
    }

    fn create_api_key(&self, key: &ApiKey) -> Result<bool> {
        self.key_create(key)
    }

    fn api_key(&self, name: &str) -> Result<Option<ApiKey>> {
        self.key_named(name)
    }

    fn api_key_by_hash(&self, blake3: &str) -> Result<Option<ApiKey>> {
        self.key_by_hash(blake3)
    }

    fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.keys_all()
    }

    fn revoke_api_key(&self, name: &str, revoked: &Revocation) -> Result<Option<ApiKey>> {
        self.key_revoke(name, revoked)
    }

    fn note_api_key_use(&self, name: &str, at: DateTime<Utc>) -> Result<()> {
        self.key_used(name, at)
    }

    fn append_job_log(&self, id: &str, chunk: &[u8]) -> Result<()> {
        let _g = self.job_lock.lock().map_err(|_| poisoned())?;
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let at = match self.job_logs.scan_prefix(&prefix).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let at = <[u8; 8]>::try_from(&k[prefix.len()..])
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                at + v.len() as u64
            }
            None => 0,
        };
        let mut k = prefix;
        k.extend_from_slice(&at.to_be_bytes());
        self.job_logs.insert(k, chunk)?;
        Ok(())
    }

    fn job_log(&self, id: &str, from: u64, max: usize) -> Result<Vec<u8>> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let mut chunks = Vec::new();
        for kv in self.job_logs.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let at = <[u8; 8]>::try_from(&k[prefix.len()..])
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            chunks.push((at, v.to_vec()));
        }
        Ok(super::log_from(chunks.into_iter(), from, max))
    }

    fn export(&self) -> Box<dyn Iterator<Item = Result<Entry>> + '_> {
        self.entries()
    }

    fn import(&self, entries: &[Entry]) -> Result<()> {
        self.load(entries)
    }
}

#[cfg(test)]
mod tests;
