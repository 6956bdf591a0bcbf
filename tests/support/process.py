"""``hearth`` as a separate OS process, started with the real CLI on free ports of 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HEARTH = [sys.executable, "-m", "hearth.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``hearth serve`` in a child process on fixed free ports."""

    def __init__(self, data_dir: Path, model_url: str, **env: str) -> None:
        self.data_dir = data_dir
        self.http, self.ws, self.admin = free_port(), free_port(), free_port()
        self.env = {**os.environ, "AI_MODEL_ENDPOINT": model_url, "HEARTH_DATA_DIR": str(data_dir),
                    "HEARTH_HTTP_PORT": str(self.http), "HEARTH_WS_PORT": str(self.ws),
                    "HEARTH_ADMIN_PORT": str(self.admin), "HEARTH_HOST": "127.0.0.1",
                    "MESSAGE_RETENTION_DAYS": "0", "AI_MODEL_RETRIES": "0", "HEARTH_LOG_FORMAT": "json", **env}
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen([*HEARTH, "serve"], env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=open(self.data_dir.parent / "serve.log", "ab"))  # noqa: SIM115
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"hearth exited with {self.process.returncode}: "
                                       + (self.data_dir.parent / "serve.log").read_text()[-2000:])
                try:
                    if (await client.get(f"http://127.0.0.1:{self.http}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("hearth did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    @property
    def key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws}/ws"
