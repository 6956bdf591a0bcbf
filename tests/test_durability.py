"""Durability: a real ``hearth serve`` process is killed mid-turn; nothing the user sent is lost.

The model simulator runs in the test process; hearth runs as a separate OS process started with the
real CLI and killed with SIGKILL (no chance to clean up) while the model is still answering.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from hearth.testing.modelsim import ModelSimulator, SimRequest, Turn
from tests.support.process import Server


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait(5)


async def send_and_collect(url: str, key: str, frame: dict[str, object]) -> list[dict[str, object]]:
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps(frame))
        frames: list[dict[str, object]] = []
        async with asyncio.timeout(20):
            while True:
                got = json.loads(await ws.recv())
                frames.append(got)
                if got["type"] in ("done", "error"):
                    return frames


async def test_a_turn_killed_mid_answer_is_completed_after_restart(
    sim: ModelSimulator, tmp_path: Path, servers: list[Server],
) -> None:
    server = Server(tmp_path / "data", sim.url)
    servers.append(server)
    await server.start()
    sim.script(Turn(tokens=["partial ", "answer ", "that ", "never ", "ends"], gap=1.0))
    async with websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {server.key}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "id": "important", "text": "please remember this"}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "ack"
        delta = json.loads(await ws.recv())
        assert delta == {"type": "delta", "id": "important", "text": "partial "}
        server.kill()  # SIGKILL while the model is mid-answer
    sim.script(Turn(text="Here is the complete answer."))
    await server.start()
    # the restarted server re-ran the turn on its own; the client's retry gets the stored answer
    frames = await send_and_collect(server.url, server.key, {"type": "message", "id": "important",
                                                             "text": "please remember this"})
    assert frames[0] == ack
    assert frames[-1]["type"] == "done" and frames[-1]["text"] == "Here is the complete answer."
    user_prompts = [r.last_user_text for r in sim.requests]
    assert user_prompts == ["please remember this", "please remember this"]
    assert server.stop() == 0


async def test_after_too_many_crashes_the_user_is_told(
    sim: ModelSimulator, tmp_path: Path, servers: list[Server],
) -> None:
    server = Server(tmp_path / "data", sim.url, HEARTH_TURN_ATTEMPTS="1")
    servers.append(server)
    await server.start()
    sim.script(Turn(text="never", ttft=30))
    async with websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {server.key}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "id": "doomed", "text": "crash on me"}))
        assert json.loads(await ws.recv())["type"] == "ack"
        while not sim.requests:
            await asyncio.sleep(0.02)
        server.kill()
    await server.start()
    frames = await send_and_collect(server.url, server.key, {"type": "message", "id": "doomed", "text": "crash on me"})
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "interrupted"
    assert "send it again" in str(frames[-1]["message"])
    assert len(sim.requests) == 1
    server.stop()


async def test_sigterm_lets_a_running_turn_finish(sim: ModelSimulator, tmp_path: Path, servers: list[Server]) -> None:
    server = Server(tmp_path / "data", sim.url)
    servers.append(server)
    await server.start()
    sim.script(Turn(tokens=["finishing ", "before ", "exit"], ttft=0.5, gap=0.2))

    def responder(request: SimRequest) -> Turn:
        raise AssertionError("no second model request expected")

    async with websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {server.key}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "id": "m", "text": "hi"}))
        assert json.loads(await ws.recv())["type"] == "ack"
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        frames = []
        async with asyncio.timeout(15):
            while True:
                frame = json.loads(await ws.recv())
                frames.append(frame)
                if frame["type"] == "done":
                    break
    assert frames[-1]["text"] == "finishing before exit"
    assert server.stop() == 0
    sim.responder = responder
    await server.start()  # nothing left to recover
    await asyncio.sleep(0.3)
    assert len(sim.requests) == 1
    server.stop()
