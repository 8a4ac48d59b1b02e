"""Request signature checks, exactly as Bybit V5 does them.

Signed string: ``timestamp + api_key + recv_window + payload`` where payload is the raw body
(POST) or the raw query string (GET), byte for byte. HMAC-SHA256 lowercase hex, or RSA
SHA256withRSA (PKCS#1 v1.5) base64. Accepted when
``server_time - recv_window <= timestamp < server_time + 1000``.

Failures, checked in this order:

* a required header missing -> HTTP 401 (10003 key, 10004 sign, 10002 timestamp)
* unknown API key -> 10003
* timestamp or recv_window unreadable or outside the window -> 10002
* signature mismatch -> 10004, whose message shows the origin string (never the secret)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from cancelq.simulator import retcodes
from cancelq.simulator.accounts import Account, AccountStore

H_API_KEY = "X-BAPI-API-KEY"
H_TIMESTAMP = "X-BAPI-TIMESTAMP"
H_SIGN = "X-BAPI-SIGN"
H_RECV_WINDOW = "X-BAPI-RECV-WINDOW"
DEFAULT_RECV_WINDOW_MS = 5000
FUTURE_TOLERANCE_MS = 1000


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request was refused: HTTP status plus Bybit code and message."""

    http_status: int
    ret_code: int
    ret_msg: str


def _missing(headers: Mapping[str, str]) -> AuthFailure | None:
    if not headers.get(H_API_KEY):
        return AuthFailure(401, retcodes.API_KEY_INVALID, retcodes.MSG_API_KEY_INVALID)
    if not headers.get(H_SIGN):
        return AuthFailure(401, retcodes.SIGN_ERROR, "missing X-BAPI-SIGN header")
    if not headers.get(H_TIMESTAMP):
        return AuthFailure(401, retcodes.TIMESTAMP_ERROR, retcodes.MSG_TIMESTAMP)
    return None


def check_timestamp(timestamp: int, recv_window: int, server_ms: int) -> bool:
    """Bybit's window rule."""
    return server_ms - recv_window <= timestamp < server_ms + FUTURE_TOLERANCE_MS


def signature_matches(account: Account, origin: bytes, signature: str) -> bool:
    """True if ``signature`` signs ``origin`` with the account's key."""
    if account.hmac_secret is not None:
        expected = hmac.new(account.hmac_secret, origin, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature.lower())
    assert account.rsa_public_key is not None
    try:
        raw = base64.b64decode(signature, validate=True)
        account.rsa_public_key.verify(raw, origin, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _parse_window(headers: Mapping[str, str]) -> tuple[int, int] | None:
    try:
        timestamp = int(headers[H_TIMESTAMP])
        recv_window = int(headers.get(H_RECV_WINDOW) or DEFAULT_RECV_WINDOW_MS)
    except ValueError:
        return None
    if recv_window <= 0:
        return None
    return timestamp, recv_window


def authenticate(
    headers: Mapping[str, str], payload: bytes, store: AccountStore, server_ms: int
) -> Account | AuthFailure:
    """Check one request; return its account or the failure to answer with."""
    failure = _missing(headers)
    if failure is not None:
        return failure
    api_key = headers[H_API_KEY]
    account = store.get(api_key)
    if account is None:
        return AuthFailure(200, retcodes.API_KEY_INVALID, retcodes.MSG_API_KEY_INVALID)
    window = _parse_window(headers)
    if window is None or not check_timestamp(window[0], window[1], server_ms):
        return AuthFailure(200, retcodes.TIMESTAMP_ERROR, retcodes.MSG_TIMESTAMP)
    prefix = headers[H_TIMESTAMP] + api_key + (headers.get(H_RECV_WINDOW) or "")
    origin = prefix.encode() + payload
    if not signature_matches(account, origin, headers[H_SIGN]):
        shown = origin.decode("utf-8", "replace")
        return AuthFailure(200, retcodes.SIGN_ERROR, retcodes.sign_error_message(shown))
    return account
