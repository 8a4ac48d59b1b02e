"""The Celery app, configured for this job. Each setting says why it is what it is."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

from celery import Celery

from cancelq.contract import TASK_NAME
from cancelq.errors import ConfigError
from cancelq.keys import Keys
from cancelq.redis_client import broker_ssl, broker_transport_options
from cancelq.settings import Settings
from cancelq.worker.host.kombu_channel import SENTINEL_TRANSPORT, claim_sentinel_scheme


def create_app(settings: Settings, pod_id: str | None = None) -> Celery:
    """The worker's Celery app; ``pod_id`` names the worker process (``worker/pods.py``),
    whose unacked messages kombu then keeps apart from every other process's."""
    if settings.redis_url is None:
        raise ConfigError("CANCELQ_REDIS_URL is required")
    app = Celery("cancelq", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        # JSON only: a pickle (or any other) message is refused, never executed.
        task_serializer="json",
        accept_content=["json"],
        # Outcomes are ours (readable by requestId, with a TTL); no Celery result backend.
        result_backend=None,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        task_routes={TASK_NAME: {"queue": settings.queue}},
        # Late acks: a message is acknowledged only after its outcome is recorded (or it was
        # rescheduled), so a worker killed mid-request leaves it unacked for re-delivery.
        task_acks_late=True,
        # A prefork child killed mid-task: requeue its message instead of acking it as failed.
        task_reject_on_worker_lost=True,
        # ... as soon as the loss is seen: Celery waits this long for a dead child's result
        # first (10 s by default); cancelq keeps no results.
        worker_lost_wait=1.0,
        # A failure must not be acked as done. Note: Celery then rejects it WITHOUT requeue,
        # which on Redis deletes it, so the tasks themselves must never raise unexpectedly
        # (worker/host/tasks.py turns store errors into a reschedule or a requeueing Reject).
        task_acks_on_failure_or_timeout=False,
        # Prefetch one message per execution slot: a pod does not hoard cancels other pods
        # could send now (retries with a countdown do not count against it).
        worker_prefetch_multiplier=1,
        broker_transport_options={
            # A message a dead worker held comes back after this long. Far above any countdown
            # cancelq schedules (<= backoff_max_s) and any request's HTTP timeouts, so a
            # waiting retry is never re-delivered while its worker is alive.
            "visibility_timeout": settings.visibility_timeout_s,
            # kombu sweeps for such messages only every interval x throttle seconds (10 x 10 by
            # default): a killed pod's cancels would wait ~100 s past the visibility timeout.
            # Sweep every tenth of it (1..30 s), every time: one ZRANGE per sweep per worker.
            "unacked_restore_interval": min(max(settings.visibility_timeout_s // 10, 1), 30),
            "unacked_restore_throttle": 1,
            # A broker that vanishes without closing the connection (a frozen or cut-off
            # master before a failover, celery/celery#6348): a command gives up after
            # socket_timeout, a BRPOP overdue by its timeout (1 s) + health_check_interval is
            # dropped (kombu checks every health_check_interval), and the next connection asks
            # the Sentinels for the master. kombu's own calls on the event loop (restores,
            # acks) block it for socket_timeout each: 3 s, not 10, so the loop gets to that
            # check. One PING per idle connection every 2 s is all it costs.
            **SOCKET_OPTIONS,
            "retry_on_timeout": True,
            "health_check_interval": 2,
            **_own_unacked(Keys(prefix=settings.key_prefix, queue=settings.queue), pod_id),
            **_sentinel(settings),
        },
        # kombu's Redis (or Sentinel) transport with a channel that turns unreadable queue
        # items (garbage pushed with plain Redis commands, non-envelopes, oversized items) into
        # dead letters; stock kombu raises in the event loop and the worker exits with the item
        # gone. Its Sentinel variant also reconnects when the master is demoted under a BRPOP.
        broker_transport=_transport(settings),
        # Celery's consumer with hooks that record every message it would drop (decode errors,
        # unknown tasks, pickle and other refused content types) as a dead letter.
        worker_consumer="cancelq.worker.host.celery_consumer:Consumer",
        # Reconnect to the broker forever, from the first connection on.
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # After a lost broker connection, unacked messages are re-delivered anyway: cancel the
        # running copies instead of finishing them twice.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # SIGTERM: stop consuming, give running requests this long, then hand the rest back.
        worker_soft_shutdown_timeout=settings.shutdown_grace_s,
        worker_enable_soft_shutdown_on_idle=True,
        # No events, no remote-control chatter: nothing listens to them, they cost Redis work.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=False,
        # cancelq configures logging itself (JSON when asked, secrets redacted).
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    app.conf.update(_tls(settings))
    return app


#: The broker's socket options, also those of its connections to the Sentinels (a Redis
#: command answers in well under a millisecond; 3 s is a hung server, not a slow one).
SOCKET_OPTIONS: dict[str, Any] = {
    "socket_keepalive": True,
    "socket_connect_timeout": 5,
    "socket_timeout": 3,
}


def _transport(settings: Settings) -> str:
    if settings.redis_sentinel() is None:
        return "cancelq.worker.host.kombu_channel:Transport"
    claim_sentinel_scheme()  # kombu's failover between the ';'-parts keeps this transport
    return SENTINEL_TRANSPORT


def _sentinel(settings: Settings) -> dict[str, Any]:
    """kombu's Sentinel options (the master's name, the Sentinels' password and TLS)."""
    sentinel = settings.redis_sentinel()
    if sentinel is None:
        return {}
    return broker_transport_options(sentinel, **SOCKET_OPTIONS)


def _own_unacked(keys: Keys, pod_id: str | None) -> dict[str, str]:
    """kombu's unacked bookkeeping, one set per worker process: what a process holds is then
    known, and handed back as soon as the process dies (``worker/takeover.py``) instead of
    after the visibility timeout. Without a pod id, kombu's shared defaults."""
    if pod_id is None:
        return {}
    return {
        "unacked_key": keys.pod_unacked(pod_id),
        "unacked_index_key": keys.pod_unacked_index(pod_id),
        "unacked_mutex_key": keys.pod_unacked_mutex(pod_id),
    }


def _tls(settings: Settings) -> dict[str, Any]:
    """``rediss://`` verifies the server certificate: kombu only turns TLS on when the URL has
    ``ssl_*`` parameters (e.g. ``?ssl_ca_certs=/etc/ca.pem``), so a bare ``rediss://`` gets
    ``CERT_REQUIRED`` against the system CAs here instead of a plain-text connection. With
    Sentinel, ``CANCELQ_REDIS_SENTINEL_TLS`` turns it on for the master's connections."""
    sentinel = settings.redis_sentinel()
    if sentinel is not None:
        use_ssl = broker_ssl(sentinel)
        return {} if use_ssl is None else {"broker_use_ssl": use_ssl}
    assert settings.redis_url is not None
    parts = urlsplit(settings.redis_url)
    if parts.scheme != "rediss" or "ssl_" in parts.query:
        return {}
    return {"broker_use_ssl": {"ssl_cert_reqs": ssl.CERT_REQUIRED}}
