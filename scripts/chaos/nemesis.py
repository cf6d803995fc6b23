"""The nemesis: one fault per phase, injected again and again until the
phase's time is up, each injection followed by a healed stretch (reads
after the heal are where a lost invalidation shows). Every function leaves
the system healed."""

import signal
import time

from topology import GATEWAYS, MASTER_NAME, SERVICES, redis_cli, wait_until


def _sleep_until(t):
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


def heal(topo, log):
    for name in (*SERVICES, *GATEWAYS, "repl"):
        topo.proxy.cmd("pass", name)
    for node in ("a", "b"):
        p = topo.procs.get(f"redis-{node}")
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGCONT)
    for node in ("a", "b"):
        p = topo.procs.get(f"redis-{node}")
        if p is None or p.poll() is not None:
            log(f"restarting redis {node}")
            topo.restart_redis(node, None if node == topo.primary else topo.proxy.ports["repl"])
    redis_cli(topo.redis_port(), "CLIENT", "UNPAUSE")
    link_replica(topo, log)


def link_replica(topo, log):
    """The replica follows the primary through the `repl` proxy (so the
    next failover can stall it)."""
    replica, primary_port = topo.replica(), topo.redis_port()
    repl = topo.proxy.ports["repl"]
    topo.proxy.cmd("target", "repl", primary_port)
    info = redis_cli(topo.redis_port(replica), "INFO", "replication")
    if f"master_port:{repl}" not in info:
        log(f"redis {replica}: REPLICAOF the proxy to {topo.primary}")
        redis_cli(topo.redis_port(replica), "REPLICAOF", "127.0.0.1", repl)
    wait_until("replication link", lambda: "master_link_status:up" in
               redis_cli(topo.redis_port(replica), "INFO", "replication"), timeout=15)


def none(topo, until, log):
    _sleep_until(until)


def pause(topo, until, log):
    """CLIENT PAUSE and SIGSTOP of the primary, in turn (~1 s each)."""
    i = 0
    while time.monotonic() + 2.2 < until:
        if i % 2 == 0:
            log("CLIENT PAUSE 1000 ALL on the primary")
            redis_cli(topo.redis_port(), "CLIENT", "PAUSE", 1000, "ALL")
            time.sleep(1.0)
        else:
            log("SIGSTOP the primary")
            topo.signal_redis(topo.primary, signal.SIGSTOP)
            time.sleep(1.0)
            topo.signal_redis(topo.primary, signal.SIGCONT)
            log("SIGCONT")
        time.sleep(1.2)
        i += 1
    _sleep_until(until)


def kill(topo, until, log):
    """SIGKILL the primary, restart it (empty) half a second later."""
    while time.monotonic() + 2.5 < until:
        log("SIGKILL the primary")
        topo.kill_redis(topo.primary)
        time.sleep(0.5)
        topo.restart_redis(topo.primary)
        log("primary restarted (empty)")
        time.sleep(1.5)
    _sleep_until(until)


CUT_STEPS = (("cut", "user"), ("cut", "chat"), ("delay", "chat"), ("cut", "meeting"))


def cut(topo, until, log):
    """One service loses Redis while every other process keeps it: user,
    chat, meeting in turn; one step slows chat's link by 20 ms instead."""
    i = 0
    while time.monotonic() + 2.2 < until:
        how, victim = CUT_STEPS[i % len(CUT_STEPS)]
        if how == "cut":
            log(f"cut {victim}'s Redis link")
            topo.proxy.cmd("cut", victim)
        else:
            log(f"delay {victim}'s Redis link by 20 ms")
            topo.proxy.cmd("delay", victim, 20)
        time.sleep(1.2)
        topo.proxy.cmd("pass", victim)
        log(f"restore {victim}'s link")
        time.sleep(1.0)
        i += 1
    _sleep_until(until)


def _failover(topo, until, log, repoint):
    while time.monotonic() + 5.0 < until:
        link_replica(topo, log)
        old, new = topo.primary, topo.replica()
        time.sleep(0.5)
        log(f"freeze the replication link {old} -> {new}")
        topo.proxy.cmd("freeze", "repl")
        time.sleep(1.0)
        log(f"SENTINEL FAILOVER to {new}")
        wait_until("SENTINEL FAILOVER accepted", lambda: redis_cli(
            topo.sentinel_port, "SENTINEL", "FAILOVER", MASTER_NAME) == "OK", timeout=10,
            interval=0.1)
        wait_until(f"{new} promoted", lambda: redis_cli(
            topo.redis_port(new), "ROLE").startswith("master"), timeout=15)
        topo.primary = new
        if repoint:
            # A plain endpoint (a VIP, a DNS name) moved to the new primary.
            topo.repoint(topo.redis_port(new))
        else:
            for g in GATEWAYS:
                topo.proxy.cmd("target", g, topo.redis_port(new))
        topo.proxy.cmd("drop", "repl")
        log(f"{new} is primary; what the frozen link held is gone")
        link_replica(topo, log)
        time.sleep(1.0)
    _sleep_until(until)


def failover(topo, until, log):
    """Replication stalled, writes acknowledged, SENTINEL FAILOVER; the
    services reach Redis through an endpoint repointed to the new primary."""
    _failover(topo, until, log, repoint=True)


def sentinel(topo, until, log):
    """The same, with the services finding the primary through Sentinel."""
    _failover(topo, until, log, repoint=False)


def cancel(topo, until, log):
    """No infrastructure fault: the clients abandon writes mid-flight."""
    _sleep_until(until)


FAULTS = {
    "none": (none, "no fault (the checker's baseline)"),
    "pause": (pause, "Redis primary paused (CLIENT PAUSE / SIGSTOP)"),
    "kill": (kill, "Redis primary killed and restarted empty"),
    "cut": (cut, "one service's Redis link cut (user, chat, meeting), or slowed"),
    "failover": (failover, "Sentinel failover with replication stalled, endpoint repointed"),
    "sentinel": (sentinel, "Sentinel failover with replication stalled, services on Sentinel"),
    "cancel": (cancel, "writes abandoned mid-flight, retried with the same Idempotency-Key"),
}
