//! `terra-sink send`: every built-in sample is valid against Terra's schemas, is accepted by the
//! running service and stored; a wrong secret is rejected. Also through the real binary.

use std::process::Command;

use crate::helpers::{TestApp, SECRET};
use crate::model_support::schema::Schemas;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;
use terra_sink::send::{self, Outgoing, SAMPLES};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// A small JSON Schema check (type, const, enum, properties, required, items, $ref, allOf,
/// anyOf/oneOf): enough for Terra's schemas, which use nothing else that constrains shape.
fn check(s: &Schemas, file: &str, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let (f, target) = s.resolve(file, r);
        check(s, f, target, v, at, errors);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = |t: &str| match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => true,
        };
        if !types.iter().any(|t| fits(t)) {
            errors.push(format!("{at}: {v} is not {types:?}"));
            return;
        }
    }
    if let Some(c) = schema.get("const") {
        let same = c == v || (c.as_f64().is_some() && c.as_f64() == v.as_f64());
        if !same {
            errors.push(format!("{at}: {v} is not {c}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            errors.push(format!("{at}: {v} not in enum"));
        }
    }
    for all in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check(s, file, all, v, at, errors);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let fits_one = alts.iter().any(|alt| {
                let mut e = Vec::new();
                check(s, file, alt, v, at, &mut e);
                e.is_empty()
            });
            if !fits_one {
                errors.push(format!("{at}: {v} matches no {key} alternative"));
            }
        }
    }
    if let Some(obj) = v.as_object() {
        for req in s.required(schema) {
            if !obj.contains_key(&req) {
                errors.push(format!("{at}: missing required {req}"));
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, sub) in props {
                if let Some(child) = obj.get(k) {
                    check(s, file, sub, child, &format!("{at}.{k}"), errors);
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            check(s, file, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

#[test]
fn every_sample_with_a_published_schema_is_valid_against_it() {
    let schemas = Schemas::load();
    let union = &schemas.files["WebhookEventType.yaml"];
    let mut checked = 0;
    for (name, body) in SAMPLES {
        let value: Value = serde_json::from_str(body).unwrap();
        // The event schema whose `type` const is this sample's type.
        let target = union["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|alt| alt["$ref"].as_str())
            .find(|file| schemas.files[*file]["properties"]["type"]["const"] == **name);
        let Some(file) = target else {
            // healthcheck, processing, rate_limit_hit, google_no_datasource: no schema is
            // published; the model decodes them (unit test in src/send.rs).
            continue;
        };
        let mut errors = Vec::new();
        check(
            &schemas,
            file,
            &schemas.files[file],
            &value,
            name,
            &mut errors,
        );
        assert!(errors.is_empty(), "{name} vs {file}: {errors:#?}");
        checked += 1;
    }
    assert_eq!(checked, 22, "every published webhook schema has a sample");
}

async fn deliver(app: &TestApp, body: &str, key: &str, trace: Option<&str>) -> send::Reply {
    send::send(&Outgoing {
        url: &app.url("/webhooks/terra"),
        secret: &secret(key),
        body: body.as_bytes(),
        trace_id: trace,
        ordering_timestamp: None,
        terra_reference: None,
        timestamp: crate::helpers::now(),
    })
    .await
    .unwrap()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn every_built_in_sample_is_accepted_and_stored(pool: PgPool) {
    // Receive only: processing is driven below, so the s3_payload sample's download (to a
    // public URL) is never attempted.
    let mut config = crate::helpers::test_config();
    config.worker.concurrency = 0;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    for (name, body) in SAMPLES {
        let reply = deliver(&app, body, SECRET, None).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        assert!(reply.body.contains("\"stored\""), "{name}: {}", reply.body);
    }
    app.stop().await;

    let rows: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT event_type, shape FROM terra.deliveries ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected: Vec<(Option<String>, String)> = SAMPLES
        .iter()
        .map(|(name, _)| (Some((*name).to_owned()), "ok".to_owned()))
        .collect();
    assert_eq!(rows, expected);

    // Every sample decodes and is applied without being parked.
    sqlx::query("UPDATE terra.deliveries SET status = 'done' WHERE event_type = 's3_payload'")
        .execute(&pool)
        .await
        .unwrap();
    crate::helpers::processor(&pool).drain().await.unwrap();
    let not_done: Vec<(Option<String>, String, Option<String>)> = sqlx::query_as(
        "SELECT event_type, status, last_error FROM terra.deliveries WHERE status <> 'done'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(not_done.is_empty(), "{not_done:#?}");
    let daily: i64 = sqlx::query_scalar("SELECT count(*) FROM terra.daily")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(daily, 1, "the daily sample became a typed row");
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_wrong_secret_is_rejected_and_nothing_is_stored(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let body = send::sample("daily").unwrap();
    let reply = deliver(&app, body, "whsec_wrong", None).await;
    assert_eq!(reply.status, 401);
    assert!(!reply.accepted());
    assert!(
        reply.body.contains("no_matching_signature"),
        "{}",
        reply.body
    );
    assert_eq!(crate::helpers::ledger_count(&pool).await, 0);
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_trace_id_makes_a_redelivery_a_duplicate(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let body = send::sample("sleep").unwrap();
    let first = deliver(&app, body, SECRET, Some("trace-1")).await;
    let again = deliver(&app, body, SECRET, Some("trace-1")).await;
    assert!(first.body.contains("\"stored\""), "{}", first.body);
    assert!(again.body.contains("\"duplicate\""), "{}", again.body);
    assert_eq!(crate::helpers::ledger_count(&pool).await, 1);
    app.stop().await;
}

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_terra-sink"));
    // No .env of the developer's may leak into the test.
    cmd.current_dir(env!("CARGO_TARGET_TMPDIR"))
        .env_remove("TERRA_SIGNING_SECRET")
        .env("RUST_LOG", "error");
    cmd
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_command_sends_a_sample_and_prints_the_answer(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let url = app.url("/webhooks/terra");
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            binary()
                .args(["send", "--sample", "daily", "--url", &url])
                .env("TERRA_SIGNING_SECRET", format!("{SECRET},whsec_next"))
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("HTTP 200 OK"), "{stdout}");
    assert!(stdout.contains("\"stored\""), "{stdout}");

    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("send-test-body.json");
    std::fs::write(&file, br#"{"type":"healthcheck","status":"success"}"#).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        binary()
            .args(["send", "--url", &url, "--secret", "whsec_wrong", "--file"])
            .arg(&file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a rejection exits non-zero");
    assert!(stdout.starts_with("HTTP 401"), "{stdout}");
    assert!(!stderr.contains("whsec_wrong") && !stdout.contains("whsec_wrong"));
    assert_eq!(crate::helpers::ledger_count(&pool).await, 1);
    app.stop().await;
}

#[test]
fn the_command_lists_its_samples_and_rejects_unknown_ones() {
    let out = binary().args(["send", "--list-samples"]).output().unwrap();
    assert!(out.status.success());
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(listed.len(), SAMPLES.len());
    assert!(listed.iter().any(|l| l == "daily"));
    let out = binary()
        .args(["send", "--sample", "nope", "--secret", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("one of: access_revoked"));
}
