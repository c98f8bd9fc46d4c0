"""A local simulator of WeCom: its API, callbacks and limits, for tests, demo and `bot sandbox`."""

from __future__ import annotations

from bot.sandbox.api import SimulatedTimeout, WeComApi, create_api_app
from bot.sandbox.branch import Branch, JoinEvent, build_branch, plan_join_events, play
from bot.sandbox.callbacks import CallbackDeliverer, DeliveryAttempt
from bot.sandbox.faults import FaultInjector
from bot.sandbox.harness import Sandbox
from bot.sandbox.limits import Limits, ReceiveCap
from bot.sandbox.script import AddResult, NewCustomer, Script
from bot.sandbox.world import SandboxWorld

__all__ = [
    "AddResult",
    "Branch",
    "CallbackDeliverer",
    "DeliveryAttempt",
    "FaultInjector",
    "JoinEvent",
    "Limits",
    "NewCustomer",
    "ReceiveCap",
    "Sandbox",
    "SandboxWorld",
    "Script",
    "SimulatedTimeout",
    "WeComApi",
    "build_branch",
    "create_api_app",
    "plan_join_events",
    "play",
]
