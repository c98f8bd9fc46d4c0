"""The soak's verdicts, counted from the database and from what the sandbox saw.

- Callbacks: every callback the load generator saw acknowledged (HTTP 200) has its inbox
  row (by dedupe key), and every such row was processed (done or unhandled).
- Mass-send tasks: every task WeCom holds is one the bot recorded (an unrecorded one is a
  duplicate created by a retry), no (member, customer or group) pair appears twice within
  one slot run, every add_msg_template call that took effect made exactly one task, and
  every sent row's msgid is a task WeCom holds (with no task sent at all, the check has
  not been exercised and does not pass); and every mass_task row was settled by the end.
  Moments: no more add_moment_task calls took effect than there are moment rows.
- Tags: per relation, calls to mark_tag that succeeded cleanly (no injected fault) equal
  the relation's sent mark_tag rows (one more where a row is still open: answered, not yet
  recorded) — a timed-out call that took effect is repeated by design, a clean success
  never is — and the bot's ledger (pushed_tags) is exactly the bot's tags WeCom shows on
  every relation with nothing still queued.
- Quota: the sandbox records a breach whenever a call exceeds WeCom's real limits (API
  minute/hour windows, the per-member message cap); injected 45009s are faults, not
  breaches, and are counted apart.
- Outbox: no row given up or failed, except moment tasks whose outcome was unknown (by
  design they are not repeated: moments cannot be reconciled).
- Calendar: every slot of the day has its slot run, none expired or failed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from tests.crash.databases import Peek
from tests.crash.results import as_dict
from tests.crash.sandbox import ADD_MSG_TEMPLATE, MARK_TAG, Admin

Json = dict[str, Any]
ADD_MOMENT_TASK = "externalcontact/add_moment_task"
TIMEOUT_AFTER = "timeout_after"
FREQ_LIMIT = 45009
PROCESSED = ("done", "unhandled")
OPEN = ("pending", "sending", "verify")
# By design (bot/calendar/effects.py): a moment task whose outcome is unknown is not repeated.
ACCEPTED_FAILURE = "outcome unknown, not repeated"


class SandboxReads(Admin):
    """The crash tests' admin client plus the whole call log and the breaches."""

    def all_calls(self) -> list[Json]:
        response = self.http.get("/calls", params={"limit": "100000000"}, timeout=600)
        response.raise_for_status()
        return list(response.json()["calls"])

    def breaches(self) -> list[Json]:
        response = self.http.get("/breaches")
        response.raise_for_status()
        return list(response.json()["breaches"])


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verdicts:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def took_effect(call: Json) -> bool:
    """Whether WeCom acted on a call: it answered 0, or timed out after acting."""
    return int(call["errcode"]) == 0 and call.get("fault") in (None, TIMEOUT_AFTER)


# -- callbacks ----------------------------------------------------------------------------------


def check_callbacks(v: Verdicts, peek: Peek, acked: set[str], load: Json) -> None:
    statuses: dict[str, int] = dict(load["statuses"])
    refused = sum(n for status, n in statuses.items() if status != "200")
    v.add(
        "every callback acknowledged",
        refused == 0,
        f"{load['acked']:,} of {load['sent']:,} sent answered 200; others: "
        + (", ".join(f"{s} × {n}" for s, n in statuses.items() if s != "200") or "none"),
    )
    stored: dict[str, str] = {
        str(key): str(status) for key, status in peek.rows("SELECT dedupe_key, status FROM inbox")
    }
    lost = [k for k in acked if k not in stored]
    unprocessed = Counter(stored[k] for k in acked if k in stored and stored[k] not in PROCESSED)
    v.add(
        "zero lost callbacks",
        not lost,
        f"{len(acked):,} distinct acknowledged callbacks, {len(lost):,} without an inbox row",
    )
    v.add(
        "every stored callback processed",
        not unprocessed,
        "all done or unhandled"
        if not unprocessed
        else ", ".join(f"{s} {n:,}" for s, n in unprocessed.items()),
    )
    v.figures["inbox_status"] = dict(Counter(stored.values()))


# -- mass-send and moments ----------------------------------------------------------------------


def check_tasks(v: Verdicts, peek: Peek, tasks: list[Json], calls: list[Json]) -> None:
    recorded = {
        str(msgid): int(run_id)
        for msgid, run_id in peek.rows(
            "SELECT msgid, run_id FROM mass_tasks WHERE msgid IS NOT NULL AND chat_type != 'moment'"
        )
    }
    orphans = [t["msgid"] for t in tasks if t["msgid"] not in recorded]
    pairs: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
    for task in tasks:
        run = recorded.get(task["msgid"])
        if run is not None:
            pairs[run].update((r["userid"], r["target"]) for r in task["recipients"])
    twice = sum(1 for counter in pairs.values() for n in counter.values() if n > 1)
    effective = sum(1 for c in calls if c["path"] == ADD_MSG_TEMPLATE and took_effect(c))
    rows = peek.rows("SELECT status, result FROM outbox WHERE kind = 'mass_task'")
    sent_msgids = [as_dict(r).get("msgid") for s, r in rows if s == "sent"]
    in_wecom = {t["msgid"] for t in tasks}
    missing = [m for m in sent_msgids if m not in in_wecom]
    reconciled = sum(1 for s, r in rows if s == "sent" and as_dict(r).get("reconciled"))
    # With no task sent there is nothing to have duplicated: not a pass.
    v.add(
        "zero duplicate WeCom tasks",
        bool(sent_msgids) and not orphans and not twice and effective == len(tasks) and not missing,
        f"{len(tasks):,} tasks in WeCom for {len(sent_msgids):,} sent mass_task rows "
        f"({reconciled} found by reconcile after a lost answer); {len(orphans)} unrecorded, "
        f"{twice} recipient pairs twice in a run, {effective:,} add_msg_template calls took "
        f"effect, {len(missing)} sent rows without their task"
        + ("" if sent_msgids else " — not exercised: no mass_task row was sent"),
    )
    still_open = sum(1 for s, _r in rows if s in OPEN)
    v.add(
        "the day's mass-send tasks all reached WeCom",
        bool(rows) and still_open == 0,
        f"{len(rows) - still_open:,} of {len(rows):,} mass_task rows settled, "
        f"{still_open:,} still queued at the end",
    )
    moment_rows = int(
        peek.scalar(
            "SELECT count(*) FROM outbox WHERE kind = 'moment_task' AND status != 'skipped'"
        )
    )
    moment_calls = sum(1 for c in calls if c["path"] == ADD_MOMENT_TASK and took_effect(c))
    v.add(
        "no moment task created twice",
        moment_calls <= moment_rows,
        f"{moment_calls} add_moment_task calls took effect for {moment_rows} moment rows",
    )
    waits = sorted(
        (done - created).total_seconds()
        for created, done in peek.rows(
            "SELECT created_at, done_at FROM outbox"
            " WHERE kind = 'mass_task' AND status = 'sent' AND done_at IS NOT NULL"
        )
    )
    v.figures["tasks"] = {
        "wecom": len(tasks),
        "sent_rows": len(sent_msgids),
        "open_rows": sum(1 for s, _r in rows if s in OPEN),
        "queued_to_sent_s": (waits[len(waits) // 2], waits[-1]) if waits else None,
    }
    v.figures["reconciled"] = reconciled


# -- tags ---------------------------------------------------------------------------------------


def check_tags(v: Verdicts, peek: Peek, relations: list[Json], calls: list[Json]) -> None:
    sent: Counter[tuple[str, str]] = Counter()
    open_relations: set[tuple[str, str]] = set()
    for status, payload in peek.rows("SELECT status, payload FROM outbox WHERE kind = 'mark_tag'"):
        change = as_dict(payload)
        relation = (str(change["userid"]), str(change["external_userid"]))
        if status == "sent":
            sent[relation] += 1
        elif status in OPEN:
            open_relations.add(relation)
    clean: Counter[tuple[str, str]] = Counter()
    repeated_by_design = 0
    for call in calls:
        if call["path"] != MARK_TAG or int(call["errcode"]) != 0 or not call.get("body"):
            continue
        relation = (str(call["body"]["userid"]), str(call["body"]["external_userid"]))
        if call.get("fault") is None:
            clean[relation] += 1
        elif call.get("fault") == TIMEOUT_AFTER:
            repeated_by_design += 1
    # A relation whose row is still open may have had its call answered just before the
    # instances stopped, with the row not yet recorded: one clean call ahead is allowed.
    mismatched = [
        r
        for r in set(sent) | set(clean)
        if clean[r] - sent[r] not in ((0, 1) if r in open_relations else (0,))
    ]
    v.add(
        "tag changes applied once",
        not mismatched,
        f"{sum(sent.values()):,} mark_tag rows sent, {sum(clean.values()):,} clean successful "
        f"calls; {len(mismatched)} relations where they differ; {repeated_by_design} calls "
        "repeated after a timeout that took effect",
    )
    managed, pushed = peek.bot_tags()
    differs = 0
    for r in relations:
        relation = (str(r["userid"]), str(r["external_userid"]))
        if relation in open_relations:
            continue
        shown = set(r["tag_ids"]) & managed
        if shown != pushed.get(relation, set()):
            differs += 1
    v.add(
        "bot's tag ledger matches WeCom",
        differs == 0,
        f"{len(relations) - len(open_relations):,} relations with nothing queued; "
        f"{differs} whose bot tags in WeCom differ from pushed_tags",
    )
    v.figures["mark_tag"] = {"sent": sum(sent.values()), "open_relations": len(open_relations)}


# -- quota and faults ---------------------------------------------------------------------------


def check_quota(v: Verdicts, breaches: list[Json], calls: list[Json]) -> None:
    kinds = Counter(str(b["kind"]) for b in breaches)
    quota = {k: n for k, n in kinds.items() if k in ("api_quota", "member_message_rate")}
    where = Counter(
        f"{b['detail'].get('path')} ({b['detail'].get('window')})"
        for b in breaches
        if b["kind"] == "api_quota"
    )
    v.add(
        "zero quota breaches",
        not quota,
        "none"
        if not quota
        else ", ".join(f"{k} {n}" for k, n in quota.items())
        + (f" — {dict(where)}" if where else ""),
    )
    injected_45009 = sum(1 for c in calls if c.get("fault") == f"errcode:{FREQ_LIMIT}")
    real_45009 = sum(1 for c in calls if int(c["errcode"]) == FREQ_LIMIT and c.get("fault") is None)
    v.figures["45009"] = {"injected": injected_45009, "real": real_45009}
    v.figures["other_breaches"] = {k: n for k, n in kinds.items() if k not in quota}


def fault_counts(calls: list[Json]) -> dict[str, dict[str, int]]:
    """Injected faults by label and API path, and the token refusals (40014, 42001) the
    expiries and revocations caused, by path."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for c in calls:
        short = str(c["path"]).removeprefix("externalcontact/")
        if c.get("fault"):
            counts[str(c["fault"])][short] += 1
        if int(c["errcode"]) in (40014, 42001):
            counts[f"answered {c['errcode']}"][short] += 1
    return {label: dict(paths) for label, paths in sorted(counts.items())}


def calls_by_path(calls: list[Json]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for c in calls:
        out[str(c["path"])]["calls"] += 1
        out[str(c["path"])]["ok" if took_effect(c) else f"errcode {c['errcode']}"] += 1
    return {path: dict(counter) for path, counter in sorted(out.items())}


# -- outbox and calendar ------------------------------------------------------------------------


def check_outbox(v: Verdicts, peek: Peek) -> None:
    bad = peek.rows(
        "SELECT kind, status, last_errcode, last_error FROM outbox"
        " WHERE status IN ('failed', 'dead')"
    )
    unexpected = [
        (k, s, e, str(err or "")[:120])
        for k, s, e, err in bad
        if not (k == "moment_task" and ACCEPTED_FAILURE in str(err or ""))
    ]
    shown = Counter(f"{k} {s} errcode {e}: {err}" for k, s, e, err in unexpected)
    v.add(
        "no outbox row failed or given up",
        not unexpected,
        f"{len(bad)} failed/dead rows, {len(bad) - len(unexpected)} accepted by design"
        + ("" if not shown else "; " + "; ".join(f"{n} × {t}" for t, n in shown.most_common(5))),
    )


def check_calendar(v: Verdicts, peek: Peek, slot_ids: list[str], day: date) -> None:
    runs = peek.rows(
        "SELECT slot_id, part, status, stats, note FROM slot_runs WHERE day = :day ORDER BY id",
        day=day,
    )
    main = {str(s): str(st) for s, part, st, _stats, _note in runs if part == "main"}
    missing = [s for s in slot_ids if s not in main]
    bad = {s: st for s, st in main.items() if st in ("expired", "failed")}
    v.add(
        "every slot of the day planned",
        not missing and not bad,
        f"{len(main)} of {len(slot_ids)} slots have their run"
        + (f"; missing {missing}" if missing else "")
        + (f"; {bad}" if bad else ""),
    )
    v.figures["slot_runs"] = [
        {"slot": str(s), "part": str(p), "status": str(st), "stats": as_dict(stats)}
        for s, p, st, stats, _note in runs
    ]


__all__ = [
    "Check",
    "SandboxReads",
    "Verdicts",
    "calls_by_path",
    "check_calendar",
    "check_callbacks",
    "check_outbox",
    "check_quota",
    "check_tags",
    "check_tasks",
    "fault_counts",
]
