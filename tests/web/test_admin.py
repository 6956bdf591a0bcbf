"""The management port: closed without ADMIN_TOKEN, guarded by token, role and address when open."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.hearth import ADMIN_TOKEN, RunningHearth, running_hearth

TOKEN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_admin_api_is_closed_without_admin_token(tmp_path: Path) -> None:
    async with running_hearth(tmp_path / "data", ai_model_endpoint="http://127.0.0.1:9") as hearth:
        async with httpx.AsyncClient() as client:
            for path in ("/admin/status", "/admin/users", "/metrics"):
                response = await client.get(hearth.admin_url + path, headers=hearth.auth())
                assert response.status_code == 503, path
                assert response.json()["error"]["code"] == "admin_disabled"
            created = await client.post(hearth.admin_url + "/admin/users", json={"name": "mallory"},
                                        headers=hearth.auth())
            assert created.status_code == 503
            assert (await client.get(hearth.admin_url + "/healthz")).status_code == 200
        assert await hearth.runtime.users.get_user_by_name("mallory") is None


async def test_admin_token_and_admin_keys_open_it(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(hearth.admin_url + "/admin/status")).status_code == 401
        wrong = await client.get(hearth.admin_url + "/admin/status", headers={"Authorization": "Bearer " + "x" * 27})
        assert wrong.status_code == 401
        status = await client.get(hearth.admin_url + "/admin/status", headers=TOKEN)
        assert status.status_code == 200
        assert status.json()["database"] == "sqlite"
        assert status.json()["endpoints"][0]["breaker"] == "closed"
        # an admin user's API key works too
        assert (await client.get(hearth.admin_url + "/admin/users", headers=hearth.auth())).status_code == 200


async def test_create_user_over_the_admin_api(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient() as client:
        created = await client.post(hearth.admin_url + "/admin/users", json={"name": "carol", "role": "user"},
                                    headers=TOKEN)
        assert created.status_code == 201
        key = created.json()["api_key"]
        again = await client.post(hearth.admin_url + "/admin/users", json={"name": "carol"}, headers=TOKEN)
        assert again.status_code == 409
        bad_role = await client.post(hearth.admin_url + "/admin/users", json={"name": "dan", "role": "god"},
                                     headers=TOKEN)
        assert bad_role.status_code == 400
        bad_json = await client.post(hearth.admin_url + "/admin/users", content=b"{", headers=TOKEN)
        assert bad_json.status_code == 400
        # carol can chat, but is not an admin
        models = await client.get(hearth.http_url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert models.status_code == 200
        denied = await client.get(hearth.admin_url + "/admin/users", headers={"Authorization": f"Bearer {key}"})
        assert denied.status_code == 403
        users = (await client.get(hearth.admin_url + "/admin/users", headers=TOKEN)).json()["users"]
    assert [u["name"] for u in users] == ["admin", "carol"]
    assert await hearth.runtime.users.get_user_by_name("dan") is None


async def test_metrics_count_turns(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(hearth.http_url + "/v1/chat/completions", headers=hearth.auth(),
                          json={"model": "hearth", "messages": [{"role": "user", "content": "hi"}]})
        metrics = await client.get(hearth.admin_url + "/metrics", headers=TOKEN)
    assert metrics.status_code == 200
    assert 'hearth_turns_total{channel="openai",outcome="ok"} 1.0' in metrics.text
    assert "hearth_model_first_token_seconds_bucket" in metrics.text


async def test_addresses_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    async with running_hearth(tmp_path / "data", ai_model_endpoint="http://127.0.0.1:9", admin_token=ADMIN_TOKEN,
                              hearth_admin_allow_ips="10.0.0.0/8") as hearth, httpx.AsyncClient() as client:
        response = await client.get(hearth.admin_url + "/admin/status", headers=TOKEN)
        health = await client.get(hearth.admin_url + "/healthz")
    assert response.status_code == 403
    assert health.status_code == 200
