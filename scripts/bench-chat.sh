#!/usr/bin/env bash
# Chat benchmark (`make bench` calls it; not part of `make test`):
#   1. posts/s through one gateway: wrk + scripts/bench/chat_post.lua,
#      posters taking turns (the chat post limit is lifted for the run);
#   2. post → delivery latency, p50/p99, on another gateway with 1,000 open
#      streams (crates/huddle/benches/chat_latency.rs).
# Processes: `huddle all` (gateway A and every service) and a second
# `huddle gateway` (B) dialling A's services, on free loopback ports, with a
# throwaway cache prefix and their own demo users and meeting.
#
#   bash scripts/bench-chat.sh
#   HUDDLE_BENCH_SECS=15 HUDDLE_BENCH_CONNECTIONS=32 HUDDLE_BENCH_STREAMS=1000 \
#   HUDDLE_BENCH_MESSAGES=200 HUDDLE_BENCH_RATE=20 bash scripts/bench-chat.sh
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd -- "$HERE/.." && pwd)
BIN=${HUDDLE_BIN:-${CARGO_TARGET_DIR:-/var/tmp/huddle-target}/debug/huddle}
SECS=${HUDDLE_BENCH_SECS:-15}
CONNECTIONS=${HUDDLE_BENCH_CONNECTIONS:-32}
POSTERS=${HUDDLE_BENCH_POSTERS:-50}
export HUDDLE_BENCH_STREAMS=${HUDDLE_BENCH_STREAMS:-1000}
export HUDDLE_BENCH_MESSAGES=${HUDDLE_BENCH_MESSAGES:-200}
export HUDDLE_BENCH_RATE=${HUDDLE_BENCH_RATE:-20}

log() { echo "bench-chat: $*"; }
die() {
	echo "bench-chat: ERROR: $*" >&2
	exit 1
}
command -v wrk >/dev/null || die "wrk not found (Debian: apt-get install -y wrk)"
[[ -x "$BIN" ]] || die "no huddle binary at $BIN (cargo build --bin huddle)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d /tmp/huddle-bench-chat.XXXXXX)
A_HTTP=127.0.0.1:$(free_port)
B_HTTP=127.0.0.1:$(free_port)
export HUDDLE_USER_ADDR=127.0.0.1:$(free_port)
export HUDDLE_MEETING_ADDR=127.0.0.1:$(free_port)
export HUDDLE_CHAT_ADDR=127.0.0.1:$(free_port)
export HUDDLE_RECORDING_ADDR=127.0.0.1:$(free_port)
# `huddle all` outside dev needs LiveKit keys (recording-service); none are used here.
export LIVEKIT_API_KEY=APIbench
export LIVEKIT_API_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export HUDDLE_CACHE_PREFIX="huddle:bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n'):"
export HUDDLE_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export HUDDLE_ENV=test
export HUDDLE_RATE_LIMIT_CHAT_POST=1000000/1s
export HUDDLE_RATE_LIMIT_MEETING_JOIN=1000000/1s
export HUDDLE_SSE_MAX_STREAMS_PER_USER=$((HUDDLE_BENCH_STREAMS))
export HUDDLE_CHAT_STREAM_BUFFER=1024
export LOG_FORMAT=json RUST_LOG=${RUST_LOG:-warn}

"$BIN" migrate >/dev/null
HUDDLE_HTTP_ADDR=$A_HTTP "$BIN" all >"$WORK/all.log" 2>&1 &
A_PID=$!
HUDDLE_HTTP_ADDR=$B_HTTP HUDDLE_METRICS_ADDR=127.0.0.1:$(free_port) "$BIN" gateway >"$WORK/gateway.log" 2>&1 &
B_PID=$!
cleanup() {
	kill "$A_PID" "$B_PID" 2>/dev/null || true
	wait "$A_PID" "$B_PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
for base in "http://$A_HTTP" "http://$B_HTTP"; do
	for _ in $(seq 1 100); do
		curl -fsS "$base/healthz" >/dev/null 2>&1 && break
		sleep 0.2
	done
	curl -fsS "$base/healthz" >/dev/null || die "$base did not come up (logs in $WORK)"
done

A=http://$A_HTTP
ADMIN=$("$BIN" token --admin --ttl 1h)
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
user() {
	curl -fsS -X POST "$A/api/users" -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
		-d "{\"name\":\"Bench $1\",\"email\":\"bench-$1-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')@example.com\"}" |
		json '["data"]["id"]'
}
HOST_ID=$(user host)
HOST=$("$BIN" token --user "$HOST_ID" --ttl 1h)
MEETING_JSON=$(curl -fsS -X POST "$A/api/meetings" -H "Authorization: Bearer $HOST" -H 'content-type: application/json' \
	-d '{"title":"Chat bench","status":"LIVE"}')
export HUDDLE_BENCH_MEETING=$(json '["data"]["id"]' <<<"$MEETING_JSON")
CODE=$(json '["data"]["inviteCode"]' <<<"$MEETING_JSON")
export HUDDLE_BENCH_TOKENS_FILE=$WORK/tokens
echo "$HOST" >"$HUDDLE_BENCH_TOKENS_FILE"
for n in $(seq 2 "$POSTERS"); do
	token=$("$BIN" token --user "$(user "$n")" --ttl 1h)
	curl -fsS -X POST "$A/api/meetings/join" -H "Authorization: Bearer $token" -H 'content-type: application/json' \
		-d "{\"inviteCode\":\"$CODE\"}" >/dev/null
	echo "$token" >>"$HUDDLE_BENCH_TOKENS_FILE"
done
log "meeting $HUDDLE_BENCH_MEETING, $POSTERS posters; gateway A $A, gateway B http://$B_HTTP"

log "1. posts/s through gateway A: wrk ${SECS}s, $CONNECTIONS connections"
wrk -t"$((CONNECTIONS < 2 ? CONNECTIONS : 2))" -c"$CONNECTIONS" -d"${SECS}s" -s "$HERE/bench/chat_post.lua" "$A"

log "2. post → delivery on gateway B with $HUDDLE_BENCH_STREAMS open streams"
HUDDLE_BENCH_POST_BASE=$A HUDDLE_BENCH_STREAM_BASE=http://$B_HTTP \
	"${CARGO:-cargo}" bench --manifest-path "$ROOT/Cargo.toml" -q -p huddle --bench chat_latency
