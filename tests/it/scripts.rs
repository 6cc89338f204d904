//! `scripts/run.sh` as a new user runs it, from a copy of the scripts in an empty directory (so
//! no developer's `.env` is touched), with the already built binary instead of a new build.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::binary::Running;

/// An empty project directory holding a copy of the scripts.
fn project() -> PathBuf {
    let dir = crate::helpers::binary::scratch_dir("run-sh");
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for name in ["run.sh", "postgres.sh"] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(name);
        std::fs::copy(from, scripts.join(name)).unwrap();
    }
    dir
}

/// run.sh in `dir` with a fresh database name, `bin` as the binary, and no DATABASE_URL.
fn run_sh(dir: &Path, db: &str, bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(dir.join("scripts/run.sh"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("TERRA_SINK_PG_DATABASE", db)
        .env("TERRA_SINK_BIN", bin)
        .env("TERRA_SINK_WORKERS", "0")
        .current_dir(dir);
    cmd
}

/// Drops the database run.sh created on the test server.
async fn drop_database(db: &str) {
    let url = crate::helpers::binary::server_url_with_database("postgres");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
}

fn dotenv_value(dir: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".env")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

#[tokio::test]
async fn run_sh_writes_the_database_url_prints_the_bound_url_and_serves() {
    let dir = project();
    let db = format!("terra_sink_run_sh_{}", std::process::id());
    let port = crate::helpers::binary::free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut cmd = run_sh(
        &dir,
        &db,
        Path::new(env!("CARGO_BIN_EXE_terra-sink")),
        &["--bind", &bind],
    );
    let (announced, running) = tokio::task::spawn_blocking(move || {
        let mut running = Running::start(&mut cmd);
        let announced = running.wait_for("Webhook URL:");
        running.wait_for("terra-sink listening");
        (announced, running)
    })
    .await
    .unwrap();
    assert_eq!(
        announced.trim(),
        format!("Webhook URL: http://127.0.0.1:{port}/webhooks/terra")
    );
    let health = reqwest::get(format!("http://{}/healthz", bind))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    tokio::task::spawn_blocking(move || running.terminate())
        .await
        .unwrap();

    let url = dotenv_value(&dir, "DATABASE_URL").expect("DATABASE_URL in ./.env");
    assert!(url.ends_with(&format!("/{db}")), "{url}");
    let secret = dotenv_value(&dir, "TERRA_SIGNING_SECRET").unwrap();
    assert!(secret.starts_with("whsec_dev_"), "{secret}");
    let mode = std::fs::metadata(dir.join(".env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The README's next commands work from ./.env alone.
    let (ok, stdout, stderr) =
        crate::helpers::binary::output(crate::helpers::binary::terra_sink(&dir).arg("migrate"));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("applied 0 migration(s) now"), "{stdout}");
    let (ok, stdout, stderr) = crate::helpers::binary::output(
        crate::helpers::binary::terra_sink(&dir).args(["deliveries", "list"]),
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "no deliveries match");
    drop_database(&db).await;
}

#[tokio::test]
async fn run_sh_binds_loopback_unless_told_otherwise() {
    let dir = project();
    let db = format!("terra_sink_run_sh_bind_{}", std::process::id());
    // A stand-in binary that shows what it was started with.
    let fake = dir.join("fake-terra-sink");
    std::fs::write(&fake, "#!/bin/sh\necho \"bind=$TERRA_SINK_BIND args=$*\"\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (ok, stdout, stderr) = crate::helpers::binary::output(&mut run_sh(&dir, &db, &fake, &[]));
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "bind=127.0.0.1:8080 args=serve");
    assert!(
        stderr.contains("Webhook URL: http://127.0.0.1:8080/webhooks/terra"),
        "{stderr}"
    );
    // Written once: a second run finds both settings in ./.env.
    let (ok, _, stderr) =
        crate::helpers::binary::output(&mut run_sh(&dir, &db, &fake, &["--bind=0.0.0.0:9001"]));
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("Webhook URL: http://localhost:9001/"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrote DATABASE_URL"), "{stderr}");
    let env = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert_eq!(env.matches("DATABASE_URL=").count(), 1, "{env}");
    assert_eq!(env.matches("TERRA_SIGNING_SECRET=").count(), 1, "{env}");
    drop_database(&db).await;
}
