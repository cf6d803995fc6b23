# Huddle developer/CI entry points (GNU make).
#
#   make run     start Postgres/Redis, build, migrate, seed, run everything
#   make test    start Postgres/Redis, run the whole test suite, then
#                `make chaos` (60 s) on a release build
#   make lint    rustfmt check, clippy -D warnings, dependency rules, size rules
#   make bench   hot paths side by side (wrk, cached/uncached, vs redis-benchmark),
#                then meeting delete at 1k vs 1M keys, a profile update
#                embedded in 10k cached values, the webhook burst, chat posts
#                and post -> delivery latency (not a test)
#   make fmt     format the workspace
#   make chaos   consistency under faults, from outside (scripts/chaos/;
#                CHAOS_SECONDS=600 make chaos for a longer run)

CARGO ?= cargo

# Shared between runs and clones, so a fresh checkout reuses earlier builds.
CARGO_TARGET_DIR ?= /var/tmp/huddle-target
HUDDLE_DATABASE_URL ?= postgres://huddle:huddle@127.0.0.1:5432
HUDDLE_REDIS_URL ?= redis://127.0.0.1:6379
export CARGO_TARGET_DIR HUDDLE_DATABASE_URL HUDDLE_REDIS_URL

HUDDLE_BIN := $(CARGO_TARGET_DIR)/debug/huddle

# Extra flags for scripts/setup.sh; `make test` adds --tools (test tooling hook).
SETUP_FLAGS ?=

.DEFAULT_GOAL := build

# Tools of `make deploy-check`, in a venv shared between clones.
HUDDLE_DEPLOY_TOOLS ?= /var/tmp/huddle-deploy-tools
export HUDDLE_DEPLOY_TOOLS

.PHONY: setup build run test check-gateway-deps deploy-check fuzz bench lint fmt chaos

setup:
	bash scripts/setup.sh $(SETUP_FLAGS)

build:
	$(CARGO) build --bin huddle

run: setup build
	$(HUDDLE_BIN) migrate
	$(HUDDLE_BIN) seed
	exec $(HUDDLE_BIN) all --banner

# Target-specific variable: inherited by the `setup` prerequisite.
test: SETUP_FLAGS += --tools
# The cache suite also runs against a local Redis Cluster (3 masters, a
# replica each, so WAIT is exercised), started
# here and torn down whatever the outcome (scripts/redis-cluster.sh).
test: setup
	@nodes=$$(bash scripts/redis-cluster.sh start) || exit 1; \
	echo "redis cluster: $$nodes"; \
	rc=0; HUDDLE_TEST_REDIS_CLUSTER_NODES="$$nodes" RUST_BACKTRACE=1 \
		$(CARGO) test --workspace --all-targets || rc=$$?; \
	bash scripts/redis-cluster.sh stop; \
	exit $$rc
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory check-gateway-deps
	$(MAKE) --no-print-directory deploy-check
	$(CARGO) build --release --bin huddle
	$(MAKE) --no-print-directory chaos CHAOS_BIN=$(HUDDLE_RELEASE_BIN)

# The gateway must never pull in diesel (normal or build edges). `cargo tree -i`
# fails with "`diesel` did not match any packages" when diesel is nowhere in
# the gateway's graph, and prints "nothing to print" when it is there only
# through dev-dependencies (test fixtures); anything else is a real edge.
check-gateway-deps:
	@rc=0; out=$$($(CARGO) tree -p gateway -i diesel --edges normal,build 2>&1) || rc=$$?; \
	if { [ $$rc -ne 0 ] && printf '%s\n' "$$out" | grep -q 'diesel. did not match any packages'; } || \
	   { [ $$rc -eq 0 ] && printf '%s\n' "$$out" | grep -q 'nothing to print'; }; then \
		echo "check-gateway-deps: ok (gateway does not depend on diesel)"; \
	else \
		echo "check-gateway-deps: FAILED: crate 'gateway' must not depend on diesel" >&2; \
		echo "  (\`$(CARGO) tree -p gateway -i diesel --edges normal,build\` exited $$rc):" >&2; \
		printf '%s\n' "$$out" | sed 's/^/    /' >&2; \
		exit 1; \
	fi

# deploy/ validated offline: every kustomization renders, validates against
# the Kubernetes schemas and passes checkov; manifests and the binary agree
# (subcommands, env vars, ports, probes, peers, NetworkPolicies, and what
# the binary does when run: deploy/check/live.py starts `huddle all` against
# the local Postgres and Redis, hence `setup`, for its metrics scrape and
# Postgres connections); the alert rules pass their promtool tests; the
# Dockerfile builds from the repo and registries only. test_check.py first
# proves the checks fail on drift.
deploy-check: setup build
	@bash deploy/check/install-tools.sh
	HUDDLE_BIN=$(HUDDLE_BIN) $(HUDDLE_DEPLOY_TOOLS)/bin/python deploy/check/test_check.py
	$(HUDDLE_DEPLOY_TOOLS)/bin/python deploy/check/check.py --huddle $(HUDDLE_BIN)

# The OpenAPI document is the contract: schemathesis (PyPI, in a venv at
# $(HUDDLE_FUZZ_TOOLS)) fuzzes a `huddle all` started on free ports with its
# own key prefix, `--checks all`, as a user and as an admin, for a fixed
# budget (80 s; HUDDLE_FUZZ_BUDGET_SECS), printing the seed
# (HUDDLE_FUZZ_SEED replays one). Any finding fails the build.
HUDDLE_FUZZ_TOOLS ?= /var/tmp/huddle-fuzz-tools
export HUDDLE_FUZZ_TOOLS
fuzz: build
	HUDDLE_BIN=$(HUDDLE_BIN) bash scripts/fuzz.sh

# A benchmark, not a test: prints how long deleting a meeting with its keys
# cached takes while Redis holds 1 thousand, then 1 million unrelated keys
# (a private redis-server on 127.0.0.1; crates/huddle/benches/meeting_delete.rs).
# Release build, so the numbers are the ones production would see.
HUDDLE_RELEASE_BIN := $(CARGO_TARGET_DIR)/release/huddle
export HUDDLE_RELEASE_BIN

bench: SETUP_FLAGS += --bench
bench: setup
	$(CARGO) build --release --bin huddle
	python3 scripts/bench.py $(BENCH_FLAGS)
	$(CARGO) bench -p huddle --bench meeting_delete
	bash scripts/bench-webhooks.sh
	HUDDLE_BIN=$(HUDDLE_RELEASE_BIN) bash scripts/bench-chat.sh

# SPEC §6 checked from outside: a private Postgres, a Redis primary, replica
# and Sentinel, one `huddle` per service and two gateways (each process's
# Redis link behind a proxy it can lose alone); clients write and read back
# versioned values through every route and SSE while a nemesis pauses,
# kills, cuts and fails Redis over and requests are abandoned mid-write.
# One line per fault; fails on any stale, lost, duplicated or reordered
# result and on fewer than 1,000 reads / 100 writes checked per fault.
# Bounded: CHAOS_SECONDS (default 60) covers setup and every fault.
# `make test` runs it on the release binary: a debug build answers too few
# requests in 60 s to reach the 1,000 reads / 100 writes per fault.
CHAOS_SECONDS ?= 60
CHAOS_BIN ?= $(HUDDLE_BIN)
chaos: setup build
	HUDDLE_BIN=$(CHAOS_BIN) CHAOS_SECONDS=$(CHAOS_SECONDS) python3 scripts/chaos/chaos.py

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory check-gateway-deps
	CARGO=$(CARGO) bash scripts/check-sizes.sh

fmt:
	$(CARGO) fmt --all
