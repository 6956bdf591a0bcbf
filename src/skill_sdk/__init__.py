"""``skill_sdk``: the name the seed's skill template imports; the same objects as ``hearth.sdk``."""

from hearth.sdk import *  # noqa: F403
from hearth.sdk import __all__  # noqa: F401
