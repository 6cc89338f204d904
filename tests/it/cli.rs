//! The real binary's first hour: what it says about bad settings and an unreachable database,
//! what it prints at start-up, and its log output, against a fresh database per test.

use crate::helpers::binary::{output, terra_sink, Running, SECRET};
use sqlx::PgPool;

#[test]
fn version_is_printed() {
    let dir = crate::helpers::binary::scratch_dir("version");
    let (ok, stdout, _) = output(terra_sink(&dir).arg("--version"));
    assert!(ok);
    assert_eq!(
        stdout.trim(),
        format!("terra-sink {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_environment_value_is_reported_under_its_variable() {
    let dir = crate::helpers::binary::scratch_dir("env-names");
    let (ok, _, stderr) = output(
        terra_sink(&dir)
            .arg("serve")
            .env("TERRA_SINK_WORKERS", "two")
            .env("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x"),
    );
    assert!(!ok);
    assert!(
        stderr.contains("invalid value 'two' for TERRA_SINK_WORKERS (set in the environment)"),
        "{stderr}"
    );
    // The same value on the command line is reported under the flag, as before.
    let (_, _, stderr) = output(terra_sink(&dir).args(["serve", "--workers", "two"]));
    assert!(stderr.contains("'--workers <WORKERS>'"), "{stderr}");

    // From ./.env, and secret values are never quoted.
    std::fs::write(dir.join(".env"), "# comment\nTERRA_SINK_LOG_FORMAT=xml\n").unwrap();
    let (ok, _, stderr) = output(terra_sink(&dir).arg("migrate"));
    assert!(!ok);
    assert!(
        stderr.contains("invalid value 'xml' for TERRA_SINK_LOG_FORMAT (set in ./.env): expected one of text, json"),
        "{stderr}"
    );
    std::fs::write(dir.join(".env"), "DATABASE_URL=\" \"\n").unwrap();
    let (_, _, stderr) = output(terra_sink(&dir).arg("migrate"));
    assert!(
        stderr.contains("invalid value for DATABASE_URL (set in ./.env): it is empty"),
        "{stderr}"
    );
}

#[test]
fn serve_reports_every_missing_setting_at_once() {
    let dir = crate::helpers::binary::scratch_dir("missing");
    let (ok, _, stderr) = output(terra_sink(&dir).arg("serve"));
    assert!(!ok);
    assert!(
        stderr.starts_with("error: 2 settings need attention:"),
        "{stderr}"
    );
    assert!(stderr.contains("set DATABASE_URL"), "{stderr}");
    assert!(stderr.contains("set TERRA_SIGNING_SECRET"), "{stderr}");
}

#[test]
fn placeholder_and_short_signing_secrets_are_refused_in_one_line() {
    let dir = crate::helpers::binary::scratch_dir("placeholder");
    for (secret, why) in [
        ("replace-me", "is a placeholder"),
        ("whsec_short", "is only 11 characters long"),
    ] {
        let (ok, _, stderr) = output(
            terra_sink(&dir)
                .arg("serve")
                .env("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x")
                .env("TERRA_SIGNING_SECRET", secret),
        );
        assert!(!ok, "{secret} accepted");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(
            !stderr.contains(secret) && !stderr.contains("hunter2"),
            "{stderr}"
        );
    }
}

/// Each way of not reaching the database, for every command that uses it: what failed, where
/// and why, never the password.
#[test]
fn every_command_says_where_and_why_the_database_cannot_be_reached() {
    let dir = crate::helpers::binary::scratch_dir("db-errors");
    let refused = crate::helpers::binary::refused_addr();
    let unknown_db =
        crate::helpers::binary::server_url_with_database("terra_sink_no_such_database");
    let cases = [
        (
            format!("postgres://u:hunter2@{refused}/x"),
            format!("cannot connect to PostgreSQL at {refused} (database x, user u): connection refused"),
        ),
        (
            unknown_db,
            "unknown database: database \"terra_sink_no_such_database\" does not exist".to_owned(),
        ),
        (
            // With trust authentication, an unknown role is what the server refuses.
            crate::helpers::binary::server_url_with_database("postgres").replacen(
                "://",
                "://terra_sink_no_such_role:hunter2@",
                1,
            ),
            "authentication failed: role \"terra_sink_no_such_role\" does not exist".to_owned(),
        ),
        (
            "mysql://u:hunter2@127.0.0.1/x".to_owned(),
            "invalid DATABASE_URL: not a PostgreSQL URL".to_owned(),
        ),
    ];
    let commands: [&[&str]; 5] = [
        &["serve"],
        &["migrate"],
        &["reprocess", "--all"],
        &["deliveries", "list"],
        &["backfill", "--user-id", "u", "--days", "1"],
    ];
    for (url, expected) in &cases {
        for command in commands {
            let (ok, _, stderr) = output(
                terra_sink(&dir)
                    .args(command)
                    .env("DATABASE_URL", url)
                    .env("TERRA_SIGNING_SECRET", SECRET)
                    .env("TERRA_DEV_ID", "dev")
                    .env("TERRA_API_KEY", "key")
                    .env("TERRA_API_URL", "http://127.0.0.1:9/api")
                    .env("TERRA_SINK_DB_ACQUIRE_TIMEOUT_SECS", "2"),
            );
            assert!(!ok, "{command:?} {url}");
            assert!(stderr.contains(expected.as_str()), "{command:?}: {stderr}");
            assert!(!stderr.contains("hunter2"), "{stderr}");
            assert!(!stderr.contains("pool timed out"), "{stderr}");
        }
    }
}

#[sqlx::test(migrations = false)]
async fn start_up_prints_the_version_and_the_migration_state(pool: PgPool) {
    let dir = crate::helpers::binary::scratch_dir("start-up");
    let url = crate::helpers::binary::database_url(&pool);
    let port = crate::helpers::binary::free_port();
    let metrics_port = crate::helpers::binary::free_port();
    let mut serve = terra_sink(&dir);
    serve
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("TERRA_SIGNING_SECRET", SECRET)
        .env("TERRA_SINK_BIND", format!("127.0.0.1:{port}"))
        .env(
            "TERRA_SINK_METRICS_BIND",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("TERRA_SINK_WORKERS", "0")
        .env("TERRA_SINK_LOG_FORMAT", "json");
    let started = tokio::task::spawn_blocking(move || {
        let mut running = Running::start(&mut serve);
        let version = running.wait_for("terra-sink starting");
        let schema = running.wait_for("database schema");
        let listening = running.wait_for("terra-sink listening");
        drop(running);
        (version, schema, listening)
    })
    .await
    .unwrap();
    let (version, schema, listening) = started;
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    let message = schema["message"].as_str().unwrap();
    let embedded = terra_sink::database::MIGRATOR.iter().count();
    assert!(
        message.contains(&format!(
            "applied {embedded} now; {embedded} of {embedded} migrations applied"
        )),
        "{message}"
    );
    // Values, not Debug of an Option.
    let listening: serde_json::Value = serde_json::from_str(&listening).unwrap();
    assert_eq!(
        listening["metrics_addr"],
        format!("127.0.0.1:{metrics_port}")
    );

    // Without migrating at start-up, the state (nothing pending now) is still printed, and text
    // logs written to a pipe carry no colour codes.
    let mut serve = terra_sink(&dir);
    serve
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("TERRA_SIGNING_SECRET", SECRET)
        .env("TERRA_SINK_BIND", format!("127.0.0.1:{port}"))
        .env("TERRA_SINK_WORKERS", "0")
        .env("TERRA_SINK_MIGRATE_ON_START", "false");
    let text = tokio::task::spawn_blocking(move || {
        let mut running = Running::start(&mut serve);
        running.wait_for("terra-sink listening");
        let seen = running.seen.concat();
        seen + &running.terminate()
    })
    .await
    .unwrap();
    assert!(
        text.contains(&format!(
            "database schema: {embedded} of {embedded} migrations applied"
        )),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "ANSI codes in piped logs: {text:?}"
    );
}
