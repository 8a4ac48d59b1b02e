"""docker-compose.yml, read as YAML: services, wiring, and the files it mounts."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CANCELQ_SERVICES = ("simulator", "worker", "confirmer", "producer")
_DEFAULT = re.compile(r"\$\{\w+:-([^}]+)\}")


def _bind_mounts(service: str) -> dict[str, str]:
    """Host path (relative to the repo) -> container path, for bind mounts only."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[source] = target
    return mounts


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


@pytest.mark.timeout(10)
def test_the_stack_has_every_service() -> None:
    assert set(SERVICES) == {
        "redis",
        "simulator",
        "worker",
        "confirmer",
        "producer",
        "prometheus",
        "grafana",
    }


@pytest.mark.timeout(10)
def test_redis_persists_with_aof_and_has_a_healthcheck() -> None:
    redis = SERVICES["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][-2:] == ["--appendonly", "yes"]
    assert any(v.endswith(":/data") and not v.startswith(".") for v in redis["volumes"])
    check = redis["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL"
    assert "redis-cli --user operator ping | grep -q PONG" in check[1]
    assert "ports" not in redis


ROLE_OF = {"worker": "worker", "confirmer": "confirmer", "producer": "producer"}


@pytest.mark.timeout(10)
def test_redis_has_a_user_per_role_and_refuses_to_evict() -> None:
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[command.index("--aclfile") + 1] == "/tmp/users.acl"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["entrypoint"][:5] == [
        "sh",
        "/etc/redis/render-acl",
        "/etc/redis/users.acl",
        "/tmp/users.acl",
        "docker-entrypoint.sh",
    ]
    mounts = set(redis["volumes"])
    assert "./deploy/redis/users.acl:/etc/redis/users.acl:ro" in mounts
    assert "./deploy/redis/render-acl:/etc/redis/render-acl:ro" in mounts
    for role in ("PRODUCER", "WORKER", "CONFIRMER", "OPERATOR"):
        variable = f"CANCELQ_REDIS_{role}_PASSWORD"
        assert redis["environment"][variable] == f"${{{variable}:?set {variable}}}"


@pytest.mark.timeout(10)
def test_each_cancelq_service_connects_as_its_roles_user() -> None:
    for service, role in ROLE_OF.items():
        url = SERVICES[service]["environment"]["CANCELQ_REDIS_URL"]
        variable = f"CANCELQ_REDIS_{role.upper()}_PASSWORD"
        assert url == f"redis://{role}:${{{variable}:?set {variable}}}@redis:6379/0", service
    assert "CANCELQ_REDIS_URL" not in SERVICES["simulator"].get("environment", {})


@pytest.mark.timeout(10)
def test_cancelq_services_share_one_image_and_their_commands() -> None:
    images = {SERVICES[s]["image"] for s in CANCELQ_SERVICES}
    assert len(images) == 1
    assert all(SERVICES[s]["build"] == "." for s in CANCELQ_SERVICES)
    assert SERVICES["simulator"]["command"] == [
        "simulator",
        "--host",
        "0.0.0.0",  # noqa: S104 (in its container)
        "--port",
        "8080",
        "--accounts",
        "/etc/cancelq/accounts.toml",
    ]
    assert SERVICES["worker"]["command"] == ["worker"]
    assert SERVICES["producer"]["command"] == ["loadgen", "--rate", "20"]
    assert SERVICES["confirmer"]["command"] == ["confirmer"]


@pytest.mark.timeout(10)
def test_the_confirmer_follows_the_simulators_private_stream() -> None:
    confirmer = SERVICES["confirmer"]
    env = confirmer["environment"]
    assert env["CANCELQ_BYBIT_WS_URL"] == "ws://simulator:8080/v5/private"
    assert (
        env["CANCELQ_BYBIT_BASE_URL"] == SERVICES["worker"]["environment"]["CANCELQ_BYBIT_BASE_URL"]
    )
    assert confirmer["expose"] == [env["CANCELQ_CONFIRMER_METRICS_PORT"]]
    assert env["CANCELQ_HEALTH_FILE"].startswith("/tmp/")
    assert confirmer["healthcheck"]["test"] == ["CMD", "cancelq", "health"]
    assert "container_name" not in confirmer, "replicas: --scale confirmer=N"


@pytest.mark.timeout(10)
def test_the_worker_scales_and_is_wired_to_redis_and_the_simulator() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    env = worker["environment"]
    assert env["CANCELQ_REDIS_URL"].startswith("redis://worker:")
    assert env["CANCELQ_REDIS_URL"].endswith("@redis:6379/0")
    assert env["CANCELQ_BYBIT_BASE_URL"] == "http://simulator:8080"
    assert env["CANCELQ_ACCOUNTS_FILE"] == "/etc/cancelq/accounts.toml"
    assert env["CANCELQ_METRICS_PORT"] == "9808"
    assert worker["healthcheck"]["test"] == ["CMD", "cancelq", "health"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.timeout(10)
def test_worker_stop_grace_exceeds_its_shutdown_grace() -> None:
    worker = SERVICES["worker"]
    grace = float(worker["environment"]["CANCELQ_SHUTDOWN_GRACE_S"])
    assert _seconds(worker["stop_grace_period"]) >= grace + 5


@pytest.mark.timeout(10)
def test_non_worker_services_override_the_image_healthcheck() -> None:
    assert SERVICES["simulator"]["healthcheck"]["test"] != ["CMD", "cancelq", "health"]
    assert SERVICES["producer"]["healthcheck"] == {"disable": True}


@pytest.mark.timeout(10)
def test_accounts_file_is_a_secret_at_the_configured_path() -> None:
    for service in CANCELQ_SERVICES:
        targets = [s["target"] for s in SERVICES[service]["secrets"] if s["source"] == "accounts"]
        assert targets == ["/etc/cancelq/accounts.toml"], service
    source = COMPOSE["secrets"]["accounts"]["file"]
    default = _DEFAULT.fullmatch(source)
    assert default, "the accounts file must be overridable from the environment"
    example = (REPO_ROOT / default.group(1)).read_text()
    assert "[accounts." in example
    assert "not-real" in example


@pytest.mark.timeout(10)
def test_only_grafana_and_prometheus_publish_ports_on_loopback() -> None:
    published = {name: s["ports"] for name, s in SERVICES.items() if "ports" in s}
    assert published == {"prometheus": ["127.0.0.1:9090:9090"], "grafana": ["127.0.0.1:3000:3000"]}


@pytest.mark.timeout(10)
def test_prometheus_loads_the_tested_config_and_rules() -> None:
    prometheus = SERVICES["prometheus"]
    mounts = _bind_mounts("prometheus")
    config_target = mounts["./monitoring/prometheus.yml"]
    assert f"--config.file={config_target}" in prometheus["command"]
    config = yaml.safe_load((REPO_ROOT / "monitoring/prometheus.yml").read_text())
    (rule_glob,) = config["rule_files"]
    in_container = PurePosixPath(config_target).parent / rule_glob
    assert str(in_container.parent) == mounts["./monitoring/rules"]
    assert list((REPO_ROOT / "monitoring").glob(rule_glob)), "the glob matches the rule files"


@pytest.mark.timeout(10)
def test_prometheus_discovers_every_worker_replica_by_dns() -> None:
    config = yaml.safe_load((REPO_ROOT / "monitoring/prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "cancelq-worker"]
    (dns,) = job["dns_sd_configs"]
    assert dns["names"] == ["worker"]
    assert dns["type"] == "A"
    assert str(dns["port"]) == SERVICES["worker"]["environment"]["CANCELQ_METRICS_PORT"]


@pytest.mark.timeout(10)
def test_prometheus_discovers_every_confirmer_replica_by_dns() -> None:
    config = yaml.safe_load((REPO_ROOT / "monitoring/prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "cancelq-confirmer"]
    (dns,) = job["dns_sd_configs"]
    assert dns["names"] == ["confirmer"]
    assert dns["type"] == "A"
    env = SERVICES["confirmer"]["environment"]
    assert str(dns["port"]) == env["CANCELQ_CONFIRMER_METRICS_PORT"] == "9809"


@pytest.mark.timeout(10)
def test_scraped_services_serve_metrics_beyond_their_loopback() -> None:
    """The settings default to 127.0.0.1, which Prometheus' container cannot reach."""
    for service in ("worker", "confirmer"):
        env = SERVICES[service]["environment"]
        assert env["CANCELQ_METRICS_HOST"] == "0.0.0.0", service  # noqa: S104 (container)


@pytest.mark.timeout(10)
def test_grafana_provisions_the_datasource_and_dashboards() -> None:
    mounts = _bind_mounts("grafana")
    provisioning = REPO_ROOT / "monitoring/grafana/provisioning"
    assert mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load((provisioning / "dashboards/cancelq.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == mounts["./monitoring/grafana/dashboards"]
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(providers[0]["options"]["path"] + "/")
    assert (REPO_ROOT / "monitoring/grafana/dashboards" / PurePosixPath(home).name).exists()


@pytest.mark.timeout(10)
def test_grafana_has_no_default_admin_password() -> None:
    password = SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${")
    assert ":?" in password


@pytest.mark.timeout(10)
def test_every_bind_mounted_file_exists() -> None:
    for service in SERVICES:
        for source in _bind_mounts(service):
            assert (REPO_ROOT / source).exists(), f"{service}: {source}"
    assert (REPO_ROOT / SERVICES["simulator"]["build"] / "Dockerfile").exists()
