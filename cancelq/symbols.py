"""Bybit symbol conventions: the base and settle coin of a symbol, to match kill scopes.

``BTCUSDT`` → BTC/USDT; inverse ``BTCUSD`` or ``BTCUSDZ25`` → BTC/BTC; ``BTCPERP`` and dashed
symbols (options, dated USDC futures: ``BTC-26DEC25-100000-C``) settle in USDC.
"""

from __future__ import annotations

import re
from typing import Final

QUOTES: Final = ("USDT", "USDC", "USDE", "FDUSD", "BTC", "ETH", "EUR", "BRL", "DAI", "USD")
INVERSE: Final = re.compile(r"^([A-Z0-9]+?)USD([FGHJKMNQUVXZ]\d\d)?$")


def coins(category: str, symbol: str) -> tuple[str, str]:
    """``(baseCoin, settleCoin)`` of ``symbol`` in ``category``."""
    if "-" in symbol:
        return symbol.split("-", 1)[0], "USDC"
    if category == "inverse":
        match = INVERSE.match(symbol)
        base = match.group(1) if match else symbol
        return base, base
    if symbol.endswith("PERP"):
        return symbol[: -len("PERP")], "USDC"
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, "USDT"


def in_scope(scope: str, category: str, symbol: str) -> bool:
    """Does a kill scope (``all``, ``symbol:X``, ``base:X``, ``settle:X``) cover ``symbol``?"""
    kind, _, value = scope.partition(":")
    if kind == "all":
        return True
    if kind == "symbol":
        return symbol == value
    base, settle = coins(category, symbol)
    return (kind == "base" and base == value) or (kind == "settle" and settle == value)
