"""What cancelq relies on inside kombu and Celery, checked against the installed versions.

cancelq overrides or depends on private parts of both frameworks (listed below). The range in
pyproject.toml (``celery>=5.7,<5.8``, ``kombu>=5.7,<5.8``) is what the suite runs against; an
upgrade that changes any of these fails here, loudly and by name, before it changes behaviour
in production:

* ``kombu.transport.redis.Channel._brpop_read`` is copied into cancelq's channel (an unreadable
  queue item becomes a dead letter instead of ending the worker). The copy must follow
  upstream: the upstream body is fingerprinted per kombu version.
* the channel attributes that copy touches (``client.parse_response``, ``connection_errors``,
  ``sep``, ``_queue_cycle``, ``connection._deliver``, ``_in_poll``, ``_flush_brpop_reauth``,
  ``Message``);
* transport options: ``unacked_restore_interval`` and ``unacked_restore_throttle`` are read
  only from kombu 5.7 on. Before it kombu ignores them and sweeps for a dead pod's messages
  every 100 s, which is why the range starts at 5.7;
* kombu's unacked bookkeeping (hash ``unacked`` of delivery tag -> [message, exchange,
  routing key], index ``unacked_index``), which the outbox rescue and the queue gauges read;
* Celery's consumer hooks cancelq overrides (their names, signatures and call sites), and the
  Celery settings cancelq sets;
* kombu's Sentinel channel, which cancelq's checked pops are mixed into: it must stay a
  subclass of the plain channel that does not override ``_brpop_read`` itself, build its pool
  in ``_sentinel_managed_pool`` from the ``master_name`` and ``sentinel_kwargs`` options, and
  pick its TLS connection class from ``connection_class_ssl`` (``broker_use_ssl``).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
from celery.app.defaults import NAMESPACES, flatten
from celery.worker.consumer import consumer as celery_consumer
from celery.worker.consumer import tasks as celery_tasks
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual as kombu_virtual
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from cancelq.keys import Keys
from cancelq.settings import Settings
from cancelq.worker.host.app import create_app
from cancelq.worker.host.celery_consumer import Consumer
from cancelq.worker.host.kombu_channel import (
    Channel,
    CheckedPops,
    QoS,
    SentinelChannel,
    SentinelTransport,
    Transport,
)

pytestmark = pytest.mark.timeout(30)

#: ast fingerprint of upstream ``Channel._brpop_read``, per kombu version the copy was checked
#: against. A new kombu version: read its ``_brpop_read``, bring the copy in line, add a line.
BRPOP_READ_CHECKED = {"5.7.0": "e72b790a1afa840f"}


def fingerprint(function: Callable[..., Any]) -> str:
    """The function's syntax tree, hashed (comments and formatting do not count)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return hashlib.sha256(ast.dump(tree.body[0]).encode()).hexdigest()[:16]


def allowed(distribution: str) -> SpecifierSet:
    """The version range the worker extra allows for ``distribution``."""
    from importlib.metadata import requires

    for line in requires("cancelq") or []:
        requirement = Requirement(line)
        if requirement.name == distribution and "worker" in str(requirement.marker):
            return requirement.specifier
    raise AssertionError(f"{distribution} is not pinned in the worker extra")


@pytest.mark.parametrize("distribution", ["celery", "kombu"])
def test_the_installed_framework_is_in_the_range_this_suite_checks(distribution: str) -> None:
    installed = version(distribution)
    assert installed in allowed(distribution), (distribution, installed)


def test_upstream_brpop_read_is_the_one_cancelq_copied() -> None:
    installed = version("kombu")
    upstream = fingerprint(kombu_redis.Channel._brpop_read)
    assert BRPOP_READ_CHECKED.get(installed) == upstream, (
        f"kombu {installed}: Channel._brpop_read is not the body cancelq's copy follows "
        f"(fingerprint {upstream}). Compare it with cancelq's Channel._brpop_read, update the "
        f"copy, then record the fingerprint. Upstream now:\n"
        + inspect.getsource(kombu_redis.Channel._brpop_read)
    )


def test_the_copy_overrides_the_upstream_method_of_the_same_signature() -> None:
    ours = Channel._brpop_read
    assert ours is not kombu_redis.Channel._brpop_read
    assert inspect.signature(ours).parameters.keys() == (
        inspect.signature(kombu_redis.Channel._brpop_read).parameters.keys()
    )
    assert issubclass(Transport, kombu_redis.Transport)
    assert Transport.Channel is Channel


@pytest.mark.parametrize(
    "attribute",
    [
        "client",
        "connection_errors",
        "sep",
        "_queue_cycle",
        "_in_poll",
        "Message",
        "conn_or_acquire",
    ],
)
def test_the_channel_attributes_the_copy_touches_exist(attribute: str) -> None:
    source = inspect.getsource(kombu_redis.Channel)
    assert attribute in dir(kombu_redis.Channel) or f"self.{attribute} =" in source, attribute


def test_the_reauth_flush_the_copy_calls_exists() -> None:
    assert callable(kombu_redis.Channel._flush_brpop_reauth)
    assert "_flush_brpop_reauth" in inspect.getsource(Channel._brpop_read)


@pytest.mark.parametrize(
    "option",
    [
        "visibility_timeout",
        "unacked_restore_interval",
        "unacked_restore_throttle",
        "health_check_interval",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "retry_on_timeout",
        "unacked_key",
        "unacked_index_key",
        "unacked_mutex_key",
    ],
)
def test_kombu_reads_every_transport_option_cancelq_sets(option: str) -> None:
    assert option in kombu_redis.Channel.from_transport_options


def test_the_sweep_interval_and_throttle_are_what_kombu_schedules_with() -> None:
    register = inspect.getsource(kombu_redis.Transport.register_with_event_loop)
    assert "'unacked_restore_interval'" in register
    assert "maybe_restore_messages" in register
    restore = inspect.getsource(kombu_redis.MultiChannelPoller.maybe_restore_messages)
    assert "interval=channel.unacked_restore_throttle" in restore


def test_every_transport_option_cancelq_sets_is_one_kombu_reads() -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"), pod_id="pod-1")
    assert app.conf.broker_transport_options["unacked_key"] == Keys().pod_unacked("pod-1")
    options = app.conf.broker_transport_options
    assert set(options) <= set(kombu_redis.Channel.from_transport_options), set(options) - set(
        kombu_redis.Channel.from_transport_options
    )


def test_kombus_unacked_bookkeeping_is_what_cancelq_reads() -> None:
    keys = Keys()
    assert kombu_redis.Channel.unacked_key == keys.unacked
    assert kombu_redis.Channel.unacked_index_key == "unacked_index"
    append = inspect.getsource(kombu_redis.QoS.append)
    assert "dumps([message._raw, EX, RK])" in append, append
    assert callable(kombu_redis.QoS.restore_by_tag)


def test_the_unacked_record_cancelq_writes_is_kombus() -> None:
    """``worker/host/kombu_channel.py``'s QoS.append writes kombu's record (index entry, then
    the hash entry of ``[raw message, exchange, routing key]``) in a plain pipeline, then calls
    virtual QoS.append as kombu does: kombu's must still be exactly that."""
    append = inspect.getsource(kombu_redis.QoS.append)
    order = [
        "EX, RK = delivery['exchange'], delivery['routing_key']",
        "zadd_args = [{delivery_tag: time()}]",
        "pipe.zadd(self.unacked_index_key, *zadd_args)",
        ".hset(self.unacked_key, delivery_tag,",
        "dumps([message._raw, EX, RK])",
        "super().append(message, delivery_tag)",
    ]
    positions = [append.find(part) for part in order]
    assert -1 not in positions, append
    assert positions == sorted(positions), append
    assert kombu_redis.QoS.__mro__[1] is kombu_virtual.QoS
    assert list(inspect.signature(kombu_redis.QoS.append).parameters) == [
        "self",
        "message",
        "delivery_tag",
    ]
    assert "self.qos.append(message, message.delivery_tag)" in inspect.getsource(
        kombu_virtual.Channel.basic_consume
    )


def test_kombus_restore_marks_what_the_takeover_marks_and_pushes_at_the_consumer_end() -> None:
    """worker/takeover.py hands messages back as kombu's own restore does."""
    restore = inspect.getsource(kombu_redis.Channel._do_restore_message)
    assert "payload['headers']['redelivered'] = True" in restore
    assert "payload['properties']['delivery_info']['redelivered'] = True" in restore
    assert "(pipe.lpush if leftmost else pipe.rpush)" in restore
    brpop = inspect.getsource(kombu_redis.Channel._brpop_start)
    assert "BRPOP" in brpop  # consumers pop the right end: rpush is "taken next"


HOOKS = {
    "on_decode_error": ["self", "message", "exc"],
    "on_unknown_message": ["self", "body", "message"],
    "on_unknown_task": ["self", "body", "message", "exc"],
    "on_invalid_task": ["self", "body", "message", "exc"],
    "create_task_handler": ["self", "promise"],
}


@pytest.mark.parametrize(("hook", "parameters"), HOOKS.items())
def test_the_consumer_hooks_cancelq_overrides_keep_their_signature(
    hook: str, parameters: list[str]
) -> None:
    upstream = getattr(celery_consumer.Consumer, hook)
    assert list(inspect.signature(upstream).parameters) == parameters
    assert getattr(Consumer, hook) is not upstream


def test_celery_still_calls_the_hooks() -> None:
    handler = inspect.getsource(celery_consumer.Consumer.create_task_handler)
    for hook in ("on_unknown_message", "on_unknown_task", "on_invalid_task"):
        assert f"{hook} = self.{hook}" in handler, hook
        assert f"return {hook}(" in handler, hook
    assert "on_decode_error=c.on_decode_error" in inspect.getsource(celery_tasks)


def test_every_celery_setting_cancelq_sets_exists() -> None:
    known = {key for key, _ in flatten(NAMESPACES)}
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    ours = set(app.conf.changes) - {"deprecated_settings"}  # Celery's own bookkeeping
    assert ours - known == set(), ours - known


def test_the_qos_methods_cancelq_overrides_are_the_ones_kombu_calls() -> None:
    """``worker/host/kombu_channel.py``'s QoS: kombu's ack and reject delete through
    ``_remove_from_indices(delivery_tag, pipe=None)`` (a MULTI pipeline when no pipe is given,
    which Redis refuses at maxmemory) and only call ``execute()`` on what it returns (a
    record the outcome's script deleted returns a stand-in with ``execute`` alone), and the
    channel builds its QoS from ``Channel.QoS``."""
    assert list(inspect.signature(kombu_redis.QoS._remove_from_indices).parameters) == [
        "self",
        "delivery_tag",
        "pipe",
    ]
    for method in (kombu_redis.QoS.ack, kombu_redis.QoS.reject):
        source = inspect.getsource(method)
        assert "self._remove_from_indices(delivery_tag).execute()" in source, method
        assert source.count("_remove_from_indices") == 1, method
    assert "self.QoS(" in inspect.getsource(kombu_virtual.Channel.qos.fget)
    assert issubclass(QoS, kombu_redis.QoS)
    assert Channel.QoS is QoS
    assert list(inspect.signature(kombu_redis.QoS.reject).parameters) == [
        "self",
        "delivery_tag",
        "requeue",
    ]


# -- the Sentinel channel -----------------------------------------------------------------------


def test_kombus_sentinel_channel_inherits_the_brpop_read_cancelq_replaces() -> None:
    assert issubclass(kombu_redis.SentinelChannel, kombu_redis.Channel)
    assert "_brpop_read" not in vars(kombu_redis.SentinelChannel)
    assert SentinelChannel._brpop_read is Channel._brpop_read
    mro = SentinelChannel.__mro__
    assert mro.index(CheckedPops) < mro.index(kombu_redis.SentinelChannel)
    assert issubclass(SentinelTransport, kombu_redis.SentinelTransport)
    assert SentinelTransport.Channel is SentinelChannel
    assert SentinelTransport.default_port == 26379


@pytest.mark.parametrize("option", ["master_name", "sentinel_kwargs"])
def test_kombus_sentinel_channel_reads_the_options_cancelq_sets(option: str) -> None:
    assert option in kombu_redis.SentinelChannel.from_transport_options
    pool = inspect.getsource(kombu_redis.SentinelChannel._sentinel_managed_pool)
    assert f"getattr(self, '{option}'" in pool


def test_kombus_sentinel_channel_asks_every_sentinel_of_the_url_for_the_master() -> None:
    pool = inspect.getsource(kombu_redis.SentinelChannel._sentinel_managed_pool)
    assert "self.connection.client.alt" in pool, "every ';'-part of the URL is a Sentinel"
    assert ".master_for(" in pool
    assert "_sentinel_managed_pool" in inspect.getsource(kombu_redis.SentinelChannel._get_pool)
    assert kombu_redis.SentinelChannel.connection_class_ssl is not None
    assert "self.connection_class_ssl" in inspect.getsource(kombu_redis.Channel._connparams)


def test_celerys_reconnect_goes_through_the_ensure_connection_cancelq_paces() -> None:
    """worker/host/celery_consumer.py passes its own intervals to kombu's ensure_connection."""
    from kombu import Connection

    from cancelq.worker.host.celery_consumer import RECONNECT_INTERVALS

    ensure = inspect.getsource(celery_consumer.Consumer.ensure_connected)
    assert "conn.ensure_connection(" in ensure
    assert "interval_start" not in ensure, "Celery passes no intervals of its own"
    parameters = inspect.signature(Connection._ensure_connection).parameters
    assert set(RECONNECT_INTERVALS) <= set(parameters)
    assert "self._ensure_connection(*args, **kwargs)" in inspect.getsource(
        Connection.ensure_connection
    )
    assert "ensure_connected" in vars(Consumer)


def test_kombus_failover_takes_the_transport_from_the_scheme_cancelq_claims() -> None:
    """kombu switches to the next ';'-part on a lost connection and re-reads the transport from
    its scheme: ``sentinel`` must name cancelq's transport (worker/host/kombu_channel.py)."""
    from kombu import Connection
    from kombu import transport as kombu_transports

    from cancelq.worker.host.kombu_channel import SENTINEL_TRANSPORT

    switch = inspect.getsource(Connection.switch)
    assert "parse_url(conn_str)" in switch
    assert "TRANSPORT_ALIASES[transport]" in inspect.getsource(kombu_transports.resolve_transport)
    create_app(
        Settings(
            redis_url="sentinel://127.0.0.1:1;sentinel://127.0.0.1:2", redis_sentinel_master="m"
        )
    )
    assert kombu_transports.TRANSPORT_ALIASES["sentinel"] == SENTINEL_TRANSPORT
    connection = Connection("sentinel://127.0.0.1:1;sentinel://127.0.0.1:2")
    connection.switch("sentinel://127.0.0.1:2")
    assert connection.transport_cls == "sentinel"
    assert kombu_transports.resolve_transport("sentinel") is SentinelTransport
