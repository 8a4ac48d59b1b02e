"""deploy/k8s: core resources validated against the Kubernetes schemas (kubernetes-validate,
offline), CRDs (ServiceMonitor, PrometheusRule, KEDA ScaledObject) checked structurally, and the
references between all of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _load(component: str) -> dict[str, dict[str, Any]]:
    """Kind -> resource of one component (``worker``: resources without a component label, or
    ``confirmer``), for every document of every file the kustomization lists."""
    resources: dict[str, dict[str, Any]] = {}
    for name in KUSTOMIZATION["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            labels = doc["metadata"].get("labels", {})
            if labels.get("app.kubernetes.io/component", "worker") != component:
                continue
            assert doc["kind"] not in resources, f"two {doc['kind']}s: the tests assume one"
            resources[doc["kind"]] = doc
    return resources


RESOURCES = _load("worker")
CONFIRMER = _load("confirmer")
DEPLOYMENT = RESOURCES["Deployment"]
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
CONFIG = RESOURCES["ConfigMap"]["data"]


@pytest.mark.timeout(10)
def test_kustomization_lists_every_manifest() -> None:
    listed = set(KUSTOMIZATION["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "resource",
    [*RESOURCES.values(), *CONFIRMER.values()],
    ids=lambda r: f"{r['kind']}/{r['metadata']['name']}",
)
def test_resource_is_valid(resource: dict[str, Any]) -> None:
    kind = resource["kind"]
    if (resource["apiVersion"], kind) in CRD_KINDS:
        assert resource["metadata"]["name"]
        assert isinstance(resource["spec"], dict)
        return
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


@pytest.mark.timeout(10)
def test_schema_validation_really_rejects_a_wrong_field() -> None:
    broken = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # typo of resources
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.timeout(10)
def test_grace_period_covers_the_worker_shutdown_grace_plus_a_margin() -> None:
    grace = int(CONFIG["CANCELQ_SHUTDOWN_GRACE_S"])
    assert POD["terminationGracePeriodSeconds"] >= grace + 10


@pytest.mark.timeout(10)
def test_probes_run_cancelq_health() -> None:
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert CONTAINER[probe]["exec"]["command"] == ["cancelq", "health"], probe


@pytest.mark.timeout(10)
def test_resources_have_requests_and_limits() -> None:
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(CONTAINER["resources"][section])


@pytest.mark.timeout(10)
def test_runs_non_root_on_a_read_only_root_fs_with_a_writable_tmp() -> None:
    assert POD["securityContext"]["runAsNonRoot"] is True
    assert POD["securityContext"]["runAsUser"] != 0
    security = CONTAINER["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in CONTAINER["volumeMounts"]}
    volumes = {v["name"]: v for v in POD["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert POD["automountServiceAccountToken"] is False


@pytest.mark.timeout(10)
def test_accounts_secret_is_mounted_read_only_as_the_accounts_file() -> None:
    env = {e["name"]: e.get("value") for e in CONTAINER["env"]}
    accounts_file = Path(env["CANCELQ_ACCOUNTS_FILE"])
    (mount,) = [m for m in CONTAINER["volumeMounts"] if m["mountPath"] == str(accounts_file.parent)]
    assert mount["readOnly"] is True
    (volume,) = [v for v in POD["volumes"] if v["name"] == mount["name"]]
    secret = RESOURCES["Secret"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    (item,) = volume["secret"]["items"]
    assert item["path"] == accounts_file.name
    assert item["key"] in secret["stringData"]
    assert "FAKE" in secret["stringData"][item["key"]]


@pytest.mark.timeout(10)
def test_config_and_env_cover_the_worker_settings() -> None:
    env_from = [e["configMapRef"]["name"] for e in CONTAINER["envFrom"]]
    assert env_from == [RESOURCES["ConfigMap"]["metadata"]["name"]]
    assert {"CANCELQ_REDIS_URL", "CANCELQ_BYBIT_BASE_URL", "CANCELQ_METRICS_PORT"} <= set(CONFIG)
    assert "mainnet" not in CONFIG["CANCELQ_BYBIT_BASE_URL"]
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert ports["metrics"] == int(CONFIG["CANCELQ_METRICS_PORT"])
    # settings default to loopback: Prometheus could not scrape the pod
    assert CONFIG["CANCELQ_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 (in its pod)


@pytest.mark.timeout(10)
def test_service_and_servicemonitor_select_the_worker_metrics_port() -> None:
    pod_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    service, monitor = RESOURCES["Service"], RESOURCES["ServiceMonitor"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in CONTAINER["ports"]}
    selected = monitor["spec"]["selector"]["matchLabels"].items()
    assert selected <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    # The Prometheus Operator names the job after the Service: the alerts use this name.
    assert service["metadata"]["name"] == "cancelq-worker"


@pytest.mark.timeout(10)
def test_pod_disruption_budget_selects_the_workers() -> None:
    pdb = RESOURCES["PodDisruptionBudget"]
    assert pdb["spec"]["selector"] == DEPLOYMENT["spec"]["selector"]


@pytest.mark.timeout(10)
def test_scaledobject_scales_the_deployment_on_the_whole_backlog() -> None:
    scaled = RESOURCES["ScaledObject"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == DEPLOYMENT["metadata"]["name"]
    assert "replicas" not in DEPLOYMENT["spec"], "KEDA owns the replica count"
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert query.startswith("sum(max by (queue) (cancelq_queue_depth{")
    assert "queue=" not in query, "all three queues (cancelq, unacked, deferred) count"
    assert float(trigger["metadata"]["threshold"]) > 0
    assert scaled["fallback"]["replicas"] >= scaled["minReplicaCount"]


@pytest.mark.timeout(60)
def test_kustomize_builds_the_namespaced_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the static checks above still ran")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    ).stdout
    docs = list(yaml.safe_load_all(built))
    assert sorted(d["kind"] for d in docs) == sorted([*RESOURCES, *CONFIRMER])
    assert {d["metadata"]["namespace"] for d in docs} == {KUSTOMIZATION["namespace"]}
    (deployment,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cancelq-worker"
    ]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "cancelq:0.1.0"
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


# -- the confirmer ------------------------------------------------------------------------------

CONFIRMER_POD = CONFIRMER["Deployment"]["spec"]["template"]["spec"]
(CONFIRMER_CONTAINER,) = CONFIRMER_POD["containers"]


@pytest.mark.timeout(10)
def test_confirmer_runs_two_replicas_with_its_own_metrics_port_and_heartbeat() -> None:
    deployment = CONFIRMER["Deployment"]
    assert CONFIRMER_CONTAINER["args"] == ["confirmer"]
    assert deployment["spec"]["replicas"] >= 2, "a standby replica takes leases over"
    env = {e["name"]: e["value"] for e in CONFIRMER_CONTAINER["env"]}
    assert env["CANCELQ_BYBIT_WS_URL"].endswith("/v5/private")
    assert "stream.bybit.com" not in env["CANCELQ_BYBIT_WS_URL"], "testnet, never mainnet"
    assert env["CANCELQ_HEALTH_FILE"].startswith("/tmp/")
    ports = {p["name"]: p["containerPort"] for p in CONFIRMER_CONTAINER["ports"]}
    assert ports["metrics"] == int(env["CANCELQ_CONFIRMER_METRICS_PORT"])
    assert CONFIRMER_CONTAINER["livenessProbe"]["exec"]["command"] == ["cancelq", "health"]
    assert CONFIRMER_CONTAINER["securityContext"]["readOnlyRootFilesystem"] is True
    assert CONFIRMER_POD["securityContext"]["runAsNonRoot"] is True


@pytest.mark.timeout(10)
def test_confirmer_service_monitor_and_budget_select_the_confirmer_pods() -> None:
    pod_labels = CONFIRMER["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service, monitor = CONFIRMER["Service"], CONFIRMER["ServiceMonitor"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert (
        CONFIRMER["PodDisruptionBudget"]["spec"]["selector"]
        == CONFIRMER["Deployment"]["spec"]["selector"]
    )
    assert (
        RESOURCES["Deployment"]["spec"]["selector"] != CONFIRMER["Deployment"]["spec"]["selector"]
    )
