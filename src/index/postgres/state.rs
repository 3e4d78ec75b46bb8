//! Service state written once (`set_meta_if_absent`), and the logs of jobs
//! run by workers elsewhere (`job_logs`, appended chunk by chunk).

use super::keys::{no_nul, nul_free};
use super::PgIndex;
use crate::index::Result;

impl PgIndex {
    pub(super) fn meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        let what = format!("storing the service state {key}");
        no_nul(&what, &[key])?;
        let pool = self.pool.clone();
        let (k, v) = (key.to_owned(), value.to_vec());
        self.run(what, async move {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(&k)
            .bind(&v)
            .execute(&pool)
            .await?;
            let now: Vec<u8> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                .bind(&k)
                .fetch_one(&pool)
                .await?;
            Ok(now)
        })
    }

    pub(super) fn meta_delete(&self, key: &str) -> Result<()> {
        if !nul_free(&[key]) {
            return Ok(());
        }
        self.execute(
            format_args!("removing the service state {key}"),
            "DELETE FROM meta WHERE key = $1",
            vec![key.to_owned()],
        )?;
        Ok(())
    }

    pub(super) fn log_append(&self, id: &str, chunk: &[u8]) -> Result<()> {
        let what = format!("appending to the log of job {id}");
        no_nul(&what, &[id])?;
        let pool = self.pool.clone();
        let (id, chunk) = (id.to_owned(), chunk.to_vec());
        self.run(what, async move {
            // one writer per job (its worker); the offset follows the last chunk
            sqlx::query(
                "INSERT INTO job_logs (job_id, at, chunk) \
                 SELECT $1, COALESCE(MAX(at + length(chunk)), 0), $2 FROM job_logs WHERE job_id = $1",
            )
            .bind(&id)
            .bind(&chunk)
            .execute(&pool)
            .await?;
            Ok(())
        })
    }

    pub(super) fn log_read(&self, id: &str, from: u64, max: usize) -> Result<Vec<u8>> {
        if !nul_free(&[id]) {
            return Ok(Vec::new());
        }
        let pool = self.pool.clone();
        let id2 = id.to_owned();
        let from_i = i64::try_from(from).unwrap_or(i64::MAX);
        let rows: Vec<(i64, Vec<u8>)> =
            self.run(format_args!("reading the log of job {id}"), async move {
                Ok(sqlx::query_as(
                    "SELECT at, chunk FROM job_logs WHERE job_id = $1 AND at + length(chunk) > $2 \
                     ORDER BY at LIMIT 10000",
                )
                .bind(&id2)
                .bind(from_i)
                .fetch_all(&pool)
                .await?)
            })?;
        Ok(crate::index::log_from(
            rows.into_iter().map(|(at, c)| (at.max(0) as u64, c)),
            from,
            max,
        ))
    }
}
