//! Ping mode in a batch: the payloads of its `s3_payload` deliveries are downloaded (several
//! at a time) while the batch holds their claims, and each becomes a ledger row of its own,
//! inserted in the batch's transaction and processed like an inline delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tokio::task::JoinSet;

use super::decode::{Item, Work};
use super::{Failure, Processor};
use crate::ledger::{self, Arrival, NewDelivery};
use crate::ping;

/// Downloads at the same time per batch.
const CONCURRENT_DOWNLOADS: usize = 16;

/// The outcome of a batch's downloads.
#[derive(Default)]
pub(super) struct Pings {
    /// The payload downloaded for each ping (by the ping's ledger id).
    pub children: HashMap<i64, NewDelivery>,
    /// Pings whose download failed.
    pub failures: HashMap<i64, Failure>,
}

/// What one download needs, owned (it runs on its own task).
struct Job {
    id: i64,
    url: Option<String>,
    valid_until: DateTime<Utc>,
    attempts: i32,
    terra_reference: Option<String>,
    ordering_ts: Option<i64>,
}

/// Downloads the payload of every ping in `items` that was not downloaded on an earlier
/// attempt (reprocessing never downloads or stores a payload twice).
pub(super) async fn pings(
    processor: &Processor,
    conn: &mut PgConnection,
    items: &[Item],
) -> Result<Pings, sqlx::Error> {
    let jobs: Vec<Job> = items
        .iter()
        .filter_map(|item| match &item.work {
            Work::Ping(ping) => {
                let expires_in = ping.expires_in.and_then(|n| n.as_i64()).unwrap_or(0).max(0);
                Some(Job {
                    id: item.origin.delivery_id,
                    url: ping.url.clone(),
                    valid_until: item.origin.received_at + chrono::Duration::seconds(expires_in),
                    attempts: item.attempts,
                    terra_reference: item.origin.terra_reference.clone(),
                    ordering_ts: item.origin.ordering_ts,
                })
            }
            _ => None,
        })
        .collect();
    let mut pings = Pings::default();
    if jobs.is_empty() {
        return Ok(pings);
    }
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let fetched_before = ledger::children_of(conn, &ids).await?;
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DOWNLOADS));
    let mut running = JoinSet::new();
    for job in jobs.into_iter().filter(|j| !fetched_before.contains(&j.id)) {
        let (processor, limit) = (processor.clone(), limit.clone());
        running.spawn(async move {
            let _slot = limit.acquire_owned().await;
            (job.id, fetch(&processor, job).await)
        });
    }
    while let Some(done) = running.join_next().await {
        match done {
            Ok((id, Ok(child))) => {
                pings.children.insert(id, child);
            }
            Ok((id, Err(failure))) => {
                pings.failures.insert(id, failure);
            }
            Err(err) => tracing::error!(error = %err, "a download task panicked"),
        }
    }
    Ok(pings)
}

async fn fetch(processor: &Processor, job: Job) -> Result<NewDelivery, Failure> {
    let Some(url) = job.url.as_deref() else {
        return Err(Failure::Park("s3_payload without url".into()));
    };
    let config = &processor.config.ping;
    match ping::fetch(&processor.http, config, url).await {
        Ok(body) => {
            processor.metrics.download("ok");
            let arrival = Arrival::S3Download {
                parent_id: job.id,
                terra_reference: job.terra_reference,
                ordering_ts: job.ordering_ts,
            };
            Ok(NewDelivery::new(Bytes::from(body), arrival))
        }
        Err(err) => {
            processor.metrics.download(err.label());
            let left = (job.valid_until - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            // Short retries: the URL is only valid for minutes.
            let exp = u32::try_from(job.attempts.clamp(0, 6)).unwrap_or(6);
            let delay = Duration::from_millis(500 * 2u64.pow(exp));
            Err(if err.is_retryable() && delay < left {
                Failure::Retry(format!("s3 download: {err}"), Some(delay))
            } else if err.is_retryable() {
                Failure::Park(format!("s3 download: {err}; the url has expired"))
            } else {
                Failure::Park(format!("s3 download: {err}"))
            })
        }
    }
}
