"""One running worker process, seen from hearth's end of its pipes: its calls in flight and the protocol.

hearth writes ``call`` and ``cancel`` lines to the worker's stdin and reads its stdout line by line
(``hearth.skills.worker`` describes the messages): first the handshake (``hello`` with the manifest, or a
``problem`` that names the file and the fix), then answers to calls and capability requests. hearth
performs each capability request itself, checking it again against the call's capabilities and the
methods each capability has, since the worker can write anything to its pipe. The worker's stderr (its
prints and tracebacks) goes to the ``hearth.skills.worker`` log.

A ``WorkerProcess`` does not decide what happens when it ends: when its output ends, or it writes a
malformed or over-long line, it tells its owner (``ended``), which fails its calls and restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from hearth.sdk import CAPABILITIES, CapabilityDenied, IntentSpec, SkillContext, SkillFailed
from hearth.sdk.context import Denied
from hearth.skills.loader import SkillProblemError
from hearth.skills.registry import Manifest
from hearth.skills.worker import ATTRIBUTES, MAX_MESSAGE, METHODS, decode, dumps, encode, manifest_from_json

from .errors import SkillCrashed, WorkerError

__all__ = ["WorkerProcess"]

_log = logging.getLogger("hearth.skills")
_output = logging.getLogger("hearth.skills.worker")

_ANSWERS = frozenset({"result", "failed", "denied", "crashed", "cancelled"})
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_PASSED_ON: tuple[type[Exception], ...] = (ValueError, TypeError, LookupError, TimeoutError, aiohttp.ClientError)
"""Errors of a capability whose message the skill may read; others (an OSError naming hearth's files, a
database error) reach it by their type's name only, and hearth logs them."""


class _Call:
    """One call in flight: what it may use, and the future its answer resolves."""

    def __init__(self, allowed: frozenset[str], context: SkillContext, answer: asyncio.Future[dict[str, Any]]):
        self.allowed = allowed
        self.context = context
        self.answer = answer
        self.cancelled = False
        self.requests: set[asyncio.Task[None]] = set()

    def end(self) -> None:
        for task in self.requests:
            task.cancel()


class WorkerProcess:
    """One running worker process and its calls.

    ``name`` gives the skill's name for messages and logs (it is known only after the handshake);
    ``answered`` is told each time the worker answers a call (it is healthy); ``ended`` is told once, by
    the task that reads the worker, why its output ended.
    """

    def __init__(self, process: asyncio.subprocess.Process, isolated: bool, started: float, *,
                 name: Callable[[], str], answered: Callable[[], None],
                 ended: Callable[[WorkerProcess, str], None]) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = process.stdout
        self.stderr = process.stderr
        self.isolated = isolated
        self.started = started
        self.calls: dict[int, _Call] = {}
        self.reader: asyncio.Task[None] | None = None
        self.output: asyncio.Task[None] | None = None
        self.dead = False
        self.why: str | None = None  # set when hearth replaces it, for the calls that fail
        self._name = name
        self._answered = answered
        self._ended = ended

    def write(self, data: bytes) -> None:
        if not self.stdin.is_closing():
            self.stdin.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.stdin.drain()

    # --- the handshake and the end ------------------------------------------------------------------

    async def hello(self, where: str, *, within: float) -> Manifest:
        """The manifest on the worker's first line, due ``within`` seconds; else ``SkillProblemError`` naming
        ``where`` and the fix."""
        try:
            line = await asyncio.wait_for(self.stdout.readline(), within)
        except TimeoutError:
            raise SkillProblemError(where, f"its worker did not report its manifest within "
                                    f"{within:g} s", "make importing it quick (no network or long "
                                    "work at import time); see hearth's log") from None
        except ValueError as exc:
            raise SkillProblemError(where, "its worker sent an over-long first line",
                                    "do not write to file descriptor 1 at import time") from exc
        if not line:
            reason = await self.exit_reason()
            raise SkillProblemError(where, f"its worker {reason} before reporting its manifest",
                                    "see its output in hearth's log (logger hearth.skills.worker)")
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if isinstance(message, dict) and message.get("type") == "problem":
            raise SkillProblemError(where, str(message.get("problem")), str(message.get("fix")))
        if not isinstance(message, dict) or message.get("type") != "hello":
            raise SkillProblemError(where, f"its worker sent {line[:80]!r} instead of its manifest",
                                    "do not write to file descriptor 1 at import time")
        return manifest_from_json(message.get("manifest"), where)

    def fail(self, error: Exception) -> None:
        """Fail every call in flight with ``error``."""
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.end()
            if not call.answer.done():
                call.answer.set_exception(error)

    async def terminate(self, grace: float) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace`` seconds; then reap it and its readers."""
        self.dead = True
        process = self.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever it left behind in its process group
        self.stdin.close()
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.output is not None:  # its last output (a traceback, say) reaches the log
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.output, 2.0)

    async def exit_reason(self) -> str:
        """How the process ended, in words ("was killed (SIGKILL: out of memory, or killed)")."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 2.0)
        code = self.process.returncode
        if code is None:
            return "closed its output"
        if code >= 0:
            return f"exited with code {code}"
        names = {signal.SIGKILL: "SIGKILL: out of memory, or killed", signal.SIGXCPU: "SIGXCPU: out of CPU time",
                 signal.SIGSEGV: "SIGSEGV: a crash in native code"}
        try:
            name = names.get(signal.Signals(-code), signal.Signals(-code).name)
        except ValueError:
            name = f"signal {-code}"
        return f"was killed ({name})"

    # --- calls ---------------------------------------------------------------------------------------------

    async def call(self, call_id: int, spec: IntentSpec, params: Mapping[str, Any], context: SkillContext,
                   allowed: frozenset[str], stuck_after: float) -> Any:
        """Run ``spec`` with the capabilities ``allowed``; the handler's value, or the error it ended with.

        A cancelled call is cancelled in the worker too; one that has not stopped ``stuck_after`` seconds
        later gets the process killed (and so replaced).
        """
        data = dumps({"type": "call", "id": call_id, "intent": spec.name, "params": encode(dict(params)),
                      "context": _context(context, allowed)})
        if len(data) > MAX_MESSAGE:
            raise WorkerError(f"the call is larger than {MAX_MESSAGE // 1024**2} MiB")
        call = _Call(allowed, context, asyncio.get_running_loop().create_future())
        self.calls[call_id] = call
        self.write(data)
        try:
            await self.drain()
            reply = await call.answer
        except asyncio.CancelledError:
            if self.calls.get(call_id) is call and not self.dead:
                call.cancelled = True
                call.end()
                self.write(dumps({"type": "cancel", "id": call_id}))
                asyncio.get_running_loop().call_later(stuck_after, self._stuck, call_id, stuck_after)
            raise
        return self._outcome(reply)

    def _stuck(self, call_id: int, stuck_after: float) -> None:
        if call_id in self.calls and not self.dead:
            self.why = f"was replaced: a cancelled call did not stop within {stuck_after:g} s"
            _log.warning("skill %s: its worker %s", self._name(), self.why)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def _outcome(self, reply: Mapping[str, Any]) -> Any:
        kind = reply["type"]
        if kind == "result":
            try:
                return decode(reply.get("value"))
            except (ValueError, TypeError, KeyError) as exc:
                raise WorkerError(f"the {self._name()} skill returned a value hearth cannot read ({exc})") from exc
        if kind == "failed":
            code = reply.get("code")
            raise SkillFailed(str(reply.get("message") or "The skill failed."),
                              code=code if isinstance(code, str) and _CODE.match(code) else "skill_failed")
        if kind == "denied":
            capability = reply.get("capability")
            raise CapabilityDenied(capability if capability in CAPABILITIES else "an unknown capability",
                                   self._name())
        if kind == "crashed":
            raise SkillCrashed(f"the {self._name()} skill crashed: {str(reply.get('error'))[:2000]}")
        raise WorkerError(f"the {self._name()} skill's worker cancelled the call")

    # --- reading the worker ----------------------------------------------------------------------------

    async def read(self) -> None:
        """Read the worker's answers and requests until its output ends or goes wrong; then tell ``ended``."""
        while True:
            try:
                line = await self.stdout.readline()
            except ValueError:
                reason = f"sent a line longer than {MAX_MESSAGE // 1024**2} MiB"
                _log.error("skill %s: its worker %s", self._name(), reason)
                break
            if not line:
                reason = await self.exit_reason()
                break
            try:
                self._dispatch(json.loads(line))
            except (ValueError, TypeError, KeyError) as exc:
                reason = f"sent a malformed message ({exc})"
                _log.error("skill %s: its worker %s: %r", self._name(), reason, line[:200])
                break
        self._ended(self, reason)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, ident = message["type"], message["id"]
        if not isinstance(ident, int) or isinstance(ident, bool):
            raise TypeError("its id is not an integer")
        if kind in _ANSWERS:
            call = self.calls.pop(ident, None)
            self._answered()
            if call is not None:
                call.end()
                if not call.answer.done():
                    call.answer.set_result(message)
        elif kind == "cap":
            self._request(ident, message)
        else:
            raise ValueError(f"unexpected type {kind!r}")

    def _request(self, ident: int, message: Mapping[str, Any]) -> None:
        call = self.calls.get(message.get("call", 0))
        capability, method = message.get("capability"), message.get("method")
        if not isinstance(capability, str) or not isinstance(method, str):
            raise TypeError("capability and method must be strings")
        if call is None or call.cancelled:
            self.write(dumps({"type": "cap_result", "id": ident, "ok": False, "error": "RuntimeError: the call "
                              "has ended"}))
            return
        if capability not in call.allowed or method not in METHODS.get(capability, ()):
            # The worker's own objects refuse these before asking: this came from code writing to the pipe.
            _log.warning("skill %s asked for %s.%s, which its call may not use: refused", self._name(),
                         capability[:40], method[:40])
            self.write(dumps({"type": "cap_result", "id": ident, "ok": False, "denied": True,
                              "error": "CapabilityDenied"}))
            return
        task = asyncio.create_task(self._perform(call, ident, capability, method, message.get("args"),
                                                 message.get("kwargs")))
        call.requests.add(task)
        task.add_done_callback(call.requests.discard)

    async def _perform(self, call: _Call, ident: int, capability: str, method: str,
                       raw_args: Any, raw_kwargs: Any) -> None:
        reply: dict[str, Any]
        try:
            args, kwargs = decode(raw_args or []), decode(raw_kwargs or {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise TypeError("args must be a list and kwargs an object")
            target = getattr(call.context, ATTRIBUTES[capability])
            if isinstance(target, Denied):
                raise CapabilityDenied(capability, self._name())
            value = await getattr(target, method)(*args, **kwargs)
            reply = {"ok": True, "value": encode(value)}
        except CapabilityDenied:
            reply = {"ok": False, "denied": True, "error": "CapabilityDenied"}
        except _PASSED_ON as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:
            _log.exception("skill %s: %s.%s failed", self._name(), capability, method)
            reply = {"ok": False, "error": type(exc).__name__}
        data = dumps({"type": "cap_result", "id": ident, **reply})
        if len(data) > MAX_MESSAGE:
            data = dumps({"type": "cap_result", "id": ident, "ok": False,
                          "error": f"ValueError: the value is larger than {MAX_MESSAGE // 1024**2} MiB"})
        self.write(data)
        await self.drain()

    async def log_output(self) -> None:
        """The worker's stderr (its prints and tracebacks), line by line, under ``hearth.skills.worker``."""
        pending = b""
        while chunk := await self.stderr.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > 16384:
                lines.append(pending[:16384] + b" [...]")
                pending = b""
            for line in lines:
                _output.info("%s[%d]: %s", self._name(), self.process.pid, line.decode("utf-8", "replace"),
                             extra={"skill": self._name()})
        if pending:
            _output.info("%s[%d]: %s", self._name(), self.process.pid, pending.decode("utf-8", "replace"),
                         extra={"skill": self._name()})


def _context(context: SkillContext, allowed: frozenset[str]) -> dict[str, Any]:
    """What the worker's ``SkillContext`` is built from: no capability objects, only their names."""
    user, conversation = context.user, context.conversation
    return {"user": {"id": user.id, "name": user.name, "timezone": user.timezone, "roles": sorted(user.roles)},
            "conversation": {"id": conversation.id, "channel": conversation.channel},
            "config": encode(dict(context.config)), "tz": getattr(context.tz, "key", None) or str(context.tz),
            "now": context.now.isoformat(), "capabilities": sorted(allowed)}
