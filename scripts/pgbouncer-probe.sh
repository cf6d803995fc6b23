#!/usr/bin/env bash
# Runs crates/db/examples/pgbouncer_probe.rs through a private PgBouncer in
# transaction mode (Debian's, run as the postgres user: it refuses root),
# then against Postgres directly, and shows what PgBouncer logged.
#   bash scripts/pgbouncer-probe.sh [QUERIES] [TASKS]
# Needs the local Postgres with trust auth (scripts/setup.sh).
set -euo pipefail
QUERIES=${1:-2000}
TASKS=${2:-8}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
BIN=${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
dir=$(mktemp -d /tmp/huddle-pgbouncer.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$PG_HOST port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
printf '"huddle" ""\n"postgres" ""\n' >"$dir/userlist.txt"
chown -R postgres "$dir"
runuser -u postgres -- "$BIN" -d "$dir/pgbouncer.ini"
trap 'kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do
	[ -s "$dir/pgbouncer.pid" ] && break
	sleep 0.1
done
"$BIN" --version | head -1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/huddle-target}
cargo build -q -p huddle-db --example pgbouncer_probe
probe="$CARGO_TARGET_DIR/debug/examples/pgbouncer_probe"
echo "== through PgBouncer (transaction mode), $QUERIES queries, $TASKS tasks"
"$probe" "postgres://huddle:huddle@127.0.0.1:$port/huddle_user?sslmode=disable" "$QUERIES" "$TASKS"
echo "== Postgres directly"
"$probe" "postgres://huddle:huddle@$PG_HOST:$PG_PORT/huddle_user?sslmode=disable" "$QUERIES" "$TASKS"
echo "== PgBouncer's log (warnings and errors)"
grep -E 'WARNING|ERROR|LOG S-.*closing' "$dir/pgbouncer.log" | sed -E 's/^[^ ]+ [^ ]+ [^ ]+ //' | sort | uniq -c | sort -rn | head -12 || true
