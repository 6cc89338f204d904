//! terra-sink: verify Terra webhooks, keep them in a durable ledger, decode them into typed rows.
//!
//! Data flow: `http` (HTTP in) → `signature` → [`ledger`] (the durable ledger, group-committed)
//! → `worker` (batches, decoded with [`model`]) → `store` and `lifecycle` (typed tables,
//! users). [`backfill`] pulls history from Terra's REST API into the same ledger; [`reconcile`]
//! brings `terra.users` in line with the users that API lists. The
//! `terra-sink` binary (`src/bin/terra-sink/`) owns the command line.
//!
//! Modules are private; what the binary, the tests, the benches and the examples use is
//! re-exported here.

pub mod backfill;
mod config;
mod db;
mod http;
pub mod ledger;
mod lifecycle;
mod metrics;
pub mod model;
mod peek;
mod ping;
pub mod reconcile;
pub mod send;
mod server;
mod signature;
pub mod store;
mod telemetry;
mod worker;

pub use backfill::{ClientConfig, DataType, RetryPolicy, DEFAULT_BASE_URL as TERRA_API_URL};
pub use config::ServeConfig;
pub use db::DbSettings;
pub use ledger::{GroupCommitConfig, Provenance, PruneReport, PruneShare, RetentionConfig};
pub use lifecycle::{forget, ForgetRequest, Forgotten, RevokedDataPolicy};
pub use metrics::Metrics;
pub use peek::{peek, BodyShape, Peek};
pub use ping::PingConfig;
pub use send::DEFAULT_URL as DEFAULT_SEND_URL;
pub use server::{shutdown_signal, Server};
pub use signature::{sign, BodyCheck, SignatureError, SignatureHeader, Verifier};
pub use telemetry::{init as init_telemetry, LogFormat, Telemetry, TelemetryError};
pub use worker::{BatchReport, Outcome, Processor, WorkerConfig, WorkerError};

/// The database: the connection pool, migrations and the schema's state.
pub mod database {
    pub use crate::db::connect::{open, pool, probe, ConnectError, Target};
    pub use crate::db::schema::{migration_state, MigrationState};
    pub use crate::db::{migrate, DbError, DbSettings, MIGRATOR};
}
