//! Bounded load generator: signs each delivery as Terra does and POSTs it to a running terra-sink.
//!
//! ```text
//! cargo run --release --example load -- --url http://127.0.0.1:8080/webhooks/terra \
//!     --secret "$TERRA_SIGNING_SECRET" --size typical --count 20000 --concurrency 32
//! cargo run --release --example load -- ... --size typical --count 10000 --rate 1000
//! cargo run --release --example load -- ... --size large --count 20 --concurrency 1
//! cargo run --release --example load -- ... --size medium --count 200 --concurrency 200
//! cargo run --release --example load -- ... --bodies typical.tsv --count 10000 --rate 1000
//! ```
//! Reports acknowledged deliveries per second and p50/p99/max latency. Only loopback URLs are
//! accepted, and every run stops after `--count` requests. Every request carries its own
//! `x-terra-trace-id` (unique across runs), so each one is a new delivery.
//!
//! `--bodies FILE` sends the bodies of a file written by `examples/bench_bodies.rs` (one
//! `<signature>\t<ordering timestamp>\t<body>` per line) in turn, with their ordering timestamps;
//! each request is signed afresh when it is sent, so the file's signatures may be stale.
//!
//! With `--rate` (open loop) request n is due n / rate seconds after the start and its latency is
//! counted from when it was due, not from when it was sent: a server that stalls the sender then
//! shows in the figures instead of hiding behind fewer requests (coordinated omission). Give
//! enough `--concurrency` for the rate; `behind_max` says how late the latest request started.
//!
//! `--timeline FILE` writes, for each second of the run (by when requests were due), how many
//! were acknowledged and their p99 and max latency: a stall shows as the seconds it happened in.
//! Second 0 starts at the summary's `started_at` (Unix time), so other events can be placed in it.
//!
//! `--database-url URL` (loopback only) watches the server's ledger: how many deliveries still
//! waited for their typed rows when the load ended, the oldest waiting delivery's age sampled
//! every 50 ms until the ledger drained (at most `--drain-timeout` seconds, default 600), and
//! this run's `processed_at - received_at` (p50, p99, max).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};

struct Args {
    url: String,
    secret: SecretString,
    size: String,
    bodies: Option<PathBuf>,
    count: u64,
    concurrency: u64,
    rate: Option<f64>,
    /// The ledger of the server under load, to report how long deliveries wait to be typed.
    database_url: Option<SecretString>,
    drain_timeout: Duration,
    /// Where to write each second's acknowledgements, p99 and max, by due time.
    timeline: Option<PathBuf>,
}

/// One body to send and the `x-terra-ordering-timestamp` that goes with it.
struct Body {
    ordering_ts: Option<i64>,
    bytes: Vec<u8>,
}

/// Whether the host of `scheme://[user[:password]@]host[:port][/...]` is a loopback address.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

/// Only loopback targets: `http://127.0.0.1`, `http://localhost` or `http://[::1]`, any port.
fn is_loopback_url(url: &str) -> bool {
    url.strip_prefix("http://")
        .is_some_and(|rest| !rest.contains('@') && is_loopback_authority(rest))
}

/// Only a PostgreSQL server on this machine (the URL may carry a user and password).
fn is_loopback_database_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"));
    rest.is_some_and(|rest| !rest.contains("host=") && is_loopback_authority(rest))
}

fn parse_args() -> Result<Args, String> {
    let mut url = "http://127.0.0.1:8080/webhooks/terra".to_owned();
    let mut secret = std::env::var("TERRA_SIGNING_SECRET").ok();
    let mut size = "typical".to_owned();
    let (mut bodies, mut database_url) = (None, None);
    let (mut count, mut concurrency, mut rate) = (10_000u64, 32u64, None);
    let mut drain_timeout = 600u64;
    let mut timeline = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = value()?,
            "--secret" => secret = Some(value()?),
            "--size" => size = value()?,
            "--bodies" => bodies = Some(PathBuf::from(value()?)),
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--concurrency" => {
                concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--rate" => rate = Some(value()?.parse().map_err(|e| format!("--rate: {e}"))?),
            "--database-url" => database_url = Some(value()?),
            "--timeline" => timeline = Some(PathBuf::from(value()?)),
            "--drain-timeout" => {
                drain_timeout = value()?
                    .parse()
                    .map_err(|e| format!("--drain-timeout: {e}"))?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !is_loopback_url(&url) {
        return Err(
            "only http://127.0.0.1, http://localhost or http://[::1] targets are allowed".into(),
        );
    }
    if database_url
        .as_deref()
        .is_some_and(|u| !is_loopback_database_url(u))
    {
        return Err(
            "--database-url must name a PostgreSQL server on 127.0.0.1 or localhost".into(),
        );
    }
    if rate.is_some_and(|r: f64| !(r.is_finite() && r > 0.0)) {
        return Err("--rate must be a positive number of requests per second".into());
    }
    if !["typical", "medium", "large"].contains(&size.as_str()) {
        return Err("--size is typical, medium or large".into());
    }
    let secret = SecretString::from(secret.ok_or("set --secret or TERRA_SIGNING_SECRET")?);
    Ok(Args {
        url,
        secret,
        size,
        bodies,
        count: count.min(1_000_000),
        concurrency: concurrency.clamp(1, 512),
        rate,
        database_url: database_url.map(SecretString::from),
        drain_timeout: Duration::from_secs(drain_timeout.min(3600)),
        timeline,
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

/// An activity of about 10 MiB.
fn large_body(n: u64) -> String {
    activity_body(n, 10)
}

/// An activity of about 5 MiB.
fn medium_body(n: u64) -> String {
    activity_body(n, 5)
}

/// The first `limit` bodies of a `bench_bodies` file.
fn read_bodies(path: &Path, limit: u64) -> Result<Vec<Body>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bodies = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        if bodies.len() as u64 >= limit {
            break;
        }
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let mut fields = line.splitn(3, '\t');
        let (Some(_signature), Some(ordering), Some(body)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "{}:{}: expected 3 tab-separated fields",
                path.display(),
                n + 1
            ));
        };
        bodies.push(Body {
            ordering_ts: ordering.parse().ok(),
            bytes: body.as_bytes().to_vec(),
        });
    }
    if bodies.is_empty() {
        return Err(format!("{}: no bodies", path.display()));
    }
    Ok(bodies)
}

/// The bodies this run sends, built or read before the clock starts.
fn bodies(args: &Args) -> Result<Vec<Body>, String> {
    let built = |f: fn(u64) -> String, n: u64| {
        (0..n)
            .map(|i| Body {
                ordering_ts: None,
                bytes: f(i).into_bytes(),
            })
            .collect()
    };
    match (&args.bodies, args.size.as_str()) {
        (Some(path), _) => read_bodies(path, args.count),
        (None, "large") => Ok(built(large_body, args.count.min(4))),
        (None, "medium") => Ok(built(medium_body, args.count.min(4))),
        (None, _) => Ok(built(typical_body, args.count.min(1000))),
    }
}

/// A prefix no other run shares: the start time in nanoseconds and the process id.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What one sender task saw.
#[derive(Default)]
struct Report {
    /// Each acknowledged request's due time since the start of the run, and its latency.
    acknowledged: Vec<(Duration, Duration)>,
    failures: u64,
    /// How much later than due the latest open-loop request was sent.
    behind_max: Duration,
}

/// The shared state of one run.
struct Run {
    args: Args,
    client: reqwest::Client,
    bodies: Vec<Body>,
    next: AtomicU64,
    id: String,
    started: Instant,
    /// `started` as Unix time in seconds.
    started_at: f64,
}

/// Sends requests until `--count` of them have been claimed by the run's tasks; in an open loop,
/// each takes the next request the pacer has made due.
async fn sender(run: Arc<Run>, paced: Option<Arc<Paced>>) -> Report {
    let mut report = Report::default();
    loop {
        let (n, due) = match &paced {
            Some(paced) => {
                let Some((n, due)) = paced.lock().await.recv().await else {
                    return report;
                };
                report.behind_max = report.behind_max.max(due.elapsed());
                (n, due)
            }
            None => {
                let n = run.next.fetch_add(1, Ordering::Relaxed);
                if n >= run.args.count {
                    return report;
                }
                (n, Instant::now())
            }
        };
        let body = &run.bodies[(n as usize) % run.bodies.len()];
        let signature = terra_sink::sign(&run.args.secret, now(), &body.bytes);
        let mut request = run
            .client
            .post(&run.args.url)
            .header("content-type", "application/json")
            .header("terra-signature", signature)
            .header("x-terra-trace-id", format!("load-{}-{n}", run.id));
        if let Some(ts) = body.ordering_ts {
            request = request.header("x-terra-ordering-timestamp", ts.to_string());
        }
        match request.body(body.bytes.clone()).send().await {
            Ok(r) if r.status().is_success() => {
                report.acknowledged.push((due - run.started, due.elapsed()));
            }
            _ => report.failures += 1,
        }
    }
}

/// Open-loop requests made due by the pacer: (request number, when it was due).
type Paced = tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>>;

/// Makes request n due at n / rate seconds, on a thread of its own that sleeps until each due
/// time. The runtime's timer would round every due time up to its next millisecond tick and
/// wake late on top of that: the load generator's own delay, not the server's, counted in every
/// latency (0.7 ms at the median, 1.5 ms at the 99th percentile, at 1,000/s).
fn pace(run: &Arc<Run>, rate: f64) -> Arc<Paced> {
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel();
    let (started, count) = (run.started, run.args.count);
    std::thread::spawn(move || {
        for n in 0..count {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if due_tx.send((n, due)).is_err() {
                return;
            }
        }
    });
    Arc::new(tokio::sync::Mutex::new(due_rx))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p` quantile of sorted latencies, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().map_or(0.0, ms)
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(2);
}

/// How long deliveries waited for their typed rows, read from the ledger of the server under
/// load (`--database-url`).
struct LedgerReport {
    /// Deliveries waiting (pending, or failed and due) when the last response arrived.
    waiting_at_end: i64,
    /// The oldest waiting delivery's age, sampled every 50 ms from the start until the ledger
    /// drained: an upper bound on the lag that does not depend on how `processed_at` is stamped.
    oldest_wait_max: Duration,
    /// Seconds from the end of the load until nothing waited (None: not within the timeout).
    drained_after: Option<Duration>,
    /// This run's deliveries with a `processed_at`, and their `processed_at - received_at`.
    typed: i64,
    lag_p50: f64,
    lag_p99: f64,
    lag_max: f64,
}

/// The age of the oldest delivery still waiting to be processed, if any; the query walks the
/// workers' own queue index, so sampling it often costs the server little.
async fn oldest_waiting(pool: &sqlx::PgPool) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT extract(epoch FROM clock_timestamp() - received_at)::float8
         FROM terra.deliveries
         WHERE status IN ('pending', 'failed') AND next_attempt_at <= clock_timestamp()
         ORDER BY next_attempt_at, id LIMIT 1",
    )
    .fetch_optional(pool)
    .await
}

async fn waiting_count(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM terra.deliveries
         WHERE status = 'pending' OR (status = 'failed' AND next_attempt_at <= clock_timestamp())",
    )
    .fetch_one(pool)
    .await
}

/// Samples the oldest waiting delivery every 50 ms until `load_done` is set and nothing waits,
/// or `timeout` after the load ended. Returns the worst age seen and when the ledger drained.
async fn sample_waiting(
    pool: sqlx::PgPool,
    load_done: Arc<tokio::sync::Notify>,
    timeout: Duration,
) -> Result<(Duration, Option<Duration>), sqlx::Error> {
    let mut worst = 0f64;
    let mut ended: Option<Instant> = None;
    let done = load_done.notified();
    tokio::pin!(done);
    loop {
        let oldest = oldest_waiting(&pool).await?;
        worst = worst.max(oldest.unwrap_or(0.0));
        if let Some(end) = ended {
            if oldest.is_none() {
                return Ok((Duration::from_secs_f64(worst), Some(end.elapsed())));
            }
            if end.elapsed() >= timeout {
                return Ok((Duration::from_secs_f64(worst), None));
            }
        }
        tokio::select! {
            () = &mut done, if ended.is_none() => ended = Some(Instant::now()),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// `processed_at - received_at` of this run's deliveries (count, p50, p99, max in ms).
async fn run_lag(pool: &sqlx::PgPool, run_id: &str) -> Result<(i64, f64, f64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*),
                coalesce(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), 0)::float8,
                coalesce(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), 0)::float8,
                coalesce(1000 * max(lag), 0)::float8
         FROM (SELECT extract(epoch FROM processed_at - received_at) AS lag
               FROM terra.deliveries
               WHERE dedupe_key LIKE $1 AND processed_at IS NOT NULL) d",
    )
    .bind(format!("trace:load-{run_id}-%"))
    .fetch_one(pool)
    .await
}

impl LedgerReport {
    fn line(&self) -> String {
        format!(
            " waiting_at_end={} oldest_wait_max={:.1}ms drained_after={} typed={} lag_p50={:.1}ms lag_p99={:.1}ms lag_max={:.1}ms",
            self.waiting_at_end,
            ms(self.oldest_wait_max),
            self.drained_after
                .map_or("timeout".to_owned(), |d| format!("{:.2}s", d.as_secs_f64())),
            self.typed,
            self.lag_p50,
            self.lag_p99,
            self.lag_max,
        )
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| fail(e));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| fail(format!("HTTP client: {e}")));
    let ledger = match &args.database_url {
        Some(url) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(url.expose_secret())
                .await
                .unwrap_or_else(|e| fail(format!("ledger database: {e}"))),
        ),
        None => None,
    };
    // Bodies are built before the clock starts, so generation is not measured.
    let bodies = bodies(&args).unwrap_or_else(|e| fail(e));
    let run = Arc::new(Run {
        args,
        client,
        bodies,
        next: AtomicU64::new(0),
        id: run_id(),
        started: Instant::now(),
        started_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    });
    let load_done = Arc::new(tokio::sync::Notify::new());
    let sampler = ledger.clone().map(|pool| {
        tokio::spawn(sample_waiting(
            pool,
            load_done.clone(),
            run.args.drain_timeout,
        ))
    });
    let total = run_load(&run).await;
    let elapsed = run.started.elapsed();
    let ledger_line = match (ledger, sampler) {
        (Some(pool), Some(sampler)) => {
            let report = ledger_report(&pool, &run.id, load_done, sampler).await;
            report
                .unwrap_or_else(|e| fail(format!("ledger: {e}")))
                .line()
        }
        _ => String::new(),
    };
    if let Some(path) = &run.args.timeline {
        if let Err(e) = std::fs::write(path, timeline_tsv(&total.acknowledged)) {
            fail(format!("--timeline {}: {e}", path.display()));
        }
    }
    print_summary(&run, total, elapsed, &ledger_line);
}

/// Runs every sender task to the end and merges what they saw.
async fn run_load(run: &Arc<Run>) -> Report {
    let paced = run.args.rate.map(|rate| pace(run, rate));
    let tasks: Vec<_> = (0..run.args.concurrency)
        .map(|_| tokio::spawn(sender(run.clone(), paced.clone())))
        .collect();
    let mut total = Report::default();
    for task in tasks {
        let report = task.await.unwrap_or_default();
        total.acknowledged.extend(report.acknowledged);
        total.failures += report.failures;
        total.behind_max = total.behind_max.max(report.behind_max);
    }
    total
}

/// Once the load has ended: what was still waiting, then (after the drain) the lag figures.
async fn ledger_report(
    pool: &sqlx::PgPool,
    run_id: &str,
    load_done: Arc<tokio::sync::Notify>,
    sampler: tokio::task::JoinHandle<Result<(Duration, Option<Duration>), sqlx::Error>>,
) -> Result<LedgerReport, sqlx::Error> {
    let waiting_at_end = waiting_count(pool).await?;
    load_done.notify_one();
    let (oldest_wait_max, drained_after) = match sampler.await {
        Ok(result) => result?,
        Err(e) => fail(format!("ledger sampler: {e}")),
    };
    let (typed, lag_p50, lag_p99, lag_max) = run_lag(pool, run_id).await?;
    Ok(LedgerReport {
        waiting_at_end,
        oldest_wait_max,
        drained_after,
        typed,
        lag_p50,
        lag_p99,
        lag_max,
    })
}

/// One line per second of due time: `second acknowledged p99_ms max_ms`, tab-separated.
fn timeline_tsv(acknowledged: &[(Duration, Duration)]) -> String {
    let mut seconds: Vec<Vec<Duration>> = Vec::new();
    for &(due, latency) in acknowledged {
        let second = due.as_secs() as usize;
        if seconds.len() <= second {
            seconds.resize(second + 1, Vec::new());
        }
        seconds[second].push(latency);
    }
    let mut out = String::from("second\tacknowledged\tp99_ms\tmax_ms\n");
    for (second, latencies) in seconds.iter_mut().enumerate() {
        latencies.sort();
        let max = latencies.last().copied().map_or(0.0, ms);
        let p99 = percentile(latencies, 0.99);
        out += &format!("{second}\t{}\t{p99:.2}\t{max:.2}\n", latencies.len());
    }
    out
}

fn print_summary(run: &Run, total: Report, elapsed: Duration, ledger_line: &str) {
    let mut latencies: Vec<Duration> = total.acknowledged.iter().map(|&(_, l)| l).collect();
    latencies.sort();
    let bytes = run.bodies.iter().map(|b| b.bytes.len()).sum::<usize>() / run.bodies.len().max(1);
    let source = match &run.args.bodies {
        Some(path) => format!("bodies={}", path.display()),
        None => format!("size={}", run.args.size),
    };
    println!(
        "{source} body_bytes~{bytes} run_id={} started_at={:.3} requests={} acknowledged={} failed={} elapsed={:.2}s ack_per_sec={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms behind_max={:.2}ms{ledger_line}",
        run.id,
        run.started_at,
        run.args.count,
        latencies.len(),
        total.failures,
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().map_or(0.0, ms),
        ms(total.behind_max),
    );
}
