//! The commands of the `terra-sink` binary: parse, dispatch, report one clear line on failure.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Cli, Command, HealthcheckArgs, ReprocessArgs};
use crate::db::queue;
use crate::metrics::Metrics;
use crate::{db, server, telemetry, worker};

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
    telemetry::init(cli.log.log_format);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
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
    let metrics = Metrics::new();
    let handled = worker::drain(&pool, args.max_attempts.max(1), &metrics)
        .await
        .map_err(|e| e.to_string())?;
    let left = queue::count_by_status(&pool)
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
