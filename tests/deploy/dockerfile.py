"""A Dockerfile read instruction by instruction (no Docker engine needed).

Handles comments, parser directives, backslash continuations, flags and exec-form (JSON)
arguments: enough for our own Dockerfile, not the whole syntax.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

_FLAG = re.compile(r"^--([\w-]+)(?:=(\S*))?\s+")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # raw arguments, flags removed, continuations joined
    flags: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def exec_form(self) -> list[str] | None:
        """The JSON array form of the arguments (``["a", "b"]``), or None for shell form."""
        if not self.args.startswith("["):
            return None
        value = json.loads(self.args)
        assert isinstance(value, list)
        assert all(isinstance(v, str) for v in value)
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue  # comments and parser directives
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        instructions.append(_instruction(pending + stripped, start))
        pending = ""
    if pending:
        raise ValueError(f"{path}: unterminated continuation at line {start}")
    return instructions


def _instruction(text: str, line: int) -> Instruction:
    keyword, _, rest = text.partition(" ")
    rest = rest.strip()
    flags: dict[str, str] = {}
    while m := _FLAG.match(rest):
        flags[m.group(1)] = m.group(2) or ""
        rest = rest[m.end() :]
    return Instruction(keyword.upper(), " ".join(rest.split()), flags, line)


def stages(instructions: list[Instruction]) -> list[Stage]:
    result: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            base, _, name = instruction.args.partition(" AS ")
            if not name:
                base, _, name = instruction.args.partition(" as ")
            result.append(Stage(base.strip(), name.strip() or None))
        elif result:
            result[-1].instructions.append(instruction)
        elif instruction.keyword != "ARG":
            raise ValueError(f"line {instruction.line}: {instruction.keyword} before FROM")
    return result
