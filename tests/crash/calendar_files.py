"""A one-slot calendar, due now, in a temporary folder: a group post rendered per group, so
every group gets a task of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

from bot.clock import SystemClock
from tests.crash.procs import ROOT

TEMPLATE = "calendar/crash_group.md.j2"
# {{ group_name }} makes the post render per group: one task per group and sender.
POST = """---
title: 群发演练
---
{{ group_name }}的朋友们好！
今天是{{ date }}{{ weekday }}，{{ theme }}。
有问题群里@{{ manager }}。
"""
WEEKDAYS = "[mon, tue, wed, thu, fri, sat, sun]"


def calendar_env(
    folder: Path, *, slot_id: str, theme: str, groups: str | None = None
) -> dict[str, str]:
    """Write the calendar and its content under `folder`; the BOT_… variables that use
    them. The slot runs every day at the current minute, so it is due at once (and for
    the lateness window after), and holidays send it as it is."""
    content = folder / "content"
    if not content.exists():
        shutil.copytree(ROOT / "content", content)
    (content / TEMPLATE).write_text(POST, encoding="utf-8")
    schedules = folder / "schedules"
    schedules.mkdir(exist_ok=True)
    now = SystemClock().now()
    lines = [
        "name: crash",
        "slots:",
        f"  - id: {slot_id}",
        f"    theme: {theme}",
        f"    days: {WEEKDAYS}",
        f'    time: "{now:%H:%M}"',
        "    channel: group",
        f"    template: {TEMPLATE}",
        f"    holiday: {{policy: variant, template: {TEMPLATE}}}",
    ]
    if groups is not None:
        lines.append(f"    groups: '{groups}'")
    (schedules / "crash.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "BOT_CALENDAR__ENABLED": "true",
        "BOT_PATHS__SCHEDULES": str(schedules),
        "BOT_PATHS__CONTENT": str(content),
    }
