"""Redis replies as text: clients made without ``decode_responses`` return bytes."""

from __future__ import annotations


def as_text(value: object) -> str:
    """A reply value (bytes, str, or a number) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
