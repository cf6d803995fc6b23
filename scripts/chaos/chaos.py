"""`make chaos`: is Huddle never wrong, end to end, under faults?

Starts a private topology (topology.py), then runs one phase per fault
(nemesis.py) with fresh users and meetings: logical clients (clients.py)
write versioned values and read them back through both gateways and SSE,
and the checker (checker.py) judges every read against every write
acknowledged or value seen before it was sent. One line per fault; exit 1
on any stale, lost, duplicated or reordered result, or on too few checks.

Settings (environment):
  CHAOS_SECONDS   total budget, setup included (default 60)
  CHAOS_FAULTS    comma-separated subset of: none,pause,kill,cut,failover,sentinel,cancel
  CHAOS_CLIENTS   logical clients (default 4)
  CHAOS_SEED      replay a run's random choices (printed at start)
  CHAOS_MIN_READS / CHAOS_MIN_WRITES   per fault (default 1000 / 100)
  CHAOS_DIR       where the run directory goes (default /var/tmp)
  CHAOS_KEEP=1    keep the run directory (logs, timeline) even on success
  HUDDLE_BIN      the binary (default $CARGO_TARGET_DIR/debug/huddle)
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import checker  # noqa: E402
import nemesis  # noqa: E402
from clients import Phase  # noqa: E402
from topology import Topology  # noqa: E402

ORDER = ("none", "pause", "kill", "cut", "failover", "cancel", "sentinel")
# The baseline (no fault) runs only when asked for: it proves the checker
# quiet on a healthy system, but costs a share of the budget.
DEFAULT = tuple(f for f in ORDER if f != "none")
TEARDOWN = 1.5  # seconds kept for stopping everything at the end


def env_int(name, default):
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        sys.exit(f"chaos: {name}={raw!r} is not a number")


def sentinel_support(binary):
    """The services' side of Sentinel, as `huddle --help` lists it."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False).stdout
    return "HUDDLE_REDIS_SENTINELS" in out and "HUDDLE_REDIS_SENTINEL_MASTER" in out


def self_test():
    suite = unittest.defaultTestLoader.loadTestsFromName("test_checker")
    result = unittest.TextTestRunner(stream=open(os.devnull, "w"), verbosity=0).run(suite)
    if not result.wasSuccessful():
        for _, trace in result.failures + result.errors:
            print(trace, file=sys.stderr)
        sys.exit("chaos: the checker's own tests fail (scripts/chaos/test_checker.py)")
    return result.testsRun


def line(res, min_reads, min_writes):
    if res.skipped:
        return f"chaos: {res.name:<9} SKIPPED: {res.skipped}"
    verdict = "ok"
    if res.failed:
        verdict = "FAIL"
    elif res.reads < min_reads or res.writes < min_writes:
        verdict = f"FAIL: too few checks (need {min_reads} reads, {min_writes} writes)"
    return (f"chaos: {res.name:<9} ops {res.operations:>6}  reads {res.reads:>6}  "
            f"writes {res.writes:>5}  sse {res.events:>5}  "
            f"stale {res.stale} (ack {res.stale_ack}, seen {res.stale_seen})  "
            f"lost {res.lost}  duplicated {res.duplicated}  reordered {res.reordered}  "
            f"errors {res.errors}  [{verdict}]")


def main():
    # A stopped run (CI's timeout, ^C) still tears its processes down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    budget = env_int("CHAOS_SECONDS", 60)
    n_clients = env_int("CHAOS_CLIENTS", 4)
    min_reads = env_int("CHAOS_MIN_READS", 1000)
    min_writes = env_int("CHAOS_MIN_WRITES", 100)
    seed = env_int("CHAOS_SEED", random.randrange(1 << 30))
    wanted = [f.strip() for f in os.environ.get("CHAOS_FAULTS", ",".join(DEFAULT)).split(",") if f.strip()]
    unknown = [f for f in wanted if f not in nemesis.FAULTS]
    if unknown:
        sys.exit(f"chaos: unknown fault(s) {unknown}; known: {', '.join(ORDER)}")
    faults = [f for f in ORDER if f in wanted]
    target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/huddle-target")
    binary = os.environ.get("HUDDLE_BIN", os.path.join(target, "debug", "huddle"))
    if not os.access(binary, os.X_OK):
        sys.exit(f"chaos: no huddle binary at {binary} (cargo build --bin huddle)")
    tests = self_test()
    has_sentinel = sentinel_support(binary)
    rundir = tempfile.mkdtemp(prefix="huddle-chaos-", dir=os.environ.get("CHAOS_DIR", "/var/tmp"))
    timeline = open(os.path.join(rundir, "timeline.log"), "w")

    def log(msg):
        timeline.write(f"{time.monotonic() - started:8.3f} {msg}\n")
        timeline.flush()

    print(f"chaos: budget {budget} s, {n_clients} clients, seed {seed}, faults {','.join(faults)}; "
          f"checker self-test {tests} ok; run dir {rundir}", flush=True)
    topo = Topology(binary, rundir)
    results, failed = [], False
    try:
        topo.start()
        print(f"chaos: topology up in {time.monotonic() - started:.1f} s", flush=True)
        running = [f for f in faults if f != "sentinel" or has_sentinel]
        overhead = 2.0
        for number, fault in enumerate(faults):
            if fault == "sentinel" and not has_sentinel:
                res = checker.Result(fault)
                res.skipped = "binary has no sentinel support (HUDDLE_REDIS_SENTINELS)"
                results.append(res)
                print(line(res, min_reads, min_writes), flush=True)
                continue
            left = len(running) - running.index(fault)
            remaining = budget - TEARDOWN - (time.monotonic() - started)
            run_secs = max(3.0, remaining / left - overhead)
            t_phase = time.monotonic()
            res = run_phase(topo, fault, number, n_clients, seed + number, run_secs, log, started)
            overhead = max(1.0, time.monotonic() - t_phase - run_secs)
            results.append(res)
            if res.findings:
                with open(os.path.join(rundir, f"findings-{fault}.txt"), "w") as f:
                    f.write("\n".join(res.findings) + "\n")
            print(line(res, min_reads, min_writes), flush=True)
            for kind, examples in res.examples.items():
                for e in examples:
                    print(f"chaos:   {kind}: {e}")
            if res.stale_routes:
                print("chaos:   stale by route: " + ", ".join(
                    f"{r} {n}" for r, n in res.stale_routes.most_common()))
            dead = topo.all_alive()
            if dead:
                print(f"chaos: FAIL: process(es) exited: {', '.join(dead)}")
                failed = True
                break
    except Exception as e:  # noqa: BLE001 - reported, then torn down
        print(f"chaos: FAIL: {type(e).__name__}: {e} (logs in {rundir}/logs)", flush=True)
        failed = True
    finally:
        topo.stop()
        timeline.close()
    for res in results:
        if res.skipped:
            continue
        if res.failed or res.reads < min_reads or res.writes < min_writes:
            failed = True
    elapsed = time.monotonic() - started
    verdict = "FAIL" if failed else "ok"
    print(f"chaos: {verdict} in {elapsed:.1f} s (seed {seed})", flush=True)
    shutil.rmtree(os.path.join(rundir, "pg"), ignore_errors=True)
    if failed or os.environ.get("CHAOS_KEEP") == "1":
        print(f"chaos: logs and nemesis timeline kept in {rundir}")
    else:
        shutil.rmtree(rundir, ignore_errors=True)
    return 1 if failed else 0


def run_phase(topo, fault, number, n_clients, seed, run_secs, log, started):
    inject, _ = nemesis.FAULTS[fault]
    if fault == "sentinel":
        topo.restart_services(sentinel_mode=True)
    phase = Phase(topo, number, n_clients, seed, cancel=(fault == "cancel"), t0=started)
    log(f"phase {fault}: setup")
    phase.setup()
    phase.start()
    until = time.monotonic() + run_secs
    log(f"phase {fault}: run {run_secs:.1f} s")
    try:
        inject(topo, until, log)
    finally:
        nemesis.heal(topo, log)
        log(f"phase {fault}: healed")
        phase.finish()
        if fault == "sentinel":
            topo.restart_services(sentinel_mode=False)
    return checker.check(phase.hist, fault)


if __name__ == "__main__":
    sys.exit(main())
