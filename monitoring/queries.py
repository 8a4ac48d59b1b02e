"""Every PromQL expression the operator side relies on, and the metrics and labels each one uses.

Sources: the alert rules (``monitoring/rules/*.yml``), the Grafana dashboards
(``monitoring/grafana/dashboards/*.json``) and the KEDA ScaledObject (``deploy/k8s``). Tests use
this module twice: statically, to check every metric name against ``worker.metrics.Metrics``, and
against a real Prometheus, to evaluate every expression after scraping real metrics.

The PromQL reader here is deliberately small: it finds metric selectors (name plus the label
names matched in ``{...}``) and grouping labels (``by``/``without``/``on``/``ignoring``/
``group_left``/``group_right``). Parsing errors are left to Prometheus itself.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = REPO_ROOT / "monitoring" / "rules"
DASHBOARDS_DIR = REPO_ROOT / "monitoring" / "grafana" / "dashboards"
K8S_DIR = REPO_ROOT / "deploy" / "k8s"

#: Values for Grafana's variables when an expression is sent to Prometheus directly.
GRAFANA_DEFAULTS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "account": ".*",
}

_AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_NOT_METRICS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    |(?P<number>(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?:[a-zA-Z]+\d*)*)
    |(?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*)
    |(?P<punct>=~|!~|!=|==|>=|<=|[{}()\[\],=<>+\-*/%^@:])
    |(?P<space>\s+|\#[^\n]*)
    """,
    re.VERBOSE,
)
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<metric>.+),\s*)?(?P<label>\w+)\s*\)\s*$")


@dataclass(frozen=True)
class Query:
    """One expression and where it was found (for error messages)."""

    source: str
    expr: str


@dataclass(frozen=True)
class Selector:
    """A metric name and the label names its ``{...}`` matches on."""

    metric: str
    labels: frozenset[str]


@dataclass(frozen=True)
class ParsedQuery:
    selectors: tuple[Selector, ...]
    grouping_labels: frozenset[str] = field(default_factory=frozenset)

    @property
    def metrics(self) -> frozenset[str]:
        return frozenset(s.metric for s in self.selectors)


# --- sources -------------------------------------------------------------------------------


def rule_queries(path: Path) -> list[Query]:
    """The ``expr`` of every alerting and recording rule in a Prometheus rule file."""
    doc = yaml.safe_load(path.read_text())
    return list(_rule_group_queries(doc.get("groups", []), path.name))


def _rule_group_queries(groups: list[dict[str, Any]], where: str) -> Iterator[Query]:
    for group in groups:
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            yield Query(f"{where}: {name}", str(rule["expr"]))


def dashboard_queries(path: Path) -> list[Query]:
    """Every target ``expr`` of every panel (rows included) and every query variable."""
    dashboard = json.loads(path.read_text())
    found: list[Query] = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append(Query(f"{path.name}: {panel.get('title')}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else str(query)
            found.append(Query(f"{path.name}: variable {variable['name']}", text))
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def scaledobject_queries(path: Path) -> list[Query]:
    """The query of every Prometheus trigger of every KEDA ScaledObject in a manifest file."""
    found: list[Query] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "ScaledObject":
            continue
        for trigger in doc["spec"].get("triggers", []):
            if trigger.get("type") == "prometheus":
                name = doc["metadata"]["name"]
                found.append(Query(f"{path.name}: {name}", trigger["metadata"]["query"]))
    return found


def all_queries() -> list[Query]:
    """Every expression of the repository's rule files, dashboards and ScaledObjects."""
    found: list[Query] = []
    for rules in sorted(RULES_DIR.glob("*.yml")):
        found.extend(rule_queries(rules))
    for dashboard in sorted(DASHBOARDS_DIR.glob("*.json")):
        found.extend(dashboard_queries(dashboard))
    for manifest in sorted(K8S_DIR.glob("*.yaml")):
        found.extend(scaledobject_queries(manifest))
    return found


# --- Grafana to PromQL -----------------------------------------------------------------------


def to_promql(expr: str, variables: Mapping[str, str] = GRAFANA_DEFAULTS) -> str:
    """Turn a Grafana expression into plain PromQL: substitute variables, expand label_values."""
    match = _LABEL_VALUES.match(expr)
    if match:
        metric = match["metric"] or "up"
        expr = f"count by ({match['label']}) ({metric})"

    def substitute(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in variables:
            raise ValueError(f"no value for Grafana variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(substitute, expr)


# --- PromQL reading --------------------------------------------------------------------------


def parse(expr: str) -> ParsedQuery:
    """Find the metric selectors and grouping labels of a PromQL expression."""
    tokens = _tokens(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "[":
            i = _skip_to(tokens, i, "]")
        elif text == "{":
            raise ValueError(f"selector without a metric name in {expr!r}")
        elif kind == "ident" and text in _GROUPING:
            if following == "(":
                end = _skip_to(tokens, i + 1, ")")
                grouping.update(t for k, t in tokens[i + 2 : end] if k == "ident")
                i = end
        elif kind == "ident" and following != "(" and text not in _NOT_METRICS | _AGGREGATIONS:
            labels: frozenset[str] = frozenset()
            if following == "{":
                end = _skip_to(tokens, i + 1, "}")
                labels = _matcher_labels(tokens[i + 2 : end])
                i = end
            selectors.append(Selector(text, labels))
        i += 1
    return ParsedQuery(tuple(selectors), frozenset(grouping))


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.lastgroup is None:
            raise ValueError(f"cannot read PromQL at {expr[pos : pos + 20]!r} in {expr!r}")
        if m.lastgroup != "space":
            tokens.append((m.lastgroup, m.group()))
        pos = m.end()
    return tokens


def _skip_to(tokens: list[tuple[str, str]], start: int, closing: str) -> int:
    for j in range(start, len(tokens)):
        if tokens[j][1] == closing:
            return j
    raise ValueError(f"unclosed {tokens[start][1]!r}")


def _matcher_labels(tokens: list[tuple[str, str]]) -> frozenset[str]:
    return frozenset(
        text
        for (kind, text), (_, op) in itertools.pairwise(tokens)
        if kind == "ident" and op in {"=", "!=", "=~", "!~"}
    )
