//! The blob store on local disk: `blobs/<first 2 hex>/<64 hex>`, each
//! written as a temp file in `tmp/` (same file system), fsynced, renamed
//! into place, and the directory fsynced. Small named objects live under
//! `objects/<name>`, written the same way.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tempfile::NamedTempFile;

use super::{BlobInfo, BlobMeta, BlobStore};

#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
    quarantine: PathBuf,
    objects: PathBuf,
}

impl LocalBlobs {
    /// Opens (creating) `<data>/blobs`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("blobs");
        fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            quarantine: data_dir.join("quarantine"),
            objects: data_dir.join("objects"),
        })
    }

    fn path(&self, hash: &blake3::Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(hex.as_str())
    }

    fn object_path(&self, name: &str) -> io::Result<PathBuf> {
        Ok(self.objects.join(super::object_name(name)?))
    }
}

impl BlobStore for LocalBlobs {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    fn put(&self, tmp: NamedTempFile, info: &BlobInfo) -> io::Result<()> {
        let dest = self.path(&info.hash);
        if dest.is_file() {
            // Reused: refresh its mtime so a GC pass sees it as young.
            self.touch(&info.hash);
            return Ok(());
        }
        tmp.as_file().sync_all()?;
        let dir = dest.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&dir)?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        File::open(&dir)?.sync_all()?;
        Ok(())
    }

    fn size(&self, hash: &blake3::Hash) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(hash)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read_range(
        &self,
        hash: &blake3::Hash,
        start: u64,
        len: Option<u64>,
    ) -> io::Result<Box<dyn Read + Send>> {
        let mut f = File::open(self.path(hash))?;
        if start >= f.metadata()?.len() {
            // past the end: nothing (a seek there may not even be possible)
            return Ok(Box::new(io::empty()));
        }
        if start > 0 {
            f.seek(SeekFrom::Start(start))?;
        }
        Ok(match len {
            Some(n) => Box::new(f.take(n)),
            None => Box::new(f),
        })
    }

    fn delete(&self, hash: &blake3::Hash) -> io::Result<()> {
        match fs::remove_file(self.path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn list(&self) -> io::Result<Vec<BlobMeta>> {
        let mut out = Vec::new();
        for d in fs::read_dir(&self.root)? {
            let d = d?;
            if !d.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(d.path())? {
                let f = f?;
                let Some(hash) = f
                    .file_name()
                    .to_str()
                    .and_then(|n| blake3::Hash::from_hex(n).ok())
                else {
                    continue;
                };
                let Ok(m) = f.metadata() else { continue };
                out.push(BlobMeta {
                    hash,
                    size: m.len(),
                    modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(out)
    }

    fn touch(&self, hash: &blake3::Hash) {
        if let Ok(f) = File::options().write(true).open(self.path(hash)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    fn local_path(&self, hash: &blake3::Hash) -> Option<PathBuf> {
        Some(self.path(hash))
    }

    fn quarantine(&self, hash: &blake3::Hash) -> io::Result<()> {
        fs::create_dir_all(&self.quarantine)?;
        fs::rename(
            self.path(hash),
            self.quarantine.join(hash.to_hex().as_str()),
        )
    }

    fn free_bytes(&self) -> io::Result<Option<u64>> {
        super::free_bytes(&self.root).map(Some)
    }

    fn put_object(&self, name: &str, body: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let dest = self.object_path(name)?;
        let dir = dest.parent().unwrap_or(&self.objects).to_owned();
        fs::create_dir_all(&dir)?;
        let mut tmp = NamedTempFile::new_in(&dir)?;
        tmp.write_all(body)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        File::open(&dir)?.sync_all()
    }

    fn get_object(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.object_path(name)?) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list_objects(&self, prefix: &str) -> io::Result<Vec<String>> {
        let dir = match prefix.strip_suffix('/') {
            Some(p) => self.object_path(p)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an object prefix ends with /",
                ))
            }
        };
        let mut out = Vec::new();
        let mut todo = vec![(dir, prefix.to_owned())];
        while let Some((d, p)) = todo.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                let e = e?;
                let Some(n) = e.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let ft = e.file_type()?;
                if ft.is_dir() {
                    todo.push((e.path(), format!("{p}{n}/")));
                } else if ft.is_file() && super::object_name(&n).is_ok() {
                    out.push(format!("{p}{n}"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete_object(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.object_path(name)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Scratch;
    use std::io::Write;

    #[test]
    fn write_commit_dedup() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::open(dir.path()).unwrap();
        let store = LocalBlobs::open(dir.path()).unwrap();
        let mut w = scratch.writer().unwrap();
        w.write_all(b"hello").unwrap();
        let (tmp, info) = w.finish().unwrap();
        store.put(tmp, &info).unwrap();
        assert_eq!(info.hash, blake3::hash(b"hello"));
        let mut got = Vec::new();
        store
            .read_range(&info.hash, 0, None)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, b"hello");
        let mut w = scratch.writer().unwrap();
        w.write_all(b"hello").unwrap();
        let (tmp, info2) = w.finish().unwrap();
        store.put(tmp, &info2).unwrap();
        assert_eq!(info, info2);
        let listed: Vec<_> = store.list().unwrap().into_iter().map(|m| m.hash).collect();
        assert_eq!(listed, vec![info.hash]);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let mut part = String::new();
        store
            .read_range(&info.hash, 1, Some(3))
            .unwrap()
            .read_to_string(&mut part)
            .unwrap();
        assert_eq!(part, "ell");
    }
}
