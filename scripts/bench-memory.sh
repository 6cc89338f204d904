#!/usr/bin/env bash
# Memory after a burst: how much of what a burst of large deliveries made the server hold is
# given back. Starts a release build of terra-sink on 127.0.0.1 against a scratch database
# (dropped afterwards), samples its RSS from /proc, sends one bounded burst with
# examples/load.rs, and prints RSS before, at the peak, and 10/30/60 s after the burst.
#
#   scripts/bench-memory.sh                 200 concurrent ~5 MB signed deliveries, receive only
#   BURST_COUNT=400 BURST_SIZE=large BENCH_WORKERS=2 scripts/bench-memory.sh
#
# BURST_COUNT (200), BURST_CONCURRENCY (= BURST_COUNT), BURST_SIZE (medium: ~5 MB; large:
# ~10 MB), BENCH_WORKERS (0: receive only, the ingest path's own memory), BENCH_PORT (18090),
# BENCH_BIN (a terra-sink binary to measure instead of building target/release/terra-sink, e.g.
# one built from another commit), and any TERRA_SINK_* setting of the environment are passed on.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/postgres.sh
. scripts/postgres.sh
ensure_postgres

count=${BURST_COUNT:-200}
concurrency=${BURST_CONCURRENCY:-$count}
size=${BURST_SIZE:-medium}
port=${BENCH_PORT:-18090}
secret=whsec_memory_bench_only
db=terra_sink_membench_$$
admin_url=${DATABASE_URL%/*}/postgres

bin=${BENCH_BIN:-./target/release/terra-sink}
if [[ -n ${BENCH_BIN:-} ]]; then
    cargo build --release --locked --example load >&2
else
    cargo build --release --locked --bin terra-sink --example load >&2
fi
psql -q "$admin_url" -c "CREATE DATABASE $db" >/dev/null

server_pid=
sampler_pid=
samples=$(mktemp "${TMPDIR:-/tmp}/terra-sink-rss.XXXXXX")
cleanup() {
    [[ -n $sampler_pid ]] && kill "$sampler_pid" 2>/dev/null || true
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db" >/dev/null || true
    rm -f "$samples"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }

DATABASE_URL=${DATABASE_URL%/*}/$db TERRA_SIGNING_SECRET=$secret \
    TERRA_SINK_BIND=127.0.0.1:$port TERRA_SINK_WORKERS=${BENCH_WORKERS:-0} RUST_LOG=warn \
    "$bin" serve &
server_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null
sleep 2
before=$(rss_kib)

# Every 100 ms until stopped: the peak is the largest sample.
(while kill -0 "$server_pid" 2>/dev/null; do rss_kib >>"$samples"; sleep 0.1; done) &
sampler_pid=$!

TERRA_SIGNING_SECRET=$secret ./target/release/examples/load \
    --url "http://127.0.0.1:$port/webhooks/terra" --size "$size" --count "$count" \
    --concurrency "$concurrency"
burst_end=$(date +%s)
after() {
    local at=$(($burst_end + $1))
    while (($(date +%s) < at)); do sleep 0.2; done
    rss_kib
}
after_10=$(after 10)
after_30=$(after 30)
after_60=$(after 60)
kill "$sampler_pid" 2>/dev/null || true
sampler_pid=
peak=$(sort -n "$samples" | tail -1)
stored=$(psql -qtA "${DATABASE_URL%/*}/$db" -c "SELECT count(*) FROM terra.deliveries")

echo "burst: $count x $size, $concurrency concurrent; deliveries stored: $stored"
echo "rss before: $(mib "$before")  peak: $(mib "$peak")  after 10 s: $(mib "$after_10")  after 30 s: $(mib "$after_30")  after 60 s: $(mib "$after_60")"
