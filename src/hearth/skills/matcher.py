"""Deterministic intent matching: explicit commands, then templates with typed slots. No model needed.

* Commands: ``/calendar schedule_meeting start="tomorrow 3pm" duration=30m`` names a skill, an intent and
  ``key=value`` slots; ``/calendar <words>`` matches the words against that skill's templates only;
  ``/calendar`` alone lists what the skill can do. A command is certain: confidence 1.0.
* Templates: each intent's examples (``"schedule a meeting {start} for {duration}"``) become regular
  expressions in which each ``{slot}`` captures words, parsed by the slot's type (a date that is not a
  date fails the match). Confidence grows with how much of the sentence the template's fixed words
  explain and whether every required slot is filled; a template that matches only part of a sentence, or
  leaves required slots empty, yields a lower confidence so that hearth asks rather than guesses.

The matcher returns the best candidate; the control plane decides what to do with its confidence.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from hearth.sdk import IntentSpec, Slot, SlotError

CERTAIN = 1.0
_WORD = re.compile(r"\w+")
_FILLER = {"please", "can", "you", "could", "would", "hearth", "hey", "hi", "for", "me", "i", "want", "to", "a",
           "an", "the", "and", "kindly", "just"}


@dataclass(frozen=True)
class Candidate:
    """A skill intent that might be meant, with the slots found so far."""

    skill: str
    intent: IntentSpec
    params: Mapping[str, Any]
    confidence: float
    missing: tuple[str, ...] = ()
    problems: Mapping[str, str] = field(default_factory=dict)
    source: str = "template"

    @property
    def tool(self) -> str:
        return tool_name(self.skill, self.intent.name)


def tool_name(skill: str, intent: str) -> str:
    """The name a skill intent has as a model tool (``[a-zA-Z0-9_-]`` only, as OpenAI requires)."""
    return f"{skill}__{intent}"


@dataclass(frozen=True)
class _Template:
    """An example sentence as a sequence of fixed words and slot holes."""

    skill: str
    intent: IntentSpec
    elements: tuple[tuple[str, str], ...]  # ("word", w) or ("slot", name)
    keywords: frozenset[str]  # fixed words that must all occur in a sentence the template explains


def _compile(skill: str, spec: IntentSpec, example: str) -> _Template:
    elements: list[tuple[str, str]] = []
    for piece in re.split(r"({\w+})", example.strip()):
        hole = re.fullmatch(r"{(\w+)}", piece)
        if hole:
            elements.append(("slot", hole.group(1)))
        else:
            elements.extend(("word", w) for w in _WORD.findall(piece.lower()))
    keywords = frozenset(value for kind, value in elements if kind == "word" and value not in _FILLER)
    return _Template(skill, spec, tuple(elements), keywords)


@dataclass(frozen=True)
class _Token:
    word: str
    start: int
    end: int


MAX_TOKENS = 60


class _Search:
    """Finds the best way a template explains a sentence: fixed words in order (filler words optional),
    each slot the longest span of words that its type parses."""

    def __init__(self, template: _Template, text: str, tokens: Sequence[_Token], tz: tzinfo, now: datetime) -> None:
        self.template = template
        self.text = text
        self.tokens = tokens
        self.tz = tz
        self.now = now
        self.parsed: dict[tuple[str, int, int], bool] = {}

    def run(self) -> tuple[dict[str, str], int] | None:
        """Slot texts and the number of meaningful words explained, for the best start position."""
        best: tuple[dict[str, str], int, int] | None = None
        for start in range(len(self.tokens)):
            found = self._at(0, start)
            if found is not None and (best is None or found[1:] > best[1:]):
                best = found
        return None if best is None else (best[0], best[1])

    def _at(self, element: int, index: int) -> tuple[dict[str, str], int, int] | None:
        """(slots, meaningful words explained, words in typed slots) for the rest of the template."""
        elements = self.template.elements
        if element == len(elements):
            return {}, 0, 0
        kind, value = elements[element]
        if kind == "word":
            if index < len(self.tokens) and self.tokens[index].word == value:
                rest = self._at(element + 1, index + 1)
                if rest is not None:
                    return rest[0], rest[1] + (0 if value in _FILLER else 1), rest[2]
            if value in _FILLER:
                return self._at(element + 1, index)
            return None
        typed = self.template.intent.slots[value].kind != "text"
        best: tuple[dict[str, str], int, int] | None = None
        for end in range(len(self.tokens), index, -1):  # longest first
            if not self._parses(value, index, end):
                continue
            rest = self._at(element + 1, end)
            if rest is None:
                continue
            words = sum(1 for t in self.tokens[index:end] if t.word not in _FILLER)
            # ties go to the typed slot taking more words: "book dentist tomorrow at 10am" -> the date
            # is "tomorrow at 10am", not "10am" with "tomorrow at" in the title
            found = ({value: self._span(index, end), **rest[0]}, rest[1] + words,
                     rest[2] + (end - index if typed else 0))
            if best is None or found[1:] > best[1:]:
                best = found
        return best

    def _span(self, start: int, end: int) -> str:
        return self.text[self.tokens[start].start:self.tokens[end - 1].end]

    def _parses(self, slot_name: str, start: int, end: int) -> bool:
        key = (slot_name, start, end)
        if key not in self.parsed:
            try:
                self.template.intent.slots[slot_name].parse(self._span(start, end), tz=self.tz, now=self.now)
                self.parsed[key] = True
            except SlotError:
                self.parsed[key] = False
        return self.parsed[key]


class Matcher:
    """Matches text against the intents of the enabled skills."""

    def __init__(self) -> None:
        self._templates: list[_Template] = []
        self._skills: dict[str, dict[str, IntentSpec]] = {}

    def load(self, skills: Mapping[str, Mapping[str, IntentSpec]]) -> None:
        """Replace the known intents (called when skills are loaded, enabled or disabled)."""
        self._skills = {name: dict(intents) for name, intents in skills.items()}
        self._templates = [_compile(skill, spec, example)
                           for skill, intents in self._skills.items()
                           for spec in intents.values() for example in spec.examples]

    def match(self, text: str, *, tz: tzinfo, now: datetime) -> Candidate | None:
        text = text.strip()
        if text.startswith("/"):
            return self._command(text, tz=tz, now=now)
        return self._best(self._templates, text, tz=tz, now=now)

    # --- commands ------------------------------------------------------------------------------

    def _command(self, text: str, *, tz: tzinfo, now: datetime) -> Candidate | None:
        head, _, rest = text[1:].partition(" ")
        skill = head.strip().lower().replace("-", "_")
        if skill not in self._skills:
            return None
        intents = self._skills[skill]
        rest = rest.strip()
        if not rest:
            return Candidate(skill, _HELP, {}, CERTAIN, source="command")
        first, _, tail = rest.partition(" ")
        if first.lower() in intents:
            spec = intents[first.lower()]
            try:
                raw = _key_values(tail)
            except ValueError as exc:
                return Candidate(skill, spec, {}, CERTAIN, problems={"_": str(exc)}, source="command")
            if raw is None:  # free words after the intent name: match them against its templates
                mine = [t for t in self._templates if t.skill == skill and t.intent.name == spec.name]
                found = self._best(mine, tail, tz=tz, now=now) if tail.strip() else None
                if found is not None:
                    return Candidate(skill, spec, found.params, CERTAIN, found.missing, found.problems, "command")
                return _fill(skill, spec, {}, tz=tz, now=now, confidence=CERTAIN, source="command")
            return _fill(skill, spec, raw, tz=tz, now=now, confidence=CERTAIN, source="command")
        mine = [t for t in self._templates if t.skill == skill]
        found = self._best(mine, rest, tz=tz, now=now)
        if found is None:
            return Candidate(skill, _HELP, {}, CERTAIN, problems={"_": f"no {skill} intent matches {rest!r}"},
                             source="command")
        return Candidate(skill, found.intent, found.params, CERTAIN, found.missing, found.problems, "command")

    # --- templates ------------------------------------------------------------------------------

    def _best(self, templates: Iterable[_Template], text: str, *, tz: tzinfo, now: datetime) -> Candidate | None:
        tokens = [_Token(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)][:MAX_TOKENS]
        meaningful = max(1, sum(1 for t in tokens if t.word not in _FILLER))
        present = {t.word for t in tokens}
        best: Candidate | None = None
        best_literal = 0
        for template in templates:
            if not template.keywords <= present:
                continue  # cheap: most messages name none of a template's words
            found = _Search(template, text, tokens, tz, now).run()
            if found is None:
                continue
            raw, explained = found
            candidate = _fill(template.skill, template.intent, raw, tz=tz, now=now, confidence=0.0)
            if candidate.problems:
                continue
            confidence = 0.55 + 0.45 * min(1.0, explained / meaningful)
            if candidate.missing:
                confidence -= 0.15
            candidate = Candidate(candidate.skill, candidate.intent, candidate.params, round(confidence, 3),
                                  candidate.missing, candidate.problems)
            # on a tie the template with more literal words wins: "book room {room} {start}" is more specific
            # about "book room A at 3pm" than "book {title} {start}"
            literal = len(template.keywords)
            if best is None or (candidate.confidence, literal) > (best.confidence, best_literal):
                best, best_literal = candidate, literal
        return best


def _fill(skill: str, spec: IntentSpec, raw: Mapping[str, Any], *, tz: tzinfo, now: datetime, confidence: float,
          source: str = "template") -> Candidate:
    params: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, value in raw.items():
        slot: Slot | None = spec.slots.get(name)
        if slot is None:
            if spec.slots:
                problems[name] = f"{spec.name} has no slot {name!r}"
            else:
                params[name] = value  # an intent without declared slots takes what it is given
            continue
        try:
            params[name] = slot.parse(value, tz=tz, now=now)
        except SlotError as exc:
            problems[name] = str(exc)
    missing = tuple(n for n, s in spec.slots.items() if s.required and n not in params and n not in problems)
    return Candidate(skill, spec, params, confidence, missing, problems, source)


def _key_values(text: str) -> dict[str, str] | None:
    """``key=value`` pairs (values may be quoted); None when the text is not in that form."""
    text = text.strip()
    if not text:
        return {}
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"could not read the command: {exc}") from None
    if not all("=" in t for t in tokens):
        return None
    pairs = {}
    for token in tokens:
        key, _, value = token.partition("=")
        if not key.isidentifier():
            raise ValueError(f"{key!r} is not a slot name")
        pairs[key] = value
    return pairs


_HELP = IntentSpec(name="help", description="what this skill can do", slots={}, examples=(), permission=None,
                   side_effects=False, timeout=5.0, handler_name="")


def describe_skill(skill: str, intents: Mapping[str, IntentSpec]) -> str:
    """A short usage text for ``/skill`` with no arguments."""
    lines = [f"{skill} can:"]
    for spec in intents.values():
        slots = " ".join(f"{name}=..." for name in spec.slots)
        example = f' — e.g. "{spec.examples[0]}"' if spec.examples else ""
        lines.append(f"• /{skill} {spec.name} {slots}".rstrip() + f": {spec.description}{example}")
    return "\n".join(lines)


def is_help(candidate: Candidate) -> bool:
    return candidate.intent is _HELP


def slot_prompt(spec: IntentSpec, name: str) -> str:
    """The question that asks for a missing slot."""
    slot = spec.slots[name]
    what = slot.description or name.replace("_", " ")
    hints = {"datetime": " (for example 'tomorrow at 3pm')", "duration": " (for example '30 minutes')",
             "number": "", "text": ""}
    options = getattr(slot, "options", None)
    hint = f" ({', '.join(options)})" if options else hints.get(slot.kind, "")
    return f"What {what}{hint}?"


def names(candidates: Sequence[Candidate]) -> list[str]:
    return [c.tool for c in candidates]
