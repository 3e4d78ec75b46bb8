//! Jobs and leases in PostgreSQL, across replicas.
//!
//! - Single flight: `flights` maps a key to the job in flight. Enqueueing
//!   inserts the key (`ON CONFLICT DO NOTHING`: a concurrent insert waits
//!   for the other transaction), else locks the row and looks at its job;
//!   only when that job is final does the key move to the new job.
//! - Claims: the oldest queued job a replica may run, locked with
//!   `FOR UPDATE SKIP LOCKED`, so two claims never get one job and never
//!   wait on each other.
//! - Leases (of running jobs and of named leases) are the database's clock.

use std::time::Duration;

use sqlx::Row;

use super::{decode, encode, Enqueued, IndexError, PgIndex, Result, Task};
use crate::model::{Job, JobState};

/// The `state` column: the job's state as its JSON names it.
pub(super) fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Success => "success",
        JobState::Failed => "failed",
        JobState::Interrupted => "interrupted",
        JobState::Cancelled => "cancelled",
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The columns a job's row repeats from its document.
struct JobRow {
    id: String,
    state: &'static str,
    replica: Option<String>,
    pinned: Option<String>,
    flight: Option<String>,
    attempts: i32,
    created: String,
    doc: Vec<u8>,
}

impl JobRow {
    fn new(job: &Job) -> Result<JobRow> {
        let texts = [
            Some(job.id.as_str()),
            job.replica.as_deref(),
            job.pinned.as_deref(),
            job.flight.as_deref(),
        ];
        if texts.iter().flatten().any(|t| t.contains('\0')) {
            return Err(IndexError::Db(format!(
                "storing job {}: a name holds a NUL character, which the database cannot store",
                job.id.replace('\0', "")
            )));
        }
        Ok(JobRow {
            id: job.id.clone(),
            state: state_name(job.state),
            replica: job.replica.clone(),
            pinned: job.pinned.clone(),
            flight: job.flight.clone(),
            attempts: i32::try_from(job.attempts).unwrap_or(i32::MAX),
            created: job.created.to_rfc3339(),
            doc: encode(&job.id, job)?,
        })
    }
}

/// Inserts or replaces a job (its lease is kept while it runs).
const UPSERT_JOB: &str =
    "INSERT INTO jobs (id, state, replica, pinned, flight, attempts, created, doc) \
     VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $8) \
     ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, replica = EXCLUDED.replica, \
     pinned = EXCLUDED.pinned, flight = EXCLUDED.flight, attempts = EXCLUDED.attempts, \
     doc = EXCLUDED.doc, \
     lease_until = CASE WHEN EXCLUDED.state = 'running' THEN jobs.lease_until END";

fn upsert(r: &JobRow) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(UPSERT_JOB)
        .bind(&r.id)
        .bind(r.state)
        .bind(&r.replica)
        .bind(&r.pinned)
        .bind(&r.flight)
        .bind(r.attempts)
        .bind(&r.created)
        .bind(&r.doc)
}

fn decode_rows(rows: Vec<sqlx::postgres::PgRow>) -> Task<Vec<Job>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get(0)?;
        out.push(decode(&id, &r.try_get::<Vec<u8>, _>(1)?)?);
    }
    Ok(out)
}

impl PgIndex {
    pub(super) fn get_job(&self, id: &str) -> Result<Option<Job>> {
        if id.contains('\0') {
            return Ok(None);
        }
        self.fetch_doc(
            format_args!("reading job {id}"),
            "SELECT doc FROM jobs WHERE id = $1",
            vec![id.to_owned()],
        )?
        .map(|v| decode(id, &v))
        .transpose()
    }

    pub(super) fn upsert_job(&self, job: &Job) -> Result<()> {
        let row = JobRow::new(job)?;
        let pool = self.pool.clone();
        self.run(format_args!("storing job {}", job.id), async move {
            upsert(&row).execute(&pool).await?;
            Ok(())
        })
    }

    /// Jobs of a query returning (id, doc).
    fn job_list(&self, what: &str, sql: &'static str, bind: Option<i64>) -> Result<Vec<Job>> {
        let pool = self.pool.clone();
        self.run(what, async move {
            let mut q = sqlx::query(sql);
            if let Some(b) = bind {
                q = q.bind(b);
            }
            decode_rows(q.fetch_all(&pool).await?)
        })
    }

    pub(super) fn newest_jobs(&self, limit: usize) -> Result<Vec<Job>> {
        self.job_list(
            "listing jobs",
            "SELECT id, doc FROM jobs ORDER BY id DESC LIMIT $1",
            Some(i64::try_from(limit).unwrap_or(i64::MAX)),
        )
    }

    pub(super) fn jobs_unfinished(&self) -> Result<Vec<Job>> {
        self.job_list(
            "listing unfinished jobs",
            "SELECT id, doc FROM jobs WHERE state IN ('queued', 'running') ORDER BY id",
            None,
        )
    }

    pub(super) fn expired(&self) -> Result<Vec<Job>> {
        self.job_list(
            "listing jobs whose lease expired",
            "SELECT id, doc FROM jobs WHERE state = 'running' AND lease_until < now() ORDER BY id",
            None,
        )
    }

    pub(super) fn enqueue(&self, job: &Job) -> Result<Enqueued> {
        let row = JobRow::new(job)?;
        let Some(flight) = row.flight.clone() else {
            self.upsert_job(job)?;
            return Ok(Enqueued::New);
        };
        let pool = self.pool.clone();
        self.run(format_args!("queueing job {}", job.id), async move {
            let mut tx = pool.begin().await?;
            let took = sqlx::query(
                "INSERT INTO flights (key, job_id) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(&flight)
            .bind(&row.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !took {
                // the key is taken: lock it, then look at its job (a
                // statement of its own, so it sees what committed meanwhile)
                let current: String =
                    sqlx::query_scalar("SELECT job_id FROM flights WHERE key = $1 FOR UPDATE")
                        .bind(&flight)
                        .fetch_one(&mut *tx)
                        .await?;
                let doc: Option<Vec<u8>> = sqlx::query_scalar("SELECT doc FROM jobs WHERE id = $1")
                    .bind(&current)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(doc) = doc {
                    let other: Job = decode(&current, &doc)?;
                    if !other.state.is_final() {
                        tx.rollback().await?;
                        return Ok(Enqueued::Joined(Box::new(other)));
                    }
                }
                sqlx::query("UPDATE flights SET job_id = $2 WHERE key = $1")
                    .bind(&flight)
                    .bind(&row.id)
                    .execute(&mut *tx)
                    .await?;
            }
            upsert(&row).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Enqueued::New)
        })
    }

    pub(super) fn claim(&self, replica: &str, lease: Duration) -> Result<Option<Job>> {
        if replica.contains('\0') {
            return Err(IndexError::Db(
                "claiming a job: the replica's name holds a NUL character".into(),
            ));
        }
        let pool = self.pool.clone();
        let who = replica.to_owned();
        let lease = millis(lease);
        self.run(format_args!("claiming a job for {replica}"), async move {
            let replica = who;
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "SELECT id, doc, (extract(epoch FROM now()) * 1000000)::bigint FROM jobs \
                 WHERE state = 'queued' AND (pinned IS NULL OR pinned = $1) \
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .bind(&replica)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Ok(None);
            };
            let id: String = row.try_get(0)?;
            let mut job: Job = decode(&id, &row.try_get::<Vec<u8>, _>(1)?)?;
            let now = chrono::DateTime::from_timestamp_micros(row.try_get(2)?)
                .unwrap_or_else(chrono::Utc::now);
            job.state = JobState::Running;
            job.replica = Some(replica.clone());
            job.started.get_or_insert(now);
            job.attempts = job.attempts.saturating_add(1);
            let doc = encode(&id, &job)?;
            sqlx::query(
                "UPDATE jobs SET state = 'running', replica = $2, attempts = $3, doc = $4, \
                 lease_until = now() + $5 * interval '1 millisecond' WHERE id = $1",
            )
            .bind(&id)
            .bind(&replica)
            .bind(i32::try_from(job.attempts).unwrap_or(i32::MAX))
            .bind(doc)
            .bind(lease)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(job))
        })
    }

    pub(super) fn renew(&self, replica: &str, lease: Duration) -> Result<()> {
        if replica.contains('\0') {
            return Ok(());
        }
        let pool = self.pool.clone();
        let who = replica.to_owned();
        let lease = millis(lease);
        self.run(
            format_args!("renewing the leases of {replica}"),
            async move {
                let replica = who;
                sqlx::query(
                    "UPDATE jobs SET lease_until = now() + $2 * interval '1 millisecond' \
                 WHERE state = 'running' AND replica = $1",
                )
                .bind(&replica)
                .bind(lease)
                .execute(&pool)
                .await?;
                Ok(())
            },
        )
    }

    pub(super) fn replace(&self, job: &Job, holder: Option<&str>) -> Result<bool> {
        let row = JobRow::new(job)?;
        let holder = holder.map(str::to_owned);
        let pool = self.pool.clone();
        self.run(format_args!("updating job {}", job.id), async move {
            let r = sqlx::query(
                "UPDATE jobs SET state = $2, replica = $3, pinned = $4, flight = $5, \
                 attempts = $6, doc = $7, \
                 lease_until = CASE WHEN $2 = 'running' THEN lease_until END \
                 WHERE id = $1 AND replica IS NOT DISTINCT FROM $8",
            )
            .bind(&row.id)
            .bind(row.state)
            .bind(&row.replica)
            .bind(&row.pinned)
            .bind(&row.flight)
            .bind(row.attempts)
            .bind(&row.doc)
            .bind(&holder)
            .execute(&pool)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    pub(super) fn take_up(&self, job: &Job, holder: &str) -> Result<bool> {
        let row = JobRow::new(job)?;
        let holder = holder.to_owned();
        let pool = self.pool.clone();
        self.run(format_args!("taking up job {}", job.id), async move {
            let r = sqlx::query(
                "UPDATE jobs SET state = $2, replica = $3, pinned = $4, flight = $5, \
                 attempts = $6, doc = $7, lease_until = NULL \
                 WHERE id = $1 AND replica = $8 AND state = 'running' AND lease_until < now()",
            )
            .bind(&row.id)
            .bind(row.state)
            .bind(&row.replica)
            .bind(&row.pinned)
            .bind(&row.flight)
            .bind(row.attempts)
            .bind(&row.doc)
            .bind(&holder)
            .execute(&pool)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    pub(super) fn take_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let what = format!("taking the lease {name}");
        if name.contains('\0') || holder.contains('\0') {
            return Err(IndexError::Db(format!(
                "{what}: a name holds a NUL character"
            )));
        }
        let pool = self.pool.clone();
        let (n, h) = (name.to_owned(), holder.to_owned());
        let ttl = millis(ttl);
        self.run(what, async move {
            let got = sqlx::query(
                "INSERT INTO leases (name, holder, until) \
                 VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
                 WHERE leases.until < now() OR leases.holder = EXCLUDED.holder \
                 RETURNING 1",
            )
            .bind(n)
            .bind(h)
            .bind(ttl)
            .fetch_optional(&pool)
            .await?;
            Ok(got.is_some())
        })
    }

    pub(super) fn give_up_lease(&self, name: &str, holder: &str) -> Result<()> {
        if name.contains('\0') || holder.contains('\0') {
            return Ok(());
        }
        self.execute(
            format_args!("giving up the lease {name}"),
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            vec![name.to_owned(), holder.to_owned()],
        )?;
        Ok(())
    }
}
