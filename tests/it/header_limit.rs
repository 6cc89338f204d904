//! The request head (request line and headers) is capped: a client cannot make the service buffer
//! hundreds of KiB of headers per connection. Black-box, over real TCP.

use crate::helpers::{ledger_count, TestApp};
use sqlx::PgPool;

const BODY: &[u8] = br#"{"type":"healthcheck","status":"success"}"#;

/// Delivers the signed test body with one extra header of `padding` bytes.
async fn deliver_with_padding(app: &TestApp, padding: usize) -> reqwest::StatusCode {
    let padding = "a".repeat(padding);
    app.deliver(BODY, &[("x-padding", &padding)]).await.status()
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn a_128_kib_header_gets_431_and_normal_requests_still_work(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    assert_eq!(
        deliver_with_padding(&app, 128 * 1024).await,
        reqwest::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(ledger_count(&pool).await, 0, "nothing stored");
    // Many headers that add up to more than the cap are refused as well.
    let mut many = app.client.post(app.url("/webhooks/terra"));
    for i in 0..90 {
        many = many.header(format!("x-pad-{i}"), "b".repeat(1024));
    }
    let status = many.body(BODY).send().await.unwrap().status();
    assert_eq!(status, reqwest::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Below the cap (64 KiB in all by default) everything is as usual.
    assert_eq!(deliver_with_padding(&app, 60 * 1024).await, 200);
    assert_eq!(deliver_with_padding(&app, 0).await, 200);
    assert_eq!(
        ledger_count(&pool).await,
        1,
        "the same body twice is one delivery"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "terra_sink::database::MIGRATOR")]
async fn the_cap_is_configurable(pool: PgPool) {
    let mut config = crate::helpers::test_config();
    config.max_header_bytes = 16 * 1024;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    assert_eq!(
        deliver_with_padding(&app, 20 * 1024).await,
        reqwest::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(deliver_with_padding(&app, 12 * 1024).await, 200);
    app.stop().await;
}
