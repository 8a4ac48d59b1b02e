"""Our signer against pybit's (the official SDK) as an independent oracle."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pybit._http_manager import generate_signature

from cancelq.bybit.signing import HmacSigner, RsaSigner, auth_headers, string_to_sign
from cancelq.errors import ConfigError

BODY = json.dumps({"category": "spot", "symbol": "BTCUSDT", "orderId": "1"}, separators=(",", ":"))


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_hmac_matches_pybit() -> None:
    message = string_to_sign(1_700_000_000_000, "KEY", 5000, BODY.encode())
    ours = HmacSigner("s3cr3t-value").sign(message)
    assert ours == generate_signature(False, "s3cr3t-value", message.decode())


def test_rsa_matches_pybit(rsa_pem: str) -> None:
    message = string_to_sign(1_700_000_000_000, "KEY", 5000, BODY.encode())
    assert RsaSigner(rsa_pem).sign(message) == generate_signature(True, rsa_pem, message.decode())


def test_the_string_to_sign_is_timestamp_key_window_and_the_exact_body() -> None:
    assert string_to_sign(1, "K", 5000, b'{"a":1}') == b'1K5000{"a":1}'


def test_headers_carry_the_signature_of_the_bytes_sent() -> None:
    headers = auth_headers("KEY", HmacSigner("abc123"), 42, 5000, BODY.encode())
    expected = generate_signature(False, "abc123", f"42KEY5000{BODY}")
    assert headers == {
        "X-BAPI-API-KEY": "KEY",
        "X-BAPI-TIMESTAMP": "42",
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": expected,
        "X-BAPI-SIGN-TYPE": "2",
    }


def test_the_pages_str_params_signature_differs_from_the_sent_body() -> None:
    params = {"category": "spot", "symbol": "BTCUSDT", "orderId": "1"}
    page_style = HmacSigner("abc123").sign(f"42KEY5000{params}".encode())
    assert (
        page_style
        != auth_headers("KEY", HmacSigner("abc123"), 42, 5000, BODY.encode())["X-BAPI-SIGN"]
    )


def test_signers_never_show_their_secret(rsa_pem: str) -> None:
    assert "abc123" not in repr(HmacSigner("abc123"))
    assert "PRIVATE" not in repr(RsaSigner(rsa_pem))


def test_a_bad_rsa_key_is_a_config_error_without_the_key_text() -> None:
    with pytest.raises(ConfigError) as info:
        RsaSigner("-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n")
    assert "not-a-key" not in str(info.value)
