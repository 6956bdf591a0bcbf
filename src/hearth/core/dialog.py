"""The deterministic part of a turn: pending questions, commands and templates, before any model.

In order, for each message:

1. **A pending action** of the conversation is answered first. A confirmation takes "yes"/"no" (or the
   button the channel rendered); a clarification takes the missing slot's value ("tomorrow at 3pm"). A
   message that answers neither drops the pending action and is handled as new.
2. **A confident match** (a command, or a template that explains the message) runs the intent directly:
   no model, so this works with no model server at all. Intents with side effects are confirmed first;
   missing required slots are asked for, one at a time.
3. **An unsure match** is not guessed: hearth asks "Did you mean ...?" and waits for a yes.
4. Anything else goes to the model, with the tools offered; a tool with side effects that the model
   calls is also confirmed with the user before it runs.

Pending actions live in the database (one per conversation, expiring after ``PENDING_TTL``), so a
question asked before a restart can be answered after it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from hearth.store.skills import PendingAction
from hearth.types import Actor, Button, Envelope, IntentMatch, SkillResult, ToolSpec, utcnow

from .permissions import Policy

PENDING_TTL = timedelta(minutes=15)
CONFIDENT = 0.85
PLAUSIBLE = 0.6

_YES = {"yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "confirm", "confirmed", "do it", "go ahead",
        "please do", "yes please", "correct", "right", "that's right", "affirmative", "ja", "oui", "si", "是", "好"}
_NO = {"no", "n", "nope", "nah", "cancel", "stop", "don't", "dont", "do not", "never mind", "nevermind", "abort",
       "no thanks", "no thank you", "否", "不"}


class IntentRouter(Protocol):
    def match(self, text: str, actor: Actor) -> IntentMatch | None: ...
    def fill(self, tool: str, params: Mapping[str, Any], slot: str, answer: str, actor: Actor) -> IntentMatch: ...
    def describe(self, tool: str) -> ToolSpec | None: ...


class PendingStore(Protocol):
    async def pending(self, conversation_id: str) -> PendingAction | None: ...
    async def set_pending(self, action: PendingAction) -> None: ...
    async def clear_pending(self, conversation_id: str, token: str | None = None) -> bool: ...


RunTool = Callable[[str, Mapping[str, Any]], Awaitable[SkillResult]]


@dataclass(frozen=True)
class Answer:
    """What the dialog says when it handles a message itself."""

    text: str
    buttons: tuple[Button, ...] = ()
    tool: str | None = None
    result: SkillResult | None = None


def _normalise(text: str) -> str:
    return re.sub(r"[^\w\s']", "", text.strip().lower())


def yes_or_no(envelope: Envelope, token: str) -> bool | None:
    """True for a yes, False for a no, None for anything else (a button press counts by its id)."""
    if envelope.action is not None:
        if envelope.action == f"confirm:{token}":
            return True
        if envelope.action == f"cancel:{token}":
            return False
        return None
    words = _normalise(envelope.text)
    if words in _YES:
        return True
    if words in _NO:
        return False
    return None


def confirm_buttons(token: str) -> tuple[Button, ...]:
    return (Button(f"confirm:{token}", "Yes"), Button(f"cancel:{token}", "No"))


class Dialog:
    def __init__(self, router: IntentRouter, pending: PendingStore, policy: Policy) -> None:
        self._router = router
        self._pending = pending
        self._policy = policy

    async def before_model(self, envelope: Envelope, conversation: str, run: RunTool) -> Answer | None:
        """Handle the message without a model if it can be; None hands it to the model."""
        actor = envelope.sender
        action = await self._pending.pending(conversation)
        if action is not None:
            if action.expires_at < utcnow():
                await self._pending.clear_pending(conversation)
            else:
                answer = await self._resume(action, envelope, conversation, run)
                if answer is not None:
                    return answer
        match = self._router.match(envelope.text, actor)
        if match is None:
            return None
        if match.reply is not None:
            return Answer(match.reply)
        if match.problems or match.confidence < PLAUSIBLE:
            return None
        if not self._policy.allows(actor, match.permission):
            return Answer("You are not allowed to do that.")
        if match.confidence < CONFIDENT:
            return await self._ask_confirm(conversation, match, f"Did you mean: {match.summary}?")
        return await self._proceed(conversation, match, run)

    async def _resume(self, action: PendingAction, envelope: Envelope, conversation: str,
                      run: RunTool) -> Answer | None:
        if action.kind == "confirm":
            verdict = yes_or_no(envelope, action.token)
            if verdict is None:
                await self._pending.clear_pending(conversation)
                return None  # the user moved on: treat the message as new
            if not await self._pending.clear_pending(conversation, action.token):
                return Answer("That question was already answered.")
            if not verdict:
                return Answer("OK, I won't do that.")
            return await self._run(action.tool, action.params, run)
        # a clarification: the message is the missing slot's value, unless it cancels
        if yes_or_no(envelope, action.token) is False:
            await self._pending.clear_pending(conversation)
            return Answer("OK, cancelled.")
        slot = action.missing[0]
        try:
            match = self._router.fill(action.tool, action.params, slot, envelope.text, envelope.sender)
        except Exception:  # the skill went away meanwhile
            await self._pending.clear_pending(conversation)
            return None
        if slot in match.problems:
            return Answer(f"Sorry — {match.problems[slot]}. {match.questions.get(slot) or 'Please try again.'}")
        await self._pending.clear_pending(conversation)
        return await self._proceed(conversation, match, run)

    async def _proceed(self, conversation: str, match: IntentMatch, run: RunTool) -> Answer:
        if match.missing:
            slot = match.missing[0]
            await self._save(conversation, "clarify", match, match.questions[slot], missing=match.missing)
            return Answer(match.questions[slot])
        if match.confirm:
            return await self._ask_confirm(conversation, match, f"Shall I {match.summary}?")
        return await self._run(match.tool, match.params, run)

    async def _ask_confirm(self, conversation: str, match: IntentMatch, question: str) -> Answer:
        token = await self._save(conversation, "confirm", match, question)
        return Answer(question, confirm_buttons(token))

    async def confirm_tool_call(self, conversation: str, tool: ToolSpec, arguments: Mapping[str, Any],
                                summary: str) -> Answer:
        """A model's call of a tool with side effects: ask the user before it runs."""
        match = IntentMatch(tool=tool.name, params=dict(arguments), confidence=1.0, summary=summary, confirm=True)
        return await self._ask_confirm(conversation, match, f"Shall I {summary}?")

    async def _save(self, conversation: str, kind: str, match: IntentMatch, prompt: str,
                    missing: tuple[str, ...] = ()) -> str:
        token = secrets.token_urlsafe(9)
        now = utcnow()
        await self._pending.set_pending(PendingAction(conversation, kind, match.tool, dict(match.params), missing,
                                                      prompt, token, now, now + PENDING_TTL))
        return token

    async def _run(self, tool: str, params: Mapping[str, Any], run: RunTool) -> Answer:
        result = await run(tool, params)
        text = result.text if not result.is_error else f"Sorry, that did not work: {result.text}"
        return Answer(text, tool=tool, result=result)
