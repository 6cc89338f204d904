//! `backfill`: history from Terra's REST API into the ledger, then typed rows.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use terra_sink::backfill::{self, BackfillConfig, BackfillError, Progress, Users, Window};
use terra_sink::{ClientConfig, DataType, RetryPolicy};

use super::{drain, open_database};
use crate::args::{BackfillArgs, FetchArgs, TerraApiArgs};
use crate::Exit;

fn missing(what: &str, env: &str, flag: &str) -> anyhow::Error {
    anyhow!("{what} is not set: set {env} (or {flag})")
}

/// Terra API access from the command line (credentials required).
pub fn client_config(args: &TerraApiArgs) -> anyhow::Result<ClientConfig> {
    let dev_id = args
        .dev_id
        .clone()
        .ok_or_else(|| missing("the Terra developer id", "TERRA_DEV_ID", "--dev-id"))?;
    let api_key = args
        .api_key
        .clone()
        .ok_or_else(|| missing("the Terra API key", "TERRA_API_KEY", "--api-key"))?;
    Ok(ClientConfig {
        base_url: args.api_url.clone(),
        dev_id,
        api_key,
        request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
        retry: RetryPolicy {
            max_retries: args.max_retries,
            initial_backoff: Duration::from_millis(args.initial_backoff_ms),
            max_backoff: Duration::from_secs(args.max_backoff_secs),
        },
    })
}

/// Progress bars unless `--no-progress`.
pub fn progress(no_progress: bool) -> Progress {
    if no_progress {
        Progress::Never
    } else {
        Progress::Auto
    }
}

/// A backfill of `users` over `range`, fetched as `fetch` says.
pub fn backfill_config(
    client: ClientConfig,
    fetch: &FetchArgs,
    users: Users,
    range: Window,
    no_progress: bool,
) -> BackfillConfig {
    let types = if fetch.types.is_empty() {
        DataType::ALL.to_vec()
    } else {
        fetch.types.iter().map(|&t| t.into()).collect()
    };
    BackfillConfig {
        client,
        users,
        types,
        range,
        window_days: fetch.window_days,
        with_samples: fetch.with_samples,
        refetch: false,
        day_budget: fetch.days_per_minute,
        budget_period: Duration::from_secs(60),
        concurrency: fetch.concurrency,
        progress: progress(no_progress),
    }
}

/// The run's settings from the command line.
fn config(args: &BackfillArgs) -> anyhow::Result<BackfillConfig> {
    let client = client_config(&args.api)?;
    let today = chrono::Utc::now().date_naive();
    let range = backfill::resolve_range(args.start_date, args.end_date, args.days, today)?;
    let users = if args.all_users {
        Users::AllActive
    } else {
        Users::Listed(args.user_ids.clone())
    };
    Ok(BackfillConfig {
        refetch: args.refetch,
        ..backfill_config(client, &args.fetch, users, range, args.no_progress)
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
        return Err(stopped_early("backfill", signalled.exit_status()).into());
    }
    if summary.windows_failed > 0 {
        bail!(
            "{} windows failed; run the same command again to retry them",
            summary.windows_failed
        );
    }
    Ok(())
}

/// Stopped by a signal: say so in the exit status too (130 for Ctrl-C), as a script running
/// the command must not take a partial run for a finished one.
pub fn stopped_early(command: &str, signal_status: Option<u8>) -> Exit {
    let (code, how) = match signal_status {
        Some(code) => (code, " by a signal"),
        None => (1, ""),
    };
    let message = format!("{command} stopped early{how}; run the same command again to continue");
    Exit { code, message }
}
