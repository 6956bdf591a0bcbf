"""``WorkerExecutor``: a third-party skill run in a confined worker process of its own, kept alive.

It starts ``python -m hearth.skills.worker`` confined (``sandbox``), speaks to it through a
``WorkerProcess`` (``process``), and supervises it: when the process dies (crash, kill, out of memory) or
writes a malformed or over-long line, every call in flight fails at once with ``WorkerDied``, and a new
process starts after a backoff (0.5 s, doubling up to 30 s); a call waits for a restart that is due within
``RESTART_WAIT`` seconds and fails at once with ``WorkerUnavailable`` otherwise. The ``network`` grant is
asked at every start and every call: a worker is replaced when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import subprocess
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from hearth.sdk import CAPABILITIES, IntentSpec, SkillContext
from hearth.sdk.context import Denied
from hearth.skills.loader import SkillProblemError, WorkerSource
from hearth.skills.registry import Manifest
from hearth.skills.worker import ATTRIBUTES, MAX_MESSAGE

from .errors import WorkerDied, WorkerUnavailable
from .process import WorkerProcess
from .sandbox import Limits, confinement, worker_environment

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "RESTART_WAIT", "WorkerExecutor"]

_log = logging.getLogger("hearth.skills")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
RESTART_WAIT = 5.0
"""A call waits for a worker that restarts within this many seconds; later, it fails at once."""

_FLAGS = {"file": "--file", "package": "--package", "entry_point": "--entry-point"}


def _nothing() -> Collection[str]:
    return ()


class WorkerExecutor:
    """Runs one third-party skill in a confined, supervised worker process (see ``hearth.skills.isolation``).

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
        self._current: WorkerProcess | None = None
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
            current.fail(WorkerUnavailable(f"the {self._name()} skill was stopped"))
            await current.terminate(grace)
        while self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)

    async def _spawn(self) -> WorkerProcess:
        async with self._lock:
            if self._current is not None:
                return self._current
            isolate = self._isolate()
            worker = await self._launch(isolate)
            try:
                manifest = await worker.hello(self.source.target, within=self.handshake_timeout)
            except BaseException:
                await worker.terminate(1.0)
                raise
            if self._manifest is not None and manifest.name != self._manifest.name:
                await worker.terminate(1.0)
                raise SkillProblemError(self.source.target, f"its name changed from {self._manifest.name!r} to "
                                        f"{manifest.name!r}", "restart hearth to load it under its new name")
            self._manifest = manifest
            self._current = worker
            worker.reader = asyncio.create_task(worker.read())
            _log.info("skill %s: worker %d started (%s)", manifest.name, worker.process.pid,
                      "no network" if isolate else "with network")
            return worker

    def _isolate(self) -> bool:
        declared = self._manifest.permissions if self._manifest else CAPABILITIES  # before the first hello
        return not ("network" in declared and "network" in set(self.granted()))

    async def _launch(self, isolate: bool) -> WorkerProcess:
        where = self.source.target
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.home.chmod(0o700)
            (self.home / "tmp").mkdir(mode=0o700, exist_ok=True)
            process = await asyncio.create_subprocess_exec(
                *self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=worker_environment(self.home), cwd=self.home, start_new_session=True, limit=MAX_MESSAGE,
                preexec_fn=confinement(self.limits, isolate))
        except subprocess.SubprocessError as exc:  # the confinement failed in the child, before exec
            if isolate:
                raise SkillProblemError(where, "hearth cannot give its worker a network namespace of its own and "
                                        "a seccomp filter against Unix sockets, and it was not granted network, "
                                        "so it may not run unconfined",
                                        "allow user namespaces (sysctl user.max_user_namespaces=15000 and, on "
                                        "Debian/Ubuntu, kernel.unprivileged_userns_clone=1) or run hearth as "
                                        "root, on x86-64 or arm64 Linux with seccomp filters (a container's "
                                        "seccomp profile must allow prctl)") from exc
            raise SkillProblemError(where, f"its worker cannot be confined ({exc})",
                                    "check hearth's resource limits (ulimit -a)") from exc
        except OSError as exc:
            raise SkillProblemError(where, f"its worker cannot start ({exc})",
                                    f"check the Python interpreter {self.python} and the directory "
                                    f"{self.home}") from exc
        worker = WorkerProcess(process, isolate, asyncio.get_running_loop().time(), name=self._name,
                               answered=self._answered, ended=self._died)
        worker.output = asyncio.create_task(worker.log_output())
        return worker

    # --- supervision ---------------------------------------------------------------------------------------

    def _died(self, worker: WorkerProcess, reason: str) -> None:
        if worker.dead:
            return
        worker.dead = True
        worker.fail(WorkerDied(f"the {self._name()} skill's worker {worker.why or reason}"))
        task = asyncio.create_task(worker.terminate(2.0))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)
        if self._current is not worker:
            return
        self._current = None
        if not self._stopped:
            if asyncio.get_running_loop().time() - worker.started >= BACKOFF_MAX:
                self._delay = BACKOFF_FIRST
            self._restart(worker.why or reason)

    def _answered(self) -> None:
        self._delay = BACKOFF_FIRST  # it answers: healthy again

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

    async def _ready(self) -> WorkerProcess:
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

    # --- calls ---------------------------------------------------------------------------------------------

    async def run(self, spec: IntentSpec, params: Mapping[str, Any], context: SkillContext) -> Any:
        """Run ``spec`` in the worker; the handler's value, or ``SkillFailed``/``CapabilityDenied``/``WorkerError``."""
        worker = await self._ready()
        allowed = self._allowed(context)
        return await worker.call(next(self._ids), spec, params, context, allowed, self.stuck_after)

    def _allowed(self, context: SkillContext) -> frozenset[str]:
        """Declared in the manifest, granted by an admin, and present in this call's context."""
        declared = set(self._manifest.permissions) if self._manifest else set()
        present = {capability for capability, attribute in ATTRIBUTES.items()
                   if not isinstance(getattr(context, attribute, None), Denied | None)}
        return frozenset(declared & set(self.granted()) & present)

