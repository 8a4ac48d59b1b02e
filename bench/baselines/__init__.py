"""Baselines: tiny Celery apps started with ``celery -A bench.baselines.<name> worker``.

Each registers the public task name (``cancelq.cancel_order``) on the same queue, so the very
same producer feeds it, and records an outcome under the same key shape cancelq uses.
"""
