//! The PostgreSQL index, shared by replicas of the service: one table per
//! kind of metadata (`migrations/` at the crate root holds the schema,
//! applied at open under sqlx's advisory lock, so replicas may start
//! together). Keys are `COLLATE "C"` so they sort bytewise, as the embedded
//! index's do; records are stored as the bytes the service encoded.
//!
//! The trait is blocking and is called from blocking threads and from
//! async handlers alike, so the index has a small tokio runtime of its own:
//! each query runs there as a task and the caller waits on a channel (which
//! works on any thread, inside another runtime too).
//!
//! Every SQL text is a constant; values only ever travel as bound
//! parameters. Times of leases and jobs are the database's clock.

mod api_keys;
mod cache;
mod connect;
mod export;
mod jobs;
mod keys;
mod records;
mod runtime;
mod search;
mod state;

use std::fmt::Display;
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::Row;

use super::{
    decode, encode, Counts, Enqueued, Entry, Index, IndexError, PutOutcome, RawRecord, Result,
};
use crate::config::IndexConfig;
use crate::model::{ApiKey, ComponentKey, ImageKey, ImageRecord, Job, Record, Revocation};
use keys::{image_binds, key_binds, key_nul_free, no_nul, nul_free};

/// How long a query waits for a free connection of the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one operation may take before the caller gives up on it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Rows per page when iterating a whole table.
const PAGE: i64 = 1000;

/// What an operation's task fails with: a database error (described by the
/// caller) or an index error as it is.
enum Fail {
    Sql(sqlx::Error),
    Index(IndexError),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<IndexError> for Fail {
    fn from(e: IndexError) -> Self {
        Fail::Index(e)
    }
}

type Task<T> = std::result::Result<T, Fail>;

/// A database error in plain words, naming what failed.
fn db_error(what: impl Display, e: sqlx::Error) -> IndexError {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("53100") => IndexError::DiskFull,
        sqlx::Error::Database(d) => IndexError::Db(format!("{what}: {}", d.message())),
        sqlx::Error::PoolTimedOut => IndexError::Db(format!(
            "the PostgreSQL database does not answer ({what}): no connection within {} seconds",
            ACQUIRE_TIMEOUT.as_secs()
        )),
        sqlx::Error::Io(io) => IndexError::Db(format!(
            "the PostgreSQL database does not answer ({what}): {io}"
        )),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => IndexError::Db(format!(
            "{what}: the connections to the PostgreSQL database are closed"
        )),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => IndexError::Db(format!(
            "{what}: the database answered in a form this version does not expect \
             (are its tables from another version?)"
        )),
        other => IndexError::Db(format!("{what}: {other}")),
    }
}

/// The metadata index in a PostgreSQL database.
pub struct PgIndex {
    pool: PgPool,
    /// Records read lately (`[index] record_cache_ms`).
    cache: cache::RecordCache,
    /// Always set but while dropping.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for PgIndex {
    fn drop(&mut self) {
        let Some(rt) = self.rt.take() else { return };
        // say goodbye to the server (briefly), then let the threads go in
        // the background: dropping a runtime waits for its threads, which is
        // not allowed inside another runtime
        let (tx, rx) = mpsc::sync_channel(1);
        let pool = self.pool.clone();
        rt.spawn(async move {
            pool.close().await;
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(Duration::from_secs(2));
        rt.shutdown_background();
    }
}

impl PgIndex {
    /// Connects to `cfg.url` and brings the schema up to date.
    pub fn open(cfg: &IndexConfig) -> Result<PgIndex> {
        let url = cfg.url.as_deref().ok_or_else(|| {
            IndexError::Db(
                "the PostgreSQL index needs a database URL: set [index] url = \
                 \"postgres://user:password@host:port/database\""
                    .into(),
            )
        })?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(IndexError::Db(
                "the [index] url is not a valid PostgreSQL URL: it starts with postgres:// \
                 (postgres://user:password@host:port/database)"
                    .into(),
            ));
        }
        let opts: PgConnectOptions = url.parse().map_err(|e| {
            IndexError::Db(format!(
                "the [index] url is not a valid PostgreSQL URL: {e}"
            ))
        })?;
        let opts = opts.application_name("artifact-store");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pg-index")
            .enable_all()
            .build()
            .map_err(|e| IndexError::Db(format!("cannot start the index's threads: {e}")))?;
        let max = cfg.max_connections.max(1);
        let (tx, rx) = mpsc::sync_channel(1);
        rt.spawn(async move {
            let r = tokio::time::timeout(OPERATION_TIMEOUT, connect::connect(opts, max)).await;
            let _ = tx.send(r);
        });
        let what = "opening the PostgreSQL index";
        let pool = match rx.recv() {
            Ok(Ok(Ok(pool))) => pool,
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => {
                return Err(IndexError::Db(format!(
                    "the PostgreSQL database does not answer ({what}): nothing within {} seconds",
                    OPERATION_TIMEOUT.as_secs()
                )))
            }
            Err(_) => return Err(IndexError::Db(format!("{what}: the task stopped"))),
        };
        Ok(PgIndex {
            pool,
            cache: cache::RecordCache::new(Duration::from_millis(cfg.record_cache_ms)),
            rt: Some(rt),
        })
    }

    /// One bytea column of at most one row.
    fn fetch_doc(
        &self,
        what: impl Display,
        sql: &'static str,
        binds: Vec<String>,
    ) -> Result<Option<Vec<u8>>> {
        let pool = self.pool.clone();
        self.run(what, async move {
            let mut q = sqlx::query_scalar::<_, Vec<u8>>(sql);
            for b in binds {
                q = q.bind(b);
            }
            Ok(q.fetch_optional(&pool).await?)
        })
    }

    /// A statement that changes rows; how many.
    fn execute(&self, what: impl Display, sql: &'static str, binds: Vec<String>) -> Result<u64> {
        let pool = self.pool.clone();
        self.run(what, async move {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b);
            }
            Ok(q.execute(&pool).await?.rows_affected())
        })
    }

    /// Records (the last column of each row, a bytea document) of a query.
    fn records(
        &self,
        what: impl Display,
        sql: impl sqlx::SqlSafeStr,
        binds: Vec<String>,
        limit: Option<i64>,
    ) -> Result<Vec<Record>> {
        let pool = self.pool.clone();
        let sql = sql.into_sql_str();
        self.run(what, async move {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b);
            }
            if let Some(l) = limit {
                q = q.bind(l);
            }
            let rows = q.fetch_all(&pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let label = format!(
                    "{}/{}/{}",
                    r.try_get::<String, _>(0)?,
                    r.try_get::<String, _>(1)?,
                    r.try_get::<String, _>(2)?
                );
                out.push(decode(&label, &r.try_get::<Vec<u8>, _>(3)?)?);
            }
            Ok(out)
        })
    }
}

impl Index for PgIndex {
    fn get(&self, key: &ComponentKey) -> Result<Option<Record>> {
        self.raw(key)?
            .map(|r| decode(&key.display_path(), r.as_bytes()))
            .transpose()
    }

    fn raw(&self, key: &ComponentKey) -> Result<Option<RawRecord>> {
        if !key_nul_free(key) {
            return Ok(None);
        }
        if let Some(r) = self.cache.get(key) {
            return Ok(Some(r));
        }
        let rec = self
            .fetch_doc(
                format_args!("reading the record of {key}"),
                "SELECT doc FROM components WHERE component = $1 AND tag = $2 AND arch = $3",
                key_binds(key),
            )?
            .map(|v| RawRecord(bytes::Bytes::from(v)));
        if let Some(r) = &rec {
            self.cache.put(key, r);
        }
        Ok(rec)
    }

    fn contains(&self, key: &ComponentKey) -> Result<bool> {
        if !key_nul_free(key) {
            return Ok(false);
        }
        let pool = self.pool.clone();
        let b = key_binds(key);
        self.run(format_args!("looking up {key}"), async move {
            Ok(sqlx::query(
                "SELECT 1 FROM components WHERE component = $1 AND tag = $2 AND arch = $3",
            )
            .bind(&b[0])
            .bind(&b[1])
            .bind(&b[2])
            .fetch_optional(&pool)
            .await?
            .is_some())
        })
    }

    fn put(&self, rec: &Record, overwrite: bool) -> Result<PutOutcome> {
        self.cache.forget(&rec.key());
        self.put_record(rec, overwrite)
    }

    fn remove(&self, key: &ComponentKey) -> Result<Option<Record>> {
        self.cache.forget(key);
        if !key_nul_free(key) {
            return Ok(None);
        }
        self.fetch_doc(
            format_args!("removing the record of {key}"),
            "DELETE FROM components WHERE component = $1 AND tag = $2 AND arch = $3 \
             RETURNING doc",
            key_binds(key),
        )?
        .map(|v| decode(&key.display_path(), &v))
        .transpose()
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        self.list_records(prefix, after, limit)
    }

    fn search(
        &self,
        prefix: &str,
        words: &[String],
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        self.search_records(prefix, words, after, limit)
    }

    fn count_matching(&self, prefix: &str, words: &[String]) -> Result<Counts> {
        self.count_records(prefix, words)
    }

    fn versions(&self, component: &str) -> Result<Vec<Record>> {
        if !nul_free(&[component]) {
            return Ok(Vec::new());
        }
        self.records(
            format_args!("listing the versions of {component}"),
            "SELECT component, tag, arch, doc FROM components WHERE component = $1 \
             ORDER BY tag, arch",
            vec![component.to_owned()],
            None,
        )
    }

    fn all(&self) -> Box<dyn Iterator<Item = Result<Record>> + '_> {
        Box::new(self.pages(export::Table::Components).map(|e| match e? {
            Entry::Component(r) => Ok(r),
            _ => Err(IndexError::Db("reading every record: not a record".into())),
        }))
    }

    fn component_count(&self) -> Result<u64> {
        let pool = self.pool.clone();
        let n: i64 = self.run("counting the records", async move {
            Ok(sqlx::query_scalar("SELECT count(*) FROM components")
                .fetch_one(&pool)
                .await?)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn update_record(&self, rec: &Record) -> Result<bool> {
        self.cache.forget(&rec.key());
        self.update_same_blob(rec)
    }

    fn add_inputs(&self, inputs: &str, key: &ComponentKey) -> Result<()> {
        let what = format!("noting the inputs of {key}");
        no_nul(&what, &[inputs, &key.component, &key.tag, &key.arch])?;
        let mut binds = vec![inputs.to_owned()];
        binds.extend(key_binds(key));
        self.execute(
            what,
            "INSERT INTO inputs (inputs, component, tag, arch) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            binds,
        )?;
        Ok(())
    }

    fn by_inputs(&self, inputs: &str) -> Result<Vec<Record>> {
        if !nul_free(&[inputs]) {
            return Ok(Vec::new());
        }
        let recs = self.records(
            "looking up records by their inputs",
            "SELECT c.component, c.tag, c.arch, c.doc FROM inputs i \
             JOIN components c USING (component, tag, arch) WHERE i.inputs = $1 \
             ORDER BY c.component, c.tag, c.arch",
            vec![inputs.to_owned()],
            None,
        )?;
        Ok(recs
            .into_iter()
            .filter(|r| r.inputs.as_deref() == Some(inputs))
            .collect())
    }

    fn derived(&self, source: &str, kind: &str) -> Result<Option<String>> {
        if !nul_free(&[source, kind]) {
            return Ok(None);
        }
        let pool = self.pool.clone();
        let (s, k) = (source.to_owned(), kind.to_owned());
        self.run(
            format_args!("looking up the {kind} form of blob {source}"),
            async move {
                Ok(
                    sqlx::query_scalar("SELECT blob FROM derived WHERE source = $1 AND kind = $2")
                        .bind(s)
                        .bind(k)
                        .fetch_optional(&pool)
                        .await?,
                )
            },
        )
    }

    fn set_derived(&self, source: &str, kind: &str, blob: &str) -> Result<()> {
        let what = format!("noting the {kind} form of blob {source}");
        no_nul(&what, &[source, kind, blob])?;
        self.execute(
            what,
            "INSERT INTO derived (source, kind, blob) VALUES ($1, $2, $3) \
             ON CONFLICT (source, kind) DO UPDATE SET blob = EXCLUDED.blob",
            vec![source.to_owned(), kind.to_owned(), blob.to_owned()],
        )?;
        Ok(())
    }

    fn remove_derived(&self, source: &str) -> Result<()> {
        if !nul_free(&[source]) {
            return Ok(());
        }
        self.execute(
            format_args!("forgetting the forms of blob {source}"),
            "DELETE FROM derived WHERE source = $1",
            vec![source.to_owned()],
        )?;
        Ok(())
    }

    fn drop_derived_target(&self, blob: &str) -> Result<()> {
        if !nul_free(&[blob]) {
            return Ok(());
        }
        self.execute(
            format_args!("forgetting derivations made as blob {blob}"),
            "DELETE FROM derived WHERE blob = $1",
            vec![blob.to_owned()],
        )?;
        Ok(())
    }

    /// At most one write an hour per key (the database's clock).
    fn note_download(&self, key: &ComponentKey) -> Result<()> {
        if !key_nul_free(key) {
            return Ok(());
        }
        self.execute(
            format_args!("noting a download of {key}"),
            "INSERT INTO downloads (component, tag, arch, at) \
             VALUES ($1, $2, $3, floor(extract(epoch FROM now()))::bigint) \
             ON CONFLICT (component, tag, arch) DO UPDATE SET at = EXCLUDED.at \
             WHERE downloads.at <= EXCLUDED.at - 3600",
            key_binds(key),
        )?;
        Ok(())
    }

    fn last_download(&self, key: &ComponentKey) -> Result<Option<i64>> {
        if !key_nul_free(key) {
            return Ok(None);
        }
        let pool = self.pool.clone();
        let b = key_binds(key);
        self.run(
            format_args!("reading the last download of {key}"),
            async move {
                Ok(sqlx::query_scalar(
                    "SELECT at FROM downloads WHERE component = $1 AND tag = $2 AND arch = $3",
                )
                .bind(&b[0])
                .bind(&b[1])
                .bind(&b[2])
                .fetch_optional(&pool)
                .await?)
            },
        )
    }

    fn image_raw(&self, key: &ImageKey) -> Result<Option<RawRecord>> {
        let b = image_binds(key);
        if !nul_free(&[&b[0], &b[1], &b[2]]) {
            return Ok(None);
        }
        Ok(self
            .fetch_doc(
                format_args!("reading the image record of {key}"),
                "SELECT doc FROM images WHERE component = $1 AND branch = $2 AND arch = $3",
                b,
            )?
            .map(|v| RawRecord(bytes::Bytes::from(v))))
    }

    fn image(&self, key: &ImageKey) -> Result<Option<ImageRecord>> {
        self.image_raw(key)?
            .map(|r| decode(&key.to_string(), r.as_bytes()))
            .transpose()
    }

    fn put_image(&self, rec: &ImageRecord) -> Result<()> {
        self.store_image(rec)
    }

    fn images(&self, prefix: &str, limit: usize) -> Result<Vec<ImageRecord>> {
        self.list_images(prefix, limit)
    }

    fn job(&self, id: &str) -> Result<Option<Job>> {
        self.get_job(id)
    }

    fn put_job(&self, job: &Job, _durable: bool) -> Result<()> {
        self.upsert_job(job)
    }

    fn jobs(&self, limit: usize) -> Result<Vec<Job>> {
        self.newest_jobs(limit)
    }

    fn unfinished_jobs(&self) -> Result<Vec<Job>> {
        self.jobs_unfinished()
    }

    fn shared(&self) -> bool {
        true
    }

    fn enqueue_job(&self, job: &Job) -> Result<Enqueued> {
        self.enqueue(job)
    }

    fn claim_job(&self, replica: &str, lease: Duration) -> Result<Option<Job>> {
        self.claim(replica, lease)
    }

    fn renew_leases(&self, replica: &str, lease: Duration) -> Result<()> {
        self.renew(replica, lease)
    }

    fn expired_jobs(&self) -> Result<Vec<Job>> {
        self.expired()
    }

    fn replace_job(&self, job: &Job, holder: Option<&str>) -> Result<bool> {
        self.replace(job, holder)
    }

    fn take_up_job(&self, job: &Job, holder: &str) -> Result<bool> {
        self.take_up(job, holder)
    }

    fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.take_lease(name, holder, ttl)
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.give_up_lease(name, holder)
    }

    fn note_blob_use(&self, blob: &str) -> Result<()> {
        let what = format!("noting a use of blob {blob}");
        no_nul(&what, &[blob])?;
        self.execute(
            what,
            "INSERT INTO blob_uses (blob, at) VALUES ($1, floor(extract(epoch FROM now()))::bigint) \
             ON CONFLICT (blob) DO UPDATE SET at = EXCLUDED.at",
            vec![blob.to_owned()],
        )?;
        Ok(())
    }

    fn blob_used_at(&self, blob: &str) -> Result<Option<i64>> {
        if !nul_free(&[blob]) {
            return Ok(None);
        }
        let pool = self.pool.clone();
        let b = blob.to_owned();
        self.run(
            format_args!("reading the last use of blob {blob}"),
            async move {
                Ok(
                    sqlx::query_scalar("SELECT at FROM blob_uses WHERE blob = $1")
                        .bind(b)
                        .fetch_optional(&pool)
                        .await?,
                )
            },
        )
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        if !nul_free(&[key]) {
            return Ok(None);
        }
        self.fetch_doc(
            format_args!("reading the service state {key}"),
            "SELECT value FROM meta WHERE key = $1",
            vec![key.to_owned()],
        )
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let what = format!("storing the service state {key}");
        no_nul(&what, &[key])?;
        let pool = self.pool.clone();
        let (k, v) = (key.to_owned(), value.to_vec());
        self.run(what, async move {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            )
            .bind(k)
            .bind(v)
            .execute(&pool)
            .await?;
            Ok(())
        })
    }

    fn set_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.meta_if_absent(key, value)
    }

    fn delete_meta(&self, key: &str) -> Result<()> {
        self.meta_delete(key)
    }

    fn create_api_key(&self, key: &ApiKey) -> Result<bool> {
        self.key_create(key)
    }

    fn api_key(&self, name: &str) -> Result<Option<ApiKey>> {
        self.key_named(name)
    }

    fn api_key_by_hash(&self, blake3: &str) -> Result<Option<ApiKey>> {
        self.key_by_hash(blake3)
    }

    fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.keys_all()
    }

    fn revoke_api_key(&self, name: &str, revoked: &Revocation) -> Result<Option<ApiKey>> {
        self.key_revoke(name, revoked)
    }

    fn note_api_key_use(&self, name: &str, at: DateTime<Utc>) -> Result<()> {
        self.key_used(name, at)
    }

    fn append_job_log(&self, id: &str, chunk: &[u8]) -> Result<()> {
        self.log_append(id, chunk)
    }

    fn job_log(&self, id: &str, from: u64, max: usize) -> Result<Vec<u8>> {
        self.log_read(id, from, max)
    }

    fn ping(&self) -> Result<()> {
        let pool = self.pool.clone();
        self.run("checking the PostgreSQL database", async move {
            sqlx::query("SELECT 1").execute(&pool).await?;
            Ok(())
        })
    }

    fn export(&self) -> Box<dyn Iterator<Item = Result<Entry>> + '_> {
        Box::new(export::Table::ALL.iter().flat_map(move |t| self.pages(*t)))
    }

    fn import(&self, entries: &[Entry]) -> Result<()> {
        self.cache.forget_all();
        self.import_entries(entries)
    }
}
