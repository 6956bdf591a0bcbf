"""hearth's WebSocket frame protocol: JSON text frames, one object per frame.

Client to server::

    {"type": "auth", "token": "hth_..."}                      first frame, unless a Bearer header was sent
    {"type": "message", "id": ID, "conversation": CID?, "text": "...", "action"?: BUTTON_ID,
     "attachments"?: [FILE_ID, ...]}                          files uploaded with POST /v1/files; text may be ""
    {"type": "ping", "id"?: ...}

Server to client::

    {"type": "ready", "user": NAME}                           after authentication
    {"type": "ack", "id": ID, "conversation": CID}            the message is stored
    {"type": "delta", "id": ID, "text": "..."}                the answer as it is written
    {"type": "done", "id": ID, "text": FULL, "message_id": N, "buttons"?: [{"id", "label"}]}
    {"type": "notice", "conversation": CID, "text": "...", "message_id": N}   hearth speaks first (reminders)
    {"type": "error", "id": ID|null, "code": CODE, "message": "..."}
    {"type": "pong", "id"?: ...}

``ID`` is chosen by the client (a string or an integer, at most 128 characters): a message sent again
with an id seen before is not processed twice; the server answers with the stored result. A frame that
is too large, not JSON, or not one of the above gets an ``error`` frame, and the socket stays open.
Unauthenticated sockets are closed with code 4401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from hearth.errors import InvalidRequest

CLOSE_UNAUTHENTICATED = 4401
CLOSE_SHUTTING_DOWN = 1012
MAX_ID_LENGTH = 128
MAX_CONVERSATION_LENGTH = 64
MAX_ATTACHMENTS = 10
MAX_FILE_ID_LENGTH = 64


@dataclass(frozen=True, slots=True)
class MessageFrame:
    id: str | int
    text: str
    conversation: str | None
    action: str | None = None
    attachments: tuple[str, ...] = ()  # file ids


@dataclass(frozen=True, slots=True)
class AuthFrame:
    token: str


@dataclass(frozen=True, slots=True)
class PingFrame:
    id: Any


Frame = MessageFrame | AuthFrame | PingFrame


def parse_frame(raw: str | bytes, max_bytes: int) -> Frame:
    """Validate one client frame; ``InvalidRequest`` (with a frame error code) when it is not valid."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
    if size > max_bytes:
        raise InvalidRequest(f"frame of {size} bytes is larger than the limit of {max_bytes}", code="too_large")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("frame is not valid JSON", code="bad_frame") from None
    if not isinstance(data, dict):
        raise InvalidRequest("frame must be a JSON object", code="bad_frame")
    kind = data.get("type")
    if kind == "message":
        action = data.get("action")
        if action is not None and (not isinstance(action, str) or not 0 < len(action) <= 128):
            raise InvalidRequest("'action' must be the id of a button (a string)", code="bad_frame")
        text = data.get("text")
        if action is not None and (text is None or text == ""):
            text = action  # a button press needs no words
        attachments = _attachments(data.get("attachments"))
        if attachments and text is None:
            text = ""  # files alone are a message
        return MessageFrame(_client_id(data.get("id")), _text(text, empty_ok=bool(attachments)), _conversation(data),
                            action, attachments)
    if kind == "ping":
        return PingFrame(data.get("id"))
    if kind == "auth":
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise InvalidRequest("auth frame needs a 'token' string", code="bad_frame")
        return AuthFrame(token)
    raise InvalidRequest(f"unknown frame type {kind!r}; expected message, ping or auth", code="unknown_type")


def frame_id(raw: str | bytes) -> Any:
    """Best effort: the client id of a frame that failed validation, so the error can name it."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict) and isinstance(data.get("id"), str | int):
        return data["id"]
    return None


def _client_id(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRequest("message frame needs an 'id' (string or integer)", code="bad_frame")
    if isinstance(value, str) and not (0 < len(value) <= MAX_ID_LENGTH):
        raise InvalidRequest(f"'id' must be 1-{MAX_ID_LENGTH} characters", code="bad_frame")
    return value


def _text(value: Any, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or not (value.strip() or empty_ok):
        raise InvalidRequest("message frame needs a non-empty 'text' string", code="bad_frame")
    return value


def _attachments(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if (not isinstance(value, list) or len(value) > MAX_ATTACHMENTS
            or not all(isinstance(v, str) and 0 < len(v) <= MAX_FILE_ID_LENGTH for v in value)):
        raise InvalidRequest(f"'attachments' must be a list of at most {MAX_ATTACHMENTS} file ids (strings)",
                             code="bad_frame")
    return tuple(dict.fromkeys(value))


def _conversation(data: dict[str, Any]) -> str | None:
    value = data.get("conversation")
    if value is None:
        return None
    if not isinstance(value, str) or not (0 < len(value) <= MAX_CONVERSATION_LENGTH):
        raise InvalidRequest("'conversation' must be a conversation id string", code="bad_frame")
    return value


def encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()
