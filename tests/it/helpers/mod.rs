//! Shared set-up for the tests: the real service on a random port against a fresh database, and
//! the real binary (`binary`).

pub mod binary;
pub mod memory;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use sqlx::PgPool;
use terra_sink::{DbSettings, PingConfig, Processor, ServeConfig, Server, WorkerConfig};
use tokio::sync::oneshot;

/// The signing secret every test app is configured with.
pub const SECRET: &str = "whsec_test_only_not_real";

/// A running service.
pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// The configuration tests start from: the documented defaults, but a random loopback port,
/// the test secret, no migrations (the test database has them), quick polling, fewer
/// attempts and downloads from a local fake S3 allowed.
pub fn test_config() -> ServeConfig {
    ServeConfig {
        // Unused by `Server::bind`, which receives the pool directly.
        database: DbSettings {
            url: SecretString::from("postgres://unused".to_owned()),
            max_connections: 5,
            ..DbSettings::default()
        },
        signing_secrets: vec![SecretString::from(SECRET.to_owned())],
        bind: "127.0.0.1:0".parse().unwrap(),
        migrate_on_start: false,
        worker: WorkerConfig {
            poll_interval: Duration::from_millis(200),
            max_attempts: 3,
            ping: PingConfig {
                timeout: Duration::from_secs(2),
                max_bytes: 1024 * 1024,
                allow_http: true,
            },
            ..WorkerConfig::default()
        },
        ..ServeConfig::default()
    }
}

impl TestApp {
    /// Starts the service with the default test configuration.
    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with(pool, test_config()).await
    }

    /// Starts the service with `config`.
    pub async fn spawn_with(pool: PgPool, config: ServeConfig) -> Self {
        let server = Server::bind(&config, pool.clone()).await.expect("bind");
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            pool,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs `body` signed now with the test secret, plus extra headers.
    pub async fn deliver(&self, body: &[u8], headers: &[(&str, &str)]) -> reqwest::Response {
        let signature = sign(body, now());
        let mut req = self
            .client
            .post(self.url("/webhooks/terra"))
            .header("content-type", "application/json")
            .header("terra-signature", signature)
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request")
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs `body` at `t` with the test secret, as Terra does.
pub fn sign(body: &[u8], t: i64) -> String {
    terra_sink::sign(&SecretString::from(SECRET.to_owned()), t, body)
}

/// Number of rows in the ledger.
pub async fn ledger_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM terra.deliveries")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A processor over `pool` with the test configuration, for driving the queue step by step
/// (one delivery per batch).
pub fn processor(pool: &PgPool) -> Processor {
    let mut config = test_config().worker;
    config.max_attempts = 2;
    config.batch_max_deliveries = 1;
    Processor::new(
        pool.clone(),
        config,
        std::sync::Arc::new(terra_sink::Metrics::new()),
    )
}

/// Processes one batch and returns its single outcome (for a processor with batches of one).
pub async fn step(processor: &Processor) -> Option<(i64, terra_sink::Outcome)> {
    let report = processor.process_batch().await.unwrap()?;
    assert_eq!(report.outcomes.len(), 1, "a batch of one");
    report.outcomes.first().copied()
}

/// The test configuration with no workers: the app only receives, and the test drives the queue.
pub fn receive_only() -> ServeConfig {
    let mut config = test_config();
    config.worker.concurrency = 0;
    config
}

/// Polls `check` until it holds, for at most ten seconds: processing is asynchronous by design.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The webhook examples that carry health data, one per data family.
pub const DATA_EXAMPLES: [&str; 7] = [
    "activity",
    "sleep",
    "daily",
    "body",
    "nutrition",
    "menstruation",
    "athlete",
];

/// An official webhook example body from Terra's OpenAPI bundle (vendored in `schemas/`).
pub fn example(name: &str) -> String {
    let path = format!(
        "{}/schemas/terra/webhook-examples/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
