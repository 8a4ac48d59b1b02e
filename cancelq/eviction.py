"""The eviction guard: a Redis that may evict keys drops queued cancels, dedup claims and
outcomes silently when it reaches ``maxmemory``; with ``noeviction`` it refuses writes instead
(``OOM``), which cancelq retries and counts (``cancelq_store_errors_total{kind="oom"}``).

Services check the policy when they start. A managed Redis or an ACL user may refuse
``CONFIG GET``: then the check says it could not look, and the service goes on. The check is
of that moment: a ``CONFIG SET`` later is not seen.
"""

from __future__ import annotations

import logging

import redis

from cancelq.errors import ConfigError
from cancelq.replies import as_text

log = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"
OVERRIDE = "CANCELQ_ALLOW_EVICTION"


def eviction_policy(client: redis.Redis) -> str | None:
    """The server's ``maxmemory-policy``; None when it may not be read (CONFIG refused by the
    ACL, renamed or disabled by a managed service, or Redis unreachable), logged as such."""
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.RedisError as exc:
        log.warning(
            "could not check Redis's maxmemory-policy (%s: CONFIG GET refused or Redis "
            "unreachable): make sure it is %s, or queued cancels, claims and outcomes can be "
            "evicted silently",
            type(exc).__name__,
            SAFE_POLICY,
        )
        return None
    values = {as_text(k): as_text(v) for k, v in dict(reply).items()}
    return values.get("maxmemory-policy")


def check_eviction_policy(client: redis.Redis, *, allow: bool, service: str) -> str | None:
    """Refuse (ConfigError) a Redis whose policy may evict keys, unless ``allow`` (the
    operator's ``CANCELQ_ALLOW_EVICTION``), which is logged loudly. Returns the policy read."""
    policy = eviction_policy(client)
    if policy is None or policy == SAFE_POLICY:
        return policy
    if not allow:
        raise ConfigError(
            f"Redis maxmemory-policy is {policy}: at maxmemory Redis would evict queued "
            f"cancels, dedup claims and outcomes silently. Set maxmemory-policy {SAFE_POLICY} "
            f"(cancelq retries the OOM refusals and alerts on them), or set {OVERRIDE}=1 to "
            f"run the {service} anyway, knowing cancels can be lost"
        )
    log.error(
        "%s=1: the %s runs on a Redis with maxmemory-policy %s; at maxmemory queued cancels, "
        "dedup claims and outcomes can be evicted silently: cancelq's no-loss guarantee does "
        "not hold",
        OVERRIDE,
        service,
        policy,
    )
    return policy
