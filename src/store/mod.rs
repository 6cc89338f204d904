//! Typed storage (issue 4). STUB written by the lead so the worker compiles: helper-3 replaces
//! this file with the real implementation of the same interface.

use crate::model::Event;

/// Provenance of the records being written: the ledger row and Terra's ordering header.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// The ledger row (`terra.deliveries.id`).
    pub delivery_id: i64,
    /// `x-terra-ordering-timestamp` of the delivery.
    pub ordering_ts: Option<i64>,
}

/// What `apply` wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {}

/// Errors at the typed-storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Writes every typed row an event carries, inside the caller's transaction.
pub async fn apply(
    _conn: &mut sqlx::PgConnection,
    _source: &Source,
    _event: &Event,
    _body: &[u8],
) -> Result<Applied, StoreError> {
    Ok(Applied::default())
}
