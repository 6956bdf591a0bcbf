"""``hearth chat``: a terminal conversation, streaming, against a running server or in this process."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import orjson
import websockets
from rich.console import Console
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from hearth.core.identity import actor_for
from hearth.errors import HearthError
from hearth.runtime import Runtime
from hearth.types import Envelope

QUIT = {"/quit", "/exit"}


async def _read_line(interactive: bool) -> str | None:
    """One line from stdin without blocking the event loop; None at end of input."""
    def read() -> str | None:
        if interactive:
            try:
                return input("you> ")
            except EOFError:
                return None
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None

    return await asyncio.to_thread(read)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


async def chat_in_process(runtime: Runtime, user_name: str | None, conversation: str | None,
                          console: Console) -> int:
    await runtime.start(serving=False)
    if user_name:
        user = await runtime.users.get_user_by_name(user_name)
    else:
        user = next((u for u in await runtime.users.list_users() if u.role == "admin" and not u.disabled), None)
    if user is None:
        console.print(f"[red]no such user: {user_name or 'admin'}[/] (create one with `hearth users add NAME`)")
        return 1
    actor = actor_for(user, channel="cli")
    interactive = sys.stdin.isatty()
    if interactive:
        console.print(f"hearth (in-process, as {user.name}); /quit to leave")
    while True:
        line = await _read_line(interactive)
        if line is None or line.strip() in QUIT:
            return 0
        if not line.strip():
            continue
        envelope = Envelope(id=uuid.uuid4().hex, channel="cli", sender=actor, text=line, conversation=conversation)
        try:
            submission = await runtime.inbox.submit(envelope)
        except HearthError as exc:
            console.print(f"[red]{exc.user_message}[/]")
            continue
        conversation = submission.conversation
        if interactive:
            _write("hearth> ")
        async for reply in submission.replies():
            if not reply.final:
                _write(reply.text)
            elif reply.error is not None:
                console.print(f"[red]{reply.error.message}[/]")
            else:
                _write("\n")


async def chat_remote(url: str, token: str, conversation: str | None, console: Console) -> int:
    try:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                      open_timeout=10, max_size=2**22) as ws:
            ready = orjson.loads(await ws.recv())
            if ready.get("type") != "ready":
                console.print(f"[red]authentication failed: {ready.get('message', 'no reason given')}[/]")
                return 1
            interactive = sys.stdin.isatty()
            if interactive:
                console.print(f"connected to {url} as {ready.get('user')}; /quit to leave")
            while True:
                line = await _read_line(interactive)
                if line is None or line.strip() in QUIT:
                    return 0
                if not line.strip():
                    continue
                frame: dict[str, Any] = {"type": "message", "id": uuid.uuid4().hex, "text": line}
                if conversation:
                    frame["conversation"] = conversation
                await ws.send(orjson.dumps(frame).decode())
                if interactive:
                    _write("hearth> ")
                conversation = await _follow(ws, frame["id"], console) or conversation
    except (TimeoutError, OSError, InvalidURI, InvalidStatus) as exc:
        console.print(f"[red]cannot connect to {url}: {exc}[/]")
        return 1
    except ConnectionClosed as exc:
        reason = "unauthenticated: check the API key" if exc.rcvd and exc.rcvd.code == 4401 else str(exc)
        console.print(f"[red]connection closed: {reason}[/]")
        return 1


async def _follow(ws: Any, message_id: str, console: Console) -> str | None:
    conversation = None
    while True:
        frame = orjson.loads(await ws.recv())
        if frame.get("id") != message_id:
            continue
        kind = frame.get("type")
        if kind == "ack":
            conversation = frame.get("conversation")
        elif kind == "delta":
            _write(frame["text"])
        elif kind == "done":
            _write("\n")
            return conversation
        elif kind == "error":
            console.print(f"[red]{frame.get('message')}[/]")
            return conversation
