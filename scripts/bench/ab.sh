#!/usr/bin/env bash
# A/B of two terra-sink binaries on the end-to-end burst of scripts/bench.sh (terra-sink only):
# for each round, each binary in turn serves a fresh database, wrk sends a burst of typical
# deliveries at 64 connections, and the script waits until the ledger is drained. Alternating
# the binaries within one run is what makes a few percent visible on a noisy machine.
#
#   scripts/bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]      # e.g. a copy of target/release/terra-sink
#
# Prints one line per run: the burst as wrk saw it (acknowledged/s, p99), how many deliveries
# were typed by the end of the burst, then deliveries, end-to-end rate (first receipt .. last
# processed_at) and the seconds the drain took after the last receipt. Settings: AB_SECS (burst
# length, default 20), AB_CONNECTIONS (default 64), AB_ENV (extra VAR=value for both servers),
# AB_ENV_A / AB_ENV_B (for one side only: the same binary twice compares two settings),
# AB_NODRAIN=1 (the burst only, no wait for the typed rows), AB_STATEMENTS=N (when the server
# preloads pg_stat_statements: the N statements that took most time in each run), AB_WAL=1
# (the server's WAL written during each run, per delivery, from pg_stat_wal, which counts the
# whole server: run nothing else against it), AB_WAITS=N (what the server's connections were
# doing during each burst or open loop, read from pg_stat_activity every 5 ms by one more
# connection: the N most frequent (connection, wait event or CPU, statement)), AB_OPEN=RATE
# (instead of the burst, an open loop of examples/load at RATE/s for AB_SECS: ack p50/p99/max
# counted from when each request was due and, unless a side sets TERRA_SINK_WORKERS=0, the
# ack→typed lag), AB_LARGE=N (instead of the burst, N 4-hour 1 Hz activities of ~9 MB sent
# one at a time with curl, AB_LARGE_GAP seconds apart (default 0.5): their acknowledgement
# times and the server's minor page faults per delivery), AB_SQL_A / AB_SQL_B (a file of SQL
# run against one side's fresh database once its server is ready), BENCH_PG (server URL without
# a database, default postgres://postgres@127.0.0.1:5432; loopback only).
# The bodies come from target/release/examples/bench_bodies (build it first). Everything runs on
# 127.0.0.1, every load is bounded, and the scratch database terra_sink_ab_<pid> is dropped at
# the end.
set -euo pipefail
exec </dev/null

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ $# -ge 2 ]] || { sed -n '2,29p' "$0"; exit 2; }
# Absolute paths: each server starts in a scratch folder.
bins=("$(realpath "$1")" "$(realpath "$2")")
rounds=${3:-3}
secs=${AB_SECS:-20}
connections=${AB_CONNECTIONS:-64}
pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
[[ $pg =~ ^postgres(ql)?://[^/]*(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]] ||
    { echo "BENCH_PG must be a loopback server URL without a database" >&2; exit 2; }
db=terra_sink_ab_$$
work=$(mktemp -d)
secret="whsec_ab_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pid=

sql() { PGOPTIONS='-c client_min_messages=warning' psql -XAtq -v ON_ERROR_STOP=1 "$pg/$1" -c "$2"; }
stop() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=
}
cleanup() { stop; sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; rm -rf "$work"; }
trap cleanup EXIT

# wrk sends the signatures made here, so its rounds must end within Terra's 300 s tolerance;
# examples/load signs each request as it sends it.
if [[ -n ${AB_OPEN:-} ]]; then bodies=open.tsv count=$((AB_OPEN * secs)); else
    bodies=typical.tsv count=100000; fi
# The large deliveries are written (and signed) by each run.
[[ -n ${AB_LARGE:-} ]] || TERRA_SIGNING_SECRET=$secret "$root/target/release/examples/bench_bodies" \
    --kind typical --count "$count" --users 1000 --out "$work/$bodies" >/dev/null
# Written back before the runs, not by the kernel 30 s into them (see bench.sh's bodies()).
sync

# wrk_field LINE KEY: one key=value field of wrk's WRK_RESULT line (or of examples/load's).
wrk_field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# One line: the WAL written since the reset (bytes, full-page images, write and sync time when
# track_wal_io_timing is on), in all and per ledger row.
wal_report() {
    sql "$db" "SELECT format('  WAL %s MB (%s bytes/delivery), %s full-page images, %s ms writing, %s ms in %s syncs',
            round(w.wal_bytes / 1e6), round(w.wal_bytes / greatest(d.n, 1)), w.wal_fpi,
            round(w.wal_write_time), round(w.wal_sync_time), w.wal_sync)
        FROM pg_stat_wal w, (SELECT count(*) AS n FROM terra.deliveries) d"
}

# waits_start: samples the server's active connections (and the WAL writer) every 5 ms for
# AB_SECS seconds, in the background, into $work/waits. A sample with no wait event is a
# backend on the CPU (or waiting for one). Each sample is a read-only statement of its own
# (psql's \watch): a long transaction, or one that writes, would change what it measures (a
# long one holds back the cleanup of the queue index that every claim walks).
waits_start() {
    printf '%s\n\\watch 0.005\n' "SELECT coalesce(nullif(application_name, ''), backend_type),
               coalesce(wait_event_type || ':' || wait_event, 'CPU'),
               left(regexp_replace(query, '\s+', ' ', 'g'), 50)
        FROM pg_stat_activity
        WHERE pid <> pg_backend_pid()
          AND ((backend_type = 'client backend' AND state = 'active')
               OR backend_type = 'walwriter');" |
        timeout "$secs" psql -XAtq -F ', ' "$pg/$db" >"$work/waits" 2>/dev/null &
    waits_pid=$!
}

# waits_report: the AB_WAITS most frequent samples of the run.
waits_report() {
    wait "$waits_pid" || true
    sort "$work/waits" | uniq -c | sort -rn | head -n "$AB_WAITS" |
        sed 's/^ *\([0-9]*\) /  \1 samples: /'
}

# burst URL: wrk at AB_CONNECTIONS for AB_SECS, then (unless AB_NODRAIN) until the ledger
# has drained; one line of figures.
burst() {
    local ready line
    ready=$(mktemp -d "$work/ready.XXXX")
    line=$(wrk -t 2 -c "$connections" -d "${secs}s" --timeout 30s \
        -s "$root/scripts/bench/deliveries.lua" "$1" \
        -- "$work/typical.tsv" "ab-$$-$RANDOM" 2 "$ready" | grep '^WRK_RESULT')
    printf 'burst %s/s acked, p99 %s ms, %s typed by its end; ' \
        "$(($(wrk_field "$line" requests) * 1000000 / $(wrk_field "$line" duration_us)))" \
        "$(($(wrk_field "$line" p99_us) / 1000))" \
        "$(sql "$db" "SELECT count(*) FROM terra.deliveries WHERE status = 'done'")"
    if [[ -z ${AB_NODRAIN:-} ]]; then
        while [[ $(sql "$db" "SELECT count(*) FROM terra.deliveries WHERE status = 'pending'
                     OR (status = 'failed' AND next_attempt_at <= now())") != 0 ]]; do
            sleep 0.5
        done
        sql "$db" "SELECT format('%s deliveries, %s/s end to end, drained %s s after the last receipt',
            count(*), round(count(*) / extract(epoch FROM max(processed_at) - min(received_at))),
            round(extract(epoch FROM max(processed_at) - max(received_at))::numeric, 1))
            FROM terra.deliveries"
    else
        echo "not drained"
    fi
}

# open_loop URL SIDE_ENV: examples/load at AB_OPEN/s for AB_SECS; one line of its figures.
open_loop() {
    local out lag=()
    # With processing off the ledger never drains: no lag to wait for.
    [[ " ${AB_ENV:-} $2 " == *" TERRA_SINK_WORKERS=0 "* ]] || lag=(--database-url "$pg/$db")
    out=$(TERRA_SIGNING_SECRET=$secret "$root/target/release/examples/load" --url "$1" \
        --bodies "$work/open.tsv" --count "$((AB_OPEN * secs))" --rate "$AB_OPEN" \
        --concurrency 128 "${lag[@]}" | tail -1)
    printf 'open loop %s/s: ack p50 %s, p99 %s, max %s; %s failed; lag p99 %s\n' "$AB_OPEN" \
        "$(wrk_field "$out" p50)" "$(wrk_field "$out" p99)" "$(wrk_field "$out" max)" \
        "$(wrk_field "$out" failed)" "$( ((${#lag[@]})) && wrk_field "$out" lag_p99 || echo '- (processing off)')"
}

# large URL: AB_LARGE large deliveries one at a time; one line of figures.
large() {
    local dir=$work/large i t before after acks="" faults=0
    rm -rf "$dir"
    TERRA_SIGNING_SECRET=$secret "$root/target/release/examples/bench_bodies" \
        --kind activity-4h --count "$AB_LARGE" --dir "$dir" >/dev/null
    sync
    for ((i = 0; i < AB_LARGE; i++)); do
        before=$(minor_faults)
        t=$(curl -sS -o /dev/null -w '%{time_total}' --max-time 120 -H "@$dir/$i.headers" \
            -H "x-terra-trace-id: ab-large-$$-$RANDOM-$i" --data-binary "@$dir/$i.json" "$1")
        after=$(minor_faults)
        acks+="$t"$'\n' faults=$((faults + after - before))
        sleep "${AB_LARGE_GAP:-0.5}"
    done
    printf 'large x%s: ack %s; %s minor page faults per delivery\n' "$AB_LARGE" \
        "$(sort -g <<<"$acks" | awk 'NF { v[++n] = 1000 * $1 } END {
            printf "p50 %.0f ms, max %.0f ms (", v[int((n + 1) / 2)], v[n]
            for (i = 1; i <= n; i++) printf "%s%.0f", (i > 1 ? " " : ""), v[i]; printf ")" }')" \
        "$((faults / AB_LARGE))"
}

# The server's minor page faults so far (/proc/<pid>/stat, field 10).
minor_faults() { awk '{ print $10 }' "/proc/$pid/stat"; }

run() {
    local bin=$1 side_env=$2 side_sql=$3 port statements=${AB_STATEMENTS:-0}
    # A database per run, so no run finds another's rows or dead tuples.
    sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    sql postgres "CREATE DATABASE $db"
    if ((statements > 0)); then sql "$db" "CREATE EXTENSION pg_stat_statements"; fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # shellcheck disable=SC2086 # AB_ENV and the side's settings are lists of VAR=value words
    (cd "$work" && exec env DATABASE_URL="$pg/$db" TERRA_SIGNING_SECRET="$secret" \
        TERRA_SINK_BIND="127.0.0.1:$port" RUST_LOG=warn ${AB_ENV:-} $side_env "$bin" serve) \
        >>"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
    if ((statements > 0)); then sql "$db" "SELECT pg_stat_statements_reset()" >/dev/null; fi
    if [[ -n $side_sql ]]; then psql -XAtq -v ON_ERROR_STOP=1 "$pg/$db" -f "$side_sql" >/dev/null; fi
    if [[ -n ${AB_WAL:-} ]]; then sql "$db" "SELECT pg_stat_reset_shared('wal')" >/dev/null; fi
    if [[ -n ${AB_WAITS:-} ]]; then waits_start; fi
    if [[ -n ${AB_OPEN:-} ]]; then
        open_loop "http://127.0.0.1:$port/webhooks/terra" "$side_env"
    elif [[ -n ${AB_LARGE:-} ]]; then
        large "http://127.0.0.1:$port/webhooks/terra"
    else
        burst "http://127.0.0.1:$port/webhooks/terra"
    fi
    stop
    if [[ -n ${AB_WAL:-} ]]; then wal_report; fi
    if [[ -n ${AB_WAITS:-} ]]; then waits_report; fi
    if ((statements > 0)); then
        sql "$db" "SELECT format('  %s ms %s calls: %s', round(total_exec_time), calls,
                left(regexp_replace(query, '\s+', ' ', 'g'), 100))
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$db')
            ORDER BY total_exec_time DESC LIMIT $statements"
    fi
}

sides=("${AB_ENV_A:-}" "${AB_ENV_B:-}")
side_sql=("${AB_SQL_A:-}" "${AB_SQL_B:-}")
for f in "${side_sql[@]}"; do [[ -z $f || -r $f ]] || { echo "cannot read $f" >&2; exit 2; }; done
for round in $(seq "$rounds"); do
    for which in 0 1; do
        printf '%s round %s: %s\n' "$([[ $which == 0 ]] && echo A || echo B)" "$round" \
            "$(run "${bins[$which]}" "${sides[$which]}" "${side_sql[$which]}")"
    done
done
