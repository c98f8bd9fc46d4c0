"""What every callback handler receives besides the event."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.clock import Clock
from bot.config import Settings
from bot.store.db import Database

if TYPE_CHECKING:
    from bot.outbox.queue import Outbox
    from bot.templates import Templates
    from bot.wecom.client import WeComClient


@dataclass(frozen=True)
class HandlerContext:
    """Collaborators a handler may use; built once by the composition root."""

    settings: Settings
    db: Database
    clock: Clock
    wecom: WeComClient
    outbox: Outbox
    templates: Templates
    log: logging.Logger
