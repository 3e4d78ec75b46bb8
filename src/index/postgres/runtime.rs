//! Running a query on the index's own runtime and waiting for it (the
//! [`Index`](crate::index::Index) trait is blocking), within a time limit.

use std::fmt::Display;
use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use super::{db_error, Fail, IndexError, PgIndex, Result, Task, OPERATION_TIMEOUT};

impl PgIndex {
    /// Runs `fut` on the index's runtime and waits for it.
    pub(super) fn run<T: Send + 'static>(
        &self,
        what: impl Display,
        fut: impl Future<Output = Task<T>> + Send + 'static,
    ) -> Result<T> {
        self.run_within(what, OPERATION_TIMEOUT, fut)
    }

    pub(super) fn run_within<T: Send + 'static>(
        &self,
        what: impl Display,
        limit: Duration,
        fut: impl Future<Output = Task<T>> + Send + 'static,
    ) -> Result<T> {
        let Some(rt) = &self.rt else {
            return Err(IndexError::Db(format!("{what}: the index is closed")));
        };
        let (tx, rx) = mpsc::sync_channel(1);
        rt.spawn(async move {
            let r = tokio::time::timeout(limit, fut).await;
            let _ = tx.send(r);
        });
        match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(Fail::Sql(e)))) => Err(db_error(what, e)),
            Ok(Ok(Err(Fail::Index(e)))) => Err(e),
            Ok(Err(_)) => Err(IndexError::Db(format!(
                "the PostgreSQL database does not answer ({what}): nothing within {} seconds",
                limit.as_secs()
            ))),
            Err(_) => Err(IndexError::Db(format!("{what}: the task stopped"))),
        }
    }
}
