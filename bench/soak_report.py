"""The soak's report: the markdown section for docs/benchmarks.md, built from one run."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench.docs_page import write_section
from bench.soak_checks import Verdicts
from bench.soak_monitor import Sample
from bench.soak_profile import OTHER, PARTS, Profile
from bench.soak_setup import Branch, SlotTime

SECTION = "## Soak run — `bench/soak.py`"
P99_TARGET_MS = 100.0
OTHERS = ("sandbox", "postgres", "load")


def processes(run: Run) -> list[str]:
    """The processes whose CPU the report shows: the instances (gateways included), then
    the sandbox, the database and the load generator."""
    gateways = [f"gateway-{n}" for n in range(1, int(run.args.get("gateways", 0)) + 1)]
    return ["serve-a", "serve-b", *gateways, *OTHERS]


@dataclass
class Run:
    """Everything one soak run measured."""

    args: dict[str, Any]
    branch: Branch
    prepared_steps: dict[str, float]
    prepared_notes: dict[str, str]
    mirror_reused: bool
    relations: int
    mark_tag_queued: int
    slots: list[SlotTime]
    started_at: datetime
    load: dict[str, Any]
    samples: list[Sample]
    load_end: Sample
    drain_end: Sample
    drain_seconds: float
    cpu_load: dict[str, float]
    load_avg_before: tuple[float, float, float]
    load_avg_after: tuple[float, float, float]
    verdicts: Verdicts
    extra: dict[str, Any]
    fault_steps: list[tuple[float, str]]
    fault_errors: list[str]
    profiles: list[Profile]


def _wrap(paragraph: str, indent: str = "") -> str:
    return textwrap.fill(paragraph, width=92, subsequent_indent=indent, break_on_hyphens=False)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _sum(values: dict[str, int]) -> int:
    return sum(values.values())


def intro(run: Run) -> str:
    b = run.branch
    reuse = (
        "copied from the template database an earlier run filled with `bot sync` against the "
        "same branch (same seed, so the same ids)"
        if run.mirror_reused
        else "filled by `bot sync` against the sandbox for this run"
    )
    gateways = int(run.args.get("gateways", 0))
    nice = int(run.args.get("nice", 0))
    topology = (
        f"Two `bot serve` instances (role all, at `server.nice` {nice}) and {gateways} of "
        f"role gateway, which take every callback (the load balancer's pool in the "
        f"deployment docs/operations.md describes), on one PostgreSQL database"
        if gateways
        else "Two `bot serve` instances on one PostgreSQL database, taking the callbacks"
    )
    target = "across the gateways" if gateways else "alternating between the instances"
    return _wrap(
        f"{topology} (the test cluster: local, "
        f"`fsync=off`), shared rate limits in the database, the scheduler's leader lease, "
        f"against the sandbox as a server process. The branch: {b.customers:,} customers, "
        f"{run.relations:,} follow relations, {b.managers} managers, {b.groups} customer "
        f"groups. The mirror was {reuse}, then `bot import-customers` of the bank export the "
        f"sandbox wrote (rule tags for everyone) and `bot segments`; `bot tag-sync` queued "
        f"{run.mark_tag_queued:,} mark_tag rows (the 100,000-customer tag sync) that the two "
        f"instances' outbox senders push during the run. The day: every slot of "
        f"`schedules/default.yaml` ({len(run.slots)} slots, the whole week's, so more than "
        f"any one day holds) moved to today and spread over the first half of the run, "
        f"planned by the real scheduler (no clock tricks: `bot serve` reads the system clock, "
        f"so the slots' times are moved instead). Callbacks: signed and encrypted, "
        f"{run.args['rate']:.0f}/s on an open-loop schedule over keep-alive connections, "
        f"{target}; {run.args['contact_share'] * 100:.1f} % are "
        f"edit_external_contact events on real relations (the handler reads the customer "
        f"from WeCom and retags), the rest members' text messages. The sandbox answers -1 on "
        f"1 % of calls and times out on 0.05 % (half after acting), and on a schedule "
        f"expires (42001) and revokes (40014) every token, answers 45009 (mark_tag, "
        f"add_msg_template, any call) and times out add_msg_template and mark_tag before and "
        f"after effect. After the load, faults stop and the instances drain the queues."
    )


def targets_table(run: Run) -> list[str]:
    load, v = run.load, run.verdicts
    rate_ok = load["achieved_rate"] >= 0.98 * run.args["rate"] and load["acked"] == load["due"]
    p99 = float(load["ack_ms"]["p99"])
    lines = [
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| callbacks at {run.args['rate']:.0f}/s for {run.args['minutes']:g} min | "
        f"{load['achieved_rate']:.0f}/s acknowledged ({load['acked']:,} of {load['due']:,} "
        f"due; {load['unsent']:,} not sent: no free connection in time; per second "
        f"{load['per_second_min']}–{load['per_second_max']}) | {_met(rate_ok)} |",
        f"| p99 callback acknowledgement < {P99_TARGET_MS:.0f} ms | p99 {p99:.1f} ms, p50 "
        f"{load['ack_ms']['p50']:.1f} ms, max {load['ack_ms']['max']:.0f} ms (request "
        f"written → answer read); {load['over_100ms']:,} over 100 ms; from the scheduled "
        f"time p99 {load['from_due_ms']['p99']:.0f} ms | {_met(p99 < P99_TARGET_MS)} |",
    ]
    lines += [f"| {c.name} | {c.detail} | {_met(c.ok)} |" for c in v.checks]
    return lines


def work_table(run: Run) -> list[str]:
    v = run.verdicts
    sent_end = run.drain_end.outbox_sent
    sent_load = run.load_end.outbox_sent
    open_load, open_end = run.load_end.outbox_open, run.drain_end.outbox_open
    slot_runs = v.figures.get("slot_runs", [])
    planned = sum(1 for r in slot_runs if r["status"] == "planned")
    deferred = sum(1 for r in slot_runs if r["part"] != "main")
    reached = sum(int(r["stats"].get("reached", 0) or 0) for r in slot_runs)
    tasks = v.figures.get("tasks", {})
    injected = run.extra["faults"]
    spans = tasks.get("queued_to_sent_s")
    waits = (
        f"{spans[0]:.0f} s / {spans[1]:.0f} s" if spans else "none sent"
    ) + f"; {tasks.get('open_rows', 0):,} open"
    return [
        "| during the run | figure |",
        "|---|---|",
        f"| mark_tag rows queued by `bot tag-sync` | {run.mark_tag_queued:,} |",
        f"| mark_tag sent by the end of the load / of the drain | "
        f"{sent_load.get('mark_tag', 0):,} / {sent_end.get('mark_tag', 0):,} |",
        f"| outbox rows open at the end of the load / of the drain | "
        f"{_sum(open_load):,} / {_sum(open_end):,} "
        f"({', '.join(f'{k} {n:,}' for k, n in sorted(open_end.items())) or 'none'}) |",
        f"| drain (faults off, no load) | {run.drain_seconds:.0f} s |",
        f"| slot runs planned (deferred parts) | {planned} of {len(slot_runs)} ({deferred}) |",
        f"| targets reached by the plans / WeCom tasks / sent mass_task rows | {reached:,} / "
        f"{tasks.get('wecom', 0):,} / {tasks.get('sent_rows', 0):,} |",
        f"| mass_task rows: queued → sent, median / max; still open | {waits} |",
        f"| tasks found by reconcile after a lost answer | {v.figures.get('reconciled', 0)} |",
        f"| 45009 injected / caused by the bot | {v.figures['45009']['injected']} / "
        f"{v.figures['45009']['real']} |",
        "| faults injected (by API) | "
        + "; ".join(
            f"{label}: " + ", ".join(f"{path} {n:,}" for path, n in sorted(paths.items()))
            for label, paths in injected.items()
        )
        + " |",
        "| callback mix | "
        + ", ".join(f"{k} {n:,}" for k, n in sorted(run.load["kinds"].items()))
        + f"; {run.load['reconnects']} keep-alive reconnects |",
    ]


def cpu_table(run: Run) -> list[str]:
    share = run.cpu_load
    names = processes(run)
    total = sum(share.get(p, 0.0) for p in names)
    cores = os.cpu_count() or 1
    head = "| " + " | ".join(names) + " | soak total | machine |"
    rule = "|" + "---:|" * (len(names) + 2)
    row = (
        "| "
        + " | ".join(f"{share.get(p, 0.0):.0f} %" for p in names)
        + f" | {total:.0f} % | {cores} cores = {cores * 100} % |"
    )
    return [head, rule, row]


def profile_table(run: Run) -> list[str]:
    """GIL time per part of each instance, from the py-spy samples (if taken)."""
    if not run.profiles:
        return []
    names = [p.name for p in run.profiles]
    lines = [
        _wrap(
            "Where each instance's GIL time went (py-spy samples of the thread holding it, "
            f"{run.profiles[0].seconds:.0f} s from 40 % into the load; a sample is charged "
            "to the innermost part of the bot on its stack):"
        ),
        "",
        "| part | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| GIL held, share of wall time | "
        + " | ".join(f"{p.gil_share * 100:.0f} %" for p in run.profiles)
        + " |",
    ]
    for part in [name for name, _ in PARTS] + [OTHER]:
        shares = [p.parts.get(part, 0) / max(p.samples, 1) * 100 for p in run.profiles]
        if any(share >= 0.5 for share in shares):
            lines.append(f"| {part} | " + " | ".join(f"{s:.0f} %" for s in shares) + " |")
    return lines


def timeline(run: Run) -> str:
    parts = [
        f"{w['start'] / 60:.1f} min: {w['acked'] / 30:.0f}/s p99 {w['p99_ms']:.0f}"
        for w in run.load.get("windows", [])
    ]
    return _wrap(
        "Per 30 s of the load (acknowledged per second, p99 ms): " + "; ".join(parts) + "."
    )


def where_time_goes(run: Run) -> str:
    share = run.cpu_load
    names = processes(run)
    busiest = max(names, key=lambda p: share.get(p, 0.0))
    total = sum(share.get(p, 0.0) for p in names)
    cores = os.cpu_count() or 1
    loads = [s.load1 for s in run.samples if s.at <= run.load_end.at] or [run.load_end.load1]
    mean_load = sum(loads) / len(loads)
    return _wrap(
        f"Where the time went: the soak's processes used {total:.0f} % of one core on "
        f"average over the load, the busiest being {busiest} at "
        f"{share.get(busiest, 0.0):.0f} %. The machine has {cores} cores shared with other "
        f"work: the 1-minute load average was {run.load_avg_before[0]:.1f} before the setup "
        f"and {mean_load:.1f} on average during the load ({mean_load / cores:.1f} runnable "
        f"processes per core). Each instance runs its HTTP server, dispatcher, outbox "
        f"sender and (the leader) the calendar in one Python process; its database work "
        f"runs on the event loop's default thread pool."
    )


def setup_line(run: Run) -> str:
    steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in run.prepared_steps.items())
    notes = "; ".join(f"{k}: {v}" for k, v in run.prepared_notes.items())
    return _wrap(f"Setup: {steps}." + (f" ({notes})" if notes else ""))


def render(run: Run) -> str:
    v = run.verdicts
    when = run.started_at.strftime("%Y-%m-%d %H:%M")
    head = _wrap(
        f"Last run: {when} (Asia/Shanghai), {run.args['minutes']:g} min of load, drain limit "
        f"{run.args['drain_minutes']:g} min; correctness checks "
        f"{'all passed' if v.ok else '**FAILED**'}."
    )
    faults = "; ".join(f"{at:.0f} s {label}" for at, label in run.fault_steps)
    if run.fault_errors:
        faults += "; not applied: " + "; ".join(run.fault_errors)
    lines = [
        intro(run),
        "",
        head,
        "",
        *targets_table(run),
        "",
        *work_table(run),
        "",
        "CPU, % of one core averaged over the load:",
        "",
        *cpu_table(run),
        "",
        where_time_goes(run),
        "",
        *profile_table(run),
        *([""] if run.profiles else []),
        timeline(run),
        "",
        _wrap(f"Fault schedule (seconds into the load): {faults}."),
        "",
        setup_line(run),
    ]
    return "\n".join(lines)


def write_docs(body: str) -> None:
    """Add or replace this benchmark's section of docs/benchmarks.md."""
    write_section(SECTION, body)


__all__ = ["Run", "render", "write_docs"]
