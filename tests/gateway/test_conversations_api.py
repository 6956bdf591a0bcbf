"""``/v1/conversations`` over real HTTP on a running hearth, and files attached to WebSocket message frames.

Conversations are made the way clients make them (WebSocket frames, the OpenAI-compatible API); the
store is only used directly to set up what a client cannot cause on purpose (a failed turn, a turn that
called a tool).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from hearth.store import NewMessage
from hearth.testing.modelsim import ModelSimulator
from tests.support.hearth import RunningHearth


@pytest.fixture
async def client(hearth: RunningHearth) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hearth.http_url, headers=hearth.auth()) as http:
        yield http


@pytest.fixture
async def bob(hearth: RunningHearth) -> str:
    return (await hearth.runtime.auth.create_user("bob", "user")).api_key


async def talk(hearth: RunningHearth, *frames: dict[str, Any], key: str | None = None) -> list[dict[str, Any]]:
    """Send message frames one after another over one socket; the last frame (done or error) of each."""
    ends = []
    async with websockets.connect(hearth.http_ws_url, additional_headers=hearth.auth(key)) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for frame in frames:
            await ws.send(json.dumps({"type": "message", **frame}))
            ends.append(await _end_of(ws, frame["id"]))
    return ends


async def _end_of(ws: ClientConnection, client_id: str) -> dict[str, Any]:
    conversation = None
    async with asyncio.timeout(15):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("id") != client_id:
                continue
            if frame["type"] == "ack":
                conversation = frame["conversation"]
            if frame["type"] in ("done", "error"):
                return {**frame, "conversation": conversation}


async def test_a_key_is_required(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient(base_url=hearth.http_url) as anonymous:
        missing = await anonymous.get("/v1/conversations")
        wrong = await anonymous.get("/v1/conversations", headers={"Authorization": "Bearer hth_nope"})
        rename = await anonymous.patch(f"/v1/conversations/{'0' * 32}", json={"title": "x"})
        gone = await anonymous.delete(f"/v1/conversations/{'0' * 32}")
    for response in (missing, wrong, rename, gone):
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


async def test_conversations_are_listed_newest_first_with_a_title_and_paged(
        hearth: RunningHearth, client: httpx.AsyncClient, bob: str) -> None:
    long = "Please help me plan the spring garden: tomatoes, beans, squash, and a small herb bed by the door"
    first, second, third = await talk(hearth, {"id": "a", "text": long}, {"id": "b", "text": "Second one"},
                                      {"id": "c", "text": "Third one"})
    await talk(hearth, {"id": "a2", "text": "And more", "conversation": first["conversation"]})
    await talk(hearth, {"id": "x", "text": "Bob's secret"}, key=bob)
    listing = (await client.get("/v1/conversations")).json()
    assert listing["object"] == "list" and listing["has_more"] is False
    ids = [c["id"] for c in listing["data"]]
    assert ids == [first["conversation"], third["conversation"], second["conversation"]]  # by last activity
    top = listing["data"][0]
    assert top["title"] == long[:59].rstrip() + "…" and len(top["title"]) <= 60
    assert top["messages"] == 4 and top["channel"] == "websocket" and top["object"] == "conversation"
    assert top["updated_at"] >= top["created_at"] > 0

    page1 = (await client.get("/v1/conversations", params={"limit": 2})).json()
    page2 = (await client.get("/v1/conversations", params={"limit": 2, "before": page1["data"][-1]["id"]})).json()
    assert [c["id"] for c in page1["data"] + page2["data"]] == ids
    assert page1["has_more"] is True and page2["has_more"] is False

    bobs = (await client.get("/v1/conversations", headers=hearth.auth(bob))).json()["data"]
    assert [c["title"] for c in bobs] == ["Bob's secret"]
    foreign_cursor = await client.get("/v1/conversations", params={"before": bobs[0]["id"]})
    assert foreign_cursor.status_code == 400 and foreign_cursor.json()["error"]["code"] == "bad_cursor"
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"before": "nope"}):
        assert (await client.get("/v1/conversations", params=params)).status_code == 400


async def test_messages_are_paged_oldest_first_within_a_page(hearth: RunningHearth, client: httpx.AsyncClient) -> None:
    (start,) = await talk(hearth, {"id": "m0", "text": "message 0"})
    conversation = start["conversation"]
    await talk(hearth, *({"id": f"m{i}", "text": f"message {i}", "conversation": conversation} for i in range(1, 4)))
    await hearth.runtime.messenger.send(conversation, "Reminder: stretch")
    everything = (await client.get(f"/v1/conversations/{conversation}/messages")).json()
    assert everything["conversation"]["id"] == conversation and everything["has_more"] is False
    shown = [(m["role"], m["text"]) for m in everything["data"]]
    turns = [[("user", f"message {i}"), ("assistant", f"You said: message {i}")] for i in range(4)]
    assert shown == [*(item for pair in turns for item in pair), ("notice", "Reminder: stretch")]
    user = everything["data"][0]
    assert user["status"] == "done" and user["client_id"] == "m0" and "attachments" not in user

    pages = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"before": before} if before else {})}
        page = (await client.get(f"/v1/conversations/{conversation}/messages", params=params)).json()
        pages.append([m["text"] for m in page["data"]])
        if not page["has_more"]:
            break
        before = page["data"][0]["id"]
    assert [text for page in reversed(pages) for text in page] == [text for _, text in shown]
    assert pages[0] == ["message 3", "You said: message 3", "Reminder: stretch"]
    assert len(pages) == 3


async def test_only_what_a_person_sees_is_listed(hearth: RunningHearth, client: httpx.AsyncClient) -> None:
    """A turn that called a tool shows its final answer only; a failed turn shows its error."""
    store = hearth.runtime.conversations
    admin = await hearth.runtime.users.get_user_by_name("admin")
    assert admin is not None
    accepted = await store.accept_message(conversation_id=None, user_id=admin.id, channel="websocket",
                                          external_ref=None, dedup_key="k1", text="what time is it?")
    conversation = accepted.conversation.id
    await store.complete_turn(accepted.message.id, [
        NewMessage("assistant", "Let me look.", {"tool_calls": [{"id": "c1", "name": "time.now", "arguments": {}}]}),
        NewMessage("tool", '{"time": "12:00"}', {"call_id": "c1", "name": "time.now"}),
        NewMessage("assistant", "It is noon.", {"reply": "Let me look.It is noon."}),
    ])
    failed = await store.accept_message(conversation_id=conversation, user_id=admin.id, channel="websocket",
                                        external_ref=None, dedup_key="k2", text="and tomorrow?")
    await store.fail_turn(failed.message.id, "model_unavailable", "No model is available right now.")
    data = (await client.get(f"/v1/conversations/{conversation}/messages")).json()["data"]
    assert [(m["role"], m["text"]) for m in data] == [
        ("user", "what time is it?"), ("assistant", "Let me look.It is noon."), ("user", "and tomorrow?")]
    assert data[2]["status"] == "failed"
    assert data[2]["error"] == {"code": "model_unavailable", "message": "No model is available right now."}
    listing = (await client.get("/v1/conversations")).json()["data"]
    assert listing[0]["messages"] == 3


async def test_another_users_conversation_is_not_found(hearth: RunningHearth, client: httpx.AsyncClient,
                                                       bob: str) -> None:
    (bobs,) = await talk(hearth, {"id": "x", "text": "Bob's secret"}, key=bob)
    (mine,) = await talk(hearth, {"id": "y", "text": "mine"})
    conversation = bobs["conversation"]
    for response in (await client.get(f"/v1/conversations/{conversation}/messages"),
                     await client.patch(f"/v1/conversations/{conversation}", json={"title": "mine now"}),
                     await client.delete(f"/v1/conversations/{conversation}"),
                     await client.get(f"/v1/conversations/{'f' * 32}/messages"),
                     await client.get("/v1/conversations/not-an-id/messages")):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
        assert "secret" not in response.text
    bob_view = await client.get(f"/v1/conversations/{conversation}/messages", headers=hearth.auth(bob))
    assert [m["text"] for m in bob_view.json()["data"]] == ["Bob's secret", "You said: Bob's secret"]
    foreign_cursor = await client.get(f"/v1/conversations/{mine['conversation']}/messages",
                                      params={"before": bob_view.json()["data"][0]["id"]})
    assert foreign_cursor.status_code == 400 and foreign_cursor.json()["error"]["code"] == "bad_cursor"


async def test_rename_and_delete(hearth: RunningHearth, client: httpx.AsyncClient, sim: ModelSimulator) -> None:
    (start,) = await talk(hearth, {"id": "r1", "text": "Trip to Lisbon"})
    conversation = start["conversation"]
    renamed = await client.patch(f"/v1/conversations/{conversation}", json={"title": "  Lisbon, May  "})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Lisbon, May"
    assert (await client.get("/v1/conversations")).json()["data"][0]["title"] == "Lisbon, May"
    reset = await client.patch(f"/v1/conversations/{conversation}", json={"title": None})
    assert reset.json()["title"] is None
    assert (await client.get("/v1/conversations")).json()["data"][0]["title"] == "Trip to Lisbon"
    for body in ({"title": "x" * 201}, {"title": 5}, {"name": "x"}, [1]):
        bad = await client.patch(f"/v1/conversations/{conversation}", json=body)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_title"
    not_json = await client.patch(f"/v1/conversations/{conversation}", content=b"{", headers={
        "Content-Type": "application/json"})
    assert not_json.status_code == 400

    admin = await hearth.runtime.users.get_user_by_name("admin")
    assert admin is not None
    await hearth.runtime.messenger.send_later(conversation, admin.id, "later", datetime.now(UTC) + timedelta(hours=1))
    assert len(await hearth.runtime.messenger.scheduled(admin.id)) == 1
    deleted = await client.delete(f"/v1/conversations/{conversation}")
    assert deleted.json() == {"id": conversation, "object": "conversation", "deleted": True}
    assert await hearth.runtime.conversations.count_messages(conversation) == 0
    assert (await client.get("/v1/conversations")).json()["data"] == []
    assert (await client.delete(f"/v1/conversations/{conversation}")).status_code == 404
    assert await hearth.runtime.messenger.scheduled(admin.id) == []  # went with the conversation
    (after,) = await talk(hearth, {"id": "r2", "text": "still there?", "conversation": conversation})
    assert after["type"] == "error" and after["code"] == "not_found"


async def test_files_attached_to_a_websocket_message(hearth: RunningHearth, client: httpx.AsyncClient,
                                                     sim: ModelSimulator, bob: str) -> None:
    upload = await client.post("/v1/files", files={"file": ("notes.txt", b"Boiler serviced in March.\n", "text/plain")})
    file_id = upload.json()["id"]
    (done,) = await talk(hearth, {"id": "f1", "text": "What is in it?", "attachments": [file_id]})
    assert done["type"] == "done"
    assert sim.requests[-1].last_user_text == (
        f"What is in it?\n[attached file 'notes.txt' (text/plain, 26 bytes), file id {file_id}]")
    (alone,) = await talk(hearth, {"id": "f2", "text": "", "attachments": [file_id],
                                   "conversation": done["conversation"]})
    assert alone["type"] == "done"
    data = (await client.get(f"/v1/conversations/{done['conversation']}/messages")).json()["data"]
    assert data[0]["text"] == "What is in it?" and data[2]["text"] == ""
    assert data[0]["attachments"] == [{"id": file_id, "filename": "notes.txt", "media_type": "text/plain",
                                       "bytes": 26}]
    await client.delete(f"/v1/files/{file_id}")
    data = (await client.get(f"/v1/conversations/{done['conversation']}/messages")).json()["data"]
    assert data[0]["attachments"] == [{"id": file_id, "filename": None, "media_type": None, "bytes": None}]

    # someone else's file, an unknown one, or a malformed list: an error frame, and nothing is stored
    theirs = await client.post("/v1/files", headers=hearth.auth(bob),
                               files={"file": ("theirs.txt", b"Bob's notes\n", "text/plain")})
    before = await hearth.runtime.conversations.count_messages()
    results = await talk(hearth, {"id": "f3", "text": "read it", "attachments": [theirs.json()["id"]]},
                         {"id": "f4", "text": "read it", "attachments": ["0" * 32]},
                         {"id": "f5", "text": "read it", "attachments": "notes.txt"},
                         {"id": "f6", "text": "", "attachments": []})
    assert [(r["type"], r["code"]) for r in results] == [("error", "not_found"), ("error", "not_found"),
                                                         ("error", "bad_frame"), ("error", "bad_frame")]
    assert "Bob" not in results[0]["message"]
    assert await hearth.runtime.conversations.count_messages() == before
