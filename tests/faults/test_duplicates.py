"""Issue 5, proof 4: 1,000 distinct cancels, each enqueued 3 times by 3 producer processes at
once. The exchange sees every identity exactly once; each request has a final outcome, two of
every three pointing at the first (``duplicateOf``); the dedup hits are counted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from tests.faults.conftest import FAULT_ENV
from tests.faults.harness import (
    assert_no_secrets,
    assert_none_lost_none_stuck,
    cancels,
    fault_stack,
    place,
    tally,
    wait_final,
)
from tests.support import Stack

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

DISTINCT = 1000
PRODUCERS = 3
PRODUCER = """
import json, random, sys
from cancelq.producers.client import CancelProducer
url, seed, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
requests = json.load(open(path))
random.Random(seed).shuffle(requests)
ids = CancelProducer.from_url(url).enqueue_many(requests)
print(json.dumps(ids))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fault_stack(tmp_path_factory.mktemp("dups")) as stack:
        yield stack
        assert_no_secrets(stack, stack.secrets)


def dedup_hits(stack: Stack) -> float:
    total = 0.0
    for worker in stack.workers:
        port = worker.env["CANCELQ_METRICS_PORT"]
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        total += sum(
            float(v) for v in re.findall(r"^cancelq_dedup_hits_total\{[^}]*\} (\S+)$", text, re.M)
        )
    return total


def test_each_identity_reaches_the_exchange_once(stack: Stack) -> None:
    workers = [stack.start_worker(**FAULT_ENV) for _ in range(2)]
    links = place(stack, "load", "dup", DISTINCT)
    batch = stack.workdir / "requests.json"
    batch.write_text(json.dumps(cancels("load", links)))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, stack.redis_server.url, str(seed), str(batch)],
            stdout=subprocess.PIPE,
            env=env,
        )
        for seed in range(PRODUCERS)
    ]
    ids: list[str] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        ids += json.loads(out)
    outcomes = wait_final(stack, ids, 120)
    result = tally(stack, "duplicates-3x1000", ids, outcomes, account="load", links=links)
    assert_none_lost_none_stuck(result)
    assert result.per_identity == {1: DISTINCT}, "zero repeats without crashes"
    firsts = Counter(o.orderLinkId for o in outcomes.values() if o.duplicateOf is None)
    pointers = [o for o in outcomes.values() if o.duplicateOf is not None]
    assert firsts == dict.fromkeys(links, 1)
    assert len(pointers) == DISTINCT * (PRODUCERS - 1)
    assert all(o.duplicateOf in outcomes and o.duplicateOf != o.requestId for o in pointers)
    assert dedup_hits(stack) == DISTINCT * (PRODUCERS - 1)
    for worker in workers:
        worker.stop()
