"""The accounts file: one TOML table per API-key alias.

::

    [accounts.main]
    api_key = "XXXX"
    api_secret = "YYYY"              # or api_secret_file = "/run/secrets/main"
    # or RSA: rsa_private_key_file = "/run/secrets/main.pem"
    rate_limit_per_s = 10
    recv_window_ms = 5000
    ret_code_table = "v5"            # or "page": the cancel-order page's simplified codes
    batch_counts_items = true        # a cancel-batch costs one unit per item (false: per request)
    [accounts.main.ret_codes]        # per-code overrides of the table
    "10001" = "not_found"

Secrets are held as :class:`pydantic.SecretStr` and only revealed to the signer; errors name the
account and field, never a value.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from cancelq.contract import ACCOUNT_RE
from cancelq.errors import ConfigError


class AccountConfig(BaseModel):
    """One ``[accounts.<alias>]`` table as written in the file."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    api_key: str = Field(min_length=1)
    api_secret: SecretStr | None = None
    api_secret_file: Path | None = None
    rsa_private_key_file: Path | None = None
    rate_limit_per_s: float = Field(10.0, gt=0)
    recv_window_ms: int = Field(5000, gt=0, le=60_000)
    ret_code_table: Literal["v5", "page"] = "v5"
    ret_codes: dict[int, str] = Field(default_factory=dict)
    batch_counts_items: bool = True

    @model_validator(mode="after")
    def _one_credential(self) -> AccountConfig:
        given = [
            name
            for name in ("api_secret", "api_secret_file", "rsa_private_key_file")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "exactly one of api_secret, api_secret_file, rsa_private_key_file is required"
                f" (given: {', '.join(given) or 'none'})"
            )
        return self


@dataclass(frozen=True)
class Account:
    """A usable account: alias, key, and exactly one credential (HMAC secret or RSA key)."""

    alias: str
    api_key: str
    hmac_secret: SecretStr | None
    rsa_private_key_pem: SecretStr | None
    rate_limit_per_s: float
    recv_window_ms: int
    ret_code_table: Literal["v5", "page"]
    ret_codes: Mapping[int, str]
    batch_counts_items: bool = True

    def __repr__(self) -> str:  # never show the credential, even masked
        kind = "rsa" if self.rsa_private_key_pem is not None else "hmac"
        return f"Account(alias={self.alias!r}, api_key={self.api_key!r}, credential={kind})"


def load_accounts(path: Path) -> dict[str, Account]:
    """Read and validate the accounts file; ConfigError says which account and field is wrong."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"accounts file {path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"accounts file {path}: not valid TOML ({exc})") from None
    tables = document.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"accounts file {path}: needs at least one [accounts.<alias>] table")
    return {alias: _account(path, alias, table) for alias, table in tables.items()}


def _account(path: Path, alias: str, table: object) -> Account:
    where = f"accounts file {path}, [accounts.{alias}]"
    if not ACCOUNT_RE.fullmatch(alias):
        raise ConfigError(f"{where}: alias must be 1 to 64 characters of [A-Za-z0-9_.-]")
    try:
        config = AccountConfig.model_validate(table)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'table'}: {e['msg']}"
            for e in exc.errors(include_input=False)
        )
        raise ConfigError(f"{where}: {problems}") from None
    hmac_secret = config.api_secret
    if config.api_secret_file is not None:
        hmac_secret = SecretStr(_read_secret(where, config.api_secret_file).strip())
    rsa_pem = None
    if config.rsa_private_key_file is not None:
        rsa_pem = SecretStr(_read_secret(where, config.rsa_private_key_file))
    return Account(
        alias=alias,
        api_key=config.api_key,
        hmac_secret=hmac_secret,
        rsa_private_key_pem=rsa_pem,
        rate_limit_per_s=config.rate_limit_per_s,
        recv_window_ms=config.recv_window_ms,
        ret_code_table=config.ret_code_table,
        ret_codes=dict(config.ret_codes),
        batch_counts_items=config.batch_counts_items,
    )


def _read_secret(where: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path} ({exc.strerror})") from None
    if not text.strip():
        raise ConfigError(f"{where}: secret file {path} is empty")
    return text
