//! API keys in the sled tree `api_keys`: `n\0<name>` -> JSON [`ApiKey`],
//! `h\0<blake3>` -> name (the lookup by hash). A key is created in one
//! transaction over both entries; revocation and use notes are
//! compare-and-swap on the key's document.

use ::sled::transaction::{ConflictableTransactionError, TransactionError};
use chrono::{DateTime, Utc};

use super::SledIndex;
use crate::index::{decode, encode, IndexError, Result, KEY_USE_EVERY_SECS};
use crate::model::{ApiKey, Revocation};

fn name_key(name: &str) -> Vec<u8> {
    let mut k = b"n\0".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn hash_key(blake3: &str) -> Vec<u8> {
    let mut k = b"h\0".to_vec();
    k.extend_from_slice(blake3.as_bytes());
    k
}

/// A time cut to whole seconds (as notes of use are kept).
fn whole_seconds(at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.timestamp(), 0)
}

impl SledIndex {
    pub(super) fn key_create(&self, key: &ApiKey) -> Result<bool> {
        let doc = encode(&key.name, key)?;
        let (nk, hk) = (name_key(&key.name), hash_key(&key.blake3));
        let made = self.api_keys.transaction(|t| {
            if t.get(&nk)?.is_some() || t.get(&hk)?.is_some() {
                return Ok(false);
            }
            t.insert(nk.as_slice(), doc.as_slice())?;
            t.insert(hk.as_slice(), key.name.as_bytes())?;
            Ok::<_, ConflictableTransactionError<()>>(true)
        });
        let made = match made {
            Ok(m) => m,
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            Err(TransactionError::Abort(())) => {
                return Err(IndexError::Db(format!(
                    "storing the key {}: the transaction was aborted",
                    key.name
                )))
            }
        };
        if made {
            self.db.flush()?;
        }
        Ok(made)
    }

    pub(super) fn key_named(&self, name: &str) -> Result<Option<ApiKey>> {
        self.api_keys
            .get(name_key(name))?
            .map(|v| decode(name, &v))
            .transpose()
    }

    pub(super) fn key_by_hash(&self, blake3: &str) -> Result<Option<ApiKey>> {
        let Some(name) = self.api_keys.get(hash_key(blake3))? else {
            return Ok(None);
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        Ok(self.key_named(&name)?.filter(|k| k.blake3 == blake3))
    }

    pub(super) fn keys_all(&self) -> Result<Vec<ApiKey>> {
        self.api_keys
            .scan_prefix(b"n\0")
            .map(|kv| {
                let (k, v) = kv?;
                decode(&String::from_utf8_lossy(&k[2..]), &v)
            })
            .collect()
    }

    /// Changes the document of `name` with `f` (compare-and-swap, retried);
    /// `f` answers false to leave it as it is. The document as stored now.
    fn key_update(
        &self,
        name: &str,
        durable: bool,
        f: impl Fn(&mut ApiKey) -> bool,
    ) -> Result<Option<ApiKey>> {
        let nk = name_key(name);
        loop {
            let Some(old) = self.api_keys.get(&nk)? else {
                return Ok(None);
            };
            let mut key: ApiKey = decode(name, &old)?;
            if !f(&mut key) {
                return Ok(Some(key));
            }
            let new = encode(name, &key)?;
            if self
                .api_keys
                .compare_and_swap(&nk, Some(old), Some(new))?
                .is_ok()
            {
                if durable {
                    self.db.flush()?;
                }
                return Ok(Some(key));
            }
        }
    }

    pub(super) fn key_revoke(&self, name: &str, revoked: &Revocation) -> Result<Option<ApiKey>> {
        self.key_update(name, true, |k| {
            if k.revoked.is_some() {
                return false;
            }
            k.revoked = Some(revoked.clone());
            true
        })
    }

    /// Not flushed: a note lost in a crash is only a coarser `last_used`.
    pub(super) fn key_used(&self, name: &str, at: DateTime<Utc>) -> Result<()> {
        let Some(at) = whole_seconds(at) else {
            return Ok(());
        };
        self.key_update(name, false, |k| {
            let due = k
                .last_used
                .is_none_or(|l| at.timestamp() - l.timestamp() >= KEY_USE_EVERY_SECS);
            if due {
                k.last_used = Some(at);
            }
            due
        })?;
        Ok(())
    }

    /// Stores a key as exported (replacing one of the same name).
    pub(super) fn key_load(&self, key: &ApiKey) -> Result<()> {
        if let Some(old) = self.key_named(&key.name)? {
            if old.blake3 != key.blake3 {
                self.api_keys.remove(hash_key(&old.blake3))?;
            }
        }
        self.api_keys
            .insert(name_key(&key.name), encode(&key.name, key)?)?;
        self.api_keys
            .insert(hash_key(&key.blake3), key.name.as_bytes())?;
        Ok(())
    }
}
