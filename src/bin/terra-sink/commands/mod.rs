//! One module per command; each returns `anyhow::Result` with the context a person needs.

mod backfill;
pub(crate) use backfill::client_config;
mod deliveries;
mod forget;
mod healthcheck;
mod prune;
mod reconcile;
mod reprocess;
mod send;
mod serve;

use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use terra_sink::{Metrics, Processor};

use crate::args::{Command, DatabaseArgs, WorkerArgs};

/// Runs the chosen command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::serve(*args).await,
        Command::Migrate(args) => serve::migrate(&args).await,
        Command::Reprocess(args) => reprocess::run(args).await,
        Command::Healthcheck(args) => healthcheck::run(&args).await,
        Command::Backfill(args) => backfill::run(*args).await,
        Command::Reconcile(args) => reconcile::run(*args).await,
        Command::Send(args) => send::run(args).await,
        Command::Prune(args) => prune::run(args).await,
        Command::Forget(args) => forget::run(args).await,
        Command::Deliveries(args) => {
            let pool = open_database(&args.database).await?;
            deliveries::run(&pool, args.command).await
        }
    }
}

/// The shared pool of a command, once the database was reached (or why it cannot be).
async fn open_database(args: &DatabaseArgs) -> anyhow::Result<PgPool> {
    let settings = args.settings()?;
    Ok(terra_sink::database::open(&settings).await?)
}

/// Processes every due delivery in this process and prints where the ledger stands.
async fn drain(pool: &PgPool, worker: &WorkerArgs) -> anyhow::Result<()> {
    let processor = Processor::new(pool.clone(), worker.config(), Arc::new(Metrics::new()));
    let handled = processor
        .drain()
        .await
        .context("processing the ledger failed")?;
    let left = terra_sink::ledger::count_by_status(pool)
        .await
        .context("cannot read the ledger")?;
    println!("{handled} deliveries processed; ledger now: {left}");
    Ok(())
}
