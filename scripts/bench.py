#!/usr/bin/env python3
"""`make bench`: the hot HTTP paths of a release `huddle all`, side by side.

One run measures, each at 1, 16 and 64 connections with wrk (2 threads):
cached `GET /api/users/{id}`, cached `GET /api/meetings/{id}` (a composed
value), `GET /api/meetings/live`, `POST /api/meetings/join` (a write and its
invalidations), and a cold path (every request another user, cache flushed
before each run); then the three reads again with `HUDDLE_CACHE_READS=false`
(every read from Postgres); then `redis-benchmark GET` on the same Redis;
then what `WAIT` costs a write: a replica of the private Redis on loopback,
joins at 1 connection with `HUDDLE_REDIS_WAIT_REPLICAS=0` and `=1`, in
alternating rounds (`--only wait` runs just that).
The three reads run `--repeat` (3) interleaved rounds and report the
median round (by CPU per request): on a shared 2-core machine one round's
CPU per request swings by a third, which the cost ratios otherwise inherit.
It prints req/s, p50, p99, the process's CPU seconds per 1,000 requests and
the share of reads the gateway's read window answered (and of those, waited
for a call already running), the ratios cached/uncached, Huddle/Redis and
meeting or live over user cost, and the RSS of `huddle all`
afterwards; it writes all of it as JSON (`--out`, default
/var/tmp/huddle-bench/<commit>.json) and, with `--compare OLD.json`, prints
the change against an earlier run.

Everything is local: a private redis-server on 127.0.0.1 (started and
stopped here), the Postgres of `HUDDLE_DATABASE_URL` (bench users, with
`@bench.huddle.test` emails, and their meetings are deleted before and
after), `huddle all` on ports of its own. Not a test: it asserts nothing
but that answers are 2xx.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CONNECTIONS = (1, 16, 64)
BENCH_DOMAIN = "bench.huddle.test"
JWT_SECRET = "bench-only-secret-0123456789abcdef"
HTTP_PORT, REDIS_PORT, REPLICA_PORT = 18080, 16391, 16392
# Every service of `huddle all` on a port of the bench's own (name -> port).
SERVICE_PORTS = {"USER": 15051, "MEETING": 15052, "CHAT": 15053, "RECORDING": 15054}
USERS = 30_000
MEETINGS = 50

WRK_LUA = r"""
-- Requests are prebuilt from a file of "METHOD\tPATH\tTOKEN\tBODY" lines;
-- each thread starts at its own offset and cycles through them.
local lines = {}
local reqs = {}
local i = 0
local counter = 0
function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end
function init(args)
  for line in io.lines(args[1]) do
    local method, path, token, body = line:match("^(%u+)\t([^\t]+)\t([^\t]*)\t?(.*)$")
    local headers = { ["Authorization"] = "Bearer " .. token }
    if body ~= nil and body ~= "" then
      headers["Content-Type"] = "application/json"
    else
      body = nil
    end
    reqs[#reqs + 1] = wrk.format(method, path, headers, body)
  end
  i = (offset * math.floor(#reqs / 2)) % #reqs
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d,"
    .. "\"non_2xx\":%d,\"socket_errors\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def jwt(sub: str) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "iat": now, "exp": now + 3600}).encode())
    signed = f"{header}.{claims}".encode()
    sig = hmac.new(JWT_SECRET.encode(), signed, hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(sig)}"


def psql(base_url: str, database: str, sql: str) -> list[str]:
    # The SQL on stdin: a list of ids can be longer than a command line.
    out = subprocess.run(
        ["psql", f"{base_url.rstrip('/')}/{database}", "-v", "ON_ERROR_STOP=1", "-qAt"],
        input=sql, check=True, capture_output=True, text=True,
    ).stdout
    return [line for line in out.splitlines() if line]


def wait_port(port: int, what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"bench: {what} did not listen on {port} within {seconds:.0f} s")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def window_lookups() -> dict[str, float]:
    """The gateway's read-window lookups so far, by result (hit, joined, miss)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("huddle_gateway_window_lookups_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            totals[result] = totals.get(result, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def api(method: str, path: str, token: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{HTTP_PORT}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.db = os.environ.get("HUDDLE_DATABASE_URL", "postgres://huddle:huddle@127.0.0.1:5432")
        self.tmp = tempfile.mkdtemp(prefix="huddle-bench-")
        self.redis = None
        self.huddle = None
        self.results: dict = {"runs": [], "repetitions": [], "redis": []}

    # -- processes -------------------------------------------------------
    def env(self, cache_reads: bool, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        env.update({
            "HUDDLE_DATABASE_URL": self.db,
            "HUDDLE_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}",
            "HUDDLE_HTTP_ADDR": f"127.0.0.1:{HTTP_PORT}",
            "HUDDLE_JWT_SECRET": JWT_SECRET,
            "HUDDLE_CACHE_READS": "true" if cache_reads else "false",
            "HUDDLE_RATE_LIMIT_MEETING_CREATE": "1000000/60s",
            "HUDDLE_RATE_LIMIT_MEETING_JOIN": "1000000/60s",
        })
        env.update({f"HUDDLE_{name}_ADDR": f"127.0.0.1:{port}" for name, port in SERVICE_PORTS.items()})
        env.update(extra or {})
        return env

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp],
            stdout=subprocess.DEVNULL,
        )
        wait_port(REDIS_PORT, "redis-server")

    def start_huddle(self, cache_reads: bool, extra: dict | None = None) -> None:
        self.stop_huddle()
        self.huddle = subprocess.Popen(
            [self.args.huddle, "all"], env=self.env(cache_reads, extra),
            stdout=open(os.path.join(self.tmp, "huddle.log"), "a"), stderr=subprocess.STDOUT,
        )
        wait_port(HTTP_PORT, "huddle all")

    def stop_huddle(self) -> None:
        if self.huddle and self.huddle.poll() is None:
            self.huddle.send_signal(signal.SIGTERM)
            self.huddle.wait(timeout=60)
        self.huddle = None

    def flush_redis(self) -> None:
        subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "FLUSHDB"], check=True,
                       capture_output=True)

    # -- data ------------------------------------------------------------
    def clean(self) -> None:
        hosts = psql(self.db, "huddle_user",
                     f"SELECT id FROM users WHERE email LIKE '%@{BENCH_DOMAIN}'")
        if hosts:
            ids = ",".join(f"'{h}'" for h in hosts)
            psql(self.db, "huddle_meeting",
                 f"DELETE FROM participants WHERE user_id IN ({ids}); "
                 f"DELETE FROM participants WHERE meeting_id IN "
                 f"(SELECT id FROM meetings WHERE host_id IN ({ids})); "
                 f"DELETE FROM meetings WHERE host_id IN ({ids})")
        psql(self.db, "huddle_user", f"DELETE FROM users WHERE email LIKE '%@{BENCH_DOMAIN}'")

    def seed(self) -> None:
        self.clean()
        self.user_ids = psql(self.db, "huddle_user", f"""
            INSERT INTO users (id, name, email)
            SELECT gen_random_uuid(), 'Bench User ' || n, 'bench-' || n || '@{BENCH_DOMAIN}'
            FROM generate_series(1, {USERS}) AS n
            RETURNING id""")
        self.host = self.user_ids[0]
        host_token = jwt(self.host)
        self.meetings = []
        for n in range(MEETINGS):
            data = api("POST", "/api/meetings", host_token,
                       {"title": f"Bench meeting {n}", "status": "LIVE"})["data"]
            self.meetings.append((data["id"], data["inviteCode"]))

    def write_requests(self, name: str, lines: list[str]) -> str:
        path = os.path.join(self.tmp, f"{name}.txt")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def scenarios(self) -> dict[str, str]:
        host_token = jwt(self.host)
        meeting_id = self.meetings[0][0]
        viewers = [jwt(u) for u in self.user_ids[1:201]]
        joins = [
            f"POST\t/api/meetings/join\t{jwt(u)}\t"
            + json.dumps({"inviteCode": self.meetings[i % MEETINGS][1]})
            for i, u in enumerate(self.user_ids[1:])
        ]
        return {
            "user": self.write_requests("user", [
                f"GET\t/api/users/{self.host}\t{t}" for t in viewers]),
            "meeting": self.write_requests("meeting", [
                f"GET\t/api/meetings/{meeting_id}\t{host_token}"]),
            "live": self.write_requests("live", [
                f"GET\t/api/meetings/live\t{t}" for t in viewers]),
            "join": self.write_requests("join", joins),
            "cold": self.write_requests("cold", [
                f"GET\t/api/users/{u}\t{viewers[i % len(viewers)]}"
                for i, u in enumerate(self.user_ids)]),
        }

    # -- measuring -------------------------------------------------------
    def wrk(self, requests_file: str, connections: int, seconds: int) -> dict:
        script = os.path.join(self.tmp, "bench.lua")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(WRK_LUA)
        threads = min(2, connections)
        out = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
             "-s", script, f"http://127.0.0.1:{HTTP_PORT}", "--", requests_file],
            check=True, capture_output=True, text=True,
        ).stdout
        line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
        if line is None:
            sys.exit(f"bench: wrk printed no summary:\n{out}")
        return json.loads(line[len("BENCH "):])

    def repeated(self, mode: str, scenarios: tuple[str, ...], files: dict[str, str]) -> None:
        """Each (scenario, connections) run `--repeat` times, interleaved so a
        noisy stretch of the machine hits every scenario alike; the median
        run of each (by CPU per request) is the one reported and compared."""
        runs: dict[tuple[str, int], list[dict]] = {}
        for rep in range(self.args.repeat):
            if self.args.repeat > 1:
                print(f"  -- {mode}, round {rep + 1} of {self.args.repeat}", flush=True)
            for scenario in self.wanted(scenarios):
                for c in self.args.connections:
                    runs.setdefault((scenario, c), []).append(
                        self.run(mode, scenario, files[scenario], c))
        if self.args.repeat > 1:
            print(f"  -- {mode}, medians", flush=True)
        for (scenario, c), rows in runs.items():
            median = sorted(rows, key=lambda r: r["cpu_s_per_1k"])[len(rows) // 2]
            self.results["runs"].append(median)
            self.results["repetitions"].extend(rows)
            if self.args.repeat > 1:
                self.show(median)

    def run(self, mode: str, scenario: str, requests_file: str, connections: int) -> dict:
        if scenario == "cold":
            self.flush_redis()
        else:
            self.wrk(requests_file, connections, 1)  # warm: fills, connections, JIT-free
        before, lookups_before = cpu_seconds(self.huddle.pid), window_lookups()
        r = self.wrk(requests_file, connections, self.args.seconds)
        cpu = cpu_seconds(self.huddle.pid) - before
        lookups = {k: v - lookups_before.get(k, 0.0) for k, v in window_lookups().items()}
        answered = sum(lookups.values())
        rps = r["requests"] / (r["duration_us"] / 1e6)
        row = {
            "mode": mode, "scenario": scenario, "connections": connections,
            "rps": round(rps, 1), "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "cpu_s_per_1k": round(cpu / max(r["requests"], 1) * 1000, 4),
            "requests": r["requests"], "non_2xx": r["non_2xx"], "socket_errors": r["socket_errors"],
            # Share of the run's reads the gateway's read window answered.
            "window_hit_share": round((answered - lookups.get("miss", 0.0)) / answered, 4)
            if answered else None,
            # Of those, the share that waited for a call already running.
            "window_joined_share": round(lookups.get("joined", 0.0) / answered, 4)
            if answered else None,
        }
        self.show(row)
        return row

    @staticmethod
    def show(row: dict) -> None:
        window = "" if row["window_hit_share"] is None else \
            f"  window {row['window_hit_share']:.1%} (joined {row['window_joined_share']:.1%})"
        flag = "" if not (row["non_2xx"] or row["socket_errors"]) else \
            f"  !! {row['non_2xx']} non-2xx, {row['socket_errors']} socket errors"
        print(f"  {row['mode']:8} {row['scenario']:8} c={row['connections']:<3} "
              f"{row['rps']:9.0f} req/s  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
              f"cpu {row['cpu_s_per_1k']:.3f} s/1k{window}{flag}", flush=True)

    def redis_benchmark(self) -> None:
        for c in self.args.connections:
            out = subprocess.run(
                ["redis-benchmark", "-p", str(REDIS_PORT), "-t", "get", "-c", str(c),
                 "-n", str(self.args.redis_requests), "-d", "200", "--csv"],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()
            header = [h.strip('"') for h in out[0].split(",")]
            values = [v.strip('"') for v in out[-1].split(",")]
            row = dict(zip(header, values))
            entry = {"connections": c, "rps": float(row["rps"]),
                     "p50_ms": float(row.get("p50_latency_ms", 0)),
                     "p99_ms": float(row.get("p99_latency_ms", 0))}
            self.results["redis"].append(entry)
            print(f"  redis    GET      c={c:<3} {entry['rps']:9.0f} req/s  "
                  f"p50 {entry['p50_ms']:7.2f} ms  p99 {entry['p99_ms']:7.2f} ms", flush=True)

    def wait_cost(self, rounds: int = 2) -> None:
        """Joins at 1 connection with WAIT off and on (a replica on
        loopback), each run with users that have not joined yet, so every
        request is a write with its invalidations."""
        replica = subprocess.Popen(
            ["redis-server", "--port", str(REPLICA_PORT), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp, "--replicaof", "127.0.0.1", str(REDIS_PORT)],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_port(REPLICA_PORT, "redis replica")
            deadline = time.monotonic() + 30
            while "master_link_status:up" not in subprocess.run(
                    ["redis-cli", "-p", str(REPLICA_PORT), "INFO", "replication"],
                    capture_output=True, text=True).stdout:
                if time.monotonic() > deadline:
                    sys.exit("bench: the replica never linked to the private Redis")
                time.sleep(0.1)
            fresh = iter(self.user_ids[USERS // 2:])
            per_run = (USERS // 2) // (2 * rounds)
            warm = self.write_requests("wait-warm", [
                f"GET\t/api/users/{self.host}\t{jwt(self.host)}"])
            runs: dict[str, list[dict]] = {"off": [], "on": []}
            for rep in range(rounds):
                for label, replicas in (("off", "0"), ("on", "1")):
                    users = [next(fresh) for _ in range(per_run)]
                    joins = self.write_requests(f"join-{label}-{rep}", [
                        f"POST\t/api/meetings/join\t{jwt(u)}\t"
                        + json.dumps({"inviteCode": self.meetings[i % MEETINGS][1]})
                        for i, u in enumerate(users)])
                    self.start_huddle(True, {"HUDDLE_REDIS_WAIT_REPLICAS": replicas})
                    self.wrk(warm, 1, 1)
                    before = cpu_seconds(self.huddle.pid)
                    r = self.wrk(joins, 1, self.args.seconds)
                    row = {"mode": f"wait-{label}", "scenario": "join", "connections": 1,
                           "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
                           "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
                           "cpu_s_per_1k": round((cpu_seconds(self.huddle.pid) - before)
                                                 / max(r["requests"], 1) * 1000, 4),
                           "requests": r["requests"], "non_2xx": r["non_2xx"],
                           "socket_errors": r["socket_errors"],
                           "window_hit_share": None, "window_joined_share": None}
                    if r["requests"] >= per_run:
                        print("  (the run used up its fresh users: later joins were re-joins)")
                    self.show(row)
                    runs[label].append(row)
            p50 = {k: sorted(r["p50_ms"] for r in v)[len(v) // 2] for k, v in runs.items()}
            self.results["wait"] = {"p50_off_ms": p50["off"], "p50_on_ms": p50["on"],
                                    "added_ms": round(p50["on"] - p50["off"], 3), "runs": runs}
            print(f"  WAIT 1 replica on loopback adds {p50['on'] - p50['off']:+.2f} ms to a "
                  f"join's p50 ({p50['off']:.2f} -> {p50['on']:.2f} ms; goal <= 1 ms)", flush=True)
        finally:
            replica.terminate()
            replica.wait(timeout=10)

    def wanted(self, scenarios: tuple[str, ...]) -> list[str]:
        return [s for s in scenarios if not self.args.only or s in self.args.only]

    # -- report ----------------------------------------------------------
    def find(self, mode: str, scenario: str, c: int) -> dict | None:
        return next((r for r in self.results["runs"]
                     if (r["mode"], r["scenario"], r["connections"]) == (mode, scenario, c)), None)

    def report(self) -> None:
        print("\nratios (req/s)")
        print(f"  {'c':>3}  {'user cached/uncached':>21}  {'meeting c/u':>11}  {'live c/u':>9}"
              f"  {'user/redis':>10}  {'meeting/user cost':>17}  {'live/user cost':>14}")
        ratios = []
        redis = {r["connections"]: r for r in self.results["redis"]}
        for c in CONNECTIONS:
            get = lambda m, s: self.find(m, s, c)  # noqa: E731
            cu = lambda s: get("cached", s)["rps"] / get("uncached", s)["rps"]  # noqa: E731
            user = get("cached", "user")
            row = {
                "connections": c,
                "user_cached_over_uncached": round(cu("user"), 2),
                "meeting_cached_over_uncached": round(cu("meeting"), 2),
                "live_cached_over_uncached": round(cu("live"), 2),
                "user_over_redis": round(user["rps"] / redis[c]["rps"], 3),
                # Cost = CPU per request relative to the user read (<= 1.5 is the goal).
                "meeting_cost_over_user": round(
                    get("cached", "meeting")["cpu_s_per_1k"] / user["cpu_s_per_1k"], 2),
                "live_cost_over_user": round(
                    get("cached", "live")["cpu_s_per_1k"] / user["cpu_s_per_1k"], 2),
            }
            ratios.append(row)
            print(f"  {c:>3}  {row['user_cached_over_uncached']:>21}  "
                  f"{row['meeting_cached_over_uncached']:>11}  {row['live_cached_over_uncached']:>9}  "
                  f"{row['user_over_redis']:>10}  {row['meeting_cost_over_user']:>17}  "
                  f"{row['live_cost_over_user']:>14}")
        self.results["ratios"] = ratios
        print(f"\nRSS of huddle all after the bench: {self.results['rss_mb']:.0f} MB")

    def compare(self, old_path: str) -> None:
        with open(old_path) as f:
            old = json.load(f)
        print(f"\nchange against {old_path} ({old.get('commit', '?')}), req/s and p99")
        for row in self.results["runs"]:
            prev = next((r for r in old.get("runs", []) if (r["mode"], r["scenario"], r["connections"])
                         == (row["mode"], row["scenario"], row["connections"])), None)
            if prev:
                print(f"  {row['mode']:8} {row['scenario']:8} c={row['connections']:<3} "
                      f"{row['rps'] / prev['rps'] - 1:+7.1%} req/s   "
                      f"p99 {prev['p99_ms']:.2f} -> {row['p99_ms']:.2f} ms")

    def main(self) -> None:
        try:
            self.start_redis()
            # A fresh machine has empty databases: `huddle all` checks the
            # schema, it does not create it (nor does `make bench` run `make run`).
            subprocess.run([self.args.huddle, "migrate"], env=self.env(True), check=True,
                           stdout=subprocess.DEVNULL)
            self.start_huddle(cache_reads=True)
            self.seed()
            files = self.scenarios()
            print(f"huddle all (release) on 127.0.0.1:{HTTP_PORT}, {self.args.seconds} s per run, "
                  f"wrk 2 threads; {USERS} users, {MEETINGS} live meetings")
            if self.args.only == ["wait"]:
                self.wait_cost()
                return
            # The reads the ratios compare are repeated; the writes and the
            # cold path (it flushes Redis) run once.
            self.repeated("cached", ("user", "meeting", "live"), files)
            for scenario in self.wanted(("join", "cold")):
                for c in self.args.connections:
                    self.results["runs"].append(self.run("cached", scenario, files[scenario], c))
            self.results["rss_mb"] = rss_mb(self.huddle.pid)
            if self.args.quick:
                return
            self.start_huddle(cache_reads=False)
            self.repeated("uncached", ("user", "meeting", "live"), files)
            self.redis_benchmark()
            self.wait_cost()
            self.report()
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip() or "unknown"
            self.results.update({"commit": commit, "seconds": self.args.seconds,
                                 "cores": os.cpu_count(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                              time.gmtime())})
            out = self.args.out or f"/var/tmp/huddle-bench/{commit}.json"
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "w") as f:
                json.dump(self.results, f, indent=2)
            print(f"results: {out}")
            if self.args.compare:
                self.compare(self.args.compare)
        finally:
            self.stop_huddle()
            try:
                self.clean()
            except subprocess.CalledProcessError as e:
                print(f"bench: cleanup failed: {e.stderr}", file=sys.stderr)
            if self.redis:
                self.redis.terminate()
                self.redis.wait(timeout=10)
            shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--huddle", default=os.environ.get("HUDDLE_RELEASE_BIN", "target/release/huddle"),
                        help="release build of huddle")
    parser.add_argument("--seconds", type=int, default=5, help="length of each measured run")
    parser.add_argument("--redis-requests", type=int, default=200_000)
    parser.add_argument("--out", help="JSON results file")
    parser.add_argument("--compare", help="an earlier results file to compare with")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the user, meeting and live runs (the median is reported)")
    parser.add_argument("--quick", action="store_true",
                        help="cached runs only: no uncached runs, redis-benchmark, report or JSON")
    parser.add_argument("--only", type=lambda v: v.split(","), default=[],
                        help="comma-separated scenarios (user,meeting,live,join,cold), or wait "
                             "alone (WAIT off vs on); implies --quick")
    parser.add_argument("--connections", type=lambda v: [int(c) for c in v.split(",")],
                        default=list(CONNECTIONS), help="comma-separated connection counts")
    args = parser.parse_args()
    # Ratios need every scenario at every connection count.
    args.quick = args.quick or bool(args.only) or args.connections != list(CONNECTIONS)
    for tool in ("wrk", "redis-server", "redis-cli", "redis-benchmark", "psql"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed (make bench installs it through setup)")
    Bench(args).main()


if __name__ == "__main__":
    main()
