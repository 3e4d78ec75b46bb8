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
    /// Opens (creating) `<data>/tmp`, removing leftovers from a crash. A
    /// leftover that cannot be removed (a build made it unreadable) is moved
    /// aside and logged: it never stops the service from starting.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("tmp");
        if dir.exists() {
            if let Err(e) = remove_tree(&dir) {
                let aside = data_dir.join(format!(
                    "tmp.stale-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                ));
                tracing::error!(
                    "cannot clear {}: {e}; moved aside to {} (remove it by hand)",
                    dir.display(),
                    aside.display()
                );
                fs::rename(&dir, &aside)?;
            }
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

    /// A fresh directory for work a build (a recipe) writes into: removed
    /// on drop even when the build took the permissions away.
    pub fn work_dir(&self) -> io::Result<WorkDir> {
        Ok(WorkDir(Some(self.temp_dir()?)))
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

/// A work directory that a build wrote into; see [`Scratch::work_dir`].
pub struct WorkDir(Option<tempfile::TempDir>);

impl WorkDir {
    pub fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new(""), |t| t.path())
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let path = t.keep();
            if let Err(e) = remove_tree(&path) {
                tracing::warn!("cannot remove the work directory {}: {e}", path.display());
            }
        }
    }
}

/// Removes a tree, giving its directories back the owner's permissions
/// first when a plain removal fails (a build's `chmod 000`).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    restore_permissions(path);
    fs::remove_dir_all(path)
}

fn restore_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = fs::symlink_metadata(path) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(rd) = fs::read_dir(path) {
        for e in rd.flatten() {
            restore_permissions(&e.path());
        }
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
