//! Command-line flags and environment variables. Every setting has both; `--help` lists them all.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::lifecycle::RevokedDataPolicy;

/// terra-sink: receives Terra webhooks, keeps every verified delivery in PostgreSQL and decodes it
/// into typed tables in the `terra` schema.
#[derive(Debug, Parser)]
#[command(name = "terra-sink", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Log settings shared by every command.
    #[command(flatten)]
    pub log: LogArgs,
}

/// The service's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook receiver (applies migrations first unless told not to).
    Serve(Box<ServeArgs>),
    /// Apply the embedded database migrations and exit.
    Migrate(DatabaseArgs),
    /// Re-run chosen ledger deliveries through decoding and typed storage (idempotent).
    Reprocess(ReprocessArgs),
    /// Exit 0 when a running service answers its health check (for container HEALTHCHECKs).
    Healthcheck(HealthcheckArgs),
    /// Pull history from Terra's REST API into the ledger; typed rows as for webhooks.
    Backfill(Box<BackfillArgs>),
    /// Sign a JSON body (a file or a built-in sample) as Terra does and POST it to a webhook URL.
    Send(SendArgs),
}

/// Settings of `reprocess`. Filters combine with AND; repeat a flag to give several values.
#[derive(Debug, Args)]
pub struct ReprocessArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Ledger ids (terra.deliveries.id).
    #[arg(long = "id")]
    pub ids: Vec<i64>,

    /// Event types, e.g. --type activity --type sleep.
    #[arg(long = "type")]
    pub event_types: Vec<String>,

    /// Processing states: pending, done, failed, parked.
    #[arg(long = "status", value_parser = ["pending", "done", "failed", "parked"])]
    pub statuses: Vec<String>,

    /// Received at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,

    /// Received before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,

    /// Select every delivery (required when no filter is given, so nothing is re-run by accident).
    #[arg(long)]
    pub all: bool,

    /// Only put the deliveries back in the queue; running services process them.
    #[arg(long)]
    pub enqueue_only: bool,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// How logs are written.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format. Filter verbosity with RUST_LOG (default: info).
    #[arg(long, env = "TERRA_SINK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How ledger deliveries are processed into typed rows (shared by serve, reprocess and backfill).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Background workers turning ledger deliveries into typed rows (0: this instance only receives).
    #[arg(long, env = "TERRA_SINK_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// Milliseconds between an idle worker's looks for deliveries received by other instances.
    #[arg(long, env = "TERRA_SINK_WORKER_POLL_MS", default_value_t = 500)]
    pub worker_poll_ms: u64,

    /// Attempts before a delivery whose processing keeps failing is parked.
    #[arg(long, env = "TERRA_SINK_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: i32,

    /// What deauth and access_revoked do to the user's stored health data.
    #[arg(long, env = "TERRA_SINK_REVOKED_DATA", value_enum, default_value_t = RevokedDataPolicy::Keep)]
    pub revoked_data: RevokedDataPolicy,

    /// Seconds a ping-mode (s3_payload) download may take.
    #[arg(
        long,
        env = "TERRA_SINK_S3_DOWNLOAD_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub s3_download_timeout_secs: u64,

    /// Largest ping-mode payload in bytes (default 512 MiB).
    #[arg(long, env = "TERRA_SINK_S3_MAX_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub s3_max_bytes: usize,

    /// Also download plain http:// ping-mode URLs (for local testing only).
    #[arg(long, env = "TERRA_SINK_S3_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_allow_http: bool,
}

impl WorkerArgs {
    /// The processing settings.
    pub fn config(&self) -> crate::worker::WorkerConfig {
        crate::worker::WorkerConfig {
            concurrency: self.workers,
            poll_interval: Duration::from_millis(self.worker_poll_ms),
            max_attempts: self.max_attempts.max(1),
            revoked_data: self.revoked_data,
            ping: crate::ping::PingConfig {
                timeout: Duration::from_secs(self.s3_download_timeout_secs),
                max_bytes: self.s3_max_bytes,
                allow_http: self.s3_allow_http,
            },
        }
    }
}

/// Where the database is.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL, e.g. postgres://user:password@host:5432/terra_sink.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// Largest number of pooled database connections.
    #[arg(long, env = "TERRA_SINK_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

/// Settings of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Terra signing secret(s) from Terra's dashboard. Separate several with commas (one per Terra
    /// environment, or old and new while rotating); a delivery signed with any of them is accepted.
    #[arg(long, env = "TERRA_SIGNING_SECRET", value_parser = parse_secret_list, hide_env_values = true)]
    pub signing_secret: Option<SecretList>,

    /// Address and port to listen on.
    #[arg(long, env = "TERRA_SINK_BIND", default_value = "0.0.0.0:8080")]
    pub bind: SocketAddr,

    /// Serve /metrics on this separate address instead of the main one.
    #[arg(long, env = "TERRA_SINK_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// URL path that receives Terra's deliveries.
    #[arg(long, env = "TERRA_SINK_WEBHOOK_PATH", default_value = "/webhooks/terra", value_parser = parse_path)]
    pub webhook_path: String,

    /// Largest accepted difference, in seconds, between the signature's timestamp and now.
    #[arg(
        long,
        env = "TERRA_SINK_SIGNATURE_TOLERANCE_SECS",
        default_value_t = 300
    )]
    pub signature_tolerance_secs: u64,

    /// Largest accepted delivery body in bytes (default 64 MiB); larger ones get 413.
    #[arg(long, env = "TERRA_SINK_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Bytes of request bodies held in memory at once, across all requests (default 1 GiB).
    /// A request that would exceed it gets 503, so Terra retries; at least the body limit.
    #[arg(long, env = "TERRA_SINK_MAX_INFLIGHT_BODY_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_inflight_body_bytes: usize,

    /// Seconds a client gets to send a whole request body before it is cut off.
    #[arg(long, env = "TERRA_SINK_BODY_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub body_read_timeout_secs: u64,

    /// Seconds a client gets to send a request's headers (and to start the next request on a
    /// kept-alive connection) before the connection is closed.
    #[arg(
        long,
        env = "TERRA_SINK_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub header_read_timeout_secs: u64,

    /// Largest request head (request line and all headers) in bytes; larger ones get 431.
    #[arg(long, env = "TERRA_SINK_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,

    /// Milliseconds to wait for the database to store a delivery before answering 503.
    #[arg(long, env = "TERRA_SINK_PERSIST_TIMEOUT_MS", default_value_t = 1500)]
    pub persist_timeout_ms: u64,

    #[command(flatten)]
    pub worker: WorkerArgs,

    /// Apply pending migrations at start-up.
    #[arg(long, env = "TERRA_SINK_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
}

/// Settings of `healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Health endpoint to query.
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    pub url: String,
}

/// Settings of `backfill`. Dates are calendar days (YYYY-MM-DD); the end date is exclusive.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("users").required(true).args(["user_ids", "all_users"])))]
pub struct BackfillArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Terra developer id (sent as the dev-id header).
    #[arg(long, env = "TERRA_DEV_ID")]
    pub dev_id: Option<String>,

    /// Terra API key (sent as the x-api-key header).
    #[arg(long, env = "TERRA_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub api_key: Option<SecretString>,

    /// Base URL of Terra's REST API.
    #[arg(long, env = "TERRA_API_URL", default_value = crate::backfill::client::DEFAULT_BASE_URL)]
    pub api_url: String,

    /// Terra user ids to backfill; repeat for several.
    #[arg(long = "user-id")]
    pub user_ids: Vec<String>,

    /// Backfill every active user in terra.users.
    #[arg(long, conflicts_with = "user_ids")]
    pub all_users: bool,

    /// Data types; repeat for several (default: all six).
    #[arg(long = "type", value_enum)]
    pub types: Vec<crate::backfill::plan::DataType>,

    /// First day to fetch.
    #[arg(long, conflicts_with = "days")]
    pub start_date: Option<chrono::NaiveDate>,

    /// Day after the last day to fetch (exclusive; default: tomorrow, so today is included).
    #[arg(long)]
    pub end_date: Option<chrono::NaiveDate>,

    /// Fetch the N days before the end date (default: the last N days, today included).
    #[arg(long)]
    pub days: Option<u32>,

    /// Ask Terra for detailed samples (heart rate, GPS…) as well as summaries.
    #[arg(long, env = "TERRA_BACKFILL_WITH_SAMPLES", default_value_t = true, action = clap::ArgAction::Set)]
    pub with_samples: bool,

    /// Days per request (at most 28, so Terra answers inline instead of through the webhook).
    #[arg(long, env = "TERRA_BACKFILL_WINDOW_DAYS", default_value_t = 28,
          value_parser = clap::value_parser!(u32).range(1..=28))]
    pub window_days: u32,

    /// Days of data one user may request per minute (Terra counts the days each request covers,
    /// per user); 0 disables the limit.
    #[arg(long, env = "TERRA_BACKFILL_DAYS_PER_MINUTE", default_value_t = 365)]
    pub days_per_minute: u32,

    /// Users fetched at the same time.
    #[arg(long, env = "TERRA_BACKFILL_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,

    /// Retries of a request that got 429, 5xx or no answer, before its window counts as failed.
    #[arg(long, env = "TERRA_BACKFILL_MAX_RETRIES", default_value_t = 6)]
    pub max_retries: u32,

    /// First retry delay in milliseconds (doubled on each retry).
    #[arg(
        long,
        env = "TERRA_BACKFILL_INITIAL_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub initial_backoff_ms: u64,

    /// Largest retry delay in seconds (also caps Retry-After).
    #[arg(long, env = "TERRA_BACKFILL_MAX_BACKOFF_SECS", default_value_t = 300)]
    pub max_backoff_secs: u64,

    /// Seconds one request (answer included) may take.
    #[arg(
        long,
        env = "TERRA_BACKFILL_REQUEST_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub request_timeout_secs: u64,

    /// Request windows again even when an earlier run finished them.
    #[arg(long)]
    pub refetch: bool,

    /// Only write the ledger; running services turn it into typed rows.
    #[arg(long)]
    pub enqueue_only: bool,

    /// Never draw progress bars (log lines instead), even on a terminal.
    #[arg(long)]
    pub no_progress: bool,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Settings of `send`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("body").required(true).args(["file", "sample", "list_samples"])))]
pub struct SendArgs {
    /// Webhook URL to POST to.
    #[arg(long, default_value = crate::send::DEFAULT_URL)]
    pub url: String,

    /// Signing secret (the first one when several are given, comma-separated).
    #[arg(long, env = "TERRA_SIGNING_SECRET", value_parser = parse_secret_list, hide_env_values = true)]
    pub secret: Option<SecretList>,

    /// JSON file to send, byte for byte.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,

    /// Built-in sample of an event type (daily, sleep, healthcheck…; see --list-samples).
    #[arg(long)]
    pub sample: Option<String>,

    /// Value of the x-terra-trace-id header (Terra's delivery id; the receiver dedupes on it).
    #[arg(long)]
    pub trace_id: Option<String>,

    /// Print the built-in sample names and exit.
    #[arg(long)]
    pub list_samples: bool,
}

/// One or more signing secrets, never printed.
#[derive(Clone)]
pub struct SecretList(pub Vec<SecretString>);

impl std::fmt::Debug for SecretList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} secret(s) redacted]", self.0.len())
    }
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(SecretString::from(value.to_owned()))
}

fn parse_secret_list(value: &str) -> Result<SecretList, String> {
    let secrets: Vec<SecretString> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
        .collect();
    if secrets.is_empty() {
        return Err("must contain at least one secret".into());
    }
    Ok(SecretList(secrets))
}

fn parse_path(value: &str) -> Result<String, String> {
    if !value.starts_with('/') || value.contains(['?', '#', ' ', '{', '}', '*']) {
        return Err("must be a plain absolute path such as /webhooks/terra".into());
    }
    Ok(value.to_owned())
}

/// A required setting that was not given: says which flag and variable to set.
#[derive(Debug, thiserror::Error)]
#[error("{what} is not set: set {env} (or {flag})")]
pub struct MissingSetting {
    what: &'static str,
    env: &'static str,
    flag: &'static str,
}

/// Validated settings of the webhook receiver.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database_url: SecretString,
    pub db_max_connections: u32,
    pub signing_secrets: Vec<SecretString>,
    pub bind: SocketAddr,
    pub metrics_bind: Option<SocketAddr>,
    pub webhook_path: String,
    pub signature_tolerance_secs: u64,
    pub max_body_bytes: usize,
    pub max_inflight_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub persist_timeout: Duration,
    pub migrate_on_start: bool,
    pub worker: crate::worker::WorkerConfig,
}

impl DatabaseArgs {
    /// The database URL, or which setting is missing.
    pub fn url(&self) -> Result<SecretString, MissingSetting> {
        self.database_url.clone().ok_or(MissingSetting {
            what: "the database URL",
            env: "DATABASE_URL",
            flag: "--database-url",
        })
    }
}

impl ServeArgs {
    /// Checks that everything required is present.
    pub fn validate(self) -> Result<ServeConfig, MissingSetting> {
        let database_url = self.database.url()?;
        let signing_secrets = self
            .signing_secret
            .ok_or(MissingSetting {
                what: "the Terra signing secret",
                env: "TERRA_SIGNING_SECRET",
                flag: "--signing-secret",
            })?
            .0;
        Ok(ServeConfig {
            database_url,
            db_max_connections: self.database.db_max_connections,
            signing_secrets,
            bind: self.bind,
            metrics_bind: self.metrics_bind,
            webhook_path: self.webhook_path,
            signature_tolerance_secs: self.signature_tolerance_secs,
            max_body_bytes: self.max_body_bytes,
            max_inflight_body_bytes: self.max_inflight_body_bytes.max(self.max_body_bytes),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            max_header_bytes: self.max_header_bytes,
            persist_timeout: Duration::from_millis(self.persist_timeout_ms),
            migrate_on_start: self.migrate_on_start,
            worker: self.worker.config(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn secrets_are_split_and_redacted() {
        let cli = Cli::try_parse_from([
            "terra-sink",
            "serve",
            "--database-url",
            "postgres://u:hunter2@localhost/db",
            "--signing-secret",
            "whsec_a, whsec_b",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        let shown = format!("{args:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("whsec_"),
            "{shown}"
        );
        let config = args.validate().unwrap();
        assert_eq!(config.signing_secrets.len(), 2);
        assert!(!format!("{config:?}").contains("whsec_"));
    }

    #[test]
    fn missing_secret_names_the_variable() {
        let cli = Cli::try_parse_from(["terra-sink", "serve", "--database-url", "postgres://x/y"])
            .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        let err = args.validate().unwrap_err().to_string();
        assert!(err.contains("TERRA_SIGNING_SECRET"), "{err}");
    }

    #[test]
    fn webhook_path_must_be_absolute() {
        assert!(parse_path("webhooks").is_err());
        assert!(parse_path("/a/{x}").is_err());
        assert_eq!(parse_path("/hooks/terra").unwrap(), "/hooks/terra");
    }
}
