"""The app shell: the ``cancelq`` command line (:mod:`.app`, typer) and what only it runs.

* :mod:`.entry`: the console script; imports nothing heavy before it knows the command;
* :mod:`.demo`: ``cancelq demo``, the whole product on one machine (on the harness);
* :mod:`.loadgen`: ``cancelq loadgen``, a steady load on the bundled simulator;
* :mod:`.checkout`: finds the checkout-only tooling (``cancelq bench``).

This package's ``__init__`` stays empty: the console script imports :mod:`.entry` through it,
before :mod:`.entry` can tell a missing extra (typer, rich) from a bug.
"""
