"""Redis replies: text from bytes, and the ``TIME`` reply as one number."""

from __future__ import annotations

import pytest

from cancelq.replies import as_text, time_ms, time_us

pytestmark = pytest.mark.timeout(10)


def test_as_text_reads_bytes_str_and_numbers() -> None:
    assert [as_text(b"a"), as_text("b"), as_text(3)] == ["a", "b", "3"]


@pytest.mark.parametrize(
    "reply",
    [(1_733_500_000, 123_456), [b"1733500000", b"123456"], ["1733500000", "123456"]],
)
def test_time_reply_in_micro_and_milliseconds(reply: tuple[object, object]) -> None:
    assert time_us(reply) == 1_733_500_000_123_456
    assert time_ms(reply) == 1_733_500_000_123


def test_time_ms_rounds_down_at_the_millisecond_edge() -> None:
    assert time_ms((5, 999_999)) == 5_999
    assert time_ms((6, 0)) == 6_000
