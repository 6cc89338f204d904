//! Bounded load generator: signs each delivery as Terra does and POSTs it to a running terra-sink.
//!
//! ```text
//! cargo run --release --example load -- --url http://127.0.0.1:8080/webhooks/terra \
//!     --secret "$TERRA_SIGNING_SECRET" --size typical --count 20000 --concurrency 32
//! cargo run --release --example load -- ... --size typical --count 10000 --rate 1000
//! cargo run --release --example load -- ... --size large --count 20 --concurrency 1
//! cargo run --release --example load -- ... --size medium --count 200 --concurrency 200
//! ```
//! Reports acknowledged deliveries per second and p50/p99/max latency. Only loopback URLs are
//! accepted, and every run stops after `--count` requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

struct Args {
    url: String,
    secret: SecretString,
    size: String,
    count: u64,
    concurrency: u64,
    rate: Option<f64>,
}

fn parse_args() -> Result<Args, String> {
    let mut url = "http://127.0.0.1:8080/webhooks/terra".to_owned();
    let mut secret = std::env::var("TERRA_SIGNING_SECRET").ok();
    let mut size = "typical".to_owned();
    let (mut count, mut concurrency, mut rate) = (10_000u64, 32u64, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = value()?,
            "--secret" => secret = Some(value()?),
            "--size" => size = value()?,
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--concurrency" => {
                concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--rate" => rate = Some(value()?.parse().map_err(|e| format!("--rate: {e}"))?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    if !matches!(host, "127.0.0.1" | "localhost" | "[") {
        return Err("only http://127.0.0.1 or http://localhost targets are allowed".into());
    }
    if !["typical", "medium", "large"].contains(&size.as_str()) {
        return Err("--size is typical, medium (~5 MB) or large (~10 MB)".into());
    }
    let secret = SecretString::from(secret.ok_or("set --secret or TERRA_SIGNING_SECRET")?);
    Ok(Args {
        url,
        secret,
        size,
        count: count.min(1_000_000),
        concurrency: concurrency.clamp(1, 512),
        rate,
    })
}

/// A daily payload of about 5 KB: a day's summary with some samples.
fn typical_body(n: u64) -> String {
    let samples: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2026-11-01T{:02}:{:02}:00.000000+00:00","bpm":{},"timer_duration_seconds":null}}"#,
                i / 2,
                (i % 2) * 30,
                60 + i
            )
        })
        .collect();
    format!(
        r#"{{"type":"daily","version":"2022-03-16","user":{{"user_id":"load-user-{}","provider":"GARMIN","reference_id":"ref","scopes":"","active":true,"last_webhook_update":null}},"data":[{{"metadata":{{"start_time":"2026-11-01T00:00:00.000000+00:00","end_time":"2026-11-02T00:00:00.000000+00:00","upload_type":1,"timestamp_localization":0}},"distance_data":{{"steps":{},"distance_meters":8123.4,"floors_climbed":7}},"calories_data":{{"total_burned_calories":2431.5,"net_activity_calories":512.0,"BMR_calories":1919.5}},"heart_rate_data":{{"summary":{{"avg_hr_bpm":71.2,"resting_hr_bpm":55,"max_hr_bpm":151,"min_hr_bpm":48}},"detailed":{{"hr_samples":[{}],"hrv_samples_rmssd":[],"hrv_samples_sdnn":[]}}}}}}]}}"#,
        n % 100,
        n,
        samples.join(",")
    )
}

/// An activity of about `mib` MiB: hours of 1 Hz heart-rate samples.
fn activity_body(n: u64, mib: usize) -> String {
    let mut samples = String::with_capacity(mib * 1024 * 1024);
    let mut i = 0u64;
    while samples.len() < mib * 1024 * 1024 {
        if i > 0 {
            samples.push(',');
        }
        samples.push_str(&format!(
            r#"{{"timestamp":"2026-11-01T{:02}:{:02}:{:02}.000000+00:00","bpm":{}.0,"timer_duration_seconds":{}}}"#,
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60,
            100 + i % 80,
            i
        ));
        i += 1;
    }
    format!(
        r#"{{"type":"activity","version":"2022-03-16","user":{{"user_id":"load-user","provider":"GARMIN"}},"data":[{{"metadata":{{"summary_id":"load-{n}","start_time":"2026-11-01T00:00:00.000000+00:00","end_time":"2026-11-01T23:00:00.000000+00:00","type":1,"upload_type":1}},"heart_rate_data":{{"detailed":{{"hr_samples":[{samples}]}}}}}}]}}"#
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => Arc::new(args),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    // Bodies are built before the clock starts, so generation is not measured.
    let bodies: Arc<Vec<String>> = Arc::new(match args.size.as_str() {
        "large" => (0..args.count.min(4))
            .map(|n| activity_body(n, 10))
            .collect(),
        "medium" => (0..args.count.min(4))
            .map(|n| activity_body(n, 5))
            .collect(),
        _ => (0..args.count.min(1000)).map(typical_body).collect(),
    });
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let run_id = now();
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (args, client, bodies, next, failures) = (
                args.clone(),
                client.clone(),
                bodies.clone(),
                next.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= args.count {
                        break;
                    }
                    if let Some(rate) = args.rate {
                        // Open-loop pacing: request n is due at n / rate seconds.
                        let due = started + Duration::from_secs_f64(n as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let body = bodies[(n as usize) % bodies.len()].as_bytes().to_vec();
                    let signature = terra_sink::sign(&args.secret, now(), &body);
                    let sent = Instant::now();
                    let res = client
                        .post(&args.url)
                        .header("content-type", "application/json")
                        .header("terra-signature", signature)
                        .header("x-terra-trace-id", format!("load-{run_id}-{n}"))
                        .body(body)
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => latencies.push(sent.elapsed()),
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let bytes = bodies.iter().map(String::len).sum::<usize>() / bodies.len().max(1);
    println!(
        "size={} body_bytes~{} requests={} acknowledged={} failed={} elapsed={:.2}s ack_per_sec={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        args.size,
        bytes,
        args.count,
        latencies.len(),
        failures.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
}
