"""The files in deploy/, checked offline: the compose file against the compose specification,
the Kubernetes manifests against Kubernetes' schemas (kubernetes-validate, strict), the
Prometheus configuration and alert rules with promtool (including its rule unit tests), and
every metric, setting, file and name they refer to against the receiver that serves them."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from receiver.config import Settings, load_settings
from receiver.metrics import Metrics
from tests.services import required

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
KUBE_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
DATA_DIR = "/var/lib/dtpush"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load(DEPLOY / "compose.yaml")
    return data


def manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes, by kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"]] = doc
    return found


def tool(name: str) -> str:
    """The path of a command-line tool; skip (or fail under DTPUSH_REQUIRE_SERVICES=1)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    reason = f"{name} is not installed"
    if required():
        pytest.fail(f"{reason}, and DTPUSH_REQUIRE_SERVICES=1 requires it")
    pytest.skip(f"{reason} (apt-get install prometheus / caddy, or run .ci/run)")


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------ names the receiver knows


def exposed_metric_names() -> set[str]:
    """Every series name `Metrics` exposes (counters with _total, histograms' parts)."""
    names: set[str] = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{part}" for part in ("bucket", "sum", "count"))
        else:
            names.add(family.name)
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bdtpush_[a-z0-9_]+", expr))


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for group in load(DEPLOY / "prometheus/alerts.yml")["groups"]
        for rule in group["rules"]
    ]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana/dashboards/dtpush.json").read_text())
    return data


def dashboard_exprs() -> list[str]:
    return [
        target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", ())
    ]


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?message}`, from `env`."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in env and (env[name] or op != ":-"):
            return env[name]
        assert op != ":?", f"{name} is required: {rest}"
        return rest or ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", one, value)


EXAMPLE_ENV = {
    "DTPUSH_DOMAIN": "dtpush.example.com",
    "ACME_EMAIL": "ops@example.com",
    "DTPUSH_VERIFY_SECRETS": "a-signature-secret-of-32-bytes-or-more-0123",
    "GRAFANA_ADMIN_PASSWORD": "x",
}


def assert_real_settings(env: Mapping[str, str]) -> Settings:
    """Each DTPUSH_* name is a setting `load_settings` takes (not silently ignored)."""
    settings = load_settings(env=env, cwd=ROOT / "deploy")
    for name, value in env.items():
        if not name.startswith("DTPUSH_"):
            continue
        section, _, key = name.removeprefix("DTPUSH_").lower().partition("_")
        assert section in {f.name for f in dataclasses.fields(Settings)}, name
        if section == "handlers" and key != "enabled":
            handler, _, option = key.partition("_")
            assert settings.handlers.options[handler][option] == value, name
        else:
            assert key in {f.name for f in dataclasses.fields(getattr(settings, section))}, name
    return settings


# ------------------------------------------------------------------ compose


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    checker = tool("check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", "deploy/compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = compose()
    broken["services"]["dtpush"]["stop_grace_period"] = ["30s"]
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    result = run(checker, "--builtin-schema", "vendor.compose-spec", str(tmp_path / "compose.yaml"))
    assert result.returncode != 0, "the schema check accepts a broken compose file"


def test_compose_runs_caddy_in_front_of_the_receiver_with_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert set(services) == {"dtpush", "caddy", "prometheus", "grafana"}
    receiver = services["dtpush"]
    context = (DEPLOY / receiver["build"]["context"]).resolve()
    assert context / receiver["build"]["dockerfile"] == ROOT / "Dockerfile"
    assert "ports" not in receiver, "only Caddy is published; the receiver stays internal"
    assert any(port.startswith("443:") for port in services["caddy"]["ports"])
    assert services["caddy"]["depends_on"]["dtpush"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(receiver["healthcheck"]["test"])
    for name in ("prometheus", "grafana"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name


def test_compose_keeps_the_data_dir_on_a_named_volume_and_waits_out_the_grace_period() -> None:
    spec = compose()
    receiver = spec["services"]["dtpush"]
    volume, _, target = receiver["volumes"][0].partition(":")
    assert target == DATA_DIR and volume in spec["volumes"]
    settings = assert_real_settings(
        {k: interpolate(str(v), EXAMPLE_ENV) for k, v in receiver["environment"].items()}
    )
    assert settings.inbox.path.startswith(DATA_DIR + "/")
    assert settings.handlers.options["sqlite"]["path"].startswith(DATA_DIR + "/")
    grace = float(receiver["stop_grace_period"].removesuffix("s"))
    assert grace > settings.server.shutdown_grace_seconds


def test_compose_environment_names_only_real_settings() -> None:
    env = {
        k: interpolate(str(v), EXAMPLE_ENV)
        for k, v in compose()["services"]["dtpush"]["environment"].items()
    }
    settings = assert_real_settings(env)
    assert settings.verify.secrets, "the receiver would refuse to start without a secret"
    assert settings.connector.public_url == "https://dtpush.example.com/events"
    with pytest.raises(AssertionError, match="DTPUSH_VERIFY_SECRETS is required"):
        interpolate(
            str(compose()["services"]["dtpush"]["environment"]["DTPUSH_VERIFY_SECRETS"]), {}
        )


def test_compose_mounts_only_files_that_exist() -> None:
    for name, service in compose()["services"].items():
        for mount in service.get("volumes", ()):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_grafana_is_provisioned_with_the_prometheus_service_and_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    sources = load(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert [s["url"] for s in sources] == ["http://prometheus:9090"]
    provider = load(DEPLOY / "grafana/provisioning/dashboards/dtpush.yml")["providers"][0]
    mounts = dict(m.split(":")[:2][::-1] for m in grafana["volumes"])
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    assert (DEPLOY / "grafana/dashboards/dtpush.json").is_file()


# ------------------------------------------------------------------ Prometheus and Grafana


def test_prometheus_config_and_alert_rules_pass_promtool() -> None:
    promtool = tool("promtool")
    result = run(promtool, "check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(promtool, "check", "rules", "deploy/prometheus/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_as_their_unit_tests_expect() -> None:
    result = run(tool("promtool"), "test", "rules", "deploy/prometheus/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_receiver_service_on_its_port() -> None:
    jobs = {j["job_name"]: j for j in load(DEPLOY / "prometheus/prometheus.yml")["scrape_configs"]}
    assert jobs["dtpush"]["metrics_path"] == "/metrics"
    port = compose()["services"]["dtpush"]["environment"]["DTPUSH_SERVER_PORT"]
    assert jobs["dtpush"]["static_configs"][0]["targets"] == [f"dtpush:{port}"]


def test_alert_rules_cover_what_matters_for_the_service() -> None:
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    for needed in (
        'dtpush_connector_up{status!="ACTIVE"}',
        "dtpush_connector_error_count",
        "dtpush_signature_failures_total",
        "dtpush_inbox_pending",
        "dtpush_inbox_oldest_pending_seconds",
        "dtpush_dead_letters",
        "dtpush_handler_failures_total",
        'up{job="dtpush"}',
        "dtpush_push_duration_seconds_bucket",
    ):
        assert needed in exprs, needed
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


@pytest.mark.parametrize("source", ["alert rules", "dashboard"])
def test_deploy_files_use_only_metrics_the_receiver_exposes(source: str) -> None:
    exprs = [r["expr"] for r in alert_rules()] if source == "alert rules" else dashboard_exprs()
    used = set().union(*(metric_names_in(expr) for expr in exprs))
    assert used, "no dtpush metric found"
    assert used <= exposed_metric_names(), used - exposed_metric_names()


def test_dashboard_shows_every_metric_the_receiver_exposes() -> None:
    used = set().union(*(metric_names_in(expr) for expr in dashboard_exprs()))
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    exposed = {re.sub(r"_(bucket|sum|count)$", "", name) for name in exposed_metric_names()}
    assert exposed <= shown, exposed - shown


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = tool("promtool")
    rules = [
        {
            "record": f"dashboard:query_{index}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$instance", ".*"),
        }
        for index, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_panels_have_unique_ids_and_the_templated_data_source() -> None:
    board = dashboard()
    assert board["uid"] == "dtpush"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


# ------------------------------------------------------------------ Kubernetes


def core_manifest_files() -> Iterator[Path]:
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name != "kustomization.yaml" and load(path)["kind"] not in OPERATOR_KINDS:
            yield path


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("path", list(core_manifest_files()), ids=lambda p: p.name)
def test_kubernetes_manifest_is_valid_against_the_schema(path: Path, version: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validation_rejects_a_mistyped_field() -> None:
    deployment = copy.deepcopy(manifests()["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessprobe"):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    listed = set(load(KUBE / "kustomization.yaml")["resources"])
    files = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == files


def test_deployment_runs_one_non_root_read_only_pod_with_probes() -> None:
    deployment = manifests()["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts[DATA_DIR]]
    claim = volumes[mounts[DATA_DIR]]["persistentVolumeClaim"]["claimName"]
    assert claim == manifests()["PersistentVolumeClaim"]["metadata"]["name"]


def test_deployment_environment_is_real_settings_and_grace_outlasts_shutdown() -> None:
    deployment = manifests()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    secret = manifests()["Secret"]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    settings = assert_real_settings({**env, **secret["stringData"]})
    assert settings.inbox.backend == "sqlite"
    assert settings.inbox.path.startswith(DATA_DIR + "/")
    assert settings.handlers.options["sqlite"]["path"].startswith(DATA_DIR + "/")
    assert pod["terminationGracePeriodSeconds"] > settings.server.shutdown_grace_seconds
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == settings.server.port


def test_hpa_cannot_scale_past_one_pod_with_the_sqlite_inbox() -> None:
    hpa = manifests()["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == manifests()["Deployment"]["metadata"]["name"]
    assert hpa["minReplicas"] == hpa["maxReplicas"] == 1


def test_service_pdb_and_servicemonitor_select_the_receiver_pods() -> None:
    found = manifests()
    pod_labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = found["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
        pod_labels.items()
    )
    monitor = found["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"
    assert service["metadata"]["name"] == "dtpush", "alert rules expect job=dtpush"


def test_ingress_publishes_the_push_path_over_tls() -> None:
    found = manifests()
    ingress = found["Ingress"]["spec"]
    (rule,) = ingress["rules"]
    assert rule["host"] in ingress["tls"][0]["hosts"] and ingress["tls"][0]["secretName"]
    env = {
        e["name"]: e["value"]
        for e in found["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    (path,) = rule["http"]["paths"]
    assert path["path"] == load_settings(env={}).server.path
    assert env["DTPUSH_CONNECTOR_PUBLIC_URL"] == f"https://{rule['host']}{path['path']}"
    backend = path["backend"]["service"]
    assert backend["name"] == found["Service"]["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in found["Service"]["spec"]["ports"]}


def test_prometheusrule_carries_the_same_alert_rules(tmp_path: Path) -> None:
    rule = manifests()["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == load(DEPLOY / "prometheus/alerts.yml")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    result = run(tool("promtool"), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_secret_example_holds_placeholders_only() -> None:
    secret = manifests()["Secret"]
    assert set(secret["stringData"]) == {
        "DTPUSH_VERIFY_SECRETS",
        "DT_SERVICE_ACCOUNT_KEY_ID",
        "DT_SERVICE_ACCOUNT_SECRET",
        "DT_SERVICE_ACCOUNT_EMAIL",
    }
    for key, value in secret["stringData"].items():
        assert value.startswith("replace-with"), key
