#!/usr/bin/env bash
# LiveKit webhook throughput through the gateway (a benchmark, not a test):
# a private stack (TestApp: real Postgres and Redis), N meetings x 10 signed
# egress deliveries (out of order, replayed), 16 in flight; prints
# webhooks/s and checks every answer was 2xx and every row ended READY.
#
#   bash scripts/bench-webhooks.sh [MEETINGS]    # default 500 -> 5000 webhooks
#
# Needs Postgres and Redis up (scripts/setup.sh). Builds with the profile
# of HUDDLE_BENCH_PROFILE (default `release`; `dev` reuses the test build).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/huddle-target}"
meetings="${1:-500}"
profile="${HUDDLE_BENCH_PROFILE:-release}"
HUDDLE_BENCH_WEBHOOK_MEETINGS="$meetings" cargo test --profile "$profile" -p huddle \
    --test recordings_burst -- --nocapture --test-threads 1 2>&1 |
    grep -E 'webhooks/s|panicked|non-2xx|test result'
