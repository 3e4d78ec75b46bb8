//! Searching records by words of their key: `position()` of each word in
//! the lower-cased `component/tag/arch` (no pattern characters to escape,
//! unlike LIKE), within the prefix's range of keys.

use super::keys::{key_binds, key_nul_free, nul_free, prefix_range};
use super::{Counts, PgIndex, Result};
use crate::model::{ComponentKey, Record};

/// The WHERE clause of a search and its binds (`$1`...): the prefix's
/// range of keys, then one `position()` per word. `None`: nothing matches.
fn conditions(prefix: &str, words: &[String]) -> Option<(String, Vec<String>)> {
    if !nul_free(&[prefix]) || !words.iter().all(|w| nul_free(&[w])) {
        return None;
    }
    let (lower, upper) = prefix_range(prefix)?;
    let mut binds: Vec<String> = lower.into();
    let mut sql = "(component, tag, arch) >= ($1, $2, $3)".to_owned();
    if let Some(u) = upper {
        binds.extend(u);
        sql.push_str(" AND (component, tag, arch) < ($4, $5, $6)");
    }
    for w in words {
        binds.push(w.to_lowercase());
        sql.push_str(&format!(
            " AND position(${} in lower(component || '/' || tag || '/' || arch)) > 0",
            binds.len()
        ));
    }
    Some((sql, binds))
}

impl PgIndex {
    pub(super) fn search_records(
        &self,
        prefix: &str,
        words: &[String],
        after: Option<&ComponentKey>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        let Some((mut cond, mut binds)) = conditions(prefix, words) else {
            return Ok(Vec::new());
        };
        if let Some(a) = after {
            if !key_nul_free(a) {
                return Ok(Vec::new());
            }
            let n = binds.len();
            binds.extend(key_binds(a));
            cond.push_str(&format!(
                " AND (component, tag, arch) > (${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3
            ));
        }
        let sql = format!(
            "SELECT component, tag, arch, doc FROM components WHERE {cond} \
             ORDER BY component, tag, arch LIMIT ${}",
            binds.len() + 1
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // only fixed text and `$n` placeholders: every value is a bind
        self.records(
            "searching records",
            sqlx::AssertSqlSafe(sql),
            binds,
            Some(limit),
        )
    }

    pub(super) fn count_records(&self, prefix: &str, words: &[String]) -> Result<Counts> {
        let Some((cond, binds)) = conditions(prefix, words) else {
            return Ok(Counts::default());
        };
        let sql =
            format!("SELECT count(*), count(DISTINCT component) FROM components WHERE {cond}");
        let pool = self.pool.clone();
        let (records, components): (i64, i64) = self.run("counting records", async move {
            // only fixed text and `$n` placeholders: every value is a bind
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for b in binds {
                q = q.bind(b);
            }
            Ok(q.fetch_one(&pool).await?)
        })?;
        Ok(Counts {
            records: u64::try_from(records).unwrap_or(0),
            components: u64::try_from(components).unwrap_or(0),
        })
    }
}
