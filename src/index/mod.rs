//! Metadata behind the [`Index`] trait: which blob a (component, tag,
//! arch) names, derived blobs (the gzip form of a zstd blob), image
//! records, download times, jobs, API keys created through the API (only
//! the blake3 of each secret), and small service state.
//!
//! Implementations: embedded sled ([`sled::SledIndex`], the default) and
//! PostgreSQL (`postgres::PgIndex`, shared by replicas).
//!
//! Architecture invariant: a record's write is compare-and-swap per key and
//! durable when `put` returns, so "stored" in an answer means stored. Only
//! the implementations know their database.

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sled;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{ApiKey, ComponentKey, ImageKey, ImageRecord, Job, Record, Revocation};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database error: {0}")]
    Db(String),
    #[error("the index cannot write: no space left on the device")]
    DiskFull,
    #[error("corrupt index record for {key}: {err}")]
    Corrupt { key: String, err: serde_json::Error },
}

impl IndexError {
    /// The database could not write because the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, IndexError::DiskFull)
    }
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// A record as stored, for callers that cache what they derive from it:
/// equal bytes mean an equal record.
#[derive(Clone)]
pub struct RawRecord(pub bytes::Bytes);

impl RawRecord {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn decode(&self) -> Result<Record> {
        decode("record", &self.0)
    }

    pub fn decode_image(&self) -> Result<ImageRecord> {
        decode("image", &self.0)
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|err| IndexError::Corrupt {
        key: key.to_owned(),
        err,
    })
}

pub(crate) fn encode<T: serde::Serialize>(key: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|err| IndexError::Corrupt {
        key: key.to_owned(),
        err,
    })
}

/// How many records, and how many distinct components, match a search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub components: u64,
}

/// What [`Index::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// No entry existed; this one was stored.
    Created,
    /// An entry with the same blob existed and was kept.
    Unchanged(Record),
    /// An entry with another blob existed; nothing was changed.
    Conflict(Record),
    /// An entry with another blob was replaced (overwrite asked for).
    Replaced(Record),
}

/// What [`Index::enqueue_job`] did.
#[derive(Debug, Clone)]
pub enum Enqueued {
    /// The job was stored, queued, as the one in flight for its key.
    New,
    /// A job for the same flight key is not final yet: nothing was stored.
    Joined(Box<Job>),
}

/// One item of an index's content, for `migrate` (export from one index,
/// import into another).
#[derive(Debug, Clone)]
pub enum Entry {
    Component(Record),
    Image(ImageRecord),
    Derived {
        source: String,
        kind: String,
        blob: String,
    },
    Inputs {
        inputs: String,
        key: ComponentKey,
    },
    Download {
        key: ComponentKey,
        at: i64,
    },
    BlobUse {
        blob: String,
        at: i64,
    },
    Meta {
        key: String,
        value: Vec<u8>,
    },
    Job(Job),
    ApiKey(ApiKey),
}

/// The shortest time between two notes of one key's use
/// ([`Index::note_api_key_use`]).
pub const KEY_USE_EVERY_SECS: i64 = 60;

/// Chunks of a job's log from byte `from`, at most `max` bytes: the tail of
/// `(offset, chunk)` pairs in offset order.
pub(crate) fn log_from(
    chunks: impl Iterator<Item = (u64, Vec<u8>)>,
    from: u64,
    max: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (at, chunk) in chunks {
        let end = at + chunk.len() as u64;
        if end <= from {
            continue;
        }
        let skip = from.saturating_sub(at) as usize;
        out.extend_from_slice(&chunk[skip.min(chunk.len())..]);
        if out.len() >= max {
            out.truncate(max);
            break;
        }
    }
    out
}

/// The metadata store. Blocking writes belong on blocking threads; reads
/// are cheap and may run anywhere.
pub trait Index: Send + Sync + 'static {
    // --- component records ---
    fn get(&self, key: &ComponentKey) -> Result<Option<Record>>;
    /// The stored bytes of a record, undecoded (cheap: for caches).
    fn raw(&self, key: &ComponentKey) -> Result<Option<RawRecord>>;
    fn contains(&self, key: &ComponentKey) -> Result<bool>;
    /// Stores `rec` unless an entry with another blob exists (then
    /// `Conflict`, or `Replaced` when `overwrite`). Atomic per key, durable.
    fn put(&self, rec: &Record, overwrite: bool) -> Result<PutOutcome>;
    fn remove(&self, key: &ComponentKey) -> Result<Option<Record>>;
    /// Records whose component name starts with `prefix`, in key order,
    /// starting after `after`; at most `limit`.
    fn list(&self, prefix: &str, after: Option<&ComponentKey>, limit: usize)
        -> Result<Vec<Record>>;
    /// Records whose component starts with `prefix` and whose key
    /// `component/tag/arch` contains every one of `words` (case aside), in
    /// key order after `after`; at most `limit`.
    fn search(
        &self,
        prefix: &str,
        words: &[String],
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>>;
    /// How many records and distinct components [`Index::search`] finds in all.
    fn count_matching(&self, prefix: &str, words: &[String]) -> Result<Counts>;
    /// Every record of one component (all tags and arches).
    fn versions(&self, component: &str) -> Result<Vec<Record>>;
    /// Every record (GC, verification, retention).
    fn all(&self) -> Box<dyn Iterator<Item = Result<Record>> + '_>;
    fn component_count(&self) -> Result<u64>;
    /// Replaces the record of `rec`'s key only while it still names the same
    /// blob (metadata such as the rebuild check); false when it does not.
    fn update_record(&self, rec: &Record) -> Result<bool>;

    // --- inputs keys (builds) ---
    /// Notes that the record `key` was built from `inputs`.
    fn add_inputs(&self, inputs: &str, key: &ComponentKey) -> Result<()>;
    /// Records noted for `inputs` that still exist and still carry it.
    fn by_inputs(&self, inputs: &str) -> Result<Vec<Record>>;

    // --- derived blobs ---
    /// The blob derived from `source` as `kind` (e.g. "tar.gz"), if made.
    fn derived(&self, source: &str, kind: &str) -> Result<Option<String>>;
    fn set_derived(&self, source: &str, kind: &str, blob: &str) -> Result<()>;
    /// Forgets what was derived from `source` (it is gone).
    fn remove_derived(&self, source: &str) -> Result<()>;
    /// Forgets derivations whose result is `blob` (it was found corrupt).
    fn drop_derived_target(&self, blob: &str) -> Result<()>;

    // --- downloads (retention) ---
    /// Notes a download of `key` now (implementations may coarsen it).
    fn note_download(&self, key: &ComponentKey) -> Result<()>;
    /// When `key` was last downloaded (unix seconds), if ever noted.
    fn last_download(&self, key: &ComponentKey) -> Result<Option<i64>>;

    // --- images ---
    fn image_raw(&self, key: &ImageKey) -> Result<Option<RawRecord>>;
    fn image(&self, key: &ImageKey) -> Result<Option<ImageRecord>>;
    /// Stores (replaces) the record of an image, durably.
    fn put_image(&self, rec: &ImageRecord) -> Result<()>;
    /// Image records whose component starts with `prefix`, at most `limit`.
    fn images(&self, prefix: &str, limit: usize) -> Result<Vec<ImageRecord>>;

    // --- jobs ---
    fn job(&self, id: &str) -> Result<Option<Job>>;
    /// Stores a job; `durable` waits for it to reach the disk.
    fn put_job(&self, job: &Job, durable: bool) -> Result<()>;
    /// The newest jobs first.
    fn jobs(&self, limit: usize) -> Result<Vec<Job>>;
    /// Jobs not in a final state (at start-up: cut off by a crash).
    fn unfinished_jobs(&self) -> Result<Vec<Job>>;

    // --- jobs across replicas ---
    /// Whether other processes share this index (replicas): then a job cut
    /// off by a crash is found by its lease, not at start-up.
    fn shared(&self) -> bool;
    /// Stores the queued `job` as the one in flight for `job.flight`, unless
    /// a job for that flight exists in a state that is not final: then that
    /// job, and nothing is stored. Atomic across replicas.
    fn enqueue_job(&self, job: &Job) -> Result<Enqueued>;
    /// Claims the oldest queued job `replica` may run (not pinned, or pinned
    /// to it): marks it running, held by `replica` until now + `lease`, with
    /// `started` set and `attempts` counted. Two claims never get one job.
    fn claim_job(&self, replica: &str, lease: Duration) -> Result<Option<Job>>;
    /// Extends the lease of every running job `replica` holds.
    fn renew_leases(&self, replica: &str, lease: Duration) -> Result<()>;
    /// Running jobs whose lease has expired (their replica died).
    fn expired_jobs(&self) -> Result<Vec<Job>>;
    /// Replaces a job only while the stored job's `replica` is `holder`
    /// (else false: it was reaped, or another replica claimed it). A job
    /// written with `replica` None (requeued) can be claimed again.
    fn replace_job(&self, job: &Job, holder: Option<&str>) -> Result<bool>;
    /// Replaces a job whose replica stopped: only while the stored job is
    /// running, held by `holder`, and its lease has expired (a replica that
    /// renewed meanwhile keeps its job). False otherwise.
    fn take_up_job(&self, job: &Job, holder: &str) -> Result<bool>;

    // --- leases (one replica at a time: GC, verify) ---
    /// Takes or renews the lease `name` for `holder` until now + `ttl`;
    /// false while another holder has it unexpired.
    fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Gives the lease up (if `holder` has it).
    fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    // --- blob use (the GC grace period across replicas) ---
    /// Notes that `blob` (blake3 hex) was just reused for a new record.
    fn note_blob_use(&self, blob: &str) -> Result<()>;
    /// When `blob` was last noted as reused (unix seconds).
    fn blob_used_at(&self, blob: &str) -> Result<Option<i64>>;

    // --- service state ---
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn set_meta(&self, key: &str, value: &[u8]) -> Result<()>;
    /// Stores `value` under `key` unless a value is there; returns the
    /// value that is there now (one winner across replicas).
    fn set_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>>;
    fn delete_meta(&self, key: &str) -> Result<()>;

    // --- API keys created through the API (only the blake3 of the secret) ---
    /// Stores a new key; false (and nothing stored) when its name or its
    /// hash is taken. Atomic across replicas.
    fn create_api_key(&self, key: &ApiKey) -> Result<bool>;
    fn api_key(&self, name: &str) -> Result<Option<ApiKey>>;
    /// The key whose secret hashes to `blake3` (hex), revoked or not.
    fn api_key_by_hash(&self, blake3: &str) -> Result<Option<ApiKey>>;
    /// Every key, by name.
    fn api_keys(&self) -> Result<Vec<ApiKey>>;
    /// Marks the key `name` revoked unless it already is (the first
    /// revocation stays); the key as stored now, `None` when there is none.
    fn revoke_api_key(&self, name: &str, revoked: &Revocation) -> Result<Option<ApiKey>>;
    /// Notes that `name` was used at `at` (whole seconds): written only when
    /// the last note is [`KEY_USE_EVERY_SECS`] older or more.
    fn note_api_key_use(&self, name: &str, at: DateTime<Utc>) -> Result<()>;

    // --- logs of jobs run elsewhere (workers) ---
    /// Appends to the log of job `id` (its worker's lines).
    fn append_job_log(&self, id: &str, chunk: &[u8]) -> Result<()>;
    /// The log of job `id` from byte `from` (at most `max` bytes); empty
    /// when nothing is there.
    fn job_log(&self, id: &str, from: u64, max: usize) -> Result<Vec<u8>>;
    /// Whether the database answers (`/readyz`).
    fn ping(&self) -> Result<()> {
        Ok(())
    }

    // --- migration ---
    /// Everything the index holds, as entries.
    fn export(&self) -> Box<dyn Iterator<Item = Result<Entry>> + '_>;
    /// Stores entries (replacing what has the same key); durable when it
    /// returns. Jobs are imported as they are (no flight is taken).
    fn import(&self, entries: &[Entry]) -> Result<()>;
}
