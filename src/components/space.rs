//! Disk space and load: readiness, the free-space floor, store statistics,
//! and the bound on packs running at once.

use std::sync::{Arc, Condvar, Mutex};

use super::{ComponentError, Components, Result, Stats};

impl Components {
    /// Whether the store can take writes: the index answers, scratch space
    /// takes a file, and at least `min_free_bytes` are free.
    pub fn ready(&self) -> std::result::Result<(), String> {
        self.index.ping().map_err(|e| format!("index: {e}"))?;
        self.index
            .meta("readyz")
            .map_err(|e| format!("index: {e}"))?;
        self.blobs.ping().map_err(|e| format!("blob store: {e}"))?;
        drop(
            self.scratch
                .temp_file()
                .map_err(|e| format!("data directory: {e}"))?,
        );
        let floor = self.cfg.min_free_bytes;
        for (what, free) in [
            ("the data directory's disk", Some(self.scratch_free()?)),
            (
                "the blob store",
                self.blobs
                    .free_bytes()
                    .map_err(|e| format!("blob store: {e}"))?,
            ),
        ] {
            if let Some(free) = free.filter(|f| *f < floor) {
                return Err(format!(
                    "{what} has {free} bytes free, below min_free_bytes ({floor}): uploads and builds are refused"
                ));
            }
        }
        Ok(())
    }

    fn scratch_free(&self) -> std::result::Result<u64, String> {
        crate::store::free_bytes(self.scratch.dir()).map_err(|e| format!("data directory: {e}"))
    }

    /// Refuses a write of `incoming` bytes that would leave less than
    /// `min_free_bytes` free (as `Err(free)`).
    pub fn room_for(&self, incoming: u64) -> std::result::Result<(), (u64, u64)> {
        let floor = self.cfg.min_free_bytes;
        let free = [
            crate::store::free_bytes(self.scratch.dir()).ok(),
            self.blobs.free_bytes().ok().flatten(),
        ]
        .into_iter()
        .flatten()
        .min();
        match free {
            Some(free) if free < incoming.saturating_add(floor) => Err((free, floor)),
            _ => Ok(()),
        }
    }

    /// `NoRoom` while the disk is below `min_free_bytes`.
    pub fn ensure_room(&self) -> Result<()> {
        self.room_for(0)
            .map_err(|(free, floor)| ComponentError::NoRoom { free, floor })
    }

    /// How often the metrics may walk the store for [`Components::stats`]:
    /// listing a bucket is slower than a directory.
    pub fn stats_refresh(&self) -> std::time::Duration {
        std::time::Duration::from_secs(match self.cfg.storage.kind {
            crate::config::StorageKind::Local => 10,
            _ => 300,
        })
    }

    /// Blob and component counts (for the metrics; walks the store).
    pub fn stats(&self) -> Stats {
        let blobs = self.blobs.list().unwrap_or_default();
        Stats {
            blobs: blobs.len() as u64,
            bytes: blobs.iter().map(|b| b.size).sum(),
            components: self.index.component_count().unwrap_or(0),
        }
    }
}

/// A counting semaphore for blocking threads.
pub(super) struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    pub(super) fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    pub(super) fn take(self: &Arc<Self>) -> SlotGuard {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self.clone())
    }
}

pub(super) struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}
