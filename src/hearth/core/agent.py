"""The agent: one turn of a conversation, from a stored user message to the assistant's answer.

``Agent.handle`` checks the sender's permission, then lets the dialog (``core.dialog``) answer without a
model when it can: a pending question, a command, a template match. Otherwise it builds the prompt from
memory, streams the model's answer as ``Reply`` deltas and runs the tool-call loop: tool calls the model
asks for go to the tool registry, their results (errors included: a failing tool is a result the model
sees, never a crashed turn) go back to the model, for at most ``max_tool_rounds`` rounds; the last round
offers no tools, so the model has to answer in words. A tool with side effects is not run on the model's
say-so: the turn ends with a question to the user, and their "yes" runs it.

The agent does not store anything itself: the messages it produced are collected on the ``Turn``,
and the inbox stores them with the turn's outcome in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from hearth.settings import AgentSettings
from hearth.store.records import ConversationRecord, MessageRecord, NewMessage
from hearth.types import (
    Actor,
    AssistantContent,
    Button,
    ChatRequest,
    Envelope,
    Event,
    Reply,
    SkillCall,
    SkillResult,
    ToolCall,
    ToolResultContent,
    ToolSpec,
)

from .dialog import Answer, Dialog
from .memory import Memory
from .permissions import Policy
from .ports import ChatModel, EventSink, ToolRegistry

TOOL_RESULT_LIMIT = 16_000
TOOL_TIMEOUT = 120.0


class NoTools:
    """The registry used when no skills are loaded: offers nothing."""

    def tools_for(self, actor: object) -> Sequence[ToolSpec]:
        return ()

    async def call(self, call: SkillCall) -> SkillResult:
        return SkillResult(call.id, call.name, f"unknown tool {call.name!r}", is_error=True,
                           error_code="unknown_tool")


@dataclass
class Turn:
    """The state of one turn while it runs: what it answers and what it produced."""

    envelope: Envelope
    conversation: ConversationRecord
    message: MessageRecord
    produced: list[NewMessage] = field(default_factory=list)
    text: str = ""
    buttons: tuple[Button, ...] = ()


class Agent:
    def __init__(
        self,
        model: ChatModel,
        memory: Memory,
        tools: ToolRegistry,
        policy: Policy,
        events: EventSink,
        settings: AgentSettings,
        *,
        reply_tokens: int | None = None,
        dialog: Dialog | None = None,
    ) -> None:
        self._model = model
        self._memory = memory
        self._tools = tools
        self._policy = policy
        self._events = events
        self._settings = settings
        self._reply_tokens = reply_tokens
        self._dialog = dialog

    async def handle(self, turn: Turn) -> AsyncGenerator[Reply, None]:
        """Answer ``turn.envelope``, yielding text deltas; the produced messages land on ``turn``.

        Raises a ``HearthError`` (``PermissionDenied``, ``ModelError`` ...) when the turn cannot be
        answered; the caller turns it into the user's error message.
        """
        envelope = turn.envelope
        actor = envelope.sender
        self._policy.check(actor, "chat.send", turn.conversation.id)
        tools = self._allowed_tools(actor)
        if self._dialog is not None:
            async def run(tool: str, params: Mapping[str, Any]) -> SkillResult:
                call = ToolCall(f"direct_{turn.message.id}", tool, params)
                return await self._run_tool(call, turn, {t.name for t in tools})

            answer = await self._dialog.before_model(envelope, turn.conversation.id, run)
            if answer is not None:
                yield self._answer(turn, answer)
                return
        prompt = list(await self._memory.build_prompt(turn.conversation, turn.message, tools))
        rounds = self._settings.max_tool_rounds
        for round_number in range(1, rounds + 2):
            offered = tools if round_number <= rounds else ()
            request = ChatRequest(messages=tuple(prompt), tools=offered, max_tokens=self._reply_tokens)
            text_parts: list[str] = []
            calls: list[ToolCall] = []
            meta: dict[str, Any] = {}
            async with aclosing(self._model.stream(request)) as chunks:
                async for chunk in chunks:
                    if chunk.text:
                        text_parts.append(chunk.text)
                        turn.text += chunk.text
                        yield Reply(turn.conversation.id, envelope.id, chunk.text)
                    if chunk.tool_calls:
                        calls.extend(chunk.tool_calls)
                    if chunk.done:
                        meta["endpoint"] = chunk.endpoint
                        if chunk.usage is not None:
                            meta["usage"] = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
            text = "".join(text_parts)
            if not calls or not offered:
                turn.produced.append(NewMessage("assistant", text, {**meta, "reply": turn.text}))
                return
            meta["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in calls]
            turn.produced.append(NewMessage("assistant", text, meta))
            prompt.append(AssistantContent(text, tuple(calls)))
            by_name = {t.name: t for t in offered}
            needs_yes = [c for c in calls if c.name in by_name and by_name[c.name].confirm]
            if needs_yes and self._dialog is not None:
                yield await self._ask_first(turn, needs_yes[0], by_name[needs_yes[0].name], calls)
                return
            for call in calls:
                result = await self._run_tool(call, turn, {t.name for t in offered})
                turn.produced.append(NewMessage("tool", result.content, {
                    "call_id": call.id, "name": call.name, "is_error": result.is_error}))
                prompt.append(ToolResultContent(call.id, call.name, result.content, result.is_error))

    def _allowed_tools(self, actor: Actor) -> tuple[ToolSpec, ...]:
        """The tools this actor's roles grant; permissions are decided here, not by each skill."""
        if not self._policy.allows(actor, "tool.call"):
            return ()
        return tuple(t for t in self._tools.tools_for(actor)
                     if self._policy.allows(actor, t.permission or f"tool.{t.name}"))

    def _answer(self, turn: Turn, answer: Answer) -> Reply:
        """A reply the dialog made without the model."""
        turn.text += answer.text
        turn.buttons = answer.buttons
        meta: dict[str, Any] = {"reply": turn.text, "direct": True}
        if answer.tool is not None:
            meta["tool"] = answer.tool
            meta["ok"] = answer.result is not None and not answer.result.is_error
        turn.produced.append(NewMessage("assistant", answer.text, meta))
        return Reply(turn.conversation.id, turn.envelope.id, answer.text, buttons=answer.buttons)

    async def _ask_first(self, turn: Turn, call: ToolCall, spec: ToolSpec, calls: Sequence[ToolCall]) -> Reply:
        """The model wants a tool with side effects: record the calls as not run, and ask the user."""
        assert self._dialog is not None
        for each in calls:
            turn.produced.append(NewMessage("tool", "Not run: the user was asked to confirm first.", {
                "call_id": each.id, "name": each.name, "is_error": True}))
        arguments = ", ".join(f"{k}: {v}" for k, v in call.arguments.items())
        summary = f"{spec.description[:1].lower()}{spec.description[1:]}" + (f" — {arguments}" if arguments else "")
        answer = await self._dialog.confirm_tool_call(turn.conversation.id, spec, call.arguments, summary)
        return self._answer(turn, answer)

    def completed(self, turn: Turn, stored: Sequence[MessageRecord]) -> None:
        """The turn's answer is stored: memory adds it to what it knows of the conversation."""
        self._memory.remember(turn.conversation.id, [turn.message, *stored])

    async def _run_tool(self, call: ToolCall, turn: Turn, offered: set[str]) -> SkillResult:
        actor = turn.envelope.sender
        if call.name not in offered:
            return SkillResult(call.id, call.name, f"There is no tool named {call.name!r}.", True, "unknown_tool")
        if "_unparsed" in call.arguments:
            return SkillResult(call.id, call.name, "The tool arguments were not a valid JSON object; "
                               "call the tool again with valid JSON arguments.", True, "bad_arguments")
        skill_call = SkillCall(call.id, call.name, call.arguments, actor, turn.conversation.id)
        try:
            async with asyncio.timeout(TOOL_TIMEOUT):
                result = await self._tools.call(skill_call)
        except TimeoutError:
            result = SkillResult(call.id, call.name, f"The tool {call.name} did not finish in time.", True,
                                 "timeout")
        except Exception as exc:  # the registry should not raise; a bug there must not end the turn
            result = SkillResult(call.id, call.name, f"The tool {call.name} failed: {type(exc).__name__}.",
                                 True, "tool_crashed")
        if len(result.content) > TOOL_RESULT_LIMIT:
            result = SkillResult(result.call_id, result.name,
                                 result.content[:TOOL_RESULT_LIMIT] + "\n[result truncated]",
                                 result.is_error, result.error_code)
        self._events.emit(Event("tool.called", actor, {
            "tool": call.name, "ok": not result.is_error, "error": result.error_code,
            "conversation": turn.conversation.id}))
        return result

