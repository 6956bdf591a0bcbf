"""The server as clients meet it: HTTP/1.1, HTTP/2 (TLS and h2c), TLS 1.3, health and readiness, ports."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest
import websockets

from hearth.testing.modelsim import ModelSimulator
from tests.support.hearth import ADMIN_TOKEN, RunningHearth, running_hearth
from tests.support.tls import make_certificate


async def test_health_and_readiness_on_every_port(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient() as client:
        for port in hearth.listeners.ports.values():
            base = f"http://127.0.0.1:{port}"
            assert (await client.get(base + "/healthz")).json() == {"status": "ok"}
            ready = await client.get(base + "/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "ready"
            assert set(ready.json()["checks"]) == {"database", "model"}


async def test_readiness_names_what_is_not_ready(tmp_path: Path) -> None:
    async with running_hearth(tmp_path / "data", ai_model_endpoint="http://127.0.0.1:9") as hearth, \
            httpx.AsyncClient() as client:
            ready = await client.get(hearth.admin_url + "/readyz")
            live = await client.get(hearth.admin_url + "/healthz")
    assert live.status_code == 200
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready" and body["failing"] == ["model"]
    assert "connection refused" in body["checks"]["model"]["detail"]
    assert body["checks"]["database"]["ok"] is True


async def test_h2c_prior_knowledge(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        response = await client.get(hearth.http_url + "/healthz")
        models = await client.get(hearth.http_url + "/v1/models", headers=hearth.auth())
    assert response.http_version == "HTTP/2" and response.status_code == 200
    assert models.http_version == "HTTP/2" and models.json()["data"][0]["id"] == "hearth"


async def test_tls_with_http2_alpn_and_tls13(sim: ModelSimulator, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    async with running_hearth(tmp_path / "data", ai_model_endpoint=sim.url, hearth_tls_cert=cert,
                              hearth_tls_key=key) as hearth:
        context = ssl.create_default_context(cafile=str(cert))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        async with httpx.AsyncClient(http2=True, verify=context) as client:
            response = await client.post(hearth.http_url + "/v1/chat/completions", headers=hearth.auth(),
                                         json={"model": "hearth", "messages": [{"role": "user", "content": "hi"}]})
            tls_version = response.extensions["network_stream"].get_extra_info("ssl_object").version()
        assert response.http_version == "HTTP/2"
        assert tls_version == "TLSv1.3"
        assert response.json()["choices"][0]["message"]["content"] == "You said: hi"
        # WebSocket over TLS on the WebSocket port (a fresh context: httpx put "h2" in the other's ALPN list)
        ws_context = ssl.create_default_context(cafile=str(cert))
        async with websockets.connect(hearth.ws_port_url, ssl=ws_context, additional_headers=hearth.auth()) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
        # and plain HTTP on a TLS port is refused
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(hearth.http_url.replace("https", "http") + "/healthz")


async def test_tls_min_version_13_refuses_tls12(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    async with running_hearth(tmp_path / "data", ai_model_endpoint="http://127.0.0.1:9", hearth_tls_cert=cert,
                              hearth_tls_key=key, hearth_tls_min_version="1.3") as hearth:
        old = ssl.create_default_context(cafile=str(cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        async with httpx.AsyncClient(verify=old) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(hearth.http_url + "/healthz")
        new = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=new) as client:
            assert (await client.get(hearth.http_url + "/healthz")).status_code == 200


async def test_ports_serve_their_own_routes(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient() as client:
        admin_on_public = await client.get(hearth.http_url + "/admin/status", headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}"})
        metrics_on_public = await client.get(hearth.http_url + "/metrics")
        api_on_ws_port = await client.get(f"http://127.0.0.1:{hearth.listeners.ports['ws']}/v1/models",
                                          headers=hearth.auth())
        api_on_admin = await client.get(hearth.admin_url + "/v1/models", headers=hearth.auth())
    assert admin_on_public.status_code == 404
    assert metrics_on_public.status_code == 404
    assert api_on_ws_port.status_code == 404
    assert api_on_admin.status_code == 404


async def test_request_ids(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient() as client:
        given = await client.get(hearth.http_url + "/healthz", headers={"X-Request-ID": "abc-123"})
        made = await client.get(hearth.http_url + "/healthz", headers={"X-Request-ID": "bad id;drop"})
    assert given.headers["x-request-id"] == "abc-123"
    assert made.headers["x-request-id"] != "bad id;drop" and len(made.headers["x-request-id"]) == 16
