//! Background processing: drain the ledger a batch at a time, decode each delivery and write
//! the typed rows of the whole batch with set-based statements.
//!
//! A batch is processed in one transaction that holds its ledger row locks, writes the typed
//! rows and marks the rows done, so a crash at any point leaves them pending for the next
//! worker, and several instances can drain one database without processing anything twice.

mod batch;
mod decode;
mod download;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{watch, Notify};

use crate::ledger::{self, Claimed, IngestLoad, Settled};
use crate::lifecycle::RevokedDataPolicy;
use crate::metrics::Metrics;
use crate::ping::PingConfig;
use crate::store::Applied;
use batch::{WriteError, Written};
use decode::{Item, Work};

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
    /// Most deliveries claimed at once.
    pub batch_max_deliveries: usize,
    /// Most body bytes claimed at once (a larger single body is still processed, alone).
    pub batch_max_bytes: usize,
    /// Longest a worker defers its next batch while the ledger writer is busy (zero: never).
    pub yield_to_ingest: Duration,
    /// How long a worker lets deliveries gather after a batch that was not full, or after new
    /// ones woke it, before it claims again (zero: at once).
    pub batch_linger: Duration,
    /// How often the workers look for the queue's head again (see [`ledger::claim_start`]); a
    /// delivery that became due before the start their claims use waits this long at most.
    pub claim_start_refresh: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            poll_interval: Duration::from_millis(500),
            max_attempts: 10,
            revoked_data: RevokedDataPolicy::Keep,
            ping: PingConfig::default(),
            batch_max_deliveries: 500,
            batch_max_bytes: 32 * 1024 * 1024,
            yield_to_ingest: Duration::from_secs(5),
            batch_linger: Duration::from_millis(100),
            claim_start_refresh: Duration::from_secs(10),
        }
    }
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Typed rows written (or nothing to write), delivery marked done.
    Done,
    /// Its user's data was deleted by the delete policy: not stored, ledger row removed.
    Discarded,
    /// Processing failed; it will be retried later.
    Failed,
    /// It can never succeed (undecodable or out of attempts); it was parked.
    Parked,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Discarded => "discarded",
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

/// What a processed batch did.
#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    /// `(ledger id, outcome)` of each delivery, in queue order.
    pub outcomes: Vec<(i64, Outcome)>,
    /// Rows written.
    pub applied: Applied,
}

/// Retry delay after `attempts` failed attempts: 2, 4, 8 … seconds, at most an hour.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 12)).unwrap_or(12);
    Duration::from_secs(2u64.pow(exp)).min(Duration::from_secs(3600))
}

/// Why a delivery did not succeed, before its attempts are counted.
#[derive(Debug, Clone)]
enum Failure {
    /// May succeed later: retry after this delay (or the default backoff).
    Retry(String, Option<Duration>),
    /// Cannot succeed: park it.
    Park(String),
}

/// How often a batch starts over when a concurrent re-key moved one of its users.
const RESTARTS: usize = 3;

/// Where a process's claims start in the queue, and when that was found.
#[derive(Debug, Clone, Copy)]
struct ClaimStart {
    at: DateTime<Utc>,
    found: Instant,
}

/// Turns ledger deliveries into typed rows. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Processor {
    pool: PgPool,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    ingest: Option<IngestLoad>,
    claim_start: Arc<Mutex<Option<ClaimStart>>>,
}

impl Processor {
    /// A processor over `pool`.
    pub fn new(pool: PgPool, config: WorkerConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            pool,
            config,
            metrics,
            http: reqwest::Client::new(),
            ingest: None,
            claim_start: Arc::default(),
        }
    }

    /// Makes the workers yield to ingestion: while `load` is busy, a worker defers its next
    /// batch (by at most `yield_to_ingest` since its last one), so that a burst is acknowledged
    /// at full speed and processed right after it.
    pub(crate) fn yielding_to(mut self, load: IngestLoad) -> Self {
        self.ingest = Some(load);
        self
    }

    /// Claims and processes one batch of due deliveries. `Ok(None)` when there is nothing to do.
    pub async fn process_batch(&self) -> Result<Option<BatchReport>, WorkerError> {
        for _ in 0..RESTARTS {
            match self.try_batch().await {
                Err(WriteError::UsersMoved) => continue,
                Err(WriteError::Database(err)) => return Err(err.into()),
                Ok(report) => return Ok(report),
            }
        }
        // Re-keys keep racing this batch: nothing was written; the next call claims afresh.
        Ok(Some(BatchReport::default()))
    }

    async fn try_batch(&self) -> Result<Option<BatchReport>, WriteError> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let max_count = i64::try_from(self.config.batch_max_deliveries.max(1)).unwrap_or(1);
        let max_bytes = i64::try_from(self.config.batch_max_bytes).unwrap_or(i64::MAX);
        let from = self.claim_from(&mut tx).await?;
        let claimed = ledger::claim(&mut tx, max_count, max_bytes, from).await?;
        if claimed.is_empty() {
            return Ok(None);
        }
        let items = decode_off_runtime(claimed).await?;
        let pings = download::pings(self, &mut tx, &items).await?;
        if pings.children.is_empty() {
            replayable_commit(&mut tx).await?;
        }
        let (ready, early) = triage(items, pings.failures);
        let locked = batch::lock_users(&mut tx, &ready).await?;
        let policy = self.config.revoked_data;
        let (applied, written) =
            batch::write_isolated(&mut tx, &ready, &locked, &pings.children, policy).await?;
        let verdicts = ready
            .iter()
            .zip(written)
            .map(|(item, w)| (item, Verdict::from(w)))
            .chain(
                early
                    .iter()
                    .map(|(item, f)| (item, Verdict::Failed(f.clone()))),
            );
        let (settled, mut outcomes) = self.settle(verdicts);
        ledger::record_outcomes(&mut tx, &settled).await?;
        tx.commit().await?;
        outcomes.sort_by_key(|(id, _)| *id);
        self.count(&ready, &outcomes, started);
        Ok(Some(BatchReport { outcomes, applied }))
    }

    /// Where the next claim starts: the queue's head as last found, looked up again once that
    /// is `claim_start_refresh` old.
    async fn claim_from(&self, conn: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
        let known = *self.claim_start.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(start) = known.filter(|s| s.found.elapsed() < self.config.claim_start_refresh) {
            return Ok(start.at);
        }
        let found = Instant::now();
        let at = ledger::claim_start(conn).await?;
        *self.claim_start.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(ClaimStart { at, found });
        Ok(at)
    }

    /// Turns each delivery's verdict into what the ledger records, counting attempts.
    fn settle<'a>(
        &self,
        verdicts: impl Iterator<Item = (&'a Item, Verdict)>,
    ) -> (Vec<Settled>, Vec<(i64, Outcome)>) {
        let (mut settled, mut outcomes) = (Vec::new(), Vec::new());
        for (item, verdict) in verdicts {
            let id = item.origin.delivery_id;
            let span = tracing::info_span!(
                "delivery",
                delivery_id = id,
                trace_id = item.trace_id.as_deref()
            );
            let _entered = span.enter();
            let attempts = item.attempts + 1;
            let (record, outcome) = match verdict {
                Verdict::Done => (Some(Settled::Done(id)), Outcome::Done),
                Verdict::Discarded => {
                    tracing::info!("not stored: the user's data was deleted (policy: delete)");
                    (None, Outcome::Discarded)
                }
                Verdict::Failed(Failure::Park(why)) => (Some(park(id, why)), Outcome::Parked),
                Verdict::Failed(Failure::Retry(why, _)) if attempts >= self.config.max_attempts => {
                    let why = format!("gave up after {attempts} attempts: {why}");
                    (Some(park(id, why)), Outcome::Parked)
                }
                Verdict::Failed(Failure::Retry(why, delay)) => {
                    let retry_in = delay.unwrap_or_else(|| backoff(attempts));
                    tracing::warn!(attempts, error = %why, "processing failed; will retry");
                    let failed = Settled::Failed {
                        id,
                        error: why,
                        retry_in,
                    };
                    (Some(failed), Outcome::Failed)
                }
            };
            settled.extend(record);
            outcomes.push((id, outcome));
        }
        (settled, outcomes)
    }

    fn count(&self, written: &[Item], outcomes: &[(i64, Outcome)], started: Instant) {
        for (_, outcome) in outcomes {
            self.metrics.processed(outcome.label());
        }
        let now = chrono::Utc::now();
        let done: std::collections::HashSet<i64> = outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::Done)
            .map(|(id, _)| *id)
            .collect();
        for item in written
            .iter()
            .filter(|i| done.contains(&i.origin.delivery_id))
        {
            self.metrics
                .observe_ack_to_typed(item.origin.received_at, now);
        }
        self.metrics.observe_batch_size(outcomes.len());
        self.metrics.observe_processing(started.elapsed());
        tracing::debug!(
            deliveries = outcomes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch processed"
        );
    }

    /// Processes due deliveries until none is left. Returns how many were handled.
    pub async fn drain(&self) -> Result<u64, WorkerError> {
        let mut handled = 0;
        while let Some(report) = self.process_batch().await? {
            handled += report.outcomes.len() as u64;
        }
        Ok(handled)
    }

    /// Runs `concurrency` workers until `stop` turns true. `wake` is signalled when new
    /// deliveries are stored here, so work received here starts at once; work received by
    /// other instances is found by polling.
    ///
    /// The workers get a runtime of their own, whose threads run at a lower CPU priority, and
    /// connections of their own: the CPU work of a batch around its statements (encoding
    /// thousands of values, reading back bodies) then never holds up a request handler on a
    /// busy core, and a request never waits for a connection a batch holds.
    pub(crate) fn spawn(
        &self,
        wake: Arc<Notify>,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<Workers> {
        let concurrency = self.config.concurrency;
        if concurrency == 0 {
            return Ok(Workers::default());
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(concurrency.min(cores))
            .thread_name("terra-process")
            .on_thread_start(lower_this_threads_priority)
            .enable_all()
            .build()?;
        // I/O stays with the runtime it started on: the pool's upkeep tasks start on the one
        // entered here, and the workers open its connections on theirs.
        let processor = {
            let _entered = runtime.enter();
            self.with_own_connections()
        };
        let tasks = (0..concurrency)
            .map(|_| runtime.spawn(processor.clone().run(wake.clone(), stop.clone())))
            .collect();
        Ok(Workers {
            runtime: Some(runtime),
            pool: Some(processor.pool),
            tasks,
        })
    }

    /// This processor over a pool of its own, with one connection per worker and one spare.
    fn with_own_connections(&self) -> Self {
        let options = (*self.pool.connect_options())
            .clone()
            .application_name("terra-sink processing");
        let connections = u32::try_from(self.config.concurrency)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let pool = self
            .pool
            .options()
            .clone()
            .max_connections(connections)
            .connect_lazy_with(options);
        Self {
            pool,
            ..self.clone()
        }
    }

    async fn run(self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut error_streak = 0;
        let mut last_batch = tokio::time::Instant::now();
        while !*stop.borrow() {
            tokio::select! {
                () = self.yield_to_ingest(last_batch) => {}
                changed = stop.changed() => if changed.is_err() { break } else { continue },
            }
            last_batch = tokio::time::Instant::now();
            let pause = match self.process_batch().await {
                Ok(Some(report)) => {
                    error_streak = 0;
                    if report.outcomes.len() < self.config.batch_max_deliveries {
                        self.linger(&mut stop).await;
                    }
                    continue;
                }
                Ok(None) => {
                    error_streak = 0;
                    self.config.poll_interval
                }
                Err(err) => {
                    error_streak += 1;
                    tracing::warn!(error = %err, "worker cannot reach the ledger");
                    backoff(error_streak).min(Duration::from_secs(30))
                }
            };
            tokio::select! {
                () = wake.notified() => self.linger(&mut stop).await,
                () = tokio::time::sleep(pause) => {}
                changed = stop.changed() => if changed.is_err() { break },
            }
        }
    }

    /// Lets more deliveries arrive before the next claim, so that a steady trickle is
    /// processed in batches rather than one transaction per commit of the ledger writer.
    async fn linger(&self, stop: &mut watch::Receiver<bool>) {
        if self.config.batch_linger.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(self.config.batch_linger) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }

    /// Waits while the ledger writer is busy, until `yield_to_ingest` after `last_batch`.
    async fn yield_to_ingest(&self, last_batch: tokio::time::Instant) {
        let Some(load) = &self.ingest else { return };
        let started = tokio::time::Instant::now();
        load.wait_while_busy(last_batch + self.config.yield_to_ingest)
            .await;
        self.metrics.yielded_to_ingest(started.elapsed());
    }
}

/// Workers started by [`Processor::spawn`]: their runtime, connections and tasks.
#[derive(Debug, Default)]
pub(crate) struct Workers {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Option<PgPool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// The workers' own pool (none when no worker runs).
    pub(crate) fn pool(&self) -> Option<&PgPool> {
        self.pool.as_ref()
    }

    /// Waits until every worker has stopped (they stop when told to, after the batch they
    /// hold), then closes their connections and ends their runtime.
    pub(crate) async fn join(mut self) -> Result<(), tokio::task::JoinError> {
        for task in std::mem::take(&mut self.tasks) {
            task.await?;
        }
        if let Some(pool) = self.pool.take() {
            pool.close().await;
        }
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async caller may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What processing decided for one delivery.
enum Verdict {
    Done,
    Discarded,
    Failed(Failure),
}

impl From<Written> for Verdict {
    fn from(w: Written) -> Self {
        match w {
            Written::Done => Verdict::Done,
            Written::Discarded => Verdict::Discarded,
            Written::Failed(why) => Verdict::Failed(Failure::Retry(why, None)),
        }
    }
}

fn park(id: i64, error: String) -> Settled {
    tracing::error!(error = %error, "delivery parked: it will not be retried until reprocessed");
    Settled::Parked { id, error }
}

/// Lets this transaction commit without waiting for its WAL flush. Everything it writes is
/// derived from ledger rows that were committed durably before they were acknowledged: if a
/// crash loses the commit, those rows are still pending and are processed again. A batch that
/// stores downloaded ping payloads does not use this, since the download link may have expired
/// by then.
async fn replayable_commit(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT set_config('synchronous_commit', 'off', true)")
        .fetch_one(conn)
        .await?;
    Ok(())
}

/// Decodes every claimed body on a thread of its own, off the async runtime and at a lower
/// CPU priority: decoding is throughput work, while acknowledging is what Terra waits for.
async fn decode_off_runtime(claimed: Vec<Claimed>) -> Result<Vec<Item>, WriteError> {
    let (done, decoded) = tokio::sync::oneshot::channel();
    let crashed = |why: &dyn std::fmt::Display| {
        tracing::error!(error = %why, "decoding a batch failed to run");
        WriteError::Database(sqlx::Error::WorkerCrashed)
    };
    std::thread::Builder::new()
        .name("terra-decode".to_owned())
        .spawn(move || {
            lower_this_threads_priority();
            let items: Vec<Item> = claimed.into_iter().map(decode::decode).collect();
            let _ = done.send(items);
        })
        .map_err(|err| crashed(&err))?;
    decoded
        .await
        .map_err(|_| crashed(&"the decoding thread panicked"))
}

/// Gives the calling thread nice 10, so that on busy cores the request handlers run first
/// (on Linux the nice value belongs to the thread; elsewhere this does nothing).
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Separates the deliveries that can be written from those already decided (undecodable,
/// failed downloads).
fn triage(
    items: Vec<Item>,
    mut failures: HashMap<i64, Failure>,
) -> (Vec<Item>, Vec<(Item, Failure)>) {
    let mut ready = Vec::with_capacity(items.len());
    let mut early = Vec::new();
    for item in items {
        if let Work::Invalid(why) = &item.work {
            let why = why.clone();
            early.push((item, Failure::Park(why)));
        } else if let Some(failure) = failures.remove(&item.origin.delivery_id) {
            early.push((item, failure));
        } else {
            ready.push(item);
        }
    }
    (ready, early)
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

    fn yielding_to(waiting: usize) -> Processor {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://127.0.0.1:1/unused")
            .unwrap();
        let config = WorkerConfig {
            yield_to_ingest: Duration::from_secs(5),
            ..WorkerConfig::default()
        };
        Processor::new(pool, config, Arc::new(Metrics::new()))
            .yielding_to(IngestLoad::fixed(waiting))
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_lingers_for_more_deliveries_unless_stopping() {
        let worker = yielding_to(0);
        let (stop_tx, mut stop) = watch::channel(false);
        let start = tokio::time::Instant::now();
        worker.linger(&mut stop).await;
        assert_eq!(start.elapsed(), WorkerConfig::default().batch_linger);

        stop_tx.send(true).unwrap();
        let start = tokio::time::Instant::now();
        worker.linger(&mut stop).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn processing_yields_to_a_busy_ledger_writer_but_is_never_starved() {
        let busy = yielding_to(ledger::INGEST_BUSY);
        let start = tokio::time::Instant::now();
        busy.yield_to_ingest(start).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(5), "{waited:?}");
        assert!(waited <= Duration::from_millis(5_005), "{waited:?}");
        // A worker whose last batch is long past does not wait at all.
        let later = tokio::time::Instant::now();
        busy.yield_to_ingest(start).await;
        assert_eq!(later.elapsed(), Duration::ZERO);

        let quiet = yielding_to(ledger::INGEST_BUSY - 1);
        let start = tokio::time::Instant::now();
        quiet.yield_to_ingest(start).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
