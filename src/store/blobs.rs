//! The content-addressed blob directory: `blobs/<first 2 hex>/<64 hex>`,
//! written through `tmp/` (temp file, fsync, rename).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Hash and size of a stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    pub hash: blake3::Hash,
    pub size: u64,
}

impl BlobInfo {
    pub fn hex(&self) -> String {
        self.hash.to_hex().to_string()
    }
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl BlobStore {
    /// Opens (creating) `<data>/blobs` and `<data>/tmp`, removing leftovers
    /// in `tmp/` from a crash: nothing there was ever visible.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("blobs");
        let tmp = data_dir.join("tmp");
        fs::create_dir_all(&root)?;
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(Self { root, tmp })
    }

    /// The `blobs/` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, hash: &blake3::Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(hex.as_str())
    }

    /// The path of a blob given as hex, if the hex is a valid hash.
    pub fn path_hex(&self, hex: &str) -> Option<PathBuf> {
        blake3::Hash::from_hex(hex).ok().map(|h| self.path(&h))
    }

    pub fn contains(&self, hash: &blake3::Hash) -> bool {
        self.path(hash).is_file()
    }

    /// A fresh temp file in `tmp/` (same file system as `blobs/`).
    pub fn temp_file(&self) -> io::Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix("up-")
            .tempfile_in(&self.tmp)
    }

    /// A fresh temp directory in `tmp/`, removed on drop.
    pub fn temp_dir(&self) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("work-")
            .tempdir_in(&self.tmp)
    }

    /// A writer that hashes what it writes into a temp file; `finish` makes it a blob.
    pub fn writer(&self) -> io::Result<BlobWriter> {
        Ok(BlobWriter {
            file: io::BufWriter::with_capacity(1 << 20, self.temp_file()?),
            hasher: blake3::Hasher::new(),
            size: 0,
            store: self.clone(),
        })
    }

    /// Moves a fully written temp file into place as the blob `hash`.
    /// Identical content already stored is kept and the temp file dropped.
    pub fn commit(&self, tmp: NamedTempFile, hash: &blake3::Hash) -> io::Result<PathBuf> {
        let dest = self.path(hash);
        if dest.is_file() {
            // Reused: refresh its mtime so a GC pass sees it as young.
            self.touch(hash);
            return Ok(dest);
        }
        tmp.as_file().sync_all()?;
        let dir = dest.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&dir)?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        File::open(&dir)?.sync_all()?;
        Ok(dest)
    }

    /// Marks a blob as just used (GC grace period starts again).
    pub fn touch(&self, hash: &blake3::Hash) {
        if let Ok(f) = File::options().write(true).open(self.path(hash)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Hashes an existing file (streaming).
    pub fn hash_file(path: &Path) -> io::Result<BlobInfo> {
        let mut hasher = blake3::Hasher::new();
        let mut f = File::open(path)?;
        hasher.update_reader(&mut f)?;
        let size = f.metadata()?.len();
        Ok(BlobInfo {
            hash: hasher.finalize(),
            size,
        })
    }

    /// Every blob hash on disk (for verification and GC).
    pub fn list(&self) -> io::Result<Vec<blake3::Hash>> {
        let mut out = Vec::new();
        for d in fs::read_dir(&self.root)? {
            let d = d?;
            if !d.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(d.path())? {
                let f = f?;
                if let Some(h) = f
                    .file_name()
                    .to_str()
                    .and_then(|n| blake3::Hash::from_hex(n).ok())
                {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}

/// Writes into a temp file while hashing; see [`BlobStore::writer`].
pub struct BlobWriter {
    file: io::BufWriter<NamedTempFile>,
    hasher: blake3::Hasher,
    size: u64,
    store: BlobStore,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Fsyncs, renames into place and returns what was stored.
    pub fn finish(self) -> io::Result<(BlobInfo, PathBuf)> {
        let tmp = self.file.into_inner().map_err(|e| e.into_error())?;
        let info = BlobInfo {
            hash: self.hasher.finalize(),
            size: self.size,
        };
        let path = self.store.commit(tmp, &info.hash)?;
        Ok((info, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_commit_dedup() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"hello").unwrap();
        let (info, path) = w.finish().unwrap();
        assert_eq!(info.hash, blake3::hash(b"hello"));
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        let mut w = store.writer().unwrap();
        w.write_all(b"hello").unwrap();
        let (info2, path2) = w.finish().unwrap();
        assert_eq!((info, path), (info2, path2));
        assert_eq!(store.list().unwrap(), vec![info.hash]);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
