//! Command-line flags and environment variables. Every setting has both; `--help` lists them
//! all. Defaults come from the library's settings types, so they are written once.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

use terra_sink::backfill::Progress;
use terra_sink::reconcile::{self, ReconcileConfig, ScheduledReconcile};
use terra_sink::{
    DataType, DbSettings, GroupCommitConfig, LogFormat, PingConfig, PruneShare, RetentionConfig,
    RevokedDataPolicy, ServeConfig, WorkerConfig,
};

/// terra-sink: receives Terra webhooks, keeps every verified delivery in PostgreSQL and decodes it
/// into typed tables in the `terra` schema.
#[derive(Debug, Parser)]
#[command(name = "terra-sink", version, about, long_about = None, propagate_version = true)]
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
    /// Bring terra.users in line with the users Terra's REST API lists (and backfill gaps).
    Reconcile(Box<ReconcileArgs>),
    /// Sign a JSON body (a file or a built-in sample) as Terra does and POST it to a webhook URL.
    Send(SendArgs),
    /// List, show and resend ledger deliveries without writing SQL.
    Deliveries(DeliveriesArgs),
    /// Remove the raw bodies of processed deliveries older than the retention period.
    Prune(PruneArgs),
    /// Erase people: every row of their users in every table, keeping only a tombstone.
    Forget(ForgetArgs),
}

/// Settings of `forget`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).multiple(true)
    .args(["user_ids", "reference_ids"])))]
pub struct ForgetArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// A Terra user id to erase (repeatable); ids linked to it by user_reauth go too.
    #[arg(long = "user-id")]
    pub user_ids: Vec<String>,

    /// The app's own id (reference_id) to erase, with every Terra user connected under it
    /// (repeatable).
    #[arg(long = "reference-id")]
    pub reference_ids: Vec<String>,
}

/// Settings of `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Remove bodies of processed deliveries received longer ago than this (e.g. `30d`,
    /// `12h`). Whole UTC days go at once, so a body can outlive it by up to a day.
    #[arg(long = "older-than", env = "TERRA_SINK_RETAIN_BODIES", value_parser = parse_age)]
    pub older_than: Duration,

    #[command(flatten)]
    pub dedupe: DedupeArgs,
}

/// How long the ledger remembers deliveries nothing else needs, and how fast it then forgets them.
#[derive(Debug, Args)]
pub struct DedupeArgs {
    /// Keep a processed ledger row that no stored row comes from (a superseded version, an
    /// applied lifecycle event) this long after receipt, and never less than the body retention,
    /// so that Terra's redeliveries are recognised as duplicates; at least 24h, or `forever`.
    #[arg(long = "dedupe-window", env = "TERRA_SINK_DEDUPE_WINDOW",
          default_value_t = DedupeWindow(RetentionConfig::default().dedupe_window),
          value_parser = parse_dedupe_window)]
    pub dedupe_window: DedupeWindow,

    /// The largest share of one database connection's time that removing those ledger rows
    /// takes, from 1% to 100% (e.g. `5%` or `0.05`): it rests after each batch to stay within
    /// it. Lower disturbs the acknowledgements less; higher catches up sooner.
    #[arg(long = "prune-share", env = "TERRA_SINK_PRUNE_SHARE",
          default_value_t = PruneShare::default(), value_parser = parse_share)]
    pub share: PruneShare,
}

/// A dedupe window: `None` is forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeWindow(pub Option<Duration>);

impl std::fmt::Display for DedupeWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(window) => write!(f, "{}", humantime::format_duration(window)),
            None => f.write_str("forever"),
        }
    }
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

/// How logs and traces are written.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format. Filter verbosity with RUST_LOG (default: info).
    #[arg(long, env = "TERRA_SINK_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Text, global = true)]
    pub log_format: LogFormatArg,

    /// Export tracing spans with OpenTelemetry (OTLP over HTTP, protobuf) to this collector,
    /// e.g. http://127.0.0.1:4318 (spans go to <url>/v1/traces). Unset: no export.
    #[arg(long, env = "TERRA_SINK_OTLP_ENDPOINT", global = true, value_parser = parse_http_url)]
    pub otlp_endpoint: Option<String>,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// What `deauth` and `access_revoked` do to the user's stored health data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RevokedDataArg {
    /// Keep everything; only the user's status changes.
    Keep,
    /// Delete every health-data row of the user.
    Delete,
}

impl From<RevokedDataArg> for RevokedDataPolicy {
    fn from(p: RevokedDataArg) -> Self {
        match p {
            RevokedDataArg::Keep => RevokedDataPolicy::Keep,
            RevokedDataArg::Delete => RevokedDataPolicy::Delete,
        }
    }
}

/// A Terra data type, as `backfill --type` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataTypeArg {
    /// Workouts.
    Activity,
    /// Body measurements.
    Body,
    /// Daily summaries.
    Daily,
    /// Cycle tracking.
    Menstruation,
    /// Food and drink.
    Nutrition,
    /// Sleep sessions.
    Sleep,
}

impl From<DataTypeArg> for DataType {
    fn from(t: DataTypeArg) -> Self {
        match t {
            DataTypeArg::Activity => DataType::Activity,
            DataTypeArg::Body => DataType::Body,
            DataTypeArg::Daily => DataType::Daily,
            DataTypeArg::Menstruation => DataType::Menstruation,
            DataTypeArg::Nutrition => DataType::Nutrition,
            DataTypeArg::Sleep => DataType::Sleep,
        }
    }
}

/// How ledger deliveries are processed into typed rows (shared by serve, reprocess and backfill).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Background workers turning ledger deliveries into typed rows (0: this instance only receives).
    #[arg(long, env = "TERRA_SINK_WORKERS", default_value_t = WorkerConfig::default().concurrency)]
    pub workers: usize,

    /// Milliseconds between an idle worker's looks for deliveries received by other instances.
    #[arg(long, env = "TERRA_SINK_WORKER_POLL_MS",
          default_value_t = millis(WorkerConfig::default().poll_interval))]
    pub worker_poll_ms: u64,

    /// Attempts before a delivery whose processing keeps failing is parked.
    #[arg(long, env = "TERRA_SINK_MAX_ATTEMPTS", default_value_t = WorkerConfig::default().max_attempts)]
    pub max_attempts: i32,

    /// What deauth and access_revoked do to the user's stored health data.
    #[arg(long, env = "TERRA_SINK_REVOKED_DATA", value_enum, default_value_t = RevokedDataArg::Keep)]
    pub revoked_data: RevokedDataArg,

    /// Seconds a ping-mode (s3_payload) download may take.
    #[arg(long, env = "TERRA_SINK_S3_DOWNLOAD_TIMEOUT_SECS",
          default_value_t = PingConfig::default().timeout.as_secs())]
    pub s3_download_timeout_secs: u64,

    /// Largest ping-mode payload in bytes (default 512 MiB).
    #[arg(long, env = "TERRA_SINK_S3_MAX_BYTES", default_value_t = PingConfig::default().max_bytes)]
    pub s3_max_bytes: usize,

    /// Also download plain http:// ping-mode URLs (for local testing only).
    #[arg(long, env = "TERRA_SINK_S3_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_allow_http: bool,

    /// Most deliveries a worker claims and writes in one transaction.
    #[arg(long, env = "TERRA_SINK_BATCH_MAX_DELIVERIES",
          default_value_t = WorkerConfig::default().batch_max_deliveries)]
    pub batch_max_deliveries: usize,

    /// Most body bytes a worker claims at once (default 32 MiB; a larger body goes alone).
    #[arg(long, env = "TERRA_SINK_BATCH_MAX_BYTES",
          default_value_t = WorkerConfig::default().batch_max_bytes)]
    pub batch_max_bytes: usize,

    /// Longest a worker defers its next batch, in milliseconds, while acknowledging deliveries
    /// keeps the ledger writer busy (default 5000; 0: processing never yields).
    #[arg(long, env = "TERRA_SINK_YIELD_TO_INGEST_MS",
          default_value_t = WorkerConfig::default().yield_to_ingest.as_millis() as u64)]
    pub yield_to_ingest_ms: u64,

    /// Milliseconds a worker lets deliveries gather after a batch that was not full, or after
    /// new ones woke it (default 100; 0: it claims at once).
    #[arg(long, env = "TERRA_SINK_BATCH_LINGER_MS",
          default_value_t = WorkerConfig::default().batch_linger.as_millis() as u64)]
    pub batch_linger_ms: u64,
}

impl WorkerArgs {
    /// The processing settings.
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.workers,
            poll_interval: Duration::from_millis(self.worker_poll_ms),
            max_attempts: self.max_attempts.max(1),
            revoked_data: self.revoked_data.into(),
            ping: PingConfig {
                timeout: Duration::from_secs(self.s3_download_timeout_secs),
                max_bytes: self.s3_max_bytes,
                allow_http: self.s3_allow_http,
            },
            batch_max_deliveries: self.batch_max_deliveries.max(1),
            batch_max_bytes: self.batch_max_bytes,
            yield_to_ingest: Duration::from_millis(self.yield_to_ingest_ms),
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            claim_start_refresh: WorkerConfig::default().claim_start_refresh,
        }
    }
}

/// Where the database is and how it is used: the same settings for every command.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL, e.g. postgres://user:password@host:5432/terra_sink.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// Largest number of pooled database connections.
    #[arg(long, env = "TERRA_SINK_DB_MAX_CONNECTIONS",
          default_value_t = DbSettings::default().max_connections,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub db_max_connections: u32,

    /// Seconds to wait for a database connection (a pooled one, or a new one) before failing.
    #[arg(long, env = "TERRA_SINK_DB_ACQUIRE_TIMEOUT_SECS",
          default_value_t = DbSettings::default().acquire_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub db_acquire_timeout_secs: u64,
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
    #[arg(long, env = "TERRA_SINK_BIND", default_value_t = ServeConfig::default().bind)]
    pub bind: SocketAddr,

    /// Serve /metrics on this separate address instead of the main one.
    #[arg(long, env = "TERRA_SINK_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// URL path that receives Terra's deliveries.
    #[arg(long, env = "TERRA_SINK_WEBHOOK_PATH", default_value_t = ServeConfig::default().webhook_path,
          value_parser = parse_path)]
    pub webhook_path: String,

    /// Largest accepted difference, in seconds, between the signature's timestamp and now.
    #[arg(long, env = "TERRA_SINK_SIGNATURE_TOLERANCE_SECS",
          default_value_t = ServeConfig::default().signature_tolerance_secs)]
    pub signature_tolerance_secs: u64,

    /// Largest accepted delivery body in bytes (default 64 MiB); larger ones get 413.
    #[arg(long, env = "TERRA_SINK_MAX_BODY_BYTES", default_value_t = ServeConfig::default().max_body_bytes)]
    pub max_body_bytes: usize,

    /// Bytes of request bodies held in memory at once, across all requests (default 1 GiB).
    /// A request that would exceed it gets 503, so Terra retries; at least the body limit.
    #[arg(long, env = "TERRA_SINK_MAX_INFLIGHT_BODY_BYTES",
          default_value_t = ServeConfig::default().max_inflight_body_bytes)]
    pub max_inflight_body_bytes: usize,

    /// Seconds a client gets to send a whole request body before it is cut off.
    #[arg(long, env = "TERRA_SINK_BODY_READ_TIMEOUT_SECS",
          default_value_t = ServeConfig::default().body_read_timeout.as_secs())]
    pub body_read_timeout_secs: u64,

    /// Seconds a client gets to send a request's headers (and to start the next request on a
    /// kept-alive connection) before the connection is closed.
    #[arg(long, env = "TERRA_SINK_HEADER_READ_TIMEOUT_SECS",
          default_value_t = ServeConfig::default().header_read_timeout.as_secs())]
    pub header_read_timeout_secs: u64,

    /// Largest request head (request line and all headers) in bytes; larger ones get 431.
    #[arg(long, env = "TERRA_SINK_MAX_HEADER_BYTES",
          default_value_t = ServeConfig::default().max_header_bytes)]
    pub max_header_bytes: usize,

    /// Milliseconds to wait for the database to store a delivery before answering 503.
    #[arg(long, env = "TERRA_SINK_PERSIST_TIMEOUT_MS",
          default_value_t = millis(ServeConfig::default().persist_timeout))]
    pub persist_timeout_ms: u64,

    /// Most deliveries committed to the ledger together (group commit).
    #[arg(long, env = "TERRA_SINK_LEDGER_GROUP_MAX_ROWS",
          default_value_t = GroupCommitConfig::default().max_rows)]
    pub ledger_group_max_rows: usize,

    /// Most body bytes committed to the ledger together (default 16 MiB).
    #[arg(long, env = "TERRA_SINK_LEDGER_GROUP_MAX_BYTES",
          default_value_t = GroupCommitConfig::default().max_bytes)]
    pub ledger_group_max_bytes: usize,

    /// Microseconds a ledger group waits for more deliveries once the database is free
    /// (0: none; groups still form while earlier ones commit).
    #[arg(long, env = "TERRA_SINK_LEDGER_GROUP_WINDOW_US",
          default_value_t = micros(GroupCommitConfig::default().window))]
    pub ledger_group_window_us: u64,

    /// Ledger groups committed at the same time (each holds a database connection).
    #[arg(long, env = "TERRA_SINK_LEDGER_WRITERS",
          default_value_t = GroupCommitConfig::default().concurrency)]
    pub ledger_writers: usize,

    #[command(flatten)]
    pub worker: WorkerArgs,

    /// Apply pending migrations at start-up.
    #[arg(long, env = "TERRA_SINK_MIGRATE_ON_START",
          default_value_t = ServeConfig::default().migrate_on_start, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,

    /// Remove raw bodies of processed deliveries older than this (e.g. `30d`), checked hourly;
    /// unset keeps them forever.
    #[arg(long, env = "TERRA_SINK_RETAIN_BODIES", value_parser = parse_age)]
    pub retain_bodies: Option<Duration>,

    #[command(flatten)]
    pub dedupe: DedupeArgs,

    /// Reconcile terra.users with Terra's API this often (e.g. `24h`, at least `1m`), as
    /// `terra-sink reconcile` does; unset: never. Needs TERRA_DEV_ID and TERRA_API_KEY.
    #[arg(long, env = "TERRA_SINK_RECONCILE_EVERY", value_parser = parse_duration)]
    pub reconcile_every: Option<Duration>,

    #[command(flatten)]
    pub api: TerraApiArgs,
}

/// Settings of `healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to query (default: /healthz, or /readyz with --ready, on the port of
    /// TERRA_SINK_BIND, over loopback when it binds every address).
    #[arg(long)]
    pub url: Option<String>,

    /// Check readiness (/readyz: the database answers and is migrated) instead of liveness.
    #[arg(long)]
    pub ready: bool,

    /// The service's listen address, to find its port.
    #[arg(long, env = "TERRA_SINK_BIND", default_value = "0.0.0.0:8080")]
    pub bind: SocketAddr,

    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}

impl HealthcheckArgs {
    /// The URL to query.
    pub fn target(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let ip = match self.bind.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            ip if ip.is_unspecified() => "[::1]".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let path = if self.ready { "/readyz" } else { "/healthz" };
        format!("http://{ip}:{}{path}", self.bind.port())
    }
}

/// Where and as whom to call Terra's REST API, and how failed requests are retried (shared by
/// backfill and reconcile).
#[derive(Debug, Args)]
pub struct TerraApiArgs {
    /// Terra developer id (sent as the dev-id header).
    #[arg(long, env = "TERRA_DEV_ID")]
    pub dev_id: Option<String>,

    /// Terra API key (sent as the x-api-key header).
    #[arg(long, env = "TERRA_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub api_key: Option<SecretString>,

    /// Base URL of Terra's REST API.
    #[arg(long, env = "TERRA_API_URL", default_value = terra_sink::TERRA_API_URL)]
    pub api_url: String,

    /// Retries of a request that got 429, 5xx or no answer, before it counts as failed.
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
}

/// How data is fetched from Terra's REST API (shared by backfill and reconcile's gap backfill).
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Data types; repeat for several (default: all six).
    #[arg(long = "type", value_enum)]
    pub types: Vec<DataTypeArg>,

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
}

/// Settings of `backfill`. Dates are calendar days (YYYY-MM-DD); the end date is exclusive.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("users").required(true).args(["user_ids", "all_users"])))]
pub struct BackfillArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub api: TerraApiArgs,

    /// Terra user ids to backfill; repeat for several.
    #[arg(long = "user-id")]
    pub user_ids: Vec<String>,

    /// Backfill every active user in terra.users.
    #[arg(long, conflicts_with = "user_ids")]
    pub all_users: bool,

    /// First day to fetch.
    #[arg(long, conflicts_with = "days")]
    pub start_date: Option<chrono::NaiveDate>,

    /// Day after the last day to fetch (exclusive; default: tomorrow, so today is included).
    #[arg(long)]
    pub end_date: Option<chrono::NaiveDate>,

    /// Fetch the N days before the end date (default: the last N days, today included).
    #[arg(long)]
    pub days: Option<u32>,

    #[command(flatten)]
    pub fetch: FetchArgs,

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

/// Settings of `reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub api: TerraApiArgs,

    /// Only print what would change; write nothing and backfill nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Backfill users whose newest record is older than this (e.g. 2d, 36h, 90m), from that
    /// record's day to today.
    #[arg(long, value_parser = parse_duration)]
    pub backfill_gap: Option<Duration>,

    /// Longest gap backfilled, in days (also what a user without any record gets).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..))]
    pub backfill_max_days: u32,

    /// Users per page of Terra's GET /subscriptions.
    #[arg(long, default_value_t = terra_sink::reconcile::DEFAULT_PER_PAGE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub per_page: u32,

    /// Mark every connected user even when Terra lists no users at all.
    #[arg(long)]
    pub allow_empty: bool,

    #[command(flatten)]
    pub fetch: FetchArgs,

    /// Only write the ledger; running services turn the gap backfill into typed rows.
    #[arg(long)]
    pub enqueue_only: bool,

    /// Never draw progress bars (log lines instead), even on a terminal.
    #[arg(long)]
    pub no_progress: bool,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Parses a duration such as `2d`, `36h`, `90m`, `45s` or `1w` (a whole number and a unit).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 2d, 36h or 90m"))?;
    let secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "{value:?}: the unit must be s, m, h, d or w (e.g. 2d)"
            ))
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// Settings of `send`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("body").required(true).args(["file", "sample", "list_samples"])))]
pub struct SendArgs {
    /// Webhook URL to POST to.
    #[arg(long, default_value = terra_sink::DEFAULT_SEND_URL)]
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

    /// Value of the x-terra-ordering-timestamp header, in Unix milliseconds (higher is newer:
    /// a stored record is only replaced by a copy with a later one).
    #[arg(long)]
    pub ordering_timestamp: Option<i64>,

    /// Value of the terra-reference header (shared by the chunks of a large request).
    #[arg(long)]
    pub reference: Option<String>,

    /// Sign as if at this Unix time in seconds (default: now), e.g. to try the tolerance.
    #[arg(long, conflicts_with = "signature_age")]
    pub signed_at: Option<i64>,

    /// Sign as if this many seconds ago (the receiver rejects more than its tolerance, 300).
    #[arg(long)]
    pub signature_age: Option<u64>,

    /// Print the built-in sample names and exit.
    #[arg(long)]
    pub list_samples: bool,
}

impl SendArgs {
    /// The signature timestamp to use, given the current Unix time.
    pub fn signature_time(&self, now: i64) -> i64 {
        match (self.signed_at, self.signature_age) {
            (Some(t), _) => t,
            (None, Some(age)) => now.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX)),
            (None, None) => now,
        }
    }
}

/// Settings of `deliveries`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: DeliveriesCommand,
}

/// The `deliveries` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first (failed and parked ones with their last error).
    List(DeliveriesListArgs),
    /// Show one delivery: everything the ledger keeps about it, then its body.
    Show(DeliveriesShowArgs),
    /// Send a stored delivery again, byte for byte, re-signed now with the configured secret
    /// (e.g. to a staging receiver).
    Resend(DeliveriesResendArgs),
}

/// Filters of `deliveries list`; they combine with AND, a repeated flag gives alternatives.
#[derive(Debug, Args)]
pub struct DeliveriesListArgs {
    /// Processing states: pending, done, failed, parked.
    #[arg(long = "status", value_parser = ["pending", "done", "failed", "parked"])]
    pub statuses: Vec<String>,

    /// Event types, e.g. --type daily --type sleep.
    #[arg(long = "type")]
    pub event_types: Vec<String>,

    /// One Terra user id.
    #[arg(long = "user")]
    pub user_id: Option<String>,

    /// Received at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,

    /// Show at most this many.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
}

/// Settings of `deliveries show`.
#[derive(Debug, Args)]
pub struct DeliveriesShowArgs {
    /// Ledger id (terra.deliveries.id).
    pub id: i64,

    /// Print only the raw body, byte for byte (e.g. to save it for `send --file`).
    #[arg(long)]
    pub body_only: bool,
}

/// Settings of `deliveries resend`.
#[derive(Debug, Args)]
pub struct DeliveriesResendArgs {
    /// Ledger id (terra.deliveries.id).
    pub id: i64,

    /// Webhook URL to POST to (required: resending is never aimed anywhere by default).
    #[arg(long)]
    pub url: String,

    /// Signing secret (the first one when several are given, comma-separated).
    #[arg(long, env = "TERRA_SIGNING_SECRET", value_parser = parse_secret_list, hide_env_values = true)]
    pub secret: Option<SecretList>,
}

/// One or more signing secrets, never printed.
#[derive(Clone)]
pub struct SecretList(pub Vec<SecretString>);

impl std::fmt::Debug for SecretList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} secret(s) redacted]", self.0.len())
    }
}

/// A duration as whole milliseconds, for a default shown in `--help`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration as whole microseconds, for a default shown in `--help`.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    if value.trim().is_empty() {
        return Err("it is empty".into());
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
        return Err(format!("it is empty; {SECRET_HINT}"));
    }
    Ok(SecretList(secrets))
}

/// A positive duration such as `30d`, `36h` or `1w`.
fn parse_age(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(err) => Err(format!("{err} (expected e.g. 30d, 36h or 1w)")),
    }
}

fn parse_share(value: &str) -> Result<PruneShare, String> {
    let value = value.trim();
    let share = match value.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => value.parse::<f64>(),
    };
    share
        .ok()
        .and_then(PruneShare::new)
        .ok_or_else(|| "must be a share from 1% to 100%, e.g. 5% or 0.05".to_owned())
}

fn parse_dedupe_window(value: &str) -> Result<DedupeWindow, String> {
    if value.trim().eq_ignore_ascii_case("forever") {
        return Ok(DedupeWindow(None));
    }
    match humantime::parse_duration(value) {
        Ok(d) if d < Duration::from_secs(24 * 3600) => {
            Err("must be at least 24h: Terra retries a delivery for about a day".to_owned())
        }
        Ok(d) => Ok(DedupeWindow(Some(d))),
        Err(err) => Err(format!("{err} (expected e.g. 7d, 90d or forever)")),
    }
}

fn parse_http_url(value: &str) -> Result<String, String> {
    let value = value.trim().trim_end_matches('/');
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err("must be an http:// or https:// URL such as http://127.0.0.1:4318".into());
    }
    Ok(value.to_owned())
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

/// Every setting of a command that is missing or unusable, reported together.
#[derive(Debug, thiserror::Error)]
pub struct SettingsError(pub Vec<String>);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => f.write_str(one),
            many => {
                write!(f, "{} settings need attention:", many.len())?;
                for problem in many {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
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

    /// The database settings, or which setting is missing.
    pub fn settings(&self) -> Result<DbSettings, MissingSetting> {
        Ok(DbSettings {
            url: self.url()?,
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_secs(self.db_acquire_timeout_secs),
        })
    }
}

/// Shortest signing secret accepted: Terra's are long random strings, so anything shorter is a
/// typo or a made-up value.
pub const MIN_SECRET_LEN: usize = 16;

/// What to do about an unusable signing secret.
const SECRET_HINT: &str = "put the signing secret from Terra's dashboard there (scripts/run.sh generates a development one)";

/// Why a configured signing secret cannot be the one from Terra's dashboard, if it cannot.
pub fn secret_problem(secret: &str) -> Option<String> {
    let normalised: String = secret
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const PLACEHOLDERS: [&str; 8] = [
        "replaceme",
        "changeme",
        "yoursecret",
        "yoursigningsecret",
        "placeholder",
        "example",
        "secret",
        "todo",
    ];
    let is_template =
        (secret.starts_with('<') && secret.ends_with('>')) || names_a_variable(secret);
    if is_template
        || PLACEHOLDERS.iter().any(|p| {
            normalised == *p
                || normalised.starts_with(&format!("{p}with"))
                || normalised == format!("whsec{p}")
        })
    {
        return Some("is a placeholder, not a secret".to_owned());
    }
    let len = secret.chars().count();
    if len < MIN_SECRET_LEN {
        return Some(format!(
            "is only {len} characters long (at least {MIN_SECRET_LEN}); it cannot be one from Terra's dashboard"
        ));
    }
    None
}

/// Whether `text` holds a shell-style `${NAME}` reference that was never expanded.
fn names_a_variable(text: &str) -> bool {
    text.match_indices("${").any(|(at, _)| {
        let rest = &text[at + 2..];
        rest.find('}').is_some_and(|end| {
            end > 0
                && rest[..end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

/// The problems with the signing secrets (empty when they are all usable). Never quotes a secret.
fn signing_secret_problems(given: Option<&SecretList>) -> Vec<String> {
    const NAME: &str = "TERRA_SIGNING_SECRET (or --signing-secret)";
    let Some(list) = given else {
        return vec![format!(
            "the Terra signing secret is not set: set {NAME}; {SECRET_HINT}"
        )];
    };
    let several = list.0.len() > 1;
    list.0
        .iter()
        .enumerate()
        .filter_map(|(i, secret)| {
            let why = secret_problem(secret.expose_secret())?;
            let which = if several {
                format!("secret {} of {} in {NAME}", i + 1, list.0.len())
            } else {
                format!("the signing secret in {NAME}")
            };
            Some(format!("{which} {why}: {SECRET_HINT}"))
        })
        .collect()
}

impl ServeArgs {
    /// Checks that everything required is present and usable, reporting every problem at once.
    pub fn validate(self) -> Result<ServeConfig, SettingsError> {
        let mut problems = Vec::new();
        let database = self
            .database
            .settings()
            .map_err(|missing| problems.push(missing.to_string()))
            .ok();
        problems.extend(signing_secret_problems(self.signing_secret.as_ref()));
        let reconcile = scheduled_reconcile(self.reconcile_every, &self.api)
            .map_err(|problem| problems.push(problem))
            .ok();
        let (Some(database), Some(secrets), Some(reconcile), true) = (
            database,
            self.signing_secret,
            reconcile,
            problems.is_empty(),
        ) else {
            return Err(SettingsError(problems));
        };
        Ok(ServeConfig {
            database,
            signing_secrets: secrets.0,
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
            group_commit: GroupCommitConfig {
                max_rows: self.ledger_group_max_rows.max(1),
                max_bytes: self.ledger_group_max_bytes,
                window: Duration::from_micros(self.ledger_group_window_us),
                concurrency: self.ledger_writers.max(1),
                deadline: Duration::from_millis(self.persist_timeout_ms),
                ..GroupCommitConfig::default()
            },
            migrate_on_start: self.migrate_on_start,
            worker: self.worker.config(),
            retention: RetentionConfig {
                retain_bodies: self.retain_bodies,
                dedupe_window: self.dedupe.dedupe_window.0,
                share: self.dedupe.share,
                ..RetentionConfig::default()
            },
            reconcile,
        })
    }
}

/// The reconcile `serve` runs on a schedule, when one is asked for.
fn scheduled_reconcile(
    every: Option<Duration>,
    api: &TerraApiArgs,
) -> Result<Option<ScheduledReconcile>, String> {
    const NAME: &str = "TERRA_SINK_RECONCILE_EVERY (or --reconcile-every)";
    let Some(every) = every else {
        return Ok(None);
    };
    if every < Duration::from_secs(60) {
        let given = humantime::format_duration(every);
        return Err(format!("{NAME} must be at least 1m, not {given}"));
    }
    let client = crate::commands::client_config(api)
        .map_err(|missing| format!("{NAME} is set, but {missing}"))?;
    let config = ReconcileConfig {
        client,
        dry_run: false,
        per_page: reconcile::DEFAULT_PER_PAGE,
        allow_empty: false,
        gap: None,
        progress: Progress::Never,
    };
    Ok(Some(ScheduledReconcile { every, config }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    const GOOD_A: &str = "whsec_0123456789abcdef";
    const GOOD_B: &str = "whsec_fedcba9876543210";

    fn serve_args(args: &[&str]) -> Box<ServeArgs> {
        let mut argv = vec!["terra-sink", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args,
            other => panic!("expected serve, got {other:?}"),
        }
    }

    #[test]
    fn secrets_are_split_and_redacted() {
        let list = format!("{GOOD_A}, {GOOD_B}");
        let args = serve_args(&[
            "--database-url",
            "postgres://u:hunter2@localhost/db",
            "--signing-secret",
            &list,
        ]);
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
    fn every_missing_setting_is_reported_at_once() {
        // Whatever the test's environment holds (test.sh exports DATABASE_URL).
        let mut args = serve_args(&[]);
        args.database.database_url = None;
        args.signing_secret = None;
        let err = args.validate().unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        let shown = err.to_string();
        assert!(shown.starts_with("2 settings need attention:"), "{shown}");
        assert!(shown.contains("DATABASE_URL"), "{shown}");
        assert!(shown.contains("TERRA_SIGNING_SECRET"), "{shown}");

        let mut args = serve_args(&["--database-url", "postgres://x/y"]);
        args.signing_secret = None;
        let err = args.validate().unwrap_err().to_string();
        assert!(err.contains("TERRA_SIGNING_SECRET"), "{err}");
        assert!(
            !err.contains("need attention"),
            "one problem, one line: {err}"
        );
    }

    #[test]
    fn a_scheduled_reconcile_needs_credentials_and_a_sane_interval() {
        let with = |extra: &[&str]| {
            let base = [
                "--database-url",
                "postgres://x/y",
                "--signing-secret",
                GOOD_A,
            ];
            let mut args = serve_args(&[&base[..], extra].concat());
            args.api.dev_id = None;
            args.api.api_key = None;
            args
        };
        let err = with(&["--reconcile-every", "24h"]).validate().unwrap_err();
        let err = err.to_string();
        assert!(err.contains("TERRA_SINK_RECONCILE_EVERY"), "{err}");
        assert!(err.contains("TERRA_DEV_ID"), "{err}");

        let credentials = ["--dev-id", "dev-1", "--api-key", "key-not-to-be-shown"];
        let mut args = with(&["--reconcile-every", "30s"]);
        args.api.dev_id = Some("dev-1".into());
        let err = args.validate().unwrap_err().to_string();
        assert!(err.contains("at least 1m, not 30s"), "{err}");

        let args = serve_args(
            &[
                &[
                    "--database-url",
                    "postgres://x/y",
                    "--signing-secret",
                    GOOD_A,
                ],
                &credentials[..],
                &["--reconcile-every", "24h"],
            ]
            .concat(),
        );
        let scheduled = args.validate().unwrap().reconcile.unwrap();
        assert_eq!(scheduled.every, Duration::from_secs(24 * 3600));
        assert!(!format!("{scheduled:?}").contains("key-not-to-be-shown"));
        assert!(with(&[]).validate().unwrap().reconcile.is_none());
    }

    #[test]
    fn placeholder_and_short_secrets_are_refused_without_being_quoted() {
        for bad in [
            "replace-me",
            "REPLACE_ME",
            "changeme",
            "<your signing secret>",
            "replace-me-with-the-terra-secret",
            "whsec_replace_me",
            "${TERRA_SIGNING_SECRET}",
            "whsec_${TERRA_SECRET}",
            "abc",
            "whsec_x",
        ] {
            assert!(secret_problem(bad).is_some(), "{bad} accepted");
        }
        for good in [
            GOOD_A,
            "0123456789abcdef",
            "a-real-looking-secret-value",
            "k3${q9-Zx}7Lm${2pW",
        ] {
            assert_eq!(secret_problem(good), None, "{good} refused");
        }
        let args = serve_args(&[
            "--database-url",
            "postgres://x/y",
            "--signing-secret",
            &format!("{GOOD_A},replace-me"),
        ]);
        let err = args.validate().unwrap_err().to_string();
        assert!(err.contains("secret 2 of 2"), "{err}");
        assert!(err.contains("placeholder"), "{err}");
        assert!(
            !err.contains("replace-me") && !err.contains(GOOD_A),
            "{err}"
        );
        assert!(!err.contains('\n'), "one clear line: {err}");
    }

    #[test]
    fn an_empty_secret_is_named_as_empty() {
        let err = parse_secret_list(" , ").unwrap_err();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn healthcheck_targets_the_configured_port() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["terra-sink", "healthcheck"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Healthcheck(args) => args.target(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            parse(&["--bind", "0.0.0.0:9000", "--ready"]),
            "http://127.0.0.1:9000/readyz"
        );
        assert_eq!(
            parse(&["--bind", "10.1.2.3:81"]),
            "http://10.1.2.3:81/healthz"
        );
        assert_eq!(parse(&["--bind", "[::]:82"]), "http://[::1]:82/healthz");
        assert_eq!(parse(&["--url", "http://h:1/x"]), "http://h:1/x");
    }

    #[test]
    fn send_can_sign_in_the_past() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["terra-sink", "send", "--sample", "daily"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Send(args) => args.signature_time(1_000_000),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(parse(&[]), 1_000_000);
        assert_eq!(parse(&["--signature-age", "600"]), 999_400);
        assert_eq!(parse(&["--signed-at", "42"]), 42);
        assert!(Cli::try_parse_from([
            "terra-sink",
            "send",
            "--sample",
            "daily",
            "--signed-at",
            "1",
            "--signature-age",
            "2"
        ])
        .is_err());
    }

    #[test]
    fn durations_have_a_unit() {
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("36h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("2 days").is_err());
    }

    #[test]
    fn dedupe_window_outlasts_terras_retries() {
        let week = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(parse_dedupe_window("7d"), Ok(DedupeWindow(Some(week))));
        assert_eq!(parse_dedupe_window("forever"), Ok(DedupeWindow(None)));
        let short = parse_dedupe_window("12h").unwrap_err();
        assert!(short.contains("at least 24h"), "{short}");
        assert!(parse_dedupe_window("soon").is_err());
        let shown = DedupeWindow(Some(week)).to_string();
        assert_eq!(parse_dedupe_window(&shown), Ok(DedupeWindow(Some(week))));
        let config = serve_args(&[
            "--database-url",
            "postgres://x/y",
            "--signing-secret",
            GOOD_A,
        ])
        .validate()
        .unwrap();
        assert_eq!(config.retention.dedupe_window, Some(week));
    }

    #[test]
    fn prune_share_is_a_percentage_or_a_fraction() {
        let share = |v: &str| parse_share(v).map(PruneShare::get);
        assert_eq!(share("5%"), Ok(0.05));
        assert_eq!(share("0.05"), Ok(0.05));
        assert_eq!(share("100%"), Ok(1.0));
        for bad in ["0", "0%", "0.5%", "150%", "2", "-10%", "fast", ""] {
            let err = parse_share(bad).unwrap_err();
            assert!(err.contains("from 1% to 100%"), "{bad}: {err}");
        }
        let shown = PruneShare::default().to_string();
        assert_eq!(parse_share(&shown), Ok(PruneShare::default()));
        let config = serve_args(&[
            "--database-url",
            "postgres://x/y",
            "--signing-secret",
            GOOD_A,
            "--prune-share",
            "5%",
        ])
        .validate()
        .unwrap();
        assert_eq!(config.retention.share.get(), 0.05);
    }

    #[test]
    fn webhook_path_must_be_absolute() {
        assert!(parse_path("webhooks").is_err());
        assert!(parse_path("/a/{x}").is_err());
        assert_eq!(parse_path("/hooks/terra").unwrap(), "/hooks/terra");
    }
}
