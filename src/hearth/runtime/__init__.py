"""The composition root and the server that runs it."""

from .runtime import Runtime, load_settings
from .server import Listeners, bind

__all__ = ["Listeners", "Runtime", "bind", "load_settings"]
