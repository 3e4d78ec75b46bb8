//! A replica's short memory of the records it read: `/info` and downloads
//! of one hot record do not each cost a database round trip. Only records
//! that exist are kept, each for `[index] record_cache_ms` (a new record is
//! seen at once; one replaced or removed on another replica at most that
//! long after); this replica's own writes forget the key at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::index::RawRecord;
use crate::model::ComponentKey;

/// Records kept at most (all are forgotten when it is full).
const MAX_ENTRIES: usize = 65_536;

pub(super) struct RecordCache {
    ttl: Duration,
    map: Mutex<HashMap<ComponentKey, (Instant, RawRecord)>>,
}

impl RecordCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn get(&self, key: &ComponentKey) -> Option<RawRecord> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().ok()?;
        let (at, rec) = map.get(key)?;
        (at.elapsed() < self.ttl).then(|| rec.clone())
    }

    pub(super) fn put(&self, key: &ComponentKey, rec: &RawRecord) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key.clone(), (Instant::now(), rec.clone()));
        }
    }

    pub(super) fn forget(&self, key: &ComponentKey) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }

    pub(super) fn forget_all(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }
}
