//! The component store's operations, independent of HTTP: ingest an upload
//! (normalise to the canonical tar.zst, store the blob, index it), look up,
//! list, delete, and derive the gzip form for old clients.
//!
//! Main type: [`Components`]. Every method that writes is blocking and
//! belongs on a blocking thread.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;

use crate::config::Config;
use crate::index::{Index, IndexError, PutOutcome};
use crate::model::{ComponentKey, Identity, NameError, Record, ResolvedDependency, Source};
use crate::store::pack::{self, PackOptions};
use crate::store::unpack;
use crate::store::{BlobInfo, BlobStore, StoreError};

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
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
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
}

/// The outcome of a store: the record now indexed, and whether it is new.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: Record,
    pub created: bool,
}

#[derive(Clone)]
pub struct Components {
    blobs: BlobStore,
    index: Index,
    cfg: Arc<Config>,
    /// Derivations in progress, by source blob: one conversion per source at
    /// a time; later callers wait for it and reuse its result.
    deriving: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<std::sync::Mutex<()>>>>>,
}

impl Components {
    pub fn new(blobs: BlobStore, index: Index, cfg: Arc<Config>) -> Self {
        Self {
            blobs,
            index,
            cfg,
            deriving: Default::default(),
        }
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn index(&self) -> &Index {
        &self.index
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

    /// The record and blob path, or `NotFound`.
    pub fn find(&self, key: &ComponentKey) -> Result<(Record, PathBuf)> {
        let rec = self
            .index
            .get(key)?
            .ok_or_else(|| ComponentError::NotFound(key.clone()))?;
        let path = self
            .blobs
            .path_hex(&rec.blake3)
            .ok_or_else(|| ComponentError::BadRequest("corrupt blob reference".into()))?;
        Ok((rec, path))
    }

    /// Stores an uploaded body (tar.zst, tar.gz or tar) for `key`.
    /// `raw` is the blake3 of the body as received; `expected` the client's claim.
    pub fn put_upload(
        &self,
        key: &ComponentKey,
        body: File,
        raw: blake3::Hash,
        expected: Option<blake3::Hash>,
        req: PutRequest,
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
        if self.blobs.contains(&raw) && self.blob_top_dir(&raw).as_deref() == Some(&key.tag) {
            self.blobs.touch(&raw);
            let size = body.metadata()?.len();
            return self.index_blob(key, BlobInfo { hash: raw, size }, req);
        }
        let info = self.normalize(&key.tag, body, req.mtime_clamp)?;
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
        let path = self.blobs.path(&hash);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(_) => return Err(ComponentError::BlobNotFound(hex)),
        };
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
    /// path outside the roots exists.
    pub fn import_path(&self, key: &ComponentKey, path: &Path, req: PutRequest) -> Result<Stored> {
        let refused = || {
            ComponentError::Forbidden(format!(
                "results_tarball {} is not a readable file below a configured import root (compat.import_roots)",
                path.display()
            ))
        };
        let roots: Vec<PathBuf> = self
            .cfg
            .compat
            .import_roots
            .iter()
            .filter_map(|r| r.canonicalize().ok())
            .collect();
        let real = path.canonicalize().map_err(|_| refused())?;
        if !roots.iter().any(|root| real.starts_with(root)) {
            return Err(refused());
        }
        // a fifo would block the open: only regular files, opened without
        // following a link swapped in since the check
        if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
            return Err(refused());
        }
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&real)
            .map_err(|_| refused())?;
        let info = self.normalize(&key.tag, file, req.mtime_clamp)?;
        self.index_blob(key, info, req)
    }

    /// Packs a directory (a build's output) as the canonical tarball of `key`.
    pub fn put_dir(&self, key: &ComponentKey, dir: &Path, req: PutRequest) -> Result<Stored> {
        let info = self.pack_into_blob(dir, &key.tag, req.mtime_clamp)?;
        self.index_blob(key, info, req)
    }

    /// Unpacks safely into a temp dir and packs the canonical tar.zst blob.
    fn normalize(&self, tag: &str, body: File, mtime_clamp: Option<u64>) -> Result<BlobInfo> {
        let work = self.blobs.temp_dir()?;
        let tar = unpack::open_tar(body)?;
        unpack::unpack_safe(tar, work.path(), self.cfg.max_unpacked_bytes)?;
        let root = unpack::content_root(work.path(), tag)?;
        self.pack_into_blob(&root, tag, mtime_clamp)
    }

    fn pack_into_blob(&self, dir: &Path, tag: &str, mtime_clamp: Option<u64>) -> Result<BlobInfo> {
        let opts = PackOptions {
            prefix: tag.to_owned(),
            mtime_clamp,
            level: self.cfg.zstd_level,
            max_bytes: self.cfg.max_unpacked_bytes,
        };
        let w = pack::pack_dir(dir, &opts, self.blobs.writer()?);
        release_freed_memory();
        let (info, _) = w?.finish()?;
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
        };
        match self.index.put(&record, req.overwrite)? {
            PutOutcome::Created | PutOutcome::Replaced(_) => Ok(Stored {
                record,
                created: true,
            }),
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

    /// The name of the first entry (the top-level directory) of a stored
    /// tar.zst blob, or `None` if it is not one.
    fn blob_top_dir(&self, hash: &blake3::Hash) -> Option<String> {
        let mut f = File::open(self.blobs.path(hash)).ok()?;
        if unpack::detect(&mut f).ok()? != unpack::Format::TarZst {
            return None;
        }
        let mut ar = tar::Archive::new(zstd::stream::read::Decoder::new(f).ok()?);
        let first = ar.entries().ok()?.next()?.ok()?;
        let p = first.path().ok()?.into_owned();
        let top = p.components().next()?;
        Some(top.as_os_str().to_string_lossy().into_owned())
    }

    pub fn delete(&self, key: &ComponentKey) -> Result<Record> {
        self.index
            .remove(key)?
            .ok_or_else(|| ComponentError::NotFound(key.clone()))
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

    pub fn versions(&self, component: &str) -> Result<Vec<Record>> {
        crate::model::validate_name("component", component)?;
        Ok(self.index.versions(component)?)
    }

    /// The path of the gzip form of blob `zst_hex`, made (once) if needed.
    /// Concurrent first requests for one blob run one conversion (the others
    /// wait for it), so readers cannot multiply the work or the temp space.
    pub fn gzip_blob(&self, zst_hex: &str) -> Result<(PathBuf, String)> {
        if let Some(found) = self.derived_gzip(zst_hex)? {
            return Ok(found);
        }
        let lock = {
            let mut m = self.deriving.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(zst_hex.to_owned()).or_default().clone()
        };
        let result = {
            let _one = lock.lock().unwrap_or_else(|e| e.into_inner());
            match self.derived_gzip(zst_hex)? {
                Some(found) => Ok(found),
                None => self.make_gzip(zst_hex),
            }
        };
        let mut m = self.deriving.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&lock) <= 2 {
            m.remove(zst_hex);
        }
        result
    }

    fn derived_gzip(&self, zst_hex: &str) -> Result<Option<(PathBuf, String)>> {
        if let Some(gz) = self.index.derived(zst_hex, "tar.gz")? {
            if let Some(p) = self.blobs.path_hex(&gz).filter(|p| p.is_file()) {
                return Ok(Some((p, gz)));
            }
        }
        Ok(None)
    }

    fn make_gzip(&self, zst_hex: &str) -> Result<(PathBuf, String)> {
        crate::metrics::METRICS.derivations.inc();
        let src = self
            .blobs
            .path_hex(zst_hex)
            .ok_or_else(|| ComponentError::BlobNotFound(zst_hex.to_owned()))?;
        let f = File::open(&src).map_err(|_| ComponentError::BlobNotFound(zst_hex.to_owned()))?;
        let w = pack::zstd_to_gzip(
            std::io::BufReader::with_capacity(1 << 20, f),
            self.blobs.writer()?,
        )?;
        let (info, path) = w.finish()?;
        let hex = info.hex();
        self.index.set_derived(zst_hex, "tar.gz", &hex)?;
        Ok((path, hex))
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
