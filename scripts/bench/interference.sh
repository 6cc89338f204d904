#!/usr/bin/env bash
# What background work does to the acknowledgements: one open loop of typical deliveries at
# 1,000/s for 75 s (examples/load, --timeline), with BACKGROUND started 15 s in. Prints the
# median of the per-second ack p99 before it (seconds 2-14), while it runs and after it, and
# how long it ran. Every run serves a fresh database holding OLD processed deliveries received
# 40-49 days ago (default 300,000, with their bodies), as scripts/bench.sh's prune workload does.
#
#   scripts/bench/interference.sh BACKGROUND [OLD]
#
# BACKGROUND is one of:
#   none            nothing (the control: a load's own drift over 75 s)
#   prune           terra-sink prune --older-than 30d (the binary under test)
#   burn PCT ROWS   a PostgreSQL backend counting ROWS rows of generate_series, then resting
#                   so that it works PCT % of the time, for 60 s; each round commits
#   hold            a transaction that took an xid and sleeps 60 s (no CPU at all)
#   drops           the prune's steps for each due body partition, one at a time, 1.5 s apart:
#                   its count and terra.keep_unprocessed_bodies, DETACH ... CONCURRENTLY, DROP;
#                   then prints each step with the ack p99 of its second and the next
#
# Uses target/release/{terra-sink,examples/load,examples/bench_bodies} (build them first).
# Settings: BENCH_PG (server URL without a database, default postgres://postgres@127.0.0.1:5432;
# loopback only). Everything runs on 127.0.0.1, every load is bounded, and the scratch database
# terra_sink_interference_<pid> is dropped at the end.
set -euo pipefail
exec </dev/null

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ $# -ge 1 ]] || { sed -n '2,23p' "$0"; exit 2; }
background=$1
old=300000
case $background in
    none | prune | hold | drops) old=${2:-$old} ;;
    burn) [[ $# -ge 3 ]] || { echo "burn needs PCT and ROWS" >&2; exit 2; } ;;
    *) echo "unknown background '$background'" >&2; exit 2 ;;
esac
pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
[[ $pg =~ ^postgres(ql)?://[^/]*(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]] ||
    { echo "BENCH_PG must be a loopback server URL without a database" >&2; exit 2; }
bin=$root/target/release
db=terra_sink_interference_$$
work=$(mktemp -d)
secret="whsec_if_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pid=

sql() { PGOPTIONS='-c client_min_messages=warning' psql -XAtq -v ON_ERROR_STOP=1 "$pg/$1" -c "$2"; }
cleanup() {
    [[ -z $pid ]] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    rm -rf "$work"
}
trap cleanup EXIT

# The background work itself; returns when it is done.
run_background() {
    case $background in
        none) sleep 30 ;;
        prune) DATABASE_URL="$pg/$db" RUST_LOG=warn "$bin/terra-sink" prune --older-than 30d ;;
        hold) psql -XAtq "$pg/$db" -c "BEGIN" -c "SELECT txid_current()" -c "SELECT pg_sleep(60)" \
                  -c "COMMIT" >/dev/null ;;
        drops) drop_steps ;;
        burn) psql -XAtq -v ON_ERROR_STOP=1 "$pg/$db" <<SQL
DO \$\$
DECLARE started timestamptz; n bigint; until timestamptz := clock_timestamp() + interval '60 s';
BEGIN
  WHILE clock_timestamp() < until LOOP
    started := clock_timestamp();
    SELECT count(*) INTO n FROM generate_series(1, $3);
    COMMIT;
    PERFORM pg_sleep(extract(epoch FROM clock_timestamp() - started) * (100 - $2) / $2.0);
  END LOOP;
END \$\$;
SQL
        ;;
    esac
}

# The prune's steps on each due partition, apart; logs "<epoch seconds> <step> <partition>".
drop_steps() {
    local name range
    for name in $(sql "$db" "SELECT name FROM terra.body_partitions
                             WHERE ends <= now() - interval '30 days' ORDER BY starts"); do
        range=$(sql "$db" "SELECT format('%L, %L', starts, ends) FROM terra.body_partitions
                           WHERE name = '$name'")
        echo "$(date +%s.%N) keep $name"
        sql "$db" "SELECT count(*) FROM terra.$name" >/dev/null
        sql "$db" "SELECT terra.keep_unprocessed_bodies('$name', $range)" >/dev/null
        sleep 1.5
        echo "$(date +%s.%N) detach $name"
        sql "$db" "ALTER TABLE terra.delivery_bodies DETACH PARTITION terra.$name CONCURRENTLY"
        sleep 1.5
        echo "$(date +%s.%N) drop $name"
        sql "$db" "DROP TABLE terra.$name"
        sleep 1.5
    done
}

sql postgres "CREATE DATABASE $db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && exec env DATABASE_URL="$pg/$db" TERRA_SIGNING_SECRET="$secret" \
    TERRA_SINK_BIND="127.0.0.1:$port" RUST_LOG=warn "$bin/terra-sink" serve) >>"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
sql "$db" "SELECT terra.add_body_partition(d, d + interval '1 day')
           FROM generate_series(date_trunc('day', now() - interval '49 days'),
                                date_trunc('day', now() - interval '40 days'), interval '1 day') AS d" >/dev/null
for i in $(seq 0 9); do
    sql "$db" "WITH d AS (
            INSERT INTO terra.deliveries (dedupe_key, received_at, body_sha256, body_size, shape,
                                          status, processed_at)
            SELECT 'old:' || n, date_trunc('day', now() - interval '49 days')
                       + make_interval(days => $i) + make_interval(secs => (n % 86000)),
                   '\\x00', 4800, 'ok', 'done', now()
            FROM generate_series($((i * old / 10)), $(((i + 1) * old / 10 - 1))) AS n
            RETURNING id, received_at)
        INSERT INTO terra.delivery_bodies (delivery_id, received_at, body)
        SELECT id, received_at, convert_to((SELECT string_agg(md5(id::text || ':' || g), ',')
                                            FROM generate_series(1, 145) AS g), 'UTF8')
        FROM d" >/dev/null
done
sql "$db" "VACUUM ANALYZE terra.deliveries"
sql "$db" "CHECKPOINT"
TERRA_SIGNING_SECRET=$secret "$bin/examples/bench_bodies" --kind typical --count 75000 \
    --users 1000 --out "$work/bodies.tsv" >/dev/null
# Written back before the load, not by the kernel 30 s into it (see bench.sh's bodies()).
sync

(
    sleep 15
    started=$(date +%s.%N)
    run_background "$@" >"$work/background.log" 2>&1
    echo "$(date +%s.%N) - $started" | bc >"$work/took"
) &
background_pid=$!
TERRA_SIGNING_SECRET=$secret "$bin/examples/load" --url "http://127.0.0.1:$port/webhooks/terra" \
    --bodies "$work/bodies.tsv" --count 75000 --rate 1000 --concurrency 128 \
    --timeline "$work/timeline.tsv" >"$work/load.out"
wait "$background_pid"
took=$(cat "$work/took")
python3 - "$work/timeline.tsv" "$took" "$*" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()[1:] if line]
took, end = float(sys.argv[2]), 15 + float(sys.argv[2])
def median(lo, hi):
    p99 = [float(r[2]) for r in rows if lo <= int(r[0]) < hi]
    return f"{statistics.median(p99):.2f} ms ({len(p99)} s)" if p99 else "-"
print(f"{sys.argv[3]}: per-second ack p99 median before {median(2, 15)}, "
      f"during {median(17, int(end))}, after {median(int(end) + 2, 75)}; background took {took:.1f} s")
PY
grep -o 'failed=[0-9]*' "$work/load.out"
if [[ $background == drops ]]; then
    # Each step, with the second of the load it started in and that second's and the next's p99.
    # The load's second 0 is when its clock started, after it read its bodies (about a second).
    load_clock=$(sed -n 's/.* started_at=\([0-9.]*\) .*/\1/p' "$work/load.out")
    awk -v t0="$load_clock" 'NR == FNR { if (FNR > 1) p99[$1] = $3; next }
        { s = int($1 - t0); printf "%-6s %s second %d: ack p99 %s, then %s ms\n", $2, $3, s, p99[s], p99[s + 1] }' \
        "$work/timeline.tsv" "$work/background.log"
fi
