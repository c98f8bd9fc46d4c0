"""Sustained callback ingest over loopback: `bot serve` on SQLite vs a decrypt-only floor.

Three servers, one after the other in each run: the floor (the same server stack doing
only the decrypt step), `bot serve --role gateway` (ingest alone: what the gateway role
runs) and `bot serve` (role all: ingest plus the dispatcher processing the stored callbacks
in the same process). Each runs under uvicorn pinned to core 0; the load generator, wrk
(Debian's `wrk` package; C, so the client is never the bottleneck), is pinned to core 1
with one thread and keep-alive connections. Each run posts distinct, correctly signed and
encrypted callbacks for a fixed time and measures:

- throughput: callbacks acknowledged per second, and for `bot serve` the rows persisted
  (every acknowledged callback must be in the inbox);
- latency: p50 and p99 from request written to response read (wrk's);
- server CPU per callback, from /proc/<pid>/stat (user + system time) over the run.

The ratio of the gateway role's CPU per callback to the floor's is the overhead of
verify + parse + store + ack over decrypting alone; role all's ratio adds the dispatcher.

    .venv/bin/python -m bench.callbacks [--seconds 10] [--connections 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from bot.clock import SystemClock
from bot.gateway.crypto import WeComCrypto

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "BenchToken2026"
AES_KEY = "BenchEncodingAesKey0123456789abcdefghijklmn"
CORP_ID = "wwbench000000000001"
CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP = 12000  # callbacks prepared for the 1 s warm-up (the floor runs at up to ~6,000/s)


# Measured back to back in each run: the floor, `bot serve --role gateway` (ingest alone:
# verify, decrypt, parse, store, ack) and `bot serve` (the same plus its dispatcher working
# through the stored callbacks in the same process).
LABELS = {
    "floor": "decrypt only (floor)",
    "gateway": "bot serve --role gateway, SQLite",
    "full": "bot serve (role all), SQLite",
}


@dataclass
class RunResult:
    label: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    persisted: int | None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def make_requests(count: int, start: int = 0) -> list[tuple[str, str]]:
    """Distinct employee text messages number start.. (each its own dedupe key), sealed as
    WeCom does: (path with the signed query, body)."""
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP_ID)
    now = int(SystemClock().timestamp())
    out = []
    for i in range(start, start + count):
        plaintext = (
            f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
            f"<FromUserName><![CDATA[manager{i % 50}]]></FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[bench message {i}]]></Content>"
            f"<MsgId>{7000000000000000000 + i}</MsgId><AgentID>1000002</AgentID></xml>"
        )
        env = crypto.seal(plaintext, timestamp=str(now), nonce=f"n{i}")
        body = env.callback_xml(CORP_ID, "1000002")
        out.append((f"/wecom/callback?{urlencode(env.query())}", body))
    return out


def http_requests(count: int, port: int, start: int = 0) -> list[bytes]:
    """The same callbacks as whole HTTP/1.1 requests, for clients that write raw bytes."""
    out = []
    for target, body in make_requests(count, start):
        data = body.encode()
        head = (
            f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        out.append(head + data)
    return out


# wrk's script: every request is the next prepared callback, never one twice (the file holds
# more than a run can send); at the end, the figures as one JSON line.
WRK_SCRIPT = r"""
local requests = {}
local next_one = 0
init = function(args)
  for line in io.lines(args[1]) do
    local path, body = line:match("^([^\t]+)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", path, {["Content-Type"] = "text/xml"}, body)
  end
end
request = function()
  next_one = next_one + 1
  if next_one > #requests then
    error("out of prepared callbacks: raise --prepared")
  end
  return requests[next_one]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int


def load(port: int, prepared: Path, script: Path, seconds: float, connections: int) -> Load:
    """wrk on core 1 against the server, for `seconds`."""
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(prepared),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        # e.g. "out of prepared callbacks" from the script: say so rather than a bare status.
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return Load(
        requests=int(figures["requests"]),
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=int(figures["errors"]),
    )


def write_prepared(path: Path, count: int, start: int = 0) -> None:
    with path.open("w") as out:
        for target, body in make_requests(count, start):
            out.write(f"{target}\t{body}\n")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(db_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "BOT_DATABASE__URL": db_url,
            "BOT_WECOM__CORP_ID": CORP_ID,
            "BOT_WECOM__AGENT_ID": "1000002",
            "BOT_WECOM__SECRET": "bench-secret",
            "BOT_WECOM__TOKEN": TOKEN,
            "BOT_WECOM__ENCODING_AES_KEY": AES_KEY,
            "BOT_WECOM__API_BASE": "http://127.0.0.1:9/cgi-bin",
            "BOT_LOG_LEVEL": "WARNING",
            "BOT_CONFIG": str(ROOT / "config.yaml"),
        }
    )
    return env


def run_server(
    label: str, seconds: float, connections: int, prepared: int, workdir: Path
) -> RunResult:
    port = free_port()
    bot = str(ROOT / ".venv" / "bin" / "bot")
    db_path = workdir / f"{label}-{port}.db"
    env = bot_env(f"sqlite:///{db_path}")
    if label != "floor":
        subprocess.run([bot, "db", "upgrade"], env=env, check=True, capture_output=True)
        command = [bot, "serve", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--role", "gateway"] if label == "gateway" else []
    else:
        command = [sys.executable, "-m", "bench.callbacks", "--floor-server", str(port)]
    script = workdir / "callbacks.lua"
    script.write_text(WRK_SCRIPT)
    warmup, measured = workdir / f"warmup-{port}.tsv", workdir / f"measured-{port}.tsv"
    # Signed now: the server accepts a callback's timestamp within its replay window only.
    write_prepared(warmup, WARMUP)
    write_prepared(measured, prepared, start=WARMUP)  # none the same as a warm-up one
    proc = subprocess.Popen(["taskset", "-c", "0", *command], env=env, cwd=ROOT)
    try:
        wait_ready(port, proc)
        first = load(port, warmup, script, 1, connections)  # connections and code paths warm
        before = cpu_seconds(proc.pid)
        run = load(port, measured, script, seconds, connections)
        cpu = cpu_seconds(proc.pid) - before
        if run.errors or first.errors:
            raise RuntimeError(f"{run.errors + first.errors} failed requests")
        persisted = None
        if label != "floor":
            acknowledged = first.requests + run.requests
            persisted = _wait_persisted(db_path, acknowledged)
            # wrk stops with up to one request per connection in flight: those may be
            # stored without being counted as acknowledged, never the other way round.
            if not acknowledged <= persisted <= acknowledged + 2 * connections:
                raise RuntimeError(f"acknowledged {acknowledged}, persisted {persisted}")
        return RunResult(
            label,
            run.requests,
            run.seconds,
            run.p50_ms,
            run.p99_ms,
            cpu / run.requests * 1e6,
            persisted,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_persisted(db_path: Path, expected: int) -> int:
    deadline = time.monotonic() + 30
    count = 0
    while time.monotonic() < deadline:
        with sqlite3.connect(db_path) as conn:
            count = int(conn.execute("SELECT count(*) FROM inbox").fetchone()[0])
        if count >= expected:
            break
        time.sleep(0.2)
    return count


def floor_server(port: int) -> None:
    """The same server stack doing only the decrypt step."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from bot.gateway.xmlsafe import parse_xml

    crypto = WeComCrypto(TOKEN, AES_KEY, CORP_ID)

    async def receive(request: Request) -> Response:
        body = await request.body()
        encrypt = parse_xml(body, max_bytes=65536)["Encrypt"]
        crypto.decrypt(str(encrypt))
        return Response(status_code=200)

    app = Starlette(routes=[Route("/wecom/callback", receive, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--prepared", type=int, default=120000, help="distinct callbacks prepared per run"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        floor_server(args.floor_server)
        return
    for tool, package in (("taskset", "util-linux"), ("wrk", "wrk")):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required: apt-get install {package}")
    results: dict[str, list[RunResult]] = {label: [] for label in LABELS}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for label in LABELS:
                result = run_server(label, args.seconds, args.connections, args.prepared, Path(tmp))
                results[label].append(result)
                extra = f", persisted {result.persisted}" if result.persisted is not None else ""
                print(
                    f"run {run + 1} {label:7}: {result.rate:7.0f} callbacks/s, "
                    f"p50 {result.p50_ms:5.1f} ms, p99 {result.p99_ms:5.1f} ms, "
                    f"server CPU {result.cpu_us:6.0f} µs/callback{extra}"
                )
    med = {k: _median(v) for k, v in results.items()}
    print()
    print("| server | callbacks/s | p50 ms | p99 ms | server CPU µs/callback |")
    print("|---|---|---|---|---|")
    for label in LABELS:
        m = med[label]
        print(
            f"| {LABELS[label]} | {m['rate']:.0f} | {m['p50']:.1f} | {m['p99']:.1f} "
            f"| {m['cpu_us']:.0f} |"
        )
    print(f"\nmedians of {args.runs} runs × {args.seconds:g} s, {args.connections} connections")
    for label in ("gateway", "full"):
        ratio = med[label]["cpu_us"] / med["floor"]["cpu_us"]
        # Each run's servers ran back to back, so they shared the machine's mood: the ratio
        # within a run is steadier than the ratio of the medians.
        pairs = [
            mine.cpu_us / floor.cpu_us
            for floor, mine in zip(results["floor"], results[label], strict=True)
        ]
        print(
            f"cost ratio {label}/floor = {ratio:.2f}x (per run: "
            f"{', '.join(f'{r:.2f}' for r in pairs)}; median {statistics.median(pairs):.2f}x); "
            f"rows persisted per run: {[r.persisted for r in results[label]]}"
        )


def _median(runs: list[RunResult]) -> dict[str, float]:
    return {
        "rate": statistics.median(r.rate for r in runs),
        "p50": statistics.median(r.p50_ms for r in runs),
        "p99": statistics.median(r.p99_ms for r in runs),
        "cpu_us": statistics.median(r.cpu_us for r in runs),
    }


if __name__ == "__main__":
    main()
