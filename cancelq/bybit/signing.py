"""Bybit V5 request signing: HMAC-SHA256 (hex) or SHA256withRSA PKCS#1 v1.5 (base64).

The signed string is ``timestamp + api_key + recv_window + payload`` where payload is the raw JSON
body exactly as sent (POST) or the exact query string (GET). Callers serialise the body once and
send those very bytes: the cancel-order page's ``str(params)`` example is rejected by real Bybit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cancelq.accounts import Account
from cancelq.errors import ConfigError


class Signer(Protocol):
    """Signs the bytes of Bybit's string-to-sign."""

    def sign(self, message: bytes) -> str: ...


class HmacSigner:
    """System-generated API keys: HMAC-SHA256 with the secret, lower-case hex."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def sign(self, message: bytes) -> str:
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(***)"


class RsaSigner:
    """Self-generated RSA keys: SHA256withRSA (PKCS#1 v1.5), base64."""

    __slots__ = ("_key",)

    def __init__(self, private_key_pem: str) -> None:
        try:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        except (ValueError, TypeError):
            raise ConfigError("RSA private key: not an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError("RSA private key: the PEM holds a key that is not RSA")
        self._key = key

    def sign(self, message: bytes) -> str:
        signature = self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def __repr__(self) -> str:
        return "RsaSigner(***)"


def signer_for(account: Account) -> Signer:
    """The signer of an account's credential (exactly one exists, see the accounts file)."""
    if account.rsa_private_key_pem is not None:
        return RsaSigner(account.rsa_private_key_pem.get_secret_value())
    if account.hmac_secret is None:
        raise ConfigError(f"account {account.alias}: no credential")
    return HmacSigner(account.hmac_secret.get_secret_value())


def string_to_sign(timestamp_ms: int, api_key: str, recv_window_ms: int, payload: bytes) -> bytes:
    return f"{timestamp_ms}{api_key}{recv_window_ms}".encode() + payload


def auth_headers(
    api_key: str, signer: Signer, timestamp_ms: int, recv_window_ms: int, payload: bytes
) -> dict[str, str]:
    """The five V5 auth headers for ``payload`` (body bytes or query string)."""
    signature = signer.sign(string_to_sign(timestamp_ms, api_key, recv_window_ms, payload))
    return {
        "X-BAPI-API-KEY": api_key,
        "X-BAPI-TIMESTAMP": str(timestamp_ms),
        "X-BAPI-RECV-WINDOW": str(recv_window_ms),
        "X-BAPI-SIGN": signature,
        "X-BAPI-SIGN-TYPE": "2",
    }
