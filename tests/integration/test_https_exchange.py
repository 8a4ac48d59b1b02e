"""The simulator over HTTPS with a private CA, as Bybit is HTTPS only: the worker verifies the
exchange with ``CANCELQ_HTTP_CA_BUNDLE``; pybit, trusting the same CA, agrees."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from pybit.unified_trading import HTTP

from cancelq.harness.tls import make_tls_files
from cancelq.outcomes import Status
from tests.support import KEYS, SECRETS, Stack, cancel, suite_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def https_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("https")
    tls = make_tls_files(workdir, "simulator")
    with suite_stack(workdir, sim_tls=tls) as stack:
        stack.start_worker(CANCELQ_HTTP_CA_BUNDLE=str(tls.ca_cert))
        yield stack


def test_the_simulator_serves_https_only_to_clients_that_trust_its_ca(
    https_stack: Stack,
) -> None:
    url = https_stack.sim.base_url
    assert url.startswith("https://")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/v5/market/time", timeout=5)
    ca = https_stack.sim.ca_file
    assert ca is not None
    assert requests.get(f"{url}/v5/market/time", timeout=5, verify=ca).json()["retCode"] == 0


def test_a_worker_cancels_over_https_with_the_configured_ca(https_stack: Stack) -> None:
    order_id = https_stack.place(order_link_id="tls-1")
    rid = https_stack.producer.enqueue(**cancel(orderId=order_id))
    outcome = https_stack.producer.wait(rid, 20)
    assert outcome.status is Status.CANCELLED
    assert https_stack.order_status(order_id) == "Cancelled"


def test_pybit_cancels_over_https_trusting_the_ca(https_stack: Stack) -> None:
    ca = https_stack.sim.ca_file
    assert ca is not None
    order_id = https_stack.place(order_link_id="tls-pybit")
    session = HTTP(testnet=False, api_key=KEYS["main"], api_secret=SECRETS["main"], max_retries=1)
    session.endpoint = https_stack.sim.base_url
    session.client.verify = ca  # pybit sends prepared requests: no CA variable is read
    try:
        reply = session.cancel_order(category="spot", symbol="BTCUSDT", orderId=order_id)
    finally:
        session.client.close()
    assert reply["retCode"] == 0
    assert https_stack.order_status(order_id) == "Cancelled"
