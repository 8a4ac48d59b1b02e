"""The harness's one accounts-file writer: what it writes reads the same on both sides (the
worker's loader and the simulator's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cancelq.accounts import load_accounts
from cancelq.harness.accounts import AccountSpec, new_rsa_pair, random_account, write_accounts
from cancelq.simulator.accounts import load_accounts as load_simulator_accounts


def test_one_file_serves_the_worker_and_the_simulator(tmp_path: Path) -> None:
    pair = new_rsa_pair()
    path = write_accounts(
        tmp_path / "accounts.toml",
        [
            AccountSpec("main", "MAINKEY", 1001, 'se"cret\\x', rate_limit_per_s=20),
            AccountSpec("rsa", "RSAKEY", 1002, rsa=pair, batch_counts_items=False),
            AccountSpec("page", "PAGEKEY", 1003, "page-secret", ret_code_table="page"),
        ],
    )
    worker = load_accounts(path)
    assert worker["main"].hmac_secret is not None
    assert worker["main"].hmac_secret.get_secret_value() == 'se"cret\\x'  # quoted, escaped
    assert worker["main"].rate_limit_per_s == 20
    assert worker["rsa"].rsa_private_key_pem is not None
    assert worker["rsa"].batch_counts_items is False
    assert worker["page"].ret_code_table == "page"
    assert (tmp_path / "rsa.pem").read_text() == pair.private_pem
    simulator = {a.alias: a for a in load_simulator_accounts(path)}
    assert simulator["main"].uid == 1001
    assert simulator["main"].hmac_secret == b'se"cret\\x'
    assert simulator["rsa"].rsa_public_key is not None
    assert simulator["page"].api_key == "PAGEKEY"


def test_an_accounts_secrets_are_what_logs_must_never_show() -> None:
    pair = new_rsa_pair()
    assert AccountSpec("a", "K", 1, "s").secrets == ["s"]
    assert AccountSpec("b", "K", 2, rsa=pair).secrets == [pair.private_pem]


@pytest.mark.parametrize("rsa", [False, True])
def test_random_accounts_differ_per_call(rsa: bool) -> None:
    pair = new_rsa_pair() if rsa else None
    first, second = (random_account("x", 1, rsa=pair, rate_limit_per_s=5) for _ in range(2))
    assert first.api_key != second.api_key
    assert (first.api_secret is None) is rsa
    assert first.rate_limit_per_s == 5
