//! `serve` (the webhook receiver and its workers) and `migrate`.

use anyhow::{bail, Context};
use sqlx::PgPool;
use terra_sink::{database, DbSettings, Server};

use super::open_database;
use crate::args::{DatabaseArgs, ServeArgs};

/// The version of this binary.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the receiver until SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.validate()?;
    tracing::info!(version = VERSION, "terra-sink starting");
    let pool = database::pool(&config.database)?;
    prepare_schema(&pool, &config.database, config.migrate_on_start).await?;
    let server = Server::bind(&config, pool)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    server
        .run(terra_sink::shutdown_signal())
        .await
        .context("server failed")
}

/// Applies pending migrations when asked to, and logs the schema's state. Without migrations
/// to apply, an unreachable database does not stop the service: `/readyz` reports it.
async fn prepare_schema(pool: &PgPool, settings: &DbSettings, migrate: bool) -> anyhow::Result<()> {
    if let Err(err) = database::probe(&pool.connect_options(), settings.acquire_timeout).await {
        if migrate {
            bail!("cannot apply the database migrations: {err}");
        }
        tracing::warn!(error = %err, "database not reachable at start-up; /readyz answers 503 until it is");
        return Ok(());
    }
    let before = migration_state(pool).await?;
    if migrate && !before.is_current() {
        database::migrate(pool).await?;
        let after = migration_state(pool).await?;
        let now = after.applied.saturating_sub(before.applied);
        tracing::info!(
            applied_now = now,
            "database schema: applied {now} now; {after}"
        );
    } else if before.is_current() {
        tracing::info!("database schema: {before}");
    } else {
        tracing::warn!(
            "database schema: {before}; run `terra-sink migrate` (or set TERRA_SINK_MIGRATE_ON_START=true)"
        );
    }
    Ok(())
}

async fn migration_state(pool: &PgPool) -> anyhow::Result<database::MigrationState> {
    database::migration_state(pool)
        .await
        .context("cannot read the migration state")
}

/// Applies every pending migration and says where the schema stands.
pub async fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    let pool = open_database(args).await?;
    let before = migration_state(&pool).await?;
    database::migrate(&pool).await?;
    let after = migration_state(&pool).await?;
    let now = after.applied.saturating_sub(before.applied);
    println!("applied {now} migration(s) now; {after}");
    Ok(())
}
