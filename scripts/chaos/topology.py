"""The system under test, all on 127.0.0.1 with private ports: a private
Postgres cluster (the services' database names are fixed, so isolation means
a cluster of our own), a Redis primary and replica (the replica's link runs
through a proxy the nemesis can freeze), one Sentinel, one `huddle` process
per service and two gateways, each process reaching Redis through its own
proxy (so one service can lose Redis while the others keep it).
"""

import fcntl
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICES = ("user", "meeting", "chat", "recording")
GATEWAYS = ("gw0", "gw1")
MASTER_NAME = "chaos"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, cond, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)


def redis_cli(port, *args, timeout=3.0):
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    return out.stdout.strip()


def have(cmd):
    return shutil.which(cmd) is not None


def ensure_sentinel():
    """`redis-sentinel` (Debian), installed like scripts/setup.sh installs
    Redis; `redis-server --sentinel` is the same program if that fails."""
    if have("redis-sentinel"):
        return ["redis-sentinel"]
    if os.geteuid() == 0 and have("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "redis-sentinel"], **quiet)
        if not have("redis-sentinel"):
            subprocess.run(["apt-get", "update", "-q"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "-q", "redis-sentinel"], **quiet)
        if have("redis-sentinel"):
            return ["redis-sentinel"]
    print("chaos: redis-sentinel not installable; using redis-server --sentinel", file=sys.stderr)
    return ["redis-server", "--sentinel"]


class ProxyControl:
    """The proxy process (proxy.py) and its line protocol."""

    def __init__(self, logdir):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "proxy.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(os.path.join(logdir, "proxy.log"), "w"), text=True, bufsize=1,
        )
        self.ports = {}

    def cmd(self, *words):
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer.startswith("ok"):
            raise RuntimeError(f"proxy {' '.join(map(str, words))}: {answer or 'no answer'}")
        return answer[3:]

    def add(self, name, target_port):
        self.ports[name] = int(self.cmd("add", name, target_port))
        return self.ports[name]

    def stop(self):
        try:
            self.cmd("quit")
        except (OSError, RuntimeError, ValueError):
            pass
        self.proc.kill()
        self.proc.wait()


class Topology:
    def __init__(self, binary, rundir, sentinel_mode=False):
        self.binary = binary
        self.dir = rundir
        self.logdir = os.path.join(rundir, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.procs = {}  # name -> Popen (only processes this run started)
        self.pg_dir = os.path.join(rundir, "pg")
        self.pg_port = free_port()
        self.pg_started = False
        self.redis_ports = {"a": free_port(), "b": free_port()}
        self.primary = "a"
        self.sentinel_port = free_port()
        self.sentinel_mode = sentinel_mode
        self.jwt_secret = os.urandom(24).hex()
        self.proxy = None
        self.http = {}

    # ---------------------------------------------------------- Postgres
    def _as_pg_user(self, argv):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def start_postgres(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("no Postgres server binaries (run scripts/setup.sh)")
        bindir = os.path.dirname(bins[-1])
        self._pg_ctl = f"{bindir}/pg_ctl"
        # initdb takes seconds; its output is the same every time, so it is
        # made once per Postgres version and copied. The bootstrap superuser
        # is the role the services log in as (trust auth: any password).
        template = os.path.join(os.path.dirname(self.dir),
                                f"huddle-chaos-pgdata-{bindir.split('/')[-2]}")
        with open(template + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.isdir(template):
                tmp = template + f".tmp{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                os.makedirs(tmp)
                if os.geteuid() == 0:
                    shutil.chown(tmp, "postgres", "postgres")
                subprocess.run(self._as_pg_user([f"{bindir}/initdb", "-D", tmp, "-A", "trust",
                                                 "-U", "huddle", "-N"]),
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=True,
                               cwd="/")
                os.rename(tmp, template)
        subprocess.run(["cp", "-a", template, self.pg_dir], check=True)
        if os.geteuid() == 0:
            for d in (self.dir, self.logdir):
                shutil.chown(d, "postgres", "postgres")
        opts = (f"-p {self.pg_port} -k {self.pg_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=300")
        subprocess.run(self._as_pg_user([self._pg_ctl, "-D", self.pg_dir, "-w", "-l",
                                         os.path.join(self.logdir, "postgres.log"), "-o", opts,
                                         "start"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=True, cwd="/")
        self.pg_started = True

    # ---------------------------------------------------------- Redis
    def _redis_argv(self, node, replica_of_port=None):
        port = self.redis_ports[node]
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--dbfilename", f"dump-{node}.rdb",
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                "--logfile", os.path.join(self.logdir, f"redis-{node}.log")]
        if replica_of_port:
            argv += ["--replicaof", "127.0.0.1", str(replica_of_port)]
        return argv

    def start_redis(self, node, replica_of_port=None):
        self.procs[f"redis-{node}"] = subprocess.Popen(
            self._redis_argv(node, replica_of_port), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        port = self.redis_ports[node]
        wait_until(f"redis {node}", lambda: redis_cli(port, "PING") == "PONG")

    def replica(self):
        return "b" if self.primary == "a" else "a"

    def start_redis_pair(self):
        self.start_redis("a")
        # The replica's link to the primary runs through a proxy of its own,
        # so the nemesis can stall replication without either side noticing.
        self.proxy.add("repl", self.redis_ports["a"])
        self.start_redis("b", replica_of_port=self.proxy.ports["repl"])
        wait_until("replication", lambda: "master_link_status:up" in
                   redis_cli(self.redis_ports["b"], "INFO", "replication"))

    def start_sentinel(self):
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(f"port {self.sentinel_port}\nbind 127.0.0.1\ndaemonize no\n"
                    f"dir {self.dir}\nlogfile {os.path.join(self.logdir, 'sentinel.log')}\n"
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.redis_ports['a']} 1\n"
                    # Failovers happen when the nemesis asks, never on its own.
                    f"sentinel down-after-milliseconds {MASTER_NAME} 60000\n"
                    # Long, so Sentinel leaves the proxied replication link alone.
                    f"sentinel failover-timeout {MASTER_NAME} 600000\n")
        self.procs["sentinel"] = subprocess.Popen(
            [*ensure_sentinel(), conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def sees_replica():
            out = redis_cli(self.sentinel_port, "SENTINEL", "replicas", MASTER_NAME)
            return str(self.redis_ports["b"]) in out
        wait_until("sentinel to see the replica", sees_replica, timeout=30)

    def sentinel_master_port(self):
        out = redis_cli(self.sentinel_port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        lines = out.split()
        return int(lines[1]) if len(lines) == 2 else None

    # ---------------------------------------------------------- huddle
    def base_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUDDLE_")}
        env.update({
            "HUDDLE_ENV": "test",
            "HUDDLE_DATABASE_URL": f"postgres://huddle:huddle@127.0.0.1:{self.pg_port}",
            "HUDDLE_JWT_SECRET": self.jwt_secret,
            "LIVEKIT_API_KEY": "APIchaos",
            "LIVEKIT_API_SECRET": os.urandom(32).hex(),
            "HUDDLE_USER_ADDR": f"127.0.0.1:{self.svc_ports['user']}",
            "HUDDLE_MEETING_ADDR": f"127.0.0.1:{self.svc_ports['meeting']}",
            "HUDDLE_CHAT_ADDR": f"127.0.0.1:{self.svc_ports['chat']}",
            "HUDDLE_RECORDING_ADDR": f"127.0.0.1:{self.svc_ports['recording']}",
            # Clients write far faster than people do.
            "HUDDLE_RATE_LIMIT_CHAT_POST": "1000000/1s",
            "HUDDLE_RATE_LIMIT_MEETING_JOIN": "1000000/1s",
            "HUDDLE_RATE_LIMIT_MEETING_CREATE": "1000000/1s",
            "LOG_FORMAT": "json",
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
        })
        return env

    def process_env(self, name):
        env = self.base_env()
        env["HUDDLE_REDIS_URL"] = f"redis://127.0.0.1:{self.proxy.ports[name]}"
        env["HUDDLE_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
        if self.sentinel_mode and name in SERVICES:
            env["HUDDLE_REDIS_SENTINELS"] = f"127.0.0.1:{self.sentinel_port}"
            env["HUDDLE_REDIS_SENTINEL_MASTER"] = MASTER_NAME
        if name in GATEWAYS:
            env["HUDDLE_HTTP_ADDR"] = f"127.0.0.1:{self.http[name]}"
        return env

    def start_process(self, name):
        sub = "gateway" if name in GATEWAYS else name
        log = open(os.path.join(self.logdir, f"{name}.log"), "a")
        self.procs[name] = subprocess.Popen([self.binary, sub], env=self.process_env(name),
                                            stdout=log, stderr=subprocess.STDOUT)

    def migrate(self):
        env = self.base_env()
        env["HUDDLE_REDIS_URL"] = f"redis://127.0.0.1:{self.redis_ports['a']}"
        subprocess.run([self.binary, "migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def start(self):
        self.proxy = ProxyControl(self.logdir)
        self.start_postgres()
        self.start_redis_pair()
        self.start_sentinel()
        self.svc_ports = {s: free_port() for s in SERVICES}
        self.http = {g: free_port() for g in GATEWAYS}
        for name in (*SERVICES, *GATEWAYS):
            self.proxy.add(name, self.redis_ports[self.primary])
        self.migrate()
        for name in (*SERVICES, *GATEWAYS):
            self.start_process(name)
        for g in GATEWAYS:
            url = f"http://127.0.0.1:{self.http[g]}/readyz"
            wait_until(f"gateway {g}", lambda u=url: urllib.request.urlopen(u, timeout=1)
                       .status == 200, timeout=60, interval=0.2)
        self.wait_services()

    def wait_services(self):
        """Ready means each backend answers the gateway (readyz details)."""
        url = f"http://127.0.0.1:{self.http['gw0']}/readyz"

        def ready():
            with urllib.request.urlopen(url, timeout=1) as r:
                body = json.loads(r.read())
            text = json.dumps(body).lower()
            return "unavailable" not in text and "not_serving" not in text
        wait_until("services", ready, timeout=60, interval=0.2)

    def restart_services(self, sentinel_mode):
        self.sentinel_mode = sentinel_mode
        for name in SERVICES:
            self.stop_process(name)
        for name in SERVICES:
            self.start_process(name)
        self.wait_services()

    def all_alive(self):
        return [n for n, p in self.procs.items() if p.poll() is not None
                and not n.startswith("redis-")]

    # ---------------------------------------------------------- faults
    def redis_port(self, node=None):
        return self.redis_ports[node or self.primary]

    def kill_redis(self, node):
        p = self.procs[f"redis-{node}"]
        p.kill()
        p.wait()

    def restart_redis(self, node, replica_of_port=None):
        self.start_redis(node, replica_of_port)

    def signal_redis(self, node, sig):
        self.procs[f"redis-{node}"].send_signal(sig)

    def repoint(self, port):
        for name in (*SERVICES, *GATEWAYS):
            self.proxy.cmd("target", name, port)

    # ---------------------------------------------------------- teardown
    def stop_process(self, name):
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop(self):
        for name in list(self.procs):
            p = self.procs[name]
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                except OSError:
                    pass
            self.stop_process(name)
        if self.proxy:
            self.proxy.stop()
        if self.pg_started:
            subprocess.run(self._as_pg_user([self._pg_ctl, "-D", self.pg_dir, "-m", "immediate",
                                             "stop"]), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False, cwd="/")
            self.pg_started = False
