# Huddle developer/CI entry points (GNU make).
#
#   make run     start Postgres/Redis, build, migrate, seed, run everything
#   make test    start Postgres/Redis, run the whole test suite
#   make lint    rustfmt check, clippy -D warnings, dependency rules
#   make fmt     format the workspace

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

.PHONY: setup build run test check-gateway-deps lint fmt

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
# The cache suite also runs against a local 3-master Redis Cluster, started
# here and torn down whatever the outcome (scripts/redis-cluster.sh).
test: setup
	@nodes=$$(bash scripts/redis-cluster.sh start) || exit 1; \
	echo "redis cluster: $$nodes"; \
	rc=0; HUDDLE_TEST_REDIS_CLUSTER_NODES="$$nodes" RUST_BACKTRACE=1 \
		$(CARGO) test --workspace --all-targets || rc=$$?; \
	bash scripts/redis-cluster.sh stop; \
	exit $$rc
	$(MAKE) --no-print-directory check-gateway-deps

# The gateway must never pull in diesel (normal or build edges). `cargo tree -i`
# fails with "`diesel` did not match any packages" exactly when it is absent.
check-gateway-deps:
	@rc=0; out=$$($(CARGO) tree -p gateway -i diesel --edges normal,build 2>&1) || rc=$$?; \
	if [ $$rc -ne 0 ] && printf '%s\n' "$$out" | grep -q 'diesel. did not match any packages'; then \
		echo "check-gateway-deps: ok (gateway does not depend on diesel)"; \
	else \
		echo "check-gateway-deps: FAILED: crate 'gateway' must not depend on diesel" >&2; \
		echo "  (\`$(CARGO) tree -p gateway -i diesel --edges normal,build\` exited $$rc):" >&2; \
		printf '%s\n' "$$out" | sed 's/^/    /' >&2; \
		exit 1; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory check-gateway-deps

fmt:
	$(CARGO) fmt --all
