//! Component and image records: the writes that compare, and listings.

use super::keys::{image_binds, key_binds, key_nul_free, no_nul, prefix_range};
use super::{decode, encode, PgIndex, PutOutcome, Result};
use crate::model::{ComponentKey, ImageKey, ImageRecord, Record};

impl PgIndex {
    pub(super) fn put_record(&self, rec: &Record, overwrite: bool) -> Result<PutOutcome> {
        let key = rec.key();
        let what = format!("storing the record of {key}");
        no_nul(&what, &[&rec.component, &rec.tag, &rec.arch, &rec.blake3])?;
        let label = key.display_path();
        let doc = encode(&label, rec)?;
        let b = key_binds(&key);
        let blake3 = rec.blake3.clone();
        let pool = self.pool.clone();
        self.run(what, async move {
            loop {
                let created = sqlx::query(
                    "INSERT INTO components (component, tag, arch, blake3, doc) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&b[0])
                .bind(&b[1])
                .bind(&b[2])
                .bind(&blake3)
                .bind(&doc)
                .execute(&pool)
                .await?;
                if created.rows_affected() == 1 {
                    return Ok(PutOutcome::Created);
                }
                if !overwrite {
                    // an entry exists: what it is, as of now
                    let old: Option<Vec<u8>> = sqlx::query_scalar(
                        "SELECT doc FROM components \
                         WHERE component = $1 AND tag = $2 AND arch = $3",
                    )
                    .bind(&b[0])
                    .bind(&b[1])
                    .bind(&b[2])
                    .fetch_optional(&pool)
                    .await?;
                    let Some(old) = old else {
                        continue; // removed in between: try again
                    };
                    let existing: Record = decode(&label, &old)?;
                    return Ok(if existing.blake3 == blake3 {
                        PutOutcome::Unchanged(existing)
                    } else {
                        PutOutcome::Conflict(existing)
                    });
                }
                // an entry exists: compare and replace it, under its row lock
                let mut tx = pool.begin().await?;
                let old: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT doc FROM components \
                     WHERE component = $1 AND tag = $2 AND arch = $3 FOR UPDATE",
                )
                .bind(&b[0])
                .bind(&b[1])
                .bind(&b[2])
                .fetch_optional(&mut *tx)
                .await?;
                let Some(old) = old else {
                    // removed in between: try again
                    tx.rollback().await?;
                    continue;
                };
                let existing: Record = decode(&label, &old)?;
                if existing.blake3 == blake3 {
                    tx.rollback().await?;
                    return Ok(PutOutcome::Unchanged(existing));
                }
                sqlx::query(
                    "UPDATE components SET blake3 = $4, doc = $5 \
                     WHERE component = $1 AND tag = $2 AND arch = $3",
                )
                .bind(&b[0])
                .bind(&b[1])
                .bind(&b[2])
                .bind(&blake3)
                .bind(&doc)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(PutOutcome::Replaced(existing));
            }
        })
    }

    pub(super) fn list_records(
        &self,
        prefix: &str,
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        let Some((lower, upper)) = prefix_range(prefix) else {
            return Ok(Vec::new());
        };
        let after = match after {
            Some(a) if !key_nul_free(a) => return Ok(Vec::new()),
            Some(a) => Some(key_binds(a)),
            None => None,
        };
        let mut binds: Vec<String> = lower.into();
        let sql = match (&after, upper) {
            (None, None) => {
                "SELECT component, tag, arch, doc FROM components \
                 WHERE (component, tag, arch) >= ($1, $2, $3) \
                 ORDER BY component, tag, arch LIMIT $4"
            }
            (None, Some(u)) => {
                binds.extend(u);
                "SELECT component, tag, arch, doc FROM components \
                 WHERE (component, tag, arch) >= ($1, $2, $3) \
                 AND (component, tag, arch) < ($4, $5, $6) \
                 ORDER BY component, tag, arch LIMIT $7"
            }
            (Some(a), None) => {
                binds.extend(a.iter().cloned());
                "SELECT component, tag, arch, doc FROM components \
                 WHERE (component, tag, arch) >= ($1, $2, $3) \
                 AND (component, tag, arch) > ($4, $5, $6) \
                 ORDER BY component, tag, arch LIMIT $7"
            }
            (Some(a), Some(u)) => {
                binds.extend(a.iter().cloned());
                binds.extend(u);
                "SELECT component, tag, arch, doc FROM components \
                 WHERE (component, tag, arch) >= ($1, $2, $3) \
                 AND (component, tag, arch) > ($4, $5, $6) \
                 AND (component, tag, arch) < ($7, $8, $9) \
                 ORDER BY component, tag, arch LIMIT $10"
            }
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.records("listing records", sql, binds, Some(limit))
    }

    pub(super) fn update_same_blob(&self, rec: &Record) -> Result<bool> {
        let key = rec.key();
        if !key_nul_free(&key) {
            return Ok(false);
        }
        let doc = encode(&key.display_path(), rec)?;
        let pool = self.pool.clone();
        let b = key_binds(&key);
        let blake3 = rec.blake3.clone();
        self.run(format_args!("updating the record of {key}"), async move {
            let r = sqlx::query(
                "UPDATE components SET doc = $5 \
                 WHERE component = $1 AND tag = $2 AND arch = $3 AND blake3 = $4",
            )
            .bind(&b[0])
            .bind(&b[1])
            .bind(&b[2])
            .bind(&blake3)
            .bind(&doc)
            .execute(&pool)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    pub(super) fn store_image(&self, rec: &ImageRecord) -> Result<()> {
        let key = ImageKey {
            component: rec.component.clone(),
            branch: rec.branch.clone(),
            arch: rec.arch.clone(),
        };
        let what = format!("storing the image record of {key}");
        let b = image_binds(&key);
        no_nul(&what, &[&b[0], &b[1], &b[2]])?;
        let doc = encode(&key.to_string(), rec)?;
        let pool = self.pool.clone();
        self.run(what, async move {
            sqlx::query(
                "INSERT INTO images (component, branch, arch, doc) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (component, branch, arch) DO UPDATE SET doc = EXCLUDED.doc",
            )
            .bind(&b[0])
            .bind(&b[1])
            .bind(&b[2])
            .bind(doc)
            .execute(&pool)
            .await?;
            Ok(())
        })
    }

    pub(super) fn list_images(&self, prefix: &str, limit: usize) -> Result<Vec<ImageRecord>> {
        let Some((lower, upper)) = prefix_range(prefix) else {
            return Ok(Vec::new());
        };
        let mut binds: Vec<String> = lower.into();
        let sql = match upper {
            None => {
                "SELECT doc FROM images WHERE (component, branch, arch) >= ($1, $2, $3) \
                 ORDER BY component, branch, arch LIMIT $4"
            }
            Some(u) => {
                binds.extend(u);
                "SELECT doc FROM images WHERE (component, branch, arch) >= ($1, $2, $3) \
                 AND (component, branch, arch) < ($4, $5, $6) \
                 ORDER BY component, branch, arch LIMIT $7"
            }
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let pool = self.pool.clone();
        let docs: Vec<Vec<u8>> = self.run("listing image records", async move {
            let mut q = sqlx::query_scalar(sql);
            for b in binds {
                q = q.bind(b);
            }
            Ok(q.bind(limit).fetch_all(&pool).await?)
        })?;
        docs.iter().map(|d| decode("image", d)).collect()
    }
}
