"""Intake in one round trip: a request's dedup claim and, in the same script, its admission.

``claim.lua`` and ``admit.lua`` are composed unchanged but for their one ``TIME`` call, which
they share (each becomes a local function of one script; the glue splits KEYS and ARGV between
them, and hands admit the claim's attempts, so it does not read the claim again). The admission
runs only when this request owns the cancel and no kill switch has run on its lane; otherwise
the caller decides with the claim alone (a kill marker needs the request's enqueue time, which
Python compares). This saves a Redis round trip per cancel on the common path, where a round
trip is the largest cost
(``python -m bench.profile``: socket sends were a third of the worker's samples).

A cancel the admission parks ends its delivery there (the lane holds it now): when the caller
says the delivery carries only this request (``worker/delivery.py``), the script also deletes
the delivery's unacked record, so the acknowledgement after the task sends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import redis

from cancelq.errors import StoreError
from cancelq.worker.claims import Claim, parse_claim
from cancelq.worker.ratelimit.lanes import Admission, parse_admission

CLAIM_KEYS, CLAIM_ARGS = 3, 10
ADMIT_KEYS, ADMIT_ARGS = 8, 13

_GLUE = f"""
local function slice(t, first, last)
  local out = {{}}
  for i = first, last do out[#out + 1] = t[i] end
  return out
end
local claimed = claim(slice(KEYS, 1, {CLAIM_KEYS}), slice(ARGV, 1, {CLAIM_ARGS}))
if claimed[1] ~= 'own' or #claimed[5] > 0 then
  return {{claimed}}
end
local admit_argv = slice(ARGV, {CLAIM_ARGS + 1}, {CLAIM_ARGS + ADMIT_ARGS})
admit_argv[#admit_argv + 1] = tostring(claimed[3])  -- owned: its attempts, not read again
local admitted = admit(slice(KEYS, {CLAIM_KEYS + 1}, {CLAIM_KEYS + ADMIT_KEYS}), admit_argv)
-- parked: the lane holds it, and a delivery of this request alone has ended (its unacked
-- record: claim's ARGV[6] hash and ARGV[7] tag, the index named after the admit's ARGV)
local index = ARGV[{CLAIM_ARGS + ADMIT_ARGS + 1}]
if admitted[1] == 0 and index ~= '' and ARGV[7] ~= '' then
  redis.call('HDEL', ARGV[6], ARGV[7])
  redis.call('ZREM', index, ARGV[7])
end
return {{claimed, admitted}}
"""


def _source(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


#: Both scripts read the Redis clock; composed, they share one reading (a script runs as one
#: step, so the clock of its first call is the clock of the whole call).
_ONE_CLOCK = """
local clock_of_this_call
local function redis_time()
  if not clock_of_this_call then clock_of_this_call = redis.call('TIME') end
  return clock_of_this_call
end
"""
_TIME_CALL = "redis.call('TIME')"


def _sharing_the_clock(source: str, name: str) -> str:
    if source.count(_TIME_CALL) != 1:
        raise ValueError(f"intake: {name} reads the clock other than once; update the glue")
    return source.replace(_TIME_CALL, "redis_time()")


def compose() -> str:
    """The intake script: both scripts as local functions (their KEYS/ARGV are parameters),
    one reading of the Redis clock between them."""
    claim = _sharing_the_clock(_source("cancelq.worker", "claim.lua"), "claim.lua")
    admit = _sharing_the_clock(_source("cancelq.worker.ratelimit", "admit.lua"), "admit.lua")
    return (
        f"{_ONE_CLOCK}local function claim(KEYS, ARGV)\n{claim}\nend\n"
        f"local function admit(KEYS, ARGV)\n{admit}\nend\n{_GLUE}"
    )


@dataclass(frozen=True)
class IntakeResult:
    claim: Claim
    admission: Admission | None  # None: not admitted in this call (not owned, or a kill ran)


class Intake:
    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(compose())

    def run(
        self,
        claim_call: tuple[Sequence[str], Sequence[str | int]],
        admit_call: tuple[Sequence[str], Sequence[str | int]],
        record_index: str = "",
    ) -> IntakeResult:
        """Run the script with the KEYS/ARGV the claim store and the lanes built.
        ``record_index``: the unacked index of this process when the delivery carries this
        request alone: a parked cancel's record (the claim's unacked hash and delivery tag)
        is then deleted in the same step (the caller marks it, ``worker/delivery.py``)."""
        (ckeys, cargs), (akeys, aargs) = claim_call, admit_call
        if (len(ckeys), len(cargs), len(akeys), len(aargs)) != (
            CLAIM_KEYS,
            CLAIM_ARGS,
            ADMIT_KEYS,
            ADMIT_ARGS,
        ):
            raise ValueError("intake: the claim or admit call changed shape; update the glue")
        try:
            raw = self._script(keys=[*ckeys, *akeys], args=[*cargs, *aargs, record_index])
        except redis.RedisError as exc:
            raise StoreError(f"taking in a cancel failed: {exc}") from exc
        admission = parse_admission(raw[1]) if len(raw) > 1 else None
        return IntakeResult(parse_claim(raw[0]), admission)
