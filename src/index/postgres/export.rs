//! Whole tables page by page (`all`, `export`), and `import` in batches.
//!
//! Pages follow the key (keyset paging), so a table of a million rows is
//! read a thousand rows at a time, each page an index range scan.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::api_keys;
use super::jobs::state_name;
use super::{decode, encode, Entry, IndexError, PgIndex, Result, Task, PAGE};
use crate::model::{ComponentKey, ImageRecord, Job};

/// Rows per statement of an import.
const BATCH: usize = 5000;

#[derive(Debug, Clone, Copy)]
pub(super) enum Table {
    Components,
    Images,
    Derived,
    Inputs,
    Downloads,
    BlobUses,
    Meta,
    Jobs,
    ApiKeys,
}

impl Table {
    pub(super) const ALL: [Table; 9] = [
        Table::Components,
        Table::Images,
        Table::Derived,
        Table::Inputs,
        Table::Downloads,
        Table::BlobUses,
        Table::Meta,
        Table::Jobs,
        Table::ApiKeys,
    ];

    /// The number of key columns (text, first in each row).
    fn key_columns(self) -> usize {
        match self {
            Table::Components | Table::Images | Table::Downloads => 3,
            Table::Derived => 2,
            Table::Inputs => 4,
            Table::BlobUses | Table::Meta | Table::Jobs | Table::ApiKeys => 1,
        }
    }

    /// The first page, and the page after a key.
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Table::Components => (
                "SELECT component, tag, arch, doc FROM components \
                 ORDER BY component, tag, arch LIMIT $1",
                "SELECT component, tag, arch, doc FROM components \
                 WHERE (component, tag, arch) > ($1, $2, $3) \
                 ORDER BY component, tag, arch LIMIT $4",
            ),
            Table::Images => (
                "SELECT component, branch, arch, doc FROM images \
                 ORDER BY component, branch, arch LIMIT $1",
                "SELECT component, branch, arch, doc FROM images \
                 WHERE (component, branch, arch) > ($1, $2, $3) \
                 ORDER BY component, branch, arch LIMIT $4",
            ),
            Table::Derived => (
                "SELECT source, kind, blob FROM derived ORDER BY source, kind LIMIT $1",
                "SELECT source, kind, blob FROM derived WHERE (source, kind) > ($1, $2) \
                 ORDER BY source, kind LIMIT $3",
            ),
            Table::Inputs => (
                "SELECT inputs, component, tag, arch FROM inputs \
                 ORDER BY inputs, component, tag, arch LIMIT $1",
                "SELECT inputs, component, tag, arch FROM inputs \
                 WHERE (inputs, component, tag, arch) > ($1, $2, $3, $4) \
                 ORDER BY inputs, component, tag, arch LIMIT $5",
            ),
            Table::Downloads => (
                "SELECT component, tag, arch, at FROM downloads \
                 ORDER BY component, tag, arch LIMIT $1",
                "SELECT component, tag, arch, at FROM downloads \
                 WHERE (component, tag, arch) > ($1, $2, $3) \
                 ORDER BY component, tag, arch LIMIT $4",
            ),
            Table::BlobUses => (
                "SELECT blob, at FROM blob_uses ORDER BY blob LIMIT $1",
                "SELECT blob, at FROM blob_uses WHERE blob > $1 ORDER BY blob LIMIT $2",
            ),
            Table::Meta => (
                "SELECT key, value FROM meta ORDER BY key LIMIT $1",
                "SELECT key, value FROM meta WHERE key > $1 ORDER BY key LIMIT $2",
            ),
            Table::Jobs => (
                "SELECT id, doc FROM jobs ORDER BY id LIMIT $1",
                "SELECT id, doc FROM jobs WHERE id > $1 ORDER BY id LIMIT $2",
            ),
            Table::ApiKeys => (
                "SELECT name, doc, last_used FROM api_keys ORDER BY name LIMIT $1",
                "SELECT name, doc, last_used FROM api_keys WHERE name > $1 ORDER BY name LIMIT $2",
            ),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Table::Components => "reading every record",
            Table::Images => "reading every image record",
            Table::Derived => "reading every derived blob",
            Table::Inputs => "reading every inputs key",
            Table::Downloads => "reading every download time",
            Table::BlobUses => "reading every blob use",
            Table::Meta => "reading the service state",
            Table::Jobs => "reading every job",
            Table::ApiKeys => "reading every key",
        }
    }

    fn entry(self, keys: &[String], r: &PgRow) -> Task<Entry> {
        let key3 = || ComponentKey {
            component: keys[0].clone(),
            tag: keys[1].clone(),
            arch: keys[2].clone(),
        };
        let label = keys.join("/");
        Ok(match self {
            Table::Components => Entry::Component(decode(&label, &r.try_get::<Vec<u8>, _>(3)?)?),
            Table::Images => Entry::Image(decode(&label, &r.try_get::<Vec<u8>, _>(3)?)?),
            Table::Derived => Entry::Derived {
                source: keys[0].clone(),
                kind: keys[1].clone(),
                blob: r.try_get(2)?,
            },
            Table::Inputs => Entry::Inputs {
                inputs: keys[0].clone(),
                key: ComponentKey {
                    component: keys[1].clone(),
                    tag: keys[2].clone(),
                    arch: keys[3].clone(),
                },
            },
            Table::Downloads => Entry::Download {
                key: key3(),
                at: r.try_get(3)?,
            },
            Table::BlobUses => Entry::BlobUse {
                blob: keys[0].clone(),
                at: r.try_get(1)?,
            },
            Table::Meta => Entry::Meta {
                key: keys[0].clone(),
                value: r.try_get(1)?,
            },
            Table::Jobs => Entry::Job(decode(&label, &r.try_get::<Vec<u8>, _>(1)?)?),
            Table::ApiKeys => Entry::ApiKey(api_keys::from_row(&label, r, 1)?),
        })
    }
}

impl PgIndex {
    /// One page of `table` after the key `after`, and the last key read.
    fn page(&self, table: Table, after: Option<Vec<String>>) -> Result<Vec<(Vec<String>, Entry)>> {
        let pool = self.pool.clone();
        self.run(table.what(), async move {
            let (first, next) = table.sql();
            let mut q = sqlx::query(if after.is_some() { next } else { first });
            for k in after.into_iter().flatten() {
                q = q.bind(k);
            }
            let rows = q.bind(PAGE).fetch_all(&pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let keys = (0..table.key_columns())
                    .map(|i| r.try_get::<String, _>(i))
                    .collect::<std::result::Result<Vec<String>, _>>()?;
                let e = table.entry(&keys, r)?;
                out.push((keys, e));
            }
            Ok(out)
        })
    }

    /// Every row of `table` as entries, a page at a time.
    pub(super) fn pages(&self, table: Table) -> impl Iterator<Item = Result<Entry>> + '_ {
        let mut after: Option<Vec<String>> = None;
        let mut buf = std::collections::VecDeque::new();
        let mut done = false;
        std::iter::from_fn(move || loop {
            if let Some(e) = buf.pop_front() {
                return Some(Ok(e));
            }
            if done {
                return None;
            }
            match self.page(table, after.take()) {
                Ok(page) => {
                    done = page.len() < PAGE as usize;
                    for (keys, e) in page {
                        after = Some(keys);
                        buf.push_back(e);
                    }
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        })
    }

    /// Stores `entries` in one transaction, a batch of rows per statement.
    pub(super) fn import_entries(&self, entries: &[Entry]) -> Result<()> {
        let batches = Batches::of(entries)?;
        let pool = self.pool.clone();
        // a large import may take a while; each statement is bounded anyway
        let limit = Duration::from_secs(60) + Duration::from_millis(entries.len() as u64);
        self.run_within("importing index entries", limit, async move {
            let mut tx = pool.begin().await?;
            for b in batches.components.chunks(BATCH) {
                sqlx::query(
                    "INSERT INTO components (component, tag, arch, blake3, doc) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[]) \
                     ON CONFLICT (component, tag, arch) \
                     DO UPDATE SET blake3 = EXCLUDED.blake3, doc = EXCLUDED.doc",
                )
                .bind(col(b, |r| r.0.clone()))
                .bind(col(b, |r| r.1.clone()))
                .bind(col(b, |r| r.2.clone()))
                .bind(col(b, |r| r.3.clone()))
                .bind(col(b, |r| r.4.clone()))
                .execute(&mut *tx)
                .await?;
            }
            for b in batches.images.chunks(BATCH) {
                sqlx::query(
                    "INSERT INTO images (component, branch, arch, doc) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[]) \
                     ON CONFLICT (component, branch, arch) DO UPDATE SET doc = EXCLUDED.doc",
                )
                .bind(col(b, |r| r.0.clone()))
                .bind(col(b, |r| r.1.clone()))
                .bind(col(b, |r| r.2.clone()))
                .bind(col(b, |r| r.3.clone()))
                .execute(&mut *tx)
                .await?;
            }
            for b in batches.derived.chunks(BATCH) {
                sqlx::query(
                    "INSERT INTO derived (source, kind, blob) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
                     ON CONFLICT (source, kind) DO UPDATE SET blob = EXCLUDED.blob",
                )
                .bind(col(b, |r| r.0.clone()))
                .bind(col(b, |r| r.1.clone()))
                .bind(col(b, |r| r.2.clone()))
                .execute(&mut *tx)
                .await?;
            }
            for b in batches.inputs.chunks(BATCH) {
                sqlx::query(
                    "INSERT INTO inputs (inputs, component, tag, arch) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(col(b, |r| r.0.clone()))
                .bind(col(b, |r| r.1.clone()))
                .bind(col(b, |r| r.2.clone()))
                .bind(col(b, |r| r.3.clone()))
                .execute(&mut *tx)
                .await?;
            }
            for b in batches.downloads.chunks(BATCH) {
                sqlx::query(
                    "INSERT INTO downloads (component, tag, arch, at) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[]) \
                     ON CONFLICT (component, tag, arch) DO UPDATE SET at = EXCLUDED.at",
                )
                .bind(col(b, |r| r.0.clone()))
                .bind(col(b, |r| r.1.clone()))
                .bind(col(b, |r| r.2.clone()))
                .bind(col(b, |r| r.3))
                .execute(&mut *tx)
                .await?;
            }
            for b in batches.blob_uses.chunks(BATCH) {
                sqlx::query(
                    "INSERT INTO blob_uses (blob, at) SELECT * FROM UNNEST($1::text[], $2::int8[]) \
                     ON CONFLICT (blob) DO UPDATE SET at = EXCLUDED.at",
                )
                .bind(col(b, |r| r.0.clone()))
                .bind(col(b, |r| r.1))
                .execute(&mut *tx)
                .await?;
            }
            for b in batches.meta.chunks(BATCH) {
                sqlx::query(
                    "INSERT INTO meta (key, value) SELECT * FROM UNNEST($1::text[], $2::bytea[]) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                )
                .bind(col(b, |r| r.0.clone()))
                .bind(col(b, |r| r.1.clone()))
                .execute(&mut *tx)
                .await?;
            }
            for b in batches.jobs.chunks(BATCH) {
                // a running job has no replica holding it here: its lease
                // is over, so a replica takes it up
                sqlx::query(
                    "INSERT INTO jobs (id, state, replica, pinned, flight, attempts, created, doc, \
                     lease_until) \
                     SELECT id, state, replica, pinned, flight, attempts, created::timestamptz, doc, \
                     CASE WHEN state = 'running' THEN now() END \
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::int4[], $7::text[], $8::bytea[]) \
                     AS t(id, state, replica, pinned, flight, attempts, created, doc) \
                     ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, \
                     replica = EXCLUDED.replica, pinned = EXCLUDED.pinned, \
                     flight = EXCLUDED.flight, attempts = EXCLUDED.attempts, \
                     created = EXCLUDED.created, doc = EXCLUDED.doc, \
                     lease_until = EXCLUDED.lease_until",
                )
                .bind(col(b, |(j, _)| j.id.clone()))
                .bind(col(b, |(j, _)| state_name(j.state).to_owned()))
                .bind(col(b, |(j, _)| j.replica.clone()))
                .bind(col(b, |(j, _)| j.pinned.clone()))
                .bind(col(b, |(j, _)| j.flight.clone()))
                .bind(col(b, |(j, _)| i32::try_from(j.attempts).unwrap_or(i32::MAX)))
                .bind(col(b, |(j, _)| j.created.to_rfc3339()))
                .bind(col(b, |(_, doc)| doc.clone()))
                .execute(&mut *tx)
                .await?;
            }
            for b in batches.api_keys.chunks(BATCH) {
                sqlx::query(
                    "INSERT INTO api_keys (name, blake3, last_used, doc) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::bytea[]) \
                     ON CONFLICT (name) DO UPDATE SET blake3 = EXCLUDED.blake3, \
                     last_used = EXCLUDED.last_used, doc = EXCLUDED.doc",
                )
                .bind(col(b, |r| r.0.clone()))
                .bind(col(b, |r| r.1.clone()))
                .bind(col(b, |r| r.2))
                .bind(col(b, |r| r.3.clone()))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

fn col<R, T>(rows: &[R], f: impl Fn(&R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

/// The last entry for each key, in the order keys first appeared (one
/// statement may not change a row twice).
fn last_per_key<K: Hash + Eq, R>(rows: Vec<(K, R)>) -> Vec<R> {
    let mut at: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<Option<R>> = Vec::with_capacity(rows.len());
    for (k, r) in rows {
        match at.get(&k) {
            Some(&i) => out[i] = Some(r),
            None => {
                at.insert(k, out.len());
                out.push(Some(r));
            }
        }
    }
    out.into_iter().flatten().collect()
}

type Key3 = (String, String, String);

/// Entries sorted by table, as the columns they are stored in.
struct Batches {
    components: Vec<(String, String, String, String, Vec<u8>)>,
    images: Vec<(String, String, String, Vec<u8>)>,
    derived: Vec<(String, String, String)>,
    inputs: Vec<(String, String, String, String)>,
    downloads: Vec<(String, String, String, i64)>,
    blob_uses: Vec<(String, i64)>,
    meta: Vec<(String, Vec<u8>)>,
    jobs: Vec<(Job, Vec<u8>)>,
    api_keys: Vec<(String, String, Option<i64>, Vec<u8>)>,
}

impl Batches {
    fn of(entries: &[Entry]) -> Result<Batches> {
        let mut components = Vec::new();
        let mut images = Vec::new();
        let mut derived = Vec::new();
        let mut inputs = Vec::new();
        let mut downloads = Vec::new();
        let mut blob_uses = Vec::new();
        let mut meta = Vec::new();
        let mut jobs = Vec::new();
        let mut keys = Vec::new();
        for e in entries {
            if entry_has_nul(e) {
                return Err(IndexError::Db(
                    "importing index entries: a name holds a NUL character, which the database \
                     cannot store"
                        .into(),
                ));
            }
            match e {
                Entry::Component(r) => {
                    let k: Key3 = (r.component.clone(), r.tag.clone(), r.arch.clone());
                    let doc = encode(&r.key().display_path(), r)?;
                    let row = (k.0.clone(), k.1.clone(), k.2.clone(), r.blake3.clone(), doc);
                    components.push((k, row));
                }
                Entry::Image(r) => {
                    let b = r.branch.clone().unwrap_or_default();
                    let k: Key3 = (r.component.clone(), b.clone(), r.arch.clone());
                    let doc = encode(&image_label(r), r)?;
                    images.push((k, (r.component.clone(), b, r.arch.clone(), doc)));
                }
                Entry::Derived { source, kind, blob } => derived.push((
                    (source.clone(), kind.clone()),
                    (source.clone(), kind.clone(), blob.clone()),
                )),
                Entry::Inputs { inputs: i, key } => inputs.push((
                    (i.clone(), key.clone()),
                    (
                        i.clone(),
                        key.component.clone(),
                        key.tag.clone(),
                        key.arch.clone(),
                    ),
                )),
                Entry::Download { key, at } => downloads.push((
                    key.clone(),
                    (
                        key.component.clone(),
                        key.tag.clone(),
                        key.arch.clone(),
                        *at,
                    ),
                )),
                Entry::BlobUse { blob, at } => blob_uses.push((blob.clone(), (blob.clone(), *at))),
                Entry::Meta { key, value } => {
                    meta.push((key.clone(), (key.clone(), value.clone())))
                }
                Entry::Job(j) => {
                    let doc = encode(&j.id, j)?;
                    jobs.push((j.id.clone(), (j.clone(), doc)));
                }
                Entry::ApiKey(k) => {
                    let (doc, last) = api_keys::stored(k)?;
                    let row = (k.name.clone(), k.blake3.clone(), last, doc);
                    keys.push((k.name.clone(), row));
                }
            }
        }
        Ok(Batches {
            components: last_per_key(components),
            images: last_per_key(images),
            derived: last_per_key(derived),
            inputs: last_per_key(inputs),
            downloads: last_per_key(downloads),
            blob_uses: last_per_key(blob_uses),
            meta: last_per_key(meta),
            jobs: last_per_key(jobs),
            api_keys: last_per_key(keys),
        })
    }
}

fn image_label(r: &ImageRecord) -> String {
    format!(
        "{}/{}/{}",
        r.component,
        r.branch.as_deref().unwrap_or(""),
        r.arch
    )
}

fn entry_has_nul(e: &Entry) -> bool {
    let texts: Vec<&str> = match e {
        Entry::Component(r) => vec![&r.component, &r.tag, &r.arch, &r.blake3],
        Entry::Image(r) => vec![&r.component, r.branch.as_deref().unwrap_or(""), &r.arch],
        Entry::Derived { source, kind, blob } => vec![source, kind, blob],
        Entry::Inputs { inputs, key } => vec![inputs, &key.component, &key.tag, &key.arch],
        Entry::Download { key, .. } => vec![&key.component, &key.tag, &key.arch],
        Entry::BlobUse { blob, .. } => vec![blob],
        Entry::Meta { key, .. } => vec![key],
        Entry::Job(j) => vec![
            &j.id,
            j.replica.as_deref().unwrap_or(""),
            j.pinned.as_deref().unwrap_or(""),
            j.flight.as_deref().unwrap_or(""),
        ],
        Entry::ApiKey(k) => vec![&k.name, &k.blake3],
    };
    texts.iter().any(|t| t.contains('\0'))
}
