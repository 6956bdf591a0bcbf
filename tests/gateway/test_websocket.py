"""The /ws channel end to end: a real WebSocket client against a real hearth and a scripted model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from hearth.testing.modelsim import ModelSimulator, Turn
from tests.support.hearth import RunningHearth


async def connect(url: str, key: str | None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    ws = await websockets.connect(url, additional_headers=headers, max_size=2**22)
    if key:
        ready = json.loads(await ws.recv())
        assert ready == {"type": "ready", "user": "admin"}
    return ws


async def exchange(ws: ClientConnection, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """Send a message frame; collect the frames for its id until done or error."""
    await ws.send(json.dumps(frame))
    return await collect(ws, frame.get("id"))


async def collect(ws: ClientConnection, client_id: Any) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(15):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("id") != client_id:
                continue
            frames.append(frame)
            if frame["type"] in ("done", "error"):
                return frames


async def test_message_is_acked_streamed_and_stored(hearth: RunningHearth, sim: ModelSimulator) -> None:
    sim.script(Turn(tokens=["Hel", "lo ", "there"]))
    async with await connect(hearth.ws_port_url, hearth.admin_key) as ws:
        frames = await exchange(ws, {"type": "message", "id": "m1", "text": "hi"})
    ack, *deltas, done = frames
    assert ack["type"] == "ack" and ack["id"] == "m1" and len(ack["conversation"]) == 32
    assert [d["text"] for d in deltas] == ["Hel", "lo ", "there"]
    assert done["type"] == "done" and done["text"] == "Hello there" and isinstance(done["message_id"], int)
    stored = await hearth.runtime.conversations.history(ack["conversation"])
    assert [(m.role, m.content) for m in stored] == [("user", "hi"), ("assistant", "Hello there")]


async def test_ack_comes_after_the_message_is_stored(hearth: RunningHearth, sim: ModelSimulator) -> None:
    sim.script(Turn(text="slow answer", ttft=1.0))
    async with await connect(hearth.http_ws_url, hearth.admin_key) as ws:
        await ws.send(json.dumps({"type": "message", "id": "m1", "text": "remember this"}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "ack"
        # the model has not answered yet, but the message is already on disk, pending
        message = await hearth.runtime.conversations.find_by_dedup_key("websocket:1:m1")
        assert message is not None and message.content == "remember this" and message.status == "pending"
        frames = await collect(ws, "m1")
    assert frames[-1]["text"] == "slow answer"


async def test_auth_by_first_frame(hearth: RunningHearth, sim: ModelSimulator) -> None:
    async with websockets.connect(hearth.ws_port_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": hearth.admin_key}))
        assert json.loads(await ws.recv()) == {"type": "ready", "user": "admin"}
        frames = await exchange(ws, {"type": "message", "id": 7, "text": "hello"})
    assert frames[-1]["type"] == "done" and frames[-1]["id"] == 7


@pytest.mark.parametrize("first_frame", [
    {"type": "auth", "token": "hth_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"},
    {"type": "auth", "token": "not-a-key"},
    {"type": "message", "id": "x", "text": "let me in"},
    "garbage{",
])
async def test_unauthenticated_sockets_are_closed_with_4401(hearth: RunningHearth, first_frame: Any) -> None:
    async with websockets.connect(hearth.ws_port_url) as ws:
        await ws.send(first_frame if isinstance(first_frame, str) else json.dumps(first_frame))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["code"] == "unauthenticated"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_bad_bearer_header_is_closed_with_4401(hearth: RunningHearth) -> None:
    bad = hearth.admin_key[:-1] + ("A" if hearth.admin_key[-1] != "A" else "B")
    async with websockets.connect(hearth.ws_port_url, additional_headers={"Authorization": f"Bearer {bad}"}) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_retried_id_gets_the_stored_answer_not_a_second_turn(
    hearth: RunningHearth, sim: ModelSimulator,
) -> None:
    sim.script(Turn(text="the one answer"))
    async with await connect(hearth.ws_port_url, hearth.admin_key) as ws:
        first = await exchange(ws, {"type": "message", "id": "same", "text": "question"})
    async with await connect(hearth.ws_port_url, hearth.admin_key) as ws:
        again = await exchange(ws, {"type": "message", "id": "same", "text": "question"})
    assert len(sim.requests) == 1
    assert again[0] == first[0]  # same ack: same conversation
    assert again[-1] == first[-1]  # same done: same text, same message id
    assert await hearth.runtime.conversations.count_messages() == 2


async def test_a_retry_while_the_turn_runs_joins_its_stream(hearth: RunningHearth, sim: ModelSimulator) -> None:
    sim.script(Turn(tokens=["one ", "two ", "three"], ttft=0.2, gap=0.3))
    async with await connect(hearth.ws_port_url, hearth.admin_key) as ws:
        await ws.send(json.dumps({"type": "message", "id": "m", "text": "count"}))
        assert json.loads(await ws.recv())["type"] == "ack"
        assert json.loads(await ws.recv()) == {"type": "delta", "id": "m", "text": "one "}
    # the socket dropped mid-answer; a new one retries the same id and catches up
    async with await connect(hearth.ws_port_url, hearth.admin_key) as ws:
        frames = await exchange(ws, {"type": "message", "id": "m", "text": "count"})
    assert "".join(f["text"] for f in frames if f["type"] == "delta") == "one two three"
    assert frames[-1]["text"] == "one two three"
    assert len(sim.requests) == 1


async def test_bad_frames_get_errors_and_the_socket_stays_usable(hearth: RunningHearth, sim: ModelSimulator) -> None:
    async with await connect(hearth.ws_port_url, hearth.admin_key) as ws:
        await ws.send("x" * 70_000)
        assert json.loads(await ws.recv())["code"] == "too_large"
        await ws.send("{not json")
        assert json.loads(await ws.recv())["code"] == "bad_frame"
        await ws.send(json.dumps([1, 2]))
        assert json.loads(await ws.recv())["code"] == "bad_frame"
        await ws.send(json.dumps({"type": "message", "id": "e1", "text": ""}))
        assert json.loads(await ws.recv()) == {"type": "error", "id": "e1", "code": "bad_frame",
                                               "message": "message frame needs a non-empty 'text' string"}
        await ws.send(json.dumps({"type": "message", "id": True, "text": "x"}))
        assert json.loads(await ws.recv())["code"] == "bad_frame"
        await ws.send(json.dumps({"type": "message", "id": "x" * 200, "text": "x"}))
        assert json.loads(await ws.recv())["code"] == "bad_frame"
        await ws.send(json.dumps({"type": "dance"}))
        assert json.loads(await ws.recv())["code"] == "unknown_type"
        await ws.send(json.dumps({"type": "auth", "token": "again"}))
        assert json.loads(await ws.recv())["code"] == "already_authenticated"
        await ws.send(json.dumps({"type": "ping", "id": 5}))
        assert json.loads(await ws.recv()) == {"type": "pong", "id": 5}
        frames = await exchange(ws, {"type": "message", "id": "ok", "text": "still there?"})
    assert frames[-1]["type"] == "done"
    assert len(sim.requests) == 1
    assert await hearth.runtime.conversations.count_messages() == 2


async def test_conversations_continue_and_are_private(hearth: RunningHearth, sim: ModelSimulator) -> None:
    async with await connect(hearth.ws_port_url, hearth.admin_key) as ws:
        first = await exchange(ws, {"type": "message", "id": "a", "text": "my name is Ada"})
        conversation = first[0]["conversation"]
        second = await exchange(ws, {"type": "message", "id": "b", "text": "what is my name?",
                                     "conversation": conversation})
    assert second[0]["conversation"] == conversation
    prompt = sim.requests[-1].body["messages"]
    assert [m["content"] for m in prompt if m["role"] == "user"] == ["my name is Ada", "what is my name?"]

    created = await hearth.runtime.auth.create_user("eve")
    async with websockets.connect(hearth.ws_port_url, additional_headers=hearth.auth(created.api_key)) as ws:
        await ws.recv()
        frames = await exchange(ws, {"type": "message", "id": "c", "text": "read it", "conversation": conversation})
        unknown = await exchange(ws, {"type": "message", "id": "d", "text": "x", "conversation": "nope"})
    assert [f["code"] for f in frames] == ["not_found"]
    assert [f["code"] for f in unknown] == ["not_found"]
    assert len(sim.requests) == 2


async def test_no_model_gives_a_clear_error_and_hearth_stays_healthy(
    hearth: RunningHearth, sim: ModelSimulator,
) -> None:
    events: list[str] = []
    hearth.runtime.bus.subscribe(lambda e: events.append(e.name))
    await sim.stop()
    async with await connect(hearth.ws_port_url, hearth.admin_key) as ws:
        frames = await exchange(ws, {"type": "message", "id": "m", "text": "anyone?"})
        assert frames[0]["type"] == "ack"
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "model_unavailable"
        assert "No language model is reachable" in frames[-1]["message"]
        assert "model.unavailable" in events and "turn.failed" in events
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
    async with httpx.AsyncClient() as client:
        assert (await client.get(hearth.http_url + "/healthz")).status_code == 200
        ready = await client.get(hearth.http_url + "/readyz")
    assert ready.status_code == 503 and ready.json()["failing"] == ["model"]
    message = await hearth.runtime.conversations.find_by_dedup_key("websocket:1:m")
    assert message is not None and message.status == "failed" and message.error_code == "model_unavailable"


async def test_several_messages_in_flight_on_one_socket(hearth: RunningHearth, sim: ModelSimulator) -> None:
    async with await connect(hearth.ws_port_url, hearth.admin_key) as ws:
        for i in range(5):
            await ws.send(json.dumps({"type": "message", "id": f"m{i}", "text": f"question {i}"}))
        done: dict[str, str] = {}
        async with asyncio.timeout(15):
            while len(done) < 5:
                frame = json.loads(await ws.recv())
                if frame["type"] == "done":
                    done[frame["id"]] = frame["text"]
    assert done == {f"m{i}": f"You said: question {i}" for i in range(5)}
