//! The sled index's content as entries, and entries loaded back (for
//! `migrate`).

use super::{image_key_bytes, key_bytes, key_of, seconds, show, SledIndex};
use crate::index::{decode, encode, Entry, Result};
use crate::model::{ImageKey, JobState};

impl SledIndex {
    pub(super) fn entries(&self) -> Box<dyn Iterator<Item = Result<Entry>> + '_> {
        let comps = self.components.iter().map(|kv| {
            let (k, v) = kv?;
            Ok(Entry::Component(decode(&show(&k), &v)?))
        });
        let images = self.images.iter().map(|kv| {
            let (k, v) = kv?;
            Ok(Entry::Image(decode(&show(&k), &v)?))
        });
        let derived = self.derived.iter().map(|kv| {
            let (k, v) = kv?;
            let k = String::from_utf8_lossy(&k).into_owned();
            let (source, kind) = k.split_once('\0').unwrap_or((&k, ""));
            Ok(Entry::Derived {
                source: source.to_owned(),
                kind: kind.to_owned(),
                blob: String::from_utf8_lossy(&v).into_owned(),
            })
        });
        let inputs = self.inputs.iter().keys().filter_map(|k| {
            let k = match k {
                Ok(k) => k,
                Err(e) => return Some(Err(e.into())),
            };
            let at = k.iter().position(|b| *b == 0)?;
            Some(Ok(Entry::Inputs {
                inputs: String::from_utf8_lossy(&k[..at]).into_owned(),
                key: key_of(&k[at + 1..])?,
            }))
        });
        let downloads = self.downloads.iter().filter_map(|kv| {
            let (k, v) = match kv {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            Some(Ok(Entry::Download {
                key: key_of(&k)?,
                at: seconds(&v)?,
            }))
        });
        let uses = self.blob_uses.iter().filter_map(|kv| {
            let (k, v) = match kv {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            Some(Ok(Entry::BlobUse {
                blob: String::from_utf8_lossy(&k).into_owned(),
                at: seconds(&v)?,
            }))
        });
        let meta = self.meta.iter().map(|kv| {
            let (k, v) = kv?;
            Ok(Entry::Meta {
                key: String::from_utf8_lossy(&k).into_owned(),
                value: v.to_vec(),
            })
        });
        let jobs = self.jobs.iter().map(|kv| {
            let (k, v) = kv?;
            Ok(Entry::Job(decode(&show(&k), &v)?))
        });
        let keys = self.api_keys.scan_prefix(b"n\0").map(|kv| {
            let (k, v) = kv?;
            Ok(Entry::ApiKey(decode(&show(&k[2..]), &v)?))
        });
        Box::new(
            comps
                .chain(images)
                .chain(derived)
                .chain(inputs)
                .chain(downloads)
                .chain(uses)
                .chain(meta)
                .chain(jobs)
                .chain(keys),
        )
    }

    pub(super) fn load(&self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            match e {
                Entry::Component(r) => {
                    let k = key_bytes(&r.key());
                    self.components.insert(&k, encode(&show(&k), r)?)?;
                    self.keys.added(&k);
                }
                Entry::Image(r) => {
                    let key = ImageKey {
                        component: r.component.clone(),
                        branch: r.branch.clone(),
                        arch: r.arch.clone(),
                    };
                    self.images
                        .insert(image_key_bytes(&key), encode(&key.to_string(), r)?)?;
                }
                Entry::Derived { source, kind, blob } => {
                    self.derived
                        .insert(format!("{source}\0{kind}").as_bytes(), blob.as_bytes())?;
                }
                Entry::Inputs { inputs, key } => {
                    let mut k = inputs.as_bytes().to_vec();
                    k.push(0);
                    k.extend_from_slice(&key_bytes(key));
                    self.inputs.insert(k, &[])?;
                }
                Entry::Download { key, at } => {
                    self.downloads.insert(key_bytes(key), &at.to_be_bytes())?;
                }
                Entry::BlobUse { blob, at } => {
                    self.blob_uses.insert(blob.as_bytes(), &at.to_be_bytes())?;
                }
                Entry::Meta { key, value } => {
                    self.meta.insert(key.as_bytes(), value.as_slice())?;
                }
                Entry::Job(j) => {
                    self.jobs.insert(j.id.as_bytes(), encode(&j.id, j)?)?;
                    if j.state == JobState::Queued {
                        self.queue.insert(j.id.as_bytes(), &[])?;
                    }
                }
                Entry::ApiKey(k) => self.key_load(k)?,
            }
        }
        self.db.flush()?;
        Ok(())
    }
}
