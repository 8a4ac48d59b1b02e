"""cancelq/redis_client.py and the Sentinel settings: the URL syntax, the clients it builds (no
connection is made: redis-py connects lazily), the settings' errors, and the broker options."""

from __future__ import annotations

import inspect
import ssl

import pytest
import redis
from redis.sentinel import (
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from cancelq.errors import ConfigError
from cancelq.redis_client import (
    SentinelOptions,
    connect,
    is_sentinel,
    parse_sentinel_url,
    url_passwords,
)
from cancelq.sentinel_connections import FollowingConnection
from cancelq.settings import load_settings
from cancelq.worker.host.app import create_app
from cancelq.worker.host.kombu_channel import SentinelChannel

pytestmark = pytest.mark.timeout(10)

URL = "sentinel://:data-pw-1234@s1:26380/2;sentinel://s2;sentinel://s3:26381"


def test_the_kombu_syntax_names_every_sentinel_and_the_data_nodes_credentials() -> None:
    parsed = parse_sentinel_url(URL)
    assert parsed.nodes == (("s1", 26380), ("s2", 26379), ("s3", 26381))
    assert parsed.password == "data-pw-1234"
    assert parsed.db == 2
    assert "data-pw" not in repr(parsed)
    assert is_sentinel(URL)
    assert not is_sentinel("redis://h:6379/0")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sentinel://:pw-secret-1@s1;redis://s2", "part 2 is not a sentinel:// address"),
        ("sentinel://:pw-secret-1@s1,s2:26379", "one Sentinel per sentinel:// part"),
        ("sentinel://:pw-secret-1@s1:26x79", "port is not a number"),
        ("sentinel://:pw-secret-1@:26379", "no host"),
        ("sentinel://:pw-secret-1@s1:26379/zero", "database"),
    ],
)
def test_a_bad_sentinel_url_is_refused_naming_the_problem_not_the_url(
    url: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        parse_sentinel_url(url)
    assert "pw-secret-1" not in str(raised.value)


def test_every_partss_password_is_known_for_masking() -> None:
    assert url_passwords("sentinel://:a-pw@s1;sentinel://:b-pw@s2") == ["a-pw", "b-pw"]
    assert url_passwords("redis://:c-pw@h:6379/0") == ["c-pw"]
    assert url_passwords(None) == []


def test_a_sentinel_url_builds_a_master_client_asking_the_sentinels() -> None:
    options = SentinelOptions("orders", password="sentinel-pw-99")
    client = connect(URL, options, socket_timeout=5, decode_responses=True)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "orders"
    assert pool.is_master
    assert issubclass(pool.connection_class, SentinelManagedConnection)
    assert pool.connection_kwargs["password"] == "data-pw-1234"
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["socket_timeout"] == 5
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26380, 26379, 26381]
    to_sentinel = sentinels[0].connection_pool.connection_kwargs
    assert to_sentinel["password"] == "sentinel-pw-99", "the Sentinels' own password"
    assert to_sentinel["socket_timeout"] == 5
    assert "sentinel-pw-99" not in repr(options)


def test_sentinel_tls_verifies_the_sentinels_and_the_master() -> None:
    options = SentinelOptions("orders", tls=True, ca_file="/etc/ca.pem")
    pool = connect(URL, options).connection_pool
    assert issubclass(pool.connection_class, SentinelManagedSSLConnection)  # TLS, Sentinel-led
    assert issubclass(pool.connection_class, FollowingConnection)
    assert pool.connection_kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    sentinel_pool = pool.sentinel_manager.sentinels[0].connection_pool
    assert sentinel_pool.connection_class is redis.SSLConnection
    assert sentinel_pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"


def test_a_sentinel_url_without_options_is_refused() -> None:
    with pytest.raises(ConfigError, match="CANCELQ_REDIS_SENTINEL_MASTER"):
        connect(URL)
    with pytest.raises(ConfigError, match="CANCELQ_REDIS_URL: part 2") as raised:
        connect("sentinel://:pw-secret-2@s1;redis://s2", SentinelOptions("m"))
    assert "pw-secret-2" not in str(raised.value)


def test_redis_urls_are_read_as_before() -> None:
    client = connect("redis://:pw@127.0.0.1:6390/3", socket_timeout=2)
    assert client.connection_pool.connection_kwargs["db"] == 3
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 2


# --- settings -------------------------------------------------------------------------------


def test_a_sentinel_url_needs_the_master_name_and_the_error_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"CANCELQ_REDIS_SENTINEL_MASTER: .*required") as raised:
        load_settings(redis_url=URL)
    assert "data-pw-1234" not in str(raised.value)


@pytest.mark.parametrize(
    "field",
    ["redis_sentinel_master", "redis_sentinel_password", "redis_sentinel_tls"],
)
def test_sentinel_settings_without_a_sentinel_url_are_refused(field: str) -> None:
    value: object = True if field == "redis_sentinel_tls" else "x-value"
    with pytest.raises(ConfigError, match=f"CANCELQ_{field.upper()}: .*only with a sentinel"):
        load_settings(redis_url="redis://127.0.0.1:6379/0", **{field: value})


def test_an_unreadable_sentinel_url_is_refused_naming_the_variable_not_the_password() -> None:
    with pytest.raises(ConfigError, match=r"CANCELQ_REDIS_URL: .*part 2") as raised:
        load_settings(redis_url="sentinel://:hidden-pw-77@s1;http://x", redis_sentinel_master="m")
    assert "hidden-pw-77" not in str(raised.value)


def test_the_settings_give_the_options_and_every_secret_to_mask() -> None:
    settings = load_settings(
        redis_url=URL, redis_sentinel_master="orders", redis_sentinel_password="sentinel-pw-99"
    )
    assert settings.redis_sentinel() == SentinelOptions("orders", password="sentinel-pw-99")
    assert settings.redis_secrets() == ["data-pw-1234", "sentinel-pw-99"]
    assert "sentinel-pw-99" not in repr(settings)


# --- the broker -----------------------------------------------------------------------------


def test_the_broker_uses_the_sentinel_transport_with_the_same_deployment() -> None:
    settings = load_settings(
        redis_url=URL,
        redis_sentinel_master="orders",
        redis_sentinel_password="sentinel-pw-99",
        redis_sentinel_tls=True,
    )
    conf = create_app(settings, pod_id="pod-1").conf
    assert conf.broker_transport == "cancelq.worker.host.kombu_channel:SentinelTransport"
    options = conf.broker_transport_options
    assert options["master_name"] == "orders"
    assert options["sentinel_kwargs"]["password"] == "sentinel-pw-99"
    assert options["sentinel_kwargs"]["socket_timeout"] == options["socket_timeout"]
    assert options["sentinel_kwargs"]["ssl"] is True
    assert conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert set(options) <= set(SentinelChannel.from_transport_options)


def test_a_redis_url_keeps_the_plain_transport() -> None:
    conf = create_app(load_settings(redis_url="redis://127.0.0.1:6379/0")).conf
    assert conf.broker_transport == "cancelq.worker.host.kombu_channel:Transport"
    assert "master_name" not in conf.broker_transport_options


def test_redis_py_drops_a_demoted_masters_connection_on_readonly() -> None:
    """What cancelq relies on after a failover (redis-py, the version installed)."""
    source = inspect.getsource(SentinelManagedConnection.read_response)
    assert "except ReadOnlyError" in source
    assert "self.disconnect()" in source
    assert "raise ConnectionError" in source
