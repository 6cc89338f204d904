//! The durable ledger `terra.deliveries` (raw bodies in `terra.delivery_bodies`): every
//! authenticated delivery exactly as received, committed before it is acknowledged, and the
//! work queue the workers drain.
//!
//! Every body enters through [`NewDelivery::new`] (webhooks, ping-mode downloads, backfills)
//! and [`insert`]; webhooks go through the [`GroupCommit`] writer, which commits many
//! concurrent deliveries at once.

mod connections;
mod inspect;
mod queue;
mod retention;
mod sql;
mod writer;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::peek::{peek, Peek};
use crate::store::text::{self, PgText};
pub use inspect::{get, list, lock_selected, status_counts, Detail, ListFilter, Summary};
pub(crate) use queue::{backlog, claim, claim_start, record_outcomes, Backlog, Claimed, Settled};
pub use queue::{count_by_status, requeue, Selection};
pub(crate) use retention::maintain;
pub use retention::{prepare_partitions, prune, PruneReport, PruneShare, RetentionConfig};
pub(crate) use sql::{children_of, count_duplicates, delete, insert, Stored};
pub use writer::GroupCommitConfig;
#[cfg(test)]
pub(crate) use writer::INGEST_BUSY;
pub(crate) use writer::{GroupCommit, GroupCommitHooks, IngestLoad, LedgerError};

/// Where a ledger body came from: `terra.deliveries.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A signed webhook delivery.
    Webhook,
    /// A ping-mode payload downloaded from its `s3_payload` URL.
    S3Download,
    /// A window fetched from Terra's REST API by `terra-sink backfill`.
    Backfill,
}

impl Source {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::S3Download => "s3_download",
            Self::Backfill => "backfill",
        }
    }
}

/// Processing state of a delivery: `terra.deliveries.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt.
    Pending,
    /// Typed rows written (or nothing to write).
    Done,
    /// An attempt failed; retried at `next_attempt_at`.
    Failed,
    /// Cannot succeed (undecodable, or out of attempts); waits for `reprocess`.
    Parked,
}

/// How a body arrived, with what its source knows about it.
#[derive(Debug, Clone)]
pub enum Arrival {
    /// A verified webhook delivery and Terra's headers.
    Webhook {
        /// The signature's `t`, Unix seconds.
        signed_at: i64,
        /// `x-terra-trace-id`: stable across Terra's retries.
        trace_id: Option<String>,
        /// `terra-reference`.
        terra_reference: Option<String>,
        /// `x-terra-ordering-timestamp`, in milliseconds.
        ordering_ts: Option<i64>,
    },
    /// The payload of the `s3_payload` delivery `parent_id`.
    S3Download {
        /// The ping's ledger row.
        parent_id: i64,
        /// The ping's `terra-reference`.
        terra_reference: Option<String>,
        /// The ping's ordering timestamp.
        ordering_ts: Option<i64>,
    },
    /// A backfill answer for `user_id`, ordered by Terra's response time.
    Backfill {
        /// The user the window was fetched for (used when the body does not say).
        user_id: String,
        /// Milliseconds of Terra's response `Date`.
        ordering_ts: i64,
    },
}

/// A ledger row about to be written: the body plus what a first look at it found.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Identifies the delivery across redeliveries (see [`NewDelivery::new`]).
    pub dedupe_key: PgText,
    /// Where the body came from.
    pub source: Source,
    /// The signature header's timestamp.
    pub signed_at: Option<DateTime<Utc>>,
    /// Event `type` when the body reveals it.
    pub event_type: Option<PgText>,
    /// Terra user id when the body reveals it.
    pub user_id: Option<PgText>,
    /// `x-terra-trace-id`.
    pub trace_id: Option<PgText>,
    /// `terra-reference`.
    pub terra_reference: Option<PgText>,
    /// `x-terra-ordering-timestamp`, in milliseconds.
    pub ordering_ts: Option<i64>,
    /// The raw body.
    pub body: Bytes,
    /// SHA-256 of the body.
    pub body_sha256: [u8; 32],
    /// What a first look at the body found (`ok`, `invalid_json`, …).
    pub shape: &'static str,
    /// Why the shape is not `ok`.
    pub shape_error: Option<PgText>,
    /// The delivery this body was fetched for (ping mode).
    pub parent_id: Option<i64>,
}

impl NewDelivery {
    /// Builds the ledger row of a body, whatever its source. The dedupe key makes redelivery
    /// idempotent: Terra's trace id is stable across its retries, and without one the same
    /// body is the same delivery; a ping's download is keyed by its ping; a backfill answer by
    /// its content (the same answer twice is one delivery, a different one a new version).
    pub fn new(body: Bytes, arrival: Arrival) -> Self {
        let (first_look, body_sha256) = look_and_digest(&body);
        let digest = hex::encode(body_sha256);
        let mut row = Self {
            dedupe_key: PgText::default(),
            source: Source::Webhook,
            signed_at: None,
            event_type: text::opt(first_look.event_type.as_deref()),
            user_id: text::opt(first_look.user_id.as_deref()),
            trace_id: None,
            terra_reference: None,
            ordering_ts: None,
            body,
            body_sha256,
            shape: first_look.shape.label(),
            shape_error: text::opt(first_look.shape.error()),
            parent_id: None,
        };
        let dedupe_key = match arrival {
            Arrival::Webhook {
                signed_at,
                trace_id,
                terra_reference,
                ordering_ts,
            } => {
                row.signed_at = DateTime::from_timestamp(signed_at, 0);
                row.terra_reference = text::opt(terra_reference.as_deref());
                row.ordering_ts = ordering_ts;
                row.trace_id = text::opt(trace_id.as_deref());
                match trace_id {
                    Some(trace) => format!("trace:{trace}"),
                    None => format!("sha256:{digest}"),
                }
            }
            Arrival::S3Download {
                parent_id,
                terra_reference,
                ordering_ts,
            } => {
                row.source = Source::S3Download;
                row.terra_reference = text::opt(terra_reference.as_deref());
                row.ordering_ts = ordering_ts;
                row.parent_id = Some(parent_id);
                s3_dedupe_key(parent_id)
            }
            Arrival::Backfill {
                user_id,
                ordering_ts,
            } => {
                row.source = Source::Backfill;
                row.ordering_ts = Some(ordering_ts);
                row.user_id = row.user_id.or_else(|| Some(PgText::new(&user_id)));
                format!("backfill:{digest}")
            }
        };
        row.dedupe_key = PgText::new(&dedupe_key);
        row
    }
}

/// Bodies from this size up are worth taking off the request's thread: their first look and
/// digest take a fifth of a millisecond or more (7 ms at 9 MB).
pub(crate) const LARGE_BODY_BYTES: usize = 256 * 1024;

/// The body's first look and SHA-256. For a large body the two passes run side by side, as
/// each takes milliseconds and they share nothing.
fn look_and_digest(body: &[u8]) -> (Peek, [u8; 32]) {
    let digest = || -> [u8; 32] { Sha256::digest(body).into() };
    if body.len() < LARGE_BODY_BYTES {
        return (peek(body), digest());
    }
    std::thread::scope(|scope| {
        let Ok(side) = std::thread::Builder::new().spawn_scoped(scope, digest) else {
            return (peek(body), digest());
        };
        let look = peek(body);
        match side.join() {
            Ok(sha) => (look, sha),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The dedupe key of the body downloaded for ping `parent_id`.
pub fn s3_dedupe_key(parent_id: i64) -> String {
    format!("s3:{parent_id}")
}

/// What the processing of a ledger row knows about where its records came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// `terra.deliveries.id` (stored as `event_id` in the typed tables).
    pub delivery_id: i64,
    /// When the delivery was received.
    pub received_at: DateTime<Utc>,
    /// Its `terra-reference` (large requests).
    pub terra_reference: Option<String>,
    /// Its `x-terra-ordering-timestamp`, in milliseconds.
    pub ordering_ts: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_body_is_looked_at_and_digested_as_a_small_one_is() {
        let small = br#"{"type":"sleep","user":{"user_id":"u-1"},"data":[]}"#.to_vec();
        let pad = "x".repeat(LARGE_BODY_BYTES);
        let large =
            format!(r#"{{"type":"sleep","user":{{"user_id":"u-1"}},"data":[],"p":"{pad}"}}"#);
        for body in [
            small,
            large.into_bytes(),
            b"not json".repeat(LARGE_BODY_BYTES),
        ] {
            let (look, sha) = look_and_digest(&body);
            assert_eq!(look, peek(&body));
            assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&body)));
        }
    }
}
