//! The commands of the `terra-sink` binary: parse, dispatch, report one clear line on failure.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sqlx::PgPool;

use crate::config::{
    BackfillArgs, Cli, Command, DatabaseArgs, HealthcheckArgs, LogFormat, ReprocessArgs, SendArgs,
    ServeArgs, WorkerArgs,
};
use crate::ledger;
use crate::metrics::Metrics;
use crate::worker::Processor;
use crate::{config_source, db, server, telemetry};

/// The version of this binary.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Parses the command line (and `./.env`) and runs the chosen command.
pub async fn main() -> ExitCode {
    // A missing .env is normal; the environment and flags still apply.
    let sources = config_source::load_dotenv();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(err) => {
            if let Some(message) = config_source::explain(&err, &argv, &sources) {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let format = cli.log.log_format;
    let telemetry = match telemetry::init(format, cli.log.otlp_endpoint.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(problem) = &sources.problem {
        tracing::warn!("{problem}");
    }
    let result = run(cli.command).await;
    // The exporter sends from its own thread; waiting for it must not block the runtime.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // One line for a person; log collectors reading JSON also get it as an event.
            if format == LogFormat::Json {
                tracing::error!("{message}");
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(args) => migrate(&args).await,
        Command::Reprocess(args) => reprocess(args).await,
        Command::Healthcheck(args) => healthcheck(&args).await,
        Command::Backfill(args) => {
            // An unreachable database is reported as such before any request goes to Terra.
            if let Ok(settings) = args.database.settings() {
                db::connect::open(&settings)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            backfill(*args).await
        }
        Command::Send(args) => send(args).await,
        Command::Deliveries(args) => {
            let pool = open_database(&args.database).await?;
            crate::deliveries::run(&pool, args.command)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// The shared pool of a command, once the database was reached (or why it cannot be).
async fn open_database(args: &DatabaseArgs) -> Result<PgPool, String> {
    let settings = args.settings().map_err(|e| e.to_string())?;
    db::connect::open(&settings)
        .await
        .map_err(|e| e.to_string())
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let config = args.validate().map_err(|e| e.to_string())?;
    tracing::info!(version = VERSION, "terra-sink starting");
    let pool = db::connect::pool(&config.database).map_err(|e| e.to_string())?;
    prepare_schema(&pool, &config.database, config.migrate_on_start).await?;
    let server = server::Server::bind(&config, pool)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    server
        .run(server::shutdown_signal())
        .await
        .map_err(|e| format!("server failed: {e}"))
}

/// Applies pending migrations when asked to, and logs the schema's state. Without migrations
/// to apply, an unreachable database does not stop the service: `/readyz` reports it.
async fn prepare_schema(
    pool: &PgPool,
    settings: &db::DbSettings,
    migrate: bool,
) -> Result<(), String> {
    if let Err(err) = db::connect::probe(&pool.connect_options(), settings.acquire_timeout).await {
        if migrate {
            return Err(format!("cannot apply the database migrations: {err}"));
        }
        tracing::warn!(error = %err, "database not reachable at start-up; /readyz answers 503 until it is");
        return Ok(());
    }
    let state = |pool| async move {
        db::schema::migration_state(pool)
            .await
            .map_err(|e| format!("cannot read the migration state: {e}"))
    };
    let before = state(pool).await?;
    if migrate && !before.is_current() {
        db::migrate(pool).await.map_err(|e| e.to_string())?;
        let after = state(pool).await?;
        let now = after.applied.saturating_sub(before.applied);
        tracing::info!(
            applied_now = now,
            "database schema: applied {now} now; {after}"
        );
    } else if before.is_current() {
        tracing::info!("database schema: {before}");
    } else {
        tracing::warn!(
            "database schema: {before}; run `terra-sink migrate` (or set TERRA_SINK_MIGRATE_ON_START=true)"
        );
    }
    Ok(())
}

async fn migrate(args: &DatabaseArgs) -> Result<(), String> {
    let pool = open_database(args).await?;
    let state = |pool| async move {
        db::schema::migration_state(pool)
            .await
            .map_err(|e| format!("cannot read the migration state: {e}"))
    };
    let before = state(&pool).await?;
    db::migrate(&pool).await.map_err(|e| e.to_string())?;
    let after = state(&pool).await?;
    let now = after.applied.saturating_sub(before.applied);
    println!("applied {now} migration(s) now; {after}");
    Ok(())
}

async fn backfill(args: BackfillArgs) -> Result<(), String> {
    use crate::backfill::{self, client, plan, BackfillConfig, BackfillError, Progress, Users};

    let missing =
        |what: &str, env: &str, flag: &str| format!("{what} is not set: set {env} (or {flag})");
    let dev_id = args
        .dev_id
        .ok_or_else(|| missing("the Terra developer id", "TERRA_DEV_ID", "--dev-id"))?;
    let api_key = args
        .api_key
        .ok_or_else(|| missing("the Terra API key", "TERRA_API_KEY", "--api-key"))?;
    let today = chrono::Utc::now().date_naive();
    let range = plan::resolve_range(args.start_date, args.end_date, args.days, today)
        .map_err(|e| e.to_string())?;
    let users = if args.all_users {
        Users::AllActive
    } else {
        Users::Listed(args.user_ids)
    };
    let types = if args.types.is_empty() {
        plan::DataType::ALL.to_vec()
    } else {
        args.types
    };
    let config = BackfillConfig {
        client: client::ClientConfig {
            base_url: args.api_url,
            dev_id,
            api_key,
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            retry: client::RetryPolicy {
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
    };
    let url = args.database.url().map_err(|e| e.to_string())?;
    let pool = db::connect_lazy(&url, 8, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signalled = backfill::signal::stop_on_signals(stop_tx)
        .map_err(|e| format!("cannot listen for Ctrl-C: {e}"))?;
    let (summary, fatal) = match backfill::run(&pool, &config, stop_rx).await {
        Ok(summary) => (summary, None),
        Err(BackfillError::Fatal { error, summary }) => (*summary, Some(error)),
        Err(other) => return Err(other.to_string()),
    };
    println!("{summary}");
    // What was stored before credentials were refused is good data: process it too. After a
    // Ctrl-C the user wants out; the workers (or the next run) process it.
    let stopped_by_user = summary.interrupted && fatal.is_none();
    if !args.enqueue_only && !stopped_by_user {
        drain(&pool, &args.worker).await?;
    }
    if let Some(error) = fatal {
        return Err(error.to_string());
    }
    if let Some(status) = signalled.exit_status().filter(|_| summary.interrupted) {
        // Stopped early by a signal: say so in the exit status too (130 for Ctrl-C), as a
        // script running the command must not take a partial backfill for a finished one.
        eprintln!("backfill stopped early by a signal; run the same command again to continue");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(i32::from(status));
    }
    if summary.interrupted {
        return Err("backfill stopped early; run the same command again to continue".into());
    }
    if summary.windows_failed > 0 {
        return Err(format!(
            "{} windows failed; run the same command again to retry them",
            summary.windows_failed
        ));
    }
    Ok(())
}

async fn send(args: SendArgs) -> Result<(), String> {
    if args.list_samples {
        for name in crate::send::sample_names() {
            println!("{name}");
        }
        return Ok(());
    }
    let body = match (&args.file, &args.sample) {
        (Some(path), _) => {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
        (None, Some(name)) => crate::send::sample(name)
            .ok_or_else(|| {
                let names: Vec<_> = crate::send::sample_names().collect();
                format!("no built-in sample {name:?}; one of: {}", names.join(", "))
            })?
            .as_bytes()
            .to_vec(),
        (None, None) => return Err("give --file or --sample".into()),
    };
    let secret = args
        .secret
        .as_ref()
        .and_then(|list| list.0.first())
        .ok_or("the signing secret is not set: set TERRA_SIGNING_SECRET (or --secret)")?;
    let reply = crate::send::send(&crate::send::Delivery {
        url: &args.url,
        secret,
        body: &body,
        trace_id: args.trace_id.as_deref(),
        ordering_timestamp: args.ordering_timestamp,
        terra_reference: args.reference.as_deref(),
        timestamp: args.signature_time(chrono::Utc::now().timestamp()),
    })
    .await
    .map_err(|e| e.to_string())?;
    crate::send::report(&reply)
}

async fn reprocess(args: ReprocessArgs) -> Result<(), String> {
    let selection = ledger::Selection {
        ids: args.ids,
        event_types: args.event_types,
        statuses: args.statuses,
        since: args.since,
        until: args.until,
    };
    let unfiltered = selection.ids.is_empty()
        && selection.event_types.is_empty()
        && selection.statuses.is_empty()
        && selection.since.is_none()
        && selection.until.is_none();
    if unfiltered && !args.all {
        return Err(
            "no deliveries selected: give --id, --type, --status, --since/--until, or --all".into(),
        );
    }
    let pool = open_database(&args.database).await?;
    let db_error = |e: sqlx::Error| format!("database error: {e}");
    // The selected ids are kept, to tell afterwards what became of exactly those deliveries.
    let mut tx = pool.begin().await.map_err(db_error)?;
    let ids = db::deliveries::lock_selected(&mut tx, &selection)
        .await
        .map_err(db_error)?;
    let selected = ledger::requeue(&mut tx, &selection)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    println!("{selected} deliveries queued for reprocessing");
    if args.enqueue_only {
        return Ok(());
    }
    drain(&pool, &args.worker).await?;
    let counts = db::deliveries::status_counts(&pool, &ids)
        .await
        .map_err(db_error)?;
    let (summary, all_done) = reprocess_summary(ids.len(), &counts);
    println!("{summary}");
    if all_done {
        Ok(())
    } else {
        Err(format!(
            "not every selected delivery was processed: {summary}; see why with \
             `terra-sink deliveries list --status parked --status failed`"
        ))
    }
}

/// A one-line account of what became of the selected deliveries, and whether all are done.
fn reprocess_summary(selected: usize, counts: &[(String, i64)]) -> (String, bool) {
    let count = |status: &str| {
        counts
            .iter()
            .filter(|(s, _)| s == status)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let done = count("done");
    let mut parts = vec![format!("{done} done")];
    for (status, note) in [
        ("parked", " again"),
        ("failed", " (will be retried)"),
        ("pending", ""),
    ] {
        let n = count(status);
        if n > 0 {
            parts.push(format!("{n} {status}{note}"));
        }
    }
    let all_parked = selected > 0 && count("parked") == selected as i64;
    let head = if all_parked {
        format!("all {selected} selected deliveries were parked again")
    } else {
        format!("{selected} selected")
    };
    (
        format!("{head}: {}", parts.join(", ")),
        done == selected as i64,
    )
}

/// Processes every due delivery in this process and prints where the ledger stands.
async fn drain(pool: &sqlx::PgPool, worker: &WorkerArgs) -> Result<(), String> {
    let processor = Processor::new(pool.clone(), worker.config(), Arc::new(Metrics::new()));
    let handled = processor.drain().await.map_err(|e| e.to_string())?;
    let left = ledger::count_by_status(pool)
        .await
        .map_err(|e| e.to_string())?;
    println!("{handled} deliveries processed; ledger now: {left}");
    Ok(())
}

/// GETs the health endpoint with the HTTP client the binary already links (the container
/// image needs no curl).
async fn healthcheck(args: &HealthcheckArgs) -> Result<(), String> {
    let url = args.target();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs.max(1)))
        // The service is local: a proxy from the environment must not answer for it.
        .no_proxy()
        .build()
        .map_err(|e| format!("health check failed: {e}"))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("health check of {url} failed: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Err(format!(
        "unhealthy: {url} answered {status}: {}",
        body.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::reprocess_summary;

    fn counts(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
        pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    }

    #[test]
    fn the_reprocess_summary_says_what_became_of_the_selection() {
        assert_eq!(
            reprocess_summary(3, &counts(&[("done", 3)])),
            ("3 selected: 3 done".to_owned(), true)
        );
        let (text, ok) = reprocess_summary(2, &counts(&[("parked", 2)]));
        assert!(!ok);
        assert_eq!(
            text,
            "all 2 selected deliveries were parked again: 0 done, 2 parked again"
        );
        let (text, ok) =
            reprocess_summary(3, &counts(&[("done", 1), ("failed", 1), ("parked", 1)]));
        assert!(!ok);
        assert_eq!(
            text,
            "3 selected: 1 done, 1 parked again, 1 failed (will be retried)"
        );
        assert_eq!(
            reprocess_summary(0, &[]),
            ("0 selected: 0 done".to_owned(), true)
        );
    }
}
