//! Background processing: drain the ledger, decode each delivery and write its typed rows.
//!
//! Each delivery is processed in one transaction that holds its ledger row lock, writes the typed
//! rows and marks the row done, so a crash at any point leaves it pending for the next worker,
//! and several instances can drain one database without processing anything twice.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{watch, Notify};

use crate::db::queue;
use crate::metrics::Metrics;
use crate::model::Event;
use crate::store;

/// How the workers behave.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Concurrent workers in this process (0 disables processing).
    pub concurrency: usize,
    /// How often an idle worker looks for work that another instance received.
    pub poll_interval: Duration,
    /// Attempts before a failing delivery is parked.
    pub max_attempts: i32,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Typed rows written (or nothing to write), delivery marked done.
    Done,
    /// Processing failed; it will be retried later.
    Failed,
    /// It can never succeed (undecodable or out of attempts); it was parked.
    Parked,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Parked => "parked",
        }
    }
}

/// Errors that stop a worker iteration (the database itself failing).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The ledger could not be read or updated.
    #[error("ledger unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

/// Retry delay after `attempts` failed attempts: 2, 4, 8 … seconds, at most an hour.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 12)).unwrap_or(12);
    Duration::from_secs(2u64.pow(exp)).min(Duration::from_secs(3600))
}

/// Claims and processes one due delivery. `Ok(None)` when there is nothing to do.
pub async fn process_one(
    pool: &PgPool,
    max_attempts: i32,
    metrics: &Metrics,
) -> Result<Option<(i64, Outcome)>, WorkerError> {
    let mut tx = pool.begin().await?;
    let Some(claimed) = queue::claim_next(&mut tx).await? else {
        return Ok(None);
    };
    let id = claimed.id;
    let outcome = match Event::from_slice(&claimed.body) {
        Err(err) => {
            queue::mark_parked(&mut tx, id, &format!("undecodable: {err}")).await?;
            Outcome::Parked
        }
        Ok(event) => {
            let source = store::Source {
                delivery_id: id,
                ordering_ts: claimed.ordering_ts,
            };
            // A savepoint, so a failed write is undone while the claim (row lock) is kept.
            let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
            match store::apply(&mut attempt, &source, &event, &claimed.body).await {
                Ok(_) => {
                    attempt.commit().await?;
                    queue::mark_done(&mut tx, id).await?;
                    Outcome::Done
                }
                Err(err) => {
                    attempt.rollback().await?;
                    let attempts = claimed.attempts + 1;
                    if attempts >= max_attempts {
                        let why = format!("gave up after {attempts} attempts: {err}");
                        queue::mark_parked(&mut tx, id, &why).await?;
                        Outcome::Parked
                    } else {
                        queue::mark_failed(&mut tx, id, &err.to_string(), backoff(attempts))
                            .await?;
                        tracing::warn!(delivery_id = id, attempts, error = %err, "processing failed; will retry");
                        Outcome::Failed
                    }
                }
            }
        }
    };
    tx.commit().await?;
    metrics.processed(outcome.label());
    if outcome == Outcome::Parked {
        tracing::error!(
            delivery_id = id,
            "delivery parked: it will not be retried until reprocessed"
        );
    }
    Ok(Some((id, outcome)))
}

/// Processes due deliveries until none is left. Returns how many were handled.
pub async fn drain(
    pool: &PgPool,
    max_attempts: i32,
    metrics: &Metrics,
) -> Result<u64, WorkerError> {
    let mut handled = 0;
    while process_one(pool, max_attempts, metrics).await?.is_some() {
        handled += 1;
    }
    Ok(handled)
}

/// Runs `config.concurrency` workers until `stop` turns true. `wake` is signalled by the webhook
/// handler after each new delivery, so work received here starts at once; work received by
/// other instances is found by polling.
pub fn spawn(
    pool: PgPool,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..config.concurrency)
        .map(|_| {
            let (pool, config, metrics, wake, mut stop) = (
                pool.clone(),
                config.clone(),
                metrics.clone(),
                wake.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut error_streak = 0;
                while !*stop.borrow() {
                    let pause = match process_one(&pool, config.max_attempts, &metrics).await {
                        Ok(Some(_)) => {
                            error_streak = 0;
                            continue;
                        }
                        Ok(None) => {
                            error_streak = 0;
                            config.poll_interval
                        }
                        Err(err) => {
                            error_streak += 1;
                            tracing::warn!(error = %err, "worker cannot reach the ledger");
                            backoff(error_streak).min(Duration::from_secs(30))
                        }
                    };
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(pause) => {}
                        changed = stop.changed() => if changed.is_err() { break },
                    }
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(50), Duration::from_secs(3600));
    }
}
