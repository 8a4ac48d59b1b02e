"""The Prometheus config and alert rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring.queries import REPO_ROOT, RULES_DIR

PROMETHEUS_YML = REPO_ROOT / "monitoring" / "prometheus.yml"
RULE_TESTS = sorted((Path(__file__).parent / "rules").glob("*.test.yml"))
README = REPO_ROOT / "monitoring" / "README.md"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _alerts() -> dict[str, dict[str, object]]:
    alerts: dict[str, dict[str, object]] = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts.update({r["alert"]: r for r in group["rules"] if "alert" in r})
    return alerts


@pytest.mark.timeout(30)
def test_promtool_accepts_the_compose_prometheus_config_and_its_rules(promtool: str) -> None:
    result = _run(promtool, "check", "config", str(PROMETHEUS_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = len(list(RULES_DIR.glob("*.yml")))
    assert f"SUCCESS: {rule_files} rule files found" in result.stdout + result.stderr


@pytest.mark.timeout(30)
def test_promtool_accepts_every_rule_file(promtool: str) -> None:
    files = [str(p) for p in sorted(RULES_DIR.glob("*.yml"))]
    assert files
    result = _run(promtool, "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


@pytest.mark.timeout(60)
def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS
    result = _run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.timeout(10)
def test_every_rule_test_file_loads_the_real_rule_files() -> None:
    for path in RULE_TESTS:
        rule_files = yaml.safe_load(path.read_text())["rule_files"]
        loaded = {(path.parent / f).resolve() for f in rule_files}
        assert loaded == {p.resolve() for p in RULES_DIR.glob("*.yml")}, path


@pytest.mark.timeout(10)
def test_every_alert_has_a_firing_and_a_not_firing_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(_alerts())
    assert alerts - firing == set(), "alerts without a firing test"
    assert alerts - quiet == set(), "alerts without a not-firing test"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


@pytest.mark.timeout(10)
def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    headings = {
        m.group(1).lower() for m in re.finditer(r"^### (\w+)\s*$", README.read_text(), re.M)
    }
    for name, rule in _alerts().items():
        labels, annotations = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict)
        assert isinstance(annotations, dict)
        assert labels["severity"] in {"critical", "warning"}, name
        assert annotations["summary"], name
        assert annotations["runbook"] == f"monitoring/README.md#{name.lower()}", name
        assert name.lower() in headings, f"no '### {name}' runbook section in {README}"
