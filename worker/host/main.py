"""``cancelq worker``: build everything once from the settings and run a Celery worker."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery
from celery.signals import worker_ready, worker_shutting_down

from cancelq.eviction import check_eviction_policy
from cancelq.logs import configure_logging
from cancelq.outcomes import Status
from cancelq.settings import Settings
from cancelq.worker.dead_letters import DeadLetters
from cancelq.worker.decisions import NETWORK, RETRY_REASONS
from cancelq.worker.host.app import create_app
from cancelq.worker.host.bootsteps import observer_step
from cancelq.worker.host.celery_consumer import install as install_dead_letters
from cancelq.worker.host.kombu_channel import held_delivery_tags
from cancelq.worker.host.shutdown import install_grace_deadline
from cancelq.worker.host.tasks import PipelineProvider, register_tasks
from cancelq.worker.killswitch import CATEGORIES
from cancelq.worker.metrics import Metrics
from cancelq.worker.observability import Observer
from cancelq.worker.pipeline import CancelPipeline
from cancelq.worker.pods import PodBeat, new_pod_id
from cancelq.worker.ratelimit.dispatcher import Dispatcher
from cancelq.worker.rescue import Rescuer
from cancelq.worker.runtime import build_runtime
from cancelq.worker.takeover import Takeover

log = logging.getLogger(__name__)

#: Measured (README, "Choosing the pool"): threads beat prefork for an I/O-bound cancel.
DEFAULT_POOL = ("--pool", "threads", "--concurrency", "8")


def build_worker(settings: Settings) -> tuple[Celery, PipelineProvider]:
    metrics = Metrics()
    pod_id = new_pod_id()
    runtime = build_runtime(settings, metrics, pod_id=pod_id)  # fail fast on a bad accounts file
    metrics.prime(
        runtime.accounts,
        statuses=[s.value for s in Status],
        retry_reasons=[*RETRY_REASONS.values(), NETWORK, "not_found_recheck"],
        categories=CATEGORIES,
        endpoints=("cancel", "cancel_batch", "cancel_all"),
    )
    configure_logging(
        settings.log_format,
        settings.log_level,
        [*runtime.secrets, *settings.redis_secrets()],
    )
    check_eviction_policy(runtime.redis, allow=settings.allow_eviction, service="worker")
    app = create_app(settings, pod_id)
    provider = PipelineProvider(
        lambda: CancelPipeline(build_runtime(settings, metrics, pod_id=pod_id)),
        initial=CancelPipeline(runtime),
    )
    register_tasks(app, provider)
    install_dead_letters(
        DeadLetters(
            runtime.redis,
            runtime.keys,
            metrics,
            [*runtime.secrets, *settings.redis_secrets()],
            reject=lambda request_id, why: provider().reject({}, request_id, why),
            pod=pod_id,
        )
    )
    install_grace_deadline(settings.shutdown_grace_s)
    observer = Observer(
        metrics,
        runtime.redis,
        runtime.keys,
        runtime.lanes,
        Rescuer(runtime.redis, runtime.keys, after_s=settings.outbox_rescue_after_s),
        host=settings.metrics_host,
        port=settings.metrics_port,
        health_file=settings.health_file,
        interval_s=settings.heartbeat_s,
        accounts=runtime.accounts,
        pod_id=pod_id,
        pod_ttl_s=settings.pod_ttl_s,
    )
    dispatcher = Dispatcher(
        runtime.lanes,
        settings.queue,
        paused=runtime.ban.banned,
        wake_channel=runtime.keys.lanes_wake(),
        on_store_error=metrics.store_error,
    )
    takeover = Takeover(
        runtime.redis,
        runtime.keys,
        me=pod_id,
        queues=(settings.queue, settings.kill_queue),
        pod_ttl_s=settings.pod_ttl_s,
        visibility_timeout_s=settings.visibility_timeout_s,
        held=held_delivery_tags,
    )
    pod = PodBeat(
        runtime.redis,
        runtime.keys,
        pod_id,
        every_s=settings.pod_beat_s,
        ttl_s=settings.pod_ttl_s,
        after_beat=takeover.sweep,
        on_store_error=metrics.store_error,
    )
    log.info("worker process %s", pod_id)
    app.steps["worker"].add(observer_step(observer, dispatcher, pod))
    worker_ready.connect(lambda **_: observer.mark_ready(), weak=False)
    worker_shutting_down.connect(lambda **_: runtime.stopping.set(), weak=False)
    return app, provider


def chosen_pool(celery_args: Sequence[str]) -> str:
    """The pool a ``celery worker`` command line ends up with (the last option wins)."""
    pool = DEFAULT_POOL[1]
    args = list(celery_args)
    for i, arg in enumerate(args):
        if arg in ("--pool", "-P") and i + 1 < len(args):
            pool = args[i + 1]
        elif arg.startswith("--pool="):
            pool = arg.split("=", 1)[1]
    return pool


def run_worker(settings: Settings, celery_args: Sequence[str]) -> None:
    app, _ = build_worker(settings)
    pool = chosen_pool(celery_args)
    if pool not in ("threads", "solo"):
        log.warning(
            "pool %s: tasks run in child processes whose metrics this pod's /metrics does not "
            "show (cancelq's metrics are exact under the threads pool, its default)",
            pool,
        )
    argv = [
        "worker",
        "--queues",
        f"{settings.kill_queue},{settings.queue}",  # kills are not queued behind cancels
        *DEFAULT_POOL,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        settings.log_level,
        *celery_args,
    ]
    app.worker_main(argv)
