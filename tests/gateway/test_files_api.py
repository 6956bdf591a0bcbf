"""``/v1/files`` and ``/v1/calendar.ics`` over real HTTP on a running hearth, with the official ``openai`` SDK
where the route follows OpenAI's files API, and a file's text reaching the model through the files skill."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
from icalendar import Calendar

from hearth.testing.modelsim import ModelSimulator, Turn
from tests.support.hearth import RunningHearth, running_hearth

NOTES = b"The boiler was serviced on 3 March by Dana. Next service due in September.\n"


@pytest.fixture
async def small(sim: ModelSimulator, tmp_path: Path) -> AsyncIterator[RunningHearth]:
    async with running_hearth(tmp_path / "data", ai_model_endpoint=sim.url, hearth_max_file_mb=1) as running:
        yield running


def api(hearth: RunningHearth, key: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=hearth.http_url + "/v1", api_key=key or hearth.admin_key, max_retries=0)


async def other_user_key(hearth: RunningHearth) -> str:
    created = await hearth.runtime.auth.create_user("bob", "user")
    return created.api_key


async def test_upload_list_read_download_delete_with_the_openai_sdk(small: RunningHearth) -> None:
    async with api(small) as client:
        uploaded = await client.files.create(file=("notes.txt", io.BytesIO(NOTES)), purpose="assistants")
        assert uploaded.filename == "notes.txt" and uploaded.bytes == len(NOTES)
        listed = await client.files.list()
        assert [f.id for f in listed.data] == [uploaded.id]
        content = await client.files.content(uploaded.id)
        assert content.read() == NOTES
        deleted = await client.files.delete(uploaded.id)
        assert deleted.deleted
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(uploaded.id)
    assert not any((small.runtime.settings.hearth_data_dir / "files").rglob("*.txt"))


async def test_file_objects_say_what_hearth_read(small: RunningHearth) -> None:
    async with httpx.AsyncClient(base_url=small.http_url, headers=small.auth()) as client:
        response = await client.post("/v1/files", files={"file": ("notes.md", NOTES, "text/markdown")})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "ready" and body["media_type"].startswith("text/")
        download = await client.get(f"/v1/files/{body['id']}/content")
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["x-content-type-options"] == "nosniff"


async def test_bad_uploads_are_refused_and_leave_nothing(small: RunningHearth) -> None:
    files_root = small.runtime.settings.hearth_data_dir / "files"
    async with httpx.AsyncClient(base_url=small.http_url, headers=small.auth()) as client:
        too_big = await client.post("/v1/files", files={"file": ("big.txt", b"a" * (1024 * 1024 + 10), "text/plain")})
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "too_large"
        exe = await client.post("/v1/files", files={"file": ("tool.pdf", b"MZ\x90\x00" + bytes(range(256)) * 4,
                                                               "application/pdf")})
        assert exe.status_code == 415, exe.text
        not_multipart = await client.post("/v1/files", data={"purpose": "assistants"})
        assert not_multipart.status_code == 415
        no_file = await client.post("/v1/files", files={"document": ("n.txt", NOTES, "text/plain")})
        assert no_file.status_code == 400 and no_file.json()["error"]["code"] == "missing_file"
        listed = await client.get("/v1/files")
    assert listed.json()["data"] == []
    assert not [p for p in files_root.rglob("*") if p.is_file()]


async def test_files_are_private_to_their_owner(small: RunningHearth) -> None:
    bob = await other_user_key(small)
    async with httpx.AsyncClient(base_url=small.http_url) as client:
        anonymous = await client.get("/v1/files")
        assert anonymous.status_code == 401
        mine = await client.post("/v1/files", headers=small.auth(), files={"file": ("n.txt", NOTES, "text/plain")})
        file_id = mine.json()["id"]
        for method, path in (("GET", f"/v1/files/{file_id}"), ("GET", f"/v1/files/{file_id}/content"),
                             ("DELETE", f"/v1/files/{file_id}")):
            response = await client.request(method, path, headers=small.auth(bob))
            assert response.status_code == 404, (method, path)
        still = await client.get(f"/v1/files/{file_id}", headers=small.auth())
    assert still.status_code == 200


async def test_the_model_reads_an_uploaded_file_through_the_files_skill(small: RunningHearth,
                                                                        sim: ModelSimulator) -> None:
    async with httpx.AsyncClient(base_url=small.http_url, headers=small.auth()) as client:
        uploaded = (await client.post("/v1/files", files={"file": ("boiler.txt", NOTES, "text/plain")})).json()
    sim.script(Turn(tool_calls=[("files__read_file", {"file": "boiler.txt"})]),
               Turn(text="It was serviced on 3 March."))
    async with api(small) as client:
        answer = await client.chat.completions.create(
            model="hearth", messages=[{"role": "user", "content": "When was the boiler serviced?"}])
    assert answer.choices[0].message.content == "It was serviced on 3 March."
    second = sim.requests[-1]
    tool_results = [m for m in second.body["messages"] if m["role"] == "tool"]
    assert tool_results and "serviced on 3 March by Dana" in tool_results[-1]["content"]
    assert uploaded["id"]


async def test_calendar_export_is_an_ics_attachment_for_its_owner(small: RunningHearth) -> None:
    sim_free = "schedule a meeting tomorrow at 3pm for half an hour"
    async with httpx.AsyncClient(base_url=small.http_url, headers=small.auth()) as client:
        asked = await client.post("/v1/chat/completions", json={
            "model": "hearth", "messages": [{"role": "user", "content": sim_free}]})
        assert "Shall I" in asked.json()["choices"][0]["message"]["content"]
        conversation = asked.headers["x-hearth-conversation"]
        # the id hearth returned, sent back, continues the conversation that holds the question
        confirmed = await client.post("/v1/chat/completions", headers={"X-Hearth-Conversation": conversation},
                                      json={"model": "hearth", "messages": [{"role": "user", "content": "yes"}]})
        assert confirmed.headers["x-hearth-conversation"] == conversation
        assert "15:00" in confirmed.json()["choices"][0]["message"]["content"]
        exported = await client.get("/v1/calendar.ics")
        anonymous = await client.get("/v1/calendar.ics", headers={"Authorization": ""})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/calendar")
    assert exported.headers["content-disposition"] == 'attachment; filename="calendar.ics"'
    events = [c for c in Calendar.from_ical(exported.content).walk("VEVENT")]
    assert len(events) == 1 and str(events[0]["SUMMARY"]) == "Meeting"
    assert anonymous.status_code == 401
    assert json.loads(anonymous.content)["error"]["code"] == "unauthenticated"
