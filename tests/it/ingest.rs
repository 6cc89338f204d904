//! Black-box tests of the ingest path: the real service on a random port, speaking HTTP as Terra
//! does, against a fresh PostgreSQL database per test.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{ledger_count, now, sign, test_config, TestApp, SECRET};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DAILY: &[u8] = br#"{"type":"daily","user":{"user_id":"u-123","provider":"OURA","reference_id":"ref-1","scopes":"","active":true},"data":[],"version":"2022-03-16"}"#;

/// The ledger's one row, as the webhook left it.
struct LedgerRow {
    id: i64,
    body: Vec<u8>,
    event_type: Option<String>,
    user_id: Option<String>,
    trace_id: Option<String>,
    terra_reference: Option<String>,
    ordering_ts: Option<i64>,
    shape: String,
    signed_at: Option<chrono::DateTime<chrono::Utc>>,
    duplicates: i32,
    status: String,
    dedupe_key: String,
    body_size: i32,
}

async fn only_ledger_row(pool: &PgPool) -> LedgerRow {
    sqlx::query_as!(
        LedgerRow,
        r#"SELECT id, b.body, event_type, user_id, trace_id, terra_reference, ordering_ts, shape,
                  signed_at, duplicates, status, dedupe_key, body_size
           FROM terra.deliveries JOIN terra.delivery_bodies b ON b.delivery_id = id"#
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn valid_delivery_is_stored_once_with_its_headers(pool: PgPool) {
    // Receive only, so the row is seen exactly as the webhook left it (not yet processed).
    let mut config = test_config();
    config.worker.concurrency = 0;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let res = app
        .deliver(
            DAILY,
            &[
                ("x-terra-trace-id", "trace-1"),
                ("terra-reference", "ref-abc"),
                ("x-terra-ordering-timestamp", "1723808700123"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["status"], "stored");

    let row = only_ledger_row(&pool).await;
    assert_eq!(answer["delivery_id"], row.id);
    assert_eq!(row.body, DAILY);
    assert_eq!(row.body_size as usize, DAILY.len());
    assert_eq!(row.event_type.as_deref(), Some("daily"));
    assert_eq!(row.user_id.as_deref(), Some("u-123"));
    assert_eq!(row.trace_id.as_deref(), Some("trace-1"));
    assert_eq!(row.terra_reference.as_deref(), Some("ref-abc"));
    assert_eq!(row.ordering_ts, Some(1_723_808_700_123));
    assert_eq!(row.shape, "ok");
    assert_eq!(row.status, "pending");
    assert_eq!(row.duplicates, 0);
    assert_eq!(row.dedupe_key, "trace:trace-1");
    let signed_at = row.signed_at.unwrap().timestamp();
    assert!((now() - signed_at).abs() <= 5, "signed_at {signed_at}");
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_large_body_is_verified_digested_and_stored_like_a_small_one(pool: PgPool) {
    use sha2::{Digest, Sha256};
    let app = TestApp::spawn_with(pool.clone(), crate::helpers::receive_only()).await;
    // Past the size from which the service builds a body's ledger row on the blocking pool.
    let pad = "x".repeat(2 << 20);
    let body =
        format!(r#"{{"type":"daily","user":{{"user_id":"u-big"}},"data":[],"pad":"{pad}"}}"#);
    let body = body.as_bytes();

    let res = app.deliver(body, &[]).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["status"], "stored");
    let row = only_ledger_row(&pool).await;
    assert!(
        row.body == body,
        "the stored body differs from the one sent"
    );
    assert_eq!(row.event_type.as_deref(), Some("daily"));
    assert_eq!(row.user_id.as_deref(), Some("u-big"));
    assert_eq!(row.shape, "ok");
    let digest = hex::encode(Sha256::digest(body));
    assert_eq!(row.dedupe_key, format!("sha256:{digest}"));

    // Without a trace id the digest is the delivery's identity: the same body again is a
    // redelivery, and a wrong signature is refused as for any body.
    let again: Value = app.deliver(body, &[]).await.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    let forged = app
        .client
        .post(app.url("/webhooks/terra"))
        .header("terra-signature", sign(b"another body", now()))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let forged: Value = forged.json().await.unwrap();
    assert_eq!(forged["error"], "no_matching_signature");
    assert_eq!(ledger_count(&pool).await, 1);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn redelivery_adds_no_row_and_is_counted(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let trace = [("x-terra-trace-id", "trace-same")];
    let first: Value = app.deliver(DAILY, &trace).await.json().await.unwrap();
    // Terra re-signs each retry; the trace id is what identifies the delivery.
    let second = app.deliver(DAILY, &trace).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["status"], "duplicate");
    assert_eq!(second["delivery_id"], first["delivery_id"]);
    assert_eq!(ledger_count(&pool).await, 1);

    // Without a trace id, the same body is the same delivery; another body is another one.
    app.deliver(DAILY, &[]).await;
    let again: Value = app.deliver(DAILY, &[]).await.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    let other = br#"{"type":"daily","user":{"user_id":"u-9"},"data":[]}"#;
    app.deliver(other, &[]).await;
    assert_eq!(ledger_count(&pool).await, 3);

    // Counted just after the answer, and later when a worker holds the row.
    crate::helpers::eventually("the redelivery is counted", || async {
        let n: i32 = sqlx::query_scalar(
            "SELECT duplicates FROM terra.deliveries WHERE trace_id = 'trace-same'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        n == 1
    })
    .await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("terra_sink_duplicate_deliveries_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"terra_sink_deliveries_total{event_type="daily",outcome="stored"} 3"#),
        "{metrics}"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn every_rejection_answers_401_with_a_reason_and_stores_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = now();
    let good = sign(DAILY, t);
    let expected_sig = good.split("v1=").nth(1).unwrap().to_owned();
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing_header"),
        (Some(String::new()), "malformed_header"),
        (Some("v1=abc".into()), "malformed_header"),
        (Some(format!("t=abc,v1={expected_sig}")), "malformed_header"),
        (Some(format!("t={t}")), "malformed_header"),
        (Some(sign(DAILY, t - 3600)), "timestamp_out_of_tolerance"),
        (Some(sign(DAILY, t + 3600)), "timestamp_out_of_tolerance"),
        (
            Some(format!("t={t},v1={}", "ab".repeat(32))),
            "no_matching_signature",
        ),
        (Some(sign(b"another body", t)), "no_matching_signature"),
    ];
    for (header, reason) in cases {
        let mut req = app.client.post(app.url("/webhooks/terra")).body(DAILY);
        if let Some(h) = &header {
            req = req.header("terra-signature", h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "header {header:?}");
        let text = res.text().await.unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["error"], reason, "header {header:?}: {text}");
        assert!(
            !text.contains(SECRET) && !text.contains(&expected_sig),
            "{text}"
        );
    }
    assert_eq!(ledger_count(&pool).await, 0);

    // The other header name, in any case, is accepted.
    let res = app
        .client
        .post(app.url("/webhooks/terra"))
        .header("X-Terra-Signature", sign(DAILY, t))
        .body(DAILY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(ledger_count(&pool).await, 1);

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"terra_sink_signature_rejections_total{reason="malformed_header"} 4"#),
        "{metrics}"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn oversized_bodies_get_413_and_store_nothing(pool: PgPool) {
    let mut config = test_config();
    config.max_body_bytes = 1024;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let big = format!(r#"{{"type":"daily","pad":"{}"}}"#, "x".repeat(2000));

    // Declared by Content-Length: refused before the body is read.
    let res = app.deliver(big.as_bytes(), &[]).await;
    assert_eq!(res.status(), 413);

    // Streamed without Content-Length: refused once the limit is crossed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(300).map(|c| Ok(c.to_vec())).collect();
    let res = app
        .client
        .post(app.url("/webhooks/terra"))
        .header("terra-signature", sign(big.as_bytes(), now()))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    // Exactly at the limit is fine.
    let fits = format!(r#"{{"type":"daily","pad":"{}"}}"#, "x".repeat(1024 - 25));
    assert_eq!(fits.len(), 1024);
    assert_eq!(app.deliver(fits.as_bytes(), &[]).await.status(), 200);
    assert_eq!(ledger_count(&pool).await, 1);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn signed_bodies_that_are_not_valid_events_are_stored_and_acknowledged(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let cases: [(&[u8], &str); 4] = [
        (b"this is not json", "invalid_json"),
        (b"[1,2,3]", "unexpected_shape"),
        (
            br#"{"type":"brand_new_event","user":{"user_id":"u1"}}"#,
            "unknown_type",
        ),
        // jsonb would reject \u0000; the raw bytes are kept exactly.
        (
            br#"{"type":"sleep","note":"a\u0000b","user":{"user_id":"u1"}}"#,
            "ok",
        ),
    ];
    for (body, shape) in cases {
        let res = app.deliver(body, &[]).await;
        assert_eq!(res.status(), 200, "{shape}");
        let stored = sqlx::query!(
            "SELECT b.body, shape, shape_error FROM terra.deliveries
             JOIN terra.delivery_bodies b ON b.delivery_id = id WHERE body_sha256 = sha256($1)",
            body
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(stored.body, body);
        assert_eq!(stored.shape, shape);
        assert_eq!(stored.shape_error.is_some(), shape != "ok");
    }
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn other_paths_and_methods(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let get = app
        .client
        .get(app.url("/webhooks/terra"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let nowhere = app
        .client
        .post(app.url("/webhooks/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn readyz_fails_until_migrations_are_applied(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    terra_sink::database::migrate(&pool).await.unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

/// A database address that accepts connections and never answers: the worst case, a hang.
async fn black_hole() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn unreachable_database_answers_503_within_two_seconds() {
    let (hole, _task) = black_hole().await;
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // dropped: nothing listens there any more
    for addr in [hole, refused] {
        let config = test_config();
        let url = secrecy::SecretString::from(format!("postgres://postgres@{addr}/terra"));
        let pool = terra_sink::database::pool(&terra_sink::DbSettings {
            url,
            max_connections: 2,
            acquire_timeout: config.persist_timeout,
        })
        .unwrap();
        let app = TestApp::spawn_with(pool, config).await;

        let started = Instant::now();
        let res = app.deliver(DAILY, &[]).await;
        let elapsed = started.elapsed();
        assert_eq!(res.status(), 503, "{addr}");
        assert_eq!(res.headers()["retry-after"], "5");
        assert!(elapsed < Duration::from_secs(2), "{addr}: took {elapsed:?}");

        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503, "{addr}");
        app.stop().await;
    }
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_trickling_body_is_cut_off_by_the_read_timeout(pool: PgPool) {
    let mut config = test_config();
    config.body_read_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /webhooks/terra HTTP/1.1\r\nHost: x\r\nterra-signature: {}\r\nContent-Length: {}\r\n\r\n",
        sign(DAILY, now()),
        DAILY.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&DAILY[..10]).await.unwrap();
    // The rest never comes: the server must give up and answer on its own.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(ledger_count(&pool).await, 0);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn trickling_headers_are_cut_off_too(pool: PgPool) {
    let mut config = test_config();
    config.header_read_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/terra HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The rest of the headers never comes: the server must close the connection on its own
    // (the outer deadline only keeps a broken build from hanging the suite).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the server kept a trickling connection open"
    );
    assert_eq!(ledger_count(&pool).await, 0);
    // And shutting down is not held up by such a client.
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"POST /webhooks/terra HTTP/1.1\r\n")
        .await
        .unwrap();
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn bodies_in_flight_are_capped_and_the_excess_gets_503(pool: PgPool) {
    let mut config = test_config();
    config.max_body_bytes = 4096;
    config.max_inflight_body_bytes = 4096;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let padded = |n: usize| {
        let body = format!(r#"{{"type":"daily","pad":"{}"}}"#, "x".repeat(n - 25));
        assert_eq!(body.len(), n);
        body.into_bytes()
    };
    // A slow sender holds 3 KiB of the 4 KiB budget while its body arrives.
    let slow = padded(3000);
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /webhooks/terra HTTP/1.1\r\nHost: x\r\nConnection: close\r\nterra-signature: {}\r\nContent-Length: {}\r\n\r\n",
        sign(&slow, now()),
        slow.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&slow[..100]).await.unwrap();
    // Once the server has started reading it (it answers others meanwhile), a 2 KB delivery
    // does not fit: 503 with Retry-After, so Terra comes back later.
    let other = padded(2000);
    let mut busy = None;
    for _ in 0..100 {
        let res = app.deliver(&other, &[]).await;
        if res.status() == 503 {
            busy = Some(res);
            break;
        }
        // Accepted before the slow body was reserved: undo, so the retry is a new delivery.
        sqlx::query("DELETE FROM terra.deliveries")
            .execute(&pool)
            .await
            .unwrap();
    }
    let busy = busy.expect("the second delivery never hit the budget");
    assert_eq!(busy.headers()["retry-after"], "5");
    let answer: Value = busy.json().await.unwrap();
    assert_eq!(answer["error"], "rejected_busy");

    stream.write_all(&slow[100..]).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // The budget is returned with the body: the same delivery now fits.
    assert_eq!(app.deliver(&other, &[]).await.status(), 200);
    assert_eq!(ledger_count(&pool).await, 2);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn shutdown_lets_in_flight_deliveries_finish(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /webhooks/terra HTTP/1.1\r\nHost: x\r\nConnection: close\r\nterra-signature: {}\r\nContent-Length: {}\r\n\r\n",
        sign(DAILY, now()),
        DAILY.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&DAILY[..10]).await.unwrap();
    // Make sure the server has accepted the request before it is told to stop.
    let probe = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(probe.status(), 200);

    let pool_for_check = app.pool.clone();
    let stopping = tokio::spawn(app.stop());
    stream.write_all(&DAILY[10..]).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stopping.await.unwrap();
    assert_eq!(ledger_count(&pool_for_check).await, 1);
}

#[test]
fn start_up_without_configuration_fails_with_one_clear_line() {
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_terra-sink"))
            .args(args)
            .env_clear()
            .envs(envs.iter().copied())
            // An empty directory: no .env file is picked up.
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&["serve"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("the database URL is not set: set DATABASE_URL"),
        "{stderr}"
    );

    let (ok, stderr) = run(
        &["serve"],
        &[("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x")],
    );
    assert!(!ok);
    assert!(stderr.contains("set TERRA_SIGNING_SECRET"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let (ok, stderr) = run(
        &["serve"],
        &[
            ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x"),
            ("TERRA_SIGNING_SECRET", "whsec_x_0123456789abcdef"),
            ("TERRA_SINK_SIGNATURE_TOLERANCE_SECS", "soon"),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("TERRA_SINK_SIGNATURE_TOLERANCE_SECS")
            || stderr.contains("--signature-tolerance-secs"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("whsec_x"),
        "{stderr}"
    );

    // Everything set, but the database is unreachable: one error line, no secret in it.
    let (ok, stderr) = run(
        &["serve"],
        &[
            ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x"),
            ("TERRA_SIGNING_SECRET", "whsec_x_0123456789abcdef"),
            ("TERRA_SINK_LOG_FORMAT", "json"),
            ("RUST_LOG", "trace"),
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("whsec_x"),
        "{stderr}"
    );
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn metrics_can_have_their_own_port_and_healthcheck_command_works(pool: PgPool) {
    let mut config = test_config();
    config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    let server = terra_sink::Server::bind(&config, pool).await.unwrap();
    let main = server.local_addr().unwrap();
    let metrics = server.metrics_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let on_main = client
        .get(format!("http://{main}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(on_main.status(), 404);
    let on_own = client
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(on_own.status(), 200);
    assert!(on_own
        .text()
        .await
        .unwrap()
        .contains("# TYPE terra_sink_deliveries counter"));

    let healthcheck = |url: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_terra-sink"))
            .args(["healthcheck", "--url", &url])
            .output()
            .await
            .unwrap()
            .status
            .success()
    };
    assert!(healthcheck(format!("http://{main}/healthz")).await);
    assert!(!healthcheck(format!("http://{main}/nope")).await);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert!(!healthcheck(format!("http://{main}/healthz")).await);
}
