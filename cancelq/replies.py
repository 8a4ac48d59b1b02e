"""Redis replies as text: clients made without ``decode_responses`` return bytes."""

from __future__ import annotations


def as_text(value: object) -> str:
    """A reply value (bytes, str, or a number) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def time_us(reply: tuple[object, object] | list[object]) -> int:
    """A ``TIME`` reply (seconds, microseconds) as microseconds since the epoch."""
    seconds, micros = reply
    return int(as_text(seconds)) * 1_000_000 + int(as_text(micros))


def time_ms(reply: tuple[object, object] | list[object]) -> int:
    """A ``TIME`` reply as whole milliseconds since the epoch (rounded down)."""
    return time_us(reply) // 1000
