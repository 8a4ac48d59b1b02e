"""The fault tier's harness: a stack with load accounts, bulk orders, and the report every fault
test prints and checks (N enqueued, N final, cancels the exchange saw per identity).

Load runs against the simulator with very high limits (:data:`HIGH_LIMITS`) and an account
whose own budget (``rate_limit_per_s``) is far above what two cores can send, so the figures
measure delivery, not the 20/s budget of a default key. ``slow`` keeps a real 20/s budget:
with it, most cancels are parked and only the dispatcher thread can send them.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cancelq.harness.accounts import AccountSpec
from cancelq.harness.embedded_redis import RedisServer
from cancelq.keys import Keys
from cancelq.outcomes import Outcome, Status
from cancelq.worker.pods import unacked_total
from tests.support import Stack, scan_redis, suite_stack

ACCOUNTS = {
    # alias: (api key, secret, uid, rate_limit_per_s)
    "load": ("LOADKEY0000000001", "load-secret-7c21e9f04b", 2001, 5000),
    "slow": ("SLOWKEY0000000002", "slow-secret-3a88d1c62e", 2002, 20),
    # three keys of a real 20/s budget (the takeover burst)
    "desk1": ("DESKKEY0000000011", "desk1-secret-5d0b7f1e93", 2011, 20),
    "desk2": ("DESKKEY0000000012", "desk2-secret-8e4c2a6b17", 2012, 20),
    "desk3": ("DESKKEY0000000013", "desk3-secret-1f9d3c7a42", 2013, 20),
}
SECRETS = [secret for _, secret, _, _ in ACCOUNTS.values()]
#: The simulator keeps limiting (and sending X-Bapi-Limit headers, which the worker obeys) but
#: at limits two cores cannot reach. ``--no-rate-limits`` would still advertise Bybit's 10/s.
HIGH_LIMITS = (
    "--rate-limit",
    "order/cancel=100000",
    "--rate-limit",
    "order/cancel-batch=100000",
    "--ip-limit",
    "10000000",
)
FINAL_OK = {Status.CANCELLED, Status.ALREADY_GONE}


def fault_accounts() -> list[AccountSpec]:
    return [
        AccountSpec(alias, key, uid, secret, rate_limit_per_s=rate)
        for alias, (key, secret, uid, rate) in ACCOUNTS.items()
    ]


@contextlib.contextmanager
def fault_stack(
    workdir: Path,
    *,
    redis_server: RedisServer | None = None,
    sim_args: Sequence[str] = HIGH_LIMITS,
    extra_secrets: Sequence[str] = (),
) -> Iterator[Stack]:
    """A private Redis (or ``redis_server``), the simulator, no workers yet; all stopped after."""
    with suite_stack(
        workdir,
        fault_accounts(),
        redis_server=redis_server or RedisServer(appendonly=True),
        sim_args=sim_args,
        extra_secrets=extra_secrets,
        stop_timeout_s=15,  # SIGKILL after that
    ) as stack:
        yield stack


def place(stack: Stack, account: str, prefix: str, n: int, category: str = "linear") -> list[str]:
    """``n`` open orders with orderLinkIds ``<prefix>-<i>``; returns the link ids."""
    links = [f"{prefix}-{i}" for i in range(n)]
    for start in range(0, n, 500):
        rows = stack.sim.admin.place_orders(
            [{"orderLinkId": link} for link in links[start : start + 500]],
            account=account,
            category=category,
            symbol="BTCUSDT",
            price="100",
            qty="1",
        )
        assert all("orderId" in row for row in rows), rows[:3]
    return links


def cancels(account: str, links: Sequence[str], category: str = "linear") -> list[dict[str, str]]:
    return [
        {"account": account, "category": category, "symbol": "BTCUSDT", "orderLinkId": link}
        for link in links
    ]


def wait_final(stack: Stack, ids: Sequence[str], timeout_s: float) -> dict[str, Outcome]:
    """Every outcome there is after waiting (at most ``timeout_s``) for all of them."""
    producer = stack.producer
    deadline = time.monotonic() + timeout_s
    found: dict[str, Outcome] = {}
    while True:
        missing = [rid for rid in ids if rid not in found]
        for start in range(0, len(missing), 1000):
            found.update(producer.outcomes(missing[start : start + 1000]))
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def drained_leftovers(stack: Stack, timeout_s: float = 25.0) -> dict[str, int]:
    """Leftovers once they drain: an ack lost with a broker connection leaves a finished
    message in its process's unacked hash; that process hands it back at its next full sweep
    (every 10 s, once the record is 5 s old: ``worker/takeover.py``) and it is answered as a
    no-op, so "stuck" means still there after that."""
    deadline = time.monotonic() + timeout_s
    found = leftovers(stack)
    while any(found.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        found = leftovers(stack)
    return found


def leftovers(stack: Stack) -> dict[str, int]:
    """What still waits anywhere: the queue, the workers' unacked hashes, parked lanes."""
    r = stack.redis
    lanes = sum(r.zcard(f"cancelq:lane:{name}") for name in r.zrange("cancelq:lanes:ready", 0, -1))
    return {"queue": r.llen("cancelq"), "unacked": unacked_total(r, Keys()), "parked": lanes}


def exchange_requests(stack: Stack, account: str) -> Counter[str]:
    """Requests (any reply, batch items each) the simulator received per orderLinkId."""
    seen: Counter[str] = Counter()
    for record in stack.sim.admin.records(api_key=ACCOUNTS[account][0]):
        body = record.get("body") or {}
        items = body.get("request", [body]) if isinstance(body, dict) else []
        for item in items:
            if isinstance(item, dict) and item.get("orderLinkId"):
                seen[item["orderLinkId"]] += 1
    return seen


def exchange_counts(stack: Stack, account: str) -> Counter[str]:
    """Cancels (batch items each) the simulator saw per orderLinkId for ``account``'s key."""
    counts = stack.sim.admin.cancel_counts(api_key=ACCOUNTS[account][0])
    return Counter(counts.get("orderLinkId", {}))


@dataclass(frozen=True)
class Tally:
    name: str
    enqueued: int
    final: int
    statuses: Counter[str]
    per_identity: Counter[int]  # how many identities the exchange saw 0, 1, 2 ... times
    leftovers: dict[str, int]

    def print(self) -> None:
        print(
            f"\n[{self.name}] enqueued={self.enqueued} final={self.final} "
            f"statuses={dict(self.statuses)} exchange-cancels-per-identity="
            f"{dict(sorted(self.per_identity.items()))} leftovers={self.leftovers}"
        )

    @property
    def max_repeats(self) -> int:
        return max((n for n, k in self.per_identity.items() if k), default=0)


def tally(
    stack: Stack,
    name: str,
    ids: Sequence[str],
    outcomes: dict[str, Outcome],
    *,
    account: str,
    links: Sequence[str],
) -> Tally:
    seen = exchange_counts(stack, account)
    result = Tally(
        name=name,
        enqueued=len(ids),
        final=sum(1 for rid in ids if rid in outcomes),
        statuses=Counter(o.status.value for o in outcomes.values()),
        per_identity=Counter(seen.get(link, 0) for link in set(links)),
        leftovers=drained_leftovers(stack),
    )
    result.print()
    failed = [o.orderLinkId for o in outcomes.values() if o.status.value == "failed"]
    if failed:
        attempts = Counter(o.attempts for o in outcomes.values() if o.status.value == "failed")
        print(
            f"{name}: failed attempts {dict(attempts)}; exchange requests carrying them: "
            f"{dict(Counter(exchange_requests(stack, account).get(link, 0) for link in failed))}"
        )
    reasons = Counter(o.reason for o in outcomes.values() if o.reason)
    if reasons:
        print(f"{name}: reasons {dict(reasons.most_common(5))}")
    missing = [rid for rid in ids if rid not in outcomes]
    if missing:
        print(f"{name}: no outcome for {missing[:20]}")
    if result.leftovers["unacked"]:
        print(f"{name}: unacked records left {unacked_records(stack)}")
    return result


def unacked_records(stack: Stack) -> list[tuple[str, str, str, float]]:
    """(pod, task, task id, seconds since taken) of every unacked record left."""
    r = stack.redis
    keys = Keys()
    found = []
    for pod in r.zrange(keys.pods(), 0, -1):
        taken = dict(r.zrange(keys.pod_unacked_index(pod), 0, -1, withscores=True))
        for tag, entry in r.hgetall(keys.pod_unacked(pod)).items():
            headers = json.loads(entry)[0].get("headers", {})
            age = time.time() - taken.get(tag, 0.0)
            found.append((pod, str(headers.get("task")), str(headers.get("id")), round(age, 1)))
    return found


def assert_none_lost_none_stuck(result: Tally) -> None:
    assert result.final == result.enqueued, f"{result.enqueued - result.final} without outcome"
    assert result.leftovers == {"queue": 0, "unacked": 0, "parked": 0}


def assert_no_secrets(stack: Stack, secrets: Sequence[str]) -> int:
    """No secret in any Redis key or value, any worker log; returns how much was scanned."""
    haystacks = [f"{key}\n{value}" for key, value in scan_redis(stack.redis)]
    haystacks.append(stack.logs())
    for secret in secrets:
        for line in secret.strip().splitlines():
            if len(line) >= 8:
                assert not any(line in hay for hay in haystacks), "a secret leaked"
    return len(haystacks)


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a prefork pool's), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found
