"""What the real binary does, observed by running it (not read from strings
in the code): `huddle all` on free ports against the local Postgres and
Redis, exercised through its API, then

- its `/metrics` scrape: every metric family it serves (`# TYPE` lines), which
  is what a rule or panel may use;
- its Postgres connections per database, counted on its sockets and matched
  to `pg_stat_activity`, against the pools' own `huddle_db_pool_size`: the
  difference is what each service holds outside its pool (LISTEN connections
  taken out with `PgConn::take`, or anything added later), the per-process
  number the connection budget adds to `HUDDLE_DB_POOL_SIZE`;
- which long-running subcommands dial Redis: each is started alone with
  `HUDDLE_REDIS_URL` pointing at a listener of ours and poked (its `/readyz`
  and a rate-limited request when it serves HTTP); whoever connects reads
  Redis, so its Deployment needs a Redis address.

Needs what `make run` needs: Postgres and Redis up, the databases created
(scripts/setup.sh); it runs `huddle migrate` itself. Settings come from
HUDDLE_DATABASE_URL / HUDDLE_REDIS_URL (defaults: the local ones).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DATABASE_URL = os.environ.get("HUDDLE_DATABASE_URL", "postgres://huddle:huddle@127.0.0.1:5432")
REDIS_URL = os.environ.get("HUDDLE_REDIS_URL", "redis://127.0.0.1:6379")
START_SECS = 60


@dataclass
class Observed:
    metrics: set[str] = field(default_factory=set)  # metric families served
    scrape: str = ""
    pool_size: dict[str, int] = field(default_factory=dict)  # database -> HUDDLE_DB_POOL_SIZE seen
    outside_pool: dict[str, int] = field(default_factory=dict)  # database -> connections beyond the pool
    redis_readers: set[str] = field(default_factory=set)  # subcommands that dialled Redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HUDDLE_DATABASE_URL": DATABASE_URL,
        "HUDDLE_REDIS_URL": REDIS_URL,
        "HUDDLE_ENV": "test",
        "HUDDLE_JWT_SECRET": secrets.token_hex(32),
        "LIVEKIT_API_KEY": "APIdeploycheck",
        "LIVEKIT_API_SECRET": secrets.token_hex(32),
        "HUDDLE_CACHE_PREFIX": f"huddle:deploy-check-{secrets.token_hex(6)}:",
        "HUDDLE_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "HUDDLE_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        "RUST_LOG": "warn",
        **{f"HUDDLE_{s}_ADDR": f"127.0.0.1:{free_port()}" for s in ("USER", "MEETING", "CHAT", "RECORDING")},
    }


def http(method: str, url: str, token: str | None = None, body=None, headers=None, timeout=10) -> tuple[int, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"raw": raw.decode(errors="replace")}


def token(huddle: str, env: dict, *args: str) -> str:
    out = subprocess.run([huddle, "token", *args], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def wait_http(url: str, proc: subprocess.Popen, log: str, deadline: float, ready: bool = True) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"deploy-check: huddle exited early ({proc.returncode}):\n{open(log).read()[-3000:]}")
        try:
            status, body = http("GET", url, timeout=2)
            if status == 200 and (not ready or body.get("data", {}).get("status") == "ready"):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"deploy-check: {url} not ready in time:\n{open(log).read()[-3000:]}")


class Running:
    """A huddle process, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, huddle: str, args: list[str], env: dict):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="huddle-deploy-check-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([huddle, *args], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


def exercise(huddle: str, env: dict, base: str) -> None:
    """One of each kind of request, so the counters that exist only once
    observed (label vectors) show up in the scrape."""
    admin = token(huddle, env, "--admin")
    status, body = http("POST", f"{base}/api/users", admin, {"name": "Deploy Check", "email": f"dc-{uuid.uuid4().hex}@example.com"})
    if status != 201 and status != 200:
        raise SystemExit(f"deploy-check: creating a user answered {status}: {body}")
    user = body["data"]["id"]
    me = token(huddle, env, "--user", user)
    for _ in range(2):  # a miss, then a hit
        http("GET", f"{base}/api/users/{user}", me)
    http("GET", f"{base}/api/users/{uuid.uuid4()}", me)  # a not-found marker
    status, body = http("POST", f"{base}/api/meetings", me, {"title": "deploy check", "scheduledAt": "2030-01-01T00:00:00Z"})
    meeting = body.get("data", {}).get("id")
    if meeting:
        http("POST", f"{base}/api/meetings/{meeting}/start", me)
        http("GET", f"{base}/api/meetings/{meeting}", me)
        http("POST", f"{base}/api/meetings/join", me, {"inviteCode": body["data"].get("inviteCode", "x")})
        http("POST", f"{base}/api/meetings/{meeting}/chats", me, {"message": "hello"})
        http("GET", f"{base}/api/meetings/{meeting}/chats", me)
        http("GET", f"{base}/api/meetings/{meeting}/recording", me)
        http("PATCH", f"{base}/api/users/{user}", me, {"name": "Deploy Check 2"})
    http("GET", f"{base}/api/meetings/live", me)
    # A webhook LiveKit did not sign: counted as rejected.
    http("POST", f"{base}/api/webhooks/livekit", None, b"{}", {"content-type": "application/webhook+json", "authorization": "x"})
    http("GET", f"{base}/readyz")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) \S+$", text, re.M))


def samples(text: str, name: str) -> dict[str, float]:
    """`name{database="x"} v` -> {x: v}."""
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(rf'^{name}\{{database="([^"]+)"\}} (\S+)$', text, re.M)
    }


def postgres_ports(pid: int) -> set[int]:
    """Local ports of the process's TCP connections to Postgres."""
    server = urlsplit(DATABASE_URL).port or 5432
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True, check=True).stdout
    ports = set()
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        cols = line.split()
        local, peer = cols[2], cols[3]
        if peer.rsplit(":", 1)[-1] == str(server):
            ports.add(int(local.rsplit(":", 1)[-1]))
    return ports


def databases_of(ports: set[int]) -> dict[int, str]:
    url = DATABASE_URL.rstrip("/") + "/postgres"
    out = subprocess.run(
        ["psql", url, "-Atc", "SELECT client_port, datname FROM pg_stat_activity WHERE client_port IS NOT NULL"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        port, _, db = line.partition("|")
        if port.isdigit() and int(port) in ports:
            found[int(port)] = db
    return found


def outside_pool(pid: int, metrics_url: str, deadline: float) -> tuple[dict[str, int], dict[str, int]]:
    """(pool size setting, connections held beyond the pool) per database,
    once two scrapes around the socket count agree (a pool may open a
    connection meanwhile) and every LISTEN connection is up (the count stops
    changing)."""
    last = None
    while time.monotonic() < deadline:
        before = scrape(metrics_url)
        held: dict[str, int] = {}
        for db in databases_of(postgres_ports(pid)).values():
            held[db] = held.get(db, 0) + 1
        after = scrape(metrics_url)
        size = samples(after, "huddle_db_pool_size")
        if samples(before, "huddle_db_pool_size") == size and size:
            extra = {db: held.get(db, 0) - int(n) for db, n in size.items()}
            if extra == last:
                pool = {db: int(v) for db, v in samples(after, "huddle_db_pool_max_size").items()}
                return pool, extra
            last = extra
        time.sleep(0.5)
    raise SystemExit("deploy-check: the Postgres connections of `huddle all` did not settle")


def dials_redis(huddle: str, subcommand: str, http_service: bool) -> bool:
    """Starts `huddle <subcommand>` with Redis at a listener of ours and
    pokes it; True if it connects within a few seconds."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    env = base_env()
    env["HUDDLE_REDIS_URL"] = f"redis://127.0.0.1:{listener.getsockname()[1]}"
    # Bound where the subcommand listens, so nothing clashes.
    connected = threading.Event()

    def accept() -> None:
        end = time.monotonic() + 15
        while time.monotonic() < end and not connected.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
                connected.set()
            except socket.timeout:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    with Running(huddle, [subcommand], env) as p:
        end = time.monotonic() + 8
        if http_service:
            base = f"http://{env['HUDDLE_HTTP_ADDR']}"
            wait_http(f"{base}/healthz", p.proc, p.log.name, time.monotonic() + START_SECS, ready=False)
            http("GET", f"{base}/readyz", timeout=5)
            me = token(huddle, env, "--user", str(uuid.uuid4()))
            http("POST", f"{base}/api/meetings", me, {"title": "probe"}, timeout=5)
        while time.monotonic() < end and not connected.is_set():
            if p.proc.poll() is not None:
                break
            time.sleep(0.1)
    listener.close()
    return connected.is_set()


def observe(huddle: str, services: list[str]) -> Observed:
    obs = Observed()
    env = base_env()
    subprocess.run([huddle, "migrate"], env=env, capture_output=True, text=True, check=True)
    with Running(huddle, ["all"], env) as p:
        base = f"http://{env['HUDDLE_HTTP_ADDR']}"
        wait_http(f"{base}/readyz", p.proc, p.log.name, time.monotonic() + START_SECS)
        exercise(huddle, env, base)
        obs.pool_size, obs.outside_pool = outside_pool(p.proc.pid, f"{base}/metrics", time.monotonic() + 30)
        obs.scrape = scrape(f"{base}/metrics")
        obs.metrics = families(obs.scrape)
    for sub in ["gateway", *services]:
        if dials_redis(huddle, sub, sub == "gateway"):
            obs.redis_readers.add(sub)
    return obs


if __name__ == "__main__":
    import sys

    o = observe(sys.argv[1], sys.argv[2:] or ["user", "meeting", "chat", "recording"])
    print(json.dumps({"metrics": sorted(o.metrics), "pool": o.pool_size, "outside_pool": o.outside_pool, "redis": sorted(o.redis_readers)}, indent=1))
