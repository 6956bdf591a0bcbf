"""Running somebody else's skill in a confined process of its own, and keeping that process alive.

``WorkerExecutor`` is the ``Executor`` of a skill from a package or the skills folder. It starts
``python -m hearth.skills.worker`` (that module describes the wire protocol) and:

* confines it (``sandbox``): an environment holding only PATH, the locale and TZ (no hearth secrets), HOME,
  TMPDIR and the working directory in a private directory, ``resource`` limits (``Limits``) and, unless the
  skill was granted ``network``, a network namespace of its own (a user namespace too, where the kernel
  allows it) whose only interface is a loopback that is down, and a seccomp filter that refuses it
  Unix-domain sockets (``seccomp``), which have paths in the filesystem that no network namespace hides:
  the skill cannot open a socket to anything. Where either cannot be set up, a skill without ``network``
  does not start (fail closed). A skill needs no network of its own for HTTP: ``context.http`` is
  performed by hearth;
* performs the capability requests of its calls itself (``process``), checking each one again against the
  call's capabilities and the methods each capability has, since the worker can write anything to its pipe;
* supervises it (``executor``): when the process dies (crash, kill, out of memory) or writes a malformed or
  over-long line, every call in flight fails at once with ``WorkerDied``, and a new process starts after a
  backoff (0.5 s, doubling up to 30 s); a cancelled call that does not stop gets its worker replaced.

``network`` lifts both, by decision: a worker granted it runs in hearth's own network namespace and may
use Unix sockets, as hearth's user may. Such a worker already reaches every service on hearth's loopback
and the abstract Unix sockets of that namespace; refusing it only the sockets with a path would be a
half-measure that breaks what it may legitimately use (a local service's socket, ``multiprocessing``'s
managers). So ``network`` means hearth's own reach, Docker's socket included where hearth's user may
open it: grant it only to a skill trusted that far.

The runtime makes one executor per ``WorkerSource``. ``granted`` is asked at every start and every call
(before the first handshake it is usually empty, so the first worker is confined; a worker is replaced
when the ``network`` grant changes)::

    executor = WorkerExecutor(source, home=private_home(data_dir, source))
    manifest = await executor.handshake()  # SkillProblemError names the file and the fix
    skill = LoadedSkill(manifest, executor, source.origin, str(source))
    executor.granted = lambda: skill.granted
    registry.add(skill)
"""

from .errors import SkillCrashed, WorkerDied, WorkerError, WorkerUnavailable
from .executor import BACKOFF_FIRST, BACKOFF_MAX, RESTART_WAIT, WorkerExecutor
from .sandbox import Limits, private_home, worker_environment

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "RESTART_WAIT",
    "Limits",
    "SkillCrashed",
    "WorkerDied",
    "WorkerError",
    "WorkerExecutor",
    "WorkerUnavailable",
    "private_home",
    "worker_environment",
]
