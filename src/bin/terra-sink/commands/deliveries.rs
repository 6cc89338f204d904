//! `terra-sink deliveries`: list, show and resend ledger deliveries without writing SQL.

use std::io::Write;

use sqlx::PgPool;

use terra_sink::ledger::{self as deliveries, Detail, ListFilter, Summary};
use terra_sink::send::{self, Outgoing};

use crate::args::{
    DeliveriesCommand, DeliveriesListArgs, DeliveriesResendArgs, DeliveriesShowArgs,
};

/// Longest last error shown in a list (`deliveries show` prints it whole).
const LIST_ERROR_CHARS: usize = 160;

/// Why a `deliveries` command failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveriesError {
    /// The ledger could not be read.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// No delivery has this id.
    #[error("no delivery with id {0} in terra.deliveries")]
    NotFound(i64),
    /// `resend` without a secret to sign with.
    #[error("the signing secret is not set: set TERRA_SIGNING_SECRET (or --secret)")]
    NoSecret,
    /// The delivery could not be sent.
    #[error(transparent)]
    Send(#[from] send::SendError),
    /// The receiver did not accept it.
    #[error("{0}")]
    Rejected(String),
    /// Retention removed the body.
    #[error("the raw body of delivery {0} was removed by retention (terra-sink prune)")]
    BodyRemoved(i64),
    /// Standard output failed (e.g. a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs one `deliveries` subcommand.
pub async fn run(pool: &PgPool, command: DeliveriesCommand) -> anyhow::Result<()> {
    match command {
        DeliveriesCommand::List(args) => Ok(list(pool, args).await?),
        DeliveriesCommand::Show(args) => Ok(show(pool, &args).await?),
        DeliveriesCommand::Resend(args) => Ok(resend(pool, &args).await?),
    }
}

async fn list(pool: &PgPool, args: DeliveriesListArgs) -> Result<(), DeliveriesError> {
    let filter = ListFilter {
        statuses: args.statuses,
        event_types: args.event_types,
        user_id: args.user_id,
        since: args.since,
        limit: args.limit,
    };
    let rows = deliveries::list(pool, &filter).await?;
    let mut out = std::io::stdout().lock();
    if rows.is_empty() {
        writeln!(out, "no deliveries match")?;
    } else {
        out.write_all(format_list(&rows).as_bytes())?;
    }
    Ok(())
}

async fn show(pool: &PgPool, args: &DeliveriesShowArgs) -> Result<(), DeliveriesError> {
    let detail = fetch(pool, args.id).await?;
    let mut out = std::io::stdout().lock();
    if args.body_only {
        let body = detail
            .body
            .as_deref()
            .ok_or(DeliveriesError::BodyRemoved(detail.id))?;
        out.write_all(body)?;
    } else {
        out.write_all(format_detail(&detail).as_bytes())?;
    }
    Ok(())
}

async fn resend(pool: &PgPool, args: &DeliveriesResendArgs) -> Result<(), DeliveriesError> {
    let detail = fetch(pool, args.id).await?;
    let body = detail
        .body
        .as_deref()
        .ok_or(DeliveriesError::BodyRemoved(detail.id))?;
    let secret = args
        .secret
        .as_ref()
        .and_then(|list| list.0.first())
        .ok_or(DeliveriesError::NoSecret)?;
    // Terra's own headers go along, so the receiver dedupes and orders it as it would a retry.
    let reply = send::send(&Outgoing {
        url: &args.url,
        secret,
        body,
        trace_id: detail.trace_id.as_deref(),
        ordering_timestamp: detail.ordering_ts,
        terra_reference: detail.terra_reference.as_deref(),
        timestamp: chrono::Utc::now().timestamp(),
    })
    .await?;
    send::report(&reply).map_err(DeliveriesError::Rejected)
}

async fn fetch(pool: &PgPool, id: i64) -> Result<Detail, DeliveriesError> {
    deliveries::get(pool, id)
        .await?
        .ok_or(DeliveriesError::NotFound(id))
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// The list as an aligned table, newest first, with the last error of failed and parked ones.
fn format_list(rows: &[Summary]) -> String {
    let header = [
        "ID",
        "RECEIVED",
        "SOURCE",
        "TYPE",
        "USER",
        "STATUS",
        "TRIES",
        "DUPS",
        "BYTES",
        "LAST ERROR",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            let error = match r.status.as_str() {
                "failed" | "parked" => one_line(or_dash(r.last_error.as_deref()), LIST_ERROR_CHARS),
                _ => String::new(),
            };
            [
                r.id.to_string(),
                r.received_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                r.source.clone(),
                or_dash(r.event_type.as_deref()).to_owned(),
                or_dash(r.user_id.as_deref()).to_owned(),
                r.status.clone(),
                r.attempts.to_string(),
                r.duplicates.to_string(),
                r.body_size.to_string(),
                error,
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric = [
        true, false, false, false, false, false, true, true, true, false,
    ];
    let line = |row: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            if numeric[i] {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else if i + 1 < row.len() {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(cell);
            }
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(header.to_vec());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Everything about one delivery, one field a line, then the body as text.
fn format_detail(d: &Detail) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
    };
    let fields: Vec<(&str, String)> = vec![
        ("id", d.id.to_string()),
        ("received_at", d.received_at.to_rfc3339()),
        ("source", d.source.clone()),
        ("event_type", or_dash(d.event_type.as_deref()).to_owned()),
        ("user_id", or_dash(d.user_id.as_deref()).to_owned()),
        ("trace_id", or_dash(d.trace_id.as_deref()).to_owned()),
        (
            "terra_reference",
            or_dash(d.terra_reference.as_deref()).to_owned(),
        ),
        (
            "ordering_ts",
            d.ordering_ts
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
        ),
        ("signed_at", time(d.signed_at)),
        ("dedupe_key", d.dedupe_key.clone()),
        ("shape", d.shape.clone()),
        ("shape_error", or_dash(d.shape_error.as_deref()).to_owned()),
        ("duplicates", d.duplicates.to_string()),
        ("last_duplicate_at", time(d.last_duplicate_at)),
        ("status", d.status.clone()),
        ("attempts", d.attempts.to_string()),
        ("next_attempt_at", d.next_attempt_at.to_rfc3339()),
        ("processed_at", time(d.processed_at)),
        ("last_error", or_dash(d.last_error.as_deref()).to_owned()),
        (
            "parent_id",
            d.parent_id
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
        ),
        (
            "body",
            format!(
                "{} bytes, sha256 {}{}",
                d.body_size,
                hex::encode(&d.body_sha256),
                if d.body.is_none() {
                    " (removed by retention)"
                } else {
                    ""
                }
            ),
        ),
    ];
    let mut out = String::new();
    for (name, value) in fields {
        out.push_str(&format!("{name:<18} {value}\n"));
    }
    out.push('\n');
    match d.body.as_deref().map(std::str::from_utf8) {
        None => {}
        Some(Ok(text)) => {
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        Some(Err(_)) => {
            out.push_str("(the body is not UTF-8 text; --body-only prints its bytes)\n")
        }
    }
    out
}

/// `text` on one line, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn summary(id: i64, status: &str, error: Option<&str>) -> Summary {
        Summary {
            id,
            received_at: Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 1).unwrap(),
            source: "webhook".into(),
            event_type: Some("daily".into()),
            user_id: None,
            status: status.into(),
            attempts: 1,
            duplicates: 0,
            body_size: 4213,
            last_error: error.map(str::to_owned),
        }
    }

    #[test]
    fn the_list_is_aligned_and_shows_errors_of_parked_ones_only() {
        let text = format_list(&[
            summary(
                12,
                "parked",
                Some("undecodable: missing field `data`\nat line 1"),
            ),
            summary(3, "done", Some("an old error")),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ID  RECEIVED"), "{text}");
        assert!(
            lines[1].starts_with("12  2026-11-23 10:00:01Z  webhook"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("undecodable: missing field `data` at line 1"),
            "{text}"
        );
        assert!(lines[2].starts_with(" 3  "), "{text}");
        assert!(!lines[2].contains("old error"), "{text}");
        assert!(lines[2].ends_with("4213"), "{text}");
    }

    #[test]
    fn long_errors_are_cut() {
        let cut = one_line(&"x".repeat(500), 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
    }
}
