"""``make bench``: hearth against a bare floor, under the same load, in the same run.

For each number of concurrent WebSocket sessions it starts a fresh model simulator (50 ms to the first
token, then a few tokens 2 ms apart), the server under test (hearth itself, then the floor relay), and
the load generator in its own process, and writes ``bench/RESULTS.md``. Every process runs on this
machine, so the figures include the simulator's and load generator's share of the CPUs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_sim(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "hearth.testing.modelsim", "--port", str(port), "--ttft", str(args.ttft),
                             "--gap", str(args.gap), "--tokens", str(args.tokens)], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/api/version", proc)
    return proc, url


def run_hearth(args: argparse.Namespace, sessions: int, model_url: str) -> dict[str, object]:
    data = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    port, ws_port, admin_port = free_port(), free_port(), free_port()
    env = {**os.environ, "AI_MODEL_ENDPOINT": model_url, "HEARTH_DATA_DIR": str(data), "HEARTH_HOST": "127.0.0.1",
           "HEARTH_HTTP_PORT": str(port), "HEARTH_WS_PORT": str(ws_port), "HEARTH_ADMIN_PORT": str(admin_port),
           "HEARTH_LOG_LEVEL": "warning", "MESSAGE_RETENTION_DAYS": "0", "AI_MODEL_MAX_CONCURRENCY": "256",
           "AI_MODEL_QUEUE_SIZE": "4096"}
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen([PY, "-m", "hearth.cli", "serve"], env=env, stderr=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        token = (data / "admin.key").read_text().strip()
        return load(args, sessions, f"ws://127.0.0.1:{ws_port}/ws", proc.pid, token=token)
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def run_floor(args: argparse.Namespace, sessions: int, model_url: str) -> dict[str, object]:
    port = free_port()
    proc = subprocess.Popen([PY, str(HERE / "floor.py"), model_url, str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the floor did not start")
            time.sleep(0.1)
        return load(args, sessions, f"ws://127.0.0.1:{port}/ws", proc.pid)
    finally:
        stop(proc)


def load(args: argparse.Namespace, sessions: int, url: str, pid: int, token: str = "") -> dict[str, object]:
    command = [PY, str(HERE / "loadgen.py"), "--url", url, "--pid", str(pid), "--sessions", str(sessions),
               "--rate", str(args.rate), "--warmup", str(args.warmup), "--duration", str(args.duration),
               "--continue-conversations"]
    if token:
        command += ["--token", token, "--expect-ready"]
    out = subprocess.run(command, capture_output=True, check=True, timeout=args.warmup + args.duration + 120)
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def median(runs: list[dict[str, object]]) -> dict[str, object]:
    """Each figure's median over the rounds (errors and losses summed)."""
    merged: dict[str, object] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        if key in ("errors", "lost"):
            merged[key] = sum(int(v) for v in values)  # type: ignore[call-overload]
        elif all(isinstance(v, int | float) for v in values):
            merged[key] = statistics.median(values)  # type: ignore[type-var]
        else:
            merged[key] = values[0]
    merged["rounds"] = len(runs)
    return merged


def table(results: list[tuple[int, dict[str, object], dict[str, object]]], args: argparse.Namespace) -> str:
    lines = [
        "# hearth benchmark",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}) · Python {platform.python_version()} · `make bench`",
        "",
        f"Offered load {args.rate:g} messages/s in total, open loop (each session keeps its conversation and sends on "
        f"a fixed schedule); {args.warmup:g} s warm-up, then {args.duration:g} s measured; {args.rounds} alternating "
        "rounds of floor and hearth, each figure the median of its rounds. Model simulator: "
        f"{args.ttft * 1000:g} ms to the first token, {args.tokens} tokens {args.gap * 1000:g} ms apart. "
        "Latency is from sending a message frame to its `done` frame. CPU is the server process's user+system "
        "time in the window divided by the messages answered in it; RSS is its peak. The floor is a 40-line "
        "Starlette WebSocket relay to the model over aiohttp (`bench/floor.py`), nothing stored, served by the "
        "same server (Hypercorn on uvloop); hearth stores every message and answer in SQLite, with memory, "
        "auth and dedup.",
        "",
        "| sessions | server | messages/s | P50 ms | P99 ms | CPU ms/message | RSS MB | errors+lost |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for sessions, floor, hearth in results:
        for name, r in (("floor", floor), ("hearth", hearth)):
            lines.append(f"| {sessions} | {name} | {r['messages_per_s']:.1f} | {r['p50_ms']:.1f} | "
                         f"{r['p99_ms']:.1f} | {r['cpu_ms_per_message']:.2f} | {r['rss_mb']:.0f} | "
                         f"{int(r['errors']) + int(r['lost'])} |")
        p99_gap = float(hearth["p99_ms"]) - float(floor["p99_ms"])
        cpu_ratio = float(hearth["cpu_ms_per_message"]) / float(floor["cpu_ms_per_message"])
        verdicts.append((sessions, float(hearth["messages_per_s"]), p99_gap, cpu_ratio,
                         int(hearth["errors"]) + int(hearth["lost"])))
    lines += ["", "| sessions | hearth messages/s | P99 over the floor's | CPU per message vs floor | target |",
              "|---:|---:|---:|---:|---|"]
    for sessions, rate, gap, ratio, bad in verdicts:
        ok = rate >= 75 and gap <= 15 and ratio <= 2.0 and bad == 0
        lines.append(f"| {sessions} | {rate:.1f} | {gap:+.1f} ms | {ratio:.2f}x | "
                     f"{'met' if ok else 'NOT met'} (75+ msg/s, P99 within 15 ms, CPU at most 2x, no errors) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each; medians are reported")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--ttft", type=float, default=0.05)
    parser.add_argument("--gap", type=float, default=0.002)
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    results = []
    for sessions in args.sessions:
        sim, model_url = start_sim(args)
        floors, hearths = [], []
        try:
            # alternate the two, so that a drift of the machine's speed touches both alike
            for round_number in range(1, args.rounds + 1):
                floors.append(run_floor(args, sessions, model_url))
                print(f"{sessions} sessions, round {round_number}, floor:  {json.dumps(floors[-1])}", flush=True)
                hearths.append(run_hearth(args, sessions, model_url))
                print(f"{sessions} sessions, round {round_number}, hearth: {json.dumps(hearths[-1])}", flush=True)
        finally:
            stop(sim)
        results.append((sessions, median(floors), median(hearths)))
    text = table(results, args)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
