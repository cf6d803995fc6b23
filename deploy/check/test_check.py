"""Proof that deploy/check/check.py fails when manifests and binary drift.

Each test breaks one thing in the rendered dev overlay (or the Dockerfile)
and asserts the check names the problem; the first asserts the untouched
render is clean and that the check saw the connections it should.

    HUDDLE_BIN=/var/tmp/huddle-target/debug/huddle python deploy/check/test_check.py
"""

from __future__ import annotations

import copy
import os
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check  # noqa: E402

HUDDLE = os.environ.get("HUDDLE_BIN", "/var/tmp/huddle-target/debug/huddle")


def find(docs: list[dict], kind: str, name: str) -> dict:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"].startswith(name):
            return d
    raise KeyError(f"{kind}/{name}")


def container(docs: list[dict], kind: str, name: str) -> dict:
    return find(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def env_entry(c: dict, name: str) -> dict:
    return next(e for e in c["env"] if e["name"] == name)


# The last README before the doc checks existed: a commit, since "main" moves.
OLD_README = "ac53d6c:deploy/README.md"

class DriftCheck(unittest.TestCase):
    cli: check.Cli
    dev_text: str
    dev_docs: list[dict]

    @classmethod
    def setUpClass(cls) -> None:
        cls.cli = check.load_cli(HUDDLE)
        kubectl = check.find_tool("kubectl", None)
        cls.dev_text, cls.dev_docs = check.render(kubectl, check.K8S / "overlays" / "dev")
        cls.prod_text, cls.prod_docs = check.render(kubectl, check.K8S / "overlays" / "prod")
        cls.promtool = check.find_tool("promtool", None)

    def problems(self, mutate) -> list[str]:
        docs = copy.deepcopy(self.dev_docs)
        mutate(docs)
        problems = check.Problems()
        check.check_drift(check.Manifests("dev", docs), self.cli, problems)
        return problems

    def prod_problems(self, mutate) -> list[str]:
        docs = copy.deepcopy(self.prod_docs)
        mutate(docs)
        problems = check.Problems()
        m = check.Manifests("prod", docs)
        check.check_drift(m, self.cli, problems)
        check.check_monitoring(m, problems, self.promtool, self.cli, rule_tests=getattr(self, "rule_tests", None))
        for d in docs:
            if d["apiVersion"].startswith("monitoring.coreos.com/"):
                check.validate_monitoring_schema(d, f"prod: {d['kind']}", problems)
        return problems

    def assertFlags(self, mutate, *fragments: str, prod: bool = False) -> None:
        found = self.prod_problems(mutate) if prod else self.problems(mutate)
        for fragment in fragments:
            self.assertTrue(
                any(fragment in p for p in found),
                f"no problem mentions {fragment!r}; got: {found}",
            )

    # -- the baseline ------------------------------------------------------

    def test_the_binary_interface_is_parsed(self) -> None:
        subs = self.cli.subcommands
        self.assertTrue({"gateway", "user", "migrate"} <= set(subs))
        self.assertEqual(subs["gateway"].env["HUDDLE_HTTP_ADDR"], "127.0.0.1:8080")
        self.assertIn("HUDDLE_JWT_SECRET", subs["gateway"].env)
        self.assertIn("ping", subs["cache"].subcommands)
        self.assertIn("user", self.cli.service_names())

    def test_the_dev_overlay_is_clean_and_its_connections_are_seen(self) -> None:
        problems = check.Problems()
        edges = check.check_drift(check.Manifests("dev", self.dev_docs), self.cli, problems)
        self.assertEqual(problems, [])
        seen = {(e.client.ref, e.setting, e.service["metadata"]["name"]) for e in edges}
        self.assertTrue(
            {
                ("Deployment/gateway", "HUDDLE_USER_ADDR", "user"),
                ("Deployment/user", "HUDDLE_DATABASE_URL", "postgres"),
                ("Deployment/user", "HUDDLE_REDIS_URL", "redis"),
                ("Job/migrate-dev", "HUDDLE_DATABASE_URL", "postgres"),
            }
            <= seen,
            seen,
        )

    # -- subcommands, flags and environment ---------------------------------

    def test_an_unknown_subcommand(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "user")["args"] = ["usr"]

        self.assertFlags(mutate, "`usr` is not a huddle subcommand")

    def test_an_unknown_flag(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "user")["args"] = ["user", "--verbose"]

        self.assertFlags(mutate, "has no flag --verbose")

    def test_an_env_var_the_binary_does_not_read(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "user")["env"].append({"name": "HUDDLE_USER_PORT", "value": "50051"})

        self.assertFlags(mutate, "sets HUDDLE_USER_PORT, which `huddle user` does not read")

    def test_a_configmap_key_the_binary_does_not_read(self) -> None:
        def mutate(docs):
            find(docs, "ConfigMap", "huddle-config")["data"]["HUDDLE_LOG_LEVEL"] = "debug"

        self.assertFlags(mutate, "Deployment/gateway container huddle: sets HUDDLE_LOG_LEVEL")

    def test_a_missing_secret_key(self) -> None:
        def mutate(docs):
            del find(docs, "Secret", "huddle-secrets")["data"]["HUDDLE_JWT_SECRET"]

        self.assertFlags(mutate, "has no such key")

    def test_a_required_setting_left_out(self) -> None:
        def mutate(docs):
            c = container(docs, "Deployment", "gateway")
            c["env"] = [e for e in c["env"] if e["name"] != "HUDDLE_JWT_SECRET"]

        self.assertFlags(mutate, "`huddle gateway` needs HUDDLE_JWT_SECRET")

    def test_livekit_keys_only_in_recording_pods(self) -> None:
        def leave_out(docs):
            c = container(docs, "Deployment", "recording")
            c["env"] = [e for e in c["env"] if e["name"] != "LIVEKIT_API_SECRET"]

        self.assertFlags(leave_out, "`huddle recording` needs LIVEKIT_API_SECRET")

        def give_the_gateway(docs):
            secret = env_entry(container(docs, "Deployment", "recording"), "LIVEKIT_API_SECRET")
            container(docs, "Deployment", "gateway")["env"].append(secret)

        self.assertFlags(give_the_gateway, "only `huddle recording` pods may hold")

    # -- ports --------------------------------------------------------------

    def test_a_container_port_the_process_does_not_listen_on(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "user")["ports"][0]["containerPort"] = 50052

        self.assertFlags(
            mutate,
            "containerPort 50052 is not a port `huddle user` listens on",
            "listens on port 50051 (HUDDLE_USER_ADDR) but declares no containerPort 50051",
        )

    def test_a_listen_address_on_loopback(self) -> None:
        def mutate(docs):
            c = container(docs, "Deployment", "gateway")
            c["env"] = [e for e in c["env"] if e["name"] != "HUDDLE_HTTP_ADDR"]

        self.assertFlags(mutate, "HUDDLE_HTTP_ADDR='127.0.0.1:8080' (the default) listens on loopback")

    def test_a_peer_address_naming_no_service(self) -> None:
        def mutate(docs):
            env_entry(container(docs, "Deployment", "gateway"), "HUDDLE_USER_ADDR")["value"] = "http://users:50051"

        self.assertFlags(mutate, "no Service 'users'")

    def test_a_peer_address_on_the_wrong_port(self) -> None:
        def mutate(docs):
            env_entry(container(docs, "Deployment", "gateway"), "HUDDLE_USER_ADDR")["value"] = "http://user:50052"

        self.assertFlags(mutate, "Service user has no port 50052")

    def test_a_grpc_service_behind_a_cluster_ip(self) -> None:
        def mutate(docs):
            del find(docs, "Service", "user")["spec"]["clusterIP"]

        self.assertFlags(mutate, "is not headless")

    def test_a_headless_port_that_differs_from_the_pod_port(self) -> None:
        def mutate(docs):
            find(docs, "Service", "user")["spec"]["ports"][0]["port"] = 80

        self.assertFlags(mutate, "headless, so clients dial pod IPs on port 80")

    # -- probes and shutdown -------------------------------------------------

    def test_a_grpc_probe_for_an_unknown_health_service(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "user")["readinessProbe"]["grpc"]["service"] = "huddle.user.v1.Users"

        self.assertFlags(mutate, "'huddle.user.v1.Users' is not a service in proto/")

    def test_a_grpc_probe_on_the_metrics_port(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "user")["readinessProbe"]["grpc"]["port"] = 9090

        self.assertFlags(mutate, "grpc probe on port 9090")

    def test_an_http_probe_on_a_route_the_gateway_does_not_serve(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "gateway")["readinessProbe"]["httpGet"]["path"] = "/ready"

        self.assertFlags(mutate, "'/ready' is not a gateway route")

    def test_a_grace_period_shorter_than_the_drain(self) -> None:
        def mutate(docs):
            find(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30

        self.assertFlags(mutate, "terminationGracePeriodSeconds 30 < preStop sleep 20 s + drain 30 s")

    # -- network policies ----------------------------------------------------

    def test_a_call_the_network_policies_deny(self) -> None:
        def mutate(docs):
            rule = find(docs, "NetworkPolicy", "user")["spec"]["ingress"][0]
            rule["from"][0]["podSelector"]["matchExpressions"][0]["values"] = ["meeting"]

        self.assertFlags(mutate, "Deployment/gateway -> Deployment/user:50051", "deny this ingress")

    def test_the_gateway_reaching_postgres(self) -> None:
        def mutate(docs):
            labels = find(docs, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
            labels["huddle.io/postgres-client"] = "true"

        self.assertFlags(mutate, "Deployment/gateway -> StatefulSet/postgres:5432")

    def test_a_service_open_to_everyone(self) -> None:
        def mutate(docs):
            del find(docs, "NetworkPolicy", "user")["spec"]["ingress"][0]["from"]

        self.assertFlags(mutate, "lets anyone reach Deployment/user")

    def test_no_default_deny(self) -> None:
        def mutate(docs):
            docs.remove(find(docs, "NetworkPolicy", "default-deny"))

        self.assertFlags(mutate, "Job/migrate-dev: not isolated for Ingress")

    def test_swagger_ui_left_on_in_prod(self) -> None:
        def mutate(docs):
            for d in docs:
                if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("huddle-config"):
                    d.setdefault("data", {}).pop("HUDDLE_SWAGGER_UI", None)

        self.assertFlags(mutate, "Swagger UI would be served in production", prod=True)

    def test_the_prod_overlay_is_clean(self) -> None:
        self.assertEqual(self.prod_problems(lambda docs: None), [])

    # -- the release: migrations first (issue 13, item 2) ---------------------

    def test_a_migrate_job_not_named_after_the_release(self) -> None:
        def mutate(docs):
            find(docs, "Job", "migrate")["metadata"]["name"] = "migrate"

        self.assertFlags(mutate, "named 'migrate' but runs huddle:dev: name it migrate-dev")

    def test_a_release_image_without_digest(self) -> None:
        def mutate(docs):
            for kind, name in (("Job", "migrate"), ("Deployment", "user")):
                container(docs, kind, name)["image"] = "registry.example.com/huddle:0.2.0"

        self.assertFlags(mutate, "must be pinned by digest", prod=True)

    def test_set_release_pins_the_digest_and_names_the_job(self) -> None:
        import shutil
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            k8s = Path(tmp) / "k8s"
            shutil.copytree(check.K8S, k8s)
            digest = "sha256:" + "0123456789ab" * 5 + "cdef"
            subprocess.run(["bash", str(k8s / "set-release.sh"), "prod", "0.2.0", digest], check=True, capture_output=True)
            _, docs = check.render(check.find_tool("kubectl", None), k8s / "overlays" / "prod")
        self.assertEqual(find(docs, "Job", "migrate")["metadata"]["name"], "migrate-0123456789ab")
        self.assertTrue(container(docs, "Deployment", "user")["image"].endswith("@" + digest))
        problems = check.Problems()
        check.check_production(check.Manifests("prod", docs), self.cli, problems)
        self.assertEqual(problems, [])

    def test_the_generator_gives_a_new_service_everything(self) -> None:
        """new-service.sh (item 7), on a service that does not exist (`notes`):
        the generated service carries each
        production property the checks demand of user and meeting, and
        admits exactly the callers named."""
        import shutil
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            k8s = Path(tmp) / "k8s"
            shutil.copytree(check.K8S, k8s)
            subprocess.run(
                ["bash", str(k8s / "new-service.sh"), "notes", "50099", "gateway"], check=True, capture_output=True
            )
            _, docs = check.render(check.find_tool("kubectl", None), k8s / "overlays" / "prod")
        pod = find(docs, "Deployment", "notes")["spec"]["template"]["spec"]
        c = pod["containers"][0]
        self.assertEqual(c["args"], ["notes"])
        self.assertEqual(pod["initContainers"][0]["args"][:2], ["migrate", "--check"])
        self.assertEqual(c["livenessProbe"]["grpc"], {"port": 50099, "service": "liveness"})
        self.assertEqual(c["readinessProbe"]["grpc"]["service"], "huddle.notes.v1.NotesService")
        self.assertEqual(c["lifecycle"]["preStop"]["exec"]["command"], ["sleep", "20"])
        self.assertEqual(c["resources"]["requests"]["memory"], c["resources"]["limits"]["memory"])
        self.assertEqual(pod["topologySpreadConstraints"][0]["matchLabelKeys"], ["pod-template-hash"])
        self.assertEqual(find(docs, "PodDisruptionBudget", "notes")["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow")
        self.assertIn("behavior", find(docs, "HorizontalPodAutoscaler", "notes")["spec"])
        policy = find(docs, "NetworkPolicy", "notes")["spec"]["ingress"]
        self.assertEqual(policy[0]["from"][0]["podSelector"]["matchExpressions"][0]["values"], ["gateway"])
        self.assertEqual(policy[1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "monitoring")
        self.assertEqual(env_entry(container(docs, "Deployment", "gateway"), "HUDDLE_NOTES_ADDR")["value"], "http://notes:50099")
        self.assertNotIn("HUDDLE_NOTES_ADDR", {e["name"] for e in container(docs, "Deployment", "meeting")["env"]})
        monitor = find(docs, "PodMonitor", "huddle-services")
        self.assertTrue(check.selects(monitor["spec"]["selector"], find(docs, "Deployment", "notes")["spec"]["template"]["metadata"]["labels"]))

    def test_a_migrate_job_without_deadline(self) -> None:
        def mutate(docs):
            del find(docs, "Job", "migrate")["spec"]["activeDeadlineSeconds"]

        self.assertFlags(mutate, "no activeDeadlineSeconds")

    def test_a_service_that_does_not_wait_for_migrations(self) -> None:
        def mutate(docs):
            del find(docs, "Deployment", "user")["spec"]["template"]["spec"]["initContainers"]

        self.assertFlags(mutate, "Deployment/user: no init container `huddle migrate --check --wait N`")

    def test_a_wait_shorter_than_the_migration_deadline(self) -> None:
        def mutate(docs):
            init = find(docs, "Deployment", "meeting")["spec"]["template"]["spec"]["initContainers"][0]
            init["args"] = ["migrate", "--check", "--wait", "60"]

        self.assertFlags(mutate, "init container waits 60 s for migrations, less than")

    def test_an_init_container_with_a_flag_the_binary_lacks(self) -> None:
        def mutate(docs):
            init = find(docs, "Deployment", "user")["spec"]["template"]["spec"]["initContainers"][0]
            init["args"] = ["migrate", "--check", "--timeout", "600"]

        self.assertFlags(mutate, "has no flag --timeout")

    # -- least privilege (item 6) ---------------------------------------------

    def test_a_service_with_the_migration_role(self) -> None:
        def mutate(docs):
            c = container(docs, "Deployment", "user")
            env_entry(c, "HUDDLE_DATABASE_URL")["valueFrom"]["secretKeyRef"]["name"] = "huddle-migrate"

        self.assertFlags(mutate, "reads Secret huddle-migrate, which holds the migrate Job's database credentials")

    def test_a_redis_password_in_a_configmap(self) -> None:
        def mutate(docs):
            find(docs, "ConfigMap", "huddle-datastores")["data"]["HUDDLE_REDIS_URL"] = "redis://huddle:s3cret@redis:6379"

        self.assertFlags(mutate, "HUDDLE_REDIS_URL carries a password")

    def test_memory_request_below_the_limit(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "gateway")["resources"]["requests"]["memory"] = "64Mi"

        self.assertFlags(mutate, "memory request must equal the limit")

    def test_an_hpa_without_behavior(self) -> None:
        def mutate(docs):
            del find(docs, "HorizontalPodAutoscaler", "user")["spec"]["behavior"]

        self.assertFlags(mutate, "HorizontalPodAutoscaler/user", "no behavior.scaleUp/scaleDown")

    def test_a_topology_spread_without_match_label_keys(self) -> None:
        def mutate(docs):
            spec = find(docs, "Deployment", "meeting")["spec"]["template"]["spec"]
            del spec["topologySpreadConstraints"][0]["matchLabelKeys"]

        self.assertFlags(mutate, "without matchLabelKeys [pod-template-hash]", prod=True)

    def test_gateway_open_to_every_namespace(self) -> None:
        def mutate(docs):
            del find(docs, "NetworkPolicy", "gateway")["spec"]["ingress"][0]["from"]

        self.assertFlags(mutate, "open to every namespace")

    def test_metrics_not_scrapable_from_the_monitoring_namespace(self) -> None:
        def mutate(docs):
            rule = find(docs, "NetworkPolicy", "user")["spec"]["ingress"][1]
            rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] = "prometheus"

        self.assertFlags(mutate, "Deployment/user: Prometheus (namespace monitoring) cannot scrape")

    # -- shutdown and probes (item 5) -----------------------------------------

    def test_a_pre_stop_shorter_than_leaving_the_address_sets(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "user")["lifecycle"]["preStop"]["exec"]["command"] = ["sleep", "10"]

        self.assertFlags(mutate, "preStop sleep 10 s < 15 s a pod takes to leave")

    def test_a_tcp_liveness_probe(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "user")["livenessProbe"] = {"tcpSocket": {"port": "grpc"}}

        self.assertFlags(mutate, "livenessProbe is a TCP check")

    def test_a_liveness_probe_on_the_readiness_entry(self) -> None:
        def mutate(docs):
            container(docs, "Deployment", "user")["livenessProbe"]["grpc"]["service"] = "huddle.user.v1.UserService"

        self.assertFlags(mutate, "only 'liveness' stays SERVING")

    def test_a_gateway_probe_timeout_equal_to_the_backend_check(self) -> None:
        def mutate(docs):
            del container(docs, "Deployment", "gateway")["readinessProbe"]["timeoutSeconds"]

        self.assertFlags(mutate, "readinessProbe timeoutSeconds 1 <= /readyz's backend check timeout 1 s")

    def test_a_pdb_that_blocks_drains(self) -> None:
        def mutate(docs):
            del find(docs, "PodDisruptionBudget", "meeting")["spec"]["unhealthyPodEvictionPolicy"]

        self.assertFlags(mutate, "PodDisruptionBudget/meeting", "unready pods block node drains")

    # -- DNS (item 3), Redis, connection budget --------------------------------

    def test_no_dns_at_node_local_dns_cache(self) -> None:
        def mutate(docs):
            policy = find(docs, "NetworkPolicy", "allow-dns")
            policy["spec"]["egress"] = policy["spec"]["egress"][:1]

        self.assertFlags(mutate, "cannot reach DNS at 169.254.20.10 (UDP 53", "cannot reach DNS at 169.254.169.254 (TCP 53")

    def test_redis_that_may_evict(self) -> None:
        def mutate(docs):
            c = container(docs, "Deployment", "redis")
            c["args"] = [a for a in c["args"] if a not in ("--maxmemory-policy", "noeviction")]

        self.assertFlags(mutate, "Redis without --maxmemory-policy noeviction")

    def test_a_connection_budget_that_does_not_add_up(self) -> None:
        def mutate(docs):
            find(docs, "ConfigMap", "huddle-datastores")["data"]["HUDDLE_DB_POOL_SIZE"] = "20"

        # prod: 3 services × (20 + 5) × (20 + 1) + (20 + 5) × (20 + 2) + 1 Job > 600
        self.assertFlags(mutate, "up to 2126 connections", prod=True)

    # -- monitoring (item 4) ---------------------------------------------------

    def test_a_rule_promtool_rejects(self) -> None:
        def mutate(docs):
            find(docs, "PrometheusRule", "huddle")["spec"]["groups"][0]["rules"][0]["expr"] = "sum(rate(x[5m])"

        self.assertFlags(mutate, "promtool check rules", prod=True)

    def test_an_alert_without_runbook(self) -> None:
        def mutate(docs):
            find(docs, "PrometheusRule", "huddle")["spec"]["groups"][0]["rules"][0]["alert"] = "HuddleSomethingNew"

        self.assertFlags(mutate, "HuddleSomethingNew: no runbook", prod=True)

    def test_a_rule_on_a_metric_nothing_exports(self) -> None:
        def mutate(docs):
            find(docs, "PrometheusRule", "huddle")["spec"]["groups"][0]["rules"][0]["expr"] = "huddle_cache_brekaer_state == 1"

        self.assertFlags(mutate, "metric huddle_cache_brekaer_state is not served by `huddle all`", prod=True)

    def test_a_pod_monitor_on_a_missing_port(self) -> None:
        def mutate(docs):
            find(docs, "PodMonitor", "huddle-services")["spec"]["podMetricsEndpoints"][0]["port"] = "prometheus"

        self.assertFlags(mutate, "port 'prometheus' is not a port of Deployment/user", prod=True)

    def test_a_pod_monitor_with_an_unknown_field(self) -> None:
        def mutate(docs):
            find(docs, "PodMonitor", "huddle-gateway")["spec"]["podMetricEndpoints"] = []

        self.assertFlags(mutate, "'podMetricEndpoints' was unexpected", prod=True)

    def test_a_broken_dashboard(self) -> None:
        import json

        dashboard = json.loads((check.MONITORING / "dashboards" / "huddle.json").read_text())
        dashboard["panels"][0]["targets"][0]["expr"] = "rate(huddle_http_requests_totl{namespace=\"$ns\"}[5m]"
        dashboard["panels"][1]["id"] = dashboard["panels"][0]["id"]
        problems = check.Problems()
        check.check_dashboard(dashboard, check.served_metrics(self.cli), problems)
        for fragment in ("huddle_http_requests_totl is not served", "uses $ns", "unbalanced", "duplicate id"):
            self.assertTrue(any(fragment in p for p in problems), (fragment, problems))

    # -- day one in prod (issue 20) --------------------------------------------

    def test_the_binary_is_observed_running(self) -> None:
        """live.py ran `huddle all`: its scrape serves the failure counters
        the alerts use (at 0 from the start), the gateway dialled Redis,
        and each service holds LISTEN connections outside its pool.
        Seen to fail before the counters were pre-initialised:
        huddle_cache_fills_rejected_total was absent from the scrape."""
        obs = self.cli.observed
        self.assertIn("huddle_rate_limit_decisions_total", obs.metrics)
        self.assertIn("huddle_cache_fills_rejected_total", obs.metrics)
        self.assertRegex(obs.scrape, r'huddle_rate_limit_decisions_total\{decision="failed_open",limit="meeting_create"\} 0')
        self.assertIn("gateway", obs.redis_readers)
        self.assertGreaterEqual(obs.outside_pool["huddle_chat"], 2)
        for db in ("huddle_user", "huddle_meeting", "huddle_recording"):
            self.assertGreaterEqual(obs.outside_pool[db], 1, db)

    def test_the_gateway_without_redis(self) -> None:
        """Item 1. Seen to fail on main's prod overlay as rendered: the
        gateway had no HUDDLE_REDIS_CLUSTER_NODES and nothing said so."""

        def mutate(docs):
            c = container(docs, "Deployment", "gateway")
            c["env"] = [e for e in c["env"] if e["name"] != "HUDDLE_REDIS_CLUSTER_NODES"]

        self.assertFlags(mutate, "Deployment/gateway container huddle: `huddle gateway` dials Redis", prod=True)

    def test_a_container_without_the_datastore_ca(self) -> None:
        """Item 5: no Deployment mounted a CA bundle. Seen to fail with
        `check_datastore_ca` not called: nothing flagged."""

        def no_env(docs):
            c = container(docs, "Deployment", "gateway")
            c["env"] = [e for e in c["env"] if e["name"] != "SSL_CERT_FILE"]

        def no_mount(docs):
            spec = find(docs, "Deployment", "user")["spec"]["template"]["spec"]
            del spec["initContainers"][0]["volumeMounts"]

        self.assertFlags(no_env, "Deployment/gateway container huddle", "no CA bundle", prod=True)
        self.assertFlags(no_mount, "Deployment/user container", "no CA bundle", prod=True)

    def test_the_budget_counts_the_listeners(self) -> None:
        """Item 2: with the connections held outside the pools the prod sum
        is 526; the old arithmetic (pool only) gave 401. Seen to fail with
        `outside_pool` ignored: 401."""
        m = check.Manifests("prod", copy.deepcopy(self.prod_docs))
        services = [w for w in m.workloads() if check.huddle_subcommand(w) in self.cli.service_names()]
        jobs = [w for w in m.workloads() if check.huddle_subcommand(w) == "migrate"]
        used, terms = check.connection_budget(m, self.cli, services, jobs, check.Problems())
        self.assertEqual(used, 526, terms)
        blind = copy.copy(self.cli)
        blind.observed = copy.copy(self.cli.observed)
        blind.observed.outside_pool = {db: 0 for db in self.cli.observed.outside_pool}
        self.assertEqual(check.connection_budget(m, blind, services, jobs, check.Problems())[0], 401)

    def test_a_job_naming_a_hashed_configmap(self) -> None:
        """Item 4. Seen to fail on main's render: the Job's envFrom named
        huddle-config-<hash>."""

        def mutate(docs):
            name = find(docs, "ConfigMap", "huddle-config")["metadata"]["name"]
            container(docs, "Job", "migrate").setdefault("envFrom", []).append({"configMapRef": {"name": name}})

        self.assertFlags(mutate, "a config-only change makes the next `kubectl apply` fail on this Job", prod=True)

    def test_a_config_only_change_leaves_the_job_alone(self) -> None:
        """Item 4, from outside: render prod, change one config value,
        render again: the ConfigMap's name changes, the Job does not, so
        `kubectl apply` has nothing immutable to refuse. Seen to fail on
        main: the Job's envFrom changed with the hash."""
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            k8s = Path(tmp) / "k8s"
            shutil.copytree(check.K8S, k8s)
            kubectl = check.find_tool("kubectl", None)
            _, before = check.render(kubectl, k8s / "overlays" / "prod")
            env = k8s / "base" / "config.env"
            env.write_text(env.read_text().replace("LOG_FORMAT=json", "LOG_FORMAT=text"))
            _, after = check.render(kubectl, k8s / "overlays" / "prod")
        self.assertNotEqual(find(before, "ConfigMap", "huddle-config")["metadata"]["name"], find(after, "ConfigMap", "huddle-config")["metadata"]["name"])
        self.assertEqual(find(before, "Job", "migrate"), find(after, "Job", "migrate"))

    def test_the_migration_url_in_the_runtime_secret(self) -> None:
        """Item 10. Seen to fail on main: huddle-secrets carried
        HUDDLE_MIGRATE_DATABASE_URL, read by every service pod."""

        def mutate(docs):
            secret = find(docs, "Secret", "huddle-secrets")
            secret["data"]["HUDDLE_MIGRATE_DATABASE_URL"] = secret["data"]["HUDDLE_DATABASE_URL"]

        self.assertFlags(mutate, "Secret/huddle-secrets: carries HUDDLE_MIGRATE_DATABASE_URL")

    def test_monitoring_a_default_kube_prometheus_stack_would_miss(self) -> None:
        """Item 8. Seen to fail on main: no release label, the dashboard
        in namespace huddle."""

        def mutate(docs):
            del find(docs, "PodMonitor", "huddle-services")["metadata"]["labels"]["release"]
            find(docs, "ConfigMap", "huddle-dashboard")["metadata"]["namespace"] = "huddle"

        self.assertFlags(
            mutate,
            "PodMonitor/huddle-services: label release=None, not 'kube-prometheus-stack'",
            "ConfigMap/huddle-dashboard: in namespace 'huddle', not 'monitoring'",
            prod=True,
        )

    def test_nothing_watches_the_rate_limiter_fail_open(self) -> None:
        """Item 1. Seen to fail on main: no rule read failed_open."""

        def mutate(docs):
            for g in find(docs, "PrometheusRule", "huddle")["spec"]["groups"]:
                g["rules"] = [r for r in g["rules"] if r.get("alert") != "HuddleRateLimiterFailingOpen"]

        self.assertFlags(mutate, 'no alert reads huddle_rate_limit_decisions_total{decision="failed_open"}', prod=True)

    def test_an_alert_without_a_silent_case(self) -> None:
        import re

        self.rule_tests = re.sub(
            r"- name: pool waiting in 1 scrape of 10 is silent.*?(?=\n- name: )",
            "",
            check.RULE_TESTS.read_text(),
            flags=re.S,
        )
        try:
            self.assertFlags(lambda docs: None, "HuddleDbPoolExhausted: no case in rules-test.yaml where it stays silent", prod=True)
        finally:
            del self.rule_tests

    def test_the_alert_cases_catch_the_old_rules(self) -> None:
        """Item 7: the rules as they were on main, put back one at a time,
        fail their promtool cases (seen: each of these failed there)."""
        old = {
            "HuddleDbPoolExhausted": "max by (namespace, pod) (huddle_db_pool_waiting) > 0",
            "HuddleGrpcCallsUnreachable": 'sum by (namespace, service) (rate(huddle_grpc_client_requests_total{code=~"Unavailable|DeadlineExceeded"}[5m])) / sum by (namespace, service) (rate(huddle_grpc_client_requests_total[5m])) > 0.01',
            "HuddleHttp5xxRate": 'sum by (namespace) (rate(huddle_http_requests_total{status=~"5.."}[5m])) / sum by (namespace) (rate(huddle_http_requests_total[5m])) > 0.01',
            "HuddleHttpLatencyP99": "histogram_quantile(0.99, sum by (namespace, le) (rate(huddle_http_request_duration_seconds_bucket[5m]))) > 0.5",
            "HuddleCacheBreakerOpen": "max by (namespace, pod) (huddle_cache_breaker_state == 1) > 0",
        }
        for alert, expr in old.items():

            def mutate(docs, alert=alert, expr=expr):
                for g in find(docs, "PrometheusRule", "huddle")["spec"]["groups"]:
                    for r in g["rules"]:
                        if r.get("alert") == alert:
                            r["expr"] = expr

            with self.subTest(alert=alert):
                self.assertFlags(mutate, "promtool test rules (rules-test.yaml, rules-test-daily.yaml) failed", alert, prod=True)

    def test_spreads_that_give_way(self) -> None:
        """Item 10. Seen to fail on main: ScheduleAnyway over zones."""

        def mutate(docs):
            spec = find(docs, "Deployment", "meeting")["spec"]["template"]["spec"]
            for t in spec["topologySpreadConstraints"]:
                t["whenUnsatisfiable"] = "ScheduleAnyway"

        self.assertFlags(mutate, "Deployment/meeting: prod: no topologySpreadConstraint over zones", "over nodes", prod=True)

    def test_memory_below_the_stream_cap(self) -> None:
        """Item 10. Seen to fail on main: 256Mi for 10000 streams."""

        def mutate(docs):
            for name in ("gateway", "chat"):
                res = container(docs, "Deployment", name)["resources"]
                res["requests"]["memory"] = res["limits"]["memory"] = "256Mi"

        self.assertFlags(
            mutate,
            "Deployment/gateway: memory limit 256 MiB < 753 MiB its 10000 streams (HUDDLE_SSE_MAX_STREAMS)",
            "Deployment/chat: memory limit 256 MiB < 753 MiB its 10000 streams (HUDDLE_CHAT_STREAM_MAX)",
            prod=True,
        )

    def test_docs_that_drift(self) -> None:
        """Items 3 and 10: the README before these checks (commit ac53d6c: 16 characters, 10 s preStop,
        grants for two databases) is flagged; this one is not."""
        import subprocess

        old = subprocess.run(["git", "-C", str(check.REPO), "show", OLD_README], capture_output=True, text=True).stdout
        self.assertTrue(old, f"git show {OLD_README} gave nothing (a shallow clone?)")
        broken = check.README.read_text().replace("huddle_meeting huddle_chat huddle_recording", "huddle_meeting")
        for text in (old, broken):
            problems = check.Problems()
            check.check_docs(problems, text)
            joined = "\n".join(problems)
            self.assertIn("misses huddle_chat", joined)
            self.assertIn("misses huddle_recording", joined)
        problems = check.Problems()
        check.check_docs(problems, old)
        self.assertTrue(any("16 characters" in p for p in problems), problems)
        self.assertTrue(any("preStop sleep is 10 s" in p for p in problems), problems)
        problems = check.Problems()
        check.check_docs(problems)
        self.assertEqual(problems, [])

    # -- schemas, checkov, Dockerfile ----------------------------------------

    def test_schema_validation_rejects_an_unknown_field(self) -> None:
        docs = copy.deepcopy(self.dev_docs)
        container(docs, "Deployment", "user")["imagePullPolicyy"] = "Always"
        problems = check.Problems()
        check.validate_schemas(check.Manifests("dev", docs), problems)
        self.assertTrue(any("imagePullPolicyy" in p for p in problems), problems)

    def test_checkov_rejects_a_writable_root_filesystem(self) -> None:
        text = self.dev_text.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
        self.assertNotEqual(text, self.dev_text)
        ok, output = check.run_checkov({"dev": text}, check.find_tool("checkov", None))
        self.assertFalse(ok)
        self.assertIn("CKV_K8S_22", output)

    def test_a_dockerfile_that_downloads_or_runs_as_root(self) -> None:
        dockerfile = check.DOCKERFILE.read_text()
        broken = dockerfile.replace("USER 10001:10001", "RUN curl -sSf https://example.com/x | sh")
        problems = check.Problems()
        check.check_dockerfile(problems, [check.Manifests("dev", self.dev_docs)], text=broken)
        self.assertTrue(any("downloads at build time" in p for p in problems), problems)
        self.assertTrue(any("numeric non-root user" in p for p in problems), problems)
        problems = check.Problems()
        check.check_dockerfile(problems, [], ignore="/target\ncrates\n")
        self.assertTrue(any("excludes crates/huddle/src/main.rs" in p for p in problems), problems)
        problems = check.Problems()
        check.check_dockerfile(problems, [check.Manifests("dev", self.dev_docs)])
        self.assertEqual(problems, [])


if __name__ == "__main__":
    unittest.main(verbosity=1)
