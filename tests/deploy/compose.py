"""Compose files as ``docker compose`` reads them, for the deploy tests (no Docker engine here):
variable interpolation and the merge of an override file (``-f base -f override``)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

#: Keys of a service an override replaces whole (compose's merge); other lists are appended.
_REPLACED = {"command", "entrypoint", "test"}


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ``$$`` (a literal ``$``), ``${NAME}``, ``${NAME:?message}`` and
    ``${NAME:-default}`` (a name the test does not set fails the test, as ``:?`` fails
    ``docker compose up``)."""

    def one(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        name, default = found.group(1), found.group(3)
        if name in variables:
            return variables[name]
        assert found.group(2) == ":-", f"compose needs {name} and the test does not set it"
        return default or ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:[?-])([^}]*))?\}", one, value)


def interpolated(value: Any, variables: Mapping[str, str]) -> Any:
    """``interpolate`` through every string of a compose value (lists, mappings)."""
    if isinstance(value, str):
        return interpolate(value, variables)
    if isinstance(value, list):
        return [interpolated(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: interpolated(v, variables) for k, v in value.items()}
    return value


def _volume_target(volume: str) -> str:
    return volume.split(":")[1]


def _merge(base: Any, override: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = _merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        if key == "volumes":  # one volume per target: the override's wins
            targets = {_volume_target(v) for v in override}
            return [v for v in base if _volume_target(v) not in targets] + override
        return base + [v for v in override if v not in base]
    return copy.deepcopy(override)


def load(*files: Path) -> dict[str, Any]:
    """The compose model of ``docker compose -f files[0] -f files[1] ...`` (not interpolated)."""
    model: dict[str, Any] = {}
    for path in files:
        model = _merge(model, yaml.safe_load(path.read_text()))
    return model
