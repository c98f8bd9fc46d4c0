"""Customers, relations, sample files and store snapshots for the import tests (no tests)."""

from __future__ import annotations

import codecs
import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.config import Settings, build_settings
from bot.store.db import Database
from bot.store.models import Base, Customer, CustomerProfile, FollowRelation

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "bank" / "customers.csv"
HEADER = SAMPLE.read_text(encoding="utf-8").splitlines()[0].split(",")


def settings(**import_section: Any) -> Settings:
    data = {"import": import_section} if import_section else None
    return build_settings(data, {})


def add_world(db: Database, now: datetime) -> None:
    """alice by id; bob by mobile; carol and dave share a mobile; erin by a +86 mobile;
    frank's relation with 13900003333 has ended, so that mobile matches nobody; gina and
    hank have no remark mobile."""
    relations = [
        ("wm_alice", "manager1", ["13800000000"], "active"),
        ("wm_bob", "manager1", ["13900001111"], "active"),
        ("wm_bob", "manager2", ["139 0000 1111"], "active"),  # same customer, two managers
        ("wm_carol", "manager1", ["139-0000-2222"], "active"),
        ("wm_dave", "manager2", ["+86 13900002222"], "active"),
        ("wm_erin", "manager2", ["+8613900004444"], "active"),
        ("wm_frank", "manager1", ["13900003333"], "ended"),
        ("wm_gina", "manager1", [], "active"),  # most relations carry no remark mobile
        ("wm_hank", "manager2", None, "active"),
    ]
    with db.session() as s:
        for eid in sorted({r[0] for r in relations}):
            s.add(Customer(external_userid=eid, name="张三", created_at=now, updated_at=now))
        s.flush()
        for eid, userid, mobiles, status in relations:
            s.add(
                FollowRelation(
                    external_userid=eid,
                    userid=userid,
                    remark_mobiles=mobiles,
                    status=status,
                    updated_at=now,
                )
            )


def sample_rows() -> list[list[str]]:
    with SAMPLE.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    data = csv_text(rows)
    if encoding == "utf-8-sig":
        path.write_bytes(codecs.BOM_UTF8 + data.encode("utf-8"))
    else:
        path.write_bytes(data.encode(encoding))
    return path


def write_xlsx(path: Path, rows: list[list[Any]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def naive(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A date-time without a zone, as openpyxl reads one from a cell."""
    return datetime(year, month, day, hour, minute)  # noqa: DTZ001


def profiles(db: Database) -> dict[str, CustomerProfile]:
    with db.session() as s:
        return {p.customer_key: p for p in s.scalars(select(CustomerProfile))}


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to show a refused import changed nothing."""
    with db.engine.connect() as conn:
        return {
            table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables
        }
