//! The settings of the service, with the documented defaults. The command line (in the
//! binary) and the tests build them; nothing here knows about flags or the environment.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::db::DbSettings;
use crate::ledger::{GroupCommitConfig, RetentionConfig};
use crate::reconcile::ScheduledReconcile;
use crate::worker::WorkerConfig;

/// Settings of the webhook receiver (`terra-sink serve`).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The database and its pool.
    pub database: DbSettings,
    /// Terra signing secrets; a delivery signed with any of them is accepted.
    pub signing_secrets: Vec<SecretString>,
    /// Address and port to listen on.
    pub bind: SocketAddr,
    /// A separate address for `/metrics` (otherwise it is served on `bind`).
    pub metrics_bind: Option<SocketAddr>,
    /// URL path that receives Terra's deliveries.
    pub webhook_path: String,
    /// Largest accepted difference between the signature's timestamp and now, in seconds.
    pub signature_tolerance_secs: u64,
    /// Largest accepted body in bytes.
    pub max_body_bytes: usize,
    /// Body bytes held in memory at once, across all requests.
    pub max_inflight_body_bytes: usize,
    /// Time a client gets to send a whole body.
    pub body_read_timeout: Duration,
    /// Time a client gets to send a request's headers.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Time a delivery may take to be committed before the answer is 503.
    pub persist_timeout: Duration,
    /// How deliveries are grouped into ledger commits.
    pub group_commit: GroupCommitConfig,
    /// Apply pending migrations at start-up.
    pub migrate_on_start: bool,
    /// How ledger deliveries are processed into typed rows.
    pub worker: WorkerConfig,
    /// When raw bodies are removed.
    pub retention: RetentionConfig,
    /// A reconcile with Terra's API on a schedule (none by default).
    pub reconcile: Option<ScheduledReconcile>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            database: DbSettings::default(),
            signing_secrets: Vec::new(),
            bind: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_bind: None,
            webhook_path: "/webhooks/terra".to_owned(),
            signature_tolerance_secs: 300,
            max_body_bytes: 64 * 1024 * 1024,
            max_inflight_body_bytes: 1024 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            persist_timeout: Duration::from_millis(1500),
            group_commit: GroupCommitConfig::default(),
            migrate_on_start: true,
            worker: WorkerConfig::default(),
            retention: RetentionConfig::default(),
            reconcile: None,
        }
    }
}
