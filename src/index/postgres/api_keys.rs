//! API keys in the table `api_keys` (migration 0003): the key's document
//! (without `last_used`), its name and the blake3 of its secret (both
//! unique), and `last_used` (unix seconds) as a column, so a note of use is
//! one conditional UPDATE that writes nothing within a minute of the last.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::keys::{no_nul, nul_free};
use super::{decode, encode, PgIndex, Task};
use crate::index::{Result, KEY_USE_EVERY_SECS};
use crate::model::{ApiKey, Revocation};

/// The document and the `last_used` column of a key.
pub(super) fn stored(key: &ApiKey) -> Result<(Vec<u8>, Option<i64>)> {
    let last = key.last_used.map(|t| t.timestamp());
    let mut doc = key.clone();
    doc.last_used = None;
    Ok((encode(&key.name, &doc)?, last))
}

/// A key from its document (column `doc_at`) and `last_used` (the next one).
pub(super) fn from_row(name: &str, r: &PgRow, doc_at: usize) -> Task<ApiKey> {
    let mut key: ApiKey = decode(name, &r.try_get::<Vec<u8>, _>(doc_at)?)?;
    key.last_used = r
        .try_get::<Option<i64>, _>(doc_at + 1)?
        .and_then(|s| DateTime::from_timestamp(s, 0));
    Ok(key)
}

impl PgIndex {
    pub(super) fn key_create(&self, key: &ApiKey) -> Result<bool> {
        let what = format!("storing the key {}", key.name);
        no_nul(&what, &[&key.name, &key.blake3])?;
        let (doc, last) = stored(key)?;
        let (name, hash) = (key.name.clone(), key.blake3.clone());
        let pool = self.pool.clone();
        self.run(what, async move {
            // no conflict target: a taken name or a taken hash stores nothing
            let done = sqlx::query(
                "INSERT INTO api_keys (name, blake3, last_used, doc) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(hash)
            .bind(last)
            .bind(doc)
            .execute(&pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// The key of one row (`WHERE` on `column` = `value`).
    fn key_where(&self, by_hash: bool, value: &str) -> Result<Option<ApiKey>> {
        if !nul_free(&[value]) {
            return Ok(None);
        }
        let (what, sql) = if by_hash {
            (
                "looking up a key by its hash".to_owned(),
                "SELECT name, doc, last_used FROM api_keys WHERE blake3 = $1",
            )
        } else {
            (
                format!("reading the key {value}"),
                "SELECT name, doc, last_used FROM api_keys WHERE name = $1",
            )
        };
        let pool = self.pool.clone();
        let v = value.to_owned();
        self.run(what, async move {
            let Some(r) = sqlx::query(sql).bind(v).fetch_optional(&pool).await? else {
                return Ok(None);
            };
            let name: String = r.try_get(0)?;
            Ok(Some(from_row(&name, &r, 1)?))
        })
    }

    pub(super) fn key_named(&self, name: &str) -> Result<Option<ApiKey>> {
        self.key_where(false, name)
    }

    pub(super) fn key_by_hash(&self, blake3: &str) -> Result<Option<ApiKey>> {
        self.key_where(true, blake3)
    }

    pub(super) fn keys_all(&self) -> Result<Vec<ApiKey>> {
        let pool = self.pool.clone();
        self.run("listing the keys", async move {
            let rows = sqlx::query("SELECT name, doc, last_used FROM api_keys ORDER BY name")
                .fetch_all(&pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let name: String = r.try_get(0)?;
                out.push(from_row(&name, r, 1)?);
            }
            Ok(out)
        })
    }

    pub(super) fn key_revoke(&self, name: &str, revoked: &Revocation) -> Result<Option<ApiKey>> {
        if !nul_free(&[name]) {
            return Ok(None);
        }
        let pool = self.pool.clone();
        let (n, rev) = (name.to_owned(), revoked.clone());
        self.run(format_args!("revoking the key {name}"), async move {
            let mut tx = pool.begin().await?;
            let row = sqlx::query("SELECT doc, last_used FROM api_keys WHERE name = $1 FOR UPDATE")
                .bind(&n)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut key = from_row(&n, &row, 0)?;
            if key.revoked.is_none() {
                key.revoked = Some(rev);
                let (doc, _) = stored(&key)?;
                sqlx::query("UPDATE api_keys SET doc = $2 WHERE name = $1")
                    .bind(&n)
                    .bind(doc)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Some(key))
        })
    }

    pub(super) fn key_used(&self, name: &str, at: DateTime<Utc>) -> Result<()> {
        if !nul_free(&[name]) {
            return Ok(());
        }
        let pool = self.pool.clone();
        let (n, at) = (name.to_owned(), at.timestamp());
        self.run(format_args!("noting a use of the key {name}"), async move {
            sqlx::query(
                "UPDATE api_keys SET last_used = $2 WHERE name = $1 \
                 AND (last_used IS NULL OR last_used <= $2 - $3)",
            )
            .bind(n)
            .bind(at)
            .bind(KEY_USE_EVERY_SECS)
            .execute(&pool)
            .await?;
            Ok(())
        })
    }
}
