#!/usr/bin/env python3
"""Offline checks of deploy/, run by `make deploy-check` (and so `make test`).

1. `kubectl kustomize` renders the base and every overlay.
2. Every rendered object validates against the Kubernetes JSON schemas
   (kubernetes-validate, strict: unknown fields are errors), for the oldest
   and newest Kubernetes versions we support.
3. checkov lints the renders (config and global skips: checkov.yaml here;
   per-resource skips: `checkov.io/skipN` annotations).
4. Manifests and the `huddle` binary agree (drift check; needs the binary):
   every container of the huddle image runs a real subcommand with real
   flags, sets only environment variables the binary reads, declares exactly
   the ports it listens on (and listens beyond loopback), probes real ports,
   health services and routes, dials Services that exist (headless, for gRPC)
   and that the NetworkPolicies let it reach; nothing else can reach the
   datastores, and only the gateway is open to the world.
5. The Dockerfile builds the binary the manifests run, from the repository
   and package registries only.

Usage: check.py --huddle PATH [--kubectl PATH] [--no-checkov]
Exits 1 listing every problem found.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import live  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
HERE = Path(__file__).resolve().parent
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# Oldest Kubernetes the manifests must work on (grpc probes are GA since
# 1.27; 1.30 is the oldest release still maintained by major providers),
# and the newest kubernetes-validate knows.
OLDEST_K8S = "1.30.0"

# The image every Huddle process runs (last path segment of `image:`).
HUDDLE_IMAGE = "huddle"

# Environment variables read outside clap (not in `huddle --help`), each
# with the source file that reads it; the check verifies the name is still
# there, so this list cannot go stale silently.
NON_CLAP_ENV = {
    "RUST_LOG": "crates/common/src/telemetry.rs",  # EnvFilter::try_from_default_env
    # rustls-native-certs' trust store, for Postgres and Redis TLS.
    "SSL_CERT_FILE": "crates/db/src/tls.rs",
}

# Which services each service calls: the call graph of ARCHITECTURE.md
# (the gateway calls every service). A process must be given the address of
# each service it calls that the binary has; its default is loopback.
CALLS = {
    # meeting -> recording and chat: the deletion cascade; chat -> user:
    # its messages' user cards.
    "meeting": ["user", "recording", "chat"],
    "chat": ["user"],
}

# Secrets a service needs beyond the database's, each only in its own pods.
SERVICE_SECRETS = {
    "recording": ["LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"],
}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# Where the datastores are: a URL, or (Redis Cluster) a comma-separated list.
DATASTORE_URL_VARS = ("HUDDLE_DATABASE_URL", "HUDDLE_REDIS_URL", "HUDDLE_REDIS_CLUSTER_NODES")
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379}


# ---------------------------------------------------------------------------
# What the binary reads: parsed from `huddle --help` and `huddle X --help`.
# ---------------------------------------------------------------------------


@dataclass
class Subcommand:
    name: str
    flags: set[str] = field(default_factory=set)
    env: dict[str, str | None] = field(default_factory=dict)  # name -> default
    subcommands: set[str] = field(default_factory=set)


@dataclass
class Cli:
    subcommands: dict[str, Subcommand]
    # What the binary was seen doing (live.py): None when not observed.
    observed: live.Observed | None = None

    def service_names(self) -> list[str]:
        """Subcommands that are one domain service: `huddle X` with its own
        `HUDDLE_X_ADDR` (user, meeting, ...)."""
        return sorted(
            name
            for name, sub in self.subcommands.items()
            if name not in ("all", "gateway") and addr_var(name) in sub.env
        )

    def listen_vars(self, subcommand: str) -> list[str]:
        """The settings a subcommand listens on. Convention of
        crates/huddle/src/run.rs: the gateway on HUDDLE_HTTP_ADDR; a service X
        on HUDDLE_X_ADDR (gRPC) and HUDDLE_METRICS_ADDR; other commands on
        nothing."""
        if subcommand == "gateway":
            return ["HUDDLE_HTTP_ADDR"]
        if subcommand in self.service_names():
            return [addr_var(subcommand), "HUDDLE_METRICS_ADDR"]
        return []

    def required_vars(self, subcommand: str) -> list[tuple[str, ...]]:
        """What a deployed process needs set, each as alternatives (its
        defaults point at 127.0.0.1 or, for the secret, do not exist)."""
        if subcommand == "gateway":
            return [("HUDDLE_JWT_SECRET",)] + [(addr_var(s),) for s in self.service_names()]
        if subcommand in self.service_names():
            peers = [(addr_var(s),) for s in CALLS.get(subcommand, []) if s in self.service_names()]
            secrets = [(v,) for v in SERVICE_SECRETS.get(subcommand, [])]
            return [("HUDDLE_DATABASE_URL",)] + peers + secrets
        if subcommand in ("migrate", "seed"):
            return [("HUDDLE_DATABASE_URL",)]
        return []


REDIS_VARS = ("HUDDLE_REDIS_URL", "HUDDLE_REDIS_CLUSTER_NODES")


def redis_readers(cli: Cli) -> set[str]:
    """Subcommands that dial Redis: as observed (live.dials_redis), else
    the services (their cache)."""
    if cli.observed is not None:
        return set(cli.observed.redis_readers)
    return set(cli.service_names())


def addr_var(service: str) -> str:
    return f"HUDDLE_{service.upper()}_ADDR"


OPTION_START = re.compile(r"^\s+(?:-\w, )?--([\w-]+)")
ENV_RE = re.compile(r"\[env: ([A-Za-z0-9_]+)(?:=[^\]]*)?\]")
DEFAULT_RE = re.compile(r"\[default: ([^\]]*)\]")


def parse_help(name: str, text: str) -> Subcommand:
    sub = Subcommand(name)
    section = None
    block: list[str] = []

    def flush() -> None:
        if not block:
            return
        joined = "\n".join(block)
        flag = OPTION_START.match(block[0])
        if flag:
            sub.flags.add(flag.group(1))
        env = ENV_RE.search(joined)
        if env:
            default = DEFAULT_RE.search(joined)
            sub.env[env.group(1)] = default.group(1) if default else None
        block.clear()

    for line in text.splitlines():
        if re.match(r"^[A-Z][\w ]*:\s*$", line):  # "Commands:", "Options:", ...
            flush()
            section = line.strip().rstrip(":")
            continue
        if section == "Commands":
            m = re.match(r"^  (\S+)", line)
            if m and m.group(1) != "help":
                sub.subcommands.add(m.group(1))
        elif section in ("Options", "Arguments"):
            if OPTION_START.match(line):
                flush()
            if line.strip():
                block.append(line)
    flush()
    return sub


def run_help(huddle: str, *args: str) -> str:
    # A clean environment, so `[env: X=value]` shows no local value.
    out = subprocess.run(
        [huddle, *args, "--help"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def load_cli(huddle: str, observe: bool = True) -> Cli:
    """The binary's interface from its --help texts and, with `observe`,
    what it does when run (live.py: metrics served, connections held,
    Redis dialled)."""
    top = parse_help("", run_help(huddle))
    if not top.subcommands:
        raise SystemExit(f"{huddle} --help lists no subcommands")
    subs = {name: parse_help(name, run_help(huddle, name)) for name in top.subcommands}
    cli = Cli(subs)
    if observe:
        cli.observed = live.observe(huddle, cli.service_names())
    return cli


# ---------------------------------------------------------------------------
# Rendering and the rendered objects.
# ---------------------------------------------------------------------------


def kustomizations() -> dict[str, Path]:
    found = {"base": K8S / "base"}
    for d in sorted((K8S / "overlays").iterdir()):
        if (d / "kustomization.yaml").exists():
            found[d.name] = d
    return found


def render(kubectl: str, path: Path) -> tuple[str, list[dict]]:
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RenderError(f"kubectl kustomize {path.relative_to(REPO)}:\n{out.stderr}")
    return out.stdout, [d for d in yaml.safe_load_all(out.stdout) if d]


class RenderError(Exception):
    pass


@dataclass
class Manifests:
    """One rendered kustomization, indexed."""

    name: str
    docs: list[dict]

    def of_kind(self, *kinds: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") in kinds]

    def get(self, kind: str, name: str) -> dict | None:
        for d in self.docs:
            if d.get("kind") == kind and d["metadata"].get("name") == name:
                return d
        return None

    def workloads(self) -> list[Workload]:
        return [Workload(d) for d in self.of_kind(*WORKLOAD_KINDS)]

    def namespace_labels(self, namespace: str) -> dict:
        labels = {"kubernetes.io/metadata.name": namespace}
        ns = self.get("Namespace", namespace)
        if ns:
            labels.update(ns["metadata"].get("labels") or {})
        return labels


@dataclass
class Workload:
    doc: dict

    @property
    def ref(self) -> str:
        return f"{self.doc['kind']}/{self.doc['metadata']['name']}"

    @property
    def namespace(self) -> str:
        return self.doc["metadata"].get("namespace", "default")

    @property
    def pod(self) -> dict:
        return self.doc["spec"]["template"]["spec"]

    @property
    def labels(self) -> dict:
        return self.doc["spec"]["template"]["metadata"].get("labels") or {}

    def containers(self) -> list[dict]:
        return list(self.pod.get("containers", []))

    def container_ports(self) -> list[dict]:
        return [p for c in self.containers() for p in c.get("ports", [])]

    def resolve_port(self, port) -> int | None:
        """A port number or name, as a Service targetPort or probe uses it."""
        if isinstance(port, int):
            return port
        if isinstance(port, str) and port.isdigit():
            return int(port)
        for p in self.container_ports():
            if p.get("name") == port:
                return p["containerPort"]
        return None

    def port_name(self, number: int) -> str | None:
        for p in self.container_ports():
            if p["containerPort"] == number:
                return p.get("name")
        return None


def is_huddle_image(image: str) -> bool:
    last = image.split("@")[0].rsplit("/", 1)[-1]
    return last.split(":")[0] == HUDDLE_IMAGE


def selects(selector: dict | None, labels: dict) -> bool:
    """Label selector semantics (matchLabels AND matchExpressions)."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def plain_selector(labels: dict) -> dict:
    return {"matchLabels": labels}


# ---------------------------------------------------------------------------
# Problems are collected, not raised, so one run lists all of them.
# ---------------------------------------------------------------------------


class Problems(list):
    def add(self, where: str, what: str) -> None:
        self.append(f"{where}: {what}")


# ---------------------------------------------------------------------------
# Schema validation and checkov.
# ---------------------------------------------------------------------------


def validate_schemas(m: Manifests, problems: Problems) -> None:
    import kubernetes_validate

    versions = sorted({OLDEST_K8S, kubernetes_validate.latest_version()})
    for doc in m.docs:
        ref = f"{m.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            validate_monitoring_schema(doc, ref, problems)
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problems.add(ref, f"invalid for Kubernetes {version} at {path}: {e.message}")
            except Exception as e:  # unknown kind/apiVersion, bad schema
                problems.add(ref, f"cannot validate for Kubernetes {version}: {getattr(e, 'message', e)}")


def run_checkov(rendered: dict[str, str], checkov: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="huddle-checkov-") as tmp:
        for name, text in rendered.items():
            Path(tmp, f"{name}.yaml").write_text(text)
        out = subprocess.run(
            [checkov, "--config-file", str(HERE / "checkov.yaml"), "--directory", tmp],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
    return out.returncode == 0, (out.stdout + out.stderr).strip()


# ---------------------------------------------------------------------------
# Drift: manifests against the binary.
# ---------------------------------------------------------------------------


@dataclass
class Env:
    """A container's environment as the process will see it."""

    names: set[str] = field(default_factory=set)
    values: dict[str, str] = field(default_factory=dict)  # known values only


def config_data(doc: dict) -> dict[str, str]:
    data = dict(doc.get("data") or {})
    if doc["kind"] == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        data.update(doc.get("stringData") or {})
    return data


def container_env(m: Manifests, ref: str, c: dict, problems: Problems) -> Env:
    env = Env()
    for source in c.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key not in source:
                continue
            name = source[key]["name"]
            obj = m.get(kind, name)
            if obj is None:
                # A Secret may be created outside the manifests (prod); then
                # the names it brings are unknown: never use envFrom for one.
                problems.add(
                    ref, f"envFrom {kind} {name!r} is not in the manifests, so the variables it sets cannot be checked"
                )
                continue
            for k, v in config_data(obj).items():
                env.names.add(prefix + k)
                env.values[prefix + k] = v
    for e in c.get("env") or []:
        name = e["name"]
        env.names.add(name)
        env.values.pop(name, None)
        if "value" in e:
            env.values[name] = e["value"]
            continue
        source = e.get("valueFrom") or {}
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key not in source:
                continue
            sel = source[key]
            obj = m.get(kind, sel["name"])
            if obj is None:
                if kind == "ConfigMap" and not sel.get("optional"):
                    problems.add(ref, f"{name} comes from ConfigMap {sel['name']!r}, which is not in the manifests")
                continue
            data = config_data(obj)
            if sel["key"] not in data:
                problems.add(
                    ref, f"{name} comes from key {sel['key']!r} of {kind} {sel['name']!r}, which has no such key"
                )
            else:
                env.values[name] = data[sel["key"]]
    return env


def parse_hostport(value: str) -> tuple[str, int] | None:
    """`host:port`, `ip:port`, `[v6]:port` or `scheme://host:port`."""
    raw = value if "://" in value else f"tcp://{value}"
    try:
        parts = urlsplit(raw)
        if parts.hostname is None or parts.port is None:
            return None
        return parts.hostname, parts.port
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def service_for_host(m: Manifests, host: str, namespace: str) -> dict | None:
    """The in-cluster Service a host name denotes: `name`, `name.ns`,
    `name.ns.svc`, `name.ns.svc.cluster.local`."""
    labels = host.split(".")
    name = labels[0]
    if len(labels) > 1 and labels[1] != namespace:
        return None
    if len(labels) > 2 and labels[2:] not in (["svc"], ["svc", "cluster", "local"]):
        return None
    svc = m.get("Service", name)
    if svc and svc["metadata"].get("namespace", "default") == namespace:
        return svc
    return None


def is_cluster_name(host: str, namespace: str) -> bool:
    """A name that resolves inside the cluster (`name`, `name.<namespace>`,
    `….svc`, `….svc.cluster.local`), as opposed to an external host."""
    if is_ip(host):
        return False
    labels = host.split(".")
    return (
        len(labels) == 1
        or (len(labels) == 2 and labels[1] == namespace)
        or host.endswith((".svc", ".svc.cluster.local"))
    )


def backends(m: Manifests, svc: dict) -> list[Workload]:
    sel = svc["spec"].get("selector")
    if not sel:
        return []
    return [
        w
        for w in m.workloads()
        if w.namespace == svc["metadata"].get("namespace", "default") and selects(plain_selector(sel), w.labels)
    ]


def service_port(svc: dict, port: int) -> dict | None:
    for p in svc["spec"].get("ports", []):
        if p["port"] == port:
            return p
    return None


def huddle_subcommand(w: Workload) -> str | None:
    for c in w.containers():
        if is_huddle_image(c.get("image", "")) and c.get("args"):
            return c["args"][0]
    return None


@dataclass
class Edge:
    """A connection a process will open: from a workload to a Service port."""

    client: Workload
    setting: str
    service: dict
    port: int


def dialled_service(
    m: Manifests, w: Workload, ref: str, var: str, value: str, problems: Problems
) -> tuple[dict | None, int]:
    """The in-cluster Service an address setting dials (None if external or
    wrong; wrong ones are reported)."""
    hp = parse_hostport(value)
    if hp is None:
        parts = urlsplit(value)
        if var in DATASTORE_URL_VARS and parts.hostname and parts.scheme in DEFAULT_PORTS:
            hp = (parts.hostname, DEFAULT_PORTS[parts.scheme])
        else:
            problems.add(ref, f"{var}={value!r} is not host:port")
            return None, 0
    host, port = hp
    if is_loopback(host):
        problems.add(ref, f"{var}={value!r} dials loopback, which inside a pod is the pod itself")
        return None, 0
    if not is_cluster_name(host, w.namespace):
        return None, 0  # external (prod datastores)
    svc = service_for_host(m, host, w.namespace)
    if svc is None:
        problems.add(ref, f"{var}={value!r}: no Service {host.split('.')[0]!r} in namespace {w.namespace}")
        return None, 0
    if service_port(svc, port) is None:
        problems.add(ref, f"{var}={value!r}: Service {svc['metadata']['name']} has no port {port}")
        return None, 0
    return svc, port


def check_huddle_container(m: Manifests, cli: Cli, w: Workload, c: dict, problems: Problems, edges: list[Edge]) -> None:
    ref = f"{m.name}: {w.ref} container {c['name']}"
    command = c.get("command")
    if command not in (None, ["/usr/local/bin/huddle"], ["huddle"]):
        problems.add(ref, f"command {command} replaces the image's entrypoint (the huddle binary); set `args` only")
    args = [str(a) for a in c.get("args") or []]
    if not args:
        problems.add(ref, "no args: the image runs `huddle --help`; name a subcommand")
        return
    sub = cli.subcommands.get(args[0])
    if sub is None:
        problems.add(
            ref,
            f"args {args}: `{args[0]}` is not a huddle subcommand (huddle --help lists: {', '.join(sorted(cli.subcommands))})",
        )
        return
    positional = [a for a in args[1:] if not a.startswith("-")]
    for a in args[1:]:
        if a.startswith("--"):
            flag = a[2:].split("=", 1)[0]
            if flag not in sub.flags:
                problems.add(ref, f"args {args}: `huddle {sub.name}` has no flag --{flag}")
    if sub.subcommands and (not positional or positional[0] not in sub.subcommands):
        problems.add(ref, f"args {args}: `huddle {sub.name}` needs one of: {', '.join(sorted(sub.subcommands))}")

    env = container_env(m, ref, c, problems)
    for name in sorted(env.names):
        if name not in sub.env and name not in NON_CLAP_ENV:
            problems.add(
                ref, f"sets {name}, which `huddle {sub.name}` does not read (not in `huddle {sub.name} --help`)"
            )
    for names in cli.required_vars(sub.name):
        if not env.names.intersection(names):
            problems.add(ref, f"`huddle {sub.name}` needs {' or '.join(names)} set (its default is meant for a laptop)")
    if sub.name in redis_readers(cli) and not env.names.intersection(REDIS_VARS):
        problems.add(
            ref,
            f"`huddle {sub.name}` dials Redis (seen when run), but is given neither {' nor '.join(REDIS_VARS)}: "
            "it would dial 127.0.0.1:6379 inside the pod"
            + (" and fail open on every rate limit" if sub.name == "gateway" else ""),
        )
    # A service's own secrets stay in its pods (every subcommand's --help
    # lists the global flags, so the check above cannot tell).
    for owner, secrets in SERVICE_SECRETS.items():
        for name in sorted(env.names.intersection(secrets)):
            if sub.name != owner:
                problems.add(ref, f"`huddle {sub.name}` is given {name}, which only `huddle {owner}` pods may hold")

    # Listening: exactly the declared ports, reachable from other pods.
    declared = {p["containerPort"]: p for p in c.get("ports", [])}
    listening: dict[int, str] = {}
    for var in cli.listen_vars(sub.name):
        if var not in sub.env:
            problems.add(ref, f"`huddle {sub.name}` should listen on {var}, but does not read it")
            continue
        value = env.values.get(var, sub.env[var])
        if value is None:
            problems.add(ref, f"{var} must be set to where `huddle {sub.name}` listens")
            continue
        hp = parse_hostport(value)
        if hp is None:
            problems.add(ref, f"{var}={value!r} is not ip:port")
            continue
        host, port = hp
        if is_loopback(host):
            problems.add(
                ref,
                f"{var}={value!r}{'' if var in env.values else ' (the default)'} listens on loopback: unreachable from other pods and the kubelet; use 0.0.0.0:{port}",
            )
        if not is_ip(host):
            problems.add(ref, f"{var}={value!r}: a listen address must be an IP (0.0.0.0)")
        listening[port] = var
        if port not in declared:
            problems.add(ref, f"listens on port {port} ({var}) but declares no containerPort {port}")
    for port in declared:
        if port not in listening:
            problems.add(
                ref,
                f"containerPort {port} is not a port `huddle {sub.name}` listens on ({', '.join(cli.listen_vars(sub.name)) or 'it listens on none'})",
            )

    # Dialling: peers' *_ADDR and the datastores' URLs.
    for var in sorted(env.names):
        if var in cli.listen_vars(sub.name) or var not in env.values:
            continue
        peer = re.fullmatch(r"HUDDLE_([A-Z0-9]+)_ADDR", var)
        if not (peer or var in DATASTORE_URL_VARS):
            continue
        values = env.values[var].split(",") if var == "HUDDLE_REDIS_CLUSTER_NODES" else [env.values[var]]
        for value in values:
            svc, port = dialled_service(m, w, ref, var, value.strip(), problems)
            if svc is None:
                continue
            edges.append(Edge(w, var, svc, port))
            if peer:
                check_peer(m, cli, ref, var, peer.group(1).lower(), svc, port, problems)


def check_peer(
    m: Manifests, cli: Cli, ref: str, var: str, service: str, svc: dict, port: int, problems: Problems
) -> None:
    """A gRPC peer address: a headless Service whose pods run that service
    and listen on the dialled port."""
    name = svc["metadata"]["name"]
    if svc["spec"].get("clusterIP") != "None":
        problems.add(
            ref,
            f"{var} dials Service {name}, which is not headless: HTTP/2 would pin each connection to one pod (set clusterIP: None)",
        )
    runs = {huddle_subcommand(b) for b in backends(m, svc)}
    if runs != {service}:
        problems.add(
            ref,
            f"{var} dials Service {name}, whose pods run `huddle {', '.join(sorted(str(r) for r in runs)) or 'nothing'}`, not `huddle {service}`",
        )
    listen_var = addr_var(service)
    for b in backends(m, svc):
        for bc in b.containers():
            if is_huddle_image(bc.get("image", "")):
                benv = container_env(m, f"{m.name}: {b.ref}", bc, Problems())
                listen = parse_hostport(benv.values.get(listen_var, ""))
                if listen and listen[1] != port:
                    problems.add(ref, f"{var} dials port {port}, but {b.ref} listens on {listen[1]} ({listen_var})")


def check_probes(
    m: Manifests, cli: Cli, w: Workload, c: dict, problems: Problems, grpc_services: set[str], routes: set[str]
) -> None:
    ref = f"{m.name}: {w.ref} container {c['name']}"
    sub = (c.get("args") or [None])[0]
    grpc_ports = set()
    http_ports = set()
    if sub in cli.service_names():
        env = container_env(m, ref, c, Problems())
        hp = parse_hostport(env.values.get(addr_var(sub), ""))
        if hp:
            grpc_ports.add(hp[1])
    if sub == "gateway":
        env = container_env(m, ref, c, Problems())
        hp = parse_hostport(env.values.get("HUDDLE_HTTP_ADDR", ""))
        if hp:
            http_ports.add(hp[1])
    declared = {p["containerPort"] for p in c.get("ports", [])}
    if cli.listen_vars(str(sub)):
        for kind in ("readinessProbe", "livenessProbe"):
            if kind not in c:
                problems.add(ref, f"no {kind}")
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = c.get(kind)
        if not probe:
            continue
        if "grpc" in probe:
            port = probe["grpc"]["port"]
            if port not in grpc_ports:
                problems.add(
                    ref,
                    f"{kind}: grpc probe on port {port}, which is not this process's gRPC port ({sorted(grpc_ports) or 'none'})",
                )
            service = probe["grpc"].get("service", "")
            if service and service not in grpc_services:
                problems.add(
                    ref,
                    f"{kind}: grpc health service {service!r} is not a service in proto/ ({', '.join(sorted(grpc_services))})",
                )
        for action in ("httpGet", "tcpSocket"):
            if action not in probe:
                continue
            port = w.resolve_port(probe[action]["port"])
            if port is None or port not in declared:
                problems.add(ref, f"{kind}: {action} port {probe[action]['port']!r} is not a declared container port")
            if action == "httpGet":
                if port not in http_ports:
                    problems.add(ref, f"{kind}: httpGet on port {port}, which is not the gateway's HTTP port")
                if probe[action].get("path") not in routes:
                    problems.add(
                        ref,
                        f"{kind}: httpGet path {probe[action].get('path')!r} is not a gateway route ({', '.join(sorted(routes))})",
                    )


def check_shutdown(m: Manifests, w: Workload, c: dict, problems: Problems, drain_secs: int) -> None:
    """The kubelet must not kill a process that is still draining."""
    if w.doc["kind"] != "Deployment":
        return
    ref = f"{m.name}: {w.ref}"
    grace = w.pod.get("terminationGracePeriodSeconds", 30)
    sleep = 0
    pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
    if len(pre_stop) == 2 and pre_stop[0] in ("sleep", "/bin/sleep") and pre_stop[1].isdigit():
        sleep = int(pre_stop[1])
    if grace < sleep + drain_secs:
        problems.add(
            ref,
            f"terminationGracePeriodSeconds {grace} < preStop sleep {sleep} s + drain {drain_secs} s: in-flight requests would be killed",
        )


def check_services(m: Manifests, problems: Problems) -> None:
    for svc in m.of_kind("Service"):
        ref = f"{m.name}: Service/{svc['metadata']['name']}"
        pods = backends(m, svc)
        if not pods:
            problems.add(ref, "selects no workload's pods")
            continue
        headless = svc["spec"].get("clusterIP") == "None"
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            for w in pods:
                resolved = w.resolve_port(target)
                if resolved is None or resolved not in {cp["containerPort"] for cp in w.container_ports()}:
                    problems.add(ref, f"port {p['port']} targets {target!r}, which {w.ref} does not declare")
                elif headless and resolved != p["port"]:
                    problems.add(
                        ref, f"headless, so clients dial pod IPs on port {p['port']}, but the pods listen on {resolved}"
                    )
    for ing in m.of_kind("Ingress"):
        ref = f"{m.name}: Ingress/{ing['metadata']['name']}"
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                svc = m.get("Service", backend["name"])
                want = backend["port"]
                if svc is None:
                    problems.add(ref, f"backend Service {backend['name']!r} does not exist")
                elif not any(
                    p.get("name") == want.get("name") or p["port"] == want.get("number") for p in svc["spec"]["ports"]
                ):
                    problems.add(ref, f"backend port {want} is not a port of Service {backend['name']}")
    for hpa in m.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        obj = m.get(target["kind"], target["name"])
        ref = f"{m.name}: HorizontalPodAutoscaler/{hpa['metadata']['name']}"
        if obj is None:
            problems.add(ref, f"scales {target['kind']}/{target['name']}, which does not exist")
        elif "replicas" in obj["spec"]:
            problems.add(
                ref, f"{target['kind']}/{target['name']} sets spec.replicas: every apply would undo the autoscaler"
            )
    for pdb in m.of_kind("PodDisruptionBudget"):
        if not any(selects(pdb["spec"].get("selector"), w.labels) for w in m.workloads()):
            problems.add(f"{m.name}: PodDisruptionBudget/{pdb['metadata']['name']}", "selects no pods")


# ---------------------------------------------------------------------------
# NetworkPolicies: a small evaluator of the standard semantics.
# ---------------------------------------------------------------------------


def policy_types(spec: dict) -> list[str]:
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def peer_matches(m: Manifests, peer: dict, labels: dict, namespace: str, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic is not matched by ipBlock here
    ns_sel = peer.get("namespaceSelector")
    if ns_sel is None:
        if namespace != policy_ns:
            return False
    elif not selects(ns_sel, m.namespace_labels(namespace)):
        return False
    pod_sel = peer.get("podSelector")
    return pod_sel is None or selects(pod_sel, labels)


def port_matches(rule_ports: list[dict] | None, number: int, name: str | None, protocol: str = "TCP") -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        want = p.get("port")
        if want is None or want == number or (name is not None and want == name):
            return True
        if isinstance(want, int) and p.get("endPort") and want <= number <= p["endPort"]:
            return True
    return False


def allowed(
    m: Manifests,
    direction: str,
    subject: Workload,
    other_labels: dict,
    other_ns: str,
    port: int,
    port_name: str | None,
    protocol: str = "TCP",
    external: bool = False,
) -> bool:
    """Whether `subject` may receive from (Ingress) or send to (Egress) the
    peer, on `port`. `external`: the peer is outside the cluster."""
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    applicable = [
        p
        for p in m.of_kind("NetworkPolicy")
        if p["metadata"].get("namespace", "default") == subject.namespace
        and selects(p["spec"].get("podSelector") or {}, subject.labels)
        and direction in policy_types(p["spec"])
    ]
    if not applicable:
        return True  # not isolated
    for p in applicable:
        for rule in p["spec"].get(key) or []:
            if not port_matches(rule.get("ports"), port, port_name, protocol):
                continue
            peers = rule.get(peers_key)
            if not peers:
                return True
            for peer in peers:
                if external and "ipBlock" in peer:
                    return True
                if not external and peer_matches(m, peer, other_labels, other_ns, subject.namespace):
                    return True
    return False


def open_to_everyone(rule: dict) -> bool:
    peers = rule.get("from")
    if not peers:
        return True
    for peer in peers:
        if "ipBlock" in peer:
            return True
        if peer.get("namespaceSelector") == {} and not peer.get("podSelector"):
            return True
    return False


def check_network(m: Manifests, problems: Problems, edges: list[Edge]) -> None:
    huddle = [w for w in m.workloads() if huddle_subcommand(w)]
    for w in huddle:
        ref = f"{m.name}: {w.ref}"
        for direction in ("Ingress", "Egress"):
            if allowed(m, direction, w, {"no-such-pod": "x"}, "somewhere-else", 1, None, external=True):
                problems.add(ref, f"not isolated for {direction}: add a default-deny NetworkPolicy")
        if not allowed(m, "Egress", w, {"k8s-app": "kube-dns"}, "kube-system", 53, "dns", "UDP"):
            problems.add(ref, "cannot reach DNS (kube-dns in kube-system, UDP 53)")

    for e in edges:
        for server in backends(m, e.service):
            sp = service_port(e.service, e.port)
            target = server.resolve_port(sp.get("targetPort", sp["port"])) if sp else None
            if target is None:
                continue
            name = server.port_name(target)
            ref = f"{m.name}: {e.client.ref} -> {server.ref}:{target} ({e.setting})"
            if not allowed(m, "Egress", e.client, server.labels, server.namespace, target, name):
                problems.add(ref, "the client's NetworkPolicies deny this egress")
            if not allowed(m, "Ingress", server, e.client.labels, e.client.namespace, target, name):
                problems.add(ref, "the server's NetworkPolicies deny this ingress")

    # Only datastore clients reach the datastores.
    datastore_edges = [e for e in edges if e.setting in DATASTORE_URL_VARS]
    for svc_name in sorted({e.service["metadata"]["name"] for e in datastore_edges}):
        svc = m.get("Service", svc_name)
        clients = {e.client.ref for e in datastore_edges if e.service["metadata"]["name"] == svc_name}
        for server in backends(m, svc):
            for sp in svc["spec"]["ports"]:
                target = server.resolve_port(sp.get("targetPort", sp["port"]))
                for w in huddle:
                    if w.ref in clients or target is None:
                        continue
                    name = server.port_name(target)
                    if allowed(m, "Egress", w, server.labels, server.namespace, target, name) and allowed(
                        m, "Ingress", server, w.labels, w.namespace, target, name
                    ):
                        problems.add(
                            f"{m.name}: {w.ref} -> {server.ref}:{target}",
                            "reaches a datastore it does not use; only the services (and migrations) may",
                        )

    # Open to the world: only the gateway.
    for p in m.of_kind("NetworkPolicy"):
        if "Ingress" not in policy_types(p["spec"]):
            continue
        for rule in p["spec"].get("ingress") or []:
            if not open_to_everyone(rule):
                continue
            for w in m.workloads():
                if selects(p["spec"].get("podSelector") or {}, w.labels) and huddle_subcommand(w) != "gateway":
                    problems.add(
                        f"{m.name}: NetworkPolicy/{p['metadata']['name']}",
                        f"lets anyone reach {w.ref}; only the gateway takes traffic from outside",
                    )


# ---------------------------------------------------------------------------
# Facts read from the source tree.
# ---------------------------------------------------------------------------


def proto_services() -> set[str]:
    names = set()
    for proto in (REPO / "proto").rglob("*.proto"):
        text = proto.read_text()
        pkg = re.search(r"^package\s+([\w.]+)\s*;", text, re.M)
        for svc in re.findall(r"^service\s+(\w+)", text, re.M):
            names.add(f"{pkg.group(1)}.{svc}" if pkg else svc)
    return names


def gateway_routes() -> set[str]:
    routes = set()
    for src in (REPO / "crates" / "gateway" / "src").rglob("*.rs"):
        # `App::route("/x", …)` or `web::resource("/x")` (the gateway uses
        # the latter so a wrong method is a 405, not a 404).
        routes.update(re.findall(r'(?:\.route|resource)\(\s*"(/[^"]*)"', src.read_text()))
    return routes


def gateway_drain_secs() -> int:
    """The longest drain after SIGTERM: the gateway's (actix) or a gRPC
    server's (`huddle_serve::DRAIN_BOUND`), whichever the code sets longer."""
    text = (REPO / "crates" / "gateway" / "src" / "lib.rs").read_text()
    found = re.search(r"GRACEFUL_SHUTDOWN_SECS:\s*u64\s*=\s*(\d+)", text)
    if not found:
        raise SystemExit("GRACEFUL_SHUTDOWN_SECS not found in crates/gateway/src/lib.rs")
    serve = (REPO / "crates" / "serve" / "src" / "lib.rs").read_text()
    bound = re.search(r"DRAIN_BOUND:\s*Duration\s*=\s*Duration::from_secs\((\d+)\)", serve)
    if not bound:
        raise SystemExit("DRAIN_BOUND not found in crates/serve/src/lib.rs")
    return max(int(found.group(1)), int(bound.group(1)))


def check_non_clap_env(problems: Problems) -> None:
    for name, path in NON_CLAP_ENV.items():
        if name not in (REPO / path).read_text():
            problems.add("deploy/check/check.py", f"NON_CLAP_ENV says {path} reads {name}, but it does not any more")


# ---------------------------------------------------------------------------
# The Dockerfile.
# ---------------------------------------------------------------------------


def check_dockerfile(
    problems: Problems, renders: list[Manifests], text: str | None = None, ignore: str | None = None
) -> None:
    ref = "deploy/docker/Dockerfile"
    text = DOCKERFILE.read_text() if text is None else text
    ignore = DOCKERIGNORE.read_text() if ignore is None else ignore
    logical = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in logical.splitlines() if line.strip() and not line.strip().startswith("#")]
    froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    for image in froms:
        repo = image.split(":")[0].split("@")[0]
        if repo not in ("rust", "debian"):
            problems.add(ref, f"FROM {image}: only the official rust and debian images are expected")
    for line in lines:
        if re.match(r"(?i)^ADD\s", line) and re.search(r"https?://|git@", line):
            problems.add(ref, f"{line!r}: downloads at build time; use the repository or a package registry")
        if re.match(r"(?i)^RUN\s", line) and re.search(r"\b(curl|wget)\b|https?://", line):
            problems.add(ref, f"{line!r}: downloads at build time; use the repository or a package registry")
    build = " ".join(line for line in lines if "cargo build" in line)
    for flag in ("--release", "--locked", "--bin huddle"):
        if flag not in build:
            problems.add(ref, f"cargo build lacks {flag}")
    entry = next((line for line in lines if line.upper().startswith("ENTRYPOINT")), "")
    if "/usr/local/bin/huddle" not in entry or "COPY --from=build /out/huddle /usr/local/bin/huddle" not in logical:
        problems.add(ref, "the entrypoint must be the huddle binary at /usr/local/bin/huddle")
    user = next((line.split()[1] for line in lines if line.upper().startswith("USER ")), None)
    uid = user.split(":")[0] if user else None
    if uid is None or not uid.isdigit() or uid == "0":
        problems.add(ref, f"USER {user}: the image must run as a numeric non-root user")
    for m in renders:
        for w in m.workloads():
            if huddle_subcommand(w) and str(w.pod.get("securityContext", {}).get("runAsUser")) != uid:
                problems.add(
                    f"{m.name}: {w.ref}",
                    f"runAsUser {w.pod.get('securityContext', {}).get('runAsUser')} differs from the image's USER {uid}",
                )

    # The build context must keep what the build reads.
    patterns = [line.strip() for line in ignore.splitlines() if line.strip() and not line.startswith("#")]
    for needed in ("Cargo.toml", "Cargo.lock", "crates/huddle/src/main.rs", "proto", "migrations"):
        for pat in patterns:
            pat = pat.lstrip("/")
            if fnmatch.fnmatch(needed, pat) or needed.startswith(pat.rstrip("/") + "/") or needed == pat.rstrip("/"):
                problems.add(".dockerignore", f"{pat!r} excludes {needed}, which the image build needs")


# ---------------------------------------------------------------------------


def check_drift(m: Manifests, cli: Cli, problems: Problems) -> list[Edge]:
    grpc_services, routes, drain = proto_services(), gateway_routes(), gateway_drain_secs()
    edges: list[Edge] = []
    for w in m.workloads():
        for c in w.containers() + list(w.pod.get("initContainers") or []):
            if not is_huddle_image(c.get("image", "")):
                continue
            check_huddle_container(m, cli, w, c, problems, edges)
            check_probes(m, cli, w, c, problems, grpc_services | {liveness_service()}, routes)
            check_shutdown(m, w, c, problems, drain)
    deployed = {huddle_subcommand(w) for w in m.workloads()}
    for service in cli.service_names():
        if service not in deployed and service in {s for s in cli.subcommands}:
            problems.add(m.name, f"`huddle {service}` is a service, but no workload runs it")
    check_services(m, problems)
    check_network(m, problems, edges)
    check_production(m, cli, problems)
    return edges


def find_tool(name: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: run `bash deploy/check/install-tools.sh`")
    return found


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--huddle", required=True, help="the huddle binary")
    ap.add_argument("--kubectl", help="default: beside this Python, else on PATH")
    ap.add_argument("--promtool", help="default: beside this Python, else on PATH")
    ap.add_argument("--no-checkov", action="store_true")
    args = ap.parse_args(argv)
    kubectl = find_tool("kubectl", args.kubectl)
    promtool = find_tool("promtool", args.promtool)

    problems = Problems()
    cli = load_cli(args.huddle)
    rendered: dict[str, str] = {}
    renders: list[Manifests] = []
    for name, path in kustomizations().items():
        try:
            text, docs = render(kubectl, path)
        except RenderError as e:
            problems.add(name, str(e))
            continue
        rendered[name] = text
        m = Manifests(name, docs)
        renders.append(m)
        validate_schemas(m, problems)
        if name != "base":  # the base is never applied on its own
            check_drift(m, cli, problems)
            check_monitoring(m, problems, promtool, cli)
            services = [w for w in m.workloads() if huddle_subcommand(w) in cli.service_names()]
            jobs = [w for w in m.workloads() if huddle_subcommand(w) == "migrate" and w.doc["kind"] == "Job"]
            used, terms = connection_budget(m, cli, services, jobs, Problems())
            print(f"deploy-check: {name}: Postgres connections at full scale-out: {' + '.join(terms)} = {used}")
        print(f"deploy-check: rendered {name}: {len(docs)} objects")
    check_non_clap_env(problems)
    check_docs(problems)
    check_dockerfile(problems, renders)

    if not args.no_checkov:
        ok, output = run_checkov(rendered, find_tool("checkov", None))
        summary = [line for line in output.splitlines() if "checks:" in line]
        print(f"deploy-check: checkov: {' '.join(summary) or output[-2000:]}")
        if not ok:
            problems.add("checkov", "\n" + output)

    if problems:
        sys.stdout.flush()
        print(f"deploy-check: FAILED, {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(
        f"deploy-check: ok ({', '.join(rendered)}: schemas, drift against {args.huddle}, Dockerfile{'' if args.no_checkov else ', checkov'})"
    )
    return 0




# ---------------------------------------------------------------------------
# Production readiness (issue 13): rollout, shutdown arithmetic, least
# privilege, DNS, scraping, the connection budget.
# ---------------------------------------------------------------------------

# Time a terminating pod needs to leave its clients' address sets:
# EndpointSlice propagation to CoreDNS (measured ≤ 5 s on loaded clusters) +
# the TTL CoreDNS gives a headless Service's records (5 s, its default) +
# the clients' re-resolve period (crates/common/src/grpc_client.rs).
ENDPOINT_PROPAGATION_SECS = 5
DNS_TTL_SECS = 5
# Link-local DNS servers pods may be pointed at instead of kube-dns pods:
# NodeLocal DNSCache and GKE Cloud DNS (the metadata server).
LINK_LOCAL_DNS = ("169.254.20.10", "169.254.169.254")
MONITORING = K8S / "monitoring"
README = REPO / "deploy" / "README.md"


def liveness_service() -> str:
    text = (REPO / "crates" / "serve" / "src" / "health.rs").read_text()
    found = re.search(r'pub const LIVENESS_SERVICE: &str = "([^"]+)"', text)
    if not found:
        raise SystemExit("LIVENESS_SERVICE not found in crates/serve/src/health.rs")
    return found.group(1)


def refresh_secs() -> int:
    text = (REPO / "crates" / "common" / "src" / "grpc_client.rs").read_text()
    found = re.search(r"refresh_interval:\s*Duration::from_secs\((\d+)\)", text)
    if not found:
        raise SystemExit("refresh_interval not found in crates/common/src/grpc_client.rs")
    return int(found.group(1))


def readyz_check_secs() -> float:
    text = (REPO / "crates" / "gateway" / "src" / "health.rs").read_text()
    found = re.search(r"CHECK_TIMEOUT:\s*Duration\s*=\s*Duration::from_(secs|millis)\((\d+)\)", text)
    if not found:
        raise SystemExit("CHECK_TIMEOUT not found in crates/gateway/src/health.rs")
    return int(found.group(2)) / (1000 if found.group(1) == "millis" else 1)


def cluster_config(m: Manifests) -> dict[str, str]:
    """The overlay's local-config `cluster.yaml` (not in the render)."""
    path = K8S / "overlays" / m.name / "cluster.yaml"
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("data") or {}


def quantity_bytes(q) -> float | None:
    if q is None:
        return None
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    for u, f in units.items():
        if str(q).endswith(u):
            return float(str(q)[: -len(u)]) * f
    return float(q)


def release_slug(image: str) -> str | None:
    """The release an image reference names: the digest's first 12 hex
    digits, else the tag with dots as dashes."""
    if "@sha256:" in image:
        return image.split("@sha256:", 1)[1][:12]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        return re.sub(r"[^a-z0-9-]", "-", last.split(":", 1)[1].lower())
    return None


def committed_tags() -> set[str]:
    tags = set()
    for k in [K8S / "base" / "kustomization.yaml"] + sorted((K8S / "overlays").glob("*/kustomization.yaml")):
        for img in (yaml.safe_load(k.read_text()) or {}).get("images") or []:
            if img.get("name") == HUDDLE_IMAGE and img.get("newTag"):
                tags.add(str(img["newTag"]))
    return tags


# Memory a process needs per open chat stream, and without any: measured
# through `huddle all` (gateway and chat in one process, so each side is
# charged the whole ~59 KB; deploy/README.md, "Memory"), rounded up.
STREAM_BYTES = 64 * 2**10
BASELINE_BYTES = 128 * 2**20
# The setting that caps a process's open streams, per subcommand.
STREAM_CAPS = {"gateway": "HUDDLE_SSE_MAX_STREAMS", "chat": "HUDDLE_CHAT_STREAM_MAX"}


def check_stream_memory(m: Manifests, cli: Cli, w: Workload, problems: Problems) -> None:
    sub = huddle_subcommand(w)
    var = STREAM_CAPS.get(str(sub))
    if var is None:
        return
    c = w.containers()[0]
    env = container_env(m, f"{m.name}: {w.ref}", c, Problems())
    cap = int(env.values.get(var) or cli.subcommands[sub].env.get(var) or 0)
    limit = quantity_bytes(((c.get("resources") or {}).get("limits") or {}).get("memory")) or 0
    need = BASELINE_BYTES + cap * STREAM_BYTES
    if limit < need:
        problems.add(
            f"{m.name}: {w.ref}",
            f"memory limit {limit / 2**20:.0f} MiB < {need / 2**20:.0f} MiB its {cap} streams ({var}) need "
            f"({BASELINE_BYTES // 2**20} MiB + {cap} × {STREAM_BYTES // 2**10} KiB): a full pod is OOM-killed with every stream on it",
        )


def check_docs(problems: Problems, text: str | None = None) -> None:
    """deploy/README.md states what the code and manifests do: the JWT
    secret's minimum, the preStop sleep."""
    text = README.read_text() if text is None else text
    config = (REPO / "crates" / "huddle" / "src" / "config.rs").read_text()
    found = re.search(r"MIN_JWT_SECRET_BYTES: usize = (\d+);", config)
    if not found:
        raise SystemExit("MIN_JWT_SECRET_BYTES not found in crates/huddle/src/config.rs")
    for n, unit in re.findall(r"JWT secret[^.]*?(?:at least|under) (\d+) (characters|bytes)", text, re.S):
        if unit != "bytes" or n != found.group(1):
            problems.add("deploy/README.md", f"says the JWT secret needs {n} {unit}; the gateway wants at least {found.group(1)} bytes")
    loop = re.search(r"for db in ([\w ]+); do\n[^\n]*\n\s+-v ON_ERROR_STOP=1 -f deploy/sql/grants.sql", text)
    granted = set(loop.group(1).split()) if loop else set()
    for src in sorted((REPO / "crates").glob("*/src/lib.rs")):
        for db in re.findall(r'pub const DATABASE_NAME: &str = "(\w+)";', src.read_text()):
            if db not in granted:
                problems.add(
                    "deploy/README.md",
                    f"the grants loop (deploy/sql/grants.sql per database) misses {db} ({src.relative_to(REPO)}): "
                    "the runtime role could not read it, and its pods would never pass `huddle migrate --check`",
                )
    sleeps = set()
    for path in (K8S / "base").rglob("deployment.yaml"):
        sleeps.update(re.findall(r'command: \["sleep", "(\d+)"\]', path.read_text()))
    for n in re.findall(r"(\d+) s `preStop`", text):
        if n not in sleeps:
            problems.add("deploy/README.md", f"says the preStop sleep is {n} s; the Deployments sleep {', '.join(sorted(sleeps))} s")


def secret_ref(c: dict, var: str) -> tuple[str, str] | None:
    for e in c.get("env") or []:
        if e["name"] == var:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            return (ref["name"], ref["key"]) if ref else None
    return None


def secrets_read(c: dict) -> set[str]:
    names = {((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") for e in c.get("env") or []}
    names |= {(s.get("secretRef") or {}).get("name") for s in c.get("envFrom") or []}
    return names - {None}


def generated_names() -> set[str]:
    """ConfigMaps and Secrets the kustomizations generate with a name hash."""
    names = set()
    for k in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(k.read_text()) or {}
        for gen in (doc.get("configMapGenerator") or []) + (doc.get("secretGenerator") or []):
            opts = gen.get("options") or {}
            if not opts.get("disableNameSuffixHash") and not (doc.get("generatorOptions") or {}).get("disableNameSuffixHash"):
                names.add(gen["name"])
    return names


def check_job_templates(m: Manifests, jobs: list[Workload], problems: Problems) -> None:
    """A Job's pod template is immutable: if it names a hash-suffixed
    ConfigMap or Secret, a config-only change (same release, same Job
    name) changes the template and `kubectl apply` fails with "field is
    immutable" until the Job's TTL removes it."""
    hashed = generated_names()

    def is_hashed(name: str) -> bool:
        return any(name.startswith(g + "-") and re.fullmatch(r"[a-z0-9]{10}", name[len(g) + 1 :]) for g in hashed)

    for job in jobs:
        pod = job.pod
        refs = set()
        for c in job.containers() + list(pod.get("initContainers") or []):
            for e in c.get("env") or []:
                src = e.get("valueFrom") or {}
                for key in ("configMapKeyRef", "secretKeyRef"):
                    if key in src:
                        refs.add(src[key]["name"])
            for f in c.get("envFrom") or []:
                for key in ("configMapRef", "secretRef"):
                    if key in f:
                        refs.add(f[key]["name"])
        for v in pod.get("volumes") or []:
            for key in ("configMap", "secret"):
                if key in v:
                    refs.add(v[key].get("name") or v[key].get("secretName"))
        for name in sorted(n for n in refs if n and is_hashed(n)):
            problems.add(
                f"{m.name}: {job.ref}",
                f"its pod template names {name}, a generated name that changes with the config: a config-only change "
                "makes the next `kubectl apply` fail on this Job (field is immutable); give the Job what it needs directly",
            )


def egress_to_ip(m: Manifests, w: Workload, ip: str, port: int, protocol: str) -> bool:
    addr = ipaddress.ip_address(ip)
    applicable = [
        p
        for p in m.of_kind("NetworkPolicy")
        if p["metadata"].get("namespace", "default") == w.namespace
        and selects(p["spec"].get("podSelector") or {}, w.labels)
        and "Egress" in policy_types(p["spec"])
    ]
    if not applicable:
        return True
    for p in applicable:
        for rule in p["spec"].get("egress") or []:
            if not port_matches(rule.get("ports"), port, None, protocol):
                continue
            peers = rule.get("to")
            if not peers:
                return True
            for peer in peers:
                block = peer.get("ipBlock")
                if block and addr in ipaddress.ip_network(block["cidr"]) and not any(
                    addr in ipaddress.ip_network(x) for x in block.get("except") or []
                ):
                    return True
    return False


def check_swagger_ui_off(m: Manifests, problems: Problems) -> None:
    """Production serves the OpenAPI document but no Swagger UI."""
    if m.name != "prod":
        return
    configs = [
        d for d in m.docs
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"].startswith("huddle-config")
    ]
    if not any((d.get("data") or {}).get("HUDDLE_SWAGGER_UI") == "false" for d in configs):
        problems.add(f"{m.name}: ConfigMap huddle-config", "HUDDLE_SWAGGER_UI is not \"false\": Swagger UI would be served in production")


def check_datastore_ca(m: Manifests, huddle: list[Workload], problems: Problems) -> None:
    """Issue 20, item 5: the managed datastores' CAs are not in Debian's
    store, so every huddle container (all dial Postgres or Redis, init
    containers and the migrate Job included) gets SSL_CERT_FILE pointing
    into a mounted ConfigMap or Secret: the operator's CA bundle. Not in
    dev, whose in-cluster datastores speak plain TCP (HUDDLE_ENV=dev)."""
    if m.name == "dev":
        return
    for w in huddle:
        volumes = {
            v["name"]: v for v in w.pod.get("volumes") or [] if "configMap" in v or "secret" in v or "projected" in v
        }
        for c in w.containers() + list(w.pod.get("initContainers") or []):
            if not is_huddle_image(c.get("image", "")):
                continue
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            path = env.get("SSL_CERT_FILE")
            mounts = [
                vm["mountPath"].rstrip("/") + "/"
                for vm in c.get("volumeMounts") or []
                if vm.get("name") in volumes
            ]
            if not path or not any(path.startswith(mp) for mp in mounts):
                problems.add(
                    f"{m.name}: {w.ref} container {c['name']}",
                    "no CA bundle for the datastores: SSL_CERT_FILE must point into a mounted ConfigMap or Secret "
                    "(the RDS, Cloud SQL, Memorystore CAs are not in Debian's store; verify-full fails without it)",
                )


def check_production(m: Manifests, cli: Cli, problems: Problems) -> None:
    check_swagger_ui_off(m, problems)
    huddle = [w for w in m.workloads() if huddle_subcommand(w)]
    services = [w for w in huddle if huddle_subcommand(w) in cli.service_names()]
    jobs = [w for w in huddle if huddle_subcommand(w) == "migrate" and w.doc["kind"] == "Job"]
    cluster = cluster_config(m)

    # -- the release: migrations first, one Job per release ---------------
    tags = committed_tags()
    for w in huddle:
        for c in w.containers() + list(w.pod.get("initContainers") or []):
            image = c.get("image", "")
            if not is_huddle_image(image) or "@sha256:" in image:
                continue
            tag = image.rsplit("/", 1)[-1].split(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
            if tag not in tags:
                problems.add(
                    f"{m.name}: {w.ref}",
                    f"image {image}: a release must be pinned by digest (only the committed tags {sorted(tags)} may go without)",
                )
    for job in jobs:
        ref = f"{m.name}: {job.ref}"
        image = job.containers()[0].get("image", "")
        slug = release_slug(image)
        if job.doc["metadata"]["name"] != f"migrate-{slug}":
            problems.add(
                ref,
                f"named {job.doc['metadata']['name']!r} but runs {image}: name it migrate-{slug} (deploy/k8s/set-release.sh), "
                "or the next release's apply fails on the old Job's immutable template",
            )
        if not job.doc["spec"].get("activeDeadlineSeconds"):
            problems.add(ref, "no activeDeadlineSeconds: a migration that hangs holds the rollout forever")
    deadline = max((j.doc["spec"].get("activeDeadlineSeconds") or 0 for j in jobs), default=0)
    for w in services:
        ref = f"{m.name}: {w.ref}"
        waits = [
            [str(a) for a in c.get("args") or []]
            for c in w.pod.get("initContainers") or []
            if is_huddle_image(c.get("image", ""))
        ]
        waits = [a for a in waits if a[:2] == ["migrate", "--check"]]
        if not waits:
            problems.add(ref, "no init container `huddle migrate --check --wait N`: new pods could serve an old schema")
            continue
        args = waits[0]
        wait = int(args[args.index("--wait") + 1]) if "--wait" in args[:-1] else 0
        if wait < deadline:
            problems.add(
                ref,
                f"init container waits {wait} s for migrations, less than the migrate Job's activeDeadlineSeconds {deadline}",
            )

    # -- least privilege: a DDL role for the Job, a DML role for the rest --
    # The Job's database URL comes from a Secret of its own that no other
    # workload reads (so rotating or reading the runtime Secret never
    # touches DDL rights), and no Secret a runtime pod reads carries it.
    job_secrets = {secret_ref(c, "HUDDLE_DATABASE_URL") for j in jobs for c in j.containers()} - {None}
    for w in huddle:
        if w in jobs:
            continue
        for c in w.containers() + list(w.pod.get("initContainers") or []):
            for name in sorted(secrets_read(c) & {n for n, _ in job_secrets}):
                problems.add(
                    f"{m.name}: {w.ref} container {c['name']}",
                    f"reads Secret {name}, which holds the migrate Job's database credentials (DDL); runtime pods get the DML-only role",
                )
            for name in sorted(secrets_read(c)):
                obj = m.get("Secret", name)
                if obj and "HUDDLE_MIGRATE_DATABASE_URL" in config_data(obj):
                    problems.add(
                        f"{m.name}: Secret/{name}",
                        f"carries HUDDLE_MIGRATE_DATABASE_URL and is read by {w.ref}: the migration role belongs in the Job's own Secret",
                    )
    check_job_templates(m, jobs, problems)
    check_datastore_ca(m, huddle, problems)
    for cm in m.of_kind("ConfigMap"):
        for k, v in (cm.get("data") or {}).items():
            if k in DATASTORE_URL_VARS + ("HUDDLE_MIGRATE_DATABASE_URL",):
                for url in str(v).split(","):
                    if urlsplit(url.strip()).password:
                        problems.add(
                            f"{m.name}: ConfigMap/{cm['metadata']['name']}",
                            f"{k} carries a password; credentials belong in the Secret",
                        )

    # -- shutdown and probes arithmetic -----------------------------------
    leave = ENDPOINT_PROPAGATION_SECS + DNS_TTL_SECS + refresh_secs()
    check_secs = readyz_check_secs()
    for w in huddle:
        if w.doc["kind"] != "Deployment":
            continue
        ref = f"{m.name}: {w.ref}"
        sub = huddle_subcommand(w)
        for c in w.containers():
            pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
            sleep = int(pre[1]) if len(pre) == 2 and pre[1].isdigit() else 0
            if sleep < leave:
                problems.add(
                    ref,
                    f"preStop sleep {sleep} s < {leave} s a pod takes to leave clients' address sets "
                    f"(EndpointSlice {ENDPOINT_PROPAGATION_SECS} s + DNS TTL {DNS_TTL_SECS} s + re-resolve {refresh_secs()} s)",
                )
            live = c.get("livenessProbe") or {}
            if "tcpSocket" in live:
                problems.add(ref, "livenessProbe is a TCP check, which a wedged process passes; probe the server")
            if sub in cli.service_names() and "grpc" in live and live["grpc"].get("service") != liveness_service():
                problems.add(
                    ref,
                    f"livenessProbe asks health service {live['grpc'].get('service')!r}; only {liveness_service()!r} "
                    "stays SERVING while Postgres is down (else an outage restarts every pod)",
                )
            ready = c.get("readinessProbe") or {}
            if sub == "gateway" and ready.get("timeoutSeconds", 1) <= check_secs:
                problems.add(
                    ref,
                    f"readinessProbe timeoutSeconds {ready.get('timeoutSeconds', 1)} <= /readyz's backend check timeout "
                    f"{check_secs:g} s: a slow backend makes the probe flap",
                )
        for c in w.containers() + list(w.pod.get("initContainers") or []):
            res = c.get("resources") or {}
            req = quantity_bytes((res.get("requests") or {}).get("memory"))
            lim = quantity_bytes((res.get("limits") or {}).get("memory"))
            if req is None or lim is None or req != lim:
                problems.add(
                    f"{ref} container {c['name']}",
                    "memory request must equal the limit (no overcommit, never OOM-killed for a neighbour)",
                )
        spread = w.pod.get("topologySpreadConstraints") or []
        for t in spread:
            if "pod-template-hash" not in (t.get("matchLabelKeys") or []):
                problems.add(
                    ref, "topologySpreadConstraints without matchLabelKeys [pod-template-hash]: old pods skew a rollout"
                )
        if m.name == "prod":
            for key, what in (("topology.kubernetes.io/zone", "zones"), ("kubernetes.io/hostname", "nodes")):
                if not any(t.get("topologyKey") == key and t.get("whenUnsatisfiable") == "DoNotSchedule" for t in spread):
                    problems.add(
                        ref,
                        f"prod: no topologySpreadConstraint over {what} ({key}) with whenUnsatisfiable: DoNotSchedule: "
                        "under pressure every replica may land in one place",
                    )
        check_stream_memory(m, cli, w, problems)
    for pdb in m.of_kind("PodDisruptionBudget"):
        if pdb["spec"].get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
            problems.add(
                f"{m.name}: PodDisruptionBudget/{pdb['metadata']['name']}",
                "unhealthyPodEvictionPolicy is not AlwaysAllow: unready pods block node drains",
            )
    for hpa in m.of_kind("HorizontalPodAutoscaler"):
        behavior = hpa["spec"].get("behavior") or {}
        if not (behavior.get("scaleUp") and behavior.get("scaleDown")):
            problems.add(
                f"{m.name}: HorizontalPodAutoscaler/{hpa['metadata']['name']}",
                "no behavior.scaleUp/scaleDown: the defaults flap on bursty load",
            )

    # -- DNS on managed clusters ------------------------------------------
    for w in huddle:
        for ip in LINK_LOCAL_DNS:
            for proto in ("UDP", "TCP"):
                if not egress_to_ip(m, w, ip, 53, proto):
                    problems.add(f"{m.name}: {w.ref}", f"cannot reach DNS at {ip} ({proto} 53; NodeLocal DNSCache / GKE Cloud DNS)")

    # -- who may reach the pods from outside the namespace ----------------
    monitoring = cluster.get("monitoringNamespace", "monitoring")
    ingress_ns = cluster.get("ingressNamespace", "ingress-nginx")
    for w in huddle:
        ref = f"{m.name}: {w.ref}"
        sub = huddle_subcommand(w)
        if sub == "gateway":
            http = w.resolve_port("http")
            if http is None:
                continue
            if allowed(m, "Ingress", w, {"app": "x"}, "some-namespace", http, "http"):
                problems.add(ref, "its HTTP port (and so /metrics) is open to every namespace; admit the Ingress controller and monitoring only")
            for ns, why in ((ingress_ns, "the Ingress controller"), (monitoring, "Prometheus")):
                if not allowed(m, "Ingress", w, {"app": "x"}, ns, http, "http"):
                    problems.add(ref, f"{why} (namespace {ns}, overlays/{m.name}/cluster.yaml) cannot reach its HTTP port")
        elif sub in cli.service_names():
            metrics = w.resolve_port("metrics")
            if metrics and not allowed(m, "Ingress", w, {"app": "x"}, monitoring, metrics, "metrics"):
                problems.add(ref, f"Prometheus (namespace {monitoring}) cannot scrape its metrics port")

    # -- Redis must never evict tag sets (ARCHITECTURE.md) ----------------
    for w in m.workloads():
        for c in w.containers():
            if c.get("image", "").split(":")[0].rsplit("/", 1)[-1] != "redis":
                continue
            args = [str(a) for a in c.get("args") or []]
            if "--maxmemory-policy" not in args[:-1] or args[args.index("--maxmemory-policy") + 1] != "noeviction":
                problems.add(f"{m.name}: {w.ref}", "Redis without --maxmemory-policy noeviction: evicted tag sets leave stale values")

    # -- the Postgres connection budget -----------------------------------
    limit = cluster.get("postgresMaxConnections")
    if limit:
        used, terms = connection_budget(m, cli, services, jobs, problems)
        if used > int(limit):
            problems.add(
                m.name,
                f"Postgres connection budget: up to {used} connections ({' + '.join(terms)}: "
                f"(max replicas + surge) × (pool + held outside it) per service, + Jobs) > "
                f"postgresMaxConnections {limit} (overlays/{m.name}/cluster.yaml)",
            )


def connection_budget(
    m: Manifests, cli: Cli, services: list[Workload], jobs: list[Workload], problems: Problems
) -> tuple[int, list[str]]:
    """Postgres connections at full scale-out: per service Deployment,
    (HPA maxReplicas + rolling-update surge) × (HUDDLE_DB_POOL_SIZE + the
    connections a process holds outside its pool, as observed in a running
    `huddle all`: the LISTEN connections), plus one per migrate Job (its
    databases are migrated one after the other on one connection). Init
    containers hold one connection before the main container starts, so
    within the pod's share."""
    used, terms = 0, []
    outside = cli.observed.outside_pool if cli.observed else {}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in m.of_kind("HorizontalPodAutoscaler")}
    for w in services:
        sub = huddle_subcommand(w)
        env = container_env(m, f"{m.name}: {w.ref}", w.containers()[0], Problems())
        pool = int(env.values.get("HUDDLE_DB_POOL_SIZE") or cli.subcommands[sub].env.get("HUDDLE_DB_POOL_SIZE") or 10)
        database = f"huddle_{sub}"
        if cli.observed is not None and database not in outside:
            problems.add(f"{m.name}: {w.ref}", f"`huddle all` showed no pool for database {database}: its connections are not counted")
        extra = outside.get(database, 0)
        hpa = hpas.get(w.doc["metadata"]["name"])
        replicas = hpa["spec"]["maxReplicas"] if hpa else 1
        surge = str((w.doc["spec"].get("strategy") or {}).get("rollingUpdate", {}).get("maxSurge", "25%"))
        surged = -(-replicas * int(surge[:-1]) // 100) if surge.endswith("%") else int(surge)
        used += (replicas + surged) * (pool + extra)
        terms.append(f"{sub} ({replicas}+{surged})×({pool}+{extra})")
    used += len(jobs)
    terms.append(f"{len(jobs)} Job")
    return used, terms


# ---------------------------------------------------------------------------
# Monitoring: PodMonitors, PrometheusRules, the Grafana dashboard.
# ---------------------------------------------------------------------------

_SCHEMAS = {
    "PodMonitor": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["selector", "podMetricsEndpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {"type": "object"},
                    "namespaceSelector": {"type": "object"},
                    "podMetricsEndpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                "scrapeTimeout": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                            },
                        },
                    },
                },
            }
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {"groups": {"type": "array", "minItems": 1}},
            }
        },
    },
}


def validate_monitoring_schema(doc: dict, ref: str, problems: Problems) -> None:
    import jsonschema

    schema = _SCHEMAS.get(doc.get("kind"))
    if schema is None or doc.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.add(ref, f"unexpected {doc.get('apiVersion')} {doc.get('kind')} (PodMonitor, PrometheusRule expected)")
        return
    for e in jsonschema.Draft202012Validator(schema).iter_errors(doc):
        problems.add(ref, f"invalid at {'/'.join(str(p) for p in e.path)}: {e.message}")


# Metrics rules use that no Huddle process serves, with who serves them.
EXTERNAL_METRICS = {
    "up": "Prometheus, per scrape target",
    "kube_job_failed": "kube-state-metrics (kube-prometheus-stack)",
}


def served_metrics(cli: Cli | None) -> set[str]:
    """Metric families a real scrape of `huddle all` served (live.py)."""
    if cli is None or cli.observed is None:
        raise SystemExit("deploy-check: the monitoring check needs the binary observed (load_cli(..., observe=True))")
    return set(cli.observed.metrics)


def used_metrics(expr: str) -> set[str]:
    """Metric names an expression selects: `huddle_*` tokens and any name
    right before a `{` selector (minus histogram suffixes of served
    histograms)."""
    found = set()
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not names
    names = set(re.findall(r"\b(huddle_[a-z0-9_]+)", expr)) | set(re.findall(r"(?<![\w:])([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
    for name in names:
        found.add(re.sub(r"_(bucket|sum|count)$", "", name) if name.startswith("huddle_") else name)
    return found


def readme_anchors() -> set[str]:
    return {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+\s+(.*)$", README.read_text(), re.M)
    }


def check_monitoring(
    m: Manifests, problems: Problems, promtool: str, cli: Cli | None = None, dashboard: dict | None = None,
    rule_tests: str | None = None,
) -> None:
    rules = m.of_kind("PrometheusRule")
    monitors = m.of_kind("PodMonitor")
    if m.name == "prod" and not (rules and monitors):
        problems.add(m.name, "no PodMonitors/PrometheusRules (deploy/k8s/monitoring)")
    known = served_metrics(cli) | set(EXTERNAL_METRICS)
    anchors = readme_anchors()
    check_discovery(m, problems)
    for pm in monitors:
        ref = f"{m.name}: PodMonitor/{pm['metadata']['name']}"
        pods = [w for w in m.workloads() if selects(pm["spec"].get("selector"), w.labels)]
        if not pods:
            problems.add(ref, "selects no pods")
        for ep in pm["spec"].get("podMetricsEndpoints") or []:
            for w in pods:
                if w.resolve_port(ep.get("port")) is None:
                    problems.add(ref, f"port {ep.get('port')!r} is not a port of {w.ref}")
    for rule_doc in rules:
        ref = f"{m.name}: PrometheusRule/{rule_doc['metadata']['name']}"
        groups = rule_doc["spec"].get("groups") or []
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            yaml.safe_dump({"groups": groups}, f)
        out = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        if out.returncode != 0:
            problems.add(ref, f"promtool check rules: {out.stdout.strip()} {out.stderr.strip()}")
        else:
            test_rules(ref, groups, f.name, promtool, problems, rule_tests)
        os.unlink(f.name)
        recorded = {r["record"] for g in groups for r in g.get("rules") or [] if "record" in r}
        for g in groups:
            for r in g.get("rules") or []:
                name = r.get("alert") or r.get("record")
                for metric in sorted(used_metrics(str(r.get("expr", ""))) - known - recorded):
                    problems.add(ref, f"{name}: metric {metric} is not served by `huddle all` (its /metrics scrape) nor listed in EXTERNAL_METRICS")
                if "alert" in r:
                    runbook = (r.get("annotations") or {}).get("runbook", "")
                    anchor = runbook.split("#", 1)[1] if "#" in runbook else ""
                    if anchor not in anchors or anchor != r["alert"].lower():
                        problems.add(ref, f"{r['alert']}: no runbook (annotation runbook: deploy/README.md#{r['alert'].lower()}, a heading there)")
    if m.name == "prod":
        if dashboard is None:
            dashboard = json.loads((MONITORING / "dashboards" / "huddle.json").read_text())
        recorded = {r["record"] for d in rules for g in d["spec"].get("groups") or [] for r in g.get("rules") or [] if "record" in r}
        check_dashboard(dashboard, known | recorded, problems)
        panels = " ".join(t.get("expr", "") for p in dashboard.get("panels") or [] for t in p.get("targets") or [])
        alerts = " ".join(str(r.get("expr", "")) for d in rules for g in d["spec"].get("groups") or [] for r in g.get("rules") or [])
        for what, text in (("alert", alerts), ("dashboard panel", panels)):
            if not re.search(r'huddle_rate_limit_decisions_total\{[^}]*decision="failed_open"', text):
                problems.add(m.name, f"no {what} reads huddle_rate_limit_decisions_total{{decision=\"failed_open\"}}: rate limits switched off go unseen")


RULE_TESTS = MONITORING / "rules-test.yaml"
# The two-day cases, evaluated every 5 minutes instead of every minute.
RULE_TESTS_DAILY = MONITORING / "rules-test-daily.yaml"
_PROMTOOL_TESTS: dict[str, str] = {}  # (rules, cases) -> promtool's complaint ("" when it passed)


def test_rules(ref: str, groups: list, rules_file: str, promtool: str, problems: Problems, text: str | None) -> None:
    """`promtool test rules` on rules-test.yaml (`text` replaces it) and
    rules-test-daily.yaml, and every alert has a case where it fires and
    one where it stays silent."""
    texts = [RULE_TESTS.read_text() if text is None else text, RULE_TESTS_DAILY.read_text()]
    docs = [yaml.safe_load(t) or {} for t in texts]
    fires, silent = set(), set()
    for doc in docs:
        for t in doc.get("tests") or []:
            for a in t.get("alert_rule_test") or []:
                (fires if a.get("exp_alerts") else silent).add(a.get("alertname"))
    for g in groups:
        for r in g.get("rules") or []:
            if "alert" in r:
                for cases, what in ((fires, "fires"), (silent, "stays silent")):
                    if r["alert"] not in cases:
                        problems.add(ref, f"{r['alert']}: no case in {RULE_TESTS.name} where it {what}")
    # promtool takes ~15 s here; the self-test asks the same question often.
    key = yaml.safe_dump(groups) + "\0" + "\0".join(texts)
    if key not in _PROMTOOL_TESTS:
        files = []
        for doc in docs:
            with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
                doc["rule_files"] = [rules_file]
                yaml.safe_dump(doc, f)
            files.append(f.name)
        out = subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True)
        for name in files:
            os.unlink(name)
        _PROMTOOL_TESTS[key] = "" if out.returncode == 0 else f"{out.stdout.strip()}\n{out.stderr.strip()}"
    if _PROMTOOL_TESTS[key]:
        problems.add(ref, f"promtool test rules (rules-test.yaml, rules-test-daily.yaml) failed:\n{_PROMTOOL_TESTS[key]}")


def check_discovery(m: Manifests, problems: Problems) -> None:
    """A default kube-prometheus-stack selects PodMonitors and
    PrometheusRules by `release: <its Helm release>`, and its Grafana
    sidecar loads dashboards from its own namespace only: the overlay names
    both in cluster.yaml, and the objects must agree."""
    if m.name != "prod":
        return
    cluster = cluster_config(m)
    release = cluster.get("prometheusRelease")
    if not release:
        problems.add(m.name, "cluster.yaml names no prometheusRelease (the kube-prometheus-stack Helm release)")
    for doc in m.of_kind("PodMonitor", "PrometheusRule"):
        got = (doc["metadata"].get("labels") or {}).get("release")
        if release and got != release:
            problems.add(
                f"{m.name}: {doc['kind']}/{doc['metadata']['name']}",
                f"label release={got!r}, not {release!r}: kube-prometheus-stack's Prometheus would not pick it up",
            )
    monitoring = cluster.get("monitoringNamespace", "monitoring")
    dashboards = [d for d in m.of_kind("ConfigMap") if (d["metadata"].get("labels") or {}).get("grafana_dashboard")]
    if not dashboards:
        problems.add(m.name, "no ConfigMap labelled grafana_dashboard (the Grafana sidecar's default label)")
    for d in dashboards:
        if d["metadata"].get("namespace") != monitoring:
            problems.add(
                f"{m.name}: ConfigMap/{d['metadata']['name']}",
                f"in namespace {d['metadata'].get('namespace')!r}, not {monitoring!r}: the Grafana sidecar searches its own namespace only by default",
            )


def check_dashboard(d: dict, known: set[str], problems: Problems) -> None:
    ref = "deploy/k8s/monitoring/dashboards/huddle.json"
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in d:
            problems.add(ref, f"no {key!r}: not a Grafana dashboard")
    variables = {v.get("name") for v in (d.get("templating") or {}).get("list") or []}
    ids = set()
    for p in d.get("panels") or []:
        pref = f"{ref}: panel {p.get('title')!r}"
        if p.get("id") in ids:
            problems.add(pref, f"duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if not p.get("targets"):
            problems.add(pref, "no queries")
        if not isinstance(p.get("gridPos"), dict):
            problems.add(pref, "no gridPos")
        for t in p.get("targets") or []:
            expr = t.get("expr", "")
            if not expr:
                problems.add(pref, "a query without expr")
            for metric in sorted(used_metrics(expr) - known):
                problems.add(pref, f"metric {metric} is not served by `huddle all` (its /metrics scrape)")
            for var in re.findall(r"\$(\w+)", expr):
                if var not in variables and not var.startswith("__"):
                    problems.add(pref, f"uses ${var}, which the dashboard does not define")
            if expr.count("(") != expr.count(")"):
                problems.add(pref, "unbalanced parentheses")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
