//! The commands of the `terra-sink` binary: parse, dispatch, report one clear line on failure.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{
    BackfillArgs, Cli, Command, HealthcheckArgs, LogFormat, ReprocessArgs, SendArgs, WorkerArgs,
};
use crate::db::queue;
use crate::metrics::Metrics;
use crate::worker::Processor;
use crate::{db, server, telemetry};

/// Parses the command line (and `.env`) and runs the chosen command.
pub async fn main() -> ExitCode {
    // A missing .env is normal; the environment and flags still apply.
    let _ = dotenvy::dotenv();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let format = cli.log.log_format;
    telemetry::init(format);
    match run(cli.command).await {
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
        Command::Serve(args) => {
            let config = args.validate().map_err(|e| e.to_string())?;
            let pool = db::connect_lazy(
                &config.database_url,
                config.db_max_connections,
                config.persist_timeout,
            )
            .map_err(|e| e.to_string())?;
            if config.migrate_on_start {
                db::migrate(&pool).await.map_err(|e| e.to_string())?;
            }
            let server = server::Server::bind(&config, pool)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
            server
                .run(server::shutdown_signal())
                .await
                .map_err(|e| format!("server failed: {e}"))
        }
        Command::Migrate(args) => {
            let url = args.url().map_err(|e| e.to_string())?;
            let pool =
                db::connect_lazy(&url, 2, Duration::from_secs(10)).map_err(|e| e.to_string())?;
            db::migrate(&pool).await.map_err(|e| e.to_string())?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Reprocess(args) => reprocess(args).await,
        Command::Healthcheck(args) => healthcheck(&args).await,
        Command::Backfill(args) => backfill(*args).await,
        Command::Send(args) => send(args).await,
    }
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
        .and_then(|list| list.0.into_iter().next())
        .ok_or("the signing secret is not set: set TERRA_SIGNING_SECRET (or --secret)")?;
    let reply = crate::send::send(&crate::send::Delivery {
        url: &args.url,
        secret: &secret,
        body: &body,
        trace_id: args.trace_id.as_deref(),
        timestamp: chrono::Utc::now().timestamp(),
    })
    .await
    .map_err(|e| e.to_string())?;
    println!("HTTP {} {}", reply.status, reply.reason);
    println!("{}", reply.body);
    if reply.accepted() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", reply.status))
    }
}

async fn reprocess(args: ReprocessArgs) -> Result<(), String> {
    let selection = queue::Selection {
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
    let url = args.database.url().map_err(|e| e.to_string())?;
    let pool = db::connect_lazy(&url, 4, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
    let selected = queue::requeue(&mut conn, &selection)
        .await
        .map_err(|e| e.to_string())?;
    drop(conn);
    println!("{selected} deliveries queued for reprocessing");
    if args.enqueue_only {
        return Ok(());
    }
    drain(&pool, &args.worker).await
}

/// Processes every due delivery in this process and prints where the ledger stands.
async fn drain(pool: &sqlx::PgPool, worker: &WorkerArgs) -> Result<(), String> {
    let processor = Processor::new(pool.clone(), worker.config(), Arc::new(Metrics::new()));
    let handled = processor.drain().await.map_err(|e| e.to_string())?;
    let left = queue::count_by_status(pool)
        .await
        .map_err(|e| e.to_string())?;
    println!("{handled} deliveries processed; ledger now: {left}");
    Ok(())
}

/// A minimal HTTP/1.0 GET, so the container image needs no curl.
async fn healthcheck(args: &HealthcheckArgs) -> Result<(), String> {
    let rest = args
        .url
        .strip_prefix("http://")
        .ok_or("healthcheck --url must start with http://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/"), |(a, p)| (a, p));
    let path = if path == "/" {
        "/".to_owned()
    } else {
        format!("/{path}")
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.take(4096).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "health check timed out".to_owned())?
        .map_err(|e| format!("health check failed: {e}"))?;
    let status_line = String::from_utf8_lossy(&response);
    let status_line = status_line.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("unhealthy: {status_line}"))
    }
}
