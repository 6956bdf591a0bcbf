"""The hearth skill SDK: everything a skill imports, and nothing else.

    from hearth.sdk import Skill, intent        # or, as in the seed's template:
    from skill_sdk import Skill, intent

See ``Skill`` and ``intent`` for declaring a skill, the slot types (``Text``, ``Number``, ``DateTime``,
``Duration``, ``Choice``) for typed parameters, ``SkillContext`` for what a handler may use, and
``Result``/``SkillFailed`` for answering. ``hearth.testing`` runs a skill in a test assistant.
"""

from .context import CapabilityDenied, Files, Http, HttpResponse, Messages, SkillContext, Storage
from .skill import CAPABILITIES, IntentSpec, Result, Skill, SkillConversation, SkillFailed, SkillUser, intent
from .slots import Choice, DateTime, Duration, Number, Slot, SlotError, Text

__all__ = [
    "CAPABILITIES",
    "CapabilityDenied",
    "Choice",
    "DateTime",
    "Duration",
    "Files",
    "Http",
    "HttpResponse",
    "IntentSpec",
    "Messages",
    "Number",
    "Result",
    "Skill",
    "SkillContext",
    "SkillConversation",
    "SkillFailed",
    "SkillUser",
    "Slot",
    "SlotError",
    "Storage",
    "Text",
    "intent",
]
