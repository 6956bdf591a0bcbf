"""Token estimates for prompt budgeting.

hearth talks to whatever model the user runs, so there is no one tokenizer to load (and none can be
downloaded at run time). The estimate errs on the side of more tokens: about one per 3.5 characters
of prose, one per word-ish piece for short words, one per symbol, plus a few per message for the chat
template. Over-estimating wastes a little context; under-estimating makes the server truncate or
refuse, which is worse. The router reports real usage when the server gives it; that is logged so an
operator can see how close the estimate runs.
"""

from __future__ import annotations

import re

from hearth.types import AssistantContent, ModelMessage, ToolResultContent, ToolSpec

_PIECES = re.compile(r"\w+|[^\w\s]", re.UNICODE)
MESSAGE_OVERHEAD = 4


def estimate_text(text: str) -> int:
    """Words and symbols, or a quarter of the characters if more (long words split into several
    tokens); characters outside ASCII (CJK and other dense scripts) count one each."""
    if not text:
        return 0
    pieces = len(_PIECES.findall(text))
    if not text.isascii():
        pieces += sum(1 for c in text if ord(c) > 127)
    return max(pieces, len(text) // 4 + 1)


def estimate_message(message: ModelMessage) -> int:
    total = MESSAGE_OVERHEAD + estimate_text(message.text)
    if isinstance(message, AssistantContent):
        for call in message.tool_calls:
            total += 8 + estimate_text(call.name) + estimate_text(str(dict(call.arguments)))
    elif isinstance(message, ToolResultContent):
        total += 4 + estimate_text(message.name)
    return total


def estimate_tools(tools: tuple[ToolSpec, ...] | list[ToolSpec]) -> int:
    return sum(12 + estimate_text(t.name) + estimate_text(t.description)
               + estimate_text(str(dict(t.parameters))) for t in tools)
