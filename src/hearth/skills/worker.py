"""The worker process that runs one third-party skill, and the wire format it speaks with hearth.

A skill from a package or from the skills folder is somebody else's code, so hearth never imports it:
``hearth.skills.isolation`` starts this module in a confined process, one per skill::

    python -m hearth.skills.worker --file PATH | --package PATH | --entry-point module:attr

The worker imports the skill, validates it with the loader's own ``manifest_of`` and then speaks
line-delimited JSON on stdin/stdout (stdout is the protocol alone: the skill's prints go to stderr,
which hearth logs):

* worker → hearth, first: ``{"type": "hello", "manifest": {...}}``, or ``{"type": "problem", "problem",
  "fix"}`` and exit code 2;
* hearth → worker: ``{"type": "call", "id", "intent", "params", "context"}`` and ``{"type": "cancel", "id"}``;
* worker → hearth: ``result`` (``value``), ``failed`` (``message``, ``code``: ``SkillFailed``), ``denied``
  (``capability``), ``crashed`` (``error``), ``cancelled``: exactly one per call, also for a cancelled one;
* capabilities: the context's objects send ``{"type": "cap", "id", "call", "capability", "method", "args",
  "kwargs"}`` and await ``{"type": "cap_result", "id", "ok", "value" | "error", "denied"}``. A capability
  that is not in the call's ``capabilities`` raises ``CapabilityDenied`` here without asking; hearth
  checks every request again, since code in this process can write anything to the pipe.

Values that JSON lacks travel as one-key objects: ``{"$datetime": iso}``, ``{"$date": iso}``,
``{"$timedelta": seconds}``, ``{"$bytes": base64}``, ``{"$result": {text, data, attachments}}``,
``{"$http": {status, headers, text}}``; a plain dict whose only key starts with ``$`` is wrapped in
``{"$dict": ...}``. Several calls may be in flight: async handlers run on the worker's loop, sync ones in
a small thread pool, as in hearth's own process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import itertools
import json
import os
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from types import ModuleType
from typing import IO, Any
from zoneinfo import ZoneInfo

from hearth.sdk import (
    CapabilityDenied,
    Choice,
    DateTime,
    Duration,
    HttpResponse,
    IntentSpec,
    Number,
    Result,
    Skill,
    SkillContext,
    SkillConversation,
    SkillFailed,
    SkillUser,
    Slot,
    Text,
    intent,
)
from hearth.sdk.context import Denied

from .loader import SkillProblemError, manifest_of
from .registry import Manifest

ATTRIBUTES = {"storage": "storage", "network": "http", "messages": "messages", "files": "files"}
"""The ``SkillContext`` attribute that carries each capability."""

METHODS = {"storage": ("get", "set", "delete", "keys"), "network": ("request",),
           "messages": ("send", "send_later", "cancel", "scheduled"), "files": ("text", "recent")}
"""The methods of each capability a worker may ask hearth to call: the SDK's protocols, nothing else."""

SLOT_TYPES: dict[str, type[Slot]] = {"text": Text, "number": Number, "datetime": DateTime, "duration": Duration,
                                     "choice": Choice}
"""The slot types a worker's manifest may use: hearth parses slot values itself, with its own classes."""

MAX_MESSAGE = 16 * 1024 * 1024
"""The longest protocol line either side accepts (hearth restarts a worker that sends a longer one)."""

# --- the wire format -------------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """``value`` as JSON, with tags for what JSON lacks; unknown objects become text, as in-process."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$timedelta": value.total_seconds()}
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Result):
        data = encode(dict(value.data)) if value.data is not None else None
        return {"$result": {"text": value.text, "data": data, "attachments": [str(a) for a in value.attachments]}}
    if isinstance(value, HttpResponse):
        return {"$http": {"status": value.status, "headers": dict(value.headers), "text": value.text}}
    if isinstance(value, Mapping):
        encoded = {str(k): encode(v) for k, v in value.items()}
        return {"$dict": encoded} if len(encoded) == 1 and next(iter(encoded)).startswith("$") else encoded
    if isinstance(value, list | tuple | set | frozenset):
        return [encode(v) for v in value]
    return str(value)


def decode(value: Any) -> Any:
    """The inverse of ``encode``; raises ``ValueError`` or ``TypeError`` on a malformed tag."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag in _DECODERS:
            return _DECODERS[tag](inner)
    return {k: decode(v) for k, v in value.items()}


def _result(inner: Mapping[str, Any]) -> Result:
    data = decode(inner.get("data"))
    if data is not None and not isinstance(data, dict):
        raise TypeError("a Result's data must be an object")
    return Result(text=str(inner.get("text") or ""), data=data, attachments=tuple(map(str, inner.get("attachments")
                                                                                          or ())))


def _http(inner: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(int(inner["status"]), dict(inner.get("headers") or {}), str(inner.get("text") or ""))


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$timedelta": lambda seconds: timedelta(seconds=float(seconds)),
    "$bytes": base64.b64decode,
    "$result": _result,
    "$http": _http,
    "$dict": lambda inner: {k: decode(v) for k, v in dict(inner).items()},
}


def dumps(message: Mapping[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    """A manifest as the hello message carries it."""
    return {
        "name": manifest.name, "version": manifest.version, "description": manifest.description,
        "permissions": list(manifest.permissions), "config_schema": encode(manifest.config_schema),
        "intents": {name: {
            "description": spec.description,
            "slots": {slot_name: {"kind": slot.kind, **{f.name: encode(getattr(slot, f.name))
                                                         for f in dataclasses.fields(slot)}}
                      for slot_name, slot in spec.slots.items()},
            "examples": list(spec.examples), "permission": spec.permission, "side_effects": spec.side_effects,
            "timeout": spec.timeout, "wants_context": spec.wants_context, "handler": spec.handler_name,
        } for name, spec in manifest.intents.items()},
    }


def manifest_from_json(raw: Any, source: str) -> Manifest:
    """A worker's manifest rebuilt with real ``IntentSpec`` and slot objects, and validated again here.

    The worker is not trusted to have validated itself: the manifest goes through ``@intent`` and
    ``manifest_of`` as if the class were in this process. ``SkillProblemError`` when it is not valid.
    """
    try:
        attributes: dict[str, Any] = {
            "__module__": __name__, "name": _typed(raw["name"], str), "version": _typed(raw["version"], str),
            "description": _typed(raw["description"], str),
            "permissions": tuple(_typed(p, str) for p in _typed(raw["permissions"], list)),
            "config_schema": decode(_typed(raw["config_schema"], dict)),
        }
        for name, spec in _typed(raw["intents"], dict).items():
            attributes[f"intent_{len(attributes)}"] = _intent_stub(name, _typed(spec, dict))
        skill = type("RemoteSkill", (Skill,), attributes)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SkillProblemError(source, f"its worker sent an invalid manifest ({type(exc).__name__}: {exc})",
                                "check the skill's intents and slots (see hearth's log)") from exc
    return manifest_of(skill, source)


def _intent_stub(name: str, raw: Mapping[str, Any]) -> Callable[..., Any]:
    def handler(self: Any, params: Any, context: Any = None) -> None:
        raise NotImplementedError("runs in the skill's worker")

    slots = {_typed(slot_name, str): _slot(_typed(slot, dict)) for slot_name, slot in _typed(raw["slots"],
                                                                                              dict).items()}
    timeout = raw["timeout"]
    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        raise TypeError("timeout must be a number")
    intent(name, description=_typed(raw["description"], str), slots=slots,
           examples=[_typed(e, str) for e in _typed(raw["examples"], list)],
           permission=None if raw["permission"] is None else _typed(raw["permission"], str),
           side_effects=_typed(raw["side_effects"], bool), timeout=float(timeout))(handler)
    marked: IntentSpec = handler.__hearth_intent__  # type: ignore[attr-defined]
    handler.__hearth_intent__ = dataclasses.replace(  # type: ignore[attr-defined]
        marked, handler_name=_typed(raw["handler"], str), wants_context=_typed(raw["wants_context"], bool))
    return handler


def _slot(raw: Mapping[str, Any]) -> Slot:
    kind = SLOT_TYPES[_typed(raw["kind"], str)]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if f.name not in raw:
            continue
        value = decode(raw[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.name == "options":
            value = tuple(_typed(o, str) for o in _typed(value, list))
        elif default is None:
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise TypeError(f"slot field {f.name} must be a number")
        elif isinstance(default, bool):
            _typed(value, bool)
        elif isinstance(default, int | float):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"slot field {f.name} must be a number")
        else:
            _typed(value, type(default))
        values[f.name] = value
    return kind(**values)


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


# --- finding the skill --------------------------------------------------------------------------------


def load(kind: str, target: str) -> type[Skill]:
    """The skill class named by a ``WorkerSource``'s kind and target; ``SkillProblemError`` if none."""
    if kind == "entry_point":
        module_name, _, attribute = target.partition(":")
        module = _imported(target, lambda: importlib.import_module(module_name.strip()))
        found: Any = module
        for part in attribute.split("[")[0].strip().split(".") if attribute else ():
            found = getattr(found, part, None)
        if not isinstance(found, type) or not attribute:
            raise SkillProblemError(target, f"the entry point does not name a class ({target!r})",
                                    "declare it as 'module:SkillClass' in the hearth.skills entry-point group")
        return found
    path = Path(target).resolve()
    init = path / "__init__.py" if kind == "package" else path
    if not init.is_file():
        raise SkillProblemError(target, f"{init} does not exist", "check the skill's path")
    name = _module_name(path.stem if kind == "file" else path.name)
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(path)]
                                                  if kind == "package" else None)
    if spec is None or spec.loader is None:
        raise SkillProblemError(target, "it cannot be imported as Python", "name the file *.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.append(str(path.parent))  # appended: the skill may import its neighbours, never shadow hearth
    loader = spec.loader
    _imported(target, lambda: loader.exec_module(module))
    return _skill_class(module, target)


def _module_name(stem: str) -> str:
    name = stem if stem.isidentifier() else "skill"
    if name in sys.stdlib_module_names or name in sys.modules:
        return f"hearth_skill_{name}"
    return name


def _imported(where: str, run: Callable[[], Any]) -> Any:
    try:
        return run()
    except SyntaxError as exc:
        line = f" at line {exc.lineno}" if exc.lineno else ""
        raise SkillProblemError(where, f"syntax error{line} of {exc.filename or where}: {exc.msg}",
                                f"fix the syntax{line} of {exc.filename or where}") from exc
    except ImportError as exc:
        raise SkillProblemError(where, f"it cannot import {exc.name or 'a module'} ({exc})",
                                "install what it needs in hearth's environment, or remove the import") from exc
    except (Exception, SystemExit) as exc:
        traceback.print_exc()
        raise SkillProblemError(where, f"importing it raised {type(exc).__name__}: {exc}",
                                "fix the error (its traceback is in hearth's log)") from exc


def _skill_class(module: ModuleType, where: str) -> type[Skill]:
    chosen = getattr(module, "SKILL", None)
    if chosen is not None:
        return chosen  # type: ignore[no-any-return]  # manifest_of says what is wrong with it, if anything
    found = sorted({value for value in vars(module).values() if isinstance(value, type) and issubclass(value, Skill)
                    and value is not Skill and not value.__module__.startswith(("hearth.", "skill_sdk"))},
                   key=lambda cls: cls.__name__)
    if not found:
        raise SkillProblemError(where, "it defines no Skill subclass",
                                "define one: from skill_sdk import Skill, intent; class MySkill(Skill): ...")
    if len(found) > 1:
        names = ", ".join(cls.__name__ for cls in found)
        raise SkillProblemError(where, f"it defines {len(found)} Skill subclasses ({names})",
                                f"keep one skill per file or package, or say which: SKILL = {found[-1].__name__}")
    return found[0]


def _check_slots(manifest: Manifest, where: str) -> None:
    for spec in manifest.intents.values():
        for name, slot in spec.slots.items():
            if type(slot) not in SLOT_TYPES.values():
                raise SkillProblemError(where, f"intent {spec.name!r}: slot {name!r} is a {type(slot).__name__}, "
                                        "which hearth cannot parse outside the skill's process",
                                        "use Text, Number, DateTime, Duration or Choice")


# --- serving calls -----------------------------------------------------------------------------------


class RemoteCapability:
    """A granted capability inside the worker: each method call is made by hearth, over the pipe."""

    def __init__(self, worker: Worker, call: int, capability: str) -> None:
        self._worker = worker
        self._call = call
        self._capability = capability

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method not in METHODS[self._capability]:
            raise AttributeError(f"the {self._capability} capability has no method {method!r}")

        async def forward(*args: Any, **kwargs: Any) -> Any:
            return await self._worker.capability(self._call, self._capability, method, args, kwargs)

        return forward


class Worker:
    """Serves one skill's calls: reads hearth's messages, runs handlers, answers each call once."""

    def __init__(self, skill: Skill, manifest: Manifest, out: IO[bytes], *, threads: int = 8) -> None:
        self.skill = skill
        self.manifest = manifest
        self.calls: dict[int, asyncio.Task[None]] = {}
        self._out = out
        self._write = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="skill")
        self._waiting: dict[int, tuple[int, asyncio.Future[dict[str, Any]]]] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, stdin: IO[bytes]) -> None:
        """Answer hearth until it closes the pipe."""
        self._loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_MESSAGE)
        await self._loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
        while line := await reader.readline():
            try:
                self._dispatch(json.loads(line))
            except (ValueError, TypeError, KeyError):
                print(f"hearth worker: ignoring a malformed message {line[:200]!r}", file=sys.stderr)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "call":
            self.calls[message["id"]] = asyncio.create_task(self._call(message))
        elif kind == "cancel":
            self._cancel(message["id"])
        elif kind == "cap_result":
            _, future = self._waiting.pop(message["id"], (0, None))
            if future is not None and not future.done():
                future.set_result(message)

    def _cancel(self, call: int) -> None:
        task = self.calls.get(call)
        if task is not None:
            task.cancel()
        for cap, (owner, future) in list(self._waiting.items()):
            if owner == call:
                del self._waiting[cap]
                future.cancel()

    async def _call(self, message: Mapping[str, Any]) -> None:
        call = message["id"]
        reply: dict[str, Any]
        try:
            spec = self.manifest.intents.get(message.get("intent", ""))
            if spec is None:
                raise LookupError(f"this skill has no intent {message.get('intent')!r}")
            params = decode(message.get("params") or {})
            context = self._context(call, message["context"])
            value = await self._run(spec, (params, context) if spec.wants_context else (params,))
            reply = {"type": "result", "id": call, "value": encode(value)}
        except SkillFailed as exc:
            reply = {"type": "failed", "id": call, "message": exc.message, "code": exc.code}
        except CapabilityDenied as exc:
            reply = {"type": "denied", "id": call, "capability": exc.capability}
        except asyncio.CancelledError:
            reply = {"type": "cancelled", "id": call}
        except (Exception, SystemExit) as exc:
            traceback.print_exc()
            reply = {"type": "crashed", "id": call, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            self.calls.pop(call, None)
        try:
            self.send(reply)
        except ValueError as exc:  # too long for the pipe: hearth would replace this worker
            self.send({"type": "crashed", "id": call, "error": f"ValueError: {exc}"})

    def send(self, message: Mapping[str, Any]) -> None:
        """Write one protocol line; ``ValueError`` (nothing written) if it is longer than ``MAX_MESSAGE``."""
        data = dumps(message)
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"the answer is larger than {MAX_MESSAGE // (1024 * 1024)} MiB")
        with self._write:
            self._out.write(data)
            self._out.flush()

    async def _run(self, spec: IntentSpec, args: tuple[Any, ...]) -> Any:
        handler = self.skill.handler(spec.name)
        if inspect.iscoroutinefunction(handler):
            return await handler(*args)
        running = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(handler, *args))
        try:
            value = await asyncio.shield(running)
        except asyncio.CancelledError:
            # A thread cannot be interrupted: answer only once it has really finished, so that hearth can
            # tell a handler that stopped from one that is stuck (and replace a stuck worker).
            await asyncio.wait([running])
            raise
        if inspect.isawaitable(value):  # a sync function that returned a coroutine
            value = await value
        return value

    def _context(self, call: int, raw: Mapping[str, Any]) -> SkillContext:
        granted = set(raw.get("capabilities") or ())
        objects: dict[str, Any] = {
            attribute: RemoteCapability(self, call, capability) if capability in granted
            else Denied(capability, self.manifest.name)
            for capability, attribute in ATTRIBUTES.items()
        }
        user, conversation = raw["user"], raw["conversation"]
        tz = _zone(raw.get("tz"))
        now = datetime.fromisoformat(raw["now"])
        return SkillContext(
            user=SkillUser(int(user["id"]), str(user["name"]), str(user.get("timezone") or "UTC"),
                           frozenset(user.get("roles") or ())),
            conversation=SkillConversation(str(conversation["id"]), str(conversation["channel"])),
            config=decode(raw.get("config") or {}), tz=tz or now.tzinfo or ZoneInfo("UTC"),
            now=now.astimezone(tz) if tz else now, skill=self.manifest.name, **objects,
        )

    async def capability(self, call: int, capability: str, method: str, args: Sequence[Any],
                         kwargs: Mapping[str, Any]) -> Any:
        """Ask hearth to run ``capability.method(*args, **kwargs)`` for call ``call``; its value or error."""
        assert self._loop is not None
        if asyncio.get_running_loop() is not self._loop:  # a sync handler's own loop, in a pool thread
            request = self.capability(call, capability, method, args, kwargs)
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(request, self._loop))
        cap = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._waiting[cap] = (call, future)
        try:
            self.send({"type": "cap", "id": cap, "call": call, "capability": capability, "method": method,
                       "args": encode(list(args)), "kwargs": encode(dict(kwargs))})
            reply = await future
        finally:
            self._waiting.pop(cap, None)
        if reply.get("ok"):
            return decode(reply.get("value"))
        if reply.get("denied"):
            raise CapabilityDenied(capability, self.manifest.name)
        error = str(reply.get("error") or "failed")
        kind = {"ValueError": ValueError, "TypeError": TypeError, "TimeoutError": TimeoutError,
                "KeyError": KeyError}.get(error.partition(":")[0], RuntimeError)
        raise kind(f"{capability}.{method}: {error}")


def _zone(name: Any) -> tzinfo | None:
    try:
        return ZoneInfo(name) if isinstance(name, str) and name else None
    except (ValueError, KeyError, OSError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker; returns 2 after reporting a problem, else exits when hearth closes stdin."""
    parser = argparse.ArgumentParser(prog="python -m hearth.skills.worker", description="Run one hearth skill.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--file", help="a skill in one .py file")
    where.add_argument("--package", help="a skill package folder (with __init__.py)")
    where.add_argument("--entry-point", help="module:attribute of an installed skill")
    parser.add_argument("--threads", type=int, default=8, help="sync handlers that may run at once")
    args = parser.parse_args(argv)
    kind, target = next((k, v) for k, v in (("file", args.file), ("package", args.package),
                                             ("entry_point", args.entry_point)) if v)
    # `python -m` runs this file as __main__: make `import hearth.skills.worker` find the same module.
    sys.modules.setdefault("hearth.skills.worker", sys.modules[__name__])
    # stdout is the protocol's alone: fd 1 becomes stderr, so prints (even from C code) cannot corrupt it.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        cls = load(kind, target)
        manifest = manifest_of(cls, target)
        _check_slots(manifest, target)
        try:
            skill = cls()
        except Exception as exc:
            traceback.print_exc()
            raise SkillProblemError(target, f"{cls.__name__}() raised {type(exc).__name__}: {exc}",
                                    "a Skill's __init__ must take no arguments and succeed") from exc
    except SkillProblemError as exc:
        out.write(dumps({"type": "problem", "problem": exc.problem.problem, "fix": exc.problem.fix}))
        out.flush()
        return 2
    worker = Worker(skill, manifest, out, threads=max(1, args.threads))
    worker.send({"type": "hello", "manifest": manifest_json(manifest)})
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_then_exit(worker, sys.stdin.buffer))
    return 0


async def _serve_then_exit(worker: Worker, stdin: IO[bytes]) -> None:
    # Leave as soon as hearth closes the pipe: asyncio.run's clean-up would wait for handlers that are still
    # running (a sync one stuck in a thread never ends), and threads that never return must not keep the
    # process alive either.
    code = 0
    try:
        await worker.serve(stdin)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
