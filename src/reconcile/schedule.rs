//! Reconciling inside `serve`, on a schedule: the same run as `terra-sink reconcile`, whose
//! outcome is logged instead of printed. What a gap backfill stores is processed by the
//! service's own workers.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use super::{run, ReconcileConfig};

/// A reconcile that `serve` runs every `every`.
#[derive(Debug, Clone)]
pub struct ScheduledReconcile {
    /// Time between the end of one run and the start of the next (the first starts one
    /// interval after start-up, so restarts do not call Terra's API each time).
    pub every: Duration,
    /// What each run does.
    pub config: ReconcileConfig,
}

/// Runs `scheduled` until `stop` turns true. A failed run is logged and tried again at the
/// next round; a stop during a run ends it before it changes anything.
pub async fn on_schedule(
    pool: PgPool,
    scheduled: ScheduledReconcile,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(scheduled.every) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        match run(&pool, &scheduled.config, stop.clone()).await {
            Ok(summary) if summary.interrupted => return,
            Ok(summary) => tracing::info!(
                listed = summary.listed,
                created = summary.created.len(),
                marked_missing = summary.marked.len(),
                restored = summary.restored.len(),
                gaps = summary.gaps.len(),
                failures = summary.failures.len(),
                "users reconciled with Terra"
            ),
            Err(err) => tracing::error!(
                error = %err,
                next_round_in = %humantime::format_duration(scheduled.every),
                "reconcile failed"
            ),
        }
    }
}
