# shellcheck shell=bash
# PostgreSQL for development, tests and `scripts/sqlx-prepare.sh`.
#
# Usage (from another script):   . scripts/postgres.sh; ensure_postgres
#   -> DATABASE_URL is exported, its database exists and accepts connections.
# Usage (by hand):               scripts/postgres.sh [ensure|stop|status]
#   `ensure` prints the DATABASE_URL to use; `stop` stops the private cluster.
#
# ensure_postgres picks, in this order:
#   1. DATABASE_URL from the environment, or else from ./.env (the service reads .env too):
#      used as is, after checking that it accepts connections.
#   2. A server on 127.0.0.1:5432 that lets the `postgres` user in without a password:
#      postgres://postgres@127.0.0.1:5432/terra_sink (the database is created if missing).
#   3. A private cluster owned by this project, started on demand and reused afterwards:
#      postgres://postgres@127.0.0.1:54329/terra_sink. It listens on 127.0.0.1 only, with
#      trust authentication, and is tuned for tests (fsync off): never put real data in it.
#      If no PostgreSQL server binaries are found, Debian's `postgresql` package is
#      installed with apt-get (through sudo when not root).
# It prints one line on stderr saying which it used, and is otherwise quiet.
#
# Knobs (environment):
#   TERRA_SINK_PG_FORCE_PRIVATE=1  skip step 2 (used to test the private-cluster path).
#   TERRA_SINK_PG_PORT             private cluster port (default 54329).
#   TERRA_SINK_PG_DATA             private cluster data directory (default: /tmp/terra-sink-pg
#                                  as root, else $XDG_RUNTIME_DIR/terra-sink-pg or
#                                  /tmp/terra-sink-pg-<uid>).
#   TERRA_SINK_PG_DATABASE         database name for steps 2 and 3 (default terra_sink).
#
# As root the private cluster runs as the `postgres` system user (initdb refuses root), so its
# data directory defaults to /tmp, which that user can reach; otherwise it runs as the caller.
# Safe to source into `set -euo pipefail` scripts; defines only _tsp_* helpers plus
# ensure_postgres, stop_private_postgres and mask_database_url.

_tsp_say() { printf '%s\n' "postgres: $*" >&2; }

# Prints a database URL with its password replaced by ***.
mask_database_url() {
    printf '%s\n' "$1" | sed -E \
        -e 's#^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?]*):[^@/?]*@#\1:***@#' \
        -e 's#([?&]password=)[^&]*#\1***#g'
}

_tsp_repo_root() { (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); }

# Value of KEY in ./.env (simple KEY=VALUE lines, optional `export` and quotes), or nothing.
_tsp_dotenv_value() {
    local key=$1 file=${2:-.env} line value=
    [[ -f $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        if [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*=[[:space:]]*(.*)$ ]]; then
            value=${BASH_REMATCH[2]}
            if [[ $value =~ ^\"([^\"]*)\" || $value =~ ^\'([^\']*)\' ]]; then
                value=${BASH_REMATCH[1]}
            else
                value=${value%%[[:space:]]#*}
                value=${value%"${value##*[![:space:]]}"}
            fi
            break # like dotenvy: the first definition wins
        fi
    done <"$file"
    printf '%s' "$value"
}

_tsp_sudo() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -- "$@"
    else
        _tsp_say "need root for: $* (sudo is not available)"
        return 1
    fi
}

# Puts the newest /usr/lib/postgresql/<v>/bin on PATH unless initdb and pg_ctl already are.
_tsp_server_bin_on_path() {
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
    local dir dirs=(/usr/lib/postgresql/*/bin)
    dir=$(printf '%s\n' "${dirs[@]}" | sort -V | tail -n 1)
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then
        PATH="$dir:$PATH"
        export PATH
        return 0
    fi
    return 1
}

_tsp_client_on_path() {
    command -v psql >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1 && return 0
    _tsp_server_bin_on_path >/dev/null 2>&1 || true
    command -v psql >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1
}

# Installs Debian's postgresql package (server + client) once.
_tsp_install_postgresql() {
    if ! command -v apt-get >/dev/null 2>&1; then
        _tsp_say "PostgreSQL is not installed and apt-get is not available: install PostgreSQL (initdb, pg_ctl, psql) or set DATABASE_URL"
        return 1
    fi
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/terra-sink-apt.XXXXXX")
    _tsp_say "installing PostgreSQL with apt-get (one time; log: $log)"
    if ! { _tsp_sudo apt-get update -q &&
        _tsp_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            postgresql postgresql-client; } </dev/null >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        _tsp_say "apt-get failed; see $log"
        return 1
    fi
    rm -f "$log"
}

# Runs psql without ever prompting; extra arguments follow the connection arguments.
_tsp_psql() { PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5} psql -X -w -v ON_ERROR_STOP=1 -q "$@" </dev/null; }

# Can the postgres user log in over TCP at 127.0.0.1:$1 without any password?
_tsp_trusts_postgres() {
    local port=$1
    pg_isready -q -h 127.0.0.1 -p "$port" -t 3 >/dev/null 2>&1 || return 1
    [[ $(PGPASSWORD='' PGPASSFILE=/dev/null _tsp_psql -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -Atc 'SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user' 2>/dev/null) == t ]]
}

# Creates database $2 on 127.0.0.1:$1 (as postgres) unless it exists; tolerates a concurrent creator.
_tsp_create_database() {
    local port=$1 db=$2 conn=(-h 127.0.0.1 -p "$1" -U postgres -d postgres) exists err
    exists=$(_tsp_psql "${conn[@]}" -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'")
    [[ $exists == 1 ]] && return 0
    if ! err=$(_tsp_psql "${conn[@]}" -c "CREATE DATABASE \"$db\"" 2>&1); then
        exists=$(_tsp_psql "${conn[@]}" -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'")
        if [[ $exists != 1 ]]; then
            printf '%s\n' "$err" >&2
            _tsp_say "cannot create database $db on 127.0.0.1:$port"
            return 1
        fi
    fi
}

_tsp_private_port() { printf '%s' "${TERRA_SINK_PG_PORT:-54329}"; }

_tsp_private_dir() {
    if [[ -n ${TERRA_SINK_PG_DATA:-} ]]; then
        printf '%s' "$TERRA_SINK_PG_DATA"
    elif [[ $(id -u) -eq 0 ]]; then
        printf '%s' /tmp/terra-sink-pg
    elif [[ -n ${XDG_RUNTIME_DIR:-} ]]; then
        printf '%s' "$XDG_RUNTIME_DIR/terra-sink-pg"
    else
        printf '%s' "/tmp/terra-sink-pg-$(id -u)"
    fi
}

# Runs a command as the private cluster's owner: `postgres` when root, the caller otherwise.
_tsp_as_owner() {
    if [[ $(id -u) -ne 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u postgres -- "$@")
    else
        local cmd
        printf -v cmd '%q ' "$@"
        (cd / && su -s /bin/sh postgres -c "$cmd")
    fi
}

# Initialises (once) and starts (if needed) the private cluster.
_tsp_start_private() {
    local dir port owner
    dir=$(_tsp_private_dir)
    port=$(_tsp_private_port)
    if ! _tsp_server_bin_on_path; then
        _tsp_install_postgresql
        _tsp_server_bin_on_path || {
            _tsp_say "installed PostgreSQL, but cannot find initdb/pg_ctl under /usr/lib/postgresql/*/bin"
            return 1
        }
    fi
    _tsp_client_on_path || {
        _tsp_say "psql/pg_isready not found; install postgresql-client"
        return 1
    }

    if [[ $(id -u) -eq 0 ]]; then
        owner=postgres
        if ! id -u postgres >/dev/null 2>&1; then
            useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
                --shell /bin/sh postgres
        fi
    else
        owner=$(id -un)
    fi

    if [[ -L $dir ]]; then
        _tsp_say "$dir is a symlink; refusing to use it (set TERRA_SINK_PG_DATA)"
        return 1
    fi
    if [[ ! -d $dir ]]; then
        mkdir -p "$(dirname "$dir")"
        mkdir -m 700 "$dir"
        [[ $owner == "$(id -un)" ]] || chown "$owner:" "$dir"
    fi
    if [[ $(stat -c %U "$dir") != "$owner" ]]; then
        _tsp_say "$dir belongs to $(stat -c %U "$dir"), not $owner; remove it or set TERRA_SINK_PG_DATA"
        return 1
    fi

    if [[ ! -f $dir/PG_VERSION ]]; then
        local out
        if ! out=$(_tsp_as_owner initdb -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C 2>&1); then
            printf '%s\n' "$out" >&2
            _tsp_say "initdb failed for $dir"
            return 1
        fi
        # Only 127.0.0.1 (and the socket inside the data directory), trust, throwaway settings.
        printf '%s\n' \
            '# terra-sink private development cluster: trust, local socket and 127.0.0.1 only.' \
            'local all all              trust' \
            'host  all all 127.0.0.1/32 trust' |
            _tsp_as_owner tee "$dir/pg_hba.conf" >/dev/null
        printf '%s\n' '' \
            '# --- terra-sink private development cluster (scripts/postgres.sh) ---' \
            "listen_addresses = '127.0.0.1'" \
            "port = $port" \
            "unix_socket_directories = '$dir'" \
            'max_connections = 200' \
            'fsync = off' \
            'synchronous_commit = off' \
            'full_page_writes = off' |
            _tsp_as_owner tee -a "$dir/postgresql.conf" >/dev/null
    fi

    if ! _tsp_as_owner pg_ctl -D "$dir" status >/dev/null 2>&1; then
        if ! _tsp_as_owner pg_ctl -D "$dir" -w -t 60 -l "$dir/logfile" -o "-p $port" start >/dev/null 2>&1; then
            tail -n 20 "$dir/logfile" >&2 || true
            _tsp_say "cannot start the private cluster in $dir on port $port (log: $dir/logfile)"
            return 1
        fi
    fi
    if ! _tsp_trusts_postgres "$port"; then
        _tsp_say "the private cluster in $dir runs but does not accept postgres on 127.0.0.1:$port"
        return 1
    fi
}

# Stops the private cluster if it runs (the data stays for next time).
stop_private_postgres() {
    local dir
    dir=$(_tsp_private_dir)
    [[ -f $dir/PG_VERSION ]] || return 0
    _tsp_server_bin_on_path || return 0
    if _tsp_as_owner pg_ctl -D "$dir" status >/dev/null 2>&1; then
        _tsp_as_owner pg_ctl -D "$dir" -w -t 60 -m fast stop >/dev/null
        _tsp_say "stopped the private cluster in $dir"
    fi
}

# Checks that $1 accepts connections (with psql when available, else a TCP probe).
_tsp_check_url() {
    local url=$1 err
    if _tsp_client_on_path; then
        if err=$(_tsp_psql -d "$url" -Atc 'SELECT 1' 2>&1 >/dev/null); then
            local can
            can=$(_tsp_psql -d "$url" -Atc \
                'SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user' 2>/dev/null || true)
            [[ $can != f ]] ||
                _tsp_say "note: this role lacks CREATEDB; the tests (#[sqlx::test]) need it"
            return 0
        fi
        # libpq rejects some URL parameters that sqlx accepts: fall back to a TCP probe then.
        if [[ $err != *"invalid URI query parameter"* ]]; then
            printf '%s\n' "$err" >&2
            return 1
        fi
    fi
    local rest=${url#*://} hostport host port
    rest=${rest#*@}
    hostport=${rest%%[/?]*}
    if [[ $hostport == \[* ]]; then
        host=${hostport%%]*}
        host=${host#[}
        port=${hostport##*]}
        port=${port#:}
    else
        host=${hostport%%:*}
        port=${hostport#"$host"}
        port=${port#:}
    fi
    host=${host:-127.0.0.1}
    port=${port:-5432}
    if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
        _tsp_say "nothing accepts connections on $host:$port"
        return 1
    fi
}

ensure_postgres() {
    local db=${TERRA_SINK_PG_DATABASE:-terra_sink} from='the environment' root
    if [[ -z ${DATABASE_URL:-} ]]; then
        root=$(_tsp_repo_root)
        DATABASE_URL=$(_tsp_dotenv_value DATABASE_URL "$root/.env")
        from=$root/.env
    fi
    if [[ -n ${DATABASE_URL:-} ]]; then
        export DATABASE_URL
        if ! _tsp_check_url "$DATABASE_URL"; then
            _tsp_say "DATABASE_URL (from $from) = $(mask_database_url "$DATABASE_URL") is not reachable;" \
                "start that server, or unset DATABASE_URL to let this script provide one"
            return 1
        fi
        _tsp_say "using DATABASE_URL from $from: $(mask_database_url "$DATABASE_URL")"
        return 0
    fi

    if [[ ${TERRA_SINK_PG_FORCE_PRIVATE:-0} != 1 ]] && _tsp_client_on_path && _tsp_trusts_postgres 5432; then
        _tsp_create_database 5432 "$db"
        export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
        _tsp_say "using the local server: $DATABASE_URL"
        return 0
    fi

    local port
    port=$(_tsp_private_port)
    _tsp_start_private
    _tsp_create_database "$port" "$db"
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/$db"
    _tsp_say "using the private cluster in $(_tsp_private_dir): $DATABASE_URL"
}

# Executed rather than sourced: a small command line.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case ${1:-ensure} in
        ensure) ensure_postgres && mask_database_url "$DATABASE_URL" ;;
        stop) stop_private_postgres ;;
        status)
            _tsp_server_bin_on_path && _tsp_as_owner pg_ctl -D "$(_tsp_private_dir)" status
            ;;
        *)
            echo "usage: $0 [ensure|stop|status]" >&2
            exit 2
            ;;
    esac
fi
