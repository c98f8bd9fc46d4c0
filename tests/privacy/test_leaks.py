"""Nothing personal or secret in what a whole demo run logs (at DEBUG, in both log formats)
or prints, nor in what the operator commands print about the branch it leaves behind."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from bot.demo import DEMO_AES_KEY, DEMO_TOKEN, DemoRun, run_demo
from bot.logs import make_handler, setup_logging
from bot.privacy import mask_name
from bot.store.db import Database
from bot.store.models import CustomerProfile, SlotRun

ROOT = Path(__file__).resolve().parents[2]
# A Chinese mobile, bare or with the separators people type (+86 138-1234-5678).
MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
EXPLAINED = 8


@dataclass(frozen=True)
class Demo:
    run: DemoRun
    folder: Path
    logs: str
    json_logs: str
    screen: str


@dataclass(frozen=True)
class Sensitive:
    """What the sandbox world knows that must never be printed as is."""

    customer_names: frozenset[str]
    member_names: frozenset[str]
    external_userids: frozenset[str]
    mobiles: frozenset[str]  # digits only
    secrets: frozenset[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    folder = tmp_path_factory.mktemp("leak-demo")
    text, json_lines, screen = io.StringIO(), io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        # The product's own logging set-up, at its most talkative, in both formats.
        setup_logging("DEBUG", stream=text)
        root.addHandler(make_handler("json", json_lines))
        run = asyncio.run(
            run_demo(
                customers=24,
                managers=2,
                groups=3,
                folder=folder,
                seed=7,
                console=Console(file=screen, width=200, force_terminal=False),
            )
        )
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    return Demo(run, folder, text.getvalue(), json_lines.getvalue(), screen.getvalue())


@pytest.fixture(scope="module")
def sensitive(demo: Demo) -> Sensitive:
    world = demo.run.sandbox.world
    customers = {c.name for c in world.customers.values()}
    members: set[str] = set()
    for member in world.members.values():
        # "张丽（客户经理）": the name as WeCom holds it, and the person's name alone.
        members.update({member.name, member.name.split("（")[0]})
    for group in world.groups.values():
        for person in group.members:
            names = customers if person.type == 2 else members
            names.update(n for n in (person.name, person.group_nickname) if n)
    mobiles = {m for r in world.relations.values() for m in r.remark_mobiles}
    return Sensitive(
        customer_names=frozenset(n for n in customers if n),
        member_names=frozenset(n for n in members if n),
        external_userids=frozenset(world.customers),
        mobiles=frozenset(re.sub(r"\D", "", m) for m in mobiles),
        secrets=frozenset(
            {DEMO_TOKEN, DEMO_AES_KEY, world.secret, world.token, world.encoding_aes_key}
            | set(world.tokens)
        ),
    )


def _spelled_any_way(digits: str) -> re.Pattern[str]:
    """A known number with or without separators between its digits."""
    return re.compile(r"(?<!\d)" + r"[- ]?".join(digits) + r"(?!\d)")


def leaks(text: str, sensitive: Sensitive, *, members: bool, ids: bool) -> list[str]:
    """What `text` gives away, each described without repeating it in full."""
    found = [f"customer name {mask_name(n)}" for n in sensitive.customer_names if n in text]
    if members:
        found += [f"member name {mask_name(n)}" for n in sensitive.member_names if n in text]
    if ids:
        found += [f"external_userid {e[:6]}…" for e in sensitive.external_userids if e in text]
    found += [f"mobile {m[:3]}…" for m in MOBILE.findall(text)]
    found += [
        f"known mobile {m[:3]}…" for m in sensitive.mobiles if _spelled_any_way(m).search(text)
    ]
    found += [f"secret {s[:4]}…" for s in sensitive.secrets if s and s in text]
    return sorted(found)


def test_the_scan_sees_what_it_looks_for(sensitive: Sensitive) -> None:
    name = sorted(sensitive.customer_names)[0]
    assert sensitive.secrets >= {DEMO_TOKEN, DEMO_AES_KEY}
    assert len(sensitive.secrets) > 5  # the sandbox issued access tokens
    assert sensitive.mobiles
    mobile = sorted(sensitive.mobiles)[0]
    planted = f"x {name} y {DEMO_TOKEN} z 139-1234-5678 {mobile[:3]} {mobile[3:]}"
    assert leaks(planted, sensitive, members=True, ids=True) == sorted(
        [
            f"customer name {mask_name(name)}",
            "mobile 139…",
            f"known mobile {mobile[:3]}…",
            f"secret {DEMO_TOKEN[:4]}…",
        ]
    )


def test_the_demo_logs_nothing_personal_or_secret(demo: Demo, sensitive: Sensitive) -> None:
    assert "DEBUG" in demo.logs  # the run really logged at DEBUG
    records = [json.loads(line) for line in demo.json_logs.splitlines()]
    assert len(records) >= demo.logs.count(" INFO ")
    assert leaks(demo.logs, sensitive, members=True, ids=True) == []
    assert leaks(demo.json_logs, sensitive, members=True, ids=True) == []


def test_the_demo_report_shows_customers_masked(demo: Demo, sensitive: Sensitive) -> None:
    assert "latest customers (masked)" in demo.screen
    # Managers are named on screen by design (operators assign their work); customers never.
    assert leaks(demo.screen, sensitive, members=False, ids=False) == []


def _bot(demo: Demo, *args: str, config: Path = ROOT / "config.yaml") -> str:
    env = {
        "BOT_DATABASE__URL": f"sqlite:///{demo.folder / 'bot.db'}",
        "BOT_LOG_LEVEL": "DEBUG",
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(app, [*args, "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _days(demo: Demo) -> list[date]:
    """The demo's week, and the week after it (not run yet, so `bot plan` shows targets)."""
    db = Database.from_url(f"sqlite:///{demo.folder / 'bot.db'}")
    try:
        run = sorted(set(db.call(lambda s: s.scalars(select(SlotRun.day)).all())))
    finally:
        db.dispose()
    assert run
    return run + [run[-1] + timedelta(days=n) for n in range(1, 8)]


def test_audience_plan_and_explain_print_customers_masked(demo: Demo, sensitive: Sensitive) -> None:
    days = _days(demo)
    db = Database.from_url(f"sqlite:///{demo.folder / 'bot.db'}")
    try:
        profiles = [
            (str(eid), key)
            for eid, key in db.call(
                lambda s: s.execute(
                    select(CustomerProfile.external_userid, CustomerProfile.customer_key)
                    .where(CustomerProfile.external_userid.is_not(None))
                    .order_by(CustomerProfile.customer_key)
                    .limit(EXPLAINED)
                ).all()
            )
        ]
    finally:
        db.dispose()
    assert len(profiles) == EXPLAINED
    outputs = [
        _bot(demo, "audience", 'tag("代发客户") or tag("资产10万+") or aum >= 0', "--sample", "50"),
        *(_bot(demo, "plan", "--date", day.isoformat(), "--show", "50") for day in days),
        *(_bot(demo, "explain", eid) for eid, _key in profiles),
        *(_bot(demo, "explain", key) for _eid, key in profiles[:2]),
    ]
    text = "\n".join(outputs)
    assert "*" in text  # masked customers were shown
    assert leaks(text, sensitive, members=False, ids=False) == []


def test_plan_previews_copy_written_per_customer_with_the_name_masked(
    demo: Demo, sensitive: Sensitive, tmp_path: Path
) -> None:
    # A copywriter greets each customer by name in the first line of a 1:1 post.
    for name in ("content", "schedules"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    template = tmp_path / "content" / "calendar" / "mon_wealth_vip.md.j2"
    copy = template.read_text(encoding="utf-8")
    template.write_text(copy.replace("您好，我是", "{{ customer_name }}您好，我是"), "utf-8")
    monday = next(day for day in _days(demo)[7:] if day.weekday() == 0)

    output = _bot(demo, "plan", "--date", monday.isoformat(), config=tmp_path / "config.yaml")

    assert "mon-wealth-vip" in output
    assert re.search(r"\*+您好，我是", output)  # the per-customer copy is previewed
    assert leaks(output, sensitive, members=False, ids=False) == []
