//! `backfill`: history from Terra's REST API into the ledger, then typed rows.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use terra_sink::backfill::{self, BackfillConfig, BackfillError, Progress, Users};
use terra_sink::{ClientConfig, DataType, RetryPolicy};

use super::{drain, open_database};
use crate::args::BackfillArgs;
use crate::Exit;

fn missing(what: &str, env: &str, flag: &str) -> anyhow::Error {
    anyhow!("{what} is not set: set {env} (or {flag})")
}

/// The run's settings from the command line.
fn config(args: &BackfillArgs) -> anyhow::Result<BackfillConfig> {
    let dev_id = args
        .dev_id
        .clone()
        .ok_or_else(|| missing("the Terra developer id", "TERRA_DEV_ID", "--dev-id"))?;
    let api_key = args
        .api_key
        .clone()
        .ok_or_else(|| missing("the Terra API key", "TERRA_API_KEY", "--api-key"))?;
    let today = chrono::Utc::now().date_naive();
    let range = backfill::resolve_range(args.start_date, args.end_date, args.days, today)?;
    let users = if args.all_users {
        Users::AllActive
    } else {
        Users::Listed(args.user_ids.clone())
    };
    let types = if args.types.is_empty() {
        DataType::ALL.to_vec()
    } else {
        args.types.iter().map(|&t| t.into()).collect()
    };
    Ok(BackfillConfig {
        client: ClientConfig {
            base_url: args.api_url.clone(),
            dev_id,
            api_key,
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            retry: RetryPolicy {
                max_retries: args.max_retries,
                initial_backoff: Duration::from_millis(args.initial_backoff_ms),
                max_backoff: Duration::from_secs(args.max_backoff_secs),
            },
        },
        users,
        types,
        range,
        window_days: args.window_days,
        with_samples: args.with_samples,
        refetch: args.refetch,
        day_budget: args.days_per_minute,
        budget_period: Duration::from_secs(60),
        concurrency: args.concurrency,
        progress: if args.no_progress {
            Progress::Never
        } else {
            Progress::Auto
        },
    })
}

/// Runs the backfill; processes what it stored unless told not to or stopped by the user.
pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    // An unreachable database is reported as such before any request goes to Terra.
    let pool = open_database(&args.database).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signalled = backfill::stop_on_signals(stop_tx).context("cannot listen for Ctrl-C")?;
    let (summary, fatal) = match backfill::run(&pool, &config, stop_rx).await {
        Ok(summary) => (summary, None),
        Err(BackfillError::Fatal { error, summary }) => (*summary, Some(error)),
        Err(other) => return Err(other.into()),
    };
    println!("{summary}");
    // What was stored before credentials were refused is good data: process it too. After a
    // Ctrl-C the user wants out; the workers (or the next run) process it.
    let stopped_by_user = summary.interrupted && fatal.is_none();
    if !args.enqueue_only && !stopped_by_user {
        drain(&pool, &args.worker).await?;
    }
    if let Some(error) = fatal {
        return Err(error.into());
    }
    if summary.interrupted {
        // Stopped by a signal: say so in the exit status too (130 for Ctrl-C), as a script
        // running the command must not take a partial backfill for a finished one.
        let (code, how) = match signalled.exit_status() {
            Some(code) => (code, " by a signal"),
            None => (1, ""),
        };
        let message =
            format!("backfill stopped early{how}; run the same command again to continue");
        return Err(Exit { code, message }.into());
    }
    if summary.windows_failed > 0 {
        bail!(
            "{} windows failed; run the same command again to retry them",
            summary.windows_failed
        );
    }
    Ok(())
}
