//! `terra-sink reconcile`: brings `terra.users` in line with the users Terra's REST API lists.
//!
//! Terra's users come from `GET /subscriptions` (page by page, [`api`]); the comparison with
//! ours is pure ([`plan`]). Users Terra lists that terra-sink never saw are created (connected);
//! connected users it does not list, once `GET /userInfo` confirms Terra no longer has them
//! (a listing that changes while it is paged can skip a user), are marked `missing_at_terra`
//! with a reason (inactive, data kept); users marked so earlier that Terra lists again are
//! connected again. Nothing else is touched: the lifecycle events own every other status.
//!
//! Ordering: every change carries Terra's clock when it answered the first page, as
//! `status_ordering_ts`, under the rule lifecycle events follow (`terra.is_newer`): an auth
//! Terra sent after the listing still connects a marked user, and an older event that arrives
//! late does not undo the mark.
//!
//! With a gap threshold, users whose newest typed record is older than it get a backfill from
//! that record's day to today, through [`crate::backfill::run`] (the same requests, day budget,
//! retries and bookkeeping as `terra-sink backfill`).

mod api;
mod plan;
mod schedule;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::backfill::{
    self, ApiError, BackfillConfig, BackfillError, ClientConfig, FetchError, Progress, Stage,
    TerraClient, Users, Window,
};
use crate::db::backfill::{check_schema, SchemaError};
use crate::db::reconcile::{self as sql, NewUser};
use api::{Presence, Stopping, UntilStopped};
use plan::Plan;
pub use schedule::{on_schedule, ScheduledReconcile};

/// Everything a reconcile run needs.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// Terra API access (also used by the gap backfill).
    pub client: ClientConfig,
    /// Only report what would change.
    pub dry_run: bool,
    /// Users per page of `GET /subscriptions`.
    pub per_page: u32,
    /// Mark every connected user when Terra lists nobody (otherwise refused as a likely
    /// mistake: credentials of another Terra environment, say).
    pub allow_empty: bool,
    /// Backfill the gaps of users whose newest data is old.
    pub gap: Option<GapBackfill>,
    /// Progress display.
    pub progress: Progress,
}

/// Terra's default page size for `GET /subscriptions`.
pub const DEFAULT_PER_PAGE: u32 = 500;

/// Which gaps to backfill, and how.
#[derive(Debug, Clone)]
pub struct GapBackfill {
    /// A user whose newest record is older than this gets a backfill.
    pub older_than: Duration,
    /// The longest gap asked for, in days (also what a user without any record gets).
    pub max_days: u32,
    /// How to backfill; its `client`, `users`, `range` and `progress` are set by the run.
    pub backfill: BackfillConfig,
}

/// What a reconcile did (or, in a dry run, would do).
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Distinct users Terra lists.
    pub listed: usize,
    /// Pages of `GET /subscriptions` fetched.
    pub pages: u32,
    /// Users `terra.users` held before.
    pub held: usize,
    /// Users created.
    pub created: Vec<String>,
    /// Users marked `missing_at_terra`.
    pub marked: Vec<String>,
    /// Users marked earlier that Terra lists again, connected again.
    pub restored: Vec<String>,
    /// Users left as they are (a change a newer lifecycle event overtook included).
    pub unchanged: usize,
    /// Connected users not in the listing that `GET /userInfo` still knows (left as they are).
    pub still_at_terra: Vec<String>,
    /// Users whose gap is (or would be) backfilled, with the days.
    pub gaps: Vec<(String, Window)>,
    /// The gap backfill, when one ran.
    pub backfill: Option<backfill::Summary>,
    /// The first few failures, for the final report.
    pub failures: Vec<String>,
    /// True when nothing was changed on purpose.
    pub dry_run: bool,
    /// True when the run stopped early (signal).
    pub interrupted: bool,
}

const MAX_REPORTED: usize = 10;

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (would, verb) = if self.dry_run {
            ("would be ", "dry run: nothing was changed")
        } else {
            ("", "")
        };
        writeln!(
            f,
            "reconcile summary: Terra lists {} users ({} pages); terra.users held {}",
            self.listed, self.pages, self.held
        )?;
        write!(
            f,
            "  users: {} {would}created, {} {would}marked {}, {} {would}connected again, {} unchanged",
            self.created.len(),
            self.marked.len(),
            plan::MISSING,
            self.restored.len(),
            self.unchanged
        )?;
        list(f, "marked", &self.marked)?;
        list(f, "created", &self.created)?;
        if !self.still_at_terra.is_empty() {
            write!(
                f,
                "\n  not listed, but GET /userInfo still knows them (unchanged): {}",
                self.still_at_terra.len()
            )?;
        }
        if !self.gaps.is_empty() || self.backfill.is_some() {
            write!(f, "\n  gaps: {} users {would}backfilled", self.gaps.len())?;
        }
        if let Some(backfill) = &self.backfill {
            write!(f, "\n{backfill}")?;
        }
        for failure in &self.failures {
            write!(f, "\n  failed: {failure}")?;
        }
        if self.dry_run {
            write!(f, "\n  {verb}")?;
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

/// A line naming the first few of `ids`.
fn list(f: &mut std::fmt::Formatter<'_>, what: &str, ids: &[String]) -> std::fmt::Result {
    if ids.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = ids.iter().take(MAX_REPORTED).map(String::as_str).collect();
    let more = ids.len().saturating_sub(MAX_REPORTED);
    write!(f, "\n  {what}: {}", shown.join(", "))?;
    if more > 0 {
        write!(f, " and {more} more")?;
    }
    Ok(())
}

/// Why a reconcile stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Terra refused the credentials, or its users could not be listed: nothing was changed
    /// after that point.
    #[error("{error}")]
    Api {
        /// The cause.
        error: ApiError,
        /// What was done before stopping.
        summary: Box<Summary>,
    },
    /// Terra lists no users at all while terra-sink holds connected ones.
    #[error("Terra lists no users, but terra.users holds {connected} connected ones: nothing was marked (wrong TERRA_DEV_ID for this database? use --allow-empty if Terra really has none)")]
    EmptyListing {
        /// Connected users that would have been marked.
        connected: usize,
    },
    /// The database is not migrated.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The gap backfill failed (other than Terra refusing the credentials).
    #[error("the gap backfill failed: {0}")]
    Backfill(#[source] BackfillError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn api_error(error: ApiError, summary: &mut Summary) -> ReconcileError {
    summary.interrupted = true;
    ReconcileError::Api {
        error,
        summary: Box::new(std::mem::take(summary)),
    }
}

/// Runs a reconcile until it is done, Terra refuses the credentials, or `stop` turns true
/// (before any change is written: nothing is changed then).
pub async fn run(
    pool: &PgPool,
    config: &ReconcileConfig,
    stop: watch::Receiver<bool>,
) -> Result<Summary, ReconcileError> {
    let mut summary = Summary {
        dry_run: config.dry_run,
        ..Summary::default()
    };
    let client = TerraClient::new(&config.client).map_err(|e| api_error(e, &mut summary))?;
    check_schema(pool).await?;
    let mut pacer = UntilStopped(stop.clone());
    let stage = Stage::new(config.progress, 1, "pages of Terra's users");
    let listed = api::list_users(&client, config.per_page, &mut pacer, &stage).await;
    stage.finish();
    let listing = match listed {
        Ok(listing) => listing,
        Err(FetchError::Paced(Stopping)) => return Ok(interrupted(summary)),
        Err(FetchError::Api(error)) => return Err(api_error(error, &mut summary)),
    };
    let held = sql::held_users(pool).await?;
    let mut plan = plan::compare(&listing.users, &held);
    summary.listed = listing
        .users
        .iter()
        .map(|u| u.user_id.as_str())
        .collect::<HashSet<_>>()
        .len();
    summary.pages = listing.pages;
    summary.held = held.len();
    summary.unchanged = plan.unchanged;
    if summary.listed == 0 && !plan.missing.is_empty() && !config.allow_empty {
        return Err(ReconcileError::EmptyListing {
            connected: plan.missing.len(),
        });
    }
    let confirmed = confirm_missing(&client, &mut plan, &mut summary, &mut pacer, config).await;
    if !confirmed? {
        return Ok(interrupted(summary));
    }
    let answered_at_ms = listing
        .answered_at_ms
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    apply(pool, config, &plan, answered_at_ms, &mut summary).await?;
    if let Some(gap) = &config.gap {
        backfill_gaps(pool, config, gap, &plan, &mut summary, stop).await?;
    }
    Ok(summary)
}

fn interrupted(mut summary: Summary) -> Summary {
    summary.interrupted = true;
    summary
}

/// Asks `GET /userInfo` about each connected user the listing lacks; only those Terra answers
/// 404 for stay in `plan.missing`. Returns false when a stop was asked for.
async fn confirm_missing(
    client: &TerraClient,
    plan: &mut Plan,
    summary: &mut Summary,
    pacer: &mut UntilStopped,
    config: &ReconcileConfig,
) -> Result<bool, ReconcileError> {
    let candidates = std::mem::take(&mut plan.missing);
    let stage = Stage::new(config.progress, candidates.len() as u64, "users confirmed");
    for user_id in candidates {
        stage.advance(&user_id);
        match api::user_info(client, &user_id, pacer).await {
            Ok(Presence::Gone) => plan.missing.push(user_id),
            Ok(Presence::Present) => {
                summary.unchanged += 1;
                summary.still_at_terra.push(user_id);
            }
            Err(FetchError::Paced(Stopping)) => return Ok(false),
            Err(FetchError::Api(error)) if error.is_fatal() => {
                return Err(api_error(error, summary))
            }
            Err(FetchError::Api(error)) => {
                summary.unchanged += 1;
                tracing::warn!(
                    user_id,
                    "cannot confirm that Terra no longer has this user: {error}"
                );
                if summary.failures.len() < MAX_REPORTED {
                    summary
                        .failures
                        .push(format!("{user_id}: GET /userInfo: {error}"));
                }
            }
        }
    }
    stage.finish();
    Ok(true)
}

/// Writes the plan (or, in a dry run, reports it), counting what a newer event overtook as
/// unchanged.
async fn apply(
    pool: &PgPool,
    config: &ReconcileConfig,
    plan: &Plan,
    answered_at_ms: i64,
    summary: &mut Summary,
) -> Result<(), ReconcileError> {
    let planned = plan.create.len() + plan.missing.len() + plan.restore.len();
    if config.dry_run {
        summary.created = plan.create.iter().map(|u| u.user_id.clone()).collect();
        summary.marked = plan.missing.clone();
        summary.restored = plan.restore.clone();
        return Ok(());
    }
    let new_users: Vec<NewUser<'_>> = plan
        .create
        .iter()
        .map(|u| NewUser {
            user_id: &u.user_id,
            provider: u.provider.as_deref(),
            reference_id: u.reference_id.as_deref(),
            scopes: &u.scopes,
            active: u.active,
        })
        .collect();
    summary.created = sql::create(pool, &new_users, answered_at_ms).await?;
    let at = DateTime::<Utc>::from_timestamp_millis(answered_at_ms)
        .map_or_else(|| answered_at_ms.to_string(), |t| t.to_rfc3339());
    let reason =
        format!("not listed by Terra's GET /subscriptions at {at}, and GET /userInfo answered 404");
    fn ids(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    summary.marked = sql::mark_missing(pool, &ids(&plan.missing), &reason, answered_at_ms).await?;
    summary.restored = sql::restore(pool, &ids(&plan.restore), answered_at_ms).await?;
    let applied = summary.created.len() + summary.marked.len() + summary.restored.len();
    summary.unchanged += planned.saturating_sub(applied);
    for id in &summary.marked {
        tracing::info!(user_id = %id, "marked {}: Terra no longer has this user", plan::MISSING);
    }
    Ok(())
}

/// Finds the users whose newest record is older than the threshold and backfills their gaps
/// (in a dry run, only finds them, counting the users the run would have created as connected
/// and without records).
async fn backfill_gaps(
    pool: &PgPool,
    config: &ReconcileConfig,
    gap: &GapBackfill,
    plan: &Plan,
    summary: &mut Summary,
    stop: watch::Receiver<bool>,
) -> Result<(), ReconcileError> {
    let mut newest: BTreeMap<String, Option<DateTime<Utc>>> =
        sql::newest_data(pool).await?.into_iter().collect();
    if config.dry_run {
        for u in plan.create.iter().filter(|u| u.active) {
            newest.entry(u.user_id.clone()).or_insert(None);
        }
        for id in &plan.missing {
            newest.remove(id);
        }
    }
    let now = Utc::now();
    summary.gaps = newest
        .into_iter()
        .filter_map(|(user, t)| plan::gap(t, now, gap.older_than, gap.max_days).map(|w| (user, w)))
        .collect();
    let (Some(start), Some(end)) = (
        summary.gaps.iter().map(|(_, w)| w.start).min(),
        summary.gaps.iter().map(|(_, w)| w.end).max(),
    ) else {
        return Ok(());
    };
    if config.dry_run {
        return Ok(());
    }
    let run = BackfillConfig {
        client: config.client.clone(),
        users: Users::Ranges(summary.gaps.clone()),
        range: Window { start, end },
        progress: config.progress,
        ..gap.backfill.clone()
    };
    match backfill::run(pool, &run, stop).await {
        Ok(done) => {
            summary.interrupted |= done.interrupted;
            summary.backfill = Some(done);
            Ok(())
        }
        Err(BackfillError::Fatal {
            error,
            summary: done,
        }) => {
            summary.backfill = Some(*done);
            Err(api_error(error, summary))
        }
        Err(other) => Err(ReconcileError::Backfill(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_marked_users_and_says_when_nothing_changed() {
        let s = Summary {
            listed: 2,
            pages: 1,
            held: 3,
            created: vec!["u-new".into()],
            marked: vec!["u-gone".into()],
            unchanged: 1,
            dry_run: true,
            ..Summary::default()
        };
        let text = s.to_string();
        assert!(text.contains("Terra lists 2 users (1 pages)"), "{text}");
        assert!(
            text.contains("1 would be marked missing_at_terra"),
            "{text}"
        );
        assert!(text.contains("marked: u-gone"), "{text}");
        assert!(text.contains("dry run: nothing was changed"), "{text}");
    }

    #[test]
    fn long_lists_are_cut() {
        let s = Summary {
            marked: (0..12).map(|i| format!("u{i}")).collect(),
            ..Summary::default()
        };
        assert!(s.to_string().contains("u9 and 2 more"), "{s}");
    }
}
