//! PostgreSQL: the connection pool and migrations, the backfill's bookkeeping tables and
//! reconcile's changes to `terra.users`.

pub mod backfill;
pub mod connect;
pub mod reconcile;
pub mod schema;

use std::time::Duration;

use sqlx::PgPool;

pub use connect::{is_outage, ConnectError, DbSettings};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Errors at the database boundary. Messages never contain the connection URL or its password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL could not be parsed (the URL itself is not repeated: it may hold a password).
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    /// A query or connection failed.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// The database could not be reached: where, and why.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Migrations could not be applied.
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database did not answer in time.
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
}

/// Applies every pending migration. When the database cannot be reached, the error says where
/// and why rather than that the pool timed out.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    match MIGRATOR.run(pool).await {
        Ok(()) => Ok(()),
        Err(sqlx::migrate::MigrateError::Execute(err)) if connect::is_connection_failure(&err) => {
            let timeout = pool.options().get_acquire_timeout();
            connect::probe(&pool.connect_options(), timeout).await?;
            Err(sqlx::migrate::MigrateError::Execute(err).into())
        }
        Err(other) => Err(other.into()),
    }
}

/// True when the database answers and every embedded migration has been applied.
pub async fn is_ready(pool: &PgPool) -> Result<bool, DbError> {
    let Some(latest) = MIGRATOR.iter().map(|m| m.version).max() else {
        return Ok(true);
    };
    // sqlx's own bookkeeping table; not part of our schema, so this query is not macro-checked.
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .or_else(|e| match e {
                // The table does not exist yet: nothing applied.
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(None),
                other => Err(other),
            })?;
    Ok(applied.is_some_and(|v| v >= latest))
}
