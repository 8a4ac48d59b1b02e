"""Bybit V5 exchange simulator: aiohttp server, admin API and test helpers (see README.md)."""
