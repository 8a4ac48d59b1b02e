"""The one way cancelq turns the configured Redis URL into a redis-py client.

``redis://`` and ``rediss://`` (TLS) name one server, as redis-py reads them. ``sentinel://``
names the Redis Sentinels of a replicated deployment, in kombu's syntax, so that the broker
(kombu's Sentinel transport) and cancelq's own clients read the same URL::

    sentinel://[[USER]:PASSWORD@]HOST[:PORT][/DB];sentinel://HOST2[:PORT];sentinel://HOST3[:PORT]

One ``sentinel://`` part per Sentinel, separated by ``;``; the user, password and database of
the first part are the *data* node's (the master's), the port defaults to 26379. The master's
name, the Sentinels' own password and TLS are not in the URL: :class:`SentinelOptions`
(``CANCELQ_REDIS_SENTINEL_*``). The client asks the Sentinels for the master on every new
connection, and drops a connection to a master that has since been demoted (redis-py turns its
``READONLY`` reply into a ``ConnectionError``, so the next try reconnects to the new master);
a reconnect inside a command asks them too (``cancelq/sentinel_connections.py``).

Nothing here puts a password into an exception, a ``repr`` or a log line.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from cancelq.errors import ConfigError
from cancelq.sentinel_connections import FollowingConnection, FollowingSSLConnection

SENTINEL_SCHEME = "sentinel"
SENTINEL_PORT = 26379
#: Connection options that also apply to the connections to the Sentinels themselves.
_SOCKET_OPTIONS = ("socket_timeout", "socket_connect_timeout", "socket_keepalive")


@dataclass(frozen=True)
class SentinelOptions:
    """What a ``sentinel://`` URL needs besides the Sentinels' addresses."""

    master: str
    """The name the Sentinels monitor the master under (``sentinel monitor <name> ...``)."""
    password: str | None = field(default=None, repr=False)
    """The Sentinels' own password (``requirepass`` in sentinel.conf), apart from the data
    node's, which is in the URL."""
    tls: bool = False
    """TLS to the Sentinels and to the master they name, the certificate verified."""
    ca_file: str | None = None
    """PEM of the CAs those certificates are verified against; None: the system's."""


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed ``sentinel://`` URL: the Sentinels, and the data node's credentials and db."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    db: int = 0


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse the URL (ValueError naming the problem, never the URL: it may hold a password)."""
    parts = [part.strip() for part in url.split(";") if part.strip()]
    if not parts:
        raise ValueError("no sentinel:// address")
    nodes: list[tuple[str, int]] = []
    for index, part in enumerate(parts, 1):
        split = urlsplit(part)
        if "," in split.netloc.rpartition("@")[2]:
            raise ValueError(f"part {index}: one Sentinel per sentinel:// part, ';'-separated")
        if split.scheme.lower() != SENTINEL_SCHEME:
            raise ValueError(f"part {index} is not a sentinel:// address (parts are ';'-separated)")
        try:
            port = split.port or SENTINEL_PORT
        except ValueError:
            raise ValueError(f"part {index}: the port is not a number") from None
        if not split.hostname:
            raise ValueError(f"part {index}: no host")
        nodes.append((split.hostname, port))
    first = urlsplit(parts[0])
    path = first.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the database (after the first address's '/') is not a number")
    return SentinelUrl(
        nodes=tuple(nodes),
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password else None,
        db=int(path or 0),
    )


def url_passwords(url: str | None) -> list[str]:
    """Every password in the URL (each ``;``-part's), to be masked in logs."""
    if not url:
        return []
    found = []
    for part in url.split(";"):
        try:
            password = urlsplit(part.strip()).password
        except ValueError:
            continue
        if password:
            found.append(unquote(password))
    return found


def connect(url: str, sentinel: SentinelOptions | None = None, **options: Any) -> redis.Redis:
    """A client of the server the URL names; ``options`` are redis-py's connection options
    (timeouts, ``decode_responses``, ``health_check_interval`` ...), the same for every
    scheme. A ``sentinel://`` URL needs ``sentinel``; ConfigError without it, or when the URL
    cannot be read."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    if sentinel is None:
        raise ConfigError(
            "a sentinel:// URL needs the master's name: CANCELQ_REDIS_SENTINEL_MASTER"
        )
    try:
        parsed = parse_sentinel_url(url)
    except ValueError as exc:
        raise ConfigError(f"CANCELQ_REDIS_URL: {exc}") from None
    tls = _tls_options(sentinel) if sentinel.tls else {}
    to_sentinels: dict[str, Any] = {k: options[k] for k in _SOCKET_OPTIONS if k in options}
    if sentinel.password:
        to_sentinels["password"] = sentinel.password
    # redis-py's Sentinel is untyped up to 8.1 and typed narrower than its keyword arguments
    # from 8.2 (connection_class): held as Any, it type-checks with either
    sentinel_class: Any = Sentinel
    manager = sentinel_class(list(parsed.nodes), sentinel_kwargs={**to_sentinels, **tls})
    credentials = {
        name: value
        for name, value in (("username", parsed.username), ("password", parsed.password))
        if value
    }
    client: redis.Redis = manager.master_for(
        sentinel.master,
        db=parsed.db,
        connection_class=FollowingSSLConnection if sentinel.tls else FollowingConnection,
        **credentials,
        **tls,
        **options,
    )
    return client


def _tls_options(sentinel: SentinelOptions) -> dict[str, Any]:
    options: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    if sentinel.ca_file:
        options["ssl_ca_certs"] = sentinel.ca_file
    return options


def broker_transport_options(sentinel: SentinelOptions, **options: Any) -> dict[str, Any]:
    """kombu's Sentinel transport options for the same deployment: ``master_name``, and
    ``sentinel_kwargs`` for the connections to the Sentinels (the socket options among
    ``options``, the Sentinels' password, TLS)."""
    to_sentinels: dict[str, Any] = {k: options[k] for k in _SOCKET_OPTIONS if k in options}
    if sentinel.password:
        to_sentinels["password"] = sentinel.password
    if sentinel.tls:
        to_sentinels.update(_tls_options(sentinel))
    return {"master_name": sentinel.master, "sentinel_kwargs": to_sentinels}


def broker_ssl(sentinel: SentinelOptions) -> dict[str, Any] | None:
    """Celery's ``broker_use_ssl`` for the master's connections, or None without TLS."""
    if not sentinel.tls:
        return None
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if sentinel.ca_file:
        options["ssl_ca_certs"] = sentinel.ca_file
    return options
