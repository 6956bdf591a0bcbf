"""Testing tools for hearth and for skill authors.

* ``TestAssistant``: a real hearth with your skills, in a test: ``reply = await bot.send("...")``;
* ``ModelSimulator`` and ``Turn``: a scripted model server speaking Ollama's and OpenAI's wire formats.

``TestAssistant`` is imported on first use: it brings the whole runtime with it, and
``python -m hearth.testing.modelsim`` (a standalone model server) should start without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assistant import Reply, TestAssistant
    from .modelsim import ModelSimulator, Turn

__all__ = ["ModelSimulator", "Reply", "TestAssistant", "Turn"]

_HOMES = {"TestAssistant": ".assistant", "Reply": ".assistant", "ModelSimulator": ".modelsim", "Turn": ".modelsim"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'hearth.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
