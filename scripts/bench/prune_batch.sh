#!/usr/bin/env bash
# What one batch of the ledger prune costs the database, over a typed store as deliveries
# leave it, for each of several terra-sink binaries on copies of one database. Repeatable where
# the ack tail is not: nothing else runs while the batches do.
#
#   scripts/bench/prune_batch.sh BINARY... # oldest first: the first fills the database
#
# The first binary serves a fresh database while wrk sends typical deliveries for PRUNE_SECS
# (default 20) at 64 connections, then processes them all. Every ledger row is then moved 40
# days back. For each binary in turn, twice in alternation: a copy of that database, migrated
# by the binary, runs PRUNE_BATCHES (default 100) calls of terra.prune_ledger(now() - 30 days,
# 1000) in one psql session, as a prune does. Prints the min, quartiles and p90 of the
# batches' times as psql measured them, and the rows examined and removed.
# Settings: BENCH_PG (server URL without a database, default postgres://postgres@127.0.0.1:5432;
# loopback only). Uses target/release/examples/bench_bodies. Everything runs on 127.0.0.1,
# every load is bounded, and the scratch databases terra_sink_prune_batch_<pid>[_copy] are
# dropped at the end.
set -euo pipefail
exec </dev/null

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ $# -ge 1 ]] || { sed -n '2,17p' "$0"; exit 2; }
bins=()
for bin in "$@"; do bins+=("$(realpath "$bin")"); done
secs=${PRUNE_SECS:-20}
batches=${PRUNE_BATCHES:-100}
pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
[[ $pg =~ ^postgres(ql)?://[^/]*(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]] ||
    { echo "BENCH_PG must be a loopback server URL without a database" >&2; exit 2; }
db=terra_sink_prune_batch_$$
copy=${db}_copy
work=$(mktemp -d)
secret="whsec_pb_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pid=

sql() { PGOPTIONS='-c client_min_messages=warning' psql -XAtq -v ON_ERROR_STOP=1 "$pg/$1" -c "$2"; }
cleanup() {
    [[ -z $pid ]] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    sql postgres "DROP DATABASE IF EXISTS $copy WITH (FORCE)" || true
    sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    rm -rf "$work"
}
trap cleanup EXIT

TERRA_SIGNING_SECRET=$secret "$root/target/release/examples/bench_bodies" --kind typical \
    --count 100000 --users 1000 --out "$work/typical.tsv" >/dev/null
# Written back before the load, not by the kernel 30 s into it (see bench.sh's bodies()).
sync
sql postgres "CREATE DATABASE $db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && exec env DATABASE_URL="$pg/$db" TERRA_SIGNING_SECRET="$secret" \
    TERRA_SINK_BIND="127.0.0.1:$port" RUST_LOG=warn "${bins[0]}" serve) >>"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
ready=$(mktemp -d "$work/ready.XXXX")
wrk -t 2 -c 64 -d "${secs}s" --timeout 30s -s "$root/scripts/bench/deliveries.lua" \
    "http://127.0.0.1:$port/webhooks/terra" -- "$work/typical.tsv" "pb-$$-$RANDOM" 2 "$ready" >/dev/null
while [[ $(sql "$db" "SELECT count(*) FROM terra.deliveries WHERE status <> 'done'") != 0 ]]; do
    sleep 0.5
done
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
sql "$db" "UPDATE terra.deliveries SET received_at = received_at - interval '40 days'"
sql "$db" "VACUUM ANALYZE"
sql "$db" "SELECT format('%s processed deliveries; typed rows: %s daily, %s sleep, %s activity',
    (SELECT count(*) FROM terra.deliveries), (SELECT count(*) FROM terra.daily),
    (SELECT count(*) FROM terra.sleep), (SELECT count(*) FROM terra.activity))"

for _ in $(seq "$batches"); do
    echo "SELECT examined, removed FROM terra.prune_ledger(now() - interval '30 days', 1000);"
done >"$work/batches.sql"
for round in 1 2; do
    for bin in "${bins[@]}"; do
        sql postgres "DROP DATABASE IF EXISTS $copy WITH (FORCE)"
        sql postgres "CREATE DATABASE $copy TEMPLATE $db"
        DATABASE_URL="$pg/$copy" RUST_LOG=warn "$bin" migrate >/dev/null
        psql -XAtq -v ON_ERROR_STOP=1 "$pg/$copy" -c '\timing on' -f "$work/batches.sql" |
            python3 -c '
import statistics, sys
times, examined, removed = [], 0, 0
for line in sys.stdin:
    if line.startswith("Time: "):
        times.append(float(line.split()[1]))
    elif "|" in line:
        e, r = line.split("|")
        examined, removed = examined + int(e), removed + int(r)
q = statistics.quantiles(times, n=20)
print(f"round {sys.argv[1]} {sys.argv[2]}: {len(times)} batches, ms min {min(times):.1f} "
      f"q1 {q[4]:.1f} median {statistics.median(times):.1f} q3 {q[14]:.1f} p90 {q[17]:.1f}; "
      f"examined {examined}, removed {removed}")' "$round" "$bin"
    done
done
