"""``cancelq confirmer`` entry point (being built)."""

from __future__ import annotations

from cancelq.errors import ConfigError
from cancelq.settings import Settings


def run_confirmer(settings: Settings) -> None:
    raise ConfigError(f"the confirmer is not available yet (settings for {settings.queue})")
