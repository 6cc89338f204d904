//! Large historical requests (`terra.large_requests`, `terra.large_request_chunks`) and failed
//! connection attempts (`terra.auth_attempts`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::store::PgText;

/// What one delivery says about a large request.
#[derive(Debug, Clone, PartialEq)]
pub struct News {
    /// The request's `terra-reference`.
    pub reference: String,
    /// Its user, when the delivery names one.
    pub user_id: Option<String>,
    /// When the delivery was received.
    pub received_at: DateTime<Utc>,
    /// What it says.
    pub kind: NewsKind,
}

/// The kinds of large-request news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewsKind {
    /// `large_request_processing` arrived.
    Processing,
    /// `large_request_sending` arrived with this many payloads to come.
    Sending {
        /// `expected_payloads`.
        expected: i32,
    },
    /// A data delivery carrying the request's `terra-reference` arrived.
    Chunk {
        /// The chunk's ledger row.
        delivery_id: i64,
    },
}

/// A batch's news, folded per request (in reference order) and the chunks to count.
#[derive(Debug, Default)]
struct Folded {
    requests: BTreeMap<String, Request>,
    chunks: Vec<(String, i64, DateTime<Utc>)>,
}

/// One request's news of a batch, as if applied one by one.
#[derive(Debug, Default)]
struct Request {
    user_id: Option<String>,
    processing_at: Option<DateTime<Utc>>,
    announced_at: Option<DateTime<Utc>>,
    expected: Option<i32>,
}

fn fold(news: &[News]) -> Folded {
    let mut folded = Folded::default();
    for n in news {
        let reference = PgText::new(&n.reference).into_string();
        let r = folded.requests.entry(reference.clone()).or_default();
        if r.user_id.is_none() {
            r.user_id = n.user_id.as_deref().map(|u| PgText::new(u).into_string());
        }
        match n.kind {
            NewsKind::Processing => r.processing_at = r.processing_at.or(Some(n.received_at)),
            NewsKind::Sending { expected } => {
                r.announced_at = r.announced_at.or(Some(n.received_at));
                r.expected = Some(expected);
            }
            NewsKind::Chunk { delivery_id } => {
                folded.chunks.push((reference, delivery_id, n.received_at));
            }
        }
    }
    folded
}

/// Records a batch's large-request news: requests created or updated in reference order,
/// chunks counted once each (counts are derived from the chunks, so redelivery and
/// reprocessing never double count).
pub async fn record(conn: &mut PgConnection, news: &[News]) -> Result<(), sqlx::Error> {
    if news.is_empty() {
        return Ok(());
    }
    let folded = fold(news);
    let refs: Vec<&str> = folded.requests.keys().map(String::as_str).collect();
    upsert_requests(conn, &folded).await?;
    insert_chunks(conn, &folded.chunks).await?;
    recount(conn, &refs).await
}

async fn upsert_requests(conn: &mut PgConnection, folded: &Folded) -> Result<(), sqlx::Error> {
    let requests = &folded.requests;
    let refs: Vec<&str> = requests.keys().map(String::as_str).collect();
    let users: Vec<Option<&str>> = requests.values().map(|r| r.user_id.as_deref()).collect();
    let processing: Vec<Option<DateTime<Utc>>> =
        requests.values().map(|r| r.processing_at).collect();
    let announced: Vec<Option<DateTime<Utc>>> = requests.values().map(|r| r.announced_at).collect();
    let expected: Vec<Option<i32>> = requests.values().map(|r| r.expected).collect();
    sqlx::query!(
        r#"
        INSERT INTO terra.large_requests AS t
            (reference, user_id, processing_at, announced_at, expected_payloads)
        SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                             $5::int4[])
        ON CONFLICT (reference) DO UPDATE SET
            user_id = coalesce(t.user_id, EXCLUDED.user_id),
            processing_at = coalesce(t.processing_at, EXCLUDED.processing_at),
            announced_at = coalesce(t.announced_at, EXCLUDED.announced_at),
            expected_payloads = coalesce(EXCLUDED.expected_payloads, t.expected_payloads),
            updated_at = now()
        "#,
        &refs as &[&str],
        &users as &[Option<&str>],
        &processing as &[Option<DateTime<Utc>>],
        &announced as &[Option<DateTime<Utc>>],
        &expected as &[Option<i32>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_chunks(
    conn: &mut PgConnection,
    chunks: &[(String, i64, DateTime<Utc>)],
) -> Result<(), sqlx::Error> {
    if chunks.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = chunks.iter().map(|c| c.0.as_str()).collect();
    let ids: Vec<i64> = chunks.iter().map(|c| c.1).collect();
    let at: Vec<DateTime<Utc>> = chunks.iter().map(|c| c.2).collect();
    sqlx::query!(
        r#"
        INSERT INTO terra.large_request_chunks (reference, delivery_id, received_at)
        SELECT * FROM UNNEST($1::text[], $2::int8[], $3::timestamptz[])
        ON CONFLICT DO NOTHING
        "#,
        &refs as &[&str],
        &ids,
        &at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn recount(conn: &mut PgConnection, refs: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        UPDATE terra.large_requests AS t SET
            received_payloads = c.n,
            first_chunk_at = c.first_at,
            last_chunk_at = c.last_at,
            completed_at = CASE
                WHEN t.completed_at IS NULL AND t.expected_payloads IS NOT NULL
                     AND c.n >= t.expected_payloads THEN now()
                ELSE t.completed_at END
        FROM (SELECT r.reference, count(k.delivery_id)::int AS n, min(k.received_at) AS first_at,
                     max(k.received_at) AS last_at
              FROM UNNEST($1::text[]) AS r(reference)
              LEFT JOIN terra.large_request_chunks k ON k.reference = r.reference
              GROUP BY r.reference) AS c
        WHERE t.reference = c.reference
        "#,
        refs as &[&str],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A connection attempt that produced no user.
#[derive(Debug)]
pub struct AuthAttempt<'a> {
    /// The ledger row.
    pub event_id: i64,
    /// `auth_cancelled`, or `auth` for the legacy error form.
    pub event_type: &'a str,
    /// The customer's own id for the end user.
    pub reference_id: Option<&'a str>,
    /// Why it failed.
    pub reason: Option<&'a str>,
    /// Terra's flow id.
    pub flow_id: Option<&'a str>,
    /// Terra's message.
    pub message: Option<&'a str>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
}

/// Records a connection attempt that produced no user.
pub async fn record_auth_attempt(
    conn: &mut PgConnection,
    a: &AuthAttempt<'_>,
) -> Result<(), sqlx::Error> {
    let text = |s: Option<&str>| s.map(PgText::new);
    let (reference, reason) = (text(a.reference_id), text(a.reason));
    let (flow, message) = (text(a.flow_id), text(a.message));
    sqlx::query!(
        r#"
        INSERT INTO terra.auth_attempts
            (event_id, event_type, reference_id, reason, flow_id, message, received_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (event_id) DO NOTHING
        "#,
        a.event_id,
        a.event_type,
        reference.as_deref(),
        reason.as_deref(),
        flow.as_deref(),
        message.as_deref(),
        a.received_at
    )
    .execute(conn)
    .await?;
    Ok(())
}
