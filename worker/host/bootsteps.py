"""The worker bootstep: Celery starts and stops the observer and the lane dispatcher with the
worker."""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from cancelq.worker.observability import Observer
from cancelq.worker.ratelimit.dispatcher import Dispatcher


def observer_step(observer: Observer, dispatcher: Dispatcher) -> type[bootsteps.StartStopStep]:
    """A worker bootstep bound to the observer and the lane dispatcher (Celery instantiates
    steps itself, hence a class made here)."""

    class ObserverStep(bootsteps.StartStopStep):  # type: ignore[misc]
        def start(self, _worker: Any) -> None:
            observer.start()
            dispatcher.start()

        def stop(self, _worker: Any) -> None:
            dispatcher.stop()
            observer.stop()

    return ObserverStep
