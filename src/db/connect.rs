//! Opening the connection pool every command shares, and saying in one line why PostgreSQL
//! cannot be reached: where (host and port, database, user; never the password) and why.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Connection, PgConnection, PgPool};

use super::DbError;

/// The database settings every command uses.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// The connection URL (it may hold a password).
    pub url: SecretString,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long to wait for a pooled connection, a new one included.
    pub acquire_timeout: Duration,
}

impl Default for DbSettings {
    /// No URL (it must be given), 16 connections, 5 s to get one.
    fn default() -> Self {
        Self {
            url: SecretString::from(String::new()),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Where a database is, without its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address, or the Unix socket directory.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database name, when the URL gives one.
    pub database: Option<String>,
    /// User name.
    pub user: String,
}

impl Target {
    /// The target of `options`.
    pub fn of(options: &PgConnectOptions) -> Self {
        let host = match options.get_socket() {
            Some(dir) => dir.display().to_string(),
            None => options.get_host().to_owned(),
        };
        Self {
            host,
            port: options.get_port(),
            database: options.get_database().map(str::to_owned),
            user: options.get_username().to_owned(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URL hosts keep their brackets; an address set otherwise may not have them.
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{host}:{}", self.port)?;
        match &self.database {
            Some(db) => write!(f, " (database {db}, user {})", self.user),
            None => write!(f, " (user {})", self.user),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// Nothing listens on the port.
    Refused,
    /// The host name does not resolve.
    UnknownHost,
    /// The server refused the user or its password.
    Authentication(String),
    /// The server has no such database.
    UnknownDatabase(String),
    /// No answer in time.
    Timeout(Duration),
    /// The TLS handshake failed.
    Tls(String),
    /// Anything else, in the driver's words (which never include the password).
    Other(String),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused => f.write_str("connection refused (is PostgreSQL running there?)"),
            Self::UnknownHost => f.write_str("unknown host (the name does not resolve)"),
            Self::Authentication(why) => write!(f, "authentication failed: {why}"),
            Self::UnknownDatabase(why) => write!(f, "unknown database: {why}"),
            Self::Timeout(after) => write!(f, "no answer within {} s", after.as_secs_f64()),
            Self::Tls(why) => write!(f, "TLS failed: {why}"),
            Self::Other(why) => f.write_str(why),
        }
    }
}

/// A failed connection: where, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot connect to PostgreSQL at {target}: {cause}")]
pub struct ConnectError {
    /// Where it was going.
    pub target: Target,
    /// Why it failed.
    pub cause: Cause,
}

/// Parses a PostgreSQL URL. The error never repeats the URL: it may hold a password.
pub fn parse_url(url: &SecretString) -> Result<PgConnectOptions, DbError> {
    let url = url.expose_secret().trim();
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("postgres" | "postgresql")) {
        return Err(DbError::InvalidUrl(format!(
            "not a PostgreSQL URL (scheme {}); expected postgres://user:password@host:5432/database",
            scheme.map_or_else(|| "missing".to_owned(), |s| format!("'{s}'"))
        )));
    }
    let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
        DbError::InvalidUrl(match e {
            // sqlx's URL errors may quote the URL; keep only the kind of problem.
            sqlx::Error::Configuration(_) => {
                "not a valid postgres:// URL (check its host, port and any %-escapes)".to_owned()
            }
            other => other.to_string(),
        })
    })?;
    let asked = url_sets_ssl_mode(url) || std::env::var_os("PGSSLMODE").is_some();
    Ok(plain_on_loopback(options, asked))
}

/// With no TLS mode asked for, a server on this machine is reached without TLS: the
/// default `prefer` would encrypt every body, on both sides, on a path no one else can read.
/// Any `sslmode` given is kept as it is.
fn plain_on_loopback(options: PgConnectOptions, asked: bool) -> PgConnectOptions {
    let loopback = options.get_host() == "localhost"
        || options
            .get_host()
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !asked && loopback && matches!(options.get_ssl_mode(), PgSslMode::Prefer) {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    }
}

/// Whether the URL's query names a TLS mode (`sslmode`, or sqlx's `ssl-mode`).
fn url_sets_ssl_mode(url: &str) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    query
        .split('&')
        .filter_map(|pair| pair.split('=').next())
        .any(|key| matches!(key, "sslmode" | "ssl-mode"))
}

/// The options every pool gets.
fn pool_options(settings: &DbSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        // A connection's buffers keep the size of the largest message it carried: after a
        // multi-megabyte body, megabytes per pooled connection for as long as it lives. They
        // go back to their default size whenever a connection returns to the pool; only the
        // next large message pays to grow them again.
        .after_release(|conn, _| {
            Box::pin(async move {
                conn.shrink_buffers();
                Ok(true)
            })
        })
}

/// A pool that connects lazily (the service starts, and reports not-ready, while the database
/// is down).
pub fn pool(settings: &DbSettings) -> Result<PgPool, DbError> {
    let options = parse_url(&settings.url)?;
    Ok(pool_options(settings).connect_lazy_with(options.application_name("terra-sink")))
}

/// A pool whose database was just reached, or the reason it cannot be.
pub async fn open(settings: &DbSettings) -> Result<PgPool, DbError> {
    let pool = pool(settings)?;
    probe(&pool.connect_options(), settings.acquire_timeout).await?;
    Ok(pool)
}

/// Opens (and closes) one connection, outside any pool, to learn whether and why not the
/// database can be reached.
pub async fn probe(options: &PgConnectOptions, timeout: Duration) -> Result<(), ConnectError> {
    let attempt = tokio::time::timeout(timeout, PgConnection::connect_with(options)).await;
    let cause = match attempt {
        Ok(Ok(conn)) => {
            // Closing politely is a courtesy; the answer is already known.
            let _ = conn.close().await;
            return Ok(());
        }
        Ok(Err(err)) => classify(&err),
        Err(_) => Cause::Timeout(timeout),
    };
    Err(ConnectError {
        target: Target::of(options),
        cause,
    })
}

/// Says why a connection attempt failed, in a person's terms.
pub fn classify(err: &sqlx::Error) -> Cause {
    match err {
        sqlx::Error::Io(io) => classify_io(io),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let message = db.message().to_owned();
            match code.as_ref() {
                // invalid_authorization_specification, invalid_password
                "28000" | "28P01" => Cause::Authentication(message),
                // invalid_catalog_name
                "3D000" => Cause::UnknownDatabase(message),
                _ => Cause::Other(format!("{message} (SQLSTATE {code})")),
            }
        }
        sqlx::Error::Tls(why) => Cause::Tls(why.to_string()),
        sqlx::Error::PoolTimedOut => Cause::Other("no free connection in the pool in time".into()),
        other => Cause::Other(other.to_string()),
    }
}

fn classify_io(io: &std::io::Error) -> Cause {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => Cause::Refused,
        ErrorKind::TimedOut => Cause::Timeout(Duration::ZERO),
        _ => {
            let text = io.to_string();
            // getaddrinfo's failure has no ErrorKind of its own.
            if text.contains("failed to lookup address")
                || text.contains("Name or service not known")
                || text.contains("nodename nor servname")
            {
                Cause::UnknownHost
            } else {
                Cause::Other(text)
            }
        }
    }
}

/// Connection-level failures, as opposed to a statement rejected for its data.
pub fn is_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            // Class 08: connection exception; 57P0x: the server is shutting down; 53: out of
            // resources.
            let code = db.code().unwrap_or_default();
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

/// True for errors that mean the database could not be reached at all (as opposed to a
/// statement failing on a working connection).
pub fn is_connection_failure(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("28000" | "28P01" | "3D000"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_on_this_machine_is_reached_without_tls_unless_a_mode_is_asked_for() {
        let mode = |url: &str, asked: bool| {
            let options: PgConnectOptions = url.parse().unwrap();
            plain_on_loopback(options, asked || url_sets_ssl_mode(url)).get_ssl_mode()
        };
        for url in [
            "postgres://u@127.0.0.1:5432/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]:5432/db",
            "postgres://u@127.0.0.2/db?application_name=x",
        ] {
            assert!(matches!(mode(url, false), PgSslMode::Disable), "{url}");
            assert!(
                matches!(mode(url, true), PgSslMode::Prefer),
                "{url} with PGSSLMODE"
            );
        }
        for url in ["postgres://u@db.example.com/db", "postgres://u@10.0.0.5/db"] {
            assert!(matches!(mode(url, false), PgSslMode::Prefer), "{url}");
        }
        assert!(matches!(
            mode("postgres://u@127.0.0.1/db?sslmode=prefer", false),
            PgSslMode::Prefer
        ));
        assert!(matches!(
            mode("postgres://u@localhost/db?ssl-mode=require", false),
            PgSslMode::Require
        ));
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn only_postgres_urls_are_accepted_and_never_echoed() {
        for url in [
            "mysql://u:hunter2@db/x",
            "localhost:5432",
            "hunter2",
            "http://u:hunter2@host/db",
        ] {
            let err = parse_url(&secret(url)).unwrap_err().to_string();
            assert!(err.contains("not a PostgreSQL URL"), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = parse_url(&secret("postgres://u:hunter2@host:notaport/db"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse_url(&secret("postgresql://u@h/db")).is_ok());
    }

    #[test]
    fn the_target_names_host_port_database_and_user_but_not_the_password() {
        let options = parse_url(&secret("postgres://alice:hunter2@db.internal:6543/sink")).unwrap();
        let shown = Target::of(&options).to_string();
        assert_eq!(shown, "db.internal:6543 (database sink, user alice)");
        let options = parse_url(&secret("postgres://bob@[::1]/sink")).unwrap();
        assert_eq!(
            Target::of(&options).to_string(),
            "[::1]:5432 (database sink, user bob)"
        );
    }

    #[test]
    fn io_errors_are_told_apart() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&sqlx::Error::Io(refused)), Cause::Refused);
        let dns = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert_eq!(classify(&sqlx::Error::Io(dns)), Cause::UnknownHost);
        assert!(is_connection_failure(&sqlx::Error::PoolTimedOut));
        assert!(!is_connection_failure(&sqlx::Error::RowNotFound));
    }
}
