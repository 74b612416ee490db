#!/usr/bin/env bash
# Local services of the production profile, for development and tests:
# PostgreSQL 15 + PostGIS + pgSTAC, and Azurite (Azure Blob Storage emulator).
#
#   bash scripts/services.sh up     # install what is missing, start, create role/databases, migrate
#   bash scripts/services.sh down   # stop what `up` started (by PID / marker file)
#   bash scripts/services.sh status
#
# Idempotent: run it as often as you like; on an installed machine `up` takes a few
# seconds. Run as root (apt-get, pg_ctlcluster, runuser), as CI and the dev machines do.
#
# Connection values come from the same environment variables as
# geo_platform.settings.PostgresSettings, with the same defaults:
#   GEO_PLATFORM_PG_HOST (127.0.0.1)  GEO_PLATFORM_PG_PORT (5432)
#   GEO_PLATFORM_PG_USER (geo_platform)  GEO_PLATFORM_PG_PASSWORD (geo_platform)
#   GEO_PLATFORM_PG_DATABASE (geo_platform)  GEO_PLATFORM_PG_DAGSTER_DATABASE (dagster)
# The script manages the machine's own cluster "15 main": the host must be local and
# the port must be that cluster's port.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.services"            # git-ignored
VENV_BIN="$ROOT/.venv/bin"

PG_VERSION=15
PG_CLUSTER=main
PG_HOST="${GEO_PLATFORM_PG_HOST:-127.0.0.1}"
PG_PORT="${GEO_PLATFORM_PG_PORT:-5432}"
PG_USER="${GEO_PLATFORM_PG_USER:-geo_platform}"
PG_PASSWORD="${GEO_PLATFORM_PG_PASSWORD:-geo_platform}"
PG_DATABASE="${GEO_PLATFORM_PG_DATABASE:-geo_platform}"
PG_DAGSTER_DATABASE="${GEO_PLATFORM_PG_DAGSTER_DATABASE:-dagster}"
PG_STARTED_MARKER="$STATE/postgres.started"

AZURITE_VERSION=3.37.0
AZURITE_HOST=127.0.0.1
AZURITE_PORT=10000
AZURITE_PREFIX="$STATE/npm"
AZURITE_BIN="$AZURITE_PREFIX/node_modules/.bin/azurite-blob"
AZURITE_PID_FILE="$STATE/azurite.pid"
AZURITE_LOG="$STATE/azurite.log"

WAIT_SECONDS=30

log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# psql as the postgres superuser over the Unix socket (peer authentication).
psql_admin() {
    local db="$1"
    shift
    PGOPTIONS="-c client_min_messages=warning" runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -At -p "$PG_PORT" -d "$db" "$@"
}

# Close every descriptor but stdin/stdout/stderr in the current (sub)shell. Used right
# before starting a daemon: it must not keep our lock (fd 9) or a caller's pipe (make,
# CI, a terminal multiplexer) open after this script has exited.
close_extra_fds() {
    local fd
    for fd in "/proc/$BASHPID/fd/"*; do
        fd="${fd##*/}"
        if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# pg_wait HOST|"the Unix socket": poll pg_isready until the server accepts connections.
pg_wait() {
    local args=(-q -p "$PG_PORT") i
    [ "$1" = "the Unix socket" ] || args+=(-h "$1")
    for ((i = 0; i < WAIT_SECONDS * 5; i++)); do
        pg_isready "${args[@]}" && return 0
        sleep 0.2
    done
    return 1
}

pg_running() { pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1; }

# Percent-encode for the userinfo part of a URL (the password may hold '@', ':' ...).
urlencode() {
    local s="$1" out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c="${s:i:1}"
        case "$c" in
            [a-zA-Z0-9.~_-]) out+="$c" ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

is_loopback_list() {
    # "localhost", "127.0.0.1", "::1", possibly comma-separated; anything else (*, 0.0.0.0,
    # a LAN address, "") is not loopback-only.
    local item
    local IFS=','
    [ -n "$1" ] || return 1
    for item in $1; do
        item="${item// /}"
        case "$item" in
            localhost | 127.0.0.1 | ::1) ;;
            *) return 1 ;;
        esac
    done
}

azurite_pid_alive() {
    local pid
    [ -f "$AZURITE_PID_FILE" ] || return 1
    pid="$(cat "$AZURITE_PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled PID: it must still be our Azurite.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q azurite
}

azurite_answers() {
    if command -v curl >/dev/null 2>&1; then
        # Any HTTP status (Azurite answers 403 to an unsigned list) means it is serving.
        local code
        code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' \
            "http://$AZURITE_HOST:$AZURITE_PORT/devstoreaccount1?comp=list" || true)"
        [ -n "$code" ] && [ "$code" != "000" ]
    else
        tcp_open "$AZURITE_HOST" "$AZURITE_PORT"
    fi
}

# ---------------------------------------------------------------- PostgreSQL

postgres_up() {
    if [ ! -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ]; then
        apt_install "postgresql-$PG_VERSION"
    fi
    if [ ! -f "/usr/share/postgresql/$PG_VERSION/extension/postgis.control" ]; then
        apt_install "postgresql-$PG_VERSION-postgis-3"
    else
        log "PostGIS: installed"
    fi

    local cluster_port
    cluster_port="$(pg_conftool -s "$PG_VERSION" "$PG_CLUSTER" show port 2>/dev/null || echo 5432)"
    [ "$cluster_port" = "$PG_PORT" ] ||
        die "cluster $PG_VERSION/$PG_CLUSTER uses port $cluster_port but GEO_PLATFORM_PG_PORT=$PG_PORT"

    if pg_running; then
        log "PostgreSQL $PG_VERSION/$PG_CLUSTER: already running"
    else
        log "PostgreSQL $PG_VERSION/$PG_CLUSTER: starting"
        (close_extra_fds; exec pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start)
        : >"$PG_STARTED_MARKER"   # `down` stops the cluster only if `up` started it
    fi

    # First over the Unix socket (what psql_admin uses), so that a server that is not
    # reachable over TCP at all (listen_addresses='') can still be checked and repaired.
    pg_wait "the Unix socket" || die "PostgreSQL does not answer after ${WAIT_SECONDS}s (see /var/log/postgresql/)"

    # Loopback only. Debian's default (listen_addresses unset) is 'localhost'; ALTER SYSTEM
    # wins over postgresql.conf and conf.d, and the value needs a restart to take effect.
    local listen
    listen="$(psql_admin postgres -c 'SHOW listen_addresses')"
    if ! is_loopback_list "$listen"; then
        log "PostgreSQL: listen_addresses='$listen' is not loopback-only: setting 'localhost' and restarting"
        psql_admin postgres -c "ALTER SYSTEM SET listen_addresses = 'localhost'"
        (close_extra_fds; exec pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart)
        pg_wait "the Unix socket" || die "PostgreSQL does not answer after its restart"
        listen="$(psql_admin postgres -c 'SHOW listen_addresses')"
        is_loopback_list "$listen" || die "listen_addresses is still '$listen' (set on the command line?)"
    fi
    log "PostgreSQL: listen_addresses='$listen' (loopback only)"

    pg_wait "$PG_HOST" ||
        die "PostgreSQL does not answer on $PG_HOST:$PG_PORT after ${WAIT_SECONDS}s (see /var/log/postgresql/)"
    log "PostgreSQL: ready on $PG_HOST:$PG_PORT"

    # SUPERUSER: acceptable for this local dev/test cluster only, because `pypgstac migrate`
    # creates extensions (postgis, btree_gist, unaccent) and pgSTAC's roles. A production
    # server gets a pre-migrated database and a non-superuser role instead.
    # Created if missing; the password and attributes are (re)set every time so that the
    # role always matches GEO_PLATFORM_PG_PASSWORD.
    psql_admin postgres -v role="$PG_USER" -v pw="$PG_PASSWORD" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I', :'role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN SUPERUSER PASSWORD %L', :'role', :'pw') \gexec
SQL
    log "PostgreSQL: role $PG_USER (login, superuser)"

    local db
    for db in "$PG_DATABASE" "$PG_DAGSTER_DATABASE"; do
        psql_admin postgres -v db="$db" -v role="$PG_USER" >/dev/null <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
        log "PostgreSQL: database $db (owner $PG_USER)"
    done

    local postgis
    postgis="$(psql_admin "$PG_DATABASE" -c 'CREATE EXTENSION IF NOT EXISTS postgis' \
        -c "SELECT extversion FROM pg_extension WHERE extname = 'postgis'")"
    log "PostgreSQL: extension postgis $postgis in $PG_DATABASE"

    [ -x "$VENV_BIN/pypgstac" ] || die "$VENV_BIN/pypgstac not found: run 'make install' first"
    local dsn target current
    dsn="postgresql://$(urlencode "$PG_USER"):$(urlencode "$PG_PASSWORD")@$PG_HOST:$PG_PORT/$(urlencode "$PG_DATABASE")"
    target="$("$VENV_BIN/python" -c 'from importlib.metadata import version; print(version("pypgstac"))')"
    current=""
    if [ "$(psql_admin "$PG_DATABASE" -c "SELECT to_regprocedure('pgstac.get_version()') IS NOT NULL")" = t ]; then
        current="$(psql_admin "$PG_DATABASE" -c 'SELECT pgstac.get_version()')"
    fi
    if [ "$current" = "$target" ]; then
        log "pgSTAC: schema $current already migrated"
    else
        log "pgSTAC: migrating ${current:-(none)} -> $target"
        "$VENV_BIN/pypgstac" migrate --dsn "$dsn" >/dev/null
        current="$(psql_admin "$PG_DATABASE" -c 'SELECT pgstac.get_version()')"
        [ "$current" = "$target" ] || die "pgSTAC is at '$current' after migrate, expected $target"
        log "pgSTAC: schema $current"
    fi
}

postgres_down() {
    if [ -f "$PG_STARTED_MARKER" ]; then
        if pg_running; then
            log "PostgreSQL $PG_VERSION/$PG_CLUSTER: stopping (started by services.sh up)"
            pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop
        else
            log "PostgreSQL $PG_VERSION/$PG_CLUSTER: already stopped"
        fi
        rm -f "$PG_STARTED_MARKER"
    else
        log "PostgreSQL $PG_VERSION/$PG_CLUSTER: not started by services.sh up, left as it is"
    fi
}

# ---------------------------------------------------------------- Azurite

azurite_up() {
    # One that already answers is used as it is: nothing to install for it.
    if azurite_pid_alive; then
        log "Azurite: already running (pid $(cat "$AZURITE_PID_FILE"))"
        return
    elif tcp_open "$AZURITE_HOST" "$AZURITE_PORT"; then
        rm -f "$AZURITE_PID_FILE"
        log "Azurite: $AZURITE_HOST:$AZURITE_PORT is already served by a process not started here; using it"
        return
    fi
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    local installed=""
    if [ -f "$AZURITE_PREFIX/node_modules/azurite/package.json" ]; then
        installed="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$AZURITE_PREFIX/node_modules/azurite/package.json")"
    fi
    if [ "$installed" = "$AZURITE_VERSION" ] && [ -x "$AZURITE_BIN" ]; then
        log "Azurite $AZURITE_VERSION: installed in ${AZURITE_PREFIX#"$ROOT"/}"
    else
        log "Azurite: npm install azurite@$AZURITE_VERSION into ${AZURITE_PREFIX#"$ROOT"/}"
        mkdir -p "$AZURITE_PREFIX"
        npm install --prefix "$AZURITE_PREFIX" --no-audit --no-fund --loglevel=error \
            "azurite@$AZURITE_VERSION" >/dev/null
    fi

    mkdir -p "$STATE/azurite"
    # setsid: its own session, so it survives the calling shell and make; stdin closed.
    # In this non-interactive shell the background subshell is not a process-group
    # leader, so setsid does not fork, and with exec all along $! is Azurite's (node's)
    # own PID.
    (
        close_extra_fds
        exec setsid "$AZURITE_BIN" --blobHost "$AZURITE_HOST" --blobPort "$AZURITE_PORT" \
            --location "$STATE/azurite" --skipApiVersionCheck --loose --disableTelemetry --silent
    ) </dev/null >>"$AZURITE_LOG" 2>&1 &
    echo $! >"$AZURITE_PID_FILE"
    log "Azurite: started (pid $!, log ${AZURITE_LOG#"$ROOT"/})"
}

# Separate from azurite_up so that Azurite boots while PostgreSQL is being set up.
azurite_wait() {
    local i
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
        azurite_answers && break
        if [ -f "$AZURITE_PID_FILE" ] && ! azurite_pid_alive; then
            die "Azurite exited; see $AZURITE_LOG: $(tail -n 5 "$AZURITE_LOG" 2>/dev/null)"
        fi
        sleep 0.1
    done
    azurite_answers || die "Azurite does not answer on $AZURITE_HOST:$AZURITE_PORT after ${WAIT_SECONDS}s; see $AZURITE_LOG"
    log "Azurite: ready on http://$AZURITE_HOST:$AZURITE_PORT/devstoreaccount1"
}

azurite_down() {
    if ! azurite_pid_alive; then
        rm -f "$AZURITE_PID_FILE"
        log "Azurite: not running (nothing started by services.sh up)"
        return
    fi
    local pid i
    pid="$(cat "$AZURITE_PID_FILE")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        log "Azurite: stopped (pid $pid, SIGKILL after 10 s)"
    else
        log "Azurite: stopped (pid $pid)"
    fi
    rm -f "$AZURITE_PID_FILE"
}

# ---------------------------------------------------------------- main

status() {
    if pg_running && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
        log "PostgreSQL: up on $PG_HOST:$PG_PORT"
    else
        log "PostgreSQL: down"
    fi
    if azurite_answers; then
        log "Azurite: up on $AZURITE_HOST:$AZURITE_PORT"
    else
        log "Azurite: down"
    fi
}

main() {
    local action="${1:-}"
    case "$action" in
        up | down | status) ;;
        *) die "usage: $0 up|down|status" ;;
    esac
    if [ "$action" != status ]; then
        [ "$(id -u)" = 0 ] || die "run as root: it uses apt-get, pg_ctlcluster and runuser"
        case "$PG_HOST" in
            127.0.0.1 | localhost | ::1) ;;
            *) die "GEO_PLATFORM_PG_HOST=$PG_HOST is not local: this script only manages the local cluster" ;;
        esac
    fi
    mkdir -p "$STATE"
    # One `up`/`down` at a time (e.g. two make invocations in parallel).
    exec 9>"$STATE/services.lock"
    flock 9
    local start=$SECONDS
    case "$action" in
        up)
            azurite_up
            postgres_up
            azurite_wait
            log "up: done in $((SECONDS - start)) s"
            ;;
        down)
            azurite_down
            postgres_down
            ;;
        status) status ;;
    esac
}

main "$@"
