from __future__ import annotations

from cancelq.worker.host.main import chosen_pool


def test_the_pool_a_command_line_ends_up_with() -> None:
    assert chosen_pool([]) == "threads"
    assert chosen_pool(["--pool", "prefork", "-c", "2"]) == "prefork"
    assert chosen_pool(["-P", "gevent"]) == "gevent"
    assert chosen_pool(["--pool=solo"]) == "solo"
