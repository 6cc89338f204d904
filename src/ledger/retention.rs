//! Retention of raw bodies: `terra.delivery_bodies` is partitioned by the UTC day a delivery
//! was received, and pruning drops whole partitions that lie entirely before the cutoff. The
//! ledger's metadata rows (dedupe key, sha256, size, status) stay, so redeliveries remain
//! duplicates, and bodies of deliveries that are not processed are kept apart first.
//!
//! Dropping a partition costs the same whatever the ledger's size and leaves no dead rows;
//! its only lock that blocks ingestion is `DETACH`'s brief one on the parent table, bounded by
//! a lock timeout (the partition is retried later rather than making webhooks wait).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;

/// Days of partitions kept ready ahead of today, so an insert never lacks one.
const DAYS_AHEAD: i32 = 14;

/// How long dropping one partition may wait for the table lock before it is left for later.
const LOCK_TIMEOUT: &str = "500ms";

/// Tries per partition when the lock is busy.
const LOCK_TRIES: u32 = 5;

/// When raw bodies are removed.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Remove bodies of processed deliveries older than this; `None` keeps them forever.
    pub retain_bodies: Option<Duration>,
    /// How often `serve` prepares partitions and, with `retain_bodies`, prunes.
    pub every: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            retain_bodies: None,
            every: Duration::from_secs(3600),
        }
    }
}

/// What one prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Day partitions dropped.
    pub partitions_dropped: u32,
    /// Partitions left for a later run because the table was busy.
    pub partitions_busy: u32,
    /// Bodies removed.
    pub bodies_removed: i64,
    /// Bodies kept past their partition because their deliveries are not processed.
    pub bodies_kept: i64,
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removed {} bodies ({} partitions dropped), kept {} of unprocessed deliveries",
            self.bodies_removed, self.partitions_dropped, self.bodies_kept
        )?;
        if self.partitions_busy > 0 {
            write!(
                f,
                "; {} partitions left for the next run (table busy)",
                self.partitions_busy
            )?;
        }
        Ok(())
    }
}

/// Creates the day partitions up to two weeks ahead; returns how many were created.
pub async fn prepare_partitions(pool: &PgPool) -> Result<i32, sqlx::Error> {
    let made = sqlx::query_scalar!(
        r#"SELECT terra.ensure_body_partitions($1) AS "made!""#,
        DAYS_AHEAD
    )
    .fetch_one(pool)
    .await?;
    Ok(made)
}

/// Removes the raw bodies of processed deliveries received before `now - retain`: whole day
/// partitions, then the few stray rows (the default partition, kept bodies since processed).
pub async fn prune(
    pool: &PgPool,
    retain: Duration,
    now: DateTime<Utc>,
) -> Result<PruneReport, sqlx::Error> {
    let cutoff = now - chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
    prepare_partitions(pool).await?;
    let due = sqlx::query_scalar!(
        r#"SELECT name AS "name!" FROM terra.body_partitions WHERE ends <= $1 ORDER BY starts"#,
        cutoff
    )
    .fetch_all(pool)
    .await?;
    let mut report = PruneReport::default();
    for partition in due {
        match drop_partition(pool, &partition, cutoff).await? {
            Some((removed, kept)) => {
                report.partitions_dropped += 1;
                report.bodies_removed += removed;
                report.bodies_kept += kept;
                tracing::info!(partition, removed, kept, "body partition dropped");
            }
            None => report.partitions_busy += 1,
        }
    }
    report.bodies_removed += remove_strays(pool, cutoff).await?;
    Ok(report)
}

/// Drops one partition in its own transaction; `None` when the table stayed busy.
async fn drop_partition(
    pool: &PgPool,
    partition: &str,
    cutoff: DateTime<Utc>,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    for attempt in 1..=LOCK_TRIES {
        let mut tx = pool.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        let dropped = sqlx::query!(
            r#"SELECT removed AS "removed!", kept AS "kept!"
               FROM terra.drop_body_partition($1, $2)"#,
            partition,
            cutoff
        )
        .fetch_one(&mut *tx)
        .await;
        match dropped {
            Ok(row) => {
                tx.commit().await?;
                return Ok(Some((row.removed, row.kept)));
            }
            Err(err) if is_lock_timeout(&err) => {
                tracing::debug!(partition, attempt, "body partition busy; trying again");
                drop(tx);
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
            Err(err) => return Err(err),
        }
    }
    tracing::warn!(
        partition,
        "body partition left for the next prune: the table stayed busy"
    );
    Ok(None)
}

fn is_lock_timeout(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "55P03")
}

/// Bodies outside the day partitions that are due: rows the default partition caught, and kept
/// bodies whose deliveries have been processed since.
async fn remove_strays(pool: &PgPool, cutoff: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    let removed = sqlx::query_scalar!(
        r#"
        WITH default_rows AS (
            DELETE FROM terra.delivery_bodies_default b USING terra.deliveries d
            WHERE d.id = b.delivery_id AND d.status = 'done' AND b.received_at < $1
            RETURNING 1
        ), kept_rows AS (
            DELETE FROM terra.delivery_bodies_kept b USING terra.deliveries d
            WHERE d.id = b.delivery_id AND d.status = 'done' AND b.received_at < $1
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM default_rows) + (SELECT count(*) FROM kept_rows) AS "n!"
        "#,
        cutoff
    )
    .fetch_one(pool)
    .await?;
    Ok(removed)
}

/// Runs partition upkeep and, when a retention period is set, pruning every `config.every`
/// until `stop` turns true. Failures are logged and retried on the next round.
pub async fn maintain(pool: PgPool, config: RetentionConfig, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(config.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Err(err) = prepare_partitions(&pool).await {
            tracing::error!(error = %err, "cannot create the ledger's body partitions");
        }
        let Some(retain) = config.retain_bodies else {
            continue;
        };
        match prune(&pool, retain, Utc::now()).await {
            Ok(report) => tracing::info!(%report, "raw bodies pruned"),
            Err(err) => tracing::error!(error = %err, "pruning raw bodies failed"),
        }
    }
}
