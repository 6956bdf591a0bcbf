"""hearth end to end on PostgreSQL: the same server, WebSocket and OpenAI API, another database."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import websockets

from hearth.testing.modelsim import ModelSimulator
from tests.support.hearth import running_hearth


async def test_a_conversation_on_postgresql(sim: ModelSimulator, tmp_path: Path, postgres_url: str) -> None:
    async with running_hearth(tmp_path / "data", ai_model_endpoint=sim.url, hearth_database_url=postgres_url) as hearth:
        assert hearth.runtime.db.dialect == "postgresql"
        async with websockets.connect(hearth.ws_port_url, additional_headers=hearth.auth()) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(json.dumps({"type": "message", "id": "p1", "text": "hello postgres"}))
            frames = []
            while not frames or frames[-1]["type"] not in ("done", "error"):
                frames.append(json.loads(await ws.recv()))
            conversation = frames[0]["conversation"]
            await ws.send(json.dumps({"type": "message", "id": "p1", "text": "hello postgres"}))  # a retry
            retry = []
            while not retry or retry[-1]["type"] not in ("done", "error"):
                retry.append(json.loads(await ws.recv()))
        assert frames[-1]["text"] == "You said: hello postgres" and retry[-1] == frames[-1]
        async with openai.AsyncOpenAI(base_url=hearth.http_url + "/v1", api_key=hearth.admin_key) as api:
            completion = await api.chat.completions.create(
                model="hearth", messages=[{"role": "user", "content": "and again"}],
                extra_headers={"X-Hearth-Conversation": "pg"})
        assert completion.choices[0].message.content == "You said: and again"
        history = await hearth.runtime.conversations.history(conversation)
        assert [m.content for m in history] == ["hello postgres", "You said: hello postgres"]
        assert len(sim.requests) == 2
