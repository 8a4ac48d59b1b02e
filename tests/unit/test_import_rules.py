"""The may-import table of ``docs/DESIGN.md`` ("Rooms"), enforced: the test reads the table
itself, so the document and the rules cannot drift apart.

Every module file is mapped to its room (through pyproject's setuptools ``package-dir``, the
way the wheel lays it out), every import in it (at module level, inside functions, under
``TYPE_CHECKING``) is read with ``ast``, and each one the importing room's row does not allow
fails the test, named by file and line.

import-linter would be the well-kept library for this, but its graph builder walks a package's
folder on disk and does not see setuptools' ``package-dir`` mapping (``cancelq.worker`` lives in
``worker/``), so it would miss every mapped room; an ``ast`` walk over the mapping is enough.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "DESIGN.md"
#: Developer tooling run from the checkout: a room each, not in the wheel.
CHECKOUT_ROOTS = ("bench", "monitoring", "tests")
#: Folders never holding project modules.
SKIPPED = {"__pycache__", "node_modules", "build", ".venv", ".git"}
ANYTHING = "anything"


@dataclass(frozen=True)
class Room:
    name: str
    modules: tuple[str, ...]  # "x.*": the package x and all below it; "x": that module only
    rooms: frozenset[str]  # rooms it may import (itself always)
    libraries: frozenset[str]  # third-party top-level import names it may use
    anything: bool


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # what the statement imports, absolute


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@cache
def rooms() -> dict[str, Room]:
    """The "Rooms" table of docs/DESIGN.md."""
    lines = DESIGN.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## Rooms"))
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(_cells(line))
        elif table:
            break
    header, rows = table[0], table[2:]
    col = {name: header.index(name) for name in ("room", "modules", "may import")}
    found = {}
    for row in rows:
        allowed = [part.strip() for part in row[col["may import"]].split(",")]
        name = row[col["room"]]
        found[name] = Room(
            name=name,
            modules=tuple(re.findall(r"`([\w.*]+)`", row[col["modules"]])),
            rooms=frozenset(a for a in allowed if a and not a.startswith("`")) - {ANYTHING},
            libraries=frozenset(a.strip("`") for a in allowed if a.startswith("`")),
            anything=ANYTHING in allowed,
        )
    return found


@cache
def package_dirs() -> dict[str, Path]:
    """Import package -> folder: pyproject's ``package-dir`` plus the checkout-only roots."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = {p: ROOT / f for p, f in config["tool"]["setuptools"]["package-dir"].items()}
    return {**mapping, **{name: ROOT / name for name in CHECKOUT_ROOTS}}


def _module_name(package: str, folder: Path, path: Path) -> str:
    parts = list(path.relative_to(folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


@cache
def modules() -> dict[str, Path]:
    """Every module file of the project by its import name."""
    found: dict[str, Path] = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.rglob("*.py")):
            if not SKIPPED & set(path.relative_to(folder).parts[:-1]):
                found[_module_name(package, folder, path)] = path
    return found


@cache
def mapped_folders() -> frozenset[str]:
    """Folders whose import name is not their folder name (``worker/`` is ``cancelq.worker``)."""
    return frozenset(
        folder.name for package, folder in package_dirs().items() if package != folder.name
    )


def entry_matches(entry: str, module: str) -> int:
    """How specific ``entry`` is for ``module`` (its length), 0 when it does not hold it."""
    if entry.endswith(".*"):
        package = entry[:-2]
        return len(package) if module == package or module.startswith(package + ".") else 0
    return len(entry) if module == entry else 0


def room_of(module: str) -> Room | None:
    """The room of ``module``: the one with its most specific entry."""
    best: tuple[int, Room | None] = (0, None)
    for room in rooms().values():
        for entry in room.modules:
            score = entry_matches(entry, module)
            if score > best[0]:
                best = (score, room)
    return best[1]


def imports(module: str, path: Path) -> Iterator[Import]:
    """Every import statement of a module, anywhere in it, as absolute module names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(path, node.lineno, submodule if submodule in modules() else base)


def where(found: Import) -> str:
    return f"{found.path.relative_to(ROOT)}:{found.line}"


def broken_rule(room: Room, found: Import) -> str | None:
    """Why ``room`` may not make this import, or None when it may."""
    top = found.module.split(".")[0]
    if room.anything or top in sys.stdlib_module_names:
        return None
    if top == "cancelq":
        return _room_rule(room, found.module)
    if top in CHECKOUT_ROOTS:
        return f"{room.name} may not import the checkout-only {top}/ ({found.module})"
    if top in mapped_folders():
        return f"imports {found.module!r} by its folder name: import cancelq.{found.module}"
    if top in room.libraries:
        return None
    return f"{room.name} may not import the library {top!r}"


def _room_rule(room: Room, module: str) -> str | None:
    target = room_of(module)
    if target is None:
        return f"imports {module!r}, which is in no room"
    if target.name == room.name or target.name in room.rooms:
        return None
    return f"{room.name} may not import {target.name} ({module})"


def test_the_table_names_known_rooms_only() -> None:
    table = rooms()
    assert {"kernel", "bybit", "pipeline", "host", "harness", "shell"} <= set(table)
    for room in table.values():
        assert room.modules, f"room {room.name}: no modules"
        unknown = room.rooms - set(table)
        assert not unknown, f"room {room.name} may import unknown rooms {sorted(unknown)}"
    entries = [entry for room in table.values() for entry in room.modules]
    assert len(entries) == len(set(entries)), "an entry is listed under two rooms"


def test_every_module_belongs_to_exactly_one_room() -> None:
    homeless = [str(path.relative_to(ROOT)) for m, path in modules().items() if not room_of(m)]
    assert not homeless, f"modules in no room of docs/DESIGN.md: {homeless}"
    for module in modules():
        best = max(entry_matches(e, module) for r in rooms().values() for e in r.modules)
        holders = [
            r.name for r in rooms().values() for e in r.modules if entry_matches(e, module) == best
        ]
        assert len(holders) == 1, f"{module} is claimed by {holders}"


def test_every_import_follows_the_may_import_table() -> None:
    broken = []
    for module, path in modules().items():
        room = room_of(module)
        assert room is not None
        for found in imports(module, path):
            why = broken_rule(room, found)
            if why is not None:
                broken.append(f"{where(found)}: {why}")
    assert not broken, "imports that break docs/DESIGN.md's rules:\n" + "\n".join(broken)


def test_no_module_imports_a_mapped_folder_by_its_folder_name() -> None:
    assert mapped_folders() == {"worker", "producers", "confirmer", "simulator"}
    broken = [
        f"{where(found)}: {found.module}"
        for module, path in modules().items()
        for found in imports(module, path)
        if found.module.split(".")[0] in mapped_folders()
    ]
    assert not broken, "import cancelq.<name>, never the folder:\n" + "\n".join(broken)


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    shipped = {
        m
        for m, path in modules().items()
        if path.name == "__init__.py" and m.split(".")[0] == "cancelq"
    }
    assert shipped - listed == set(), "packages missing from [tool.setuptools] packages"
    assert listed - shipped == set(), "packages listed in pyproject that do not exist"


def test_the_rules_catch_what_they_are_meant_to_catch() -> None:
    """The checker itself: an import the table forbids is reported with its file and line."""
    table = rooms()
    here = Path(__file__)
    assert broken_rule(table["pipeline"], Import(here, 1, "celery")) is not None
    assert broken_rule(table["pipeline"], Import(here, 1, "cancelq.worker.host.app")) is not None
    assert broken_rule(table["producers"], Import(here, 1, "cancelq.worker.pipeline")) is not None
    assert broken_rule(table["harness"], Import(here, 1, "tests.support")) is not None
    assert broken_rule(table["kernel"], Import(here, 1, "worker.pipeline")) is not None
    assert broken_rule(table["host"], Import(here, 1, "cancelq.worker.pipeline")) is None
    assert broken_rule(table["kernel"], Import(here, 1, "typing")) is None
    assert room_of("cancelq.worker.host.kombu_channel") is table["host"]
    assert room_of("cancelq.worker.envelopes") is table["pipeline"]
    assert room_of("cancelq.contract") is table["kernel"]
    assert room_of("cancelq.newthing") is None  # a new top-level module must pick a room
