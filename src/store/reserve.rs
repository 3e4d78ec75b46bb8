//! A reserve of disk space (`data/reserve`): held while the disk has room,
//! released at start-up when it does not. The index (sled) must write to
//! open; on a disk filled to the last byte it could not, and the service
//! would not even serve reads. With the reserve released it opens, serves
//! reads, and refuses writes (507) until space is freed.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct Reserve {
    path: PathBuf,
    bytes: u64,
}

impl Reserve {
    pub fn new(data_dir: &Path, bytes: u64) -> Self {
        Self {
            path: data_dir.join("reserve"),
            bytes,
        }
    }

    /// Removes the reserve when less than its size is free; true if it did.
    pub fn release_if_short(&self) -> bool {
        let free = super::free_bytes(self.path.parent().unwrap_or(Path::new("."))).unwrap_or(0);
        if free < self.bytes.max(1 << 20) && self.path.exists() {
            match fs::remove_file(&self.path) {
                Ok(()) => {
                    tracing::warn!(
                        free,
                        reserve = self.bytes,
                        "the data directory's disk is full: released the reserve so the index can open; \
                         writes are refused until space is freed"
                    );
                    return true;
                }
                Err(e) => tracing::error!("cannot release the disk reserve: {e}"),
            }
        }
        false
    }

    /// Creates the reserve (allocated blocks, not a sparse file) if it is
    /// missing and the disk has room for it twice over beyond `min_free`
    /// (so taking it back never fills the disk again at once).
    pub fn refill(&self, min_free: u64) {
        if self.bytes == 0 || self.path.exists() {
            return;
        }
        let free = super::free_bytes(self.path.parent().unwrap_or(Path::new("."))).unwrap_or(0);
        if free < self.bytes.saturating_mul(2).saturating_add(min_free) {
            tracing::warn!(free, "not enough free space to hold the disk reserve");
            return;
        }
        if let Err(e) = self.allocate() {
            let _ = fs::remove_file(&self.path);
            tracing::warn!("cannot create the disk reserve: {e}");
        }
    }

    fn allocate(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let tmp = self.path.with_extension("tmp");
        let mut f = fs::File::create(&tmp)?;
        let len = i64::try_from(self.bytes).unwrap_or(i64::MAX);
        // SAFETY: a valid open file descriptor; allocates blocks, no memory.
        if unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len) } == 0 {
            f.sync_all()?;
            return fs::rename(&tmp, &self.path);
        }
        // file systems without fallocate: write the blocks
        let zeros = vec![0u8; 1 << 20];
        let mut left = self.bytes;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        fs::rename(&tmp, &self.path)
    }
}
