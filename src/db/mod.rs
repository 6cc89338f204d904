//! PostgreSQL: the connection pool and migrations (and the backfill's bookkeeping table).

pub mod backfill;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

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
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database did not answer in time.
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
}

/// Builds a pool that connects lazily, so the service starts (and reports not-ready) while the
/// database is down. `acquire_timeout` bounds how long a request can wait for a connection.
pub fn connect_lazy(
    url: &SecretString,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, DbError> {
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .map_err(|e: sqlx::Error| DbError::InvalidUrl(redact_sqlx_error(&e)))?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options.application_name("terra-sink")))
}

/// sqlx's URL errors may quote the URL; keep only the kind of problem.
fn redact_sqlx_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(_) => "not a valid postgres:// URL".to_owned(),
        other => other.to_string(),
    }
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
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
