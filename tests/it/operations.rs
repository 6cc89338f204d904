//! What operators rely on: `/metrics`, `/readyz` explaining itself, `healthcheck`, a span per
//! request carrying Terra's trace id, and OpenTelemetry export to a collector.

use crate::helpers::binary::{terra_sink, Running, SECRET};
use crate::helpers::{test_config, TestApp};
use sqlx::PgPool;

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn metrics_expose_build_info_the_pool_and_the_processing_histograms(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!("terra_sink_build_info{{version=\"{version}\"}} 1")),
        "{text}"
    );
    for gauge in [
        "terra_sink_db_pool_connections",
        "terra_sink_db_pool_idle_connections",
        "terra_sink_db_pool_max_connections",
    ] {
        assert!(
            text.contains(&format!("# TYPE {gauge} gauge")),
            "{gauge}: {text}"
        );
    }
    // test_config() pools at most 5: the gauge reads the real pool.
    assert!(
        text.contains("terra_sink_db_pool_max_connections 5"),
        "{text}"
    );
    let open: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("terra_sink_db_pool_connections "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=5).contains(&open),
        "the scrape itself used a connection: {open}"
    );
    // The workers' own pool: one connection per worker (2 by default) and one spare.
    assert!(
        text.contains("terra_sink_db_processing_pool_max_connections 3"),
        "{text}"
    );
    for histogram in [
        "terra_sink_processing_duration_seconds",
        "terra_sink_ack_to_typed_lag_seconds",
        "terra_sink_processing_batch_deliveries",
        "terra_sink_ledger_commit_deliveries",
    ] {
        assert!(
            text.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram}: {text}"
        );
    }
    app.stop().await;
}

/// An app whose pool points at a port nothing listens on.
async fn app_without_database() -> (TestApp, std::net::SocketAddr) {
    let refused = crate::helpers::binary::refused_addr();
    let url = secrecy::SecretString::from(format!("postgres://postgres:hunter2@{refused}/terra"));
    let pool = terra_sink::database::pool(&terra_sink::DbSettings {
        url,
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(1),
    })
    .unwrap();
    (TestApp::spawn_with(pool, test_config()).await, refused)
}

#[tokio::test]
async fn readyz_says_where_and_why_the_database_cannot_be_reached() {
    let (app, refused) = app_without_database().await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["reason"], "database unreachable");
    assert_eq!(
        body["database"],
        format!("{refused} (database terra, user postgres)")
    );
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("connection refused"), "{error}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    app.stop().await;
}

fn healthcheck(args: &[String]) -> (bool, String) {
    let dir = crate::helpers::binary::scratch_dir("healthcheck");
    let (ok, _, stderr) =
        crate::helpers::binary::output(terra_sink(&dir).arg("healthcheck").args(args));
    (ok, stderr)
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn healthcheck_checks_liveness_or_readiness_on_the_configured_port(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let bind = vec!["--bind".to_owned(), app.addr.to_string()];
    let ready = [bind.clone(), vec!["--ready".to_owned()]].concat();
    let (ok, stderr) = tokio::task::spawn_blocking(move || healthcheck(&ready))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    let (ok, _) = tokio::task::spawn_blocking(move || healthcheck(&bind))
        .await
        .unwrap();
    assert!(ok);
    let addr = app.addr;
    app.stop().await;
    let (ok, stderr) =
        tokio::task::spawn_blocking(move || healthcheck(&["--bind".to_owned(), addr.to_string()]))
            .await
            .unwrap();
    assert!(!ok);
    assert!(stderr.contains("health check of http://"), "{stderr}");

    // Alive but not ready: the answer says why.
    let (app, _) = app_without_database().await;
    let args = vec![
        "--bind".to_owned(),
        app.addr.to_string(),
        "--ready".to_owned(),
    ];
    let (ok, stderr) = tokio::task::spawn_blocking(move || healthcheck(&args))
        .await
        .unwrap();
    assert!(!ok);
    assert!(stderr.contains("503 Service Unavailable"), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    app.stop().await;
}

/// A stand-in OpenTelemetry collector on loopback that keeps every OTLP/HTTP trace export.
async fn collector() -> (String, crate::helpers::binary::Recorded) {
    crate::helpers::binary::recorder("/v1/traces", "").await
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The binary with JSON logs and OTLP export, one signed delivery with a trace id, then a
/// graceful stop (which flushes the exporter).
#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn each_request_has_a_span_with_its_trace_id_logged_and_exported(pool: PgPool) {
    let (collector_url, exports) = collector().await;
    let port = crate::helpers::binary::free_port();
    let dir = crate::helpers::binary::scratch_dir("otlp");
    let mut serve = terra_sink(&dir);
    serve
        .arg("serve")
        .env("DATABASE_URL", crate::helpers::binary::database_url(&pool))
        .env("TERRA_SIGNING_SECRET", SECRET)
        .env("TERRA_SINK_BIND", format!("127.0.0.1:{port}"))
        .env("TERRA_SINK_WORKERS", "0")
        .env("TERRA_SINK_LOG_FORMAT", "json")
        .env("TERRA_SINK_OTLP_ENDPOINT", &collector_url);
    let running = tokio::task::spawn_blocking(move || {
        let mut running = Running::start(&mut serve);
        running.wait_for("terra-sink listening");
        running
    })
    .await
    .unwrap();

    let body = br#"{"type":"healthcheck","status":"success"}"#;
    let res = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/terra"))
        .header(
            "terra-signature",
            crate::helpers::sign(body, crate::helpers::now()),
        )
        .header("x-terra-trace-id", "trace-otel-7f3a")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let logs = tokio::task::spawn_blocking(move || {
        let mut running = running;
        let line = running.wait_for("\"message\":\"delivery\"");
        (line, running.terminate())
    })
    .await
    .unwrap();
    let delivery: serde_json::Value = serde_json::from_str(&logs.0).unwrap();
    assert_eq!(delivery["span"]["name"], "request", "{delivery}");
    assert_eq!(
        delivery["span"]["trace_id"], "trace-otel-7f3a",
        "{delivery}"
    );
    assert_eq!(delivery["span"]["route"], "/webhooks/terra", "{delivery}");

    let exports = exports.lock().unwrap();
    assert!(!exports.is_empty(), "nothing exported; stderr: {}", logs.1);
    let (headers, _) = &exports[0];
    assert_eq!(headers["content-type"], "application/x-protobuf");
    // Protobuf keeps strings as they are: the span's name and its trace_id attribute.
    let exported = exports.iter().any(|(_, body)| {
        contains(body, "trace-otel-7f3a")
            && contains(body, "request")
            && contains(body, "terra-sink")
    });
    assert!(exported, "no exported span carries the trace id");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_pooled_connection_gives_back_the_buffer_of_a_large_message(pool: PgPool) {
    use crate::helpers::memory::live_bytes;
    const BODY: usize = 8 << 20;
    let ours = terra_sink::database::pool(&terra_sink::DbSettings {
        url: secrecy::SecretString::from(crate::helpers::binary::database_url(&pool)),
        max_connections: 1,
        ..terra_sink::DbSettings::default()
    })
    .unwrap();
    let mut conn = ours.acquire().await.unwrap();
    let body = vec![7u8; BODY];
    let len: i32 = sqlx::query_scalar("SELECT length($1)")
        .bind(&body)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(len as usize, BODY);
    drop(body);

    // The connection still holds the message it sent; returning it to the pool frees that.
    let holding = live_bytes();
    drop(conn);
    crate::helpers::eventually("the connection back in the pool", || async {
        ours.num_idle() == 1
    })
    .await;
    let freed = holding.saturating_sub(live_bytes());
    assert!(freed >= BODY, "{freed} bytes freed of {holding}");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_kept_ledger_connection_gives_back_the_buffer_of_a_large_group(pool: PgPool) {
    use crate::helpers::memory::live_bytes;
    const PAD: usize = 8 << 20;
    let mut config = crate::helpers::receive_only();
    // One writer, which keeps its connection between groups for the whole test, as steady
    // traffic would.
    config.group_commit.concurrency = 1;
    config.group_commit.keep_connections = std::time::Duration::from_secs(3600);
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let small = br#"{"type":"daily","user":{"user_id":"u1"},"data":[]}"#;
    assert_eq!(app.deliver(small, &[]).await.status(), 200);

    let before = live_bytes();
    let large = format!(
        r#"{{"type":"daily","user":{{"user_id":"u1"}},"data":[],"note":"{}"}}"#,
        "x".repeat(PAD)
    );
    let answer = app.deliver(large.as_bytes(), &[]).await;
    assert_eq!(answer.status(), 200);
    drop((answer, large));
    crate::helpers::eventually("the large group's buffers given back", || async {
        live_bytes() < before + PAD / 2
    })
    .await;
    assert_eq!(crate::helpers::ledger_count(&pool).await, 2);
    app.stop().await;
}
