#!/usr/bin/env bash
# Quick start: runs the whole test suite against a development PostgreSQL.
#
#   scripts/test.sh              every test target (lib, bins, tests/, benches in test mode)
#   scripts/test.sh ARGS...      ARGS go to the test runner (e.g. a name filter)
#
# Uses cargo-nextest when installed, else `cargo test`. TERRA_SINK_TEST_RUNNER=cargo|nextest
# forces one. There are no doc tests (examples live in tests/, and Cargo.toml sets
# `doctest = false`), so there is no doc-test phase to compile.
# PostgreSQL comes from scripts/postgres.sh; #[sqlx::test] creates a database per test from
# DATABASE_URL, so its role needs CREATEDB.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/postgres.sh
. scripts/postgres.sh
ensure_postgres
export DATABASE_URL

# Tests talk to servers on loopback only: keep any HTTP proxy of the environment away from them
# (cargo still uses the proxy for crates.io).
for var in NO_PROXY no_proxy; do
    export "$var=127.0.0.1,localhost,::1${!var:+,${!var}}"
done
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

runner=${TERRA_SINK_TEST_RUNNER:-}
if [[ -z $runner ]]; then
    if cargo nextest --version >/dev/null 2>&1; then runner=nextest; else runner=cargo; fi
fi

run() {
    printf '+ %s\n' "$*" >&2
    "$@"
}

echo "test: building the test binaries (the first build takes several minutes), then running them" >&2

case $runner in
    nextest) run cargo nextest run --locked --all-targets --no-fail-fast "$@" ;;
    cargo)
        # cargo test closes with the count of its last test binary (often 0 for an example);
        # end with the total instead.
        log=$(mktemp "${TMPDIR:-/tmp}/terra-sink-test.XXXXXX")
        status=0
        run cargo test --locked --all-targets --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
        awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' \
            "${log}"
        rm -f "$log"
        exit "$status"
        ;;
    *)
        echo "test: TERRA_SINK_TEST_RUNNER must be cargo or nextest, not '$runner'" >&2
        exit 2
        ;;
esac
