//! `terra-sink backfill`: pulls history from Terra's REST API into the same ledger and pipeline
//! as webhooks, so both sources converge on the same typed rows.
//!
//! For each user, data type and window of at most 28 days ([`plan`]), one inline request
//! (`to_webhook=false`, [`client`]); its records are re-shaped into a webhook body and written to
//! `terra.deliveries` with `source = 'backfill'`, then decoded and stored by the normal workers.
//! Each window's outcome is kept in `terra.backfill_windows`, so a new run skips finished windows.
//!
//! Ordering: a backfilled delivery's `ordering_ts` is Terra's clock when it answered (its `Date`
//! header, else ours). The REST answer is Terra's state at that moment, so it replaces any copy
//! Terra sent earlier and is replaced by any copy Terra sends later, whatever order the ledger
//! rows are processed (or reprocessed) in. Leaving it empty would let an old backfill row that is
//! reprocessed later clobber a newer webhook copy.

mod client;
mod plan;
mod progress;
mod signal;

pub(crate) use client::{About, FetchError, Pacer, TerraClient};
pub use client::{ApiError, ClientConfig, RetryPolicy, DEFAULT_BASE_URL};
pub use plan::{resolve_range, DataType, Window};
pub use progress::Progress;
pub(crate) use progress::Stage;
pub use signal::{stop_on_signals, Signalled};

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sqlx::PgPool;
use tokio::sync::{watch, Semaphore};

use crate::db::backfill::{self as sql, WindowRecord, WindowStatus};
use crate::ledger::{self, Arrival, NewDelivery, Stored};
use crate::lifecycle;
use client::{Answer, Fetched};
use plan::DayBudget;
use progress::{Bars, UserBar};

/// Which users to backfill.
#[derive(Debug, Clone)]
pub enum Users {
    /// These Terra user ids.
    Listed(Vec<String>),
    /// Every active user in `terra.users`.
    AllActive,
    /// These Terra user ids, each over its own days instead of the config's `range` (the gaps
    /// `terra-sink reconcile --backfill-gap` found).
    Ranges(Vec<(String, Window)>),
}

/// Everything a backfill run needs.
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    /// Terra API access.
    pub client: ClientConfig,
    /// Users to backfill.
    pub users: Users,
    /// Data types to backfill.
    pub types: Vec<DataType>,
    /// Days to cover, end exclusive.
    pub range: Window,
    /// Largest window per request (at most 28).
    pub window_days: u32,
    /// Ask Terra for detailed samples.
    pub with_samples: bool,
    /// Request windows again even when a previous run finished them.
    pub refetch: bool,
    /// Days one user may request per `budget_period` (0: no limit).
    pub day_budget: u32,
    /// The period of `day_budget`.
    pub budget_period: Duration,
    /// Users fetched at the same time.
    pub concurrency: usize,
    /// Progress display.
    pub progress: Progress,
}

/// What a backfill did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Users backfilled.
    pub users: usize,
    /// Records written to the ledger, per data type.
    pub records: BTreeMap<DataType, u64>,
    /// Windows fetched and stored (empty answers included).
    pub windows_done: u64,
    /// Windows skipped because an earlier run finished them.
    pub windows_skipped: u64,
    /// Windows whose data Terra sends through the webhook instead.
    pub windows_acknowledged: u64,
    /// Windows that failed (retried by the next run).
    pub windows_failed: u64,
    /// Ledger rows written.
    pub deliveries_new: u64,
    /// Answers identical to a delivery already in the ledger (not stored again).
    pub deliveries_duplicate: u64,
    /// The first few failures, for the final report.
    pub failures: Vec<String>,
    /// True when the run stopped early (signal, or credentials refused).
    pub interrupted: bool,
}

impl Summary {
    fn merge(&mut self, other: Summary) {
        for (t, n) in other.records {
            *self.records.entry(t).or_default() += n;
        }
        self.windows_done += other.windows_done;
        self.windows_skipped += other.windows_skipped;
        self.windows_acknowledged += other.windows_acknowledged;
        self.windows_failed += other.windows_failed;
        self.deliveries_new += other.deliveries_new;
        self.deliveries_duplicate += other.deliveries_duplicate;
        self.interrupted |= other.interrupted;
        for f in other.failures {
            if self.failures.len() < MAX_REPORTED_FAILURES {
                self.failures.push(f);
            }
        }
    }

    /// Total records written to the ledger.
    pub fn total_records(&self) -> u64 {
        self.records.values().sum()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backfill summary ({} users):", self.users)?;
        for (t, n) in &self.records {
            writeln!(f, "  {t:<13} {n} records")?;
        }
        writeln!(
            f,
            "  windows: {} fetched, {} already done, {} sent to the webhook by Terra, {} failed",
            self.windows_done, self.windows_skipped, self.windows_acknowledged, self.windows_failed
        )?;
        write!(
            f,
            "  ledger: {} new deliveries, {} identical to earlier ones",
            self.deliveries_new, self.deliveries_duplicate
        )?;
        for failure in &self.failures {
            write!(f, "\n  failed: {failure}")?;
        }
        if self.interrupted {
            write!(
                f,
                "\n  stopped early: run the same command again to continue"
            )?;
        }
        Ok(())
    }
}

const MAX_REPORTED_FAILURES: usize = 10;

/// Why a backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// Terra refused the credentials (or the client could not be built): nothing can succeed.
    #[error("{error}")]
    Fatal {
        /// The cause.
        error: ApiError,
        /// What was done before stopping.
        summary: Box<Summary>,
    },
    /// The database is not migrated.
    #[error(transparent)]
    Schema(#[from] sql::SchemaError),
    /// The users could not be listed.
    #[error("cannot list users: {0}")]
    Users(#[source] sqlx::Error),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// State shared by the per-user tasks.
struct Shared {
    pool: PgPool,
    client: TerraClient,
    config: BackfillConfig,
    /// Set when Terra refused the credentials: every task stops at its next window.
    halt: AtomicBool,
    fatal: Mutex<Option<ApiError>>,
    stop: watch::Receiver<bool>,
    bars: Bars,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.halt.load(Ordering::SeqCst) || *self.stop.borrow()
    }
}

/// Runs a backfill until every window is handled, Terra refuses the credentials, or `stop`
/// turns true (finished windows are recorded, so the next run continues from there).
pub async fn run(
    pool: &PgPool,
    config: &BackfillConfig,
    stop: watch::Receiver<bool>,
) -> Result<Summary, BackfillError> {
    let client = TerraClient::new(&config.client).map_err(|error| BackfillError::Fatal {
        error,
        summary: Box::default(),
    })?;
    sql::check_schema(pool).await?;
    let users: Vec<(String, Vec<Window>)> = user_ranges(pool, config)
        .await?
        .into_iter()
        .map(|(user, range)| (user, plan::windows(range, config.window_days)))
        .collect();
    let mut types = config.types.clone();
    types.sort();
    types.dedup();
    let total: usize = users.iter().map(|(_, w)| w.len() * types.len()).sum();
    let bars = Bars::new(config.progress, total as u64);
    let shared = Arc::new(Shared {
        pool: pool.clone(),
        client,
        config: BackfillConfig {
            types,
            ..config.clone()
        },
        halt: AtomicBool::new(false),
        fatal: Mutex::new(None),
        stop,
        bars,
    });
    tracing::info!(
        users = users.len(),
        types = %shared.config.types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","),
        start_date = %config.range.start,
        end_date_exclusive = %config.range.end,
        windows = total,
        "backfill starting"
    );

    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let user_count = users.len();
    for (user, windows) in users {
        let (shared, permits) = (shared.clone(), permits.clone());
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only fails if it were.
            let _permit = permits.acquire_owned().await.ok();
            backfill_user(&shared, &user, &windows).await
        });
    }
    let summary = collect(&mut tasks, &shared, user_count).await;
    shared.bars.finish();
    let mut summary = summary?;
    if *shared.stop.borrow() {
        summary.interrupted = true;
    }
    let fatal = shared.fatal.lock().ok().and_then(|mut f| f.take());
    if let Some(error) = fatal {
        summary.interrupted = true;
        return Err(BackfillError::Fatal {
            error,
            summary: Box::new(summary),
        });
    }
    Ok(summary)
}

/// The users to backfill and the days of each: the listed ones in their order without repeats
/// (the first range of a repeated one), or every active one, over the config's range unless
/// each has its own.
async fn user_ranges(
    pool: &PgPool,
    config: &BackfillConfig,
) -> Result<Vec<(String, Window)>, BackfillError> {
    let ranges: Vec<(String, Window)> = match &config.users {
        Users::Listed(ids) => ids.iter().map(|id| (id.clone(), config.range)).collect(),
        Users::AllActive => sql::active_users(pool)
            .await
            .map_err(BackfillError::Users)?
            .into_iter()
            .map(|id| (id, config.range))
            .collect(),
        Users::Ranges(ranges) => ranges.clone(),
    };
    // An erased person stays erased: nothing is asked, and no window row names them.
    let ids: Vec<&str> = ranges.iter().map(|(id, _)| id.as_str()).collect();
    let forgotten = lifecycle::users::forgotten(pool, &ids)
        .await
        .map_err(BackfillError::Users)?;
    for id in &forgotten {
        tracing::warn!(user_id = %id, "skipping a user erased by terra-sink forget");
    }
    let mut seen = HashSet::new();
    Ok(ranges
        .into_iter()
        .filter(|(id, _)| !forgotten.contains(id) && seen.insert(id.clone()))
        .collect())
}

/// Waits for every user's task and adds up their summaries; a database error stops the rest.
async fn collect(
    tasks: &mut tokio::task::JoinSet<Result<Summary, sqlx::Error>>,
    shared: &Shared,
    users: usize,
) -> Result<Summary, BackfillError> {
    let mut summary = Summary {
        users,
        ..Summary::default()
    };
    let mut db_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(part)) => summary.merge(part),
            Ok(Err(e)) => {
                shared.halt.store(true, Ordering::SeqCst);
                db_error.get_or_insert(e);
            }
            Err(e) => {
                summary.interrupted = true;
                summary.failures.push(format!("a worker task failed: {e}"));
            }
        }
    }
    match db_error {
        Some(e) => Err(BackfillError::Database(e)),
        None => Ok(summary),
    }
}

/// What to do after a window.
enum Flow {
    /// Go on with the next window; this many records were stored.
    Next(u64),
    /// Stop this user's backfill (a stop was asked for, or Terra refused the credentials).
    Stop,
}

/// Every type and window of one user, in order, under the user's day budget.
async fn backfill_user(
    shared: &Shared,
    user_id: &str,
    windows: &[Window],
) -> Result<Summary, sqlx::Error> {
    let config = &shared.config;
    let mut summary = Summary::default();
    let mut budget = seeded_budget(shared, user_id).await?;
    let bar = shared
        .bars
        .user(user_id, (windows.len() * config.types.len()) as u64);
    let range = match (windows.first(), windows.last()) {
        (Some(first), Some(last)) => Window {
            start: first.start,
            end: last.end,
        },
        _ => return Ok(summary),
    };
    for &data_type in &config.types {
        let finished = finished_windows(shared, user_id, data_type, range).await?;
        let mut type_records = 0u64;
        for &window in windows {
            if finished.contains(&(window.start, window.end)) {
                summary.windows_skipped += 1;
                shared.bars.advance(&bar, 0);
                continue;
            }
            bar.show(data_type, window, type_records);
            let target = Target {
                user_id,
                data_type,
                window,
            };
            match backfill_window(shared, &mut budget, &target, &mut summary, &bar).await? {
                Flow::Next(records) => type_records += records,
                Flow::Stop => {
                    summary.interrupted = true;
                    return Ok(summary);
                }
            }
        }
    }
    bar.finish("done");
    Ok(summary)
}

/// One user's window of one data type.
struct Target<'a> {
    user_id: &'a str,
    data_type: DataType,
    window: Window,
}

/// The windows of a user and type within `range` that earlier runs finished (none with
/// `--refetch`).
async fn finished_windows(
    shared: &Shared,
    user_id: &str,
    data_type: DataType,
    range: Window,
) -> Result<HashSet<(chrono::NaiveDate, chrono::NaiveDate)>, sqlx::Error> {
    if shared.config.refetch {
        return Ok(HashSet::new());
    }
    let (start, end) = (range.start, range.end);
    let done = sql::finished(&shared.pool, user_id, data_type.as_str(), start, end).await?;
    Ok(done.into_iter().collect())
}

/// Fetches one window (paced by the user's budget) and records what came of it.
async fn backfill_window(
    shared: &Shared,
    budget: &mut DayBudget,
    target: &Target<'_>,
    summary: &mut Summary,
    bar: &UserBar,
) -> Result<Flow, sqlx::Error> {
    if shared.stopping() {
        bar.finish("stopped");
        return Ok(Flow::Stop);
    }
    let (user_id, data_type, window) = (target.user_id, target.data_type, target.window);
    let mut pacer = UserPacer {
        shared,
        budget,
        user_id,
        data_type,
        window,
        in_flight: None,
    };
    let with_samples = shared.config.with_samples;
    let fetched = shared
        .client
        .fetch(data_type, user_id, window, with_samples, &mut pacer)
        .await;
    let answer = match fetched {
        Ok(answer) => Ok(answer),
        Err(FetchError::Api(error)) => Err(error),
        Err(FetchError::Paced(PaceError::Stopping)) => {
            bar.finish("stopped");
            return Ok(Flow::Stop);
        }
        Err(FetchError::Paced(PaceError::Database(e))) => return Err(e),
    };
    record_answer(shared, target, answer, summary, bar).await
}

/// Stores a window's answer in the ledger and the window's outcome in `terra.backfill_windows`.
async fn record_answer(
    shared: &Shared,
    target: &Target<'_>,
    answer: Result<Answer, ApiError>,
    summary: &mut Summary,
    bar: &UserBar,
) -> Result<Flow, sqlx::Error> {
    let (user_id, data_type, window) = (target.user_id, target.data_type, target.window);
    let mut record = WindowRecord {
        user_id,
        data_type: data_type.as_str(),
        start_date: window.start,
        end_date: window.end,
        status: WindowStatus::Failed,
        records: None,
        delivery_id: None,
        terra_reference: None,
        last_error: None,
    };
    let error_text;
    let mut stored = 0u64;
    match answer {
        Ok(Answer::Data(fetched)) => {
            let (records, delivery) = store(&shared.pool, user_id, &fetched).await?;
            stored = records;
            match delivery {
                Some(Stored::New(_)) => summary.deliveries_new += 1,
                Some(Stored::Duplicate(_)) => summary.deliveries_duplicate += 1,
                None => {}
            }
            record.delivery_id = delivery.map(Stored::id);
            record.status = WindowStatus::Done;
            record.records = Some(i32::try_from(records).unwrap_or(i32::MAX));
            summary.windows_done += 1;
            *summary.records.entry(data_type).or_default() += records;
            log_window(shared, user_id, data_type, window, "stored", records, None);
        }
        Ok(Answer::Acknowledged { reference, message }) => {
            record.status = WindowStatus::Acknowledged;
            error_text = message;
            record.terra_reference = reference.as_deref();
            record.last_error = error_text.as_deref();
            summary.windows_acknowledged += 1;
            // Not an empty window: Terra will POST the data to the webhook destination.
            tracing::warn!(
                user_id,
                data_type = data_type.as_str(),
                window = %window,
                terra_reference = reference.as_deref().unwrap_or("-"),
                "Terra answered with an acknowledgement: this window's data will arrive through the webhook instead"
            );
            sql::record(&shared.pool, &record).await?;
            shared.bars.advance(bar, 0);
            return Ok(Flow::Next(0));
        }
        Err(error) if error.is_fatal() => return Ok(halt(shared, target, error, bar)),
        Err(error) => {
            let text = error.to_string();
            summary.windows_failed += 1;
            if summary.failures.len() < MAX_REPORTED_FAILURES {
                summary
                    .failures
                    .push(format!("{user_id} {data_type} {window}: {text}"));
            }
            log_window(shared, user_id, data_type, window, "failed", 0, Some(&text));
            error_text = Some(text);
            record.last_error = error_text.as_deref();
        }
    }
    sql::record(&shared.pool, &record).await?;
    shared.bars.advance(bar, stored);
    Ok(Flow::Next(stored))
}

/// Stops the whole run on refused credentials, keeping the first such error for the summary.
fn halt(shared: &Shared, target: &Target<'_>, error: ApiError, bar: &UserBar) -> Flow {
    tracing::error!(
        user_id = target.user_id,
        data_type = target.data_type.as_str(),
        window = %target.window,
        "{error}"
    );
    shared.halt.store(true, Ordering::SeqCst);
    if let Ok(mut fatal) = shared.fatal.lock() {
        fatal.get_or_insert(error);
    }
    bar.finish("stopped: credentials refused");
    Flow::Stop
}

/// A user's day budget, counting what earlier runs sent within the period (Terra's count does
/// not start afresh when the command does).
async fn seeded_budget(shared: &Shared, user_id: &str) -> Result<DayBudget, sqlx::Error> {
    let config = &shared.config;
    let mut budget = DayBudget::new(config.day_budget, config.budget_period);
    if config.day_budget == 0 {
        return Ok(budget);
    }
    let counted = sql::counted_requests(&shared.pool, user_id, config.budget_period).await?;
    // Ages were measured before the answer came back: taking `now` after it places every
    // request a little later than it was, so the budget errs on waiting longer.
    let now = Instant::now();
    for earlier in counted {
        let age = Duration::from_millis(earlier.age_ms.unsigned_abs());
        // A negative age is a deadline still ahead (a request whose end was never recorded).
        let at = if earlier.age_ms >= 0 {
            now.checked_sub(age).unwrap_or(now)
        } else {
            now + age
        };
        budget.spend(earlier.days, at);
    }
    Ok(budget)
}

/// Why a request was not sent.
#[derive(Debug, thiserror::Error)]
enum PaceError {
    /// The run is stopping.
    #[error("stopping")]
    Stopping,
    /// Recording the request failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Paces the attempts of one window under the user's day budget, and records each in
/// `terra.backfill_requests` so the next run counts it too.
///
/// An attempt counts from when it is sent until a period after it ended: Terra received it at
/// some moment in between, so no period of Terra's can see more than the budget.
struct UserPacer<'a> {
    shared: &'a Shared,
    budget: &'a mut DayBudget,
    user_id: &'a str,
    data_type: DataType,
    window: Window,
    in_flight: Option<i64>,
}

impl Pacer for UserPacer<'_> {
    type Error = PaceError;

    async fn before_attempt(&mut self) -> Result<(), PaceError> {
        loop {
            if self.shared.stopping() {
                return Err(PaceError::Stopping);
            }
            let wait = self.budget.wait_for(self.window.days(), Instant::now());
            if wait.is_zero() {
                break;
            }
            tracing::debug!(
                user_id = self.user_id,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "day budget: waiting"
            );
            // The budget can hold a user back for up to a period: a stop must not wait for it.
            let mut stop = self.shared.stop.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // Err (no sender left) disables this branch: the budget is still honoured.
                Ok(_) = stop.wait_for(|stop| *stop) => {}
            }
        }
        // Sent right after this row is written: a second covers the gap before the client's
        // own deadline starts.
        let deadline = self.shared.config.client.request_timeout + Duration::from_secs(1);
        let id = sql::request_started(
            &self.shared.pool,
            self.user_id,
            self.data_type.as_str(),
            self.window.start,
            self.window.end,
            deadline,
        )
        .await?;
        self.in_flight = Some(id);
        Ok(())
    }

    async fn after_attempt(&mut self) -> Result<(), PaceError> {
        self.budget.spend(self.window.days(), Instant::now());
        if let Some(id) = self.in_flight.take() {
            sql::request_ended(&self.shared.pool, id).await?;
        }
        Ok(())
    }
}

/// One line per window when there are no progress bars (at debug level when there are).
fn log_window(
    shared: &Shared,
    user_id: &str,
    data_type: DataType,
    window: Window,
    outcome: &str,
    records: u64,
    error: Option<&str>,
) {
    if shared.bars.visible() {
        tracing::debug!(user_id, data_type = data_type.as_str(), start_date = %window.start, end_date = %window.end, outcome, records, error, "backfill window");
    } else if let Some(error) = error {
        tracing::warn!(user_id, data_type = data_type.as_str(), start_date = %window.start, end_date = %window.end, outcome, error, "backfill window");
    } else {
        tracing::info!(user_id, data_type = data_type.as_str(), start_date = %window.start, end_date = %window.end, outcome, records, "backfill window");
    }
}

/// Writes a fetched window to the ledger as a webhook-shaped delivery (nothing for no records).
async fn store(
    pool: &PgPool,
    user_id: &str,
    fetched: &Fetched,
) -> Result<(u64, Option<Stored>), sqlx::Error> {
    if fetched.records == 0 {
        return Ok((0, None));
    }
    let ordering_ts = fetched
        .answered_at_ms
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let row = NewDelivery::new(
        Bytes::from(fetched.body.clone()),
        Arrival::Backfill {
            user_id: user_id.to_owned(),
            ordering_ts,
        },
    );
    let mut conn = pool.acquire().await?;
    let stored = ledger::insert(&mut conn, std::slice::from_ref(&row)).await?;
    let stored = stored.first().copied().ok_or(sqlx::Error::RowNotFound)?;
    if let Stored::Duplicate(id) = stored {
        ledger::count_duplicates(&mut conn, &std::collections::HashMap::from([(id, 1)])).await?;
    }
    Ok((fetched.records as u64, Some(stored)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_records_per_type_and_failures() {
        let mut s = Summary {
            users: 2,
            ..Summary::default()
        };
        s.merge(Summary {
            records: [(DataType::Daily, 3)].into(),
            windows_done: 2,
            windows_failed: 1,
            failures: vec!["u1 daily [2026-01-01, 2026-01-29): HTTP 500".into()],
            ..Summary::default()
        });
        s.merge(Summary {
            records: [(DataType::Daily, 2), (DataType::Sleep, 1)].into(),
            ..Summary::default()
        });
        assert_eq!(s.records[&DataType::Daily], 5);
        assert_eq!(s.total_records(), 6);
        let text = s.to_string();
        assert!(text.contains("daily         5 records"), "{text}");
        assert!(text.contains("1 failed"), "{text}");
        assert!(text.contains("HTTP 500"), "{text}");
    }
}
