"""Deterministic intent matching: explicit commands, then templates with typed slots. No model needed.

* Commands: ``/calendar schedule_meeting start="tomorrow 3pm" duration=30m`` names a skill, an intent and
  ``key=value`` slots; ``/calendar <words>`` matches the words against that skill's templates only;
  ``/calendar`` alone lists what the skill can do. A command is certain: confidence 1.0.
* Templates: each intent's examples (``"schedule a meeting {start} for {duration}"``) are sequences of
  fixed words and slot holes; each ``{slot}`` takes a span of words that its type parses (a date that is
  not a date fails the reading). An optional slot may be left out together with its lead-in word ("for"),
  a required one may be left empty, and then hearth asks for it. Of all the readings of all templates the
  best wins: the most meaningful words explained, then the fewest required slots left empty, then Text
  slots without a stray little word at an edge ("milk to"), then the fewest template words skipped, then
  the most words read by typed slots. Confidence grows with how much of the sentence the reading
  explains and drops for an empty required slot or an untidy Text slot, so that hearth asks rather than
  guesses; a template that leaves a slot empty must have more to go on than a lone verb.

The matcher returns the best candidate; the control plane decides what to do with its confidence.
"""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, NamedTuple

from hearth.sdk import IntentSpec, SlotError
from hearth.sdk.slots import parse_slots

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


MAX_TOKENS = 60
# a date, a length of time or a number is said in a few words ("next monday at half past 9" is six): a
# typed slot never takes more, which keeps a long message's search to a few milliseconds per template
MAX_TYPED_WORDS = 8
# a Text slot of several words that starts or ends with one of these has most likely taken a word that
# belongs to the template or to the next slot ("milk to", "in half"): such a reading loses to a tidier one
# and is less sure
_LEADING_LITTLE = frozenset({"in", "at", "on", "for", "to", "by", "from", "with", "of", "and", "until"})
_TRAILING_LITTLE = _LEADING_LITTLE | {"the", "a", "an", "my", "about"}
_LEAD_IN = _LEADING_LITTLE | _FILLER
AWKWARD_PENALTY = 0.1
MISSING_PENALTY = 0.15
# a template may leave a required slot empty (hearth then asks for it) only on this much evidence: its own
# words found plus typed slots filled. "remind me to call mum" asks when, "remind me in 10 minutes" asks
# what, but "remind me why the sky is blue" and a lone verb ("schedule my life") go to the model
EVIDENCE_TO_ASK = 3


@dataclass(frozen=True)
class _Template:
    """An example sentence as a sequence of fixed words and slot holes."""

    skill: str
    intent: IntentSpec
    elements: tuple[tuple[str, str], ...]  # ("word", w) or ("slot", name)
    keywords: frozenset[str]  # fixed words that must all occur in a sentence the template explains


MAX_OPTIONAL_VARIANTS = 4


def _compile(skill: str, spec: IntentSpec, example: str) -> list[_Template]:
    """The example as a template, plus one variant for each way of leaving out its optional slots.

    An optional slot is left out together with the little words that lead into it: "schedule a meeting
    {start} for {duration}" also reads "schedule a meeting tomorrow at 3pm", with no "for" to explain.
    """
    elements: list[tuple[str, str]] = []
    for piece in re.split(r"({\w+})", example.strip()):
        hole = re.fullmatch(r"{(\w+)}", piece)
        if hole:
            elements.append(("slot", hole.group(1)))
        else:
            elements.extend(("word", w) for w in _WORD.findall(piece.lower()))
    optional = [value for kind, value in elements if kind == "slot" and not spec.slots[value].required]
    variants: dict[tuple[tuple[str, str], ...], None] = {}
    for count in range(min(len(optional), MAX_OPTIONAL_VARIANTS) + 1):
        for left_out in itertools.combinations(optional, count):
            variants[_without(elements, set(left_out))] = None
    return [_Template(skill, spec, variant,
                      frozenset(value for kind, value in variant if kind == "word" and value not in _FILLER))
            for variant in variants]


def _without(elements: Sequence[tuple[str, str]], slots: set[str]) -> tuple[tuple[str, str], ...]:
    kept: list[tuple[str, str]] = []
    for kind, value in elements:
        if kind == "slot" and value in slots:
            while kept and kept[-1][0] == "word" and kept[-1][1] in _LEAD_IN:
                kept.pop()  # "for" of "for {duration}"
            continue
        kept.append((kind, value))
    return tuple(kept)


@dataclass(frozen=True)
class _Token:
    word: str
    start: int
    end: int


class _Score(NamedTuple):
    """How well a reading explains a sentence; readings compare field by field, in this order."""

    explained: int = 0  # meaningful words explained
    filled: int = 0  # minus the required slots left empty
    tidy: int = 0  # minus the Text slot edges with a little word
    exact: int = 0  # minus the optional template words skipped
    typed_words: int = 0  # words read by typed slots: "tomorrow at 10am" is one date, not "10am" and a title
    literal: int = 0  # the template's own words found
    typed_slots: int = 0  # typed slots filled

    def __add__(self, other: object) -> _Score:
        assert isinstance(other, _Score)
        return _Score(*(a + b for a, b in zip(self, other, strict=True)))


_Found = tuple[dict[str, str], _Score]


class _Search:
    """Finds the best way a template explains a sentence: fixed words in order (filler words optional),
    each slot a span of words that its type parses, or, for a required slot, nothing (hearth asks)."""

    def __init__(self, template: _Template, text: str, tokens: Sequence[_Token], tz: tzinfo, now: datetime,
                 parsed: dict[tuple[int, str], bool]) -> None:
        self.template = template
        self.text = text
        self.tokens = tokens
        self.tz = tz
        self.now = now
        self.parsed = parsed  # shared by the templates of one message: most slots are alike ("start")
        self.memo: dict[tuple[int, int], _Found | None] = {}

    def run(self) -> _Found | None:
        """The best reading over every start position, or None when the template cannot explain the text."""
        readings = (self._at(0, start) for start in range(len(self.tokens)))
        best = max((r for r in readings if r is not None), key=lambda r: r[1], default=None)
        if best is None or best[1].explained == 0:
            return None  # nothing in the sentence is explained, only filler words and empty slots
        return best

    def _at(self, element: int, index: int) -> _Found | None:
        key = (element, index)
        if key not in self.memo:
            self.memo[key] = self._search(element, index)
        return self.memo[key]

    def _search(self, element: int, index: int) -> _Found | None:
        """The best (slots, score) for the rest of the template from token ``index`` on."""
        elements = self.template.elements
        if element == len(elements):
            return {}, _Score()
        kind, value = elements[element]
        options: list[_Found] = []
        here = self.tokens[index].word if index < len(self.tokens) else None
        if kind == "word":
            if here == value and (rest := self._at(element + 1, index + 1)) is not None:
                options.append((rest[0], rest[1] + _Score(explained=value not in _FILLER, literal=1)))
            # "remind me to ..." also reads "remind me ...", but a word that is there is not skipped (so that
            # a slot cannot take it instead: "remind me in 10 minutes" never reads "me" as what to remind)
            if value in _FILLER and here != value and (rest := self._at(element + 1, index)) is not None:
                options.append((rest[0], rest[1] + _Score(exact=-1)))
            return max(options, key=lambda option: option[1], default=None)
        typed = self.template.intent.slots[value].kind != "text"
        longest = min(len(self.tokens), index + MAX_TYPED_WORDS) if typed else len(self.tokens)
        for end in range(longest, index, -1):
            if not self._parses(value, index, end) or (rest := self._at(element + 1, end)) is None:
                continue
            words = self.tokens[index:end]
            awkward = 0 if typed or len(words) == 1 else (
                (words[0].word in _LEADING_LITTLE) + (words[-1].word in _TRAILING_LITTLE))
            score = _Score(explained=sum(1 for t in words if t.word not in _FILLER), tidy=-awkward,
                           typed_words=len(words) if typed else 0, typed_slots=int(typed))
            options.append(({value: self._span(index, end), **rest[0]}, rest[1] + score))
        if self.template.intent.slots[value].required and (rest := self._at(element + 1, index)) is not None:
            options.append((rest[0], rest[1] + _Score(filled=-1)))  # left empty: hearth asks for it
        return max(options, key=lambda option: option[1], default=None)

    def _span(self, start: int, end: int) -> str:
        return self.text[self.tokens[start].start:self.tokens[end - 1].end]

    def _parses(self, slot_name: str, start: int, end: int) -> bool:
        slot = self.template.intent.slots[slot_name]
        key = (id(slot), self._span(start, end))  # by identity: a Choice may hold a list
        if key not in self.parsed:
            try:
                slot.parse(key[1], tz=self.tz, now=self.now)
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
        self._templates = [template
                           for skill, intents in self._skills.items()
                           for spec in intents.values() for example in spec.examples
                           for template in _compile(skill, spec, example)]

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
        parsed: dict[tuple[int, str], bool] = {}
        best: Candidate | None = None
        best_rank: tuple[float, int, int, int, int, int] | None = None
        for template in templates:
            if not template.keywords <= present:
                continue  # cheap: most messages name none of a template's words
            reading = _Search(template, text, tokens, tz, now, parsed).run()
            if reading is None:
                continue
            slots, score = reading
            candidate = _fill(template.skill, template.intent, slots, tz=tz, now=now, confidence=0.0)
            if candidate.problems or (candidate.missing and score.literal + score.typed_slots < EVIDENCE_TO_ASK):
                continue
            confidence = 0.55 + 0.45 * min(1.0, score.explained / meaningful)
            confidence -= MISSING_PENALTY if candidate.missing else 0.0
            confidence -= AWKWARD_PENALTY * -score.tidy
            candidate = Candidate(candidate.skill, candidate.intent, candidate.params, round(confidence, 3),
                                  candidate.missing, candidate.problems)
            # on a tie: fewer empty slots, tidier slot edges, fewer skipped words, more words read by typed slots
            # ("at 3pm for half an hour" is a time and a length, not a place), then the template with more
            # literal words ("book room {room} {start}" is more specific about "book room A at 3pm" than
            # "book {title} {start}")
            rank = (candidate.confidence, score.filled, score.tidy, score.exact, score.typed_words,
                    len(template.keywords))
            if best_rank is None or rank > best_rank:
                best, best_rank = candidate, rank
        return best


def _fill(skill: str, spec: IntentSpec, raw: Mapping[str, Any], *, tz: tzinfo, now: datetime, confidence: float,
          source: str = "template") -> Candidate:
    if not spec.slots:
        return Candidate(skill, spec, dict(raw), confidence, (), {}, source)  # takes what it is given
    params, problems = parse_slots(spec.slots, raw, tz=tz, now=now)
    problems.update({name: f"{spec.name} has no slot {name!r}" for name in raw if name not in spec.slots})
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
    """The question that asks for a missing slot. A slot's description is a phrase ("when the meeting
    starts", "the event's title"), so it asks "Please tell me when the meeting starts (for example ...)."."""
    slot = spec.slots[name]
    what = (slot.description or name.replace("_", " ")).rstrip(".")
    hints = {"datetime": " (for example 'tomorrow at 3pm')", "duration": " (for example '30 minutes')",
             "number": "", "text": ""}
    options = getattr(slot, "options", None)
    hint = f" ({', '.join(options)})" if options else hints.get(slot.kind, "")
    return f"Please tell me {what}{hint}."
