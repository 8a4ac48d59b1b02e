"""Confirmer-only knobs (``CANCELQ_CONFIRMER_*``), every default with its unit.

The shared settings (``cancelq.settings.Settings``) give Redis, the accounts file, the WS URL,
the REST base, ``confirm_deadline_s`` and ``confirmer_metrics_port``; these are the confirmer's
own. Built once by :func:`load_confirmer_config` and passed explicitly.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cancelq.settings import build_settings


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ConfirmerConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CANCELQ_CONFIRMER_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    replica_id: str = Field(default_factory=_default_replica_id, min_length=1, max_length=128)
    """This replica's name in the account leases (default: host-pid)."""
    lease_ttl_s: float = Field(10.0, gt=0)
    """An account lease not renewed for this long is taken over by another replica (seconds)."""
    lease_check_s: float = Field(2.0, gt=0)
    """How often leases are renewed and free ones tried (seconds); keep it below lease_ttl/3."""
    sweep_interval_s: float = Field(0.1, gt=0)
    """How often pending confirmations are examined (seconds)."""
    sweep_batch: int = Field(5000, gt=0)
    """Pending entries examined per sweep, earliest deadline first."""
    grace_s: float = Field(2.0, ge=0)
    """A pending cancel with no stream news this long after its accept is checked by REST."""
    fallback_retry_s: float = Field(1.0, gt=0)
    """Time between two REST checks of the same pending cancel (seconds)."""
    fallback_per_s: float | None = Field(None, gt=0)
    """REST fallback budget per account (requests/s); default: the account's rate_limit_per_s."""
    final_ttl_s: int = Field(300, gt=0)
    """How long an order's final state, seen on the stream, is remembered (seconds)."""
    ping_interval_s: float = Field(20.0, gt=0)
    """``{"op":"ping"}`` period (Bybit asks for 20 s)."""
    pong_timeout_s: float = Field(10.0, gt=0)
    """No message at all for ping_interval + this long: the stream is dead, reconnect."""
    auth_timeout_s: float = Field(5.0, gt=0)
    """Wait for the auth and subscribe replies (seconds)."""
    auth_expires_s: float = Field(10.0, gt=0)
    """``expires`` of the auth message, ahead of now (seconds)."""
    backoff_base_s: float = Field(0.2, gt=0)
    backoff_max_s: float = Field(10.0, gt=0)
    """Reconnect backoff: exponential with full jitter between these bounds (seconds)."""


def load_confirmer_config(**overrides: Any) -> ConfirmerConfig:
    return build_settings(ConfirmerConfig, **overrides)
