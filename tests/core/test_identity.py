"""API-key authentication: argon2 hashes, a short cache, one verification for many simultaneous callers; and
where a chat-platform sender hearth does not know may be given a pairing code."""

from __future__ import annotations

import asyncio

import pytest

from hearth.core.identity import PAIR_PRIVATELY, Refusal
from hearth.errors import InvalidRequest, Unauthenticated
from hearth.runtime import Runtime
from hearth.security.apikeys import ApiKeyHasher, parse_prefix
from hearth.types import Actor, Event


class CountingHasher(ApiKeyHasher):
    def __init__(self) -> None:
        super().__init__()
        self.verifications = 0

    def verify(self, secret_hash: str, token: str) -> bool:
        self.verifications += 1
        return super().verify(secret_hash, token)


@pytest.fixture
def hasher(runtime: Runtime) -> CountingHasher:
    counting = CountingHasher()
    runtime.auth._hasher = counting
    return counting


async def test_keys_are_hashed_and_shown_once(runtime: Runtime) -> None:
    created = await runtime.auth.create_user("bob", "user")
    prefix = parse_prefix(created.api_key)
    assert prefix is not None
    found = await runtime.users.find_api_key(prefix)
    assert found is not None
    record, user = found
    assert user.name == "bob"
    assert record.secret_hash.startswith("$argon2id$") and created.api_key not in record.secret_hash
    assert created.api_key not in repr(record)


async def test_many_simultaneous_checks_of_one_key_share_one_verification(runtime: Runtime,
                                                                          hasher: CountingHasher) -> None:
    created = await runtime.auth.create_user("carol")
    actors = await asyncio.gather(*(runtime.auth.authenticate(created.api_key, channel=f"c{i % 3}")
                                    for i in range(50)))
    assert hasher.verifications == 1
    assert {a.name for a in actors} == {"carol"}
    assert {a.channel for a in actors} == {"c0", "c1", "c2"}


@pytest.mark.parametrize("token", [None, "", "Bearer x", "hth_short_x", "hth_AAAAAAAAAAAA_" + "B" * 32])
async def test_bad_tokens_are_refused(runtime: Runtime, token: str | None) -> None:
    with pytest.raises(Unauthenticated):
        await runtime.auth.authenticate(token)


async def test_a_wrong_secret_with_a_real_prefix_is_refused(runtime: Runtime, hasher: CountingHasher) -> None:
    created = await runtime.auth.create_user("dave")
    forged = created.api_key[:-1] + ("A" if created.api_key[-1] != "A" else "B")
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="wrong API key"):
            await runtime.auth.authenticate(forged)
    assert hasher.verifications == 3  # failures are never cached: each guess costs a full verification


async def test_revoked_keys_stop_working_when_the_cache_is_cleared(runtime: Runtime) -> None:
    created = await runtime.auth.create_user("erin")
    await runtime.auth.authenticate(created.api_key)
    keys = await runtime.users.list_api_keys(created.user.id)
    await runtime.users.revoke_api_key(keys[0].id)
    runtime.auth.forget()
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        await runtime.auth.authenticate(created.api_key)


@pytest.mark.parametrize(("name", "role"), [("", "user"), ("a b", "user"), ("x" * 65, "user"), ("ok", "root")])
async def test_bad_user_names_and_roles(runtime: Runtime, name: str, role: str) -> None:
    with pytest.raises(InvalidRequest):
        await runtime.auth.create_user(name, role)
    assert [u.name for u in await runtime.users.list_users()] == ["admin"]


# --- people on chat platforms: where a pairing code may be shown ------------------------------------------------


async def test_a_pairing_code_is_given_only_in_a_private_chat(runtime: Runtime) -> None:
    events: list[Event] = []
    runtime.bus.subscribe(events.append, "identity.")
    in_group = await runtime.identities.resolve("telegram", "100", "Ann", policy="pairing", private=False)
    assert in_group == Refusal(PAIR_PRIVATELY) and in_group.code is None
    assert "private message" in PAIR_PRIVATELY and "hearth users pair" not in PAIR_PRIVATELY
    assert await runtime.channel_store.pending_pairings() == []  # no code made that nobody may see
    assert [(e.name, e.properties) for e in events] == [
        ("identity.refused", {"channel": "telegram", "reason": "not_private"})]

    in_private = await runtime.identities.resolve("telegram", "100", "Ann", policy="pairing")
    assert isinstance(in_private, Refusal) and in_private.code and in_private.code in (in_private.text or "")
    [pending] = await runtime.channel_store.pending_pairings()
    assert pending.code == in_private.code and pending.external_id == "100"
    assert events[-1].name == "identity.pairing"


async def test_where_a_message_was_written_does_not_change_the_other_policies(runtime: Runtime) -> None:
    opened = await runtime.identities.resolve("slack", "U9", "Bo", policy="open", private=False)
    assert isinstance(opened, Actor) and opened.identity == "U9"
    assert await runtime.identities.resolve("slack", "U9", "Bo", policy="pairing", private=False) == opened
    refused = await runtime.identities.resolve("slack", "U8", None, policy="allowlist", private=False)
    assert refused == Refusal(None)
    listed = await runtime.identities.resolve("slack", "U7", None, policy="allowlist", allowlist=frozenset({"U7"}),
                                              private=False)
    assert isinstance(listed, Actor)
