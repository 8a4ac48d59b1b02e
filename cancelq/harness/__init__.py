"""The developer harness: a whole cancelq stack on one machine, for the demo, tests and
benchmarks. Shipped in the wheel (``cancelq demo`` runs on it); it starts the runtime as
processes and never imports ``tests/`` or ``bench/``.

* :mod:`.stack`: the one stack builder (Redis, simulator, workers, confirmers);
* :mod:`.accounts`: the one accounts-file writer;
* :mod:`.embedded_redis`: a private ``redis-server`` on a free port;
* :mod:`.processes`: worker and confirmer processes, and how every process ends;
* :mod:`.tls`: a throwaway CA and server certificate for local TLS.
"""
