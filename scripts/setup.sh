#!/usr/bin/env bash
# Huddle local/CI environment setup. Shared by `make run` and `make test`.
#
#   bash scripts/setup.sh           # Postgres + Redis up, role/databases present
#   bash scripts/setup.sh --tools   # same, plus test tooling (used by `make test`)
#   bash scripts/setup.sh --bench   # same, plus wrk and redis-benchmark (`make bench`)
#
# Idempotent: safe to run any number of times. Installs missing packages only
# when running as root; otherwise prints the exact command to run and exits 1.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
DB_ROLE=huddle
DB_PASSWORD=huddle
DATABASES=(huddle_user huddle_meeting huddle_chat huddle_recording)
WAIT_SECONDS=30

WITH_TOOLS=0
WITH_BENCH=0

usage() {
	sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

for arg in "$@"; do
	case "$arg" in
	--tools) WITH_TOOLS=1 ;;
	--bench) WITH_BENCH=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "setup.sh: unknown argument: $arg" >&2
		usage >&2
		exit 2
		;;
	esac
done

log() { echo "$*"; }
die() {
	echo "setup.sh: ERROR: $*" >&2
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Serialise concurrent runs (e.g. two `make test` at once racing on CREATE DATABASE).
# Anything that may leave a daemon behind is run via `nolock` so the daemon does
# not inherit fd 9 and keep the lock held forever.
if have flock; then
	exec 9>"/tmp/huddle-setup.$(id -u).lock"
	flock -w 300 9 || die "timed out waiting for another setup.sh run to finish"
fi
nolock() { "$@" 9>&-; }

APT_UPDATED=0
apt_install() {
	is_root || die "internal: apt_install called without root"
	have apt-get || die "apt-get not found; install these packages manually: $*"
	if [[ "$APT_UPDATED" -eq 0 ]]; then
		log "apt: updating package lists"
		nolock env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=120 </dev/null
		APT_UPDATED=1
	fi
	log "apt: installing $*"
	nolock env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=120 "$@" </dev/null
}

# Print what a non-root user has to run, then fail.
need_root() {
	echo "setup.sh: $1" >&2
	echo "setup.sh: run this as root (or with sudo), then re-run setup.sh:" >&2
	echo "    $2" >&2
	exit 1
}

tcp_open() { timeout 2 bash -c ":>/dev/tcp/$1/$2" 2>/dev/null; }

# ---------------------------------------------------------------------------
# Postgres
# ---------------------------------------------------------------------------

pg_up() {
	if have pg_isready; then
		pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
	else
		tcp_open "$PG_HOST" "$PG_PORT"
	fi
}

pg_installed() {
	have pg_lsclusters && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# Newest installed server version, e.g. "15".
pg_latest_version() {
	local d
	for d in /usr/lib/postgresql/*/bin/postgres; do
		if [[ -e "$d" ]]; then
			d=${d#/usr/lib/postgresql/}
			echo "${d%%/*}"
		fi
	done | sort -V | tail -n1
}

# "<version> <cluster> <status>" of the cluster configured on $PG_PORT, if any.
pg_cluster_on_port() {
	pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2, $4; exit }'
}

# Make sure the cluster listens on 127.0.0.1 (Debian default 'localhost' is fine).
pg_ensure_listen() {
	local ver=$1 name=$2 cur
	cur=$(pg_conftool -s "$ver" "$name" show listen_addresses 2>/dev/null || echo localhost)
	cur=${cur//\'/}
	if [[ ! ",${cur// /}," =~ ,(localhost|127\.0\.0\.1|\*|0\.0\.0\.0), ]]; then
		local new=localhost
		[[ -n "${cur// /}" ]] && new="$cur,localhost"
		log "postgres: setting listen_addresses='$new' (was '$cur')"
		pg_conftool "$ver" "$name" set listen_addresses "$new"
		return 1 # config changed
	fi
	return 0
}

pg_wait() {
	local i
	for ((i = 0; i < WAIT_SECONDS; i++)); do
		pg_up && return 0
		sleep 1
	done
	return 1
}

pg_fail() {
	local ver=$1 name=$2
	local logf="/var/log/postgresql/postgresql-$ver-$name.log"
	echo "setup.sh: ERROR: postgres cluster $ver/$name is not answering on $PG_HOST:$PG_PORT" >&2
	pg_lsclusters >&2 || true
	[[ -r "$logf" ]] && { echo "--- tail $logf" >&2; tail -n 20 "$logf" >&2; }
	exit 1
}

ensure_postgres() {
	if pg_up; then
		log "postgres: up ($PG_HOST:$PG_PORT)"
		return
	fi

	if ! pg_installed; then
		is_root || need_root "postgres is not installed" \
			"sudo apt-get install -y postgresql postgresql-client"
		apt_install postgresql postgresql-client
		# The package's postinst usually creates (and may start) a 'main' cluster.
		if pg_up; then
			log "postgres: up ($PG_HOST:$PG_PORT, freshly installed)"
			return
		fi
	fi

	local ver name status cluster
	cluster=$(pg_cluster_on_port)
	if [[ -z "$cluster" ]]; then
		ver=$(pg_latest_version)
		[[ -n "$ver" ]] || die "postgres server binaries not found under /usr/lib/postgresql"
		if [[ -d "/etc/postgresql/$ver/main" ]]; then
			die "cluster $ver/main exists but is not configured for port $PG_PORT; see pg_lsclusters"
		fi
		is_root || need_root "no postgres cluster exists" \
			"sudo pg_createcluster $ver main --port $PG_PORT --start"
		log "postgres: creating cluster $ver/main on port $PG_PORT"
		nolock pg_createcluster "$ver" main --port "$PG_PORT"
		cluster="$ver main down"
	fi
	read -r ver name status <<<"$cluster"

	is_root || need_root "postgres cluster $ver/$name is not answering on $PG_HOST:$PG_PORT" \
		"sudo pg_ctlcluster --skip-systemctl-redirect $ver $name start"

	# Socket dir lives on tmpfs on real machines and may be gone after a reboot.
	install -d -m 2775 -o postgres -g postgres /var/run/postgresql

	local conf_ok=1
	pg_ensure_listen "$ver" "$name" || conf_ok=0

	local action=started
	if [[ "$status" == online* ]]; then
		action=restarted
		# Running, but not reachable on 127.0.0.1: restart (picks up listen fix).
		[[ "$conf_ok" -eq 1 ]] && log "postgres: cluster $ver/$name is running but not answering; restarting"
		nolock pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" restart || pg_fail "$ver" "$name"
	else
		log "postgres: starting cluster $ver/$name"
		nolock pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || pg_fail "$ver" "$name"
	fi

	pg_wait || pg_fail "$ver" "$name"
	log "postgres: up ($PG_HOST:$PG_PORT, $action $ver/$name)"
}

# psql as the database superuser (SQL on stdin).
psql_admin() {
	local args=(-X -q -w -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres)
	if is_root; then
		(cd / && runuser -u postgres -- psql "${args[@]}")
	elif [[ "$(id -un)" == postgres ]]; then
		psql "${args[@]}"
	else
		psql -h "$PG_HOST" -U postgres "${args[@]}"
	fi
}

ensure_role_and_databases() {
	local db_list
	db_list=$(printf "'%s'," "${DATABASES[@]}")
	db_list=${db_list%,}

	psql_admin <<SQL
SELECT format('CREATE ROLE %I LOGIN CREATEDB', '$DB_ROLE')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_ROLE')
\gexec
-- Always (re)assert login, CREATEDB and the password so password auth works.
ALTER ROLE "$DB_ROLE" WITH LOGIN CREATEDB PASSWORD '$DB_PASSWORD';

SELECT format('CREATE DATABASE %I OWNER %I', d, '$DB_ROLE')
FROM unnest(ARRAY[$db_list]) AS d
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d)
\gexec

SELECT format('ALTER DATABASE %I OWNER TO %I', datname, '$DB_ROLE')
FROM pg_database
WHERE datname IN ($db_list) AND pg_get_userbyid(datdba) <> '$DB_ROLE'
\gexec
SQL
	log "postgres: role '$DB_ROLE' (LOGIN CREATEDB) ok; databases ${DATABASES[*]} ok"
}

verify_app_login() {
	PGPASSWORD="$DB_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -w -h "$PG_HOST" -p "$PG_PORT" \
		-U "$DB_ROLE" -d "${DATABASES[0]}" -tA -c 'select 1' 2>&1
}

# If pg_hba.conf has no usable rule for password logins over 127.0.0.1, add one
# for the huddle role only ('md5' also accepts SCRAM-stored passwords).
pg_fix_hba() {
	local cluster ver name hba
	cluster=$(pg_cluster_on_port)
	[[ -n "$cluster" ]] || return 1
	read -r ver name _ <<<"$cluster"
	hba=$(pg_conftool -s "$ver" "$name" show hba_file 2>/dev/null || echo "/etc/postgresql/$ver/$name/pg_hba.conf")
	hba=${hba//\'/}
	[[ -w "$hba" ]] || return 1
	grep -q '# added by huddle scripts/setup.sh' "$hba" && return 1
	log "postgres: adding password rule for '$DB_ROLE' on 127.0.0.1 to $hba"
	local tmp
	tmp=$(mktemp)
	{
		echo "host all $DB_ROLE 127.0.0.1/32 md5 # added by huddle scripts/setup.sh"
		cat "$hba"
	} >"$tmp"
	cat "$tmp" >"$hba" # keep owner/permissions of the original file
	rm -f "$tmp"
	nolock pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload
	sleep 1
}

ensure_app_login() {
	local out
	if ! out=$(verify_app_login); then
		if is_root && pg_fix_hba && out=$(verify_app_login); then
			:
		else
			echo "setup.sh: cannot connect as postgres://$DB_ROLE:***@$PG_HOST:$PG_PORT/${DATABASES[0]}:" >&2
			echo "$out" >&2
			die "check pg_hba.conf allows password (scram-sha-256/md5) or trust auth for host 127.0.0.1/32"
		fi
	fi
	log "postgres: login postgres://$DB_ROLE:***@$PG_HOST:$PG_PORT/${DATABASES[0]} ok"
}

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------

redis_up() {
	if have redis-cli; then
		[[ "$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
	else
		# shellcheck disable=SC2016 # expanded by the inner bash
		timeout 3 bash -c '
			exec 3<>"/dev/tcp/$1/$2" || exit 1
			printf "PING\r\n" >&3
			IFS= read -r line <&3 && [[ "$line" == +PONG* ]]' _ "$REDIS_HOST" "$REDIS_PORT" 2>/dev/null
	fi
}

redis_wait() {
	local i
	for ((i = 0; i < WAIT_SECONDS; i++)); do
		redis_up && return 0
		sleep 1
	done
	return 1
}

REDIS_START=(redis-server --daemonize yes --bind "$REDIS_HOST" -::1 --port "$REDIS_PORT"
	--save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log)

ensure_redis() {
	if redis_up; then
		log "redis: up ($REDIS_HOST:$REDIS_PORT)"
		return
	fi

	if ! have redis-server; then
		is_root || need_root "redis is not installed" \
			"sudo apt-get install -y redis-server redis-tools"
		apt_install redis-server redis-tools
		if redis_up; then
			log "redis: up ($REDIS_HOST:$REDIS_PORT, freshly installed)"
			return
		fi
	fi

	if ! is_root; then
		local cmd
		cmd=$(printf '%q ' "${REDIS_START[@]}")
		need_root "redis is not answering on $REDIS_HOST:$REDIS_PORT" \
			"sudo mkdir -p /var/lib/redis /var/log/redis && sudo ${cmd% }"
	fi

	mkdir -p /var/lib/redis /var/log/redis
	log "redis: starting redis-server on $REDIS_HOST:$REDIS_PORT"
	if ! nolock "${REDIS_START[@]}" </dev/null; then
		tail -n 20 /var/log/redis/ci.log >&2 2>/dev/null || true
		die "redis-server failed to start"
	fi
	if ! redis_wait; then
		echo "--- tail /var/log/redis/ci.log" >&2
		tail -n 20 /var/log/redis/ci.log >&2 2>/dev/null || true
		die "redis did not answer PONG on $REDIS_HOST:$REDIS_PORT within ${WAIT_SECONDS}s"
	fi
	log "redis: up ($REDIS_HOST:$REDIS_PORT, started)"
}

# ---------------------------------------------------------------------------
# Test tools hook (`--tools`, used by `make test`)
# ---------------------------------------------------------------------------

# HOOK: install/verify extra tools the test suite needs here (kubectl, python
# packages, ...). Keep it idempotent. Note: cargo-nextest is deliberately NOT
# required -- tests run with plain `cargo test`.
install_test_tools() {
	have cargo || die "cargo not found on PATH (install Rust via rustup)"
	log "tools: ok ($(cargo --version | awk '{print $1, $2}'); plain 'cargo test')"
	# `make deploy-check`: kubectl (kustomize), kubernetes-validate, checkov,
	# pinned in deploy/check/requirements.txt, in a venv (instant when present).
	nolock bash "$(dirname -- "${BASH_SOURCE[0]}")/../deploy/check/install-tools.sh"
	# The failover tests start a Redis Sentinel (crates/testkit TestSentinel):
	# Debian ships it as its own package (the redis-server binary in sentinel
	# mode, which the tests fall back to when it is missing).
	if ! have redis-sentinel; then
		is_root || need_root "missing package: redis-sentinel" "sudo apt-get install -y redis-sentinel"
		apt_install redis-sentinel
	fi
	log "tools: redis-sentinel ok"
	# The PgBouncer probe (scripts/pgbouncer-probe.sh) starts a private
	# pgbouncer; Debian's is in /usr/sbin.
	if ! have pgbouncer && [ ! -x /usr/sbin/pgbouncer ]; then
		is_root || need_root "missing package: pgbouncer" "sudo apt-get install -y pgbouncer"
		apt_install pgbouncer
	fi
	log "tools: pgbouncer ok"
}

# `make bench`: wrk (the load generator) and redis-benchmark/redis-cli.
install_bench_tools() {
	local missing=()
	have wrk || missing+=(wrk)
	have redis-benchmark || missing+=(redis-tools)
	if ((${#missing[@]})); then
		is_root || need_root "missing packages: ${missing[*]}" "sudo apt-get install -y ${missing[*]}"
		apt_install "${missing[@]}"
	fi
	log "bench-tools: ok ($(wrk --version 2>&1 | head -1 | awk '{print $1, $2}'))"
}

# ---------------------------------------------------------------------------

main() {
	# Non-root and things missing: tell the user everything to install at once.
	if ! is_root; then
		local missing=()
		pg_up || pg_installed || missing+=(postgresql postgresql-client)
		redis_up || have redis-server || missing+=(redis-server redis-tools)
		if ((${#missing[@]})); then
			need_root "missing packages: ${missing[*]}" "sudo apt-get install -y ${missing[*]}"
		fi
	fi

	ensure_postgres
	ensure_redis
	ensure_role_and_databases
	ensure_app_login
	if [[ "$WITH_TOOLS" -eq 1 ]]; then
		install_test_tools
	fi
	if [[ "$WITH_BENCH" -eq 1 ]]; then
		install_bench_tools
	fi
	log "setup: done"
}

main
