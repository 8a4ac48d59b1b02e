"""Per-API-key rate limiting shared by every pod: budgets, lanes of parked cancels, dispatch.

The algorithm (a sliding-window log per lane on the Redis clock, fair dispatch, batching) lives
in the two Lua scripts; :mod:`worker.ratelimit.lanes` is their typed Python face and
:mod:`worker.ratelimit.dispatcher` the loop every worker runs.
"""
