"""Telegram's MarkdownV2 (https://core.telegram.org/bots/api#formatting-options).

Every reserved character of text is escaped with a backslash; inside code only `````` and ``\\``; inside a
link's ``(...)`` only ``)`` and ``\\``. Telegram has an escape for everything, so nothing the model wrote can
turn into markup by accident.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from markdown_it.tree import SyntaxTreeNode

from ._atoms import Atom, Scan, Span
from ._tree import SAFE_LANGUAGE, Walker, same_target


class _Telegram(Walker):
    markers: ClassVar[dict[str, tuple[str, str]]] = {"bold": ("*", "*"), "italic": ("_", "_"), "strike": ("~", "~")}
    quote_mark = ">"
    link_schemes = frozenset({"http", "https", "tg"})  # what a text_link accepts; others are shown as text
    _RESERVED = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")

    def escape(self, text: str) -> str:
        return self._RESERVED.sub(r"\\\1", text)

    def escape_code(self, code: str) -> str:
        return re.sub(r"([`\\])", r"\\\1", code)

    def number(self, n: int) -> str:
        return f"{n}\\. "

    def code_block(self, code: str, language: str) -> str:
        if not code.strip():
            return ""
        body = self.escape_code(code if code.endswith("\n") else code + "\n")
        return self.verbatim(f"```{SAFE_LANGUAGE.sub('', language)[:32]}\n{body}```")

    def code_inline(self, code: str) -> None:
        if self._in_link:  # a text_link cannot contain code
            self._text(code)
            return
        self._sync([])  # nor, by the Bot API's nesting rules, can a style hold code: close around it
        self._parts.append(f"`{self.escape_code(code)}`")

    def link(self, url: str, label: str, children: Sequence[SyntaxTreeNode]) -> None:
        if same_target(label, url) or not self.linkable(url):
            super().link(url, label, children)  # a bare address is linked by the client itself
            return
        outer = list(self._wanted)
        self._sync(outer)
        self._parts.append("[")
        self._in_link = True
        self._walk(children)
        self._in_link = False
        self._sync(outer)
        self._parts.append("](" + re.sub(r"([)\\])", r"\\\1", url) + ")")


def to_telegram(markdown: str) -> str:
    """Render model Markdown as Telegram MarkdownV2 (send it with ``parse_mode="MarkdownV2"``).

    Headings become bold lines, bullets "•", tables and code blocks ``pre`` blocks (with the fence's language),
    quotes ``>`` lines. Links keep their target when it is http(s) or tg; other targets are shown in parentheses.
    Whatever the input, every entity in the output is balanced and every reserved character escaped.
    """
    return _Telegram().document(markdown)


# --- read back, for split -----------------------------------------------------------------------------


def _link_closer(text: str, start: int) -> str | None:
    """The ``](url)`` that closes the link opened at ``start``, or None when there is none."""
    j = start + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
        elif text[j] == "]":
            if not text.startswith("(", j + 1):
                return None
            k = j + 2
            while k < len(text):
                if text[k] == "\\":
                    k += 2
                elif text[k] == ")":
                    return text[j : k + 1]
                else:
                    k += 1
            return None
        else:
            j += 1
    return None


def telegram_atoms(text: str) -> list[Atom]:
    scan = Scan(text)
    while scan.i < len(text):
        i, top, char = scan.i, scan.top, text[scan.i]
        if char == "\\" and i + 1 < len(text):
            scan.add(2)
        elif top in ("pre", "code"):
            if top == "pre" and text.startswith("```", i):
                scan.close(3, "pre")
            elif top == "code" and char == "`":
                scan.close(1, "code")
            else:
                scan.char()
        elif char == "\n":
            scan.newline()
        elif char == ">" and scan.at_line_start():
            scan.open(1, Span(">", "", "quote"))
        elif text.startswith("```", i):
            end = text.find("\n", i)
            head = text[i:] if end < 0 else text[i : end + 1]
            scan.open(len(head), Span(head, "```", "pre"))
        elif char == "`":
            scan.open(1, Span("`", "`", "code"))
        elif char == "[" and "link" not in scan.kinds() and (closer := _link_closer(text, i)):
            scan.open(1, Span("[", closer, "link"))
        elif char == "]" and "link" in scan.kinds():
            closer = next(span.closer for span in reversed(scan.stack) if span.kind == "link")
            scan.close(len(closer), "link")
        elif text.startswith("||", i):
            scan.toggle("||", "spoiler")
        elif text.startswith("__", i):
            scan.toggle("__", "underline")
        elif char in "*_~":
            scan.toggle(char, {"*": "bold", "_": "italic", "~": "strike"}[char])
        else:
            scan.char()
    return scan.atoms
