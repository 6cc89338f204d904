#!/usr/bin/env bash
# Runs each libFuzzer target in fuzz/ for a bounded time (cargo fuzz); exits non-zero when one
# finds a crash (the input is then in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh                       every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh peek one target, 10 minutes
#
# Targets: signature_header (SignatureHeader::parse, and sign -> parse -> verify), peek (the
# ledger's first look at a body), event_from_slice (Event::from_slice, and re-encoding).
# Seeds: the built-in samples and Terra's webhook examples; the corpus grows in fuzz/corpus/
# (not committed). cargo-fuzz is installed from crates.io when missing; it needs a nightly
# toolchain, or stable with RUSTC_BOOTSTRAP=1 (used when no nightly is installed).
# FUZZ_SANITIZER (default none: the code under test is safe Rust, so panics, aborts, leaks of
# time and memory are what is looked for; `address` also works), FUZZ_RSS_LIMIT_MB (2048).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"

seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-none}
rss_limit=${FUZZ_RSS_LIMIT_MB:-2048}
all_targets=(signature_header peek event_from_slice)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
fi

seed() {
    local dir=corpus/$1
    shift
    mkdir -p "$dir"
    for file in "$@"; do
        cp -n "$file" "$dir/seed-$(basename "$file")"
    done
}
jsons=(../samples/*.json ../schemas/terra/webhook-examples/*.json)
seed event_from_slice "${jsons[@]}"
seed peek "${jsons[@]}"
mkdir -p corpus/signature_header
printf '\x30t=1723808700,v1=%064d{"type":"healthcheck"}' 0 >corpus/signature_header/seed-valid
printf '\x20t=1723808700, v1=zz, v0=abc ,v1=%064d' 0 >corpus/signature_header/seed-spaces

cargo "${toolchain[@]}" fuzz build --sanitizer "$sanitizer" --debug-assertions >&2
status=0
for target in "${targets[@]}"; do
    printf '\n==> %s for %s s\n' "$target" "$seconds" >&2
    log=$(mktemp "${TMPDIR:-/tmp}/terra-sink-fuzz.XXXXXX")
    if cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" --debug-assertions "$target" \
        -- -max_total_time="$seconds" -rss_limit_mb="$rss_limit" -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
        # The assertion or panic, and where libFuzzer saved the input.
        grep -A8 -m1 'panicked at\|ERROR: libFuzzer' "$log" >&2 || tail -40 "$log" >&2
        grep -A2 -m1 'Failing input' "$log" >&2 || true
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    echo "$target: $result, $runs runs in ${seconds} s, coverage $cov edges, corpus $(ls "corpus/$target" | wc -l) inputs"
    rm -f "$log"
done
exit "$status"
