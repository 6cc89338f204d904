//! `prune`: removes old raw bodies from the ledger.

use anyhow::Context;

use super::open_database;
use crate::args::PruneArgs;

/// Drops the body partitions older than `--older-than` and prints what it removed.
pub async fn run(args: PruneArgs) -> anyhow::Result<()> {
    let pool = open_database(&args.database).await?;
    let report = terra_sink::ledger::prune(&pool, args.older_than, chrono::Utc::now())
        .await
        .context("pruning raw bodies failed")?;
    if report.already_running {
        anyhow::bail!("another prune holds the lock; try again when it has finished");
    }
    println!("{report}");
    Ok(())
}
