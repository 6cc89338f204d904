//! `reconcile`: `terra.users` in line with the users Terra's REST API lists, and optionally a
//! backfill of the users whose newest data is old.

use anyhow::{bail, Context};
use terra_sink::backfill::{self, Users, Window};
use terra_sink::reconcile::{self, GapBackfill, ReconcileConfig, ReconcileError};

use super::backfill::{backfill_config, client_config, progress, stopped_early};
use super::{drain, open_database};
use crate::args::ReconcileArgs;

/// The run's settings from the command line.
fn config(args: &ReconcileArgs) -> anyhow::Result<ReconcileConfig> {
    let client = client_config(&args.api)?;
    let gap = args.backfill_gap.map(|older_than| {
        // Placeholders: the run sets the users and days of each gap.
        let today = chrono::Utc::now().date_naive();
        let range = Window {
            start: today,
            end: today.succ_opt().unwrap_or(today),
        };
        let users = Users::Listed(Vec::new());
        GapBackfill {
            older_than,
            max_days: args.backfill_max_days,
            backfill: backfill_config(client.clone(), &args.fetch, users, range, args.no_progress),
        }
    });
    Ok(ReconcileConfig {
        client,
        dry_run: args.dry_run,
        per_page: args.per_page,
        allow_empty: args.allow_empty,
        gap,
        progress: progress(args.no_progress),
    })
}

/// Runs the reconcile; processes what a gap backfill stored unless told not to or stopped.
pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    let pool = open_database(&args.database).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signalled = backfill::stop_on_signals(stop_tx).context("cannot listen for Ctrl-C")?;
    let (summary, fatal) = match reconcile::run(&pool, &config, stop_rx).await {
        Ok(summary) => (summary, None),
        Err(ReconcileError::Api { error, summary }) => (*summary, Some(error)),
        Err(other) => return Err(other.into()),
    };
    println!("{summary}");
    let stored = summary
        .backfill
        .as_ref()
        .is_some_and(|b| b.deliveries_new > 0);
    let stopped_by_user = summary.interrupted && fatal.is_none();
    if stored && !args.enqueue_only && !stopped_by_user {
        drain(&pool, &args.worker).await?;
    }
    if let Some(error) = fatal {
        return Err(error.into());
    }
    if summary.interrupted {
        return Err(stopped_early("reconcile", signalled.exit_status()).into());
    }
    let mut failed = Vec::new();
    if !summary.failures.is_empty() {
        failed.push(format!(
            "{} users could not be checked",
            summary.failures.len()
        ));
    }
    match summary.backfill.as_ref().map_or(0, |b| b.windows_failed) {
        0 => {}
        n => failed.push(format!("{n} backfill windows failed")),
    }
    if !failed.is_empty() {
        bail!(
            "{}; run the same command again to retry",
            failed.join(" and ")
        );
    }
    Ok(())
}
