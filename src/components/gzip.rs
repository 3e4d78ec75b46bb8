//! The gzip form of a stored zstd blob (for old clients), made once:
//! concurrent first requests for one blob run one conversion.

use std::sync::Arc;

use super::{BlobHandle, ComponentError, Components, Result};
use crate::store::pack;

impl Components {
    /// The gzip form of blob `zst_hex`, made (once) if needed. Concurrent
    /// first requests for one blob run one conversion (the others wait for
    /// it), so readers cannot multiply the work or the temp space.
    pub fn gzip_blob(&self, zst_hex: &str) -> Result<BlobHandle> {
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

    fn derived_gzip(&self, zst_hex: &str) -> Result<Option<BlobHandle>> {
        if let Some(gz) = self.index.derived(zst_hex, "tar.gz")? {
            if let Ok(h) = self.blob(&gz) {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    fn make_gzip(&self, zst_hex: &str) -> Result<BlobHandle> {
        crate::metrics::METRICS.derivations.inc();
        let hash = blake3::Hash::from_hex(zst_hex)
            .map_err(|_| ComponentError::BlobNotFound(zst_hex.to_owned()))?;
        let src = self
            .blobs
            .read(&hash)
            .map_err(|_| ComponentError::BlobLost(zst_hex.to_owned()))?;
        let w = pack::zstd_to_gzip(
            std::io::BufReader::with_capacity(1 << 20, src),
            self.scratch.writer()?,
        )?;
        let (tmp, info) = w.finish()?;
        self.blobs.put(tmp, &info)?;
        let hex = info.hex();
        self.index.set_derived(zst_hex, "tar.gz", &hex)?;
        self.blob(&hex)
    }
}
