"""The chat platforms' outbox over the management API, through real HTTP on the admin port: the list and its
filters, a dead letter sent again (audited with the actor; the outbox worker wakes and tries it at once),
and refusals as problem JSON that change nothing."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.hearth import ADMIN_TOKEN, RunningHearth

TOKEN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BLOCKED = "Forbidden: bot was blocked by the user"
TEXT = "The boiler service is due on 3 April."


async def dead_letter(hearth: RunningHearth, channel: str = "telegram", address: str = "4242",
                      error: str = BLOCKED) -> int:
    """A message that failed for good, made the way the outbox worker makes one."""
    store = hearth.runtime.channel_store
    [item] = await store.enqueue(channel, address, [{"text": TEXT}])
    await store.mark_failed(item, error, retry_at=None)
    return item


async def sent_message(hearth: RunningHearth) -> int:
    store = hearth.runtime.channel_store
    [item] = await store.enqueue("slack", "D0123", [{"text": TEXT}])
    await store.mark_sent(item, "1700000000.000100")
    return item


def problem(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, str] = response.json()["error"]
    assert error["code"] == code
    return error["message"]


async def test_the_outbox_is_listed_newest_first_without_message_text(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient(base_url=hearth.admin_url, headers=TOKEN) as client:
        empty = await client.get("/admin/outbox")
        assert empty.status_code == 200 and empty.json() == {"items": []}

        token_url = "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0/sendMessage"
        dead = await dead_letter(hearth, error=f"{BLOCKED} ({token_url})")
        sent = await sent_message(hearth)
        listed = await client.get("/admin/outbox")
        assert listed.status_code == 200
        items: list[dict[str, Any]] = listed.json()["items"]
        assert [i["id"] for i in items] == [sent, dead]
        dead_item, sent_item = items[1], items[0]
        created = datetime.fromisoformat(dead_item.pop("created_at"))
        assert created.tzinfo is not None
        assert dead_item == {
            "id": dead, "channel": "telegram", "address": "4242", "conversation_id": None, "status": "dead",
            "attempts": 1, "last_error": f"{BLOCKED} (https://api.telegram.org/bot[redacted]/sendMessage)",
            "next_attempt_at": None, "platform_id": None, "sent_at": None}
        assert sent_item["status"] == "sent" and sent_item["platform_id"] == "1700000000.000100"
        assert datetime.fromisoformat(sent_item["sent_at"]) >= created
        # the payload is someone's conversation: never shown, and no secret slips through an error
        assert TEXT not in listed.text and "AAHdqTcv" not in listed.text and "payload" not in listed.text

        async def ids(**params: str) -> list[int]:
            response = await client.get("/admin/outbox", params=params)
            assert response.status_code == 200, response.text
            return [i["id"] for i in response.json()["items"]]

        assert await ids(status="dead") == [dead]
        assert await ids(status="sent") == [sent]
        assert await ids(status="pending") == []
        assert await ids(status="all", channel="slack") == [sent]
        assert await ids(status="dead", channel="slack") == []
        assert await ids(limit="1") == [sent]
        assert await ids(limit="1000") == [sent, dead]


@pytest.mark.parametrize("query", [{"status": "failed"}, {"limit": "0"}, {"limit": "1001"}, {"limit": "ten"},
                                   {"state": "dead"}])
async def test_a_bad_query_is_refused_with_what_is_wrong(hearth: RunningHearth, query: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=hearth.admin_url, headers=TOKEN) as client:
        message = problem(await client.get("/admin/outbox", params=query), 400, "invalid")
    assert next(iter(query)) in message


async def test_a_dead_letter_is_sent_again_and_audited(hearth: RunningHearth,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hearth.audit")
    dead = await dead_letter(hearth)
    async with httpx.AsyncClient(base_url=hearth.admin_url, headers=TOKEN) as client:
        retried = await client.post(f"/admin/outbox/{dead}/retry")
        assert retried.status_code == 200, retried.text
        item = retried.json()
        assert item["id"] == dead and item["status"] == "pending" and item["attempts"] == 0
        assert item["next_attempt_at"] is not None

        # the worker was woken, not left to its next look (up to 30 s away): it tries the message now; with no
        # Telegram channel configured here that attempt fails and is scheduled again
        for _ in range(250):
            [now] = (await client.get("/admin/outbox")).json()["items"]
            if now["attempts"] == 1:
                break
            await asyncio.sleep(0.02)
        assert now["status"] == "pending" and now["last_error"] == "the telegram channel is not configured"

        # it is no longer dead, so a second retry is a conflict, as is retrying a sent message
        again = await client.post(f"/admin/outbox/{dead}/retry")
        assert "not dead" in problem(again, 409, "not_dead")
        sent = await sent_message(hearth)
        problem(await client.post(f"/admin/outbox/{sent}/retry"), 409, "not_dead")
        for unknown in ("999999", "abc", "9" * 30):
            assert "no outbox message" in problem(await client.post(f"/admin/outbox/{unknown}/retry"), 404,
                                                  "not_found")

    audited = [r for r in caplog.records if r.name == "hearth.audit" and r.getMessage() == "admin.outbox_retried"]
    assert len(audited) == 1
    [record] = audited
    assert (record.actor, record.id, record.channel) == ("admin-token", dead, "telegram")  # type: ignore[attr-defined]
    assert TEXT not in caplog.text


async def test_the_outbox_needs_an_admin(hearth: RunningHearth) -> None:
    dead = await dead_letter(hearth)
    async with httpx.AsyncClient() as client:
        problem(await client.get(hearth.admin_url + "/admin/outbox"), 401, "unauthenticated")
        problem(await client.post(hearth.admin_url + f"/admin/outbox/{dead}/retry"), 401, "unauthenticated")
        wrong = {"Authorization": "Bearer " + "x" * 27}
        problem(await client.post(hearth.admin_url + f"/admin/outbox/{dead}/retry", headers=wrong), 401,
                "unauthenticated")
        created = await client.post(hearth.admin_url + "/admin/users", json={"name": "carol"}, headers=TOKEN)
        carol = {"Authorization": f"Bearer {created.json()['api_key']}"}
        problem(await client.get(hearth.admin_url + "/admin/outbox", headers=carol), 403, "forbidden")
        problem(await client.post(hearth.admin_url + f"/admin/outbox/{dead}/retry", headers=carol), 403, "forbidden")
        # the management API is not on the public port at all
        assert (await client.get(hearth.http_url + "/admin/outbox", headers=TOKEN)).status_code == 404
    assert (await hearth.runtime.channel_store.get(dead)).status == "dead"
