#!/usr/bin/env bash
# A throwaway Redis Cluster on loopback for the test suite: 3 masters, each
# with one replica, so the cache's WAIT after its deletes is exercised.
#   scripts/redis-cluster.sh start   # prints the seed-node list on stdout
#   scripts/redis-cluster.sh stop
# Nothing persists: the nodes keep no data on disk beyond their cluster config,
# and `stop` removes it.
set -euo pipefail

PORTS=(${HUDDLE_TEST_CLUSTER_PORTS:-30101 30102 30103 30104 30105 30106})
if (( ${#PORTS[@]} % 2 != 0 || ${#PORTS[@]} < 6 )); then
	echo "HUDDLE_TEST_CLUSTER_PORTS needs an even number (>= 6) of ports: masters and their replicas" >&2
	exit 2
fi
DIR=${HUDDLE_TEST_CLUSTER_DIR:-/var/tmp/huddle-redis-cluster}

stop() {
	for port in "${PORTS[@]}"; do
		redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
	done
	for port in "${PORTS[@]}"; do
		for _ in $(seq 1 50); do
			redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 || break
			sleep 0.1
		done
	done
	rm -rf "$DIR"
}

start() {
	command -v redis-server >/dev/null || { echo "redis-server is not installed (run scripts/setup.sh)" >&2; exit 1; }
	stop # a cluster left behind by an interrupted run
	mkdir -p "$DIR"
	for port in "${PORTS[@]}"; do
		redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
			--cluster-config-file "nodes-$port.conf" --cluster-node-timeout 2000 \
			--save "" --appendonly no --dir "$DIR" --daemonize yes \
			--logfile "$DIR/$port.log" --pidfile "$DIR/$port.pid" >/dev/null
	done
	for port in "${PORTS[@]}"; do
		for _ in $(seq 1 100); do
			redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
			sleep 0.05
		done
	done
	local nodes=()
	for port in "${PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
	redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 \
		|| { cat "$DIR/create.log" >&2; exit 1; }
	for _ in $(seq 1 100); do
		# Ready once the cluster serves and every replica has synced (a
		# replica still syncing would make the first WAITs fall short).
		local synced=0
		for port in "${PORTS[@]}"; do
			redis-cli -h 127.0.0.1 -p "$port" info replication 2>/dev/null \
				| grep -qE 'role:master|master_link_status:up' && synced=$((synced + 1))
		done
		if (( synced == ${#PORTS[@]} )) \
			&& redis-cli -h 127.0.0.1 -p "${PORTS[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
			local urls=()
			for port in "${PORTS[@]}"; do urls+=("redis://127.0.0.1:$port"); done
			(IFS=,; echo "${urls[*]}")
			return 0
		fi
		sleep 0.1
	done
	echo "redis cluster did not reach cluster_state:ok" >&2
	exit 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
