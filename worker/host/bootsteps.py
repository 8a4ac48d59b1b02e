"""The worker bootstep: Celery starts the pod heartbeat, the observer and the lane dispatcher
with the worker, and stops the last two with it (the heartbeat ends with the process)."""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from cancelq.worker.observability import Observer
from cancelq.worker.pods import PodBeat
from cancelq.worker.ratelimit.dispatcher import Dispatcher


def observer_step(
    observer: Observer, dispatcher: Dispatcher, pod: PodBeat
) -> type[bootsteps.StartStopStep]:
    """A worker bootstep bound to the observer and the lane dispatcher (Celery instantiates
    steps itself, hence a class made here)."""

    class ObserverStep(bootsteps.StartStopStep):  # type: ignore[misc]
        def start(self, _worker: Any) -> None:
            pod.start()
            observer.start()
            dispatcher.start()

        def stop(self, _worker: Any) -> None:
            dispatcher.stop()
            observer.stop()

    return ObserverStep
