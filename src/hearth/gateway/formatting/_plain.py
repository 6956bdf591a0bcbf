"""Plain text: no markup at all, for platforms (and fallbacks) that show characters as they are."""

from __future__ import annotations

from ._atoms import Atom, Scan, Span
from ._tree import Walker


class _Plain(Walker):
    bullet = "- "
    keeps_glued_markup = True  # "2*3*4" stays "2*3*4", not "234"

    def escape_code(self, code: str) -> str:
        return code

    def code_block(self, code: str, language: str) -> str:
        return self.verbatim(code.rstrip("\n")) if code.strip() else ""

    def code_inline(self, code: str) -> None:
        self._text(code)


def to_plain(markdown: str) -> str:
    """Render model Markdown as plain text: no markup, links as ``text (url)``, lists as ``- ``/``1. ``."""
    return _Plain().document(markdown)


def plain_atoms(text: str) -> list[Atom]:
    scan = Scan(text)
    while scan.i < len(text):
        if text[scan.i] == "\n":
            scan.newline()
        elif scan.at_line_start() and text.startswith("> ", scan.i):
            scan.open(2, Span("> ", "", "quote"))
        else:
            scan.char()
    return scan.atoms
