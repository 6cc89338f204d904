#!/usr/bin/env bash
# Regenerates the committed sqlx offline query data in .sqlx/ (what `cargo sqlx prepare` does,
# without installing sqlx-cli). Run it after changing a sqlx::query!-style macro or a migration.
#
#   scripts/sqlx-prepare.sh          rewrite .sqlx/ (stale files disappear)
#   scripts/sqlx-prepare.sh --check  only compare with .sqlx/; exit 1 if it is not current
#                                    (this is what scripts/check-sqlx.sh runs)
#
# How: a scratch database (terra_sink_sqlx_<pid>, dropped afterwards) on the server that
# scripts/postgres.sh provides gets every migrations/*.sql applied with psql; then the crate is
# type-checked ONLINE against it (SQLX_OFFLINE=false), and sqlx's macros write one
# query-<hash>.json per query into SQLX_OFFLINE_DIR. The check uses its own target directory
# (<target>/sqlx-prepare), where `cargo clean -p terra-sink` forces the macros to run again
# without disturbing the normal target directory (others may be building or testing in it).
# TERRA_SINK_SQLX_TARGET_DIR overrides that directory: CI points it at the normal target
# directory to reuse the dependencies clippy just checked.
set -euo pipefail

mode="write"
case ${1:-} in
    "") ;;
    --check) mode="check" ;;
    -h | --help)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: $0 [--check]" >&2
        exit 2
        ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/postgres.sh
. scripts/postgres.sh
ensure_postgres
_tsp_client_on_path || {
    echo "sqlx-prepare: psql is needed (install postgresql-client)" >&2
    exit 1
}

scratch_db=terra_sink_sqlx_$$
# DATABASE_URL with its database name replaced: scheme://authority/<db>[?query]
url_noquery=${DATABASE_URL%%\?*}
url_query=${DATABASE_URL#"$url_noquery"}
url_rest=${url_noquery#*://}
scratch_url="${url_noquery%%://*}://${url_rest%%/*}/$scratch_db$url_query"

target_dir=${TERRA_SINK_SQLX_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}/sqlx-prepare}
mkdir -p "$target_dir"
out_dir=$(mktemp -d "$target_dir/offline.XXXXXX")

admin_psql() { psql -X -w -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" "$@" </dev/null; }
drop_scratch() {
    admin_psql -c "DROP DATABASE IF EXISTS \"$scratch_db\" WITH (FORCE)" 2>/dev/null ||
        admin_psql -c "DROP DATABASE IF EXISTS \"$scratch_db\"" >/dev/null 2>&1 || true
}
cleanup() {
    drop_scratch
    rm -rf "$out_dir"
}
trap cleanup EXIT

echo "sqlx-prepare: migrating scratch database $scratch_db" >&2
admin_psql -c "CREATE DATABASE \"$scratch_db\""
shopt -s nullglob
migrations=(migrations/*.sql)
shopt -u nullglob
while IFS= read -r migration; do
    [[ -n $migration && $migration != *.down.sql ]] || continue
    psql -X -w -q -v ON_ERROR_STOP=1 -d "$scratch_url" -f "$migration" </dev/null >/dev/null ||
        {
            echo "sqlx-prepare: $migration failed to apply" >&2
            exit 1
        }
done < <(printf '%s\n' "${migrations[@]}" | LC_ALL=C sort)

echo "sqlx-prepare: type-checking the crate online (target dir $target_dir)" >&2
export CARGO_TARGET_DIR=$target_dir
cargo clean --quiet -p terra-sink
if ! SQLX_OFFLINE=false DATABASE_URL=$scratch_url SQLX_OFFLINE_DIR=$out_dir \
    cargo check --all-targets --locked </dev/null; then
    echo "sqlx-prepare: cargo check failed against the migrated database; .sqlx/ left unchanged" >&2
    exit 1
fi

if [[ -d .sqlx ]]; then current=.sqlx; else current=$(mktemp -d "$target_dir/empty.XXXXXX"); fi
count=$(find "$out_dir" -maxdepth 1 -name 'query-*.json' | wc -l)
if diff_out=$(diff -r "$current" "$out_dir"); then same=1; else same=0; fi
[[ $current == .sqlx ]] || rmdir "$current"

if [[ $mode == check ]]; then
    if [[ $same == 1 ]]; then
        echo "sqlx-prepare: .sqlx/ is current ($count queries)" >&2
        exit 0
    fi
    printf '%s\n' "$diff_out" | sed "s#$out_dir#<generated>#g" | head -n 60 >&2
    echo "sqlx-prepare: .sqlx/ is NOT current: run scripts/sqlx-prepare.sh and commit .sqlx/" >&2
    exit 1
fi

if [[ $same == 1 ]]; then
    echo "sqlx-prepare: .sqlx/ was already current ($count queries)" >&2
    exit 0
fi
chmod 755 "$out_dir"
rm -rf .sqlx.old
[[ ! -e .sqlx ]] || mv .sqlx .sqlx.old
mv "$out_dir" .sqlx
rm -rf .sqlx.old
echo "sqlx-prepare: wrote $count query files to .sqlx/ (commit them)" >&2
