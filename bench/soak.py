"""The production soak: two `bot serve` instances on PostgreSQL against the WeCom sandbox,
under callbacks at a steady rate, a day of calendar planning and a 100,000-customer tag
sync, while the sandbox answers -1, 45009, times out and expires tokens. By default a third
instance, of role gateway, takes the callbacks and the two run at `server.nice` 5 (as
docs/operations.md advises for that deployment); `--gateways 0`: the two take them.

1. Setup (bench/soak_setup.py): the sandbox branch (100,000 customers by default), a fresh
   database with its mirror (`bot sync`, `bot import-customers`, `bot segments`; kept as
   a template database for later runs), then `bot tag-sync`, which queues one mark_tag
   row per relation for the instances' outbox senders to push.
2. The day: every slot of schedules/default.yaml, moved to today and spread over the first
   half of the run, so the real scheduler (leader lease, 30 s look) plans them all.
3. The run: two `bot serve` (shared rate limits in the database), the callback load
   (bench/soak_load.py, its own process, half the rate to each instance) and the fault
   schedule (bench/soak_faults.py) for `--minutes`; a sample every 10 s of CPU per process,
   load average and queue depths.
4. Drain: faults off, load stopped; the instances work until inbox and outbox are empty
   (or `--drain-minutes` pass).
5. Verdicts (bench/soak_checks.py) from the database and the sandbox's ledger; the exit
   status is non-zero when a correctness check fails. Performance targets (p99 callback
   acknowledgement under 100 ms at the target rate) are reported met or not met.

    .venv/bin/python -m bench.soak [--minutes 10] [--rate 500] [--customers 100000]
        [--drain-minutes 20] [--rebuild] [--docs]

Figures for docs/benchmarks.md come from a run under `flock /tmp/bench.lock`; `--docs`
rewrites the "Soak run" section at the end of that page (hand-written notes included).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench import soak_profile
from bench.callbacks import free_port
from bench.soak_checks import (
    SandboxReads,
    Verdicts,
    calls_by_path,
    check_calendar,
    check_callbacks,
    check_outbox,
    check_quota,
    check_tags,
    check_tasks,
    fault_counts,
)
from bench.soak_faults import FaultDriver, fault_plan
from bench.soak_load import ACKED, SUMMARY
from bench.soak_monitor import CpuMeter, Monitor, Sample, cpu_share, depths
from bench.soak_report import Run, render, write_docs
from bench.soak_setup import (
    DEFAULT_POSTGRES,
    Branch,
    Prepared,
    SlotTime,
    bot_command_env,
    prepare,
    soak_calendar,
)
from bot.clock import SystemClock
from tests.crash.databases import Peek
from tests.crash.procs import ROOT, Proc, Processes, poll, wait_port

OUT = ROOT / "bench" / "out" / "soak"
# Seconds from starting the instances to the load starting (start-up, leader election).
START_UP = 15.0


@dataclass
class Instances:
    serve: list[Proc]  # role all: serve-a, serve-b
    ports: list[int]
    gateways: list[Proc]  # role gateway: gateway-1 …
    gateway_ports: list[int]

    @property
    def load_ports(self) -> list[int]:
        """Where the callbacks go: the gateways when there are any (the load balancer's
        pool in that deployment), else the two instances."""
        return self.gateway_ports or self.ports

    def pids(self) -> dict[str, int]:
        named = zip([*SERVE_NAMES, *gateway_names(len(self.gateways))], self.all, strict=True)
        return {name: proc.pid for name, proc in named}

    @property
    def all(self) -> list[Proc]:
        return [*self.serve, *self.gateways]


SERVE_NAMES = ("serve-a", "serve-b")


def gateway_names(count: int) -> list[str]:
    return [f"gateway-{n}" for n in range(1, count + 1)]


def start_instances(procs: Processes, env: dict[str, str], gateways: int, nice: int) -> Instances:
    ports = [free_port(), free_port()]
    # Beside gateways, the instances of role all run at a lower priority (server.nice), as
    # docs/operations.md advises for that deployment on shared cores.
    background = {**env, "BOT_SERVER__NICE": str(nice)} if gateways else env
    serve = [
        procs.bot(name, ["serve", "--port", str(port)], background)
        for name, port in zip(SERVE_NAMES, ports, strict=True)
    ]
    gateway_ports = [free_port() for _ in range(gateways)]
    fronts = [
        procs.bot(name, ["serve", "--port", str(port), "--role", "gateway"], env)
        for name, port in zip(gateway_names(gateways), gateway_ports, strict=True)
    ]
    for proc, port in zip([*serve, *fronts], [*ports, *gateway_ports], strict=True):
        wait_port(port, proc, timeout=120)
    return Instances(serve, ports, fronts, gateway_ports)


def relations_file(admin: SandboxReads, peek: Peek, folder: Path) -> tuple[Path, int]:
    """The sandbox's live relations, for the load's contact events; fails when the mirror
    is not the sandbox's branch (a template built from another seed or size)."""
    live = [(r["userid"], r["external_userid"]) for r in admin.relations() if r["alive"]]
    mirrored = {
        (str(u), str(e))
        for u, e in peek.rows(
            "SELECT userid, external_userid FROM follow_relations WHERE status = 'active'"
        )
    }
    unknown = sum(1 for r in live if r not in mirrored)
    if unknown:
        raise SystemExit(
            f"the mirror lacks {unknown:,} of the sandbox's {len(live):,} relations: "
            "run again with --rebuild"
        )
    path = folder / "relations.json"
    path.write_text(json.dumps(live), encoding="utf-8")
    return path, len(live)


class Profiling:
    """py-spy on both instances for a stretch in the middle of the load."""

    def __init__(self, instances: Instances, at: float, seconds: float, folder: Path) -> None:
        self.seconds = seconds
        self.pids = instances.pids()
        self.files = {name: folder / f"gil-{name}.txt" for name in self.pids}
        self.running: list[subprocess.Popen[bytes]] = []
        self.timer = threading.Timer(at, self._start)
        self.timer.daemon = True
        self.timer.start()

    def _start(self) -> None:
        for name, pid in self.pids.items():
            proc = soak_profile.start(pid, self.seconds, self.files[name])
            if proc is not None:
                self.running.append(proc)

    def results(self) -> list[soak_profile.Profile]:
        self.timer.cancel()
        for proc in self.running:
            proc.wait(timeout=self.seconds + 60)
        found = [soak_profile.read(n, p, self.seconds) for n, p in self.files.items()]
        return [p for p in found if p is not None]


def profile_later(instances: Instances, seconds: float, folder: Path) -> Profiling:
    """Sample both instances for a fifth of the load (at most a minute) from 40 % in."""
    return Profiling(instances, 0.4 * seconds, min(60.0, 0.2 * seconds), folder)


def first_fire(now: datetime) -> datetime:
    """The first whole minute at least START_UP + 20 s away: the instances are up and the
    load is running when the first slot comes due."""
    soonest = now + timedelta(seconds=START_UP + 20)
    return soonest.replace(second=0, microsecond=0) + timedelta(minutes=1)


def drain(peek: Peek, minutes: float, alive: list[Proc], slots: list[SlotTime]) -> float:
    """Wait until every slot of the day has its run and no callback or outbox row is open
    (or `minutes` pass); seconds taken."""
    started = time.monotonic()
    days = sorted({s.fire_at.date() for s in slots})

    def idle() -> bool:
        for proc in alive:
            if not proc.alive():
                raise SystemExit(f"{proc.name} exited during the drain:\n{proc.tail()}")
        planned = sum(
            int(peek.scalar("SELECT count(*) FROM slot_runs WHERE part = 'main' AND day = :d", d=d))
            for d in days
        )
        inbox, open_rows, _sent = depths(peek)
        return planned >= len(slots) and inbox == 0 and not open_rows

    try:
        poll("an empty inbox and outbox", idle, timeout=minutes * 60, interval=5.0)
    except AssertionError:
        print(f"drain: still busy after {minutes} min", flush=True)
    return time.monotonic() - started


def verdicts(
    admin: SandboxReads,
    peek: Peek,
    acked: set[str],
    load: dict[str, Any],
    slots: list[str],
    workdir: Path,
) -> tuple[Verdicts, dict[str, Any]]:
    print("reading the sandbox's ledger …", flush=True)
    calls = admin.all_calls()
    # Every API call as WeCom saw it, for a post-mortem of any failed check.
    (workdir / "calls.json").write_text(json.dumps(calls), encoding="utf-8")
    tasks = admin.tasks()
    relations = admin.relations()
    breaches = admin.breaches()
    v = Verdicts()
    check_callbacks(v, peek, acked, load)
    check_tasks(v, peek, tasks, calls)
    check_tags(v, peek, relations, calls)
    check_quota(v, breaches, calls)
    check_outbox(v, peek)
    check_calendar(v, peek, slots, SystemClock().now().date())
    extra = {"faults": fault_counts(calls), "calls": calls_by_path(calls)}
    return v, extra


def run(args: argparse.Namespace) -> int:
    stamp = SystemClock().now().strftime("%Y%m%d-%H%M%S")
    workdir = Path(args.workdir or OUT / stamp)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: logs and results in {workdir}", flush=True)
    branch = Branch(args.customers, args.managers, args.groups, args.seed)
    load_before = os.getloadavg()
    procs = Processes(workdir)
    peek: Peek | None = None
    try:
        prepared: Prepared = prepare(
            procs, branch, args.postgres, workdir, log_level=args.log_level, rebuild=args.rebuild
        )
        admin = SandboxReads(prepared.sandbox.port)
        peek = Peek(prepared.url)
        members = [str(m["userid"]) for m in admin.state()["members"]]
        relations, relation_count = relations_file(admin, peek, workdir)
        queued = int(peek.scalar("SELECT count(*) FROM outbox WHERE kind = 'mark_tag'"))

        fire = first_fire(SystemClock().now())
        spread = max(0, math.ceil(args.minutes / 2) - 1)
        slots = soak_calendar(workdir / "schedules", first=fire, spread_minutes=spread)
        env = bot_command_env(
            prepared.url,
            prepared.sandbox.port,
            log_level=args.log_level,
            extra={
                "BOT_CALENDAR__ENABLED": "true",
                "BOT_PATHS__SCHEDULES": str(workdir / "schedules"),
            },
        )
        instances = start_instances(procs, env, args.gateways, args.nice)
        seconds = args.minutes * 60
        load_proc = procs.start(
            "load",
            [
                sys.executable,
                "-m",
                "bench.soak_load",
                "--ports",
                ",".join(map(str, instances.load_ports)),
                "--rate",
                str(args.rate),
                "--seconds",
                str(seconds),
                "--members",
                ",".join(members),
                "--relations",
                str(relations),
                "--contact-share",
                str(args.contact_share),
                "--out",
                str(workdir),
            ],
            {k: v for k, v in os.environ.items() if not k.startswith("BOT_")},
        )
        started_at = SystemClock().now()
        meter = CpuMeter(
            instances.pids()
            | {
                "sandbox": prepared.sandbox.proc.pid,
                "load": load_proc.pid,
            },
            database=str(make_url(prepared.url).database),
        )
        monitor = Monitor(meter, peek)
        faults = FaultDriver(
            SandboxReads(prepared.sandbox.port),
            fault_plan(seconds, (fire - started_at).total_seconds()),
        )
        monitor.start()
        faults.start()
        profiling = profile_later(instances, seconds, workdir) if args.profile else None
        code = load_proc.wait(timeout=seconds + 1800)
        if code != 0:
            raise SystemExit(f"the load generator exited {code}:\n{load_proc.tail()}")
        load_end: Sample = monitor.sample()
        faults.stop()
        print(f"load done; draining (at most {args.drain_minutes} min) …", flush=True)
        drained = drain(peek, args.drain_minutes, instances.all, slots)
        drain_end = monitor.stop()
        for proc in instances.all:
            proc.stop(timeout=30)
        profiles = profiling.results() if profiling is not None else []
        load = json.loads((workdir / SUMMARY).read_text(encoding="utf-8"))
        acked = set((workdir / ACKED).read_text(encoding="utf-8").split())
        slot_ids = [s.slot_id for s in slots]
        v, extra = verdicts(admin, peek, acked, load, slot_ids, workdir)
        result = Run(
            args=vars(args),
            branch=branch,
            prepared_steps=prepared.steps,
            prepared_notes=prepared.notes,
            mirror_reused=prepared.mirror_reused,
            relations=relation_count,
            mark_tag_queued=queued,
            slots=slots,
            started_at=started_at,
            load=load,
            samples=monitor.samples,
            load_end=load_end,
            drain_end=drain_end,
            drain_seconds=drained,
            cpu_load=cpu_share(monitor.samples[0], load_end)
            | {"load": load["cpu_seconds"] / max(load["elapsed"], 1e-9) * 100},
            load_avg_before=load_before,
            load_avg_after=os.getloadavg(),
            verdicts=v,
            extra=extra,
            fault_steps=faults.applied,
            fault_errors=faults.errors,
            profiles=profiles,
        )
        text = render(result)
        print()
        print(text)
        (workdir / "report.md").write_text(text + "\n", encoding="utf-8")
        if args.docs:
            write_docs(text)
            print("\nwrote the soak section of docs/benchmarks.md")
        return 0 if v.ok else 1
    finally:
        if peek is not None:
            peek.close()
        procs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--rate", type=float, default=500.0, help="callbacks per second")
    parser.add_argument("--drain-minutes", type=float, default=30.0)
    parser.add_argument(
        "--gateways",
        type=int,
        default=1,
        help="instances of role gateway taking the callbacks (0: the two instances take them)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=5,
        help="server.nice of the two instances when gateways take the callbacks",
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--managers", type=int, default=50)
    parser.add_argument("--groups", type=int, default=60)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--contact-share", type=float, default=0.002)
    parser.add_argument("--log-level", default="INFO", help="the instances' log level")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the mirror template")
    parser.add_argument("--workdir", help=f"logs and results (default: {OUT}/<time>)")
    parser.add_argument("--docs", action="store_true", help="write docs/benchmarks.md's section")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy both instances (GIL time by part)"
    )
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
