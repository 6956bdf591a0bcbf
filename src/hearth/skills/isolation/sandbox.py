"""The confinement of a third-party skill's worker process, set up before it runs a line of the skill.

* An environment holding only PATH, the locale and TZ (no hearth secrets) and what Python needs, with HOME
  and TMPDIR in the skill's private directory (``private_home``, also its working directory);
* ``resource`` limits (``Limits``), lowered to hearth's own where those are lower;
* death with hearth (``PR_SET_PDEATHSIG``);
* unless the skill was granted ``network``, a network namespace of its own (a user namespace too, where the
  kernel allows it) whose only interface is a loopback that is down, and no Unix-domain sockets (the
  ``seccomp`` filter): the skill cannot open a socket to anything. Where either cannot be set up the child
  fails before exec, and the skill does not start.

``confinement`` returns what the child runs between fork and exec; everything it needs is looked up
before the fork, since the child of a threaded process may only make simple calls.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import importlib.util
import os
import re
import resource
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hearth.skills.loader import WorkerSource

from .seccomp import unix_socket_filter

__all__ = ["Limits", "confinement", "private_home", "worker_environment"]

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1


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


def confinement(limits: Limits, isolate: bool) -> Callable[[], None]:
    """What the child runs between fork and exec: die with hearth, limits, then (``isolate``) a network
    namespace and no Unix-domain sockets."""
    rlimits = limits.rlimits()
    prctl, unshare = _libc("prctl"), _libc("unshare") if isolate else None
    no_unix_sockets = unix_socket_filter(prctl) if isolate else None
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
        assert no_unix_sockets is not None
        no_unix_sockets()  # last: it confines the worker, not the setting up of its confinement

    return confine
