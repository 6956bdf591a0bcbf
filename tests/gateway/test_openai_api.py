"""The OpenAI-compatible API, checked with the official ``openai`` SDK over real HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from hearth.testing.modelsim import ModelSimulator, Turn
from tests.support.hearth import RunningHearth


def client(hearth: RunningHearth, key: str | None = None, **kw: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=hearth.http_url + "/v1", api_key=key or hearth.admin_key, max_retries=0,
                              **kw)  # type: ignore[arg-type]


async def test_models_lists_hearth(hearth: RunningHearth) -> None:
    async with client(hearth) as api:
        models = await api.models.list()
        card = await api.models.retrieve("hearth")
        with pytest.raises(openai.NotFoundError):
            await api.models.retrieve("gpt-4o")
    assert [m.id for m in models.data] == ["hearth"]
    assert card.owned_by == "hearth"


async def test_non_streaming_completion(hearth: RunningHearth, sim: ModelSimulator) -> None:
    sim.script(Turn(text="Paris is the capital of France."))
    async with client(hearth) as api:
        raw = await api.chat.completions.with_raw_response.create(
            model="hearth", messages=[{"role": "user", "content": "Capital of France?"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Paris is the capital of France."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion" and completion.model == "hearth"
    assert len(raw.headers["x-hearth-conversation"]) == 32


async def test_streaming_completion(hearth: RunningHearth, sim: ModelSimulator) -> None:
    sim.script(Turn(tokens=["Str", "eam", "ed"]))
    async with client(hearth) as api:
        stream = await api.chat.completions.create(
            model="hearth", messages=[{"role": "user", "content": "stream it"}], stream=True)
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Streamed"
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_memory_is_kept_per_conversation_header_and_user_field(
    hearth: RunningHearth, sim: ModelSimulator,
) -> None:
    async with client(hearth) as api:
        headers = {"X-Hearth-Conversation": "project-x"}
        await api.chat.completions.create(model="hearth", messages=[{"role": "user", "content": "I like tea"}],
                                          extra_headers=headers)
        await api.chat.completions.create(model="hearth", messages=[
            {"role": "user", "content": "I like tea"}, {"role": "assistant", "content": "You said: I like tea"},
            {"role": "user", "content": "what do I like?"}], extra_headers=headers)
        user_turns = [m["content"] for m in sim.requests[-1].body["messages"] if m["role"] == "user"]
        # the client resent its history; hearth used its own memory, without duplicates
        assert user_turns == ["I like tea", "what do I like?"]

        await api.chat.completions.create(model="hearth", messages=[{"role": "user", "content": "hello"}],
                                          user="bob")
        user_turns = [m["content"] for m in sim.requests[-1].body["messages"] if m["role"] == "user"]
        assert user_turns == ["hello"]  # another conversation


async def test_idempotency_key_returns_the_stored_answer(hearth: RunningHearth, sim: ModelSimulator) -> None:
    sim.script(Turn(text="answer one"), Turn(text="answer two"))
    async with client(hearth) as api:
        headers = {"Idempotency-Key": "req-1"}
        first = await api.chat.completions.create(model="hearth", messages=[{"role": "user", "content": "q"}],
                                                  extra_headers=headers)
        second = await api.chat.completions.create(model="hearth", messages=[{"role": "user", "content": "q"}],
                                                   extra_headers=headers)
    assert first.choices[0].message.content == second.choices[0].message.content == "answer one"
    assert len(sim.requests) == 1


async def test_bad_key_and_unknown_model(hearth: RunningHearth, sim: ModelSimulator) -> None:
    async with client(hearth, key="hth_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB") as api:
        with pytest.raises(openai.AuthenticationError) as denied:
            await api.chat.completions.create(model="hearth", messages=[{"role": "user", "content": "x"}])
    assert denied.value.code == "invalid_api_key"
    async with client(hearth) as api:
        with pytest.raises(openai.NotFoundError) as missing:
            await api.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "model_not_found"
    assert sim.requests == []
    assert await hearth.runtime.conversations.count_messages() == 0


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "invalid_json"),
    (b"[]", "invalid_json"),
    (b'{"model": "hearth"}', "invalid_messages"),
    (b'{"model": "hearth", "messages": []}', "invalid_messages"),
    (b'{"model": "hearth", "messages": [{"role": "assistant", "content": "x"}]}', "invalid_messages"),
    (b'{"model": "hearth", "messages": [{"role": "user", "content": "  "}]}', "invalid_messages"),
    (b'{"model": "hearth", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
     "unsupported_content"),
    (b'{"model": "hearth", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}', "invalid_stream"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "missing_model"),
])
async def test_malformed_requests_get_400_and_change_nothing(
    hearth: RunningHearth, sim: ModelSimulator, body: bytes, code: str,
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(hearth.http_url + "/v1/chat/completions", content=body,
                                   headers={**hearth.auth(), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert await hearth.runtime.conversations.count_messages() == 0


async def test_oversized_body_is_refused(hearth: RunningHearth) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(hearth.http_url + "/v1/chat/completions", content=b"x" * 2_000_000,
                                   headers=hearth.auth())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


async def test_model_down_is_a_503_or_a_stream_error(hearth: RunningHearth, sim: ModelSimulator) -> None:
    await sim.stop()
    async with client(hearth) as api:
        with pytest.raises(openai.InternalServerError) as down:
            await api.chat.completions.create(model="hearth", messages=[{"role": "user", "content": "x"}])
        assert down.value.status_code == 503 and down.value.code == "model_unavailable"
        stream = await api.chat.completions.create(model="hearth", messages=[{"role": "user", "content": "y"}],
                                                   stream=True)
        with pytest.raises(openai.APIError, match="No language model is reachable"):
            async for _ in stream:
                pass


async def test_text_content_parts_are_accepted(hearth: RunningHearth, sim: ModelSimulator) -> None:
    async with client(hearth) as api:
        completion = await api.chat.completions.create(model="hearth", messages=[
            {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}]}])
    assert completion.choices[0].message.content == "You said: part one\ntwo"
