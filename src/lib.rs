//! terra-sink: verify Terra webhooks, keep them in a durable ledger, decode them into typed rows.
//!
//! Data flow: [`http`] (HTTP in) → [`signature`] → [`ledger`] (durable ledger) → [`worker`]
//! (batch decode with [`model`]) → [`store`] and [`lifecycle`] (typed tables). [`cli`] holds the commands of the `terra-sink` binary.

pub mod backfill;
pub mod cli;
pub mod config;
pub mod config_source;
pub mod db;
pub mod deliveries;
pub mod http;
pub mod ledger;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod peek;
pub mod ping;
pub mod send;
pub mod server;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod worker;
