"""The worker image's Dockerfile, read instruction by instruction (no Docker engine needed)."""

from __future__ import annotations

import fnmatch
import shlex
from pathlib import Path

import pytest

from tests.deploy.dockerfile import Instruction, Stage, parse_dockerfile, stages

# --- the tests ---------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "cc ", "-dev")


@pytest.fixture(scope="module")
def image_stages() -> list[Stage]:
    return stages(parse_dockerfile(DOCKERFILE))


@pytest.fixture(scope="module")
def final(image_stages: list[Stage]) -> Stage:
    return image_stages[-1]


def _dockerignore() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.timeout(10)
def test_parser_reads_continuations_flags_and_exec_form(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "# syntax=docker/dockerfile:1\nFROM a:1 AS b\nRUN x \\\n  # note\n  && y\n"
        'COPY --from=b --chown=1:1 /o /o\nFROM c\nENTRYPOINT ["e", "f"]\n'
    )
    parsed = stages(parse_dockerfile(dockerfile))
    assert [(s.base, s.name) for s in parsed] == [("a:1", "b"), ("c", None)]
    run, copy = parsed[0].instructions
    assert run.args == "x && y"
    assert copy.flags == {"from": "b", "chown": "1:1"}
    assert copy.args == "/o /o"
    assert parsed[1].instructions[0].exec_form() == ["e", "f"]


@pytest.mark.timeout(10)
def test_multi_stage_on_python_311_slim(image_stages: list[Stage]) -> None:
    assert len(image_stages) >= 2
    assert all(s.base == "python:3.11-slim" for s in image_stages)
    names = [s.name for s in image_stages]
    for stage in image_stages:
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                assert copy.flags["from"] in names[: names.index(stage.name)], copy


@pytest.mark.timeout(10)
def test_the_package_is_pip_installed_in_a_build_stage(image_stages: list[Stage]) -> None:
    runs = [shlex.split(r.args) for s in image_stages[:-1] for r in s.all("RUN")]
    installs = [r[r.index("install") + 1 :] for r in runs if r[:2] == ["pip", "install"]]
    assert installs == [[".[worker,confirmer,simulator]"]], runs


@pytest.mark.timeout(10)
def test_no_build_tools_in_the_final_stage(final: Stage) -> None:
    for run in final.all("RUN"):
        assert "apt-get install" not in run.args, run
        assert not any(tool in run.args for tool in BUILD_TOOLS), run
    assert [c.flags.get("from") for c in final.all("COPY")] == ["build"]


@pytest.mark.timeout(10)
def test_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "no USER: the image would run as root"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit()
    assert int(user) != 0
    assert not group or int(group) != 0
    created = " ".join(r.args for r in final.all("RUN"))
    assert f"--uid {user}" in created, "the user must exist in /etc/passwd too"


@pytest.mark.timeout(10)
def test_entrypoint_healthcheck_and_metrics_port(final: Stage) -> None:
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.exec_form() == ["cancelq"]
    assert final.all("CMD")[-1].exec_form() == ["worker"]
    (healthcheck,) = final.all("HEALTHCHECK")
    assert healthcheck.args.startswith("CMD ")
    assert Instruction("CMD", healthcheck.args[4:]).exec_form() == ["cancelq", "health"]
    assert {"interval", "timeout", "retries"} <= set(healthcheck.flags)
    assert "9808" in [e.args for e in final.all("EXPOSE")]


@pytest.mark.timeout(10)
def test_every_copied_path_exists_and_is_in_the_build_context(image_stages: list[Stage]) -> None:
    ignored = _dockerignore()
    copies = [c for s in image_stages for c in s.all("COPY") if "from" not in c.flags]
    assert copies
    for copy in copies:
        *sources, _dest = copy.args.split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY of missing {source}"
            assert not any(fnmatch.fnmatch(source, p) for p in ignored), f"{source} ignored"
    copied = {src for c in copies for src in c.args.split()[:-1]}
    assert {"pyproject.toml", "README.md", "cancelq", "worker"} <= copied


@pytest.mark.timeout(10)
def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set(_dockerignore())
    assert {".git", ".venv", "tests", "deploy"} <= ignored
