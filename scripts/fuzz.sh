#!/usr/bin/env bash
# The OpenAPI document is the contract: schemathesis (from PyPI, pinned in
# scripts/fuzz-requirements.txt, in a venv shared between clones) generates
# requests from /api/openapi.json and checks every answer against it
# (`--checks all`), once with a user token and once with an admin token,
# against a `huddle all` this script starts on free ports with its own cache
# key prefix. Any finding fails the run. A fixed time budget (default 80 s in
# all, split between the two tokens) and the seed are printed, so a failure
# can be replayed with HUDDLE_FUZZ_SEED.
#
#   HUDDLE_BIN=/var/tmp/huddle-target/debug/huddle bash scripts/fuzz.sh
#
# Needs Postgres and Redis up (scripts/setup.sh) and migrated databases
# (the script runs `huddle migrate`). Users and meetings it creates stay in
# the local huddle_user / huddle_meeting databases, like `make run`'s.
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
VENV=${HUDDLE_FUZZ_TOOLS:-/var/tmp/huddle-fuzz-tools}
REQUIREMENTS="$HERE/fuzz-requirements.txt"
BIN=${HUDDLE_BIN:-${CARGO_TARGET_DIR:-/var/tmp/huddle-target}/debug/huddle}
BUDGET=${HUDDLE_FUZZ_BUDGET_SECS:-80}
# Fixed by default so a CI result can be reproduced exactly; set
# HUDDLE_FUZZ_SEED to explore other inputs (each run prints its seed).
SEED=${HUDDLE_FUZZ_SEED:-20261129}

log() { echo "fuzz: $*"; }
die() {
	echo "fuzz: ERROR: $*" >&2
	exit 1
}

(( BUDGET >= 2 && BUDGET <= 90 )) || die "HUDDLE_FUZZ_BUDGET_SECS must be 2..90 (got $BUDGET)"
[[ -x "$BIN" ]] || die "no huddle binary at $BIN (cargo build --bin huddle)"

# --- tools: a venv like deploy/check/install-tools.sh's, stamped with what
# it was built from, one installer at a time.
PYTHON=$(command -v python3 || true)
[[ -n "$PYTHON" ]] || die "python3 not found (Debian: apt-get install -y python3 python3-venv)"
want=$({
	cat "$REQUIREMENTS"
	"$PYTHON" -c 'import sys; print(sys.version)'
} | sha256sum | cut -d' ' -f1)
up_to_date() { [[ -x "$VENV/bin/st" && -f "$VENV/.huddle-requirements" && "$(cat "$VENV/.huddle-requirements")" == "$want" ]]; }
if ! up_to_date; then
	mkdir -p "$(dirname -- "$VENV")"
	exec 8>"$VENV.lock"
	flock -w 600 8 || die "timed out waiting for another install into $VENV"
	if ! up_to_date; then
		log "installing schemathesis into $VENV (one time)"
		rm -rf "$VENV"
		"$PYTHON" -m venv "$VENV"
		"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS"
		echo "$want" >"$VENV/.huddle-requirements"
	fi
	exec 8>&-
fi

# --- a private `huddle all`: free ports, its own key prefix and secret.
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/huddle-fuzz.XXXXXX)
HTTP_PORT=$(free_port)
export HUDDLE_HTTP_ADDR=127.0.0.1:$HTTP_PORT
export HUDDLE_USER_ADDR=127.0.0.1:$(free_port)
export HUDDLE_MEETING_ADDR=127.0.0.1:$(free_port)
export HUDDLE_RECORDING_ADDR=127.0.0.1:$(free_port)
export LIVEKIT_API_KEY=APIfuzz
export LIVEKIT_API_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export HUDDLE_CHAT_ADDR=127.0.0.1:$(free_port)
export HUDDLE_CACHE_PREFIX="huddle:fuzz-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n'):"
export HUDDLE_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
# dev: with LIVEKIT_URL unset, `huddle all` starts its LiveKit stand-in, so
# room tokens and recording starts answer as with a LiveKit (a 503 would be
# a finding). The secrets above are explicit, so no dev fallback is used.
export HUDDLE_ENV=dev
unset LIVEKIT_URL LIVEKIT_API_URL
# Generated requests create meetings far faster than a person: the limits
# themselves are tested in the gateway crate, not here.
export HUDDLE_RATE_LIMIT_MEETING_CREATE=1000000/1s
export HUDDLE_RATE_LIMIT_MEETING_JOIN=1000000/1s
export HUDDLE_RATE_LIMIT_CHAT_POST=1000000/1s
export HUDDLE_RATE_LIMIT_MEDIA_TOKEN=1000000/1s
export LOG_FORMAT=json RUST_LOG=${RUST_LOG:-warn}
BASE=http://$HUDDLE_HTTP_ADDR

"$BIN" migrate >/dev/null
"$BIN" all >"$WORK/huddle.log" 2>&1 &
PID=$!
cleanup() {
	kill "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
	curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
	kill -0 "$PID" 2>/dev/null || { cat "$WORK/huddle.log" >&2; die "huddle all exited"; }
	sleep 0.2
done
curl -fsS "$BASE/readyz" >/dev/null || die "huddle all did not become ready"

ADMIN=$("$BIN" token --admin --ttl 1h)
email="fuzz-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')@example.com"
USER_ID=$(curl -fsS -X POST "$BASE/api/users" -H "Authorization: Bearer $ADMIN" \
	-H 'content-type: application/json' -d "{\"name\":\"Fuzz\",\"email\":\"$email\"}" |
	"$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
USER=$("$BIN" token --user "$USER_ID" --ttl 1h)

half=$(( BUDGET / 2 ))
log "budget ${BUDGET}s (${half}s per token), seed $SEED, server $BASE, prefix $HUDDLE_CACHE_PREFIX"
rc=0
# schemathesis and hypothesis keep their caches in the working directory:
# the throwaway one, not the checkout.
cd "$WORK"
for who in user admin; do
	token=$USER
	[[ $who == admin ]] && token=$ADMIN
	log "--- as $who"
	PYTHONPATH="$HERE" SCHEMATHESIS_HOOKS=fuzz_hooks "$VENV/bin/st" run "$BASE/api/openapi.json" \
		--checks all \
		--max-time "$half" \
		--seed "$SEED" \
		--workers 1 \
		--request-timeout 10 \
		--suppress-health-check all \
		--warnings off \
		-H "Authorization: Bearer $token" || rc=$?
done
if [[ $rc -ne 0 ]]; then
	log "FAILED (seed $SEED; replay with HUDDLE_FUZZ_SEED=$SEED)"
	exit "$rc"
fi
log "ok: no finding in ${BUDGET}s (seed $SEED)"
