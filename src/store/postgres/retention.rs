//! Retention on PostgreSQL: delete rows whose `time` is older than a cutoff, in
//! bounded batches (each its own statement, so writers and readers get their turn),
//! and ledger rows old enough that their chunk cannot come back.

use super::catalog::{columns, table_names};
use super::conn::{describe_error, qualified};
use super::{LEDGER, PgStore};
use crate::store::retention::PurgeReport;
use crate::store::writer::TIME;
use std::sync::atomic::Ordering;

impl PgStore {
    /// Deletes every row with `time < cutoff` (unix seconds) in every database, at
    /// most `batch` rows per statement.
    pub async fn purge(&self, cutoff: i64, batch: usize) -> anyhow::Result<PurgeReport> {
        let conn = self.conn().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to PostgreSQL at {}: {}",
                self.target(),
                describe_error(&e)
            )
        })?;
        let client = &conn.client;
        let batch = batch.max(1);
        let mut report = PurgeReport::default();
        let dbs = self
            .database_names_on(client)
            .await
            .map_err(|e| anyhow::anyhow!("listing databases: {}", describe_error(&e)))?;
        for db in dbs {
            report.databases += 1;
            for table in table_names(client, &db).await? {
                if !columns(client, &db, &table)
                    .await?
                    .iter()
                    .any(|c| c.name == TIME)
                {
                    continue;
                }
                report.tables += 1;
                let qt = qualified(&db, &table);
                let sql = format!(
                    "DELETE FROM {qt} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {qt} WHERE \"{TIME}\" < $1 LIMIT {batch}))"
                );
                loop {
                    let n = client.execute(&sql, &[&cutoff]).await.map_err(|e| {
                        anyhow::anyhow!("database {db}, table {table}: {}", describe_error(&e))
                    })?;
                    report.rows += n;
                    self.stats().rows_purged.fetch_add(n, Ordering::Relaxed);
                    if n < batch as u64 {
                        break;
                    }
                }
            }
            // As in SQLite: ids are kept a week at least, whatever the retention.
            let ledger_cutoff = cutoff.min(crate::store::retention::cutoff(
                crate::store::retention::LEDGER_MIN_KEEP,
            ));
            client
                .execute(
                    &format!(
                        "DELETE FROM {} WHERE \"stored_at\" < $1",
                        qualified(&db, LEDGER)
                    ),
                    &[&ledger_cutoff],
                )
                .await
                .map_err(|e| {
                    anyhow::anyhow!("database {db}, chunk ledger: {}", describe_error(&e))
                })?;
        }
        self.put(conn);
        Ok(report)
    }
}
