"""The bot wired to the WeCom sandbox (the integration tests' fixtures, shared here)."""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401 - fixtures, found by name
    limits,
    setting_overrides,
    world,
    wrap_transport,
)
