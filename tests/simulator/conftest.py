"""Fixtures for the simulator's tests: one in-process simulator per module, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from sim_helpers import (
    HMAC_KEY,
    HMAC_SECRET,
    HMAC_UID,
    OTHER_KEY,
    OTHER_SECRET,
    OTHER_UID,
    RSA_KEY,
    RSA_UID,
    V5,
)

from cancelq.harness.accounts import RsaPair, new_rsa_pair
from cancelq.simulator.testing import InProcessSimulator


@pytest.fixture(scope="session")
def rsa_pair() -> RsaPair:
    return new_rsa_pair()


@pytest.fixture(scope="module")
def sim_module(rsa_pair: RsaPair) -> Iterator[InProcessSimulator]:
    with InProcessSimulator() as sim:
        yield sim


@pytest.fixture
def sim(sim_module: InProcessSimulator, rsa_pair: RsaPair) -> InProcessSimulator:
    """A clean simulator: three accounts, no orders, records, limits state or faults."""
    admin = sim_module.admin
    admin.reset(faults=True)
    admin.set_dialect("v5")
    admin.configure_rate_limits(enabled=True, batch_counts_items=True)
    sim_module.state.limiter.global_overrides.clear()
    sim_module.state.limiter.uid_overrides.clear()
    admin.add_account("main", HMAC_KEY, uid=HMAC_UID, api_secret=HMAC_SECRET)
    admin.add_account("rsa", RSA_KEY, uid=RSA_UID, rsa_public_key=rsa_pair.public_pem)
    admin.add_account("other", OTHER_KEY, uid=OTHER_UID, api_secret=OTHER_SECRET)
    return sim_module


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def v5(sim: InProcessSimulator, http: requests.Session) -> V5:
    return V5(sim, http)
