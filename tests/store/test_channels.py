"""The channels' tables on SQLite and PostgreSQL: outbox order and states, receipts, pairing codes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hearth.errors import InvalidRequest, NotFound
from hearth.store import Database, PlainTextCodec, UserRecord, UserRepository
from hearth.store.channels import CODE_ALPHABET, CODE_LENGTH, ChannelRepository
from hearth.types import utcnow


@pytest.fixture
def channels(db: Database) -> ChannelRepository:
    return ChannelRepository(db, PlainTextCodec())


async def test_outbox_keeps_order_per_address_and_payloads_round_trip(channels: ChannelRepository) -> None:
    first, second = await channels.enqueue("telegram", "42", [{"text": "one"}, {"text": "two ✓"}])
    [other] = await channels.enqueue("telegram", "43", [{"text": "elsewhere"}])
    due = await channels.due(utcnow())
    assert [i.id for i in due] == [first, other]  # "two" waits for "one"
    assert due[0].payload == {"text": "one"} and due[0].status == "pending" and due[0].attempts == 0

    await channels.mark_failed(first, "HTTP 500", retry_at=utcnow() + timedelta(minutes=1))
    assert [i.id for i in await channels.due(utcnow())] == [other]  # still holds "two" back
    await channels.mark_sent(other, "m-1")
    assert (await channels.get(other)).platform_id == "m-1"
    assert (await channels.get(first)).attempts == 1
    assert await channels.next_attempt() is not None

    await channels.mark_failed(first, "chat not found", retry_at=None)
    dead = await channels.list(status="dead")
    assert [i.id for i in dead] == [first] and dead[0].last_error == "chat not found"
    assert [i.id for i in await channels.due(utcnow())] == [second]  # a dead message no longer blocks

    again = await channels.retry(first)
    assert again.status == "pending" and again.attempts == 0
    with pytest.raises(InvalidRequest):
        await channels.retry(other)  # sent, not dead
    with pytest.raises(NotFound):
        await channels.retry(999_999)


async def test_a_channel_wide_wait_postpones_every_pending_message(channels: ChannelRepository) -> None:
    await channels.enqueue("telegram", "1", [{"text": "a"}])
    await channels.enqueue("telegram", "2", [{"text": "b"}])
    await channels.enqueue("slack", "C1", [{"text": "c"}])
    await channels.postpone_channel("telegram", utcnow() + timedelta(seconds=30))
    assert [i.channel for i in await channels.due(utcnow())] == ["slack"]
    assert len(await channels.due(utcnow() + timedelta(seconds=31))) == 3


async def test_receipts_recognise_a_redelivery(channels: ChannelRepository) -> None:
    assert await channels.first_receipt("slack", "Ev123")
    assert not await channels.first_receipt("slack", "Ev123")
    assert await channels.first_receipt("telegram", "Ev123")  # per channel
    assert await channels.forget_receipts(utcnow() + timedelta(seconds=1)) == 2
    assert await channels.first_receipt("slack", "Ev123")


async def test_pairing_codes_are_stable_until_approved_and_link_the_account(
        channels: ChannelRepository, users: UserRepository, alice: UserRecord) -> None:
    code = await channels.pairing_code("telegram", "777", "Al", ttl=timedelta(hours=1))
    assert len(code.code) == CODE_LENGTH and set(code.code) <= set(CODE_ALPHABET)
    assert (await channels.pairing_code("telegram", "777", "Al", ttl=timedelta(hours=1))).code == code.code
    assert [p.code for p in await channels.pending_pairings()] == [code.code]

    with pytest.raises(NotFound):
        await channels.approve_pairing("NOPE2345", alice.id)
    approved = await channels.approve_pairing(code.code.lower(), alice.id)
    assert approved.approved_user_id == alice.id
    found = await users.find_identity("telegram", "777")
    assert found is not None and found[1].id == alice.id and found[0].display_name == "Al"
    with pytest.raises(NotFound):
        await channels.approve_pairing(code.code, alice.id)  # used
    assert await channels.pending_pairings() == []


async def test_expired_codes_are_replaced_and_cannot_be_approved(channels: ChannelRepository,
                                                                 alice: UserRecord) -> None:
    old = await channels.pairing_code("whatsapp", "4915", None, ttl=timedelta(seconds=-1))
    with pytest.raises(NotFound):
        await channels.approve_pairing(old.code, alice.id)
    new = await channels.pairing_code("whatsapp", "4915", None, ttl=timedelta(hours=1))
    assert new.code != old.code


async def test_an_account_linked_to_someone_else_is_not_taken_over(channels: ChannelRepository,
                                                                   users: UserRepository,
                                                                   alice: UserRecord) -> None:
    bob = await users.create_user("bob")
    await users.link_identity(bob.id, "slack", "U1")
    code = await channels.pairing_code("slack", "U1", None, ttl=timedelta(hours=1))
    with pytest.raises(InvalidRequest):
        await channels.approve_pairing(code.code, alice.id)
    found = await users.find_identity("slack", "U1")
    assert found is not None and found[1].id == bob.id
