//! Writing `terra.deliveries`: many rows in one statement, redeliveries recognised by key.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo};
use sqlx::{Encode, PgConnection, Postgres, Type};

use super::NewDelivery;

/// What happened to a delivery written to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new row with this id.
    New(i64),
    /// A redelivery of the row with this id: nothing new was stored.
    Duplicate(i64),
}

impl Stored {
    /// The ledger row id.
    pub fn id(self) -> i64 {
        match self {
            Self::New(id) | Self::Duplicate(id) => id,
        }
    }
}

/// Writes `rows` in one statement inside the caller's transaction; a row whose dedupe key is
/// already in the ledger (or earlier in `rows`) is a duplicate. Returns one [`Stored`] per row,
/// in order. Copies within `rows` are counted in the new row's `duplicates`; redeliveries of
/// rows already stored are not counted here (see [`count_duplicates`]), so that this never
/// waits for a worker holding such a row.
pub async fn insert(
    conn: &mut PgConnection,
    rows: &[NewDelivery],
) -> Result<Vec<Stored>, sqlx::Error> {
    // One representative per key, in key order: concurrent writers then take the unique
    // index's locks in one order and cannot deadlock.
    let mut first_of: HashMap<&str, (usize, i32)> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        first_of.entry(row.dedupe_key.as_str()).or_insert((i, 0)).1 += 1;
    }
    let mut unique: Vec<(usize, i32)> = first_of.values().copied().collect();
    unique.sort_by(|a, b| rows[a.0].dedupe_key.cmp(&rows[b.0].dedupe_key));

    let inserted = insert_unique(conn, rows, &unique).await?;
    let missing: Vec<&str> = unique
        .iter()
        .map(|&(i, _)| rows[i].dedupe_key.as_str())
        .filter(|key| !inserted.contains_key(*key))
        .collect();
    let existing: HashMap<String, i64> = if missing.is_empty() {
        HashMap::new()
    } else {
        sqlx::query!(
            "SELECT dedupe_key, id FROM terra.deliveries WHERE dedupe_key = ANY($1)",
            &missing as &[&str]
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.dedupe_key, r.id))
        .collect()
    };

    let mut seen: HashSet<&str> = HashSet::with_capacity(rows.len());
    rows.iter()
        .map(|row| {
            let key = row.dedupe_key.as_str();
            match (inserted.get(key), existing.get(key)) {
                (Some(&id), _) if seen.insert(key) => Ok(Stored::New(id)),
                (Some(&id), _) | (None, Some(&id)) => Ok(Stored::Duplicate(id)),
                // The conflicting row vanished in between (deleted by a data policy).
                (None, None) => Err(sqlx::Error::RowNotFound),
            }
        })
        .collect()
}

/// The multi-row insert of one row per key; returns the ids of the rows it created by key.
async fn insert_unique(
    conn: &mut PgConnection,
    rows: &[NewDelivery],
    unique: &[(usize, i32)],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let picked: Vec<&NewDelivery> = unique.iter().map(|&(i, _)| &rows[i]).collect();
    let pick = |f: &dyn Fn(&NewDelivery) -> Option<&str>| -> Vec<Option<&str>> {
        picked.iter().map(|r| f(r)).collect()
    };
    let keys: Vec<&str> = picked.iter().map(|r| r.dedupe_key.as_str()).collect();
    let sources: Vec<&str> = picked.iter().map(|r| r.source.as_str()).collect();
    let signed_at: Vec<Option<DateTime<Utc>>> = picked.iter().map(|r| r.signed_at).collect();
    let ordering: Vec<Option<i64>> = picked.iter().map(|r| r.ordering_ts).collect();
    let bodies = BodyParams::new(picked.iter().map(|r| &r.body[..]).collect());
    let shas: Vec<&[u8]> = picked.iter().map(|r| &r.body_sha256[..]).collect();
    let sizes: Vec<i32> = picked.iter().map(|r| body_size(&r.body)).collect();
    let shapes: Vec<&str> = picked.iter().map(|r| r.shape).collect();
    let parents: Vec<Option<i64>> = picked.iter().map(|r| r.parent_id).collect();
    let copies: Vec<i32> = unique.iter().map(|&(_, n)| n - 1).collect();
    // The metadata row and its body in one statement: both or neither. The bodies stay in
    // their parameters and are picked by position: carried through the CTE, each body would
    // be copied into two tuplestores, which spill to temporary files past `work_mem` (a 9 MB
    // body took about 100 ms more that way).
    let created = sqlx::query!(
        r#"
        WITH u AS (
            SELECT *
            FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                        $6::text[], $7::text[], $8::int8[], $10::bytea[],
                        $11::int4[], $12::text[], $13::text[], $14::int8[], $15::int4[])
                WITH ORDINALITY
                AS u(dedupe_key, source, signed_at, event_type, user_id, trace_id,
                     terra_reference, ordering_ts, body_sha256, body_size, shape,
                     shape_error, parent_id, copies, n)
        ), created AS (
            INSERT INTO terra.deliveries
                (dedupe_key, source, signed_at, event_type, user_id, trace_id, terra_reference,
                 ordering_ts, body_sha256, body_size, shape, shape_error, parent_id,
                 duplicates, last_duplicate_at)
            SELECT u.dedupe_key, u.source, u.signed_at, u.event_type, u.user_id, u.trace_id,
                   u.terra_reference, u.ordering_ts, u.body_sha256, u.body_size, u.shape,
                   u.shape_error, u.parent_id, u.copies,
                   CASE WHEN u.copies > 0 THEN now() END
            FROM u
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id, dedupe_key, received_at
        ), bodies AS (
            INSERT INTO terra.delivery_bodies (delivery_id, received_at, body)
            SELECT c.id, c.received_at,
                   CASE WHEN u.n = $17::int8 THEN $16::bytea ELSE ($9::bytea[])[u.n] END
            FROM created c JOIN u USING (dedupe_key)
        )
        SELECT id AS "id!", dedupe_key AS "dedupe_key!" FROM created
        "#,
        &keys as &[&str],
        &sources as &[&str],
        &signed_at as &[Option<DateTime<Utc>>],
        &pick(&|r| r.event_type.as_deref()) as &[Option<&str>],
        &pick(&|r| r.user_id.as_deref()) as &[Option<&str>],
        &pick(&|r| r.trace_id.as_deref()) as &[Option<&str>],
        &pick(&|r| r.terra_reference.as_deref()) as &[Option<&str>],
        &ordering as &[Option<i64>],
        Room {
            bytes: bodies.room(),
            value: &bodies.others
        } as Room<&Vec<&[u8]>>,
        &shas as &[&[u8]],
        &sizes,
        &shapes as &[&str],
        &pick(&|r| r.shape_error.as_deref()) as &[Option<&str>],
        &parents as &[Option<i64>],
        &copies,
        bodies.largest,
        bodies.largest_n,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(created.into_iter().map(|r| (r.dedupe_key, r.id)).collect())
}

/// `body_size`: a body's length in bytes (bodies are capped far below `i32::MAX`).
fn body_size(body: &[u8]) -> i32 {
    i32::try_from(body.len()).unwrap_or(i32::MAX)
}

/// A group's bodies as the insert takes them: the largest as a parameter of its own, the
/// others in one array with an empty placeholder where the largest was. Inside an array
/// PostgreSQL copies a body twice more (receiving the array and building it).
#[derive(Debug, PartialEq)]
struct BodyParams<'a> {
    others: Vec<&'a [u8]>,
    largest: &'a [u8],
    /// The largest body's position, from 1 (as `WITH ORDINALITY` counts).
    largest_n: i64,
}

/// Room for one row's other columns in the insert's other parameters (keys, ids, timestamps,
/// the digest), whose own size hints count them short.
const ROW_ROOM: usize = 1024;

impl<'a> BodyParams<'a> {
    fn new(mut bodies: Vec<&'a [u8]>) -> Self {
        let at = (0..bodies.len())
            .max_by_key(|&i| bodies[i].len())
            .unwrap_or(0);
        let largest = bodies.get_mut(at).map_or(&[][..], std::mem::take);
        Self {
            others: bodies,
            largest,
            largest_n: i64::try_from(at + 1).unwrap_or(i64::MAX),
        }
    }

    /// The bytes every parameter of the insert takes together, or a little more: both body
    /// parameters exactly (with their length words and the array's header), the others
    /// estimated per row.
    fn room(&self) -> usize {
        let array = 4 + 20 + self.others.iter().map(|b| 4 + b.len()).sum::<usize>();
        array + 4 + self.largest.len() + ROW_ROOM * self.others.len()
    }
}

/// A parameter that tells sqlx how much room to reserve for the query's arguments. The query
/// macro sizes its argument buffer once, from the sum of its parameters' size hints, and then
/// grows it by doubling, each time into freshly faulted-in memory: the buffer of a 9 MB body
/// was moved about twenty times.
struct Room<T> {
    value: T,
    bytes: usize,
}

impl<T: Type<Postgres>> Type<Postgres> for Room<T> {
    fn type_info() -> PgTypeInfo {
        T::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        T::compatible(ty)
    }
}

impl<'q, T: Encode<'q, Postgres>> Encode<'q, Postgres> for Room<T> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        self.value.encode_by_ref(buf)
    }

    fn size_hint(&self) -> usize {
        self.bytes
    }
}

/// Adds redeliveries to the `duplicates` counters of stored rows, skipping rows a worker holds
/// right now (never waiting for it). Returns the counts that could not be added yet.
pub async fn count_duplicates(
    conn: &mut PgConnection,
    counts: &HashMap<i64, i32>,
) -> Result<HashMap<i64, i32>, sqlx::Error> {
    if counts.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<i64> = counts.keys().copied().collect();
    let ns: Vec<i32> = ids.iter().map(|id| counts[id]).collect();
    let counted = sqlx::query_scalar!(
        r#"
        UPDATE terra.deliveries AS d
        SET duplicates = d.duplicates + c.n, last_duplicate_at = now()
        FROM UNNEST($1::int8[], $2::int4[]) AS c(id, n)
        WHERE d.id = c.id
          AND d.id IN (SELECT id FROM terra.deliveries WHERE id = ANY($1)
                       ORDER BY id FOR NO KEY UPDATE SKIP LOCKED)
        RETURNING d.id
        "#,
        &ids,
        &ns
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut left = counts.clone();
    for id in counted {
        left.remove(&id);
    }
    Ok(left)
}

/// The parents among `ids` whose ping-mode payload is already in the ledger.
pub async fn children_of(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<HashSet<i64>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let found = sqlx::query_scalar!(
        r#"SELECT parent_id AS "parent_id!" FROM terra.deliveries WHERE parent_id = ANY($1)"#,
        ids
    )
    .fetch_all(conn)
    .await?;
    Ok(found.into_iter().collect())
}

/// Deletes ledger rows (deliveries whose data a policy says must not be kept).
pub async fn delete(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM terra.deliveries WHERE id = ANY($1)", ids)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_body_leaves_the_array_and_an_empty_one_keeps_its_place() {
        let params = BodyParams::new(vec![b"ab", b"abcd", b"a"]);
        assert_eq!(
            params,
            BodyParams {
                others: vec![b"ab", b"", b"a"],
                largest: b"abcd",
                largest_n: 2,
            }
        );
        let alone = BodyParams::new(vec![b"x"]);
        assert_eq!(
            (alone.others, alone.largest, alone.largest_n),
            (vec![&b""[..]], &b"x"[..], 1)
        );
        let none = BodyParams::new(Vec::new());
        assert!(none.others.is_empty() && none.largest.is_empty());
    }

    #[test]
    fn the_room_asked_for_holds_both_body_parameters_and_a_row_allowance() {
        let big = vec![7u8; 100_000];
        let params = BodyParams::new(vec![b"ab", &big, b"abc"]);
        let mut buf = PgArgumentBuffer::default();
        // As the Bind message carries them: a length word, then the value.
        for encoded in [
            Encode::<Postgres>::encode_by_ref(&params.others, &mut buf),
            Encode::<Postgres>::encode_by_ref(&params.largest, &mut buf),
        ] {
            assert!(matches!(encoded, Ok(IsNull::No)));
        }
        assert_eq!(params.room(), buf.len() + 2 * 4 + 3 * ROW_ROOM);
    }
}
