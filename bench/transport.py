"""CPU per streamed reply: hearth's aiohttp providers against the official httpx-based SDKs.

Every reply hearth streams is parsed on the event loop that also serves the channels, so the
transport's CPU cost per reply bounds how many conversations one process carries. This measures it:
the simulator runs in a subprocess (its CPU is not counted), each client streams ``--requests``
replies of 8 tokens with ``--concurrency`` in flight, and ``time.process_time()`` in this process is
divided by the number of replies.

    .venv/bin/python bench/transport.py [--requests 2000] [--concurrency 20] [--loop asyncio|uvloop]

Prints a Markdown table and writes it to ``bench/TRANSPORT.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import ollama
import openai

from hearth.models import OllamaProvider, OpenAIProvider
from hearth.settings import EndpointSettings
from hearth.types import ChatRequest, UserContent

MODEL = "llama3.2"
TOKENS = 8
MESSAGES: list[Any] = [{"role": "user", "content": "hello there"}]
REQUEST = ChatRequest(messages=(UserContent("hello there"),))

Reply = Callable[[], Awaitable[int]]  # streams one reply, returns the number of text chunks


@dataclass
class Result:
    client: str
    transport: str
    cpu_per_reply_ms: float
    replies_per_s: float


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "hearth.testing.modelsim", "--port", "0", "--ttft", "0", "--gap", "0",
         "--tokens", str(TOKENS), "--models", MODEL],
        stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("modelsim listening on "):
        process.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1].strip()


async def measure(name: str, transport: str, reply: Reply, requests: int, concurrency: int) -> Result:
    assert await reply() == TOKENS, f"{name} did not read {TOKENS} chunks"
    for _ in range(max(concurrency * 2, 50)):  # warm up: connections, caches, lazy imports
        await reply()
    counter = iter(range(requests))

    async def worker() -> None:
        for _ in counter:
            await reply()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Result(name, transport, cpu / requests * 1000.0, requests / wall)


async def run_all(url: str, requests: int, concurrency: int) -> list[Result]:
    results = []

    hearth_ollama = OllamaProvider(EndpointSettings(url, "ollama", MODEL))
    hearth_openai = OpenAIProvider(EndpointSettings(url, "openai", MODEL))
    sdk_ollama = ollama.AsyncClient(host=url)
    sdk_openai = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0)

    async def with_provider(provider: OllamaProvider | OpenAIProvider) -> int:
        return len([chunk async for chunk in provider.stream(REQUEST) if chunk.text])

    async def with_ollama_sdk() -> int:
        stream = await sdk_ollama.chat(MODEL, MESSAGES, stream=True)
        return len([part async for part in stream if part.message.content])

    async def with_openai_sdk() -> int:
        stream = await sdk_openai.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True})
        return len([chunk async for chunk in stream if chunk.choices and chunk.choices[0].delta.content])

    try:
        results.append(await measure("hearth OllamaProvider", "aiohttp + orjson",
                                     lambda: with_provider(hearth_ollama), requests, concurrency))
        results.append(await measure("hearth OpenAIProvider", "aiohttp + orjson",
                                     lambda: with_provider(hearth_openai), requests, concurrency))
        results.append(await measure(f"ollama SDK {version('ollama')} AsyncClient", "httpx",
                                     with_ollama_sdk, requests, concurrency))
        results.append(await measure(f"openai SDK {openai.__version__} AsyncOpenAI", "httpx",
                                     with_openai_sdk, requests, concurrency))
    finally:
        await hearth_ollama.aclose()
        await hearth_openai.aclose()
        await sdk_ollama.close()
        await sdk_openai.close()
    return results


def table(results: list[Result]) -> str:
    base = results[0].cpu_per_reply_ms
    lines = ["| client | transport | CPU ms / reply | vs hearth Ollama | replies/s |",
             "|---|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.client} | {r.transport} | {r.cpu_per_reply_ms:.3f} | "
                     f"{r.cpu_per_reply_ms / base:.1f}x | {r.replies_per_s:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("TRANSPORT.md"))
    args = parser.parse_args()

    process, url = start_simulator()
    try:
        if args.loop == "uvloop":
            import uvloop

            results = uvloop.run(run_all(url, args.requests, args.concurrency))
        else:
            results = asyncio.run(run_all(url, args.requests, args.concurrency))
    finally:
        process.terminate()
        process.wait(5)

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    report = "\n".join([
        "# Transport benchmark: CPU per streamed reply",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} CPUs ({cpu}) · Python "
        f"{platform.python_version()} · {args.loop} loop · {args.requests} replies of {TOKENS} tokens, "
        f"{args.concurrency} in flight · simulator in a separate process (not counted).",
        "",
        "Produced by `.venv/bin/python bench/transport.py`; CPU is `time.process_time()` of the client "
        "process divided by the replies.",
        "",
        table(results),
        "",
    ])
    print(report)
    args.output.write_text(report)


if __name__ == "__main__":
    main()
