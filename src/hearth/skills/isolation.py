"""Running somebody else's skill in a confined process of its own, and keeping that process alive.

``WorkerExecutor`` is the ``Executor`` of a skill from a package or the skills folder. It starts
``python -m hearth.skills.worker`` (that module describes the wire protocol) and:

* confines it: an environment holding only PATH, the locale and TZ (no hearth secrets), HOME, TMPDIR
  and the working directory in a private directory, ``resource`` limits (``Limits``) and, unless the
  skill was granted ``network``, a network namespace of its own (a user namespace too, where the kernel
  allows it) whose only interface is a loopback that is down: the skill cannot open a socket to
  anything. Where no namespace can be made, a skill without ``network`` does not start (fail closed).
  A skill needs no network of its own for HTTP: ``context.http`` is performed by hearth;
* performs the capability requests of its calls itself, checking each one again against the call's
  capabilities and the methods each capability has, since the worker can write anything to its pipe;
* supervises it: when the process dies (crash, kill, out of memory) or writes a malformed or over-long
  line, every call in flight fails at once with ``WorkerDied``, and a new process starts after a backoff
  (0.5 s, doubling up to 30 s); a cancelled call that does not stop gets its worker replaced.

The runtime makes one executor per ``WorkerSource``. ``granted`` is asked at every start and every call
(before the first handshake it is usually empty, so the first worker is confined; a worker is replaced
when the ``network`` grant changes)::

    executor = WorkerExecutor(source, home=private_home(data_dir, source))
    manifest = await executor.handshake()  # SkillProblemError names the file and the fix
    skill = LoadedSkill(manifest, executor, source.origin, str(source))
    executor.granted = lambda: skill.granted
    registry.add(skill)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import importlib.util
import itertools
import json
import logging
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from hearth.errors import SkillError
from hearth.sdk import CAPABILITIES, CapabilityDenied, IntentSpec, SkillContext, SkillFailed
from hearth.sdk.context import Denied

from .loader import SkillProblemError, WorkerSource
from .registry import Manifest
from .worker import ATTRIBUTES, MAX_MESSAGE, METHODS, decode, dumps, encode, manifest_from_json

_log = logging.getLogger("hearth.skills")
_output = logging.getLogger("hearth.skills.worker")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
RESTART_WAIT = 5.0
"""A call waits for a worker that restarts within this many seconds; later, it fails at once."""

_FLAGS = {"file": "--file", "package": "--package", "entry_point": "--entry-point"}
_ANSWERS = frozenset({"result", "failed", "denied", "crashed", "cancelled"})
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1
_PASSED_ON: tuple[type[Exception], ...] = (ValueError, TypeError, LookupError, TimeoutError, aiohttp.ClientError)
"""Errors of a capability whose message the skill may read; others (an OSError naming hearth's files, a
database error) reach it by their type's name only, and hearth logs them."""


class WorkerError(SkillError):
    """A third-party skill's worker could not answer a call."""


class SkillCrashed(WorkerError):
    """The handler raised something other than ``SkillFailed``; the message is the worker's report."""


class WorkerDied(WorkerError):
    """The worker process ended (or was replaced) while the call was in flight."""


class WorkerUnavailable(WorkerError):
    """No worker is running: it is restarting after a failure, cannot start, or was stopped."""


@dataclass(frozen=True)
class Limits:
    """What one worker process may use: ``resource`` limits, set before it starts (lowered to hearth's own)."""

    memory: int = 1024**3
    """Bytes of address space (RLIMIT_AS)."""
    cpu_seconds: int = 3600
    """CPU time over the process's life (RLIMIT_CPU); a worker that uses it up is restarted."""
    open_files: int = 256
    processes: int = 512
    """RLIMIT_NPROC: threads and processes (per user; in the worker's own user namespace when it has one)."""
    file_size: int = 256 * 1024**2
    """The largest file it may write (RLIMIT_FSIZE)."""

    def rlimits(self) -> list[tuple[int, int, int]]:
        """``(resource, soft, hard)`` for ``setrlimit``; the hard CPU limit (SIGKILL) 5 s after the soft one."""
        wanted = [(resource.RLIMIT_AS, self.memory, self.memory), (resource.RLIMIT_CORE, 0, 0),
                  (resource.RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 5),
                  (resource.RLIMIT_NOFILE, self.open_files, self.open_files),
                  (resource.RLIMIT_NPROC, self.processes, self.processes),
                  (resource.RLIMIT_FSIZE, self.file_size, self.file_size)]
        limits = []
        for kind, soft, hard in wanted:
            _, current = resource.getrlimit(kind)
            hard = hard if current == resource.RLIM_INFINITY else min(hard, current)
            limits.append((kind, min(soft, hard), hard))
        return limits


def private_home(data_dir: Path, source: WorkerSource) -> Path:
    """The private directory of the skill at ``source``: ``<data_dir>/skill-homes/<name>-<hash>``."""
    where = source.target if source.kind == "entry_point" else str(Path(source.target).resolve())
    stem = where.partition(":")[0].rpartition(".")[2] if source.kind == "entry_point" else Path(where).stem
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:40].lstrip(".") or "skill"
    digest = hashlib.sha256(f"{source.kind}:{where}".encode()).hexdigest()[:10]
    return data_dir / "skill-homes" / f"{slug}-{digest}"


def worker_environment(home: Path, parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a worker: PATH, locale and TZ from hearth's, and what Python needs."""
    parent = os.environ if parent is None else parent
    env = {k: v for k, v in parent.items() if k in ("PATH", "LANG", "LANGUAGE", "TZ") or k.startswith("LC_")}
    roots = dict.fromkeys(_import_root(name) for name in ("hearth", "skill_sdk"))
    env.update(HOME=str(home), TMPDIR=str(home / "tmp"), PYTHONPATH=os.pathsep.join(r for r in roots if r),
               PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1",
               MALLOC_ARENA_MAX="2")  # glibc reserves 64 MiB of address space per thread arena otherwise
    return env


def _import_root(package: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(next(iter(spec.submodule_search_locations))).resolve().parent)


def _libc(name: str) -> Callable[..., int] | None:
    """A libc function (found before forking: the child only calls it), or None where there is none."""
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    return function


def _confinement(limits: Limits, isolate: bool) -> Callable[[], None]:
    """What the child runs between fork and exec: die with hearth, limits, then a network namespace."""
    rlimits = limits.rlimits()
    prctl, unshare = _libc("prctl"), _libc("unshare") if isolate else None
    uid, gid = os.getuid(), os.getgid()
    maps = ((b"/proc/self/setgroups", b"deny"), (b"/proc/self/uid_map", f"{uid} {uid} 1".encode()),
            (b"/proc/self/gid_map", f"{gid} {gid} 1".encode()))

    def confine() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for kind, soft, hard in rlimits:
            resource.setrlimit(kind, (soft, hard))
        if not isolate:
            return
        if unshare is None:
            raise OSError(errno.ENOSYS, "unshare() is not available")
        # A user namespace first: then even a skill running as root cannot setns() back to the host's network.
        if unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
            for path, data in maps:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
        elif unshare(_CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "no network namespace")

    return confine


def _nothing() -> Collection[str]:
    return ()


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


class _Process:
    """One running worker process and its calls."""

    def __init__(self, process: asyncio.subprocess.Process, isolated: bool, started: float) -> None:
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

    def write(self, data: bytes) -> None:
        if not self.stdin.is_closing():
            self.stdin.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.stdin.drain()


class WorkerExecutor:
    """Runs one third-party skill in a confined, supervised worker process (see the module docstring).

    ``home`` is the skill's private directory (``private_home``); ``granted`` returns the capabilities an
    admin granted the skill (it may be replaced later through the attribute of that name), ``python`` the
    interpreter with hearth installed, ``stuck_after`` how long a cancelled call may take to stop.
    """

    def __init__(self, source: WorkerSource, *, home: Path, granted: Callable[[], Collection[str]] = _nothing,
                 python: str = sys.executable, limits: Limits | None = None, handshake_timeout: float = 30.0,
                 stuck_after: float = 10.0) -> None:
        self.source = source
        self.home = home
        self.granted = granted
        self.python = python
        self.limits = limits or Limits()
        self.handshake_timeout = handshake_timeout
        self.stuck_after = stuck_after
        target = source.target if source.kind == "entry_point" else str(Path(source.target).resolve())
        self._argv = [python, "-B", "-s", "-P", "-m", "hearth.skills.worker", _FLAGS[source.kind], target]
        self._manifest: Manifest | None = None
        self._current: _Process | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._stopped = False
        self._delay = BACKOFF_FIRST
        self._restarter: asyncio.Task[None] | None = None
        self._restart_at = 0.0
        self._next: asyncio.Future[None] | None = None
        self._reason = ""
        self._reaping: set[asyncio.Task[None]] = set()

    @property
    def manifest(self) -> Manifest | None:
        """What the worker reported in its last handshake."""
        return self._manifest

    @property
    def available(self) -> bool:
        """Whether a worker process is running and can take calls now."""
        return self._current is not None and not self._current.dead

    @property
    def pid(self) -> int | None:
        """The running worker's process id."""
        return self._current.process.pid if self._current is not None else None

    def _name(self) -> str:
        return self._manifest.name if self._manifest else Path(self.source.target.partition(":")[0]).name

    # --- starting and stopping ------------------------------------------------------------------------

    async def handshake(self) -> Manifest:
        """Start the worker (unless it runs) and return the manifest it reports; ``SkillProblemError`` if none."""
        self._stopped = False
        await self._spawn()
        assert self._manifest is not None
        return self._manifest

    async def start(self) -> None:
        """Make sure a worker runs; one that cannot start is logged and retried with backoff."""
        self._stopped = False
        if self._current is not None or (self._restarter is not None and not self._restarter.done()):
            return
        try:
            await self._spawn()
        except SkillProblemError as exc:
            _log.error("skill %s cannot start: %s", self._name(), exc)
            self._restart(exc.problem.problem)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the worker: SIGTERM, SIGKILL after ``grace`` seconds, and reap it; calls in flight fail."""
        self._stopped = True
        if self._restarter is not None:
            self._restarter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restarter
            self._restarter = None
        self._resolve_next(WorkerUnavailable(f"the {self._name()} skill was stopped"))
        current, self._current = self._current, None
        if current is not None:
            self._fail(current, WorkerUnavailable(f"the {self._name()} skill was stopped"))
            await self._terminate(current, grace)
        while self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)

    async def _spawn(self) -> _Process:
        async with self._lock:
            if self._current is not None:
                return self._current
            isolate = self._isolate()
            worker = await self._launch(isolate)
            try:
                manifest = await self._hello(worker)
            except BaseException:
                await self._terminate(worker, 1.0)
                raise
            if self._manifest is not None and manifest.name != self._manifest.name:
                await self._terminate(worker, 1.0)
                raise SkillProblemError(self.source.target, f"its name changed from {self._manifest.name!r} to "
                                        f"{manifest.name!r}", "restart hearth to load it under its new name")
            self._manifest = manifest
            self._current = worker
            worker.reader = asyncio.create_task(self._read(worker))
            _log.info("skill %s: worker %d started (%s)", manifest.name, worker.process.pid,
                      "no network" if isolate else "with network")
            return worker

    def _isolate(self) -> bool:
        declared = self._manifest.permissions if self._manifest else CAPABILITIES  # before the first hello
        return not ("network" in declared and "network" in set(self.granted()))

    async def _launch(self, isolate: bool) -> _Process:
        where = self.source.target
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.home.chmod(0o700)
            (self.home / "tmp").mkdir(mode=0o700, exist_ok=True)
            process = await asyncio.create_subprocess_exec(
                *self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=worker_environment(self.home), cwd=self.home, start_new_session=True, limit=MAX_MESSAGE,
                preexec_fn=_confinement(self.limits, isolate))
        except subprocess.SubprocessError as exc:  # the confinement failed in the child, before exec
            if isolate:
                raise SkillProblemError(where, "hearth cannot give its worker a network namespace of its own, and "
                                        "it was not granted network, so it may not run unconfined",
                                        "allow user namespaces (sysctl user.max_user_namespaces=15000 and, on "
                                        "Debian/Ubuntu, kernel.unprivileged_userns_clone=1) or run hearth as "
                                        "root") from exc
            raise SkillProblemError(where, f"its worker cannot be confined ({exc})",
                                    "check hearth's resource limits (ulimit -a)") from exc
        except OSError as exc:
            raise SkillProblemError(where, f"its worker cannot start ({exc})",
                                    f"check the Python interpreter {self.python} and the directory "
                                    f"{self.home}") from exc
        worker = _Process(process, isolate, asyncio.get_running_loop().time())
        worker.output = asyncio.create_task(self._log_output(worker))
        return worker

    async def _hello(self, worker: _Process) -> Manifest:
        where = self.source.target
        try:
            line = await asyncio.wait_for(worker.stdout.readline(), self.handshake_timeout)
        except TimeoutError:
            raise SkillProblemError(where, f"its worker did not report its manifest within "
                                    f"{self.handshake_timeout:g} s", "make importing it quick (no network or long "
                                    "work at import time); see hearth's log") from None
        except ValueError as exc:
            raise SkillProblemError(where, "its worker sent an over-long first line",
                                    "do not write to file descriptor 1 at import time") from exc
        if not line:
            reason = await self._exit_reason(worker)
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

    async def _terminate(self, worker: _Process, grace: float) -> None:
        worker.dead = True
        process = worker.process
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
        worker.stdin.close()
        if worker.reader is not None and worker.reader is not asyncio.current_task():
            worker.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker.reader
        if worker.output is not None:  # its last output (a traceback, say) reaches the log
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(worker.output, 2.0)

    async def _exit_reason(self, worker: _Process) -> str:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.process.wait(), 2.0)
        code = worker.process.returncode
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

    # --- supervision ---------------------------------------------------------------------------------------

    def _died(self, worker: _Process, reason: str) -> None:
        if worker.dead:
            return
        worker.dead = True
        self._fail(worker, WorkerDied(f"the {self._name()} skill's worker {worker.why or reason}"))
        task = asyncio.create_task(self._terminate(worker, 2.0))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)
        if self._current is not worker:
            return
        self._current = None
        if not self._stopped:
            if asyncio.get_running_loop().time() - worker.started >= BACKOFF_MAX:
                self._delay = BACKOFF_FIRST
            self._restart(worker.why or reason)

    def _fail(self, worker: _Process, error: Exception) -> None:
        calls, worker.calls = worker.calls, {}
        for call in calls.values():
            call.end()
            if not call.answer.done():
                call.answer.set_exception(error)

    def _restart(self, reason: str) -> None:
        self._reason = reason
        if self._restarter is not None and not self._restarter.done():
            return
        _log.warning("skill %s: its worker %s; restarting it in %g s", self._name(), reason, self._delay)
        self._plan()
        self._restarter = asyncio.create_task(self._restart_loop())

    def _plan(self) -> None:
        """The next restart: when, and the future that callers waiting for it await."""
        loop = asyncio.get_running_loop()
        delay, self._delay = self._delay, min(self._delay * 2, BACKOFF_MAX)
        self._restart_at = loop.time() + delay
        self._next = loop.create_future()

    async def _restart_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopped:
            await asyncio.sleep(max(0.0, self._restart_at - loop.time()))
            try:
                await self._spawn()
            except SkillProblemError as exc:
                self._reason = exc.problem.problem
                _log.error("skill %s: its worker cannot restart: %s; next try in %g s", self._name(), exc,
                           self._delay)
                self._resolve_next(WorkerUnavailable(f"the {self._name()} skill cannot start: {self._reason}"))
                self._plan()
                continue
            self._resolve_next(None)
            return

    def _resolve_next(self, error: Exception | None) -> None:
        future, self._next = self._next, None
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
            future.exception()  # nobody may be waiting: not an "exception was never retrieved"

    async def _ready(self) -> _Process:
        """The running worker, after a restart that is due soon; ``WorkerUnavailable`` when there is none."""
        loop = asyncio.get_running_loop()
        for _ in range(3):
            if self._stopped:
                raise WorkerUnavailable(f"the {self._name()} skill is stopped")
            current = self._current
            if current is not None:
                isolate = self._isolate()
                # A grant of network waits for an idle moment; a revoked one replaces the worker at once.
                if current.isolated == isolate or (current.isolated and current.calls):
                    return current
                current.why = "was replaced: its network grant changed"
                self._current = None
                self._died(current, current.why)
            elif self._restarter is not None and not self._restarter.done():
                if self._restart_at - loop.time() > RESTART_WAIT or self._next is None:
                    raise WorkerUnavailable(f"the {self._name()} skill's worker {self._reason}; it restarts in "
                                            f"{max(0.0, self._restart_at - loop.time()):.0f} s")
                await asyncio.shield(self._next)
                continue
            try:
                return await self._spawn()
            except SkillProblemError as exc:
                self._restart(exc.problem.problem)
                raise WorkerUnavailable(f"the {self._name()} skill cannot start: {exc.problem.problem}") from exc
        raise WorkerUnavailable(f"the {self._name()} skill's worker keeps stopping")

    def _stuck(self, worker: _Process, call_id: int) -> None:
        if call_id in worker.calls and not worker.dead:
            worker.why = f"was replaced: a cancelled call did not stop within {self.stuck_after:g} s"
            _log.warning("skill %s: its worker %s", self._name(), worker.why)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.process.pid, signal.SIGKILL)

    # --- calls ---------------------------------------------------------------------------------------------

    async def run(self, spec: IntentSpec, params: Mapping[str, Any], context: SkillContext) -> Any:
        """Run ``spec`` in the worker; the handler's value, or ``SkillFailed``/``CapabilityDenied``/``WorkerError``."""
        worker = await self._ready()
        allowed = self._allowed(context)
        call_id = next(self._ids)
        data = dumps({"type": "call", "id": call_id, "intent": spec.name, "params": encode(dict(params)),
                      "context": self._context(context, allowed)})
        if len(data) > MAX_MESSAGE:
            raise WorkerError(f"the call is larger than {MAX_MESSAGE // 1024**2} MiB")
        call = _Call(allowed, context, asyncio.get_running_loop().create_future())
        worker.calls[call_id] = call
        worker.write(data)
        try:
            await worker.drain()
            reply = await call.answer
        except asyncio.CancelledError:
            if worker.calls.get(call_id) is call and not worker.dead:
                call.cancelled = True
                call.end()
                worker.write(dumps({"type": "cancel", "id": call_id}))
                asyncio.get_running_loop().call_later(self.stuck_after, self._stuck, worker, call_id)
            raise
        return self._outcome(reply)

    def _allowed(self, context: SkillContext) -> frozenset[str]:
        """Declared in the manifest, granted by an admin, and present in this call's context."""
        declared = set(self._manifest.permissions) if self._manifest else set()
        present = {capability for capability, attribute in ATTRIBUTES.items()
                   if not isinstance(getattr(context, attribute, None), Denied | None)}
        return frozenset(declared & set(self.granted()) & present)

    @staticmethod
    def _context(context: SkillContext, allowed: frozenset[str]) -> dict[str, Any]:
        user, conversation = context.user, context.conversation
        return {"user": {"id": user.id, "name": user.name, "timezone": user.timezone, "roles": sorted(user.roles)},
                "conversation": {"id": conversation.id, "channel": conversation.channel},
                "config": encode(dict(context.config)), "tz": getattr(context.tz, "key", None) or str(context.tz),
                "now": context.now.isoformat(), "capabilities": sorted(allowed)}

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

    async def _read(self, worker: _Process) -> None:
        while True:
            try:
                line = await worker.stdout.readline()
            except ValueError:
                reason = f"sent a line longer than {MAX_MESSAGE // 1024**2} MiB"
                _log.error("skill %s: its worker %s", self._name(), reason)
                break
            if not line:
                reason = await self._exit_reason(worker)
                break
            try:
                self._dispatch(worker, json.loads(line))
            except (ValueError, TypeError, KeyError) as exc:
                reason = f"sent a malformed message ({exc})"
                _log.error("skill %s: its worker %s: %r", self._name(), reason, line[:200])
                break
        self._died(worker, reason)

    def _dispatch(self, worker: _Process, message: dict[str, Any]) -> None:
        kind, ident = message["type"], message["id"]
        if not isinstance(ident, int) or isinstance(ident, bool):
            raise TypeError("its id is not an integer")
        if kind in _ANSWERS:
            call = worker.calls.pop(ident, None)
            self._delay = BACKOFF_FIRST  # it answers: healthy again
            if call is not None:
                call.end()
                if not call.answer.done():
                    call.answer.set_result(message)
        elif kind == "cap":
            self._request(worker, ident, message)
        else:
            raise ValueError(f"unexpected type {kind!r}")

    def _request(self, worker: _Process, ident: int, message: Mapping[str, Any]) -> None:
        call = worker.calls.get(message.get("call", 0))
        capability, method = message.get("capability"), message.get("method")
        if not isinstance(capability, str) or not isinstance(method, str):
            raise TypeError("capability and method must be strings")
        if call is None or call.cancelled:
            worker.write(dumps({"type": "cap_result", "id": ident, "ok": False, "error": "RuntimeError: the call "
                                "has ended"}))
            return
        if capability not in call.allowed or method not in METHODS.get(capability, ()):
            # The worker's own objects refuse these before asking: this came from code writing to the pipe.
            _log.warning("skill %s asked for %s.%s, which its call may not use: refused", self._name(),
                         capability[:40], method[:40])
            worker.write(dumps({"type": "cap_result", "id": ident, "ok": False, "denied": True,
                                "error": "CapabilityDenied"}))
            return
        task = asyncio.create_task(self._perform(worker, call, ident, capability, method, message.get("args"),
                                                 message.get("kwargs")))
        call.requests.add(task)
        task.add_done_callback(call.requests.discard)

    async def _perform(self, worker: _Process, call: _Call, ident: int, capability: str, method: str,
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
        worker.write(data)
        await worker.drain()

    async def _log_output(self, worker: _Process) -> None:
        """The worker's stderr (its prints and tracebacks), line by line, under ``hearth.skills.worker``."""
        pending = b""
        while chunk := await worker.stderr.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > 16384:
                lines.append(pending[:16384] + b" [...]")
                pending = b""
            for line in lines:
                _output.info("%s[%d]: %s", self._name(), worker.process.pid, line.decode("utf-8", "replace"),
                             extra={"skill": self._name()})
        if pending:
            _output.info("%s[%d]: %s", self._name(), worker.process.pid, pending.decode("utf-8", "replace"),
                         extra={"skill": self._name()})
