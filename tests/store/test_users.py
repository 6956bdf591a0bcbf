"""Users, API keys and channel identities, on both databases."""

from __future__ import annotations

from datetime import UTC

import pytest

from hearth.errors import InvalidRequest, NotFound
from hearth.store import UserRecord, UserRepository


async def test_create_and_look_up_users(users: UserRepository) -> None:
    alice = await users.create_user("alice", role="admin", timezone="Europe/Berlin")
    bob = await users.create_user("bob")
    assert (alice.name, alice.role, alice.timezone, alice.disabled) == ("alice", "admin", "Europe/Berlin", False)
    assert (bob.role, bob.timezone) == ("user", None)
    assert alice.created_at.tzinfo is UTC
    assert await users.get_user(alice.id) == alice
    assert await users.get_user_by_name("bob") == bob
    assert await users.get_user(10_000) is None
    assert await users.get_user_by_name("carol") is None
    assert await users.list_users() == [alice, bob]
    assert await users.count_users() == 2


async def test_duplicate_name_is_refused_and_changes_nothing(users: UserRepository, alice: UserRecord) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await users.create_user("alice", role="admin")
    assert caught.value.code == "exists"
    assert await users.list_users() == [alice]


async def test_set_role_and_disabled(users: UserRepository, alice: UserRecord) -> None:
    assert (await users.set_role(alice.id, "admin")).role == "admin"
    disabled = await users.set_disabled(alice.id, True)
    assert disabled.disabled is True
    assert disabled.role == "admin"
    assert await users.get_user(alice.id) == disabled
    assert (await users.set_disabled(alice.id, False)).disabled is False
    with pytest.raises(NotFound):
        await users.set_role(10_000, "admin")
    with pytest.raises(NotFound):
        await users.set_disabled(10_000, True)


async def test_api_keys(users: UserRepository, alice: UserRecord) -> None:
    key = await users.add_api_key(alice.id, "hk_abc123", "argon2-hash", label="laptop")
    assert (key.user_id, key.prefix, key.secret_hash, key.label) == (alice.id, "hk_abc123", "argon2-hash", "laptop")
    assert key.last_used_at is None
    assert key.revoked_at is None
    assert "argon2-hash" not in repr(key)

    assert await users.find_api_key("hk_abc123") == (key, alice)
    assert await users.find_api_key("hk_nope") is None

    await users.touch_api_key(key.id)
    touched = (await users.list_api_keys(alice.id))[0]
    assert touched.last_used_at is not None
    assert touched.last_used_at.tzinfo is UTC
    assert touched.last_used_at >= key.created_at

    with pytest.raises(InvalidRequest) as caught:
        await users.add_api_key(alice.id, "hk_abc123", "other-hash")
    assert caught.value.code == "exists"
    with pytest.raises(NotFound):
        await users.add_api_key(10_000, "hk_orphan", "hash")

    second = await users.add_api_key(alice.id, "hk_def456", "hash-2")
    await users.revoke_api_key(key.id)
    assert await users.find_api_key("hk_abc123") is None
    listed = await users.list_api_keys(alice.id)
    assert [k.id for k in listed] == [key.id, second.id]
    revoked_at = listed[0].revoked_at
    assert revoked_at is not None
    await users.revoke_api_key(key.id)  # again: keeps the first time
    assert (await users.list_api_keys(alice.id))[0].revoked_at == revoked_at
    with pytest.raises(NotFound):
        await users.revoke_api_key(10_000)


async def test_keys_of_disabled_users_are_not_found(users: UserRepository, alice: UserRecord) -> None:
    await users.add_api_key(alice.id, "hk_abc123", "hash")
    await users.set_disabled(alice.id, True)
    assert await users.find_api_key("hk_abc123") is None
    await users.set_disabled(alice.id, False)
    found = await users.find_api_key("hk_abc123")
    assert found is not None
    assert found[1].disabled is False


async def test_identities(users: UserRepository, alice: UserRecord) -> None:
    bob = await users.create_user("bob")
    link = await users.link_identity(alice.id, "telegram", "1001", display_name="Alice")
    assert (link.user_id, link.channel, link.external_id, link.display_name) == (alice.id, "telegram", "1001", "Alice")
    assert link.created_at.tzinfo is UTC

    assert await users.link_identity(alice.id, "telegram", "1001") == link  # idempotent
    renamed = await users.link_identity(alice.id, "telegram", "1001", display_name="Alice L.")
    assert (renamed.id, renamed.display_name) == (link.id, "Alice L.")

    with pytest.raises(InvalidRequest) as caught:
        await users.link_identity(bob.id, "telegram", "1001")
    assert caught.value.code == "exists"
    with pytest.raises(NotFound):
        await users.link_identity(10_000, "slack", "U1")

    same_id_other_channel = await users.link_identity(bob.id, "slack", "1001")
    assert await users.find_identity("telegram", "1001") == (renamed, alice)
    assert await users.find_identity("slack", "1001") == (same_id_other_channel, bob)
    assert await users.find_identity("slack", "nobody") is None
