"""Accounts: API key -> (UID, HMAC secret or RSA public key), loaded from TOML or added live.

File shape (``docs/DESIGN.md``): ``[accounts.<alias>]`` tables with ``api_key``, ``api_secret``
or ``api_secret_file`` (HMAC) or ``rsa_public_key_file`` (PEM), and ``uid``. A missing ``uid`` is
derived from the alias, stable across runs. Other keys are ignored.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key


class AccountError(ValueError):
    """The accounts file or an admin request describes an unusable account."""


@dataclass(frozen=True, slots=True)
class Account:
    """One API key. Exactly one of ``hmac_secret`` / ``rsa_public_key`` is set."""

    alias: str
    uid: int
    api_key: str
    hmac_secret: bytes | None = None
    rsa_public_key: RSAPublicKey | None = None

    def __repr__(self) -> str:  # never show the secret
        kind = "hmac" if self.hmac_secret is not None else "rsa"
        return f"Account(alias={self.alias!r}, uid={self.uid}, api_key={self.api_key!r}, {kind})"


def derive_uid(alias: str) -> int:
    """A stable 8-digit UID for an alias without one."""
    digest = hashlib.sha256(alias.encode()).digest()
    return 10_000_000 + int.from_bytes(digest[:4], "big") % 90_000_000


def parse_public_key(pem: str | bytes) -> RSAPublicKey:
    """Load an RSA public key from PEM text."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_public_key(data)
    except ValueError as exc:
        raise AccountError("rsa public key is not a valid PEM public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise AccountError("public key is not an RSA key")
    return key


def make_account(
    alias: str,
    api_key: str,
    *,
    uid: int | None = None,
    api_secret: str | None = None,
    rsa_public_key_pem: str | bytes | None = None,
) -> Account:
    """Build an account, checking that exactly one credential kind is given."""
    if not api_key:
        raise AccountError(f"account {alias!r}: api_key is empty")
    if (api_secret is None) == (rsa_public_key_pem is None):
        raise AccountError(f"account {alias!r}: give exactly one of api_secret / rsa public key")
    resolved_uid = derive_uid(alias) if uid is None else int(uid)
    if api_secret is not None:
        return Account(alias, resolved_uid, api_key, hmac_secret=api_secret.encode())
    assert rsa_public_key_pem is not None
    return Account(
        alias, resolved_uid, api_key, rsa_public_key=parse_public_key(rsa_public_key_pem)
    )


def _read_relative(base: Path, value: Any) -> str:
    path = Path(str(value))
    if not path.is_absolute():
        path = base / path
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise AccountError(f"cannot read {path}: {exc.strerror}") from exc


def _account_from_table(alias: str, table: dict[str, Any], base: Path) -> Account:
    secret = table.get("api_secret")
    if secret is None and "api_secret_file" in table:
        secret = _read_relative(base, table["api_secret_file"])
    pem = None
    if secret is None and "rsa_public_key_file" in table:
        pem = _read_relative(base, table["rsa_public_key_file"])
    uid = table.get("uid")
    return make_account(
        alias,
        str(table.get("api_key", "")),
        uid=None if uid is None else int(uid),
        api_secret=None if secret is None else str(secret),
        rsa_public_key_pem=pem,
    )


def load_accounts(path: Path) -> list[Account]:
    """Read every ``[accounts.<alias>]`` table of a TOML file."""
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AccountError(f"cannot load accounts file {path}: {exc}") from exc
    tables = doc.get("accounts", {})
    if not isinstance(tables, dict):
        raise AccountError(f"{path}: [accounts] must be a table")
    return [
        _account_from_table(alias, table, path.parent)
        for alias, table in tables.items()
        if isinstance(table, dict)
    ]


class AccountStore:
    """API key -> account, mutable at run time through the admin API."""

    def __init__(self, accounts: list[Account] | None = None) -> None:
        self._by_key: dict[str, Account] = {}
        for account in accounts or []:
            self.add(account)

    def add(self, account: Account) -> None:
        self._by_key[account.api_key] = account

    def remove(self, api_key: str) -> bool:
        return self._by_key.pop(api_key, None) is not None

    def get(self, api_key: str) -> Account | None:
        return self._by_key.get(api_key)

    def all(self) -> list[Account]:
        return list(self._by_key.values())
