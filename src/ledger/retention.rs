//! Retention: raw bodies, then the ledger rows nothing needs any more.
//!
//! `terra.delivery_bodies` is partitioned by the UTC day a delivery was received, and pruning
//! drops whole partitions that lie entirely before the cutoff; bodies of deliveries that are
//! not processed are kept apart first. Dropping a partition costs the same whatever the
//! ledger's size and leaves no dead rows. It is detached with `DETACH PARTITION ...
//! CONCURRENTLY`, whose locks block neither inserts nor reads; only the final `DROP` of the
//! detached table locks, and nothing else uses it then.
//!
//! A ledger row (dedupe key, sha256, size, status) outlives its body, so redeliveries remain
//! duplicates. Once older than the dedupe window too, it is removed if no stored row comes
//! from it (a superseded version, an applied lifecycle event): batches of rows in id order,
//! from where the last prune stopped, so each prune examines only what arrived since.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgConnection, PgPool, Postgres};
use tokio::sync::watch;

use super::IngestLoad;

/// Days of partitions kept ready ahead of today, so an insert never lacks one.
const DAYS_AHEAD: i32 = 14;

/// Ledger rows examined per statement when removing those no stored row comes from: about
/// 0.015 ms a row on an idle machine and a few times that under load, so a batch holds its
/// locks for a few tens of milliseconds.
const LEDGER_BATCH: i32 = 1_000;

/// The largest share of one connection's time the removal of ledger rows takes: after each
/// batch it rests long enough to stay within it. Every share of the CPU it takes from a small
/// machine shows in the acknowledgements' tail, in proportion; a larger share finishes a long
/// catch-up sooner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneShare(f64);

impl PruneShare {
    /// A share from a hundredth to all of it; `None` outside that.
    pub fn new(share: f64) -> Option<Self> {
        (0.01..=1.0).contains(&share).then_some(Self(share))
    }

    /// The share as a fraction of one.
    pub fn get(self) -> f64 {
        self.0
    }

    /// How long to rest after a batch that took `batch`.
    fn rest_after(self, batch: Duration) -> Duration {
        batch.mul_f64(1.0 / self.0 - 1.0)
    }
}

impl Default for PruneShare {
    /// A twentieth: on a 2-core machine its cost to the acknowledgements is within a
    /// millisecond, and a million ledger rows still go in minutes.
    fn default() -> Self {
        Self(0.05)
    }
}

impl std::fmt::Display for PruneShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Rounded, so that 0.07 shows as 7% rather than 7.000000000000001%.
        write!(f, "{}%", (self.0 * 100.0 * 1e6).round() / 1e6)
    }
}

/// How long a ledger row is kept by default after its body, for recognising redeliveries:
/// well beyond Terra's day of retries.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// When raw bodies are removed.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Remove bodies of processed deliveries older than this; `None` keeps them forever.
    pub retain_bodies: Option<Duration>,
    /// Keep ledger rows no stored row comes from at least this long; `None` keeps them forever.
    pub dedupe_window: Option<Duration>,
    /// How often `serve` prepares partitions and, with `retain_bodies`, prunes.
    pub every: Duration,
    /// The pace of removing ledger rows.
    pub share: PruneShare,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            retain_bodies: None,
            dedupe_window: Some(DEFAULT_DEDUPE_WINDOW),
            every: Duration::from_secs(3600),
            share: PruneShare::default(),
        }
    }
}

/// What one prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Day partitions dropped.
    pub partitions_dropped: u32,
    /// Bodies removed.
    pub bodies_removed: i64,
    /// Bodies kept past their partition because their deliveries are not processed.
    pub bodies_kept: i64,
    /// Ledger rows removed: processed, past the dedupe window, and no stored row comes from them.
    pub ledger_rows_removed: i64,
    /// Another prune (another replica, or the command) was running: this one did nothing.
    pub already_running: bool,
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.already_running {
            return write!(f, "another prune is running; nothing done");
        }
        write!(
            f,
            "removed {} bodies ({} partitions dropped), kept {} of unprocessed deliveries; \
             removed {} ledger rows no stored row comes from",
            self.bodies_removed,
            self.partitions_dropped,
            self.bodies_kept,
            self.ledger_rows_removed
        )
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
/// partitions, then kept bodies whose deliveries have been processed since. With a
/// `dedupe_window`, then removes the processed ledger rows no stored row comes from that were
/// received before the longer of the two. One prune runs at a time across replicas (a
/// session advisory lock on a connection of its own). Ledger rows go at the pace of `share`.
pub async fn prune(
    pool: &PgPool,
    retain: Duration,
    dedupe_window: Option<Duration>,
    share: PruneShare,
    now: DateTime<Utc>,
) -> Result<PruneReport, sqlx::Error> {
    let pacing = Pacing {
        share,
        serving: None,
    };
    prune_until(pool, retain, dedupe_window, now, pacing).await
}

/// How the removal of ledger rows paces itself.
struct Pacing<'a> {
    share: PruneShare,
    /// Inside `serve`, what it also yields to.
    serving: Option<&'a mut Serving>,
}

/// What a prune inside `serve` yields to between batches of ledger rows.
struct Serving {
    /// Turns true at shutdown: the prune stops at the next batch; the next prune resumes it.
    stop: watch::Receiver<bool>,
    /// While acknowledging keeps the ledger writer busy, the next batch waits.
    ingest: IngestLoad,
}

/// Longest a prune batch waits for a busy ledger writer, so that pruning keeps up even under
/// sustained bursts.
const LONGEST_YIELD: Duration = Duration::from_secs(60);

/// [`prune`], pacing its removal of ledger rows by `serving` when given.
async fn prune_until(
    pool: &PgPool,
    retain: Duration,
    dedupe_window: Option<Duration>,
    now: DateTime<Utc>,
    pacing: Pacing<'_>,
) -> Result<PruneReport, sqlx::Error> {
    let before =
        |age: Duration| now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    let cutoff = before(retain);
    let ledger_cutoff = dedupe_window.map(|window| before(window.max(retain)));
    prepare_partitions(pool).await?;
    let mut conn = pool.acquire().await?;
    let locked = sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_lock(hashtext('terra.delivery_bodies')) AS "locked!""#
    )
    .fetch_one(&mut *conn)
    .await?;
    if !locked {
        return Ok(PruneReport {
            already_running: true,
            ..PruneReport::default()
        });
    }
    let mut pruned = prune_locked(&mut conn, cutoff).await;
    if let (Ok(report), Some(ledger_cutoff)) = (&mut pruned, ledger_cutoff) {
        match prune_ledger(&mut conn, ledger_cutoff, pacing).await {
            Ok(removed) => report.ledger_rows_removed = removed,
            Err(err) => pruned = Err(err),
        }
    }
    release(conn).await;
    pruned
}

/// Gives the advisory lock back; a connection that cannot is closed, which releases it.
async fn release(mut conn: PoolConnection<Postgres>) {
    let unlocked = sqlx::query_scalar!(
        r#"SELECT pg_advisory_unlock(hashtext('terra.delivery_bodies')) AS "unlocked!""#
    )
    .fetch_one(&mut *conn)
    .await;
    if unlocked.is_err() {
        let _ = conn.close().await;
    }
}

/// A partition due for removal.
struct Due {
    name: String,
    starts: DateTime<Utc>,
    ends: DateTime<Utc>,
    detaching: bool,
}

async fn prune_locked(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
) -> Result<PruneReport, sqlx::Error> {
    let due = sqlx::query_as!(
        Due,
        r#"SELECT name AS "name!", starts AS "starts!", ends AS "ends!", detaching AS "detaching!"
           FROM terra.body_partitions WHERE ends <= $1 ORDER BY starts"#,
        cutoff
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut report = PruneReport::default();
    for partition in &due {
        let (removed, kept) = drop_partition(conn, partition).await?;
        report.partitions_dropped += 1;
        report.bodies_removed += removed;
        report.bodies_kept += kept;
        tracing::info!(
            partition = partition.name,
            removed,
            kept,
            "body partition dropped"
        );
    }
    report.bodies_removed += remove_processed_kept(conn, cutoff).await?;
    Ok(report)
}

/// Keeps the unprocessed bodies, detaches the partition (or finishes an interrupted detach),
/// keeps what was requeued meanwhile, and drops it. Returns (removed, kept).
async fn drop_partition(conn: &mut PgConnection, p: &Due) -> Result<(i64, i64), sqlx::Error> {
    let table = format!("terra.\"{}\"", p.name.replace('"', "\"\""));
    let count = format!("SELECT count(*) FROM {table}");
    let rows: i64 = sqlx::query_scalar(&count).fetch_one(&mut *conn).await?;
    let mut kept = 0;
    let detach = if p.detaching {
        format!("ALTER TABLE terra.delivery_bodies DETACH PARTITION {table} FINALIZE")
    } else {
        kept += keep_unprocessed(conn, p).await?;
        format!("ALTER TABLE terra.delivery_bodies DETACH PARTITION {table} CONCURRENTLY")
    };
    // A simple-protocol statement outside any transaction: DETACH ... CONCURRENTLY commits
    // between its two phases.
    conn.execute(detach.as_str()).await?;
    kept += keep_unprocessed(conn, p).await?;
    let drop = format!("DROP TABLE {table}");
    conn.execute(drop.as_str()).await?;
    Ok((rows - kept, kept))
}

async fn keep_unprocessed(conn: &mut PgConnection, p: &Due) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT terra.keep_unprocessed_bodies($1, $2, $3) AS "kept!""#,
        p.name,
        p.starts,
        p.ends
    )
    .fetch_one(conn)
    .await
}

/// Kept bodies whose deliveries have been processed since, and are due.
async fn remove_processed_kept(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let removed = sqlx::query!(
        r#"
        DELETE FROM terra.delivery_bodies_kept b USING terra.deliveries d
        WHERE d.id = b.delivery_id AND d.status = 'done' AND b.received_at < $1
        "#,
        cutoff
    )
    .execute(conn)
    .await?;
    Ok(i64::try_from(removed.rows_affected()).unwrap_or(i64::MAX))
}

/// Removes, batch by batch, the processed ledger rows received before `cutoff` that no stored
/// row references; each batch commits on its own. Between batches it rests long enough to
/// keep within the pace's share, so a long catch-up leaves the database most of its time for
/// ingestion.
/// Returns how many went.
async fn prune_ledger(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    pacing: Pacing<'_>,
) -> Result<i64, sqlx::Error> {
    let Pacing { share, mut serving } = pacing;
    let mut removed = 0;
    loop {
        let started = std::time::Instant::now();
        let batch = sqlx::query!(
            r#"SELECT examined AS "examined!", removed AS "removed!"
               FROM terra.prune_ledger($1, $2)"#,
            cutoff,
            LEDGER_BATCH
        )
        .fetch_one(&mut *conn)
        .await?;
        removed += i64::from(batch.removed);
        if batch.examined < LEDGER_BATCH {
            return Ok(removed);
        }
        let pause = share.rest_after(started.elapsed());
        if rest(pause, serving.as_deref_mut()).await {
            return Ok(removed);
        }
    }
}

/// Waits `pause`, then while the ledger writer is busy (at most [`LONGEST_YIELD`]), or
/// less if serve is stopping; returns whether to stop.
async fn rest(pause: Duration, serving: Option<&mut Serving>) -> bool {
    let Some(Serving { stop, ingest }) = serving else {
        tokio::time::sleep(pause).await;
        return false;
    };
    let yielded = async {
        tokio::time::sleep(pause).await;
        let until = tokio::time::Instant::now() + LONGEST_YIELD;
        ingest.wait_while_busy(until).await;
    };
    tokio::select! {
        () = yielded => false,
        Ok(_) = stop.wait_for(|stop| *stop) => true,
    }
}

/// Runs partition upkeep and, when a retention period is set, pruning every `config.every`
/// until `stop` turns true. Failures are logged and retried on the next round.
pub async fn maintain(
    pool: PgPool,
    config: RetentionConfig,
    stop: watch::Receiver<bool>,
    ingest: IngestLoad,
) {
    let mut ticks = tokio::time::interval(config.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = Serving { stop, ingest };
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = serving.stop.wait_for(|stop| *stop) => return,
        }
        if let Err(err) = prepare_partitions(&pool).await {
            tracing::error!(error = %err, "cannot create the ledger's body partitions");
        }
        let Some(retain) = config.retain_bodies else {
            continue;
        };
        let window = config.dedupe_window;
        let pacing = Pacing {
            share: config.share,
            serving: Some(&mut serving),
        };
        match prune_until(&pool, retain, window, Utc::now(), pacing).await {
            Ok(report) => tracing::info!(%report, "raw bodies pruned"),
            Err(err) => tracing::error!(error = %err, "pruning raw bodies failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::INGEST_BUSY;

    fn serving(waiting: usize) -> (watch::Sender<bool>, Serving) {
        let (stop_tx, stop) = watch::channel(false);
        let ingest = IngestLoad::fixed(waiting);
        (stop_tx, Serving { stop, ingest })
    }

    #[test]
    fn a_share_sets_the_rest_after_each_batch() {
        let batch = Duration::from_millis(40);
        assert_eq!(PruneShare::default().rest_after(batch), batch * 19);
        let tenth = PruneShare::new(0.1).unwrap();
        assert_eq!(tenth.rest_after(batch), batch * 9);
        assert_eq!(
            PruneShare::new(1.0).unwrap().rest_after(batch),
            Duration::ZERO
        );
        for outside in [0.0, 0.005, 1.5, f64::NAN] {
            assert_eq!(PruneShare::new(outside), None, "{outside}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_prune_in_serve_yields_to_a_busy_ledger_writer_for_a_while() {
        let pause = Duration::from_millis(40);
        let (_stop, mut quiet) = serving(INGEST_BUSY - 1);
        let start = tokio::time::Instant::now();
        assert!(!rest(pause, Some(&mut quiet)).await);
        assert_eq!(start.elapsed(), pause);

        let (_stop, mut busy) = serving(INGEST_BUSY);
        let start = tokio::time::Instant::now();
        assert!(!rest(pause, Some(&mut busy)).await);
        let waited = start.elapsed();
        assert!(waited >= pause + LONGEST_YIELD, "{waited:?}");
        assert!(
            waited <= pause + LONGEST_YIELD + Duration::from_millis(5),
            "{waited:?}"
        );

        // Shutdown ends the wait at once.
        let (stop, mut stopping) = serving(INGEST_BUSY);
        stop.send(true).unwrap();
        let start = tokio::time::Instant::now();
        assert!(rest(pause, Some(&mut stopping)).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
