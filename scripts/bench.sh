#!/usr/bin/env bash
# Side-by-side throughput benchmark: the reference receiver (../shared/reference-receiver), then
# terra-sink (release build), one after the other, under the same load: the same bodies, the
# same load tool (wrk) and the same connections. Prints a table of both and their ratios and
# writes it to $BENCH_OUT/results.md.
#
#   scripts/bench.sh                          # every workload, full length (~15-25 min)
#   BENCH_WORKLOADS="ack e2e" BENCH_DURATION=10 scripts/bench.sh
#
# Workloads (BENCH_WORKLOADS, any of):
#   ack    acknowledged/s and p99 at 128 connections for BENCH_DURATION s (both receivers)
#   e2e    a BENCH_DURATION s burst at 64 connections, then until every delivery is a typed row
#          (terra-sink: the ledger drained; rate = deliveries / (first receipt .. last
#          processed_at)). The reference writes its typed rows inside the request, so its
#          request rate is its end-to-end rate.
#   open   terra-sink only, examples/load open loop at BENCH_OPEN_RATE/s for BENCH_OPEN_SECS s:
#          ack p99 and ack->typed lag p99 (processed_at - received_at, from the ledger); each
#          second's ack p99 goes to open-timeline.tsv, and the row says how many seconds had a
#          p99 over 5 ms and the worst one (a stall of the disk shows as one bad second)
#   large  BENCH_LARGE_COUNT 4-hour 1 Hz activities (~9.5 MB) sent one at a time with curl:
#          acknowledged latency (both), and time until the typed rows exist (terra-sink)
#   drain  terra-sink only: BENCH_BACKLOG deliveries received with TERRA_SINK_WORKERS=0, then a
#          restart with workers; rate = backlog / (restart .. last processed_at)
#   prune  terra-sink only (not in the default set): BENCH_PRUNE_OLD processed deliveries 40-49
#          days old, then the open loop at BENCH_OPEN_RATE/s for BENCH_PRUNE_SECS s without,
#          with `terra-sink prune --older-than 30d`, and without again: prune time, ack p99s
#          (BENCH_PRUNE_CONTROL=1: the prune runs between the second and third loads instead,
#          so the second shows the drift from load to load with no prune beside it)
#
# Everything runs on 127.0.0.1; every load is bounded in time or count; each workload gets fresh
# scratch databases (terra_sink_bench_<pid>, reference_receiver_bench_<pid>) that are dropped
# afterwards; the servers are stopped on exit, on failure too. Bodies are written by
# examples/bench_bodies.rs and signed right before each load (Terra's tolerance is 300 s).
# Beside each figure: the load average when its load started, how many checkpoints the
# server made during the load (for e2e, open and drain, until the ledger drained), and how many
# more WAL segment files it held at the end than at the start (segments the load had to create).
#
# Settings (environment):
#   REFERENCE_RECEIVER_DIR  default ../shared/reference-receiver (beside the repository, or
#                           beside its main checkout when this is a git worktree)
#   BENCH_PG                PostgreSQL server URL without a database
#                           (default postgres://postgres@127.0.0.1:5432; loopback only)
#   BENCH_WORKLOADS         default "ack e2e open large drain"
#   BENCH_DURATION          seconds of the ack and e2e loads (default 20)
#   BENCH_ACK_CONNECTIONS   default 128         BENCH_E2E_CONNECTIONS  default 64
#   BENCH_OPEN_RATE         default 1000        BENCH_OPEN_SECS        default 10
#   BENCH_PRUNE_OLD         default 1000000     BENCH_PRUNE_SECS       default 30
#   BENCH_PRUNE_CONTROL=1   the prune workload's control run (see prune above)
#   BENCH_PRUNE_DELAY       seconds into the second load the prune starts (default 5)
#   BENCH_PRUNE_ALTERNATE=W the prune workload as one load, the prune paused and resumed
#                           every W s, its running seconds compared with its paused ones
#   BENCH_LARGE_COUNT       default 5           BENCH_BACKLOG          default 100000
#   BENCH_BODIES            distinct typical bodies per wrk load (default 100000; a load that
#                           sends more cycles through them with new trace ids)
#   BENCH_USERS             distinct users in the bodies (default 1000)
#   BENCH_WRK_THREADS       default 2
#   BENCH_TERRA_SINK_WORKERS  TERRA_SINK_WORKERS for terra-sink's processing runs (default:
#                           terra-sink's own default)
#   BENCH_DRAIN_TIMEOUT     longest wait for typed rows, seconds (default 1800)
#   BENCH_OUT               output folder (default target/bench/<date>-<pid>)
#   BENCH_SKIP_BUILD=1      use the binaries already in target/release
set -euo pipefail
exec </dev/null

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# The settings given for this run, to print with the results as the command that produced them
# (TERRA_SINK_* reach the terra-sink server too; the OTLP endpoint is left out, as a URL may
# carry credentials).
GIVEN=$(env | grep -E '^(BENCH_[A-Z_]+|REFERENCE_RECEIVER_DIR|TERRA_SINK_[A-Z_]+)=' | grep -v -E '^(BENCH_OUT|TERRA_SINK_OTLP_ENDPOINT)=' | sort | tr '\n' ' ' || true)

# ../shared beside the checkout, or beside the main checkout when this is a git worktree.
default_reference_dir() {
    local common
    common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null) || common=""
    for dir in "$root/../shared/reference-receiver" ${common:+"$(dirname "$common")/../shared/reference-receiver"}; do
        [[ -d $dir ]] && { (cd "$dir" && pwd); return; }
    done
    echo "$root/../shared/reference-receiver"
}
REFERENCE_RECEIVER_DIR=${REFERENCE_RECEIVER_DIR:-$(default_reference_dir)}
BENCH_PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-ack e2e open large drain}
BENCH_DURATION=${BENCH_DURATION:-20}
BENCH_ACK_CONNECTIONS=${BENCH_ACK_CONNECTIONS:-128}
BENCH_E2E_CONNECTIONS=${BENCH_E2E_CONNECTIONS:-64}
BENCH_OPEN_RATE=${BENCH_OPEN_RATE:-1000}
BENCH_OPEN_SECS=${BENCH_OPEN_SECS:-10}
BENCH_PRUNE_OLD=${BENCH_PRUNE_OLD:-1000000}
BENCH_PRUNE_SECS=${BENCH_PRUNE_SECS:-30}
BENCH_PRUNE_CONTROL=${BENCH_PRUNE_CONTROL:-0}
BENCH_PRUNE_DELAY=${BENCH_PRUNE_DELAY:-5}
BENCH_PRUNE_ALTERNATE=${BENCH_PRUNE_ALTERNATE:-0}
BENCH_LARGE_COUNT=${BENCH_LARGE_COUNT:-5}
BENCH_BACKLOG=${BENCH_BACKLOG:-100000}
BENCH_BODIES=${BENCH_BODIES:-100000}
BENCH_USERS=${BENCH_USERS:-1000}
BENCH_WRK_THREADS=${BENCH_WRK_THREADS:-2}
BENCH_DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-1800}
BENCH_OUT=${BENCH_OUT:-$root/target/bench/$(date +%Y%m%d-%H%M%S)-$$}

# A throwaway secret: both receivers and the body generator use it, nothing else does.
SECRET="whsec_bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
RUN_ID="$(date +%s)-$$"
TS_DB="terra_sink_bench_$$"
REF_DB="reference_receiver_bench_$$"
BIN="$root/target/release"
LUA="$root/scripts/bench/deliveries.lua"
WEBHOOK_PATH=/webhooks/terra
TS_PID="" REF_PID=""
RESULTS=()   # markdown table rows
NOTES=()     # anything odd seen during the run

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$BENCH_OUT/bench.log" >&2; }
die() { log "error: $*"; exit 1; }
note() { NOTES+=("$*"); log "note: $*"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# Checkpoints the server has made so far (timed and requested; PostgreSQL 17 moved the counters),
# and the WAL segment files it holds, as "CHECKPOINTS SEGMENTS".
# A checkpoint inside a load makes every page touched again after it write a full-page image,
# which can move a load's figures by more than the difference being measured. More segment
# files after a load than before mean it had to create them: each new one is zero-filled and
# flushed while every commit waits. A heavy load after a spell of light traffic meets this, as
# the server may then keep as little as min_wal_size of them for reuse.
checkpoints() {
    local count segments
    count=$(sql postgres "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter" 2>/dev/null ||
        sql postgres "SELECT num_timed + num_requested FROM pg_stat_checkpointer" 2>/dev/null ||
        echo "?")
    segments=$(sql postgres "SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'" 2>/dev/null ||
        echo "?")
    echo "$count $segments"
}
# checkpoints_since "C S": "no checkpoint", "1 checkpoint", "N checkpoints" since the count C,
# and ", N more WAL segment files" when the server holds more than S now.
checkpoints_since() {
    local now then_count then_segments now_count now_segments
    now=$(checkpoints)
    read -r then_count then_segments <<<"$1"
    read -r now_count now_segments <<<"$now"
    if [[ $then_count == "?" || $now_count == "?" ]]; then
        printf 'checkpoints unknown'
    else
        case $((now_count - then_count)) in
            0) printf 'no checkpoint' ;;
            1) printf '1 checkpoint' ;;
            *) printf '%s checkpoints' "$((now_count - then_count))" ;;
        esac
    fi
    if [[ $then_segments != "?" && $now_segments != "?" ]] && ((now_segments > then_segments)); then
        local more=$((now_segments - then_segments))
        printf ', %s more WAL segment file%s' "$more" "$( ((more == 1)) || echo s)"
    fi
    echo
}
# key=value fields of a one-line report (wrk's WRK_RESULT, examples/load's summary).
field() { sed -n "s/.*[[:space:]]$2=\([^[:space:]]*\).*/\1/p" <<<" $1" | head -1; }
# Integer with thousands separators.
int() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

sql() { PGOPTIONS='-c client_min_messages=warning' psql -XAtq -v ON_ERROR_STOP=1 "$BENCH_PG/$1" -c "$2"; }
db_fresh() {
    sql postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
    sql postgres "CREATE DATABASE $1" >/dev/null
}
db_drop() { sql postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true; }

stop_pid() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "pid $pid did not stop within 30 s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
stop_servers() {
    stop_pid "$TS_PID"
    TS_PID=""
    stop_pid "$REF_PID"
    REF_PID=""
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_servers
    # A prune paused by alternate_prune would otherwise wait forever.
    if [[ -s $BENCH_OUT/work/prune.pid ]]; then
        kill -CONT "$(cat "$BENCH_OUT/work/prune.pid")" 2>/dev/null || true
        stop_pid "$(cat "$BENCH_OUT/work/prune.pid")"
    fi
    db_drop "$TS_DB"
    db_drop "$REF_DB"
    rm -rf "$BENCH_OUT/work"
    if ((rc != 0)); then
        log "failed (exit $rc); logs in $BENCH_OUT"
    fi
    exit "$rc"
}

# Polls URL until it answers 200, while PID lives; at most $3 seconds.
wait_http() {
    local url=$1 pid=$2 limit=$3 logfile=$4
    for _ in $(seq 1 $((limit * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "server exited before answering $url (log: $logfile)"
        fi
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    die "no answer from $url within $limit s (log: $logfile)"
}

# start_terra_sink WORKERS: serves $TS_DB on a free port; sets TS_PID and TS_URL.
start_terra_sink() {
    local workers=$1 port logfile
    port=$(free_port)
    logfile="$BENCH_OUT/terra-sink.log"
    local -a env=(DATABASE_URL="$BENCH_PG/$TS_DB" TERRA_SIGNING_SECRET="$SECRET"
        TERRA_SINK_BIND="127.0.0.1:$port" TERRA_SINK_WEBHOOK_PATH="$WEBHOOK_PATH" RUST_LOG=warn)
    [[ -n $workers ]] && env+=(TERRA_SINK_WORKERS="$workers")
    # From the scratch folder, so no ./.env of the checkout changes the settings.
    (cd "$BENCH_OUT/work" && exec env "${env[@]}" "$BIN/terra-sink" serve) >>"$logfile" 2>&1 &
    TS_PID=$!
    TS_URL="http://127.0.0.1:$port$WEBHOOK_PATH"
    wait_http "http://127.0.0.1:$port/readyz" "$TS_PID" 120 "$logfile"
}

# start_reference: serves $REF_DB on a free port (2 uvicorn workers); sets REF_PID and REF_URL.
start_reference() {
    local port logfile
    port=$(free_port)
    logfile="$BENCH_OUT/reference-receiver.log"
    TERRA_SIGNING_SECRET="$SECRET" "$REFERENCE_RECEIVER_DIR/run.sh" "$port" \
        "$BENCH_PG/$REF_DB" >>"$logfile" 2>&1 &
    REF_PID=$!
    REF_URL="http://127.0.0.1:$port/webhook"
    # The first start may create its virtualenv (pip install): allow for that.
    wait_http "http://127.0.0.1:$port/healthz" "$REF_PID" 600 "$logfile"
}

# bodies KIND COUNT TARGET...: writes freshly signed bodies (see examples/bench_bodies.rs).
bodies() {
    local kind=$1 count=$2
    shift 2
    TERRA_SIGNING_SECRET="$SECRET" "$BIN/examples/bench_bodies" --kind "$kind" --count "$count" \
        --users "$BENCH_USERS" "$@" | tee -a "$BENCH_OUT/bench.log"
    # Written back now: left to the kernel, hundreds of MB go out 30 s later, in the middle of
    # the load, and the file system's flush holds up the database's WAL flushes for a second.
    sync
}

# wrk_load URL CONNECTIONS SECONDS: one wrk run over freshly signed typical bodies; prints the
# WRK_RESULT line.
wrk_load() {
    local url=$1 connections=$2 seconds=$3 tsv="$BENCH_OUT/work/typical.tsv" ready out
    bodies typical "$BENCH_BODIES" --out "$tsv" >&2
    ready=$(mktemp -d "$BENCH_OUT/work/ready.XXXX")
    out=$(wrk -t "$BENCH_WRK_THREADS" -c "$connections" -d "${seconds}s" --timeout 30s \
        -s "$LUA" "$url" -- "$tsv" "$RUN_ID-$RANDOM" "$BENCH_WRK_THREADS" "$ready") ||
        die "wrk failed: $out"
    printf '%s\n' "$out" >>"$BENCH_OUT/bench.log"
    grep '^WRK_RESULT' <<<"$out" || die "wrk printed no WRK_RESULT line"
}

# Acknowledged requests (2xx) per second of a WRK_RESULT line.
wrk_acked() { echo $(($(field "$1" requests) - $(field "$1" non2xx))); }
wrk_rate() { calc "$(wrk_acked "$1") / ($(field "$1" duration_us) / 1e6)" 0; }
wrk_p99_ms() { calc "$(field "$1" p99_us) / 1000" 1; }
wrk_errors() {
    local e=0 k
    for k in non2xx connect_errors read_errors write_errors timeouts; do
        e=$((e + $(field "$1" "$k")))
    done
    echo "$e"
}
check_wrk() {
    local who=$1 line=$2
    (($(wrk_errors "$line") == 0)) ||
        note "$who: wrk saw errors: $(sed 's/^WRK_RESULT //' <<<"$line")"
}

# Deliveries in terra-sink's ledger that are not typed rows yet (pending, or failed and due).
TS_WAITING="status = 'pending' OR (status = 'failed' AND next_attempt_at <= now())"

# wait_typed: until no delivery waits, at most BENCH_DRAIN_TIMEOUT s. Returns 1 on timeout.
wait_typed() {
    local deadline=$((SECONDS + BENCH_DRAIN_TIMEOUT)) waiting
    while :; do
        waiting=$(sql "$TS_DB" "SELECT count(*) FROM terra.deliveries WHERE $TS_WAITING")
        ((waiting == 0)) && return 0
        if ((SECONDS >= deadline)); then
            note "terra-sink: $waiting deliveries still waiting after ${BENCH_DRAIN_TIMEOUT} s"
            return 1
        fi
        sleep 0.5
    done
}

# Logs the ledger's states after a terra-sink run (e.g. "done=1000") and notes anything that
# failed or was parked: the bodies are meant to be valid, so that would be a harness problem.
ledger_states() {
    local states
    states=$(sql "$TS_DB" "SELECT string_agg(status || '=' || n, ' ' ORDER BY status)
        FROM (SELECT status, count(*) AS n FROM terra.deliveries GROUP BY status) s")
    log "$1: terra-sink ledger: $states"
    if [[ $states =~ (failed|parked) ]]; then
        note "terra-sink ($1): deliveries not done: $states; first error: $(sql "$TS_DB" \
            "SELECT last_error FROM terra.deliveries WHERE last_error IS NOT NULL LIMIT 1")"
    fi
}

row() { RESULTS+=("| $1 | $2 | $3 | $4 | $5 |"); }

# reference_wrk CONNECTIONS SECONDS: one wrk load on the reference receiver over a fresh
# database; sets REF_LINE (its WRK_RESULT line) and REF_LOAD (the load average at the start).
reference_wrk() {
    log "reference receiver: $1 connections, $2 s (typed rows written inside the request)"
    db_fresh "$REF_DB"
    start_reference
    REF_LOAD=$(loadavg)
    local ckpt
    ckpt=$(checkpoints)
    REF_LINE=$(wrk_load "$REF_URL" "$1" "$2")
    REF_LOAD="$REF_LOAD, $(checkpoints_since "$ckpt")"
    check_wrk reference "$REF_LINE"
    log "reference stored $(sql "$REF_DB" "SELECT count(*) FROM peer_raw_events") events"
    stop_servers
    db_drop "$REF_DB"
}

# terra_sink_wrk CONNECTIONS SECONDS: starts terra-sink over a fresh database and puts one wrk
# load on it, leaving it running; sets TS_LINE, TS_LOAD and TS_CHECKPOINTS (the server's
# checkpoint count when the load started).
terra_sink_wrk() {
    log "terra-sink: $1 connections, $2 s"
    db_fresh "$TS_DB"
    start_terra_sink "${BENCH_TERRA_SINK_WORKERS:-}"
    TS_LOAD=$(loadavg)
    TS_CHECKPOINTS=$(checkpoints)
    TS_LINE=$(wrk_load "$TS_URL" "$1" "$2")
    check_wrk terra-sink "$TS_LINE"
    log "terra-sink ledger holds $(sql "$TS_DB" "SELECT count(*) FROM terra.deliveries") deliveries"
}

workload_ack() {
    local c=$BENCH_ACK_CONNECTIONS d=$BENCH_DURATION
    log "ack: acknowledged/s at $c connections"
    reference_wrk "$c" "$d"
    terra_sink_wrk "$c" "$d"
    TS_LOAD="$TS_LOAD, $(checkpoints_since "$TS_CHECKPOINTS")"
    stop_servers
    db_drop "$TS_DB"
    row "acknowledged/s, $c connections, $d s" \
        "$(int "$(wrk_rate "$TS_LINE")")/s, p99 $(wrk_p99_ms "$TS_LINE") ms (load $TS_LOAD)" \
        "$(int "$(wrk_rate "$REF_LINE")")/s, p99 $(wrk_p99_ms "$REF_LINE") ms (load $REF_LOAD)" \
        "$(calc "$(wrk_rate "$TS_LINE") / $(wrk_rate "$REF_LINE")" 2)×" \
        "≥ 10,000/s and ≥ 8×, p99 ≤ 25 ms"
}

workload_e2e() {
    local c=$BENCH_E2E_CONNECTIONS d=$BENCH_DURATION
    log "e2e: a $d s burst at $c connections, until every delivery is a typed row"
    reference_wrk "$c" "$d"
    terra_sink_wrk "$c" "$d"
    local drained=yes
    wait_typed || drained=no
    TS_LOAD="$TS_LOAD, $(checkpoints_since "$TS_CHECKPOINTS")"
    local n span after
    n=$(sql "$TS_DB" "SELECT count(*) FROM terra.deliveries")
    # From the first receipt to the last typed row (or to now, if it did not drain).
    span=$(sql "$TS_DB" "SELECT extract(epoch FROM coalesce(CASE WHEN '$drained' = 'yes'
        THEN max(processed_at) END, clock_timestamp()) - min(received_at)) FROM terra.deliveries")
    after=$(sql "$TS_DB" "SELECT extract(epoch FROM max(processed_at) - max(received_at))
        FROM terra.deliveries")
    ledger_states e2e
    stop_servers
    db_drop "$TS_DB"

    local rate shown
    rate=$(calc "$n / $span" 0)
    shown=$(int "$rate")
    [[ $drained == yes ]] || shown="< $shown (did not drain)"
    row "end to end: $d s burst at $c connections, until every delivery is in the typed tables" \
        "**${shown}/s** ($(int "$n") acked at $(int "$(wrk_rate "$TS_LINE")")/s, then $(calc "$after" 0) s to drain; load $TS_LOAD)" \
        "**$(int "$(wrk_rate "$REF_LINE")")/s** (load $REF_LOAD)" \
        "$(calc "$rate / $(wrk_rate "$REF_LINE")" 2)×" \
        "≥ 3× (compass 5×)"
}

workload_open() {
    local rate=$BENCH_OPEN_RATE secs=$BENCH_OPEN_SECS count la out ckpt seconds
    count=$((rate * secs))
    log "open: terra-sink, examples/load open loop $rate/s for $secs s ($count deliveries)"
    db_fresh "$TS_DB"
    start_terra_sink "${BENCH_TERRA_SINK_WORKERS:-}"
    bodies typical "$count" --out "$BENCH_OUT/work/open.tsv" >/dev/null
    la=$(loadavg)
    ckpt=$(checkpoints)
    out=$(TERRA_SIGNING_SECRET="$SECRET" "$BIN/examples/load" --url "$TS_URL" \
        --bodies "$BENCH_OUT/work/open.tsv" --count "$count" --rate "$rate" --concurrency 128 \
        --timeline "$BENCH_OUT/open-timeline.tsv" \
        --database-url "$BENCH_PG/$TS_DB" --drain-timeout "$BENCH_DRAIN_TIMEOUT")
    la="$la, $(checkpoints_since "$ckpt")"
    log "open: $out"
    seconds=$(awk -F'\t' 'NR > 1 { n++; if ($3 > 5) over++; if ($3 > worst) { worst = $3; at = $1 } }
        END { printf "%d of %d seconds over 5 ms, the worst %.1f ms (second %d)", over, n, worst, at }' \
        "$BENCH_OUT/open-timeline.tsv")
    (($(field "$out" failed) == 0)) || note "open: $(field "$out" failed) requests failed"
    [[ $(field "$out" drained_after) != timeout ]] ||
        note "open: the ledger did not drain within $BENCH_DRAIN_TIMEOUT s"
    ledger_states open
    stop_servers
    db_drop "$TS_DB"
    row "examples/load open loop, $rate/s for $secs s" \
        "ack p99 $(ms "$(field "$out" p99)") (by second: $seconds); ack→typed lag p99 $(ms "$(field "$out" lag_p99)"), max $(ms "$(field "$out" lag_max)") (ledger), oldest waiting delivery at most $(ms "$(field "$out" oldest_wait_max)") old (sampled); $(int "$(field "$out" waiting_at_end)") still waiting when the load stopped (load $la)" \
        "—" "—" "ack p99 ≤ 5 ms, lag p99 ≤ 1 s"
}
# prune: BENCH_PRUNE_OLD processed deliveries (4.8 KB bodies of hex digests) received 40-49 days ago, then
# the open loop at BENCH_OPEN_RATE/s for BENCH_PRUNE_SECS s three times: alone, with
# `terra-sink prune --older-than 30d` started BENCH_PRUNE_DELAY s in (the default 7-day dedupe
# window, so the old ledger rows, which nothing references, go too), and alone again. Every load
# finds more rows than the one before it, so the prune's is compared with the loads on both sides, and
# with the middle load of a control run (BENCH_PRUNE_CONTROL=1), whose prune runs after it.
# Reports the prune's wall time and the ack p99 of the three loads, whole and the median of its
# seconds; each second's p99 goes to prune-before.tsv, prune-with.tsv and prune-after.tsv, the
# prune's own log to prune.log.
# Before each load of the prune workload: a vacuumed database, as autovacuum would keep it (a
# server may run with it off, and then the dead rows of the loads and of the prune before would
# slow each later load), and a checkpoint, so that no load meets one the previous load's WAL
# requested.
prune_settle() {
    sql "$TS_DB" "VACUUM ANALYZE" >/dev/null
    sql "$TS_DB" "CHECKPOINT" >/dev/null
}
# One open loop of the prune workload; NAME's per-second p99 goes to prune-NAME.tsv.
prune_load() {
    local count=$1 name=$2
    TERRA_SIGNING_SECRET="$SECRET" "$BIN/examples/load" --url "$TS_URL" \
        --bodies "$BENCH_OUT/work/prune.tsv" --count "$count" --rate "$BENCH_OPEN_RATE" \
        --concurrency 128 --timeline "$BENCH_OUT/prune-$name.tsv"
}
# The prune itself, timed; its wall time and summary go to work/prune.out, its start (Unix
# time) to work/prune.started.
run_prune() {
    local started ended prune_out pruner w=$BENCH_OUT/work
    started=$(date +%s.%N)
    echo "$started" >"$w/prune.started"
    echo "$started run" >"$w/prune.events"
    (cd "$w" && exec env DATABASE_URL="$BENCH_PG/$TS_DB" RUST_LOG=info \
        "$BIN/terra-sink" prune --older-than 30d >"$w/prune.stdout" 2>"$w/prune.err") &
    pruner=$!
    echo "$pruner" >"$w/prune.pid"
    if wait "$pruner"; then prune_out=$(cat "$w/prune.stdout"); else
        prune_out="FAILED: $(tail -3 "$w/prune.err")"; fi
    # Its pid may be reused now: nothing may signal it any more.
    rm -f "$w/prune.pid"
    ended=$(date +%s.%N)
    echo "$ended end" >>"$w/prune.events"
    echo "$(calc "$ended - $started" 2) $prune_out" >"$w/prune.out"
}
# While the prune runs: pauses it (SIGSTOP) and resumes it every BENCH_PRUNE_ALTERNATE s, and
# logs each change to work/prune.events.
alternate_prune() {
    local w=$BENCH_OUT/work pruner
    until [[ -s $w/prune.pid ]]; do
        grep -qs ' end$' "$w/prune.events" && return 0
        sleep 0.1
    done
    pruner=$(cat "$w/prune.pid") || return 0
    while sleep "$BENCH_PRUNE_ALTERNATE" && pause_between_statements "$pruner"; do
        echo "$(date +%s.%N) pause" >>"$w/prune.events"
        sleep "$BENCH_PRUNE_ALTERNATE"
        echo "$(date +%s.%N) run" >>"$w/prune.events"
        kill -CONT "$pruner" 2>/dev/null || break
    done
}
# Stops PID while its connection (the one holding the prune's one-key advisory lock) is idle
# between statements, retrying every 20 ms; fails once PID has exited. Paused inside a
# statement, the prune would count the pause as that batch's time and rest accordingly.
pause_between_statements() {
    local pid=$1 state
    while kill -STOP "$pid" 2>/dev/null; do
        # Idle for a while, so the prune has read its last result too.
        state=$(sql "$TS_DB" "SELECT a.state || (clock_timestamp() - a.state_change > interval '100 ms')
            FROM pg_locks l JOIN pg_stat_activity a USING (pid)
            WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        [[ $state == idletrue ]] && return 0
        kill -CONT "$pid" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}
# The median of the per-second ack p99s of load NAME (of its seconds FROM to before TO), in ms.
second_p99_median() {
    tail -n +2 "$BENCH_OUT/prune-$1.tsv" | awk -F'\t' -v from="${2:-0}" -v to="${3:-1e9}" \
        '$1 >= from && $1 < to { print $3 }' | sort -g |
        awk '{ v[NR] = $1 } END { printf "%.1f ms", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# A fresh database and server holding OLD old deliveries (prune_seed), and COUNT bodies to send.
prune_prepare() {
    local count=$1 old=$2
    db_fresh "$TS_DB"
    start_terra_sink "${BENCH_TERRA_SINK_WORKERS:-}"
    prune_seed "$old"
    bodies typical "$count" --out "$BENCH_OUT/work/prune.tsv" >/dev/null
}
# OLD processed deliveries with 4.8 KB bodies, received 40-49 days ago, in ten day partitions.
prune_seed() {
    sql "$TS_DB" "SELECT terra.add_body_partition(d, d + interval '1 day')
                  FROM generate_series(date_trunc('day', now() - interval '49 days'),
                                       date_trunc('day', now() - interval '40 days'),
                                       interval '1 day') AS d" >/dev/null
    local old=$1 chunk=$(($1 / 10)) i
    for i in $(seq 0 9); do
        sql "$TS_DB" "WITH d AS (
                INSERT INTO terra.deliveries (dedupe_key, received_at, body_sha256, body_size,
                                              shape, status, processed_at)
                SELECT 'prune-bench:' || n,
                       date_trunc('day', now() - interval '49 days') + make_interval(days => $i)
                           + make_interval(secs => (n % 86000)),
                       '\\x00', 4800, 'ok', 'done', now()
                FROM generate_series($((i * chunk)), $(((i + 1) * chunk - 1))) AS n
                RETURNING id, received_at
            )
            INSERT INTO terra.delivery_bodies (delivery_id, received_at, body)
            SELECT id, received_at,
                   convert_to((SELECT string_agg(md5(id::text || ':' || g), ',')
                               FROM generate_series(1, 145) AS g), 'UTF8')
            FROM d" >/dev/null
    done
    sql "$TS_DB" "VACUUM ANALYZE terra.deliveries" >/dev/null
    sql "$TS_DB" "CHECKPOINT" >/dev/null
    log "prune: ledger holds $(sql "$TS_DB" "SELECT count(*) FROM terra.deliveries") rows, bodies $(sql "$TS_DB" "SELECT pg_size_pretty(sum(pg_total_relation_size(('terra.' || name)::regclass))) FROM terra.body_partitions")"
}
# BENCH_PRUNE_ALTERNATE=W: one open loop of BENCH_PRUNE_SECS s, the prune started
# BENCH_PRUNE_DELAY s in and paused and resumed every W s; the seconds with it running are
# compared with those with it paused (scripts/bench/alternation.py).
prune_alternating() {
    local rate=$BENCH_OPEN_RATE secs=$BENCH_PRUNE_SECS old=$BENCH_PRUNE_OLD count out la
    local w=$BENCH_OUT/work pruner toggler took paused compared left
    count=$((rate * secs))
    log "prune: $(int "$old") old deliveries, then open loop $rate/s for $secs s, the prune paused and resumed every $BENCH_PRUNE_ALTERNATE s"
    prune_prepare "$count" "$old"
    la=$(loadavg)
    prune_settle
    (sleep "$BENCH_PRUNE_DELAY" && run_prune) &
    pruner=$!
    (sleep "$BENCH_PRUNE_DELAY" && alternate_prune) &
    toggler=$!
    out=$(prune_load "$count" alternating)
    wait "$pruner"
    wait "$toggler" || true
    cp "$w/prune.err" "$BENCH_OUT/prune.log"
    cp "$w/prune.events" "$BENCH_OUT/prune-events.txt"
    log "prune: alternating $out"
    log "prune: $(cat "$w/prune.out")"
    took=$(cut -d' ' -f1 "$w/prune.out")
    paused=$(awk '$2 == "pause" { p = $1 } $2 == "run" && p { s += $1 - p; p = 0 } END { printf "%.1f", s }' "$w/prune.events")
    compared=$(python3 "$root/scripts/bench/alternation.py" "$BENCH_OUT/prune-alternating.tsv" \
        "$(field "$out" started_at)" "$w/prune.events")
    left=$(sql "$TS_DB" "SELECT count(*) FROM terra.delivery_bodies WHERE received_at < now() - interval '30 days'")
    (($(field "$out" failed) == 0)) || note "prune: $(field "$out" failed) requests failed"
    ((left == 0)) || note "prune: $left old bodies left"
    [[ $(tail -1 "$w/prune.events") == *" end" ]] || note "prune: still running when the load ended"
    grep -q 'slow statement' "$w/prune.err" && note "prune: a pause fell inside a statement (see prune.log)"
    stop_servers
    db_drop "$TS_DB"
    row "prune of $(int "$old") old deliveries during open loop $rate/s, paused and resumed every $BENCH_PRUNE_ALTERNATE s" \
        "prune took $took s of which $paused s paused ($(cut -d' ' -f2- "$w/prune.out")); ack p99 $(ms "$(field "$out" p99)"), max $(ms "$(field "$out" max)") over the whole load; $compared (load $la)" \
        "—" "—" "prune time flat in ledger size; ack p99 unchanged"
}
workload_prune() {
    local rate=$BENCH_OPEN_RATE secs=$BENCH_PRUNE_SECS old=$BENCH_PRUNE_OLD count base out after la
    local middle=with
    if ((BENCH_PRUNE_ALTERNATE > 0)); then prune_alternating; return; fi
    ((BENCH_PRUNE_CONTROL == 0)) || middle=control
    count=$((rate * secs))
    log "prune: $(int "$old") old deliveries, then open loop $rate/s for $secs s, without, $middle, without"
    prune_prepare "$count" "$old"
    la=$(loadavg)
    prune_settle
    base=$(prune_load "$count" before)
    log "prune: without, before $base"
    prune_settle
    if ((BENCH_PRUNE_CONTROL == 0)); then
        (sleep "$BENCH_PRUNE_DELAY" && run_prune) &
        local pruner=$!
        out=$(prune_load "$count" with)
        wait "$pruner"
    else
        out=$(prune_load "$count" control)
        run_prune
    fi
    cp "$BENCH_OUT/work/prune.err" "$BENCH_OUT/prune.log"
    log "prune: $middle $out"
    log "prune: $(cat "$BENCH_OUT/work/prune.out")"
    prune_settle
    after=$(prune_load "$count" after)
    log "prune: without, after $after"
    local took left
    took=$(cut -d' ' -f1 "$BENCH_OUT/work/prune.out")
    left=$(sql "$TS_DB" "SELECT count(*) FROM terra.delivery_bodies WHERE received_at < now() - interval '30 days'")
    (($(field "$out" failed) == 0)) || note "prune: $(field "$out" failed) requests failed"
    ((left == 0)) || note "prune: $left old bodies left"
    stop_servers
    db_drop "$TS_DB"
    local seconds from
    seconds="per-second p99 median $(second_p99_median before) / $(second_p99_median "$middle") / $(second_p99_median after)"
    if ((BENCH_PRUNE_CONTROL == 0)); then
        # The second of the load's clock the prune started in.
        from=$(awk -v p="$(cat "$BENCH_OUT/work/prune.started")" -v s="$(field "$out" started_at)" \
            'BEGIN { d = p - s; print (d > 0) ? int(d) : 0 }')
        seconds+="; the second load's seconds before the prune started (0-$from s) $(second_p99_median with 0 "$from"), from then on $(second_p99_median with "$from")"
        row "prune of $(int "$old") old deliveries during open loop $rate/s" \
            "prune took $took s ($(cut -d' ' -f2- "$BENCH_OUT/work/prune.out")); ack p99 $(ms "$(field "$out" p99)"), max $(ms "$(field "$out" max)") with the prune vs $(ms "$(field "$base" p99)") (max $(ms "$(field "$base" max)")) before and $(ms "$(field "$after" p99)") (max $(ms "$(field "$after" max)")) after, without; $seconds (load $la)" \
            "—" "—" "prune time flat in ledger size; ack p99 unchanged"
        return
    fi
    row "control: open loop $rate/s three times over $(int "$old") old deliveries, pruned after the second" \
        "ack p99 $(ms "$(field "$base" p99)") / $(ms "$(field "$out" p99)") / $(ms "$(field "$after" p99)"), max $(ms "$(field "$base" max)") / $(ms "$(field "$out" max)") / $(ms "$(field "$after" max)"); $seconds; prune took $took s (load $la)" \
        "—" "—" "prune time flat in ledger size; ack p99 unchanged"
}

# "12.345ms" -> "12.3 ms"; "27442.2ms" -> "27.4 s"
ms() { awk -v v="${1%ms}" 'BEGIN { if (v >= 1000) printf "%.1f s", v / 1000; else printf "%.1f ms", v }'; }

# large_send URL N: POSTs large body N with curl; prints "<http code> <seconds>".
large_send() {
    curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 120 \
        -H "@$BENCH_OUT/work/large/$2.headers" -H "x-terra-trace-id: bench-large-$RUN_ID-$2" \
        --data-binary "@$BENCH_OUT/work/large/$2.json" "$1"
}

# typed_after N START: polls (every ~20 ms, at most 120 s) until large delivery N is processed;
# prints the seconds since START (a `date +%s.%N`). Observed from outside, so it counts the whole
# processing transaction whatever `processed_at` stamps.
typed_after() {
    local key="trace:bench-large-$RUN_ID-$1" start=$2 status deadline=$((SECONDS + 120))
    while ((SECONDS < deadline)); do
        status=$(sql "$TS_DB" "SELECT status FROM terra.deliveries WHERE dedupe_key = '$key'")
        if [[ $status == done || $status == parked ]]; then
            calc "$(date +%s.%N) - $start" 3
            return 0
        fi
        sleep 0.02
    done
    note "large: delivery $1 not processed within 120 s"
    echo 120
}

# Median and maximum of numbers (seconds) on stdin, in ms: "p50 X ms, max Y ms".
p50_max_ms() {
    sort -g | awk 'NF { v[++n] = $1 } END { if (n == 0) { print "n/a"; exit }
        printf "p50 %.0f ms, max %.0f ms", 1000 * v[int((n + 1) / 2)], 1000 * v[n] }'
}
p50_raw() { sort -g | awk 'NF { v[++n] = $1 } END { print (n ? v[int((n + 1) / 2)] : 0) }'; }

workload_large() {
    local n=$BENCH_LARGE_COUNT i res start la_ref la_ts stats ref_acks="" ts_acks="" ts_typed=""
    log "large: $n 4-hour 1 Hz activities, one at a time, reference receiver then terra-sink"
    db_fresh "$REF_DB"
    start_reference
    stats=$(bodies activity-4h "$n" --dir "$BENCH_OUT/work/large")
    la_ref=$(loadavg)
    for ((i = 0; i < n; i++)); do
        res=$(large_send "$REF_URL" "$i")
        [[ ${res%% *} == 200 ]] || note "large: reference answered $res"
        ref_acks+="${res#* }"$'\n'
    done
    stop_servers
    db_drop "$REF_DB"

    db_fresh "$TS_DB"
    start_terra_sink "${BENCH_TERRA_SINK_WORKERS:-}"
    bodies activity-4h "$n" --dir "$BENCH_OUT/work/large" >/dev/null
    la_ts=$(loadavg)
    for ((i = 0; i < n; i++)); do
        start=$(date +%s.%N)
        res=$(large_send "$TS_URL" "$i")
        [[ ${res%% *} == 200 ]] || note "large: terra-sink answered $res"
        ts_acks+="${res#* }"$'\n'
        # One at a time: the next is sent once this one's typed rows are committed.
        ts_typed+="$(typed_after "$i" "$start")"$'\n'
    done
    ledger_states large
    stop_servers
    db_drop "$TS_DB"

    local mb ref50 ack50 typed50
    mb=$(calc "$(field "$stats" avg_bytes) / 1e6" 1)
    ref50=$(p50_raw <<<"$ref_acks") ack50=$(p50_raw <<<"$ts_acks") typed50=$(p50_raw <<<"$ts_typed")
    row "4-hour 1 Hz activity ($mb MB), $n sent one at a time" \
        "ack $(p50_max_ms <<<"$ts_acks"); in typed tables (from the request's start) $(p50_max_ms <<<"$ts_typed") (load $la_ts)" \
        "ack = typed $(p50_max_ms <<<"$ref_acks") (load $la_ref)" \
        "p50 ack $(calc "$ref50 / $ack50" 1)×, typed $(calc "$ref50 / $typed50" 1)× (reference time / terra-sink time)" \
        "ack ≤ 150 ms, typed ≤ 1 s"
}

workload_drain() {
    local n=$BENCH_BACKLOG out la secs stored
    log "drain: terra-sink receives $n deliveries with TERRA_SINK_WORKERS=0"
    db_fresh "$TS_DB"
    start_terra_sink 0
    bodies typical "$n" --out "$BENCH_OUT/work/backlog.tsv" >/dev/null
    out=$(TERRA_SIGNING_SECRET="$SECRET" "$BIN/examples/load" --url "$TS_URL" \
        --bodies "$BENCH_OUT/work/backlog.tsv" --count "$n" --concurrency 64)
    log "drain: received: $out"
    stop_servers
    stored=$(sql "$TS_DB" "SELECT count(*) FROM terra.deliveries WHERE status = 'pending'")
    ((stored == n)) || note "drain: $stored pending deliveries in the ledger, not $n"

    log "drain: restarting terra-sink with workers; timing the drain of $stored deliveries"
    la=$(loadavg)
    local t0 ckpt
    ckpt=$(checkpoints)
    t0=$(sql "$TS_DB" "SELECT clock_timestamp()")
    start_terra_sink "${BENCH_TERRA_SINK_WORKERS:-}"
    local drained=yes
    wait_typed || drained=no
    la="$la, $(checkpoints_since "$ckpt")"
    secs=$(sql "$TS_DB" "SELECT extract(epoch FROM coalesce(CASE WHEN '$drained' = 'yes'
        THEN max(processed_at) END, clock_timestamp()) - '$t0'::timestamptz) FROM terra.deliveries")
    ledger_states drain
    stop_servers
    db_drop "$TS_DB"
    local shown
    shown=$(int "$(calc "$stored / $secs" 0)")
    [[ $drained == yes ]] || shown="< $shown (did not drain)"
    row "drain a ledger backlog of $(int "$stored") typical deliveries, receiving nothing" \
        "**${shown}/s** ($(calc "$secs" 0) s from the restart; load $la)" "—" "—" "≥ 5,000/s"
}

preflight() {
    [[ $BENCH_PG =~ ^postgres(ql)?://[^@/]*@?(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]] ||
        die "BENCH_PG must be a loopback server URL without a database, e.g. postgres://postgres@127.0.0.1:5432"
    command -v psql >/dev/null || die "psql is required"
    command -v curl >/dev/null || die "curl is required"
    command -v python3 >/dev/null || die "python3 is required (the reference receiver)"
    [[ -x $REFERENCE_RECEIVER_DIR/run.sh ]] || die "no reference receiver at $REFERENCE_RECEIVER_DIR"
    if ! command -v wrk >/dev/null; then
        log "installing wrk (apt-get)"
        local sudo=""
        ((EUID == 0)) || sudo="sudo -n"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q wrk >/dev/null ||
            { $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q wrk >/dev/null; } ||
            die "wrk is missing and could not be installed (apt-get install wrk)"
    fi
    sql postgres "SELECT 1" >/dev/null || die "PostgreSQL does not answer at $BENCH_PG"
    if [[ ${BENCH_SKIP_BUILD:-} != 1 ]]; then
        log "building the release binaries"
        cargo build --release --locked --bin terra-sink --example load --example bench_bodies \
            2>&1 | tail -n 3 >&2
    fi
    for b in terra-sink examples/load examples/bench_bodies; do
        [[ -x $BIN/$b ]] || die "missing $BIN/$b (build it, or unset BENCH_SKIP_BUILD)"
    done
}

# The processes using most CPU right now (top's second sample covers the last second).
busiest() {
    top -b -n 2 -d 1 -w 256 2>/dev/null | awk '/^top -/ { n++ } n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 1 {
        printf "%s%s %s%%", (k++ ? ", " : ""), $12, $9 } k == 5 { exit }'
    echo
}

machine() {
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "- machine: nproc $(nproc), $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(free -g | awk '/^Mem:/ { print $2 " GiB" }')"
    echo "- PostgreSQL: $(sql postgres "SHOW server_version"), synchronous_commit=$(sql postgres "SHOW synchronous_commit"), fsync=$(sql postgres "SHOW fsync")"
    echo "- load average at start: $(loadavg); busiest processes over 1 s: $(busiest)"
    echo "- wrk $BENCH_WRK_THREADS threads, $BENCH_BODIES distinct typical bodies over $BENCH_USERS users; reference receiver: $REFERENCE_RECEIVER_DIR (2 uvicorn workers)"
}

main() {
    mkdir -p "$BENCH_OUT/work"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    preflight
    local header
    header=$(machine)
    log "machine: $header"
    for w in $BENCH_WORKLOADS; do
        case $w in
        ack | e2e | open | large | drain | prune) "workload_$w" ;;
        *) die "unknown workload '$w' (ack e2e open large drain prune)" ;;
        esac
    done
    {
        echo "# terra-sink vs reference receiver, $(date -u +%Y-%m-%dT%H:%MZ)"
        echo
        echo "Command: \`${GIVEN}scripts/bench.sh\`"
        echo
        echo "$header"
        echo "- load average at end: $(loadavg)"
        echo
        echo "| workload | terra-sink | reference receiver | ratio | target |"
        echo "|---|---|---|---|---|"
        printf '%s\n' "${RESULTS[@]}"
        if ((${#NOTES[@]})); then
            echo
            echo "Notes:"
            printf -- '- %s\n' "${NOTES[@]}"
        fi
    } >"$BENCH_OUT/results.md"
    echo
    cat "$BENCH_OUT/results.md"
    echo
    log "results written to $BENCH_OUT/results.md"
}

main "$@"
