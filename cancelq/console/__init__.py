"""The operator console's reader: what ``cancelq top`` shows, read from Redis with read-only
commands (``snapshot``), the lanes "in trouble" first (``order``), what workers hold
(``inflight``). Rendering is the shell's (``cancelq/cli/top.py``)."""
