//! `reprocess`: chosen ledger deliveries through decoding and typed storage again.

use anyhow::{bail, Context};
use terra_sink::ledger::{self, Selection};

use super::{drain, open_database};
use crate::args::ReprocessArgs;

/// Puts the selection back in the queue, processes it, and says what became of it.
pub async fn run(args: ReprocessArgs) -> anyhow::Result<()> {
    let selection = Selection {
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
        bail!("no deliveries selected: give --id, --type, --status, --since/--until, or --all");
    }
    let pool = open_database(&args.database).await?;
    // The selected ids are kept, to tell afterwards what became of exactly those deliveries.
    let requeued = async {
        let mut tx = pool.begin().await?;
        let ids = ledger::lock_selected(&mut tx, &selection).await?;
        let selected = ledger::requeue(&mut tx, &selection).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>((ids, selected))
    };
    let (ids, selected) = requeued.await.context("database error")?;
    println!("{selected} deliveries queued for reprocessing");
    if args.enqueue_only {
        return Ok(());
    }
    drain(&pool, &args.worker).await?;
    let counts = ledger::status_counts(&pool, &ids)
        .await
        .context("database error")?;
    let (summary, all_done) = summary(ids.len(), &counts);
    println!("{summary}");
    if !all_done {
        bail!(
            "not every selected delivery was processed: {summary}; see why with \
             `terra-sink deliveries list --status parked --status failed`"
        );
    }
    Ok(())
}

/// A one-line account of what became of the selected deliveries, and whether all are done.
fn summary(selected: usize, counts: &[(String, i64)]) -> (String, bool) {
    let count = |status: &str| {
        counts
            .iter()
            .filter(|(s, _)| s == status)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let done = count("done");
    let mut parts = vec![format!("{done} done")];
    for (status, note) in [
        ("parked", " again"),
        ("failed", " (will be retried)"),
        ("pending", ""),
    ] {
        let n = count(status);
        if n > 0 {
            parts.push(format!("{n} {status}{note}"));
        }
    }
    let all_parked = selected > 0 && count("parked") == selected as i64;
    let head = if all_parked {
        format!("all {selected} selected deliveries were parked again")
    } else {
        format!("{selected} selected")
    };
    (
        format!("{head}: {}", parts.join(", ")),
        done == selected as i64,
    )
}

#[cfg(test)]
mod tests {
    use super::summary;

    fn counts(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
        pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    }

    #[test]
    fn the_reprocess_summary_says_what_became_of_the_selection() {
        assert_eq!(
            summary(3, &counts(&[("done", 3)])),
            ("3 selected: 3 done".to_owned(), true)
        );
        let (text, ok) = summary(2, &counts(&[("parked", 2)]));
        assert!(!ok);
        assert_eq!(
            text,
            "all 2 selected deliveries were parked again: 0 done, 2 parked again"
        );
        let (text, ok) = summary(3, &counts(&[("done", 1), ("failed", 1), ("parked", 1)]));
        assert!(!ok);
        assert_eq!(
            text,
            "3 selected: 1 done, 1 parked again, 1 failed (will be retried)"
        );
        assert_eq!(summary(0, &[]), ("0 selected: 0 done".to_owned(), true));
    }
}
