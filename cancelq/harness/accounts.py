"""The one writer of accounts files for every stack started on this machine: the demo's, the
tests', the benchmarks' and the monitoring harness's.

One file serves both sides (``docs/DESIGN.md``, "Accounts file"): workers and confirmers read
the credentials and budgets, the simulator the uids and public keys. An RSA account's key pair
is written beside the file (``<alias>.pem``, ``<alias>.pub``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class RsaPair:
    """An RSA key pair in PEM: the worker signs with the private key, the simulator verifies
    with the public one."""

    private_pem: str
    public_pem: str


def new_rsa_pair() -> RsaPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return RsaPair(private, public)


@dataclass(frozen=True)
class AccountSpec:
    """One ``[accounts.<alias>]`` table: an HMAC secret or an RSA pair; None leaves a setting
    at its default."""

    alias: str
    api_key: str
    uid: int
    api_secret: str | None = None
    rsa: RsaPair | None = None
    rate_limit_per_s: float | None = None
    batch_counts_items: bool | None = None
    ret_code_table: str | None = None

    @property
    def secrets(self) -> list[str]:
        """What this account's file holds that must never show in a log or in Redis."""
        found = [self.api_secret] if self.api_secret else []
        return found + ([self.rsa.private_pem] if self.rsa else [])


def random_account(
    alias: str, uid: int, *, rsa: RsaPair | None = None, rate_limit_per_s: float | None = None
) -> AccountSpec:
    """Fresh random credentials: a new API key and HMAC secret, or the RSA pair ``rsa``."""
    return AccountSpec(
        alias,
        secrets.token_hex(9).upper(),
        uid,
        api_secret=None if rsa else secrets.token_hex(18),
        rsa=rsa,
        rate_limit_per_s=rate_limit_per_s,
    )


def write_accounts(path: Path, accounts: Sequence[AccountSpec]) -> Path:
    """Write ``accounts`` to ``path`` (and RSA key pairs beside it); returns ``path``."""
    tables = [_table(path.parent, account) for account in accounts]
    path.write_text("\n".join(tables), encoding="utf-8")
    return path


def _table(directory: Path, account: AccountSpec) -> str:
    fields: dict[str, object] = {"uid": account.uid, "api_key": account.api_key}
    if account.api_secret is not None:
        fields["api_secret"] = account.api_secret
    if account.rsa is not None:
        private, public = directory / f"{account.alias}.pem", directory / f"{account.alias}.pub"
        private.write_text(account.rsa.private_pem, encoding="utf-8")
        public.write_text(account.rsa.public_pem, encoding="utf-8")
        fields["rsa_private_key_file"] = str(private)
        fields["rsa_public_key_file"] = str(public)
    optional = {
        "rate_limit_per_s": account.rate_limit_per_s,
        "batch_counts_items": account.batch_counts_items,
        "ret_code_table": account.ret_code_table,
    }
    fields.update({name: value for name, value in optional.items() if value is not None})
    lines = [f"[accounts.{account.alias}]"] + [f"{k} = {_toml(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    """A TOML value: a JSON string is a TOML basic string, a JSON number a TOML number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
