"""Sustained callback ingest over loopback: `bot serve` on SQLite vs a decrypt-only floor.

Both servers run under uvicorn pinned to core 0; the load generator (raw keep-alive HTTP/1.1
over asyncio, so the client costs little) is pinned to core 1. Each run posts N distinct,
correctly signed and encrypted callbacks and measures:

- throughput: callbacks acknowledged per second, and for `bot serve` the rows persisted;
- latency: p50 and p99 from request written to response read;
- server CPU per callback, from /proc/<pid>/stat (user + system time) over the run.

The ratio of the full server's CPU per callback to the floor's is the overhead of
verify + parse + store + ack (and of the background dispatcher working the same inbox)
over decrypting alone.

    .venv/bin/python -m bench.callbacks [--requests 20000] [--connections 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
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


def make_requests(count: int, port: int) -> list[bytes]:
    """Distinct employee text messages (each its own dedupe key), sealed as WeCom does."""
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP_ID)
    now = int(SystemClock().timestamp())
    out = []
    for i in range(count):
        plaintext = (
            f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
            f"<FromUserName><![CDATA[manager{i % 50}]]></FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[bench message {i}]]></Content>"
            f"<MsgId>{7000000000000000000 + i}</MsgId><AgentID>1000002</AgentID></xml>"
        )
        env = crypto.seal(plaintext, timestamp=str(now), nonce=f"n{i}")
        body = env.callback_xml(CORP_ID, "1000002").encode()
        query = urlencode(env.query())
        head = (
            f"POST /wecom/callback?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


async def _worker(port: int, queue: list[bytes], latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b" 200 " not in status_line:
                errors.append(status_line.decode(errors="replace").strip())
    finally:
        writer.close()


async def load(
    port: int, requests: list[bytes], connections: int
) -> tuple[float, list[float], list[str]]:
    queue = list(reversed(requests))
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    await asyncio.gather(*(_worker(port, queue, latencies, errors) for _ in range(connections)))
    return time.perf_counter() - started, latencies, errors


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


def run_server(label: str, requests: int, connections: int, workdir: Path) -> RunResult:
    port = free_port()
    bot = str(ROOT / ".venv" / "bin" / "bot")
    db_path = workdir / f"{label}-{port}.db"
    env = bot_env(f"sqlite:///{db_path}")
    if label == "full":
        subprocess.run([bot, "db", "upgrade"], env=env, check=True, capture_output=True)
        command = [bot, "serve", "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "bench.callbacks", "--floor-server", str(port)]
    proc = subprocess.Popen(["taskset", "-c", "0", *command], env=env, cwd=ROOT)
    try:
        wait_ready(port, proc)
        payloads = make_requests(requests, port)
        # Warm up connections and code paths before measuring.
        asyncio.run(load(port, make_requests(200, port)[:200], connections))
        before = cpu_seconds(proc.pid)
        seconds, latencies, errors = asyncio.run(load(port, payloads, connections))
        cpu = cpu_seconds(proc.pid) - before
        if errors:
            raise RuntimeError(f"{len(errors)} errors, first: {errors[0]}")
        persisted = None
        if label == "full":
            persisted = _wait_persisted(db_path, requests + 200)
        quantiles = statistics.quantiles(latencies, n=100)
        return RunResult(
            label,
            requests,
            seconds,
            quantiles[49] * 1000,
            quantiles[98] * 1000,
            cpu / requests * 1e6,
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
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        floor_server(args.floor_server)
        return
    if shutil.which("taskset") is None:
        sys.exit("taskset (util-linux) is required to pin server and load generator")
    os.sched_setaffinity(0, {1})
    results: dict[str, list[RunResult]] = {"floor": [], "full": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for label in ("floor", "full"):
                result = run_server(label, args.requests, args.connections, Path(tmp))
                results[label].append(result)
                extra = f", persisted {result.persisted}" if result.persisted is not None else ""
                print(
                    f"run {run + 1} {label:5}: {result.rate:7.0f} callbacks/s, "
                    f"p50 {result.p50_ms:5.1f} ms, p99 {result.p99_ms:5.1f} ms, "
                    f"server CPU {result.cpu_us:6.0f} µs/callback{extra}"
                )
    med = {k: _median(v) for k, v in results.items()}
    ratio = med["full"]["cpu_us"] / med["floor"]["cpu_us"]
    print()
    print("| server | callbacks/s | p50 ms | p99 ms | server CPU µs/callback |")
    print("|---|---|---|---|---|")
    for label, name in (("floor", "decrypt only (floor)"), ("full", "bot serve, SQLite")):
        m = med[label]
        print(f"| {name} | {m['rate']:.0f} | {m['p50']:.1f} | {m['p99']:.1f} | {m['cpu_us']:.0f} |")
    print(
        f"\nmedians of {args.runs} runs × {args.requests} callbacks, "
        f"{args.connections} connections; cost ratio full/floor = {ratio:.2f}x; "
        "rows persisted per run: "
        f"{[r.persisted for r in results['full']]}"
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
