//! Connecting: the schema first (embedded migrations), then the pool.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;

use super::{db_error, IndexError, Result, ACQUIRE_TIMEOUT};

/// How long a pooled connection may sit idle before it is checked first.
const IDLE_CHECK: Duration = Duration::from_secs(30);

pub(super) async fn connect(opts: PgConnectOptions, max: u32) -> Result<PgPool> {
    let unreachable = |e| db_error("opening the PostgreSQL index", e);
    // the schema first, on a connection of its own: sqlx's migrator holds a
    // session lock while it works, which must not stay on a pooled one
    let mut conn = PgConnection::connect_with(&opts)
        .await
        .map_err(unreachable)?;
    // (run_direct: sqlx's own way around a lifetime limit of `run` here)
    let migrated = migrator().run_direct(None, &mut conn, false).await;
    let _ = conn.close().await;
    migrated.map_err(|e| {
        IndexError::Db(format!(
            "the PostgreSQL index's tables could not be set up: {e}"
        ))
    })?;
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // the server gives up on a statement when the caller would (a SET,
        // not a startup option, which connection poolers may refuse)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET statement_timeout = '60s'")
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        // check only connections that sat idle a while (a check costs a
        // round trip on every query)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_CHECK {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(opts)
        .await
        .map_err(unreachable)
}

/// The schema, embedded (`migrations/` at the crate root).
fn migrator() -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use sqlx::SqlSafeStr;
    // A replica of the previous version may start on a schema a newer one
    // migrated: migrations only add (tables, columns with defaults,
    // indexes), so they stay readable by the version before.
    let mut m = Migrator::with_migrations(vec![
        Migration::new(
            1,
            "index".into(),
            MigrationType::Simple,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/0001_index.sql"
            ))
            .into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "job logs".into(),
            MigrationType::Simple,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/0002_job_logs.sql"
            ))
            .into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "api keys".into(),
            MigrationType::Simple,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/0003_keys.sql"
            ))
            .into_sql_str(),
            false,
        ),
    ]);
    m.set_ignore_missing(true);
    m
}

#[cfg(test)]
mod tests {
    /// Every file of `migrations/` is embedded (they are listed by hand).
    #[test]
    fn every_migration_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let files = std::fs::read_dir(dir)
            .expect("migrations/")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
            })
            .count();
        assert_eq!(super::migrator().iter().count(), files);
    }
}
