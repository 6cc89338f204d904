//! `prune`: removes old raw bodies, then ledger rows past the dedupe window that nothing needs.

use anyhow::Context;
use chrono::Utc;

use super::open_database;
use crate::args::PruneArgs;

/// Drops the body partitions older than `--older-than`, then the unreferenced ledger rows older
/// than the dedupe window too, and prints what it removed.
pub async fn run(args: PruneArgs) -> anyhow::Result<()> {
    let pool = open_database(&args.database).await?;
    let window = args.dedupe.dedupe_window.0;
    let share = args.dedupe.share;
    let report = terra_sink::ledger::prune(&pool, args.older_than, window, share, Utc::now())
        .await
        .context("pruning the ledger failed")?;
    if report.already_running {
        anyhow::bail!("another prune holds the lock; try again when it has finished");
    }
    println!("{report}");
    Ok(())
}
