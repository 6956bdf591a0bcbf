"""Load generator: N concurrent WebSocket sessions sending at a fixed total rate (open loop).

Each session keeps its conversation (the id from its first ack) and sends on a fixed schedule whether
or not its previous answer has arrived, so a slow server cannot slow the offered load down and hide its
own latency (no coordinated omission). Latency is from sending a message frame to its ``done`` frame.
The server's CPU time and memory are read from /proc for the measurement window only, after warm-up.
Prints one JSON object with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path

import aiohttp
import orjson

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def cpu_split(pid: int) -> tuple[float, float, int]:
    """User and system seconds, and context switches (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    switches = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS, switches


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Session:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.conversation: str | None = None
        self.sent: dict[str, float] = {}


async def main(args: argparse.Namespace) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sessions: list[Session] = []
    gate = asyncio.Semaphore(50)

    async def connect() -> None:
        async with gate:
            ws = await http.ws_connect(args.url, headers=headers, max_msg_size=1 << 22, heartbeat=None)
            if args.expect_ready:
                ready = orjson.loads((await ws.receive()).data)
                assert ready["type"] == "ready", ready
            sessions.append(Session(ws))

    await asyncio.gather(*(connect() for _ in range(args.sessions)))
    latencies: list[tuple[float, float]] = []  # (sent at, latency)
    errors: list[str] = []

    async def reader(session: Session) -> None:
        async for msg in session.ws:
            frame = orjson.loads(msg.data)
            kind = frame["type"]
            if kind == "ack":
                session.conversation = frame["conversation"]
            elif kind in ("done", "error"):
                sent = session.sent.pop(frame["id"], None)
                if sent is not None:
                    latencies.append((sent, time.perf_counter() - sent))
                if kind == "error":
                    errors.append(frame.get("code", "?"))

    interval = args.sessions / args.rate  # seconds between two messages of one session
    start = time.perf_counter() + 0.5
    window_start, window_end = start + args.warmup, start + args.warmup + args.duration

    async def writer(index: int, session: Session) -> None:
        next_at = start + index / args.rate
        while next_at < window_end:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            message_id = uuid.uuid4().hex
            frame = {"type": "message", "id": message_id, "text": f"hello number {index} at {next_at:.3f}"}
            if session.conversation and args.continue_conversations:
                frame["conversation"] = session.conversation
            session.sent[message_id] = time.perf_counter()
            await session.ws.send_str(orjson.dumps(frame).decode())
            next_at += interval

    readers = [asyncio.create_task(reader(s)) for s in sessions]
    writers = [asyncio.create_task(writer(i, s)) for i, s in enumerate(sessions)]
    await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
    cpu0, rss_peak = cpu_seconds(args.pid), rss_mb(args.pid)
    split0 = cpu_split(args.pid)
    while time.perf_counter() < window_end:
        await asyncio.sleep(1.0)
        rss_peak = max(rss_peak, rss_mb(args.pid))
    cpu1 = cpu_seconds(args.pid)
    split1 = cpu_split(args.pid)
    await asyncio.gather(*writers)
    deadline = time.perf_counter() + 10
    while any(s.sent for s in sessions) and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    for task in readers:
        task.cancel()
    for s in sessions:
        await s.ws.close()
    await http.close()

    in_window = sorted(lat for sent, lat in latencies if window_start <= sent < window_end)
    lost = sum(1 for s in sessions for sent in s.sent.values() if window_start <= sent < window_end)

    def pct(p: float) -> float:
        return in_window[min(len(in_window) - 1, int(p * len(in_window)))] * 1000 if in_window else float("nan")

    return {
        "sessions": args.sessions, "offered_rate": args.rate, "completed": len(in_window), "lost": lost,
        "errors": len(errors), "messages_per_s": len(in_window) / args.duration,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": in_window[-1] * 1000 if in_window else None,
        "cpu_ms_per_message": (cpu1 - cpu0) * 1000 / max(1, len(in_window)), "server_cpu_s": cpu1 - cpu0,
        "rss_mb": rss_peak, "user_s": split1[0] - split0[0], "system_s": split1[1] - split0[1],
        "switches_per_message": (split1[2] - split0[2]) / max(1, len(in_window)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--pid", type=int, required=True, help="server process to measure")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second, all sessions together")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--expect-ready", action="store_true")
    parser.add_argument("--continue-conversations", action="store_true")
    import uvloop

    print(orjson.dumps(uvloop.run(main(parser.parse_args()))).decode(), flush=True)
