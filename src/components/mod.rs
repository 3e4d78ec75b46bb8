//! The component store's operations, independent of HTTP: ingest an upload
//! (normalise to the canonical tar.zst, store the blob, index it), look up,
//! list, delete, derive the gzip form for old clients, and hand out blobs
//! to serve. The HTTP layer calls these, never the store or the index.
//!
//! Main type: [`Components`]. Every method that writes is blocking and
//! belongs on a blocking thread. `gzip`: derived gzip forms; `layout`: the
//! top directory of tarballs (another tag's is refused); `space`:
//! readiness, the free-space floor, statistics, the bound on packs.

mod copies;
mod gzip;
mod layout;
mod space;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;

pub use copies::{CopiesReport, RecordCopies, ReindexReport};

use crate::config::{Config, StorageKind};
use crate::index::{Index, IndexError, PutOutcome, RawRecord};
use crate::model::{
    ComponentKey, Identity, NameError, Record, Requirement, ResolvedDependency, Source,
};
use crate::store::pack::{self, PackOptions};
use crate::store::{beneath, unpack, BlobInfo, BlobStore, Scratch, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("component {0} is not stored")]
    NotFound(ComponentKey),
    #[error("X-Checksum-Blake3 is {expected} but the body hashes to {actual}: nothing stored")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("{key} is already stored with other content (blake3 {existing}); tags are immutable (an admin may overwrite)")]
    Conflict { key: ComponentKey, existing: String },
    #[error("no stored blob has blake3 {0}: send the tarball in the body")]
    BlobNotFound(String),
    /// The index names a blob the store does not hold (lost behind the
    /// service's back): never served as a truncated answer.
    #[error("the blob is missing from the store (run `artifact-store verify`)")]
    BlobLost(String),
    /// The disk is below its free-space floor: writes are refused.
    #[error("the store has {free} bytes free, below its floor of {floor} (min_free_bytes): nothing stored")]
    NoRoom { free: u64, floor: u64 },
    /// An upload whose only top-level directory is named like another tag.
    #[error(
        "the tarball's top directory is {top}/ but the tag is {tag}: it looks like the tarball of \
         another tag, so nothing was stored. Upload {tag}'s tarball, or ask for wrap=true \
         (CLI: --wrap) to store it as {tag}/{top}/..."
    )]
    OtherTag { top: String, tag: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// One-at-a-time work (GC, verify) is running elsewhere.
    #[error("{0}")]
    Busy(String),
}

impl From<std::io::Error> for ComponentError {
    fn from(e: std::io::Error) -> Self {
        ComponentError::Store(StoreError::Io(e))
    }
}

pub type Result<T> = std::result::Result<T, ComponentError>;

/// Everything the store knows about an upload besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct PutRequest {
    pub who: Identity,
    pub source: Option<Source>,
    pub dependencies: Vec<ResolvedDependency>,
    /// Replace an entry with other content (admins only; checked by the caller).
    pub overwrite: bool,
    /// mtime clamp for packing a directory (builds: the commit time).
    pub mtime_clamp: Option<u64>,
    /// Builds: the recipe's direct dependencies.
    pub requires: Vec<Requirement>,
    /// Builds: the inputs key.
    pub inputs: Option<String>,
    /// Builds: the record whose output was reused instead of building.
    pub reused_from: Option<ResolvedDependency>,
}

/// The outcome of a store: the record now indexed, and whether it is new.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: Record,
    pub created: bool,
}

/// A stored blob, ready to be served.
#[derive(Clone)]
pub struct BlobHandle {
    /// blake3 (hex): the ETag.
    pub hash: String,
    pub size: u64,
    /// A local file holding it, when the store has one (served with mmap).
    pub local: Option<PathBuf>,
    /// Reads it from the store (object storage: ranged GETs).
    pub reader: BlobReader,
    /// Clients may fetch it from the object store directly, with a URL
    /// valid this long (`storage.redirect`): see [`BlobReader::presign`].
    pub redirect: Option<std::time::Duration>,
}

/// Opens ranged reads of one stored blob.
#[derive(Clone)]
pub struct BlobReader {
    blobs: Arc<dyn BlobStore>,
    hash: blake3::Hash,
}

impl BlobReader {
    /// `len` bytes from `start` (blocking); `BlobLost` when the store no
    /// longer holds it.
    pub fn open(&self, start: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        self.blobs
            .read_range(&self.hash, start, Some(len))
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    ComponentError::BlobLost(self.hash.to_hex().to_string())
                } else {
                    e.into()
                }
            })
    }

    /// A URL of the object store for the blob, valid `ttl`, saved as
    /// `filename`; `None` when the store cannot presign.
    pub fn presign(
        &self,
        filename: Option<&str>,
        ttl: std::time::Duration,
    ) -> Result<Option<String>> {
        Ok(self.blobs.presigned_url(&self.hash, filename, ttl)?)
    }
}

/// What the store holds, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub blobs: u64,
    pub bytes: u64,
    pub components: u64,
}

type Locks = Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>;

#[derive(Clone)]
pub struct Components {
    blobs: Arc<dyn BlobStore>,
    scratch: Scratch,
    index: Arc<dyn Index>,
    cfg: Arc<Config>,
    /// Derivations in progress, by source blob: one conversion per source at
    /// a time; later callers wait for it and reuse its result.
    deriving: Locks,
    /// Packs (normalisations, build outputs) running at once are bounded:
    /// each lists its tree in memory and runs zstd workers.
    packs: Arc<space::Slots>,
    copies: RecordCopies,
}

impl Components {
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        scratch: Scratch,
        index: Arc<dyn Index>,
        cfg: Arc<Config>,
    ) -> Self {
        let packs = match cfg.max_concurrent_packs {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let copies =
            RecordCopies::new((cfg.storage.kind != StorageKind::Local).then(|| blobs.clone()));
        Self {
            blobs,
            scratch,
            index,
            cfg,
            deriving: Default::default(),
            packs: Arc::new(space::Slots::new(packs)),
            copies,
        }
    }

    /// For the domain's own passes (GC, verification); never for handlers.
    pub(crate) fn blobs(&self) -> &dyn BlobStore {
        self.blobs.as_ref()
    }

    /// For the domain's own passes (GC, verification); never for handlers.
    pub(crate) fn index(&self) -> &dyn Index {
        self.index.as_ref()
    }

    /// Local scratch space (upload bodies, work trees).
    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A key, with the configured default arch for an absent or "null" arch.
    pub fn key(&self, component: &str, tag: &str, arch: Option<&str>) -> Result<ComponentKey> {
        Ok(ComponentKey::new(
            component,
            tag,
            &self.cfg.arch_or_default(arch),
        )?)
    }

    pub fn lookup(&self, key: &ComponentKey) -> Result<Option<Record>> {
        Ok(self.index.get(key)?)
    }

    pub fn contains(&self, key: &ComponentKey) -> Result<bool> {
        Ok(self.index.contains(key)?)
    }

    /// The record as stored, undecoded (for answers cached by its bytes).
    pub fn raw(&self, key: &ComponentKey) -> Result<Option<RawRecord>> {
        Ok(self.index.raw(key)?)
    }

    /// The record, or `NotFound`.
    pub fn find(&self, key: &ComponentKey) -> Result<Record> {
        self.index
            .get(key)?
            .ok_or_else(|| ComponentError::NotFound(key.clone()))
    }

    /// Notes a download (for the retention rule "keep what was downloaded
    /// recently"); failures are logged, never fatal.
    pub fn note_download(&self, key: &ComponentKey) {
        if let Err(e) = self.index.note_download(key) {
            tracing::warn!("cannot note a download: {e}");
        }
    }

    /// The blob of a record, to serve: `BlobLost` when the index names a
    /// blob the store no longer holds.
    pub fn record_blob(&self, rec: &Record) -> Result<BlobHandle> {
        self.blob(&rec.blake3).map_err(|e| match e {
            ComponentError::BlobNotFound(h) => ComponentError::BlobLost(h),
            other => other,
        })
    }

    /// A blob by its hash, to serve.
    pub fn blob(&self, hex: &str) -> Result<BlobHandle> {
        let hash = blake3::Hash::from_hex(hex).map_err(|_| {
            ComponentError::BadRequest("a blob is named by its blake3: 64 hex characters".into())
        })?;
        let size = self
            .blobs
            .size(&hash)?
            .ok_or_else(|| ComponentError::BlobNotFound(hex.to_owned()))?;
        Ok(BlobHandle {
            hash: hash.to_hex().to_string(),
            size,
            local: self.blobs.local_path(&hash),
            reader: BlobReader {
                blobs: self.blobs.clone(),
                hash,
            },
            redirect: self
                .cfg
                .storage
                .redirect
                .then(|| std::time::Duration::from_secs(self.cfg.storage.s3.presign_secs.max(1))),
        })
    }

    /// Unpacks a stored blob into `dest` (a build's dependencies).
    pub fn unpack_blob(&self, hex: &str, dest: &Path) -> Result<()> {
        let hash = blake3::Hash::from_hex(hex)
            .map_err(|_| ComponentError::BadRequest(format!("corrupt blob reference {hex}")))?;
        let r = self.blobs.read(&hash).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ComponentError::BlobLost(hex.to_owned())
            } else {
                e.into()
            }
        })?;
        std::fs::create_dir_all(dest)?;
        let tar = zstd::stream::read::Decoder::new(r)?;
        unpack::unpack_safe(tar, dest, self.cfg.unpack_limits())?;
        Ok(())
    }

    /// Stores an uploaded body (tar.zst, tar.gz or tar) for `key`.
    /// `raw` is the blake3 of the body as received; `expected` the client's
    /// claim. `wrap`: a body whose only top-level directory is named like
    /// another tag goes under `<tag>/` too (else: [`ComponentError::OtherTag`]).
    pub fn put_upload(
        &self,
        key: &ComponentKey,
        body: File,
        raw: blake3::Hash,
        expected: Option<blake3::Hash>,
        req: PutRequest,
        wrap: bool,
    ) -> Result<Stored> {
        if let Some(exp) = expected {
            if exp != raw {
                return Err(ComponentError::ChecksumMismatch {
                    expected: exp.to_hex().to_string(),
                    actual: raw.to_hex().to_string(),
                });
            }
        }
        // Fast path: the body is a canonical blob we already hold for this tag.
        if self.blobs.contains(&raw)? && self.blob_top_dir(&raw).as_deref() == Some(&key.tag) {
            self.blobs.touch(&raw);
            let size = body.metadata()?.len();
            return self.index_blob(key, BlobInfo { hash: raw, size }, req);
        }
        let info = self.normalize(key, body, req.mtime_clamp, wrap)?;
        self.index_blob(key, info, req)
    }

    /// Checksum deploy: index an already stored blob under `key`.
    pub fn put_existing(
        &self,
        key: &ComponentKey,
        hash: blake3::Hash,
        req: PutRequest,
    ) -> Result<Stored> {
        let hex = hash.to_hex().to_string();
        let size = self
            .blobs
            .size(&hash)?
            .ok_or_else(|| ComponentError::BlobNotFound(hex.clone()))?;
        match self.blob_top_dir(&hash) {
            Some(top) if top == key.tag => {}
            Some(top) => {
                return Err(ComponentError::BadRequest(format!(
                "blob {hex} holds the directory '{top}/', not '{}/': upload the tarball instead",
                key.tag
            )))
            }
            None => return Err(ComponentError::BlobNotFound(hex)),
        }
        self.blobs.touch(&hash);
        self.index_blob(key, BlobInfo { hash, size }, req)
    }

    /// Imports a tarball from a path on a shared mount (original API). The
    /// real path must be a regular file under one of `compat.import_roots`.
    /// Every refusal is the same 403, so the answer does not tell whether a
    /// path outside the roots exists. `wrap` as for [`Components::put_upload`].
    pub fn import_path(
        &self,
        key: &ComponentKey,
        path: &Path,
        req: PutRequest,
        wrap: bool,
    ) -> Result<Stored> {
        let refused = || {
            ComponentError::Forbidden(format!(
                "results_tarball {} is not a readable file below a configured import root (compat.import_roots)",
                path.display()
            ))
        };
        if !path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(refused());
        }
        // the root whose name (as configured, or as the kernel spells it)
        // starts the path; the rest is opened beneath it without a race
        let file = self
            .cfg
            .compat
            .import_roots
            .iter()
            .find_map(|configured| {
                let real = configured.canonicalize().ok()?;
                let rel = path
                    .strip_prefix(configured)
                    .or_else(|_| path.strip_prefix(&real))
                    .ok()?;
                beneath::open_regular(&real, rel, "the import root").ok()
            })
            .ok_or_else(refused)?;
        let info = self.normalize(key, file, req.mtime_clamp, wrap)?;
        self.index_blob(key, info, req)
    }

    /// Packs a directory (a build's output) as the canonical tarball of `key`.
    pub fn put_dir(&self, key: &ComponentKey, dir: &Path, req: PutRequest) -> Result<Stored> {
        self.ensure_room()?;
        let _slot = self.packs.take();
        let info = self.pack_into_blob(dir, &key.tag, req.mtime_clamp)?;
        self.index_blob(key, info, req)
    }

    /// Keeps a directory (an image build's Dockerfile and context) as a
    /// blob under `image/`, for a worker to fetch with its job token: its
    /// blake3. Nothing refers to it once the build ended; GC takes it.
    pub fn put_context(&self, dir: &Path) -> Result<String> {
        self.ensure_room()?;
        let _slot = self.packs.take();
        let info = self.pack_into_blob(dir, "image", Some(0))?;
        // the same context may be stored already and old: spared by GC
        // passes from now on, and caught if one removed it a moment before
        let hex = info.hex();
        self.index.note_blob_use(&hex)?;
        if !self.blobs.contains(&info.hash)? {
            return Err(ComponentError::BlobLost(hex));
        }
        Ok(hex)
    }

    /// A record (other than `key`'s own) built from exactly `inputs`, whose
    /// blob is still held.
    pub fn built_from(&self, inputs: &str, key: &ComponentKey) -> Result<Option<Record>> {
        for rec in self.index.by_inputs(inputs)? {
            if rec.key() == *key {
                continue;
            }
            if blake3::Hash::from_hex(&rec.blake3)
                .ok()
                .map(|h| self.blobs.contains(&h))
                .transpose()?
                == Some(true)
            {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    /// Stores `prev`'s output as `key` without building: the same files
    /// under `key`'s tag (the canonical top directory), recorded as reused.
    pub fn put_reused(
        &self,
        key: &ComponentKey,
        prev: &Record,
        mut req: PutRequest,
    ) -> Result<Stored> {
        let hash = blake3::Hash::from_hex(&prev.blake3)
            .map_err(|_| ComponentError::BlobLost(prev.blake3.clone()))?;
        let src = self
            .blobs
            .read(&hash)
            .map_err(|_| ComponentError::BlobLost(prev.blake3.clone()))?;
        let w = pack::reprefix(
            std::io::BufReader::with_capacity(1 << 20, src),
            &key.tag,
            self.cfg.zstd_level,
            self.scratch.writer()?,
        )?;
        let (tmp, info) = w.finish()?;
        self.blobs.put(tmp, &info)?;
        req.reused_from = Some(ResolvedDependency {
            component: prev.component.clone(),
            tag: prev.tag.clone(),
            arch: prev.arch.clone(),
            blake3: prev.blake3.clone(),
        });
        self.index_blob(key, info, req)
    }

    /// The blake3 a directory would have as `tag`'s canonical tarball,
    /// without storing it (rebuild checks).
    pub fn pack_hash(&self, dir: &Path, tag: &str, mtime_clamp: Option<u64>) -> Result<BlobInfo> {
        let opts = PackOptions {
            prefix: tag.to_owned(),
            mtime_clamp,
            level: self.cfg.zstd_level,
            max_bytes: self.cfg.max_unpacked_bytes,
            max_entries: self.cfg.max_unpacked_entries,
        };
        let mut counter = HashCount::default();
        let out = pack::pack_dir(dir, &opts, &mut counter);
        release_freed_memory();
        out?;
        Ok(BlobInfo {
            hash: counter.hasher.finalize(),
            size: counter.size,
        })
    }

    /// Replaces a record's metadata while it names the same blob.
    pub fn update_record(&self, rec: &Record) -> Result<bool> {
        let saved = self.index.update_record(rec)?;
        if saved {
            self.copies.write(rec);
        }
        Ok(saved)
    }

    /// Records whose build had exactly these inputs.
    pub fn by_inputs(&self, inputs: &str) -> Result<Vec<Record>> {
        Ok(self.index.by_inputs(inputs)?)
    }

    /// Unpacks safely into a temp dir and packs the canonical tar.zst blob.
    /// Refuses a tarball whose only top directory is named like another tag
    /// of `key`'s component, unless `wrap`.
    fn normalize(
        &self,
        key: &ComponentKey,
        body: File,
        mtime_clamp: Option<u64>,
        wrap: bool,
    ) -> Result<BlobInfo> {
        let tag = &key.tag;
        self.ensure_room()?;
        let _slot = self.packs.take();
        let work = self.scratch.temp_dir()?;
        let tar = unpack::open_tar(body)?;
        unpack::unpack_safe(tar, work.path(), self.cfg.unpack_limits())?;
        let root = unpack::content_root(work.path(), tag)?;
        if !wrap && root == work.path() {
            if let Some(top) = unpack::single_top_dir(work.path())? {
                if self.names_another_tag(key, &top)? {
                    return Err(ComponentError::OtherTag {
                        top,
                        tag: tag.clone(),
                    });
                }
            }
        }
        self.pack_into_blob(&root, tag, mtime_clamp)
    }

    fn pack_into_blob(&self, dir: &Path, tag: &str, mtime_clamp: Option<u64>) -> Result<BlobInfo> {
        let opts = PackOptions {
            prefix: tag.to_owned(),
            mtime_clamp,
            level: self.cfg.zstd_level,
            max_bytes: self.cfg.max_unpacked_bytes,
            max_entries: self.cfg.max_unpacked_entries,
        };
        let w = pack::pack_dir(dir, &opts, self.scratch.writer()?);
        release_freed_memory();
        let (tmp, info) = w?.finish()?;
        self.blobs.put(tmp, &info)?;
        Ok(info)
    }

    fn index_blob(&self, key: &ComponentKey, info: BlobInfo, req: PutRequest) -> Result<Stored> {
        let record = Record {
            component: key.component.clone(),
            tag: key.tag.clone(),
            arch: key.arch.clone(),
            blake3: info.hex(),
            size: info.size,
            created: Utc::now(),
            uploaded_by: req.who,
            source: req.source,
            dependencies: req.dependencies,
            requires: req.requires,
            inputs: req.inputs,
            reused_from: req.reused_from,
            reproducible: None,
        };
        // A GC pass (on any replica) spares a blob noted as just reused;
        // one that removed it a moment before is caught by looking again.
        self.index.note_blob_use(&record.blake3)?;
        if !self.blobs.contains(&info.hash)? {
            return Err(ComponentError::BlobLost(record.blake3));
        }
        let outcome = self.index.put(&record, req.overwrite)?;
        if let (Some(inputs), PutOutcome::Created | PutOutcome::Replaced(_)) =
            (&record.inputs, &outcome)
        {
            self.index.add_inputs(inputs, &record.key())?;
        }
        match outcome {
            PutOutcome::Created | PutOutcome::Replaced(_) => {
                self.copies.write(&record);
                Ok(Stored {
                    record,
                    created: true,
                })
            }
            PutOutcome::Unchanged(existing) => Ok(Stored {
                record: existing,
                created: false,
            }),
            PutOutcome::Conflict(existing) => Err(ComponentError::Conflict {
                key: key.clone(),
                existing: existing.blake3,
            }),
        }
    }

    pub fn delete(&self, key: &ComponentKey) -> Result<Record> {
        let rec = self
            .index
            .remove(key)?
            .ok_or_else(|| ComponentError::NotFound(key.clone()))?;
        self.copies.remove(key);
        Ok(rec)
    }

    /// The record copies kept beside the blobs (for images, `verify`,
    /// `reindex`).
    pub fn copies(&self) -> &RecordCopies {
        &self.copies
    }

    /// Those of `keys` that are not stored.
    pub fn missing(&self, keys: &[ComponentKey]) -> Result<Vec<ComponentKey>> {
        let mut out = Vec::new();
        for k in keys {
            if !self.index.contains(k)? {
                out.push(k.clone());
            }
        }
        Ok(out)
    }

    pub fn list(
        &self,
        prefix: &str,
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        Ok(self.index.list(prefix, after, limit)?)
    }

    /// Records whose component starts with `prefix` and whose
    /// `component/tag/arch` contains each of `words` (case aside).
    pub fn search(
        &self,
        prefix: &str,
        words: &[String],
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        Ok(self.index.search(prefix, words, after, limit)?)
    }

    /// How many records and components [`Components::search`] finds in all.
    pub fn count(&self, prefix: &str, words: &[String]) -> Result<crate::index::Counts> {
        Ok(self.index.count_matching(prefix, words)?)
    }

    pub fn versions(&self, component: &str) -> Result<Vec<Record>> {
        crate::model::validate_name("component", component)?;
        Ok(self.index.versions(component)?)
    }
}

/// A writer that only hashes and counts.
#[derive(Default)]
struct HashCount {
    hasher: blake3::Hasher,
    size: u64,
}

impl std::io::Write for HashCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Gives the tens of MiB of compression buffers a pack just freed back to
/// the OS (glibc keeps them in its arenas otherwise), so the resident size
/// stays at what the service is doing now.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
