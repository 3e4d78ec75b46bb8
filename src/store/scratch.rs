//! Scratch space on local disk (`data/tmp/`): upload bodies, unpacked
//! trees, build work directories, and new blobs while they are written and
//! hashed. Wiped at start-up: nothing here was ever visible.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::BlobInfo;

#[derive(Debug, Clone)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Opens (creating) `<data>/tmp`, removing leftovers from a crash.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("tmp");
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh temp file, removed on drop.
    pub fn temp_file(&self) -> io::Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix("up-")
            .tempfile_in(&self.dir)
    }

    /// A fresh temp directory, removed on drop.
    pub fn temp_dir(&self) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("work-")
            .tempdir_in(&self.dir)
    }

    /// A writer that hashes what it writes into a temp file.
    pub fn writer(&self) -> io::Result<BlobWriter> {
        Ok(BlobWriter {
            file: io::BufWriter::with_capacity(1 << 20, self.temp_file()?),
            hasher: blake3::Hasher::new(),
            size: 0,
        })
    }
}

/// Writes into a temp file while hashing; see [`Scratch::writer`].
pub struct BlobWriter {
    file: io::BufWriter<NamedTempFile>,
    hasher: blake3::Hasher,
    size: u64,
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
    /// The written temp file (flushed) and what it holds.
    pub fn finish(self) -> io::Result<(NamedTempFile, BlobInfo)> {
        let tmp = self.file.into_inner().map_err(|e| e.into_error())?;
        let info = BlobInfo {
            hash: self.hasher.finalize(),
            size: self.size,
        };
        Ok((tmp, info))
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
