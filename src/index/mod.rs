//! Metadata in sled: which blob a (component, tag, arch) names, derived
//! blobs (the gzip form of a zstd blob), and small service state.
//!
//! Trees: `components` (key `component\0tag\0arch` -> JSON [`Record`]),
//! `derived` (`<blake3 hex>\0<kind>` -> blake3 hex), `meta` (string -> bytes).
//!
//! Architecture invariant: sled is used only here. Reads are cheap
//! in-memory lookups and may run on async threads; writes are followed by a
//! flush (fsync) and belong on blocking threads.

use std::ops::Bound;
use std::path::Path;

use crate::model::{ComponentKey, ImageKey, ImageRecord, Record};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt index record for {key}: {err}")]
    Corrupt { key: String, err: serde_json::Error },
}

pub type Result<T> = std::result::Result<T, IndexError>;

impl IndexError {
    /// The database could not write because the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, IndexError::Sled(sled::Error::Io(e)) if crate::store::is_disk_full(e))
    }
}

#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    components: sled::Tree,
    derived: sled::Tree,
    downloads: sled::Tree,
    images: sled::Tree,
    meta: sled::Tree,
}

/// A record as stored, for callers that cache what they derive from it:
/// equal bytes mean an equal record.
#[derive(Clone)]
pub struct RawRecord(sled::IVec);

impl RawRecord {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn decode(&self) -> Result<Record> {
        decode(b"", &self.0)
    }

    pub fn decode_image(&self) -> Result<ImageRecord> {
        serde_json::from_slice(&self.0).map_err(|err| IndexError::Corrupt {
            key: "image".into(),
            err,
        })
    }
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

fn decode(key: &[u8], v: &[u8]) -> Result<Record> {
    serde_json::from_slice(v).map_err(|err| IndexError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        err,
    })
}

impl Index {
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(16 << 20)
            .flush_every_ms(Some(500))
            .open()?;
        Ok(Self {
            components: db.open_tree("components")?,
            derived: db.open_tree("derived")?,
            downloads: db.open_tree("downloads")?,
            images: db.open_tree("images")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    pub fn get(&self, key: &ComponentKey) -> Result<Option<Record>> {
        let k = key_bytes(key);
        self.components.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// The stored bytes of a record, undecoded (cheap: no copy, no parse).
    pub fn raw(&self, key: &ComponentKey) -> Result<Option<RawRecord>> {
        Ok(self.components.get(key_bytes(key))?.map(RawRecord))
    }

    pub fn contains(&self, key: &ComponentKey) -> Result<bool> {
        Ok(self.components.contains_key(key_bytes(key))?)
    }

    /// Stores `rec` unless an entry with another blob exists (then
    /// `Conflict`, or `Replaced` when `overwrite`). Atomic per key.
    pub fn put(&self, rec: &Record, overwrite: bool) -> Result<PutOutcome> {
        let k = key_bytes(&rec.key());
        let new = serde_json::to_vec(rec).map_err(|err| IndexError::Corrupt {
            key: rec.key().display_path(),
            err,
        })?;
        loop {
            let old = self.components.get(&k)?;
            let outcome = match &old {
                None => PutOutcome::Created,
                Some(v) => {
                    let existing = decode(&k, v)?;
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
                self.db.flush()?;
                return Ok(outcome);
            }
        }
    }

    pub fn remove(&self, key: &ComponentKey) -> Result<Option<Record>> {
        let k = key_bytes(key);
        let old = self.components.remove(&k)?;
        self.db.flush()?;
        old.map(|v| decode(&k, &v)).transpose()
    }

    /// Records whose component name starts with `prefix`, in key order,
    /// starting after the `after` key; at most `limit`.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        let start = match after {
            Some(a) => Bound::Excluded(key_bytes(a)),
            None => Bound::Included(prefix.as_bytes().to_vec()),
        };
        let mut out = Vec::new();
        for kv in self.components.range((start, Bound::Unbounded)) {
            let (k, v) = kv?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push(decode(&k, &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every record of one component (all tags and arches).
    pub fn versions(&self, component: &str) -> Result<Vec<Record>> {
        let mut p = component.as_bytes().to_vec();
        p.push(0);
        self.components
            .scan_prefix(&p)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// Every record (for GC and verification).
    pub fn all(&self) -> impl Iterator<Item = Result<Record>> + '_ {
        self.components.iter().map(|kv| {
            let (k, v) = kv?;
            decode(&k, &v)
        })
    }

    pub fn component_count(&self) -> usize {
        self.components.len()
    }

    /// The blob derived from `source` as `kind` (e.g. "tar.gz"), if made.
    pub fn derived(&self, source: &str, kind: &str) -> Result<Option<String>> {
        let k = format!("{source}\0{kind}");
        Ok(self
            .derived
            .get(k.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_derived(&self, source: &str, kind: &str, blob: &str) -> Result<()> {
        let k = format!("{source}\0{kind}");
        self.derived.insert(k.as_bytes(), blob.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// The stored bytes of an image record, undecoded.
    pub fn image_raw(&self, key: &ImageKey) -> Result<Option<RawRecord>> {
        Ok(self.images.get(image_key_bytes(key))?.map(RawRecord))
    }

    pub fn image(&self, key: &ImageKey) -> Result<Option<ImageRecord>> {
        let k = image_key_bytes(key);
        match self.images.get(&k)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|err| IndexError::Corrupt {
                    key: key.to_string(),
                    err,
                }),
        }
    }

    /// Stores (replaces) the record of an image.
    pub fn put_image(&self, rec: &ImageRecord) -> Result<()> {
        let key = ImageKey {
            component: rec.component.clone(),
            branch: rec.branch.clone(),
            arch: rec.arch.clone(),
        };
        let v = serde_json::to_vec(rec).map_err(|err| IndexError::Corrupt {
            key: key.to_string(),
            err,
        })?;
        self.images.insert(image_key_bytes(&key), v)?;
        self.db.flush()?;
        Ok(())
    }

    /// Image records whose component starts with `prefix`, at most `limit`.
    pub fn images(&self, prefix: &str, limit: usize) -> Result<Vec<ImageRecord>> {
        self.images
            .scan_prefix(prefix.as_bytes())
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                serde_json::from_slice(&v).map_err(|err| IndexError::Corrupt {
                    key: String::from_utf8_lossy(&k).replace('\0', "/"),
                    err,
                })
            })
            .collect()
    }

    /// Forgets what was derived from `source` (it is gone).
    pub fn remove_derived(&self, source: &str) -> Result<()> {
        let mut p = source.as_bytes().to_vec();
        p.push(0);
        for k in self.derived.scan_prefix(&p).keys() {
            self.derived.remove(k?)?;
        }
        Ok(())
    }

    /// Forgets derivations whose result is `blob` (it was found corrupt).
    pub fn drop_derived_target(&self, blob: &str) -> Result<()> {
        for kv in self.derived.iter() {
            let (k, v) = kv?;
            if v.as_ref() == blob.as_bytes() {
                self.derived.remove(k)?;
            }
        }
        Ok(())
    }

    /// Notes a download of `key` now (at most one write an hour per key).
    pub fn note_download(&self, key: &ComponentKey) -> Result<()> {
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

    /// When `key` was last downloaded (unix seconds), if ever noted.
    pub fn last_download(&self, key: &ComponentKey) -> Result<Option<i64>> {
        Ok(self
            .downloads
            .get(key_bytes(key))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.meta.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    /// The underlying database, for other modules' own trees (jobs).
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn rec(c: &str, t: &str, a: &str, h: &str) -> Record {
        Record {
            component: c.into(),
            tag: t.into(),
            arch: a.into(),
            blake3: h.into(),
            size: 1,
            created: Utc::now(),
            uploaded_by: Default::default(),
            source: None,
            dependencies: vec![],
        }
    }

    #[test]
    fn put_conflict_list() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(dir.path()).unwrap();
        assert_eq!(
            ix.put(&rec("a", "1", "x", "h1"), false).unwrap(),
            PutOutcome::Created
        );
        assert!(matches!(
            ix.put(&rec("a", "1", "x", "h1"), false).unwrap(),
            PutOutcome::Unchanged(_)
        ));
        assert!(matches!(
            ix.put(&rec("a", "1", "x", "h2"), false).unwrap(),
            PutOutcome::Conflict(_)
        ));
        assert!(matches!(
            ix.put(&rec("a", "1", "x", "h2"), true).unwrap(),
            PutOutcome::Replaced(_)
        ));
        ix.put(&rec("ab", "1", "x", "h3"), false).unwrap();
        ix.put(&rec("b", "1", "x", "h4"), false).unwrap();
        assert_eq!(ix.list("a", None, 10).unwrap().len(), 2);
        let first = ix.list("", None, 1).unwrap();
        let next = ix.list("", Some(&first[0].key()), 10).unwrap();
        assert_eq!(next.len(), 2);
        assert_eq!(ix.versions("a").unwrap().len(), 1);
    }
}
