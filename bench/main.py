"""``cancelq bench`` entry point (being built)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    print(f"benchmarks are not available yet ({len(argv)} arguments ignored)")
    return 2
