//! Group commit: concurrent webhook deliveries share one ledger transaction.
//!
//! Requests hand their row to one gatherer task; while the database is busy committing earlier
//! groups, what arrives is gathered (up to a row and a byte cap) and then inserted with one
//! multi-row statement and one commit, after which every request gets its answer. A `200`
//! still means "committed". A request whose deadline passes before its group commits is
//! answered `503` and its row is taken out of the transaction, so a `503` always means "not
//! stored"; once the commit has been sent, the request waits for its outcome instead.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::connections::{Conn, Kept};
use super::sql::{count_duplicates, insert, Stored};
use super::NewDelivery;
use crate::db::is_outage;

/// Limits of the group-commit writer.
#[derive(Debug, Clone)]
pub struct GroupCommitConfig {
    /// Most deliveries in one group.
    pub max_rows: usize,
    /// Most body bytes in one group (a larger single body still goes alone).
    pub max_bytes: usize,
    /// How long a group waits for more deliveries once a commit slot is free (0: not at all;
    /// groups still form while earlier groups commit).
    pub window: Duration,
    /// Groups being written at the same time (each holds a database connection).
    pub concurrency: usize,
    /// Time a delivery may wait to be committed before it is answered `503`.
    pub deadline: Duration,
    /// How long a connection stays with the writer after its group for the next one, before
    /// it goes back to the pool (0: at once). Borrowing one from the pool for every group costs
    /// two more round trips.
    pub keep_connections: Duration,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            max_rows: 512,
            max_bytes: 16 * 1024 * 1024,
            window: Duration::ZERO,
            concurrency: 4,
            deadline: Duration::from_millis(1500),
            keep_connections: Duration::from_millis(100),
        }
    }
}

/// Why a delivery was not acknowledged as stored.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Not committed within the deadline; nothing was stored.
    #[error("not stored within the deadline")]
    Timeout,
    /// The database refused or failed; nothing was stored.
    #[error("not stored: {0}")]
    Database(String),
    /// The commit was sent but its outcome never came back.
    #[error("commit outcome unknown")]
    Unknown,
    /// The writer has stopped (the service is shutting down).
    #[error("the ledger writer has stopped")]
    Closed,
}

const WAITING: u8 = 0;
const COMMITTING: u8 = 1;
const ABANDONED: u8 = 2;

/// One delivery waiting for its group's commit.
struct Job {
    row: NewDelivery,
    deadline: Instant,
    /// WAITING until the writer commits it (COMMITTING) or the request gives up (ABANDONED).
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<Stored, LedgerError>>,
}

impl Job {
    fn answer(self, result: Result<Stored, LedgerError>) {
        // The request may have given up already; nobody is left to tell.
        let _ = self.reply.send(result);
    }
}

/// Handle to the group-commit writer. Cheap to clone; the writer stops when every handle is
/// dropped and the groups in flight are written.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    deadline: Duration,
    load: IngestLoad,
}

/// How many deliveries are waiting for the ledger writer right now: requests that are
/// verified and not yet answered. Processing and pruning read it to yield to ingestion.
#[derive(Debug, Clone, Default)]
pub struct IngestLoad(Arc<AtomicUsize>);

/// Deliveries waiting for the ledger writer at which it counts as busy. An unsaturated
/// service has a handful at most; a burst that uses every core queues many more.
pub(crate) const INGEST_BUSY: usize = 16;
/// How often a task waiting for a busy writer looks again.
const BUSY_POLL: Duration = Duration::from_millis(5);
/// How long the writer must stay below [`INGEST_BUSY`] before a task waiting for it goes
/// ahead. During a burst the count dips for a moment each time a large group is answered; a
/// batch started in such a dip runs through the burst that follows it.
const QUIET_FOR: Duration = Duration::from_millis(40);

impl IngestLoad {
    /// Deliveries waiting to be committed.
    pub fn waiting(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Whether acknowledging is using the machine: background work should yield.
    pub fn is_busy(&self) -> bool {
        self.waiting() >= INGEST_BUSY
    }

    /// Returns at once when the writer is not busy; otherwise once it has stayed not busy for
    /// [`QUIET_FOR`], or at `until` at the latest.
    pub async fn wait_while_busy(&self, until: Instant) {
        if !self.is_busy() {
            return;
        }
        let mut quiet_since = None;
        while Instant::now() < until {
            tokio::time::sleep(BUSY_POLL).await;
            if self.is_busy() {
                quiet_since = None;
            } else if quiet_since.get_or_insert_with(Instant::now).elapsed() >= QUIET_FOR {
                return;
            }
        }
    }

    /// A load with `n` deliveries waiting for good.
    #[cfg(test)]
    pub(crate) fn fixed(n: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(n)))
    }

    fn enter(&self) -> Waiting<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Waiting(self)
    }
}

/// One delivery counted in [`IngestLoad`] until it is answered (or its request is dropped).
struct Waiting<'a>(&'a IngestLoad);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("key", &self.row.dedupe_key)
            .finish()
    }
}

/// What the writer tells the rest of the service.
#[derive(Clone)]
pub struct GroupCommitHooks {
    /// Signalled after a group stored new deliveries (wakes the workers).
    pub stored: Arc<Notify>,
    /// Called with the size of every group written.
    pub group_written: Arc<dyn Fn(usize) + Send + Sync>,
}

impl std::fmt::Debug for GroupCommitHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitHooks").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the writer on the current runtime.
    pub fn start(pool: PgPool, config: GroupCommitConfig, hooks: GroupCommitHooks) -> Self {
        let (jobs, queue) = mpsc::channel(config.max_rows.max(1) * 4);
        let deadline = config.deadline;
        tokio::spawn(gather(queue, pool, config, hooks));
        Self {
            jobs,
            deadline,
            load: IngestLoad::default(),
        }
    }

    /// The writer's load, for background work to yield to.
    pub fn load(&self) -> IngestLoad {
        self.load.clone()
    }

    /// Stores one delivery; returns once its group is committed, or with an error (nothing
    /// stored) once the deadline has passed without the commit having started.
    pub async fn write(&self, row: NewDelivery) -> Result<Stored, LedgerError> {
        let _waiting = self.load.enter();
        let deadline = Instant::now() + self.deadline;
        let state = Arc::new(AtomicU8::new(WAITING));
        let (reply, mut answer) = oneshot::channel();
        let job = Job {
            row,
            deadline,
            state: state.clone(),
            reply,
        };
        match tokio::time::timeout_at(deadline, self.jobs.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(LedgerError::Closed),
            Err(_) => return Err(LedgerError::Timeout),
        }
        tokio::select! {
            result = &mut answer => return result.unwrap_or(Err(LedgerError::Closed)),
            () = tokio::time::sleep_until(deadline) => {}
        }
        let gave_up =
            state.compare_exchange(WAITING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst);
        if gave_up.is_ok() {
            return Err(LedgerError::Timeout);
        }
        // The commit was sent (or the writer is answering right now): wait for its outcome.
        match tokio::time::timeout(commit_wait(self.deadline), answer).await {
            Ok(result) => result.unwrap_or(Err(LedgerError::Closed)),
            Err(_) => Err(LedgerError::Unknown),
        }
    }
}

/// How long a commit that was sent may take before its outcome counts as unknown.
fn commit_wait(deadline: Duration) -> Duration {
    (deadline * 4).max(Duration::from_secs(10))
}

/// Deliveries gathered for one commit.
#[derive(Default)]
struct Group {
    jobs: Vec<Job>,
    bytes: usize,
}

impl Group {
    fn push(&mut self, job: Job) {
        self.bytes += job.row.body.len();
        self.jobs.push(job);
    }

    fn is_full(&self, config: &GroupCommitConfig) -> bool {
        self.jobs.len() >= config.max_rows || self.bytes >= config.max_bytes
    }

    /// Takes whatever is queued right now, up to the caps.
    fn fill(&mut self, queue: &mut mpsc::Receiver<Job>, config: &GroupCommitConfig) {
        while !self.is_full(config) {
            match queue.try_recv() {
                Ok(job) => self.push(job),
                Err(_) => break,
            }
        }
    }
}

/// The gatherer: forms groups while earlier ones commit, and hands each to a writer task.
async fn gather(
    mut queue: mpsc::Receiver<Job>,
    pool: PgPool,
    config: GroupCommitConfig,
    hooks: GroupCommitHooks,
) {
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    // At least one of the pool's connections is left to everything else.
    let max_kept = config
        .concurrency
        .min((pool.options().get_max_connections() as usize).saturating_sub(1));
    let kept = Arc::new(Kept::new(config.keep_connections, max_kept));
    let carry: Arc<Mutex<HashMap<i64, i32>>> = Arc::default();
    let mut retry = tokio::time::interval(CARRY_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            job = queue.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = retry.tick() => {
                retry_carried(&pool, &carry);
                continue;
            }
            () = tokio::time::sleep(kept.linger()),
                if kept.may_hold(slots.available_permits() < config.concurrency.max(1)) => {
                kept.release_unused();
                continue;
            }
        };
        let mut group = Group::default();
        group.push(first);
        let Some(slot) = wait_for_slot(&mut group, &mut queue, &slots, &config).await else {
            return;
        };
        if !config.window.is_zero() && !group.is_full(&config) {
            let until = Instant::now() + config.window;
            while !group.is_full(&config) {
                match tokio::time::timeout_at(until, queue.recv()).await {
                    Ok(Some(job)) => group.push(job),
                    _ => break,
                }
            }
        }
        let writer = Writer {
            pool: pool.clone(),
            kept: kept.clone(),
            hooks: hooks.clone(),
            carry: carry.clone(),
            deadline: config.deadline,
        };
        tokio::spawn(async move {
            writer.write_group(group.jobs).await;
            drop(slot);
        });
    }
}

/// How often redelivery counts that waited for a worker's row are tried again when no group
/// comes along to carry them.
const CARRY_RETRY: Duration = Duration::from_secs(1);

/// Tries the waiting redelivery counts again, off the gatherer's path.
fn retry_carried(pool: &PgPool, carry: &Arc<Mutex<HashMap<i64, i32>>>) {
    let waiting = !carry.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
    if waiting {
        let (pool, carry) = (pool.clone(), carry.clone());
        tokio::spawn(async move {
            if let Ok(mut conn) = pool.acquire().await {
                count_redeliveries(&mut conn, HashMap::new(), &carry).await;
            }
        });
    }
}

/// Gathers into `group` until a commit slot is free or the group is full.
async fn wait_for_slot(
    group: &mut Group,
    queue: &mut mpsc::Receiver<Job>,
    slots: &Arc<Semaphore>,
    config: &GroupCommitConfig,
) -> Option<OwnedSemaphorePermit> {
    loop {
        group.fill(queue, config);
        if group.is_full(config) {
            return slots.clone().acquire_owned().await.ok();
        }
        tokio::select! {
            biased;
            slot = slots.clone().acquire_owned() => return slot.ok(),
            job = queue.recv() => match job {
                Some(job) => group.push(job),
                None => return slots.clone().acquire_owned().await.ok(),
            },
        }
    }
}

/// What a group's write needs from the writer.
struct Writer {
    pool: PgPool,
    kept: Arc<Kept>,
    hooks: GroupCommitHooks,
    carry: Arc<Mutex<HashMap<i64, i32>>>,
    deadline: Duration,
}

impl Writer {
    /// Inserts and commits one group, then answers each of its requests.
    async fn write_group(&self, jobs: Vec<Job>) {
        let now = Instant::now();
        let (jobs, late): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| j.deadline > now && j.state.load(Ordering::SeqCst) == WAITING);
        for job in late {
            job.answer(Err(LedgerError::Timeout));
        }
        let Some(first_deadline) = jobs.iter().map(|j| j.deadline).min() else {
            return;
        };
        (self.hooks.group_written)(jobs.len());
        let rows: Vec<NewDelivery> = jobs.iter().map(|j| j.row.clone()).collect();
        let carried: usize = rows.iter().map(|r| r.body.len()).sum();
        let inserted = tokio::time::timeout_at(first_deadline, self.insert_open(&rows)).await;
        let open = match inserted {
            Err(_) => return answer_all(jobs, || LedgerError::Timeout),
            Ok(Err(err)) => return answer_all(jobs, || LedgerError::Database(err.to_string())),
            Ok(Ok(open)) => open,
        };
        // From here on the commit's outcome is the answer, however long it takes.
        let kept: Vec<bool> = jobs.iter().map(Job::start_commit).collect();
        let committed = tokio::time::timeout(commit_wait(self.deadline), open.commit(&kept)).await;
        let (answers, mut conn) = match committed {
            Err(_) => return answer_all(jobs, || LedgerError::Unknown),
            Ok(Err(err)) => return answer_all(jobs, || LedgerError::Database(err.to_string())),
            Ok(Ok(settled)) => settled,
        };
        let stored_new = answers.iter().any(|a| matches!(a, Some(Stored::New(_))));
        let repeats = redeliveries(&answers);
        for (job, answer) in jobs.into_iter().zip(answers) {
            if let Some(stored) = answer {
                job.answer(Ok(stored));
            }
        }
        if stored_new {
            self.hooks.stored.notify_one();
        }
        count_redeliveries(&mut conn, repeats, &self.carry).await;
        self.kept.keep(conn, carried);
    }

    /// Opens a transaction and inserts the group's rows, on a kept connection when there is
    /// one. A kept connection lost since its last group (the server restarted, say) is
    /// replaced once by one from the pool: nothing was committed through it.
    async fn insert_open(&self, rows: &[NewDelivery]) -> Result<Open, sqlx::Error> {
        if let Some(mut conn) = self.kept.take() {
            match begin_insert(&mut conn, rows).await {
                Ok(stored) => return Ok(Open { conn, stored }),
                Err(err) if !is_outage(&err) => return Err(err),
                // Dropped inside its transaction, so closed.
                Err(_) => drop(conn),
            }
        }
        let mut conn = Conn::new(self.pool.acquire().await?);
        let stored = begin_insert(&mut conn, rows).await?;
        Ok(Open { conn, stored })
    }
}

async fn begin_insert(conn: &mut Conn, rows: &[NewDelivery]) -> Result<Vec<Stored>, sqlx::Error> {
    conn.begin().await?;
    insert(conn, rows).await
}

impl Job {
    /// Claims the job for the commit; false when its request has given up.
    fn start_commit(&self) -> bool {
        self.state
            .compare_exchange(WAITING, COMMITTING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

fn answer_all(jobs: Vec<Job>, error: impl Fn() -> LedgerError) {
    for job in jobs {
        job.answer(Err(error()));
    }
}

/// A group's rows inserted in a transaction not yet committed.
struct Open {
    conn: Conn,
    stored: Vec<Stored>,
}

impl Open {
    /// Takes out the rows only requests that gave up needed, then commits. Returns each job's
    /// answer (`None` for those that gave up: they were answered already) and the connection.
    async fn commit(mut self, kept: &[bool]) -> Result<(Vec<Option<Stored>>, Conn), sqlx::Error> {
        let (answers, dropped) = settle(&self.stored, kept);
        if !dropped.is_empty() {
            sqlx::query!("DELETE FROM terra.deliveries WHERE id = ANY($1)", &dropped)
                .execute(&mut *self.conn)
                .await?;
        }
        self.conn.commit().await?;
        Ok((answers, self.conn))
    }
}

/// The answers of a group once some requests may have given up (`kept[i]` false), and the
/// new rows no remaining request needs. A new row whose first request gave up stays when a
/// later copy in the group is still waiting: that copy becomes its owner.
fn settle(stored: &[Stored], kept: &[bool]) -> (Vec<Option<Stored>>, Vec<i64>) {
    let new: HashSet<i64> = stored
        .iter()
        .filter_map(|s| match s {
            Stored::New(id) => Some(*id),
            Stored::Duplicate(_) => None,
        })
        .collect();
    let mut owned: HashSet<i64> = HashSet::new();
    let mut answers: Vec<Option<Stored>> = stored
        .iter()
        .zip(kept)
        .map(|(s, &keep)| {
            if let (true, Stored::New(id)) = (keep, s) {
                owned.insert(*id);
            }
            keep.then_some(*s)
        })
        .collect();
    for answer in answers.iter_mut().flatten() {
        if let Stored::Duplicate(id) = *answer {
            if new.contains(&id) && owned.insert(id) {
                *answer = Stored::New(id);
            }
        }
    }
    let mut dropped: Vec<i64> = new.difference(&owned).copied().collect();
    dropped.sort_unstable();
    (answers, dropped)
}

/// Redeliveries of rows stored before this group, by row id.
fn redeliveries(answers: &[Option<Stored>]) -> HashMap<i64, i32> {
    let new: HashSet<i64> = answers
        .iter()
        .flatten()
        .filter_map(|s| match s {
            Stored::New(id) => Some(*id),
            Stored::Duplicate(_) => None,
        })
        .collect();
    let mut counts = HashMap::new();
    for answer in answers.iter().flatten() {
        if let Stored::Duplicate(id) = answer {
            if !new.contains(id) {
                *counts.entry(*id).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Adds redeliveries to their rows' counters after the answers went out; counts for rows a
/// worker holds right now wait for a later group.
async fn count_redeliveries(
    conn: &mut PgConnection,
    fresh: HashMap<i64, i32>,
    carry: &Mutex<HashMap<i64, i32>>,
) {
    let mut counts = std::mem::take(&mut *carry.lock().unwrap_or_else(|e| e.into_inner()));
    if counts.is_empty() && fresh.is_empty() {
        return;
    }
    for (id, n) in fresh {
        *counts.entry(id).or_insert(0) += n;
    }
    let left = count_duplicates(conn, &counts).await.unwrap_or(counts);
    let mut carry = carry.lock().unwrap_or_else(|e| e.into_inner());
    for (id, n) in left {
        *carry.entry(id).or_insert(0) += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_gave_up_takes_its_row_out_unless_a_copy_waits() {
        use Stored::{Duplicate, New};
        // Rows 1 (two copies) and 2 are new, 9 was stored before.
        let stored = [New(1), Duplicate(1), New(2), Duplicate(9)];
        let (answers, dropped) = settle(&stored, &[true, true, true, true]);
        assert_eq!(
            answers,
            [
                Some(New(1)),
                Some(Duplicate(1)),
                Some(New(2)),
                Some(Duplicate(9))
            ]
        );
        assert!(dropped.is_empty());

        let (answers, dropped) = settle(&stored, &[false, true, false, true]);
        assert_eq!(answers, [None, Some(New(1)), None, Some(Duplicate(9))]);
        assert_eq!(dropped, [2]);

        let (answers, dropped) = settle(&stored, &[false, false, true, false]);
        assert_eq!(answers, [None, None, Some(New(2)), None]);
        assert_eq!(dropped, [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_writer_must_stay_quiet_for_a_while_before_others_go_ahead() {
        let load = IngestLoad::fixed(INGEST_BUSY);
        let set = |n: usize| load.0.store(n, Ordering::Relaxed);
        let start = Instant::now();
        let waiting = load.wait_while_busy(start + Duration::from_secs(5));
        let changes = async {
            // A dip shorter than QUIET_FOR, as when a large group is answered mid-burst...
            tokio::time::sleep(Duration::from_millis(100)).await;
            set(0);
            tokio::time::sleep(QUIET_FOR / 2).await;
            set(INGEST_BUSY);
            // ...then the burst ends.
            tokio::time::sleep(Duration::from_millis(100)).await;
            set(INGEST_BUSY - 1);
        };
        tokio::join!(waiting, changes);
        let waited = start.elapsed();
        let burst_end = Duration::from_millis(200) + QUIET_FOR / 2;
        assert!(waited >= burst_end + QUIET_FOR, "{waited:?}");
        assert!(
            waited <= burst_end + QUIET_FOR + 2 * BUSY_POLL,
            "{waited:?}"
        );

        // Not busy: no wait at all. Busy for good: until the limit.
        let start = Instant::now();
        load.wait_while_busy(start + Duration::from_secs(5)).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        set(INGEST_BUSY);
        load.wait_while_busy(start + Duration::from_secs(1)).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(1), "{waited:?}");
        assert!(waited <= Duration::from_secs(1) + BUSY_POLL, "{waited:?}");
    }

    #[test]
    fn only_rows_stored_before_count_as_redeliveries() {
        use Stored::{Duplicate, New};
        let answers = [
            Some(New(1)),
            Some(Duplicate(1)),
            Some(Duplicate(9)),
            None,
            Some(Duplicate(9)),
        ];
        assert_eq!(redeliveries(&answers), HashMap::from([(9, 2)]));
    }
}
