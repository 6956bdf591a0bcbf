"""Context memory: the prompt for a turn, built within the model's token budget.

The prompt is the system prompt (plus the conversation's summary, if any), then the most recent whole
turns that fit, then the new message. When older turns no longer fit, they are summarised by the model
together with the previous summary, the new summary is stored with the id of the last message it
covers, and later prompts use it. Summarising keeps the recent part at about half the budget, so a
long conversation is summarised once every several turns rather than on every one.

If the model cannot summarise (it is down, or refuses), the older turns are left out for this turn
and a ``memory.summary_failed`` event is emitted; the next turn tries again.

Reading and measuring a conversation's whole history on every turn would cost more than everything
else a turn does, so the turns since the summary are kept per conversation (an LRU of
``cache_size`` conversations). The inbox hands each completed turn to ``remember``; the
conversation's ``last_turn`` tells when turns were completed elsewhere (another process on the same
database), and only those are read. A conversation whose summary failed is forgotten, so that the
next turn reads and summarises it whole.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from hearth.errors import ContextTooLong, ModelError
from hearth.settings import MemorySettings
from hearth.store.records import ConversationRecord, MessageRecord
from hearth.types import (
    AssistantContent,
    ChatRequest,
    Event,
    ModelMessage,
    SystemContent,
    ToolCall,
    ToolResultContent,
    ToolSpec,
    UserContent,
)

from .ports import ChatModel, ConversationStore, EventSink
from .tokens import estimate_message, estimate_text, estimate_tools

SUMMARY_INSTRUCTIONS = (
    "You maintain the memory of a conversation between a user and an assistant. Write a concise summary "
    "of the conversation below, merged with the earlier summary if one is given. Keep facts about the "
    "user, decisions, commitments, names, numbers and open questions; drop small talk. Write in the "
    "third person, at most {words} words, as plain text."
)
HISTORY_WINDOW = 400


@dataclass(frozen=True, slots=True)
class _Turn:
    """One user message with the assistant and tool messages that answered it."""

    messages: tuple[ModelMessage, ...]
    turn_id: int  # the user message's id: what a summary records as covered
    tokens: int


@dataclass(slots=True)
class _Memo:
    """What memory knows of one conversation: its summary and the turns after it."""

    summary: str | None
    summary_upto: int | None
    turns: list[_Turn] = field(default_factory=list)
    last_turn: int = 0  # the newest turn in ``turns`` (or covered by the summary)


def to_model_message(record: MessageRecord) -> ModelMessage:
    """A stored message as model content (tool calls and results keep their ids and names)."""
    if record.role == "user":
        return UserContent(record.content)
    if record.role == "tool":
        return ToolResultContent(
            call_id=str(record.meta.get("call_id", "")), name=str(record.meta.get("name", "")),
            text=record.content, is_error=bool(record.meta.get("is_error", False)))
    calls = tuple(
        ToolCall(id=str(c.get("id", "")), name=str(c.get("name", "")), arguments=dict(c.get("arguments") or {}))
        for c in record.meta.get("tool_calls", ()) if isinstance(c, dict)
    )
    return AssistantContent(record.content, calls)


def _group_turns(records: Sequence[MessageRecord]) -> list[_Turn]:
    turns: list[_Turn] = []
    current: list[ModelMessage] = []
    turn_id = 0
    for record in records:
        if record.role == "user" and current:
            turns.append(_Turn(tuple(current), turn_id, sum(estimate_message(m) for m in current)))
            current = []
        current.append(to_model_message(record))
        turn_id = record.reply_to if record.reply_to is not None else record.id
    if current:
        turns.append(_Turn(tuple(current), turn_id, sum(estimate_message(m) for m in current)))
    # a window may start in the middle of a turn: drop replies whose question fell outside it
    while turns and not isinstance(turns[0].messages[0], UserContent):
        turns.pop(0)
    return turns


class Memory:
    def __init__(
        self, conversations: ConversationStore, model: ChatModel, settings: MemorySettings, events: EventSink,
        *, cache_size: int = 1000,
    ) -> None:
        self._store = conversations
        self._model = model
        self._settings = settings
        self._events = events
        self._cache_size = cache_size
        self._memos: OrderedDict[str, _Memo] = OrderedDict()
        self._system_cost: dict[str | None, int] = {}

    @property
    def prompt_budget(self) -> int:
        return self._settings.context_tokens - self._settings.reply_tokens

    async def build_prompt(
        self, conversation: ConversationRecord, message: MessageRecord, tools: Sequence[ToolSpec] = (),
    ) -> tuple[ModelMessage, ...]:
        """The messages to send for ``message`` (a stored user message) in ``conversation``."""
        current = UserContent(message.content)
        fixed = estimate_tools(list(tools)) + estimate_message(current)
        if fixed + self._system_tokens(None) > self.prompt_budget:
            raise ContextTooLong(
                f"message {message.id} needs ~{fixed} tokens, budget {self.prompt_budget}",
                user_message="That message is too long for the model's context; please shorten it or "
                             "send it as a file.")
        memo = await self._recall(conversation, message)
        turns = memo.turns
        summary = memo.summary
        available = self.prompt_budget - fixed - self._system_tokens(summary)
        kept = self._fit(turns, available)
        if len(kept) < len(turns):
            older = turns[: len(turns) - len(kept)]
            # leave room to grow: keep about half the budget for recent turns after summarising
            recent = self._fit(kept, available // 2)
            older = older + kept[: len(kept) - len(recent)]
            new_summary = await self._summarise(conversation, summary, older)
            if new_summary is not None:
                summary = new_summary
                memo.summary, memo.summary_upto, memo.turns = summary, older[-1].turn_id, list(recent)
                available = self.prompt_budget - fixed - self._system_tokens(summary)
                kept = self._fit(recent, available)
            else:
                # this turn goes without the older turns; the next one reads them again and retries
                self._memos.pop(conversation.id, None)
        system = self._system_text(summary)
        messages: list[ModelMessage] = [SystemContent(system)] if system else []
        for turn in kept:
            messages.extend(turn.messages)
        messages.append(current)
        return tuple(messages)

    async def _recall(self, conversation: ConversationRecord, message: MessageRecord) -> _Memo:
        """The conversation's summary and turns before ``message``: cached, or read from the store."""
        memo = self._memos.get(conversation.id)
        if (memo is not None and memo.last_turn < message.id
                and (memo.summary_upto or 0) >= (conversation.summary_upto or 0)):
            self._memos.move_to_end(conversation.id)
            if (conversation.last_turn or 0) > memo.last_turn:  # turns completed by another process
                records = await self._store.history(conversation.id, after_id=memo.last_turn,
                                                    before_id=message.id, limit=HISTORY_WINDOW)
                self._append(memo, _group_turns(records))
            return memo
        memo = _Memo(conversation.summary, conversation.summary_upto, last_turn=conversation.summary_upto or 0)
        if conversation.last_turn is None and conversation.summary_upto is None:
            records = []  # no turn of this conversation has completed: nothing to read
        else:
            records = await self._store.history(
                conversation.id, after_id=conversation.summary_upto, before_id=message.id, limit=HISTORY_WINDOW)
        self._append(memo, _group_turns(records))
        self._memos[conversation.id] = memo
        if len(self._memos) > self._cache_size:
            self._memos.popitem(last=False)
        return memo

    def remember(self, conversation_id: str, records: Sequence[MessageRecord]) -> None:
        """Add a just-completed turn (its user message, then what was stored for it) to the cache."""
        memo = self._memos.get(conversation_id)
        if memo is None:
            return
        turns = _group_turns(records)
        if turns and turns[0].turn_id > memo.last_turn:
            self._append(memo, turns)
        else:  # out of order: let the next turn read the store
            del self._memos[conversation_id]

    @staticmethod
    def _append(memo: _Memo, turns: list[_Turn]) -> None:
        if turns:
            memo.turns.extend(turns)
            memo.last_turn = turns[-1].turn_id

    def _system_text(self, summary: str | None) -> str:
        text = self._settings.system_prompt
        if summary:
            text = f"{text}\n\nSummary of the earlier conversation:\n{summary}".strip()
        return text

    def _system_tokens(self, summary: str | None) -> int:
        # the same system prompt (and summary) is measured on every turn: remember the last answers
        cached = self._system_cost.get(summary)
        if cached is None:
            text = self._system_text(summary)
            cached = estimate_text(text) + 8 if text else 0
            if len(self._system_cost) > 256:
                self._system_cost.clear()
            self._system_cost[summary] = cached
        return cached

    @staticmethod
    def _fit(turns: Sequence[_Turn], available: int) -> list[_Turn]:
        """The most recent whole turns whose estimated size fits ``available`` tokens."""
        kept: list[_Turn] = []
        used = 0
        for turn in reversed(turns):
            if used + turn.tokens > available:
                break
            kept.append(turn)
            used += turn.tokens
        kept.reverse()
        return kept

    async def _summarise(
        self, conversation: ConversationRecord, previous: str | None, turns: Sequence[_Turn],
    ) -> str | None:
        if not turns:
            return previous
        words = max(60, min(400, self.prompt_budget // 8))
        transcript_budget = self.prompt_budget - self._settings.reply_tokens - 200
        lines: list[str] = []
        if previous:
            lines.append(f"Earlier summary:\n{previous}\n")
        lines.append("Conversation:")
        used = estimate_text("\n".join(lines))
        for turn in turns:
            for item in turn.messages:
                line = _transcript_line(item)
                cost = estimate_text(line) + 1
                if used + cost > transcript_budget:
                    line = line[: max(0, (transcript_budget - used) * 3)] + " [...]"
                    cost = estimate_text(line) + 1
                if used + cost > transcript_budget:
                    break
                lines.append(line)
                used += cost
        request = ChatRequest(
            messages=(SystemContent(SUMMARY_INSTRUCTIONS.format(words=words)), UserContent("\n".join(lines))),
            max_tokens=min(self._settings.reply_tokens, words * 2),
        )
        parts: list[str] = []
        try:
            async with aclosing(self._model.stream(request)) as chunks:
                async for chunk in chunks:
                    parts.append(chunk.text)
        except ModelError as exc:
            self._events.emit(Event("memory.summary_failed", properties={
                "conversation": conversation.id, "error": exc.code}))
            return None
        summary = "".join(parts).strip()
        if not summary:
            self._events.emit(Event("memory.summary_failed", properties={
                "conversation": conversation.id, "error": "empty"}))
            return None
        limit = words * 8
        if len(summary) > limit:
            summary = summary[:limit].rsplit(" ", 1)[0] + " [...]"
        await self._store.set_summary(conversation.id, summary, turns[-1].turn_id)
        self._events.emit(Event("memory.summarised", properties={
            "conversation": conversation.id, "upto": turns[-1].turn_id, "turns": len(turns)}))
        return summary


def _transcript_line(message: ModelMessage) -> str:
    if isinstance(message, UserContent):
        return f"User: {message.text}"
    if isinstance(message, ToolResultContent):
        return f"Tool {message.name} returned: {message.text}"
    if isinstance(message, AssistantContent):
        calls = ", ".join(f"{c.name}({dict(c.arguments)})" for c in message.tool_calls)
        text = message.text + (f" [called {calls}]" if calls else "")
        return f"Assistant: {text}"
    return f"System: {message.text}"
