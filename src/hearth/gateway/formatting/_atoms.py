"""A rendered message read back as atoms, for ``split``.

An atom is what a cut may not fall inside (an escape ``\\.``, an entity ``&amp;``, a Slack ``<url|text>``, a
marker, a grapheme), with the spans (bold, code, a link, a quoted line) open once it is written. Each
dialect's reader (``telegram_atoms``, ``mrkdwn_atoms``, ``plain_atoms``) drives a ``Scan``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

CONTENT, OPENER, CLOSER = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Span:
    opener: str  # what reopens the span at the start of a part
    closer: str  # what closes it at the end of one
    kind: str


@dataclass(frozen=True, slots=True)
class Atom:
    text: str
    after: tuple[Span, ...]  # the spans open once this atom is written
    role: int = CONTENT
    verbatim: bool = False  # inside code, where whitespace is content
    fallback: str | None = None  # plain text to cut instead when the atom alone does not fit


def reopen(spans: tuple[Span, ...]) -> str:
    return "".join(span.opener for span in sorted(spans, key=lambda span: span.kind != "quote"))


def close(spans: tuple[Span, ...]) -> str:
    return "".join(span.closer for span in reversed(spans))


def line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


_RUN = re.compile(r"[A-Za-z0-9]+(?=[\x00-\x7f]|\Z)")  # not the letter before a combining mark


def _grapheme_end(text: str, i: int) -> int:
    """Where the character at ``i`` ends with its combining marks, variation selectors and ZWJ sequences."""
    j = i + 1
    while j < len(text):
        point = ord(text[j])
        if point < 0x300:  # below the combining marks: the common case, decided at once
            break
        if text[j] == "\u200d" and j + 1 < len(text) and ord(text[j + 1]) > 127:
            j += 2
        elif (
            unicodedata.category(text[j]) in ("Mn", "Mc", "Me")
            or 0xFE00 <= point <= 0xFE0F
            or 0x1F3FB <= point <= 0x1F3FF
            or 0xE0020 <= point <= 0xE007F
            or (j == i + 1 and 0x1F1E6 <= point <= 0x1F1FF and 0x1F1E6 <= ord(text[i]) <= 0x1F1FF)
        ):
            j += 1
        else:
            break
    return j


class Scan:
    """Turns rendered text into atoms, tracking the spans that are open."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.atoms: list[Atom] = []
        self.stack: list[Span] = []

    @property
    def top(self) -> str:
        return self.stack[-1].kind if self.stack else ""

    def kinds(self) -> set[str]:
        return {span.kind for span in self.stack}

    def add(self, size: int, role: int = CONTENT, fallback: str | None = None) -> None:
        verbatim = any(span.kind in ("code", "pre") for span in self.stack)
        text = self.text[self.i : self.i + size]
        self.atoms.append(Atom(text, tuple(self.stack), role, verbatim, fallback))
        self.i += size

    def char(self) -> None:
        run = _RUN.match(self.text, self.i)  # a run of ASCII letters is one atom, cut into letters only if need be
        if run and len(run.group()) > 1:
            self.add(len(run.group()), fallback=run.group())
        else:
            self.add(_grapheme_end(self.text, self.i) - self.i)

    def open(self, size: int, span: Span) -> None:
        self.stack.append(span)
        self.add(size, OPENER)

    def close(self, size: int, kind: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index].kind == kind:
                del self.stack[index]
                break
        self.add(size, CLOSER)

    def toggle(self, marker: str, kind: str) -> None:
        if kind in self.kinds():
            self.close(len(marker), kind)
        else:
            self.open(len(marker), Span(marker, marker, kind))

    def newline(self) -> None:
        self.stack = [span for span in self.stack if span.kind != "quote"]  # a quote lasts one line
        self.add(1)

    def at_line_start(self) -> bool:
        return self.i == 0 or self.text[self.i - 1] == "\n"
