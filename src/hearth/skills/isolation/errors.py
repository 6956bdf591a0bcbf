"""What a call to a third-party skill's worker can fail with, besides the skill's own ``SkillFailed`` and
``CapabilityDenied``::

    SkillError
    └── WorkerError          the worker could not answer (e.g. a value hearth cannot read)
        ├── SkillCrashed     the handler raised something other than SkillFailed
        ├── WorkerDied       the process ended (or was replaced) while the call was in flight
        └── WorkerUnavailable no process runs: restarting after a failure, cannot start, or stopped
"""

from __future__ import annotations

from hearth.errors import SkillError

__all__ = ["SkillCrashed", "WorkerDied", "WorkerError", "WorkerUnavailable"]


class WorkerError(SkillError):
    """A third-party skill's worker could not answer a call."""


class SkillCrashed(WorkerError):
    """The handler raised something other than ``SkillFailed``; the message is the worker's report."""


class WorkerDied(WorkerError):
    """The worker process ended (or was replaced) while the call was in flight."""


class WorkerUnavailable(WorkerError):
    """No worker is running: it is restarting after a failure, cannot start, or was stopped."""
