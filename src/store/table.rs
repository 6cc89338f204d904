//! The one driver every typed table is written through: records of a whole batch go in as
//! multi-row upserts, copies of one record resolve in delivery order, and the samples of the
//! copy that won follow their record.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use sqlx::PgConnection;

use super::samples::{RecordSamples, Samples};
use super::text::PgText;
use super::Applied;

/// One record of a delivery, mapped and ready to be written to the table of `R`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<R> {
    /// `user.user_id` (the user's current id once the batch resolved re-keyed users).
    pub user_id: PgText,
    /// The record's natural key for its user.
    pub record_key: PgText,
    /// `user.provider`.
    pub provider: Option<PgText>,
    /// The record's JSON text as sent, made acceptable to jsonb (shared: a batch part that
    /// is retried after a split takes its records again without copying them).
    pub data: Arc<str>,
    /// `terra.deliveries.id` of the delivery carrying the record (stored as `event_id`).
    pub delivery_id: i64,
    /// Its `x-terra-ordering-timestamp`, in milliseconds.
    pub ordering_ts: Option<i64>,
    /// The table's own columns.
    pub row: R,
    /// The record's samples (empty for tables without samples).
    pub samples: Arc<Samples>,
}

/// A typed table: the statement that writes a set of its records.
pub trait RecordTable: Sized + Send + Sync {
    /// The table name in schema `terra`; also `terra.sample_series.source` of its samples.
    const NAME: &'static str;
    /// Whether its records own rows in `terra.sample_series`.
    const HAS_SAMPLES: bool;

    /// Inserts or replaces `rows` (distinct keys, sorted by key) in one statement, under the
    /// overwrite rule (`terra.is_newer`), and returns the key of each row written. The rows written stay locked until the transaction ends.
    fn upsert(
        conn: &mut PgConnection,
        rows: &[Record<Self>],
    ) -> impl Future<Output = Result<Vec<WrittenKey>, sqlx::Error>> + Send;
}

/// The key of a row an upsert wrote (`RETURNING user_id, record_key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WrittenKey {
    /// `user_id` (empty for tables without a user).
    pub user_id: String,
    /// `record_key`.
    pub record_key: String,
}

/// What every upsert binds besides the table's own columns, one element per row.
pub struct CommonColumns<'a> {
    /// `user_id`.
    pub user_id: Vec<&'a str>,
    /// `record_key`.
    pub record_key: Vec<&'a str>,
    /// `provider`.
    pub provider: Vec<Option<&'a str>>,
    /// `data`, as JSON text.
    pub data: Vec<&'a str>,
    /// `ordering_ts`.
    pub ordering_ts: Vec<Option<i64>>,
    /// `event_id`.
    pub event_id: Vec<i64>,
}

impl<'a> CommonColumns<'a> {
    /// The common columns of `rows`.
    pub fn of<R>(rows: &'a [Record<R>]) -> Self {
        Self {
            user_id: rows.iter().map(|r| r.user_id.as_str()).collect(),
            record_key: rows.iter().map(|r| r.record_key.as_str()).collect(),
            provider: rows.iter().map(|r| r.provider.as_deref()).collect(),
            data: rows.iter().map(|r| &*r.data).collect(),
            ordering_ts: rows.iter().map(|r| r.ordering_ts).collect(),
            event_id: rows.iter().map(|r| r.delivery_id).collect(),
        }
    }
}

/// One column of `rows`, for binding as an array.
pub fn column<'a, R, T>(rows: &'a [Record<R>], f: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(|r| f(&r.row)).collect()
}

/// Splits records (in delivery order) into rounds: the first copy of each key in round 0, the
/// second in round 1, and so on, each round sorted by key. Applying the rounds in order is
/// applying the copies one by one, and sorted keys make every writer lock rows in one order.
fn rounds<R>(records: Vec<Record<R>>) -> Vec<Vec<Record<R>>> {
    let mut copies: HashMap<(PgText, PgText), usize> = HashMap::with_capacity(records.len());
    let mut rounds: Vec<Vec<Record<R>>> = Vec::new();
    for record in records {
        let n = copies
            .entry((record.user_id.clone(), record.record_key.clone()))
            .or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(record);
        *n += 1;
    }
    for round in &mut rounds {
        round.sort_by(|a, b| (&a.user_id, &a.record_key).cmp(&(&b.user_id, &b.record_key)));
    }
    rounds
}

/// What writing the typed tables of a batch produced.
#[derive(Debug, Default)]
pub struct Written {
    /// Counts.
    pub applied: Applied,
    /// The samples of each written record (of the last copy that wrote it).
    samples: HashMap<(&'static str, PgText, PgText), Arc<Samples>>,
}

impl Written {
    /// The samples to write, one entry per written record, in key order.
    pub fn into_samples(self) -> (Applied, Vec<RecordSamples>) {
        let mut samples: Vec<RecordSamples> = self
            .samples
            .into_iter()
            .map(|((source, user_id, record_key), samples)| RecordSamples {
                source,
                user_id,
                record_key,
                samples,
            })
            .collect();
        samples.sort_by(|a, b| {
            (a.source, &a.user_id, &a.record_key).cmp(&(b.source, &b.user_id, &b.record_key))
        });
        (self.applied, samples)
    }
}

/// Writes the records of one table: each round in one statement.
pub async fn write<T: RecordTable>(
    conn: &mut PgConnection,
    records: Vec<Record<T>>,
    out: &mut Written,
) -> Result<(), sqlx::Error> {
    for round in rounds(records) {
        let written: std::collections::HashSet<WrittenKey> =
            T::upsert(conn, &round).await?.into_iter().collect();
        for record in round {
            let key = WrittenKey {
                user_id: record.user_id.into_string(),
                record_key: record.record_key.into_string(),
            };
            if !written.contains(&key) {
                tracing::debug!(
                    table = T::NAME,
                    record_key = key.record_key,
                    "older copy skipped"
                );
                out.applied.records_skipped += 1;
                continue;
            }
            out.applied.records_written += 1;
            if T::HAS_SAMPLES {
                out.applied.samples_skipped += record.samples.skipped;
                let user_id = PgText::from_stored(key.user_id);
                let record_key = PgText::from_stored(key.record_key);
                out.samples
                    .insert((T::NAME, user_id, record_key), record.samples);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str, key: &str, delivery_id: i64) -> Record<()> {
        Record {
            user_id: PgText::new(user),
            record_key: PgText::new(key),
            provider: None,
            data: "{}".into(),
            delivery_id,
            ordering_ts: None,
            row: (),
            samples: Arc::default(),
        }
    }

    #[test]
    fn copies_of_a_record_go_to_successive_rounds_in_delivery_order() {
        let rounds = rounds(vec![
            record("u2", "a", 1),
            record("u1", "a", 2),
            record("u2", "a", 3),
            record("u2", "b", 4),
            record("u2", "a", 5),
        ]);
        let ids: Vec<Vec<i64>> = rounds
            .iter()
            .map(|r| r.iter().map(|x| x.delivery_id).collect())
            .collect();
        // Round 0 sorted by (user, key): (u1,a) (u2,a) (u2,b).
        assert_eq!(ids, vec![vec![2, 1, 4], vec![3], vec![5]]);
    }
}
