"""The Celery host: everything that knows Celery or kombu, kept behind this one seam.

* :mod:`.app`: the Celery app and its configuration;
* :mod:`.tasks`: the task shells around the pipeline (``cancelq.cancel_order``,
  ``cancelq.submit``, ``cancelq.kill``);
* :mod:`.kombu_channel`, :mod:`.celery_consumer`: the two framework overrides that turn every
  message Celery or kombu would lose into a dead letter (the versions are pinned in
  ``pyproject.toml``);
* :mod:`.bootsteps`: the worker bootstep that runs the observer and the lane dispatcher;
* :mod:`.shutdown`: the hard deadline after SIGTERM;
* :mod:`.main`: ``cancelq worker``, which builds all of it once from the settings.

The pipeline (``cancelq.worker``) never imports this package; the checks the overrides apply
are pure functions there (``worker/envelopes.py``).
"""
