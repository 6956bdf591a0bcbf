"""``split``: a rendered message cut into parts the platform accepts.

The text is read back into atoms (``_atoms``) by the dialect's reader, with the spans open after each; a part
ends at the best boundary past half the limit (paragraph, line, sentence, space), and what a part closes at
its end the next reopens at its start.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Literal

from ._atoms import CLOSER, CONTENT, OPENER, Atom, Span, close, reopen
from ._mrkdwn import mrkdwn_atoms
from ._plain import plain_atoms
from ._telegram import telegram_atoms

Dialect = Literal["telegram", "slack", "whatsapp", "plain"]

_PARAGRAPH, _LINE, _SENTENCE, _SPACE = 4, 3, 2, 1
_WHITESPACE = frozenset({" ", "\t", "\n"})
_LIST_MARK = re.compile(r"(>|> |│ )?\s*(•|-|\d+\\?\.)?\s*")


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_DIALECTS: dict[str, tuple[Callable[[str], list[Atom]], Callable[[str], int]]] = {
    "telegram": (telegram_atoms, _utf16_length),
    "slack": (functools.partial(mrkdwn_atoms, slack=True), len),
    "whatsapp": (functools.partial(mrkdwn_atoms, slack=False), _utf16_length),
    "plain": (plain_atoms, len),
}


def _boundary(atoms: Sequence[Atom], start: int, k: int) -> int:
    """How good a place to cut is just before ``atoms[k]``: paragraph, line, sentence, space, or 0."""
    before = atoms[k - 1]
    if before.text == "\n":
        return _PARAGRAPH if k - 2 >= start and atoms[k - 2].text == "\n" else _LINE
    if before.text not in (" ", "\t") or before.verbatim or (k < len(atoms) and atoms[k].text in _WHITESPACE):
        return 0
    line_start = k - 1
    while line_start > max(start, k - 16) and atoms[line_start - 1].text != "\n":  # a marker is short
        line_start -= 1
    if (line_start == start or atoms[line_start - 1].text == "\n") and _LIST_MARK.fullmatch(
        "".join(atom.text for atom in atoms[line_start:k])
    ):
        return 0  # a part ending on a bare bullet is no part
    q = k - 1
    while q > start and atoms[q].text in _WHITESPACE:
        q -= 1
    return _SENTENCE if atoms[q].text[-1:] in (".", "!", "?", "…") else _SPACE


def _choose_cut(atoms: Sequence[Atom], start: int, end: int, measure: Callable[[str], int], limit: int) -> int | None:
    """The cut in ``(start, end]``: the best kind of boundary past half a part, else the last boundary, else
    ``end``; None when there is no boundary and ``atoms[end]`` should be cut into letters instead."""
    filled, best, last, shown = 0, {}, {}, False
    for k in range(start + 1, end + 1):
        filled += measure(atoms[k - 1].text)
        shown = shown or atoms[k - 1].text not in _WHITESPACE
        kind = _boundary(atoms, start, k) if shown else 0
        if kind:
            last[kind] = k
            if filled >= limit // 2:
                best[kind] = k
    for pool in (best, last):
        if pool:
            cut = pool[max(pool)] if pool is best else max(pool.values())
            break
    else:
        if atoms[end].fallback == atoms[end].text:  # a word: better cut into it than before it, after a bullet
            return None
        cut = end
    while cut - 1 > start and atoms[cut - 1].role == OPENER:  # never end a part on an opening marker
        cut -= 1
    while cut < len(atoms) and atoms[cut].role == CLOSER:  # nor start one on a closing marker (same length)
        cut += 1
    return cut


def split(text: str, limit: int, *, dialect: Dialect) -> list[str]:
    """Cut a rendered message into parts of at most ``limit`` units, each valid on its own.

    Telegram and WhatsApp parts are measured in UTF-16 code units, Slack and plain ones in characters. A cut
    falls at a paragraph break, else a line break, else after a sentence, else at a space (the whitespace at the
    cut is dropped), and never inside an escape, an entity or a Slack link. A span open at a cut (bold, a code
    block, a link, a quoted line) is closed at the end of one part and reopened, code blocks with their
    language, at the start of the next. Returns ``[]`` for blank text; raises ``ValueError`` for an unknown
    dialect or a limit too small to hold the spans that must be reopened.
    """
    if dialect not in _DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {sorted(_DIALECTS)}")
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if not text.strip():
        return []
    tokenize, measure = _DIALECTS[dialect]
    if measure(text) <= limit:
        return [text]
    atoms = tokenize(text)
    closing: dict[tuple[Span, ...], int] = {}
    parts: list[str] = []
    start = 0
    while True:
        while start < len(atoms) and atoms[start].text == "\n" and not atoms[start].verbatim:
            start += 1
        if start >= len(atoms):
            return parts
        prefix = reopen(atoms[start - 1].after) if start else ""
        used, end = measure(prefix), start
        while end < len(atoms):
            size = measure(atoms[end].text)
            after = atoms[end].after
            if after not in closing:
                closing[after] = measure(close(after))
            if used + size + closing[after] > limit:
                break
            used, end = used + size, end + 1
        cut = (
            len(atoms)
            if end == len(atoms)
            else None
            if end == start
            else _choose_cut(atoms, start, end, measure, limit)
        )
        if cut is None:  # the next atom does not fit and there is no better place: cut into it
            atom = atoms[end]
            if atom.fallback is None:
                raise ValueError(f"limit {limit} cannot hold {prefix + atom.text!r} and the spans around it")
            atoms[end : end + 1] = [Atom(char, atom.after, verbatim=atom.verbatim) for char in atom.fallback]
            continue
        last = cut  # drop the whitespace at the cut, and a span that would be left empty
        while last > start and (
            atoms[last - 1].role == OPENER or (atoms[last - 1].text in _WHITESPACE and not atoms[last - 1].verbatim)
        ):
            last -= 1
        if any(atom.role == CONTENT and atom.text not in _WHITESPACE for atom in atoms[start:last]):
            body = "".join(atom.text for atom in atoms[start:last])
            parts.append(prefix + body + close(atoms[last - 1].after))
        start = cut
