"""API-key authentication: argon2 hashes, a short cache, one verification for many simultaneous callers."""

from __future__ import annotations

import asyncio

import pytest

from hearth.errors import InvalidRequest, Unauthenticated
from hearth.runtime import Runtime
from hearth.security.apikeys import ApiKeyHasher, parse_prefix


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
