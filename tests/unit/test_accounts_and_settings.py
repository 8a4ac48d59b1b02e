from __future__ import annotations

from pathlib import Path

import pytest

from cancelq.accounts import load_accounts
from cancelq.errors import ConfigError
from cancelq.settings import load_settings

SECRET = "very-secret-value-123"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    return path


def test_hmac_secret_from_file_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "s").write_text(SECRET + "\n")
    accounts = load_accounts(
        write(tmp_path, f'[accounts.main]\napi_key="K"\napi_secret_file="{tmp_path / "s"}"\n')
    )
    main = accounts["main"]
    assert main.hmac_secret is not None
    assert main.hmac_secret.get_secret_value() == SECRET
    assert (main.rate_limit_per_s, main.recv_window_ms, main.ret_code_table) == (10.0, 5000, "v5")
    assert SECRET not in repr(main)
    assert SECRET not in str(accounts)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('api_key="K"', "exactly one of api_secret"),
        (
            f'api_key="K"\napi_secret="{SECRET}"\nrsa_private_key_file="/x"',
            "given: api_secret, rsa",
        ),
        (f'api_key="K"\napi_secret="{SECRET}"\nrate_limit_per_s=0', "rate_limit_per_s"),
        (f'api_key="K"\napi_secret="{SECRET}"\nret_code_table="v4"', "ret_code_table"),
        ('api_key="K"\napi_secret_file="/nonexistent/secret"', "cannot read secret file"),
    ],
)
def test_bad_tables_name_account_and_field_but_never_the_secret(
    tmp_path: Path, table: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_accounts(write(tmp_path, f"[accounts.main]\n{table}\n"))
    assert "[accounts.main]" in str(info.value)
    assert expected in str(info.value)
    assert SECRET not in str(info.value)


def test_unreadable_or_empty_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_accounts(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_accounts(write(tmp_path, "[accounts.main\n"))
    with pytest.raises(ConfigError, match="at least one"):
        load_accounts(write(tmp_path, "title = 'x'\n"))


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANCELQ_METRICS_PORT", "9999")
    monkeypatch.setenv("CANCELQ_REDIS_URL", "redis://127.0.0.1:1/0")
    settings = load_settings()
    assert settings.metrics_port == 9999
    assert settings.bybit_base_url == "https://api-testnet.bybit.com"


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANCELQ_METRICS_PORT", "http")
    with pytest.raises(ConfigError, match="CANCELQ_METRICS_PORT"):
        load_settings()
