"""Wrap the tested alert rules into a Prometheus Operator ``PrometheusRule`` for Kubernetes.

``monitoring/rules/cancelq-alerts.yml`` is the source (promtool-tested); the Kubernetes copy in
``deploy/k8s/prometheusrule.yaml`` is generated from it, and a test fails when they differ::

    python -m monitoring.k8s_rules > deploy/k8s/prometheusrule.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monitoring.queries import RULES_DIR

SOURCE = RULES_DIR / "cancelq-alerts.yml"
HEADER = """\
# GENERATED from monitoring/rules/cancelq-alerts.yml (the tested source): do not edit by hand.
# Regenerate with: python -m monitoring.k8s_rules > deploy/k8s/prometheusrule.yaml
"""


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as ``|`` blocks, as they are written in the source."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def prometheus_rule(source: Path = SOURCE) -> str:
    """The PrometheusRule manifest (YAML text) holding every group of ``source``."""
    groups: list[dict[str, Any]] = yaml.safe_load(source.read_text())["groups"]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "cancelq-alerts",
            # `release` must match your Prometheus' ruleSelector (as for the ServiceMonitor).
            "labels": {"app.kubernetes.io/name": "cancelq-worker", "release": "prometheus"},
        },
        "spec": {"groups": groups},
    }
    body = yaml.dump(manifest, Dumper=_BlockDumper, sort_keys=False, width=4096)
    return HEADER + body


if __name__ == "__main__":
    print(prometheus_rule(), end="")
