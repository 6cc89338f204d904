//! Background processing: drain the ledger, decode each delivery and write its typed rows.
//!
//! Each delivery is processed in one transaction that holds its ledger row lock, writes the typed
//! rows and marks the row done, so a crash at any point leaves it pending for the next worker,
//! and several instances can drain one database without processing anything twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{watch, Notify};

use crate::db;
use crate::db::ledger::{self, NewDelivery};
use crate::db::queue::{self, Claimed};
use crate::lifecycle::{self, RevokedDataPolicy};
use crate::metrics::Metrics;
use crate::model::{Event, S3PayloadEvent};
use crate::peek::peek;
use crate::ping::{self, PingConfig};
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
    /// What `deauth` and `access_revoked` do to the user's stored data.
    pub revoked_data: RevokedDataPolicy,
    /// Limits of ping-mode downloads.
    pub ping: PingConfig,
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

/// Why processing one delivery did not succeed.
enum Failure {
    /// May succeed later: retry after this delay (or the default backoff).
    Retry(String, Option<Duration>),
    /// Cannot succeed: park it.
    Park(String),
}

/// Retry delay after `attempts` failed attempts: 2, 4, 8 … seconds, at most an hour.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 12)).unwrap_or(12);
    Duration::from_secs(2u64.pow(exp)).min(Duration::from_secs(3600))
}

/// Turns ledger deliveries into typed rows. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Processor {
    pool: PgPool,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
}

impl Processor {
    /// A processor over `pool`.
    pub fn new(pool: PgPool, config: WorkerConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            pool,
            config,
            metrics,
            http: reqwest::Client::new(),
        }
    }

    /// Claims and processes one due delivery. `Ok(None)` when there is nothing to do.
    pub async fn process_one(&self) -> Result<Option<(i64, Outcome)>, WorkerError> {
        let mut tx = self.pool.begin().await?;
        let Some(claimed) = queue::claim_next(&mut tx).await? else {
            return Ok(None);
        };
        let id = claimed.id;
        let result = self.process(&mut tx, &claimed).await?;
        let attempts = claimed.attempts + 1;
        let outcome = match result {
            Ok(()) => {
                queue::mark_done(&mut tx, id).await?;
                Outcome::Done
            }
            Err(Failure::Retry(why, _)) if attempts >= self.config.max_attempts => {
                let why = format!("gave up after {attempts} attempts: {why}");
                queue::mark_parked(&mut tx, id, &why).await?;
                Outcome::Parked
            }
            Err(Failure::Retry(why, delay)) => {
                let delay = delay.unwrap_or_else(|| backoff(attempts));
                queue::mark_failed(&mut tx, id, &why, delay).await?;
                tracing::warn!(delivery_id = id, attempts, error = %why, "processing failed; will retry");
                Outcome::Failed
            }
            Err(Failure::Park(why)) => {
                queue::mark_parked(&mut tx, id, &why).await?;
                Outcome::Parked
            }
        };
        tx.commit().await?;
        self.metrics.processed(outcome.label());
        if outcome == Outcome::Parked {
            tracing::error!(
                delivery_id = id,
                "delivery parked: it will not be retried until reprocessed"
            );
        }
        Ok(Some((id, outcome)))
    }

    /// Decodes and applies one claimed delivery. The outer `Err` is the database failing; the
    /// inner one says whether the delivery should be retried or parked.
    async fn process(
        &self,
        tx: &mut PgConnection,
        claimed: &Claimed,
    ) -> Result<Result<(), Failure>, WorkerError> {
        let mut event = match Event::from_slice(&claimed.body) {
            Ok(event) => event,
            Err(err) => return Ok(Err(Failure::Park(format!("undecodable: {err}")))),
        };
        if let Some(user) = lifecycle::data_user_mut(&mut event) {
            user.user_id = db::lifecycle::current_user_id(&mut *tx, &user.user_id).await?;
        }
        if let Event::S3Payload(ping) = &event {
            return self.download(tx, claimed, ping).await;
        }
        let delivery = lifecycle::Delivery {
            id: claimed.id,
            received_at: claimed.received_at,
            terra_reference: claimed.terra_reference.as_deref(),
            ordering_ts: claimed.ordering_ts,
        };
        let source = store::Source {
            delivery_id: claimed.id,
            ordering_ts: claimed.ordering_ts,
        };
        // A savepoint, so a failed write is undone while the claim (row lock) is kept.
        let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
        let applied = async {
            lifecycle::apply(&mut attempt, &delivery, &event, self.config.revoked_data)
                .await
                .map_err(|e| Failure::Retry(format!("lifecycle: {e}"), None))?;
            match store::apply(&mut attempt, &source, &event, &claimed.body).await {
                Ok(_) => Ok(()),
                Err(err) if err.is_permanent() => Err(Failure::Park(err.to_string())),
                Err(err) => Err(Failure::Retry(err.to_string(), None)),
            }
        }
        .await;
        match applied {
            Ok(()) => attempt.commit().await?,
            Err(_) => attempt.rollback().await?,
        }
        Ok(applied)
    }

    /// Ping mode: download the payload and store it as a ledger row of its own, linked to the
    /// ping, to be processed like an inline delivery.
    async fn download(
        &self,
        tx: &mut PgConnection,
        claimed: &Claimed,
        ping: &S3PayloadEvent,
    ) -> Result<Result<(), Failure>, WorkerError> {
        let dedupe_key = format!("s3:{}", claimed.id);
        if ledger::exists(&mut *tx, &dedupe_key).await? {
            return Ok(Ok(())); // downloaded on an earlier attempt (e.g. reprocessing)
        }
        let Some(url) = ping.url.as_deref() else {
            return Ok(Err(Failure::Park("s3_payload without url".into())));
        };
        let expires_in = ping.expires_in.and_then(|n| n.as_i64()).unwrap_or(0).max(0);
        let valid_until = claimed.received_at + chrono::Duration::seconds(expires_in);
        let body = match ping::fetch(&self.http, &self.config.ping, url).await {
            Ok(body) => body,
            Err(err) => {
                self.metrics.download(err.label());
                let left = (valid_until - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                // Short retries: the URL is only valid for minutes.
                let delay =
                    Duration::from_millis(500 * 2u64.pow(claimed.attempts.clamp(0, 6) as u32));
                return Ok(Err(if err.is_retryable() && delay < left {
                    Failure::Retry(format!("s3 download: {err}"), Some(delay))
                } else if err.is_retryable() {
                    Failure::Park(format!("s3 download: {err}; the url has expired"))
                } else {
                    Failure::Park(format!("s3 download: {err}"))
                }));
            }
        };
        self.metrics.download("ok");
        let first_look = peek(&body);
        let sha = Sha256::digest(&body);
        let child = NewDelivery {
            dedupe_key: &dedupe_key,
            source: "s3_download",
            signed_at: None,
            event_type: first_look.event_type.as_deref(),
            user_id: first_look.user_id.as_deref(),
            trace_id: None,
            terra_reference: claimed.terra_reference.as_deref(),
            ordering_ts: claimed.ordering_ts,
            body: &body,
            body_sha256: &sha,
            shape: first_look.shape.label(),
            shape_error: first_look.shape.error(),
            parent_id: Some(claimed.id),
        };
        ledger::insert(&mut *tx, &child).await?;
        Ok(Ok(()))
    }

    /// Processes due deliveries until none is left. Returns how many were handled.
    pub async fn drain(&self) -> Result<u64, WorkerError> {
        let mut handled = 0;
        while self.process_one().await?.is_some() {
            handled += 1;
        }
        Ok(handled)
    }

    /// Runs `concurrency` workers until `stop` turns true. `wake` is signalled by the webhook
    /// handler after each new delivery, so work received here starts at once; work received by
    /// other instances is found by polling.
    pub fn spawn(
        &self,
        wake: Arc<Notify>,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.config.concurrency)
            .map(|_| {
                let (this, wake, mut stop) = (self.clone(), wake.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut error_streak = 0;
                    while !*stop.borrow() {
                        let pause = match this.process_one().await {
                            Ok(Some(_)) => {
                                error_streak = 0;
                                continue;
                            }
                            Ok(None) => {
                                error_streak = 0;
                                this.config.poll_interval
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
