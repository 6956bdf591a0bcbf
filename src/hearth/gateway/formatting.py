"""The model's Markdown in each chat platform's dialect, cut to each platform's length limit.

Model output is CommonMark with GFM strikethrough and tables. It is parsed once with markdown-it-py (raw HTML
off, so a ``<script>`` the model wrote is shown as text) and the syntax tree is walked by one renderer per
dialect:

* ``to_telegram``: Bot API MarkdownV2, https://core.telegram.org/bots/api#formatting-options. Every reserved
  character of text is escaped; inside code only `````` and ``\\``; inside a link's ``(...)`` only ``)`` and ``\\``.
* ``to_slack``: mrkdwn, https://api.slack.com/reference/surfaces/formatting. ``&``, ``<`` and ``>`` of text are
  HTML-escaped, so ``<!channel>`` or ``<@U1>`` typed by the model show literally and never notify anyone.
* ``to_whatsapp``: "How to format your messages", https://faq.whatsapp.com/539178204879377 (bold, italic,
  strikethrough, monospace, inline code, quote, lists); links are shown as ``text (url)``.
* ``to_plain``: no markup at all.

Three rules make every output valid whatever the model wrote: styles are opened lazily, only in front of
visible text (so no span is empty and two adjacent spans of one style merge, which is what keeps MarkdownV2's
``__`` ambiguity out); styles never cross a line break (they are closed before it and reopened after), so a
cut at a line is always safe; and what the parser did not recognise as markup is plain text, escaped.

``split`` cuts a rendered message into parts the platform accepts: it reads the dialect back into indivisible
atoms (an escape ``\\.``, an entity ``&amp;``, a Slack ``<url|text>``, a marker, a grapheme) with the spans open
after each, and closes at the end of a part what it reopens at the start of the next.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

__all__ = [
    "PLAIN_LIMIT",
    "SLACK_LIMIT",
    "SLACK_MAX_LIMIT",
    "TELEGRAM_LIMIT",
    "WHATSAPP_LIMIT",
    "Dialect",
    "render",
    "split",
    "to_plain",
    "to_slack",
    "to_telegram",
    "to_whatsapp",
]

Dialect = Literal["telegram", "slack", "whatsapp", "plain"]

# sendMessage: "Text of the message to be sent, 1-4096 characters after entities parsing", where entity offsets
# and lengths are UTF-16 code units (https://core.telegram.org/bots/api#sendmessage, #messageentity). We count
# the markup too, so a part stays under the limit whatever the parsing strips.
TELEGRAM_LIMIT = 4096
# Slack truncates a message's text past 40,000 characters
# (https://api.slack.com/changelog/2018-04-truncating-really-long-messages, "Split intentionally long messages
# ... preferably less"), asks clients to keep channel messages to 4,000 characters (https://api.slack.com/rtm,
# "Limits") and may break longer text into several messages itself; a section block's text stops at 3,000
# (https://api.slack.com/reference/block-kit/blocks#section), so pass 3000 when the text goes in one.
SLACK_LIMIT = 4000
SLACK_MAX_LIMIT = 40000
# Cloud API text message: "body ... Maximum length: 4096 characters"
# (https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages#text-object). Counted in UTF-16
# code units, which is never fewer than the characters WhatsApp counts.
WHATSAPP_LIMIT = 4096
PLAIN_LIMIT = 4096

_VERBATIM = "\x00"  # marks lines of code blocks, which list indentation must not touch (the parser maps NUL to U+FFFD)
_RULE = "───────"
_SAFE_LANGUAGE = re.compile(r"[^A-Za-z0-9_+#-]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_STYLES = {"strong": "bold", "em": "italic", "s": "strike"}


@functools.cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])


def _plain_text(nodes: Sequence[SyntaxTreeNode]) -> str:
    """The visible text of inline nodes: what a table cell or a link label shows without its markup."""
    out: list[str] = []
    for node in nodes:
        if node.type in ("text", "code_inline", "html_inline"):
            out.append(node.content)
        elif node.type in ("softbreak", "hardbreak"):
            out.append(" ")
        else:
            out.append(_plain_text(node.children))
    return "".join(out)


def _table_text(table: SyntaxTreeNode) -> str:
    rows = [
        [_plain_text(cell.children[0].children) if cell.children else "" for cell in row.children]
        for section in table.children
        for row in section.children
    ]
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    sizes = [max(len(row[col]) for row in rows) for col in range(width)]
    lines = [" | ".join(cell.ljust(size) for cell, size in zip(row, sizes, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * size for size in sizes))
    return "\n".join(lines) + "\n"


def _same_target(label: str, url: str) -> bool:
    return label in (url, url.removeprefix("mailto:"))


class _Renderer:
    """Walks the syntax tree and emits one dialect; subclasses say how each construct looks."""

    markers: ClassVar[dict[str, tuple[str, str]]] = {}
    bullet: ClassVar[str] = "• "
    quote_mark: ClassVar[str] = "> "
    link_schemes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._wanted: list[str] = []
        self._shown: list[str] = []
        self._in_link = False
        self._lists = 0  # list depth: a quote mark only counts at the start of a line, so lists hold a bar

    def escape(self, text: str) -> str:
        return text.replace("```", "``\u200b`")  # a fence the parser left as text must not open a block

    def escape_code(self, code: str) -> str:
        return code.replace("```", "``\u200b`")

    def number(self, n: int) -> str:
        return f"{n}. "

    def document(self, markdown: str) -> str:
        tree = SyntaxTreeNode(_parser().parse(markdown))
        return self._blocks(tree.children, quoted=False).replace(_VERBATIM, "").strip("\n")

    # --- blocks ------------------------------------------------------------------------------------

    def _blocks(self, nodes: Sequence[SyntaxTreeNode], *, quoted: bool, sep: str = "\n\n") -> str:
        return sep.join(block for block in (self._block(node, quoted) for node in nodes) if block)

    def _block(self, node: SyntaxTreeNode, quoted: bool) -> str:
        kind = node.type
        if kind in ("paragraph", "heading"):
            return self._inline(node.children[0], heading=kind == "heading") if node.children else ""
        if kind in ("bullet_list", "ordered_list"):
            return self._list(node, quoted)
        if kind == "blockquote":
            inner = self._blocks(node.children, quoted=True)
            return inner if quoted else self._quote(inner)  # chat quotes do not nest: flatten
        if kind in ("fence", "code_block"):
            language = node.info.split()[0] if node.info.strip() else ""
            return self._code_lines(node.content) if quoted else self.code_block(node.content, language)
        if kind == "table":
            text = _table_text(node)
            return self._code_lines(text) if quoted else self.code_block(text, "")
        if kind == "hr":
            return self.escape(_RULE)
        if node.children:
            return self._blocks(node.children, quoted=quoted)
        return self.escape(node.content.strip("\n"))

    def _list(self, node: SyntaxTreeNode, quoted: bool) -> str:
        ordered = node.type == "ordered_list"
        start = int(node.attrs.get("start", 1)) if ordered else 1
        lines: list[str] = []
        self._lists += 1
        for offset, item in enumerate(node.children):
            marker = self.number(start + offset) if ordered else self.bullet
            indent = " " * (len(marker) - marker.count("\\"))
            body = self._blocks(item.children, quoted=quoted, sep="\n").split("\n")
            lines.append(marker + body[0])
            lines.extend(line if not line or line.startswith(_VERBATIM) else indent + line for line in body[1:])
        self._lists -= 1
        return "\n".join(lines)

    def _quote(self, block: str) -> str:
        mark = self.quote_mark if not self._lists else "│ "
        lines = []
        for line in block.split("\n"):
            verbatim = line.startswith(_VERBATIM)
            line = line.removeprefix(_VERBATIM)
            quoted = mark + line if line else mark.rstrip()
            lines.append(_VERBATIM + quoted if verbatim else quoted)
        return "\n".join(lines)

    def code_block(self, code: str, language: str) -> str:
        raise NotImplementedError

    def _code_lines(self, code: str) -> str:
        """A code block inside a quote, as one inline code span per line: quotes cannot hold a block."""
        lines = []
        for line in code.rstrip("\n").split("\n"):
            self._parts, self._wanted, self._shown = [], [], []
            if line.strip():
                self.code_inline(line)
            lines.append("".join(self._parts))
        return "\n".join(lines)

    @staticmethod
    def _verbatim(block: str) -> str:
        return "\n".join(_VERBATIM + line for line in block.split("\n"))

    # --- inline ------------------------------------------------------------------------------------

    def _inline(self, node: SyntaxTreeNode, *, heading: bool = False) -> str:
        self._parts, self._wanted, self._shown = [], ["bold"] if heading else [], []
        self._walk(node.children)
        self._sync([])
        return "".join(self._parts)

    def _walk(self, nodes: Sequence[SyntaxTreeNode]) -> None:
        for node in nodes:
            kind = node.type
            if kind in ("text", "html_inline"):
                self._text(node.content)
            elif kind in ("softbreak", "hardbreak"):
                self._break()
            elif kind in _STYLES:
                self._wanted.append(_STYLES[kind])
                self._walk(node.children)
                self._wanted.pop()
            elif kind == "code_inline":
                if node.content:
                    self.code_inline(node.content)
            elif kind in ("link", "image"):
                url = str(node.attrs.get("href" if kind == "link" else "src", ""))
                label = _plain_text(node.children).strip()
                if not label:
                    self._text(url)
                elif self._in_link:
                    self._walk(node.children)
                else:
                    self.link(url, label, node.children)
            elif node.children:
                self._walk(node.children)
            else:
                self._text(node.content)

    def _sync(self, target: list[str], lead: str = "", *, open_new: bool = True) -> None:
        """Close the shown styles that ``target`` does not continue, write ``lead``, open the missing ones."""
        wanted = list(dict.fromkeys(target))
        keep = 0
        while keep < min(len(wanted), len(self._shown)) and wanted[keep] == self._shown[keep]:
            keep += 1
        if len(self._shown) > keep:
            tail = ""
            if self._parts and self._parts[-1] != self._parts[-1].rstrip(" "):
                last = self._parts.pop()
                self._parts.append(last.rstrip(" "))
                tail = last[len(last.rstrip(" ")) :]
            closers = [self.markers.get(style, ("", ""))[1] for style in reversed(self._shown[keep:])]
            self._parts.extend(part for part in [*closers, tail] if part)
            del self._shown[keep:]
        if lead:
            self._parts.append(lead)
        if open_new:
            self._parts.extend(opener for style in wanted[keep:] if (opener := self.markers.get(style, ("", ""))[0]))
            self._shown.extend(wanted[keep:])

    def _text(self, raw: str) -> None:
        body = raw.lstrip()
        self._sync(self._wanted, raw[: len(raw) - len(body)], open_new=bool(body))
        if body:
            self._parts.append(self.escape(body))

    def _break(self) -> None:
        if self._in_link:
            self._text(" ")
        else:
            self._sync([])
            self._parts.append("\n")

    def code_inline(self, code: str) -> None:
        self._sync(self._wanted)
        self._parts.append(f"`{self.escape_code(code.replace('`', 'ˋ'))}`")

    def link(self, url: str, label: str, children: Sequence[SyntaxTreeNode]) -> None:
        """The default: the label, then the address in parentheses unless the label is the address."""
        self._walk(children)
        if not _same_target(label, url):
            self._text(f" ({url})")

    def _linkable(self, url: str) -> bool:
        match = _SCHEME.match(url)
        return match is not None and match.group(1).lower() in self.link_schemes


class _Telegram(_Renderer):
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
        return self._verbatim(f"```{_SAFE_LANGUAGE.sub('', language)[:32]}\n{body}```")

    def code_inline(self, code: str) -> None:
        if self._in_link:  # a text_link cannot contain code
            self._text(code)
            return
        self._sync([])  # nor, by the Bot API's nesting rules, can a style hold code: close around it
        self._parts.append(f"`{self.escape_code(code)}`")

    def link(self, url: str, label: str, children: Sequence[SyntaxTreeNode]) -> None:
        if _same_target(label, url) or not self._linkable(url):
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


class _Slack(_Renderer):
    markers: ClassVar[dict[str, tuple[str, str]]] = {"bold": ("*", "*"), "italic": ("_", "_"), "strike": ("~", "~")}
    link_schemes = frozenset({"http", "https", "mailto"})  # never "!", "@" or "#": those are mentions
    _BROADCAST = re.compile(r"@(channel|here|everyone)", re.IGNORECASE)

    def escape(self, text: str) -> str:
        text = super().escape(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
        return self._BROADCAST.sub("@\u2060\\1", text)  # a word joiner: never a broadcast, even with link_names

    def escape_code(self, code: str) -> str:
        return self.escape(code)

    def code_block(self, code: str, language: str) -> str:
        if not code.strip():
            return ""
        body = self.escape_code(code if code.endswith("\n") else code + "\n")
        return self._verbatim(f"```\n{body}```")

    def link(self, url: str, label: str, children: Sequence[SyntaxTreeNode]) -> None:
        if not self._linkable(url):
            super().link(url, label, children)
            return
        self._sync(self._wanted)
        target = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
        self._parts.append(f"<{target}>" if _same_target(label, url) else f"<{target}|{self.escape(label)}>")


class _WhatsApp(_Renderer):
    markers: ClassVar[dict[str, tuple[str, str]]] = {"bold": ("*", "*"), "italic": ("_", "_"), "strike": ("~", "~")}
    bullet = "- "

    def code_block(self, code: str, language: str) -> str:
        if not code.strip():
            return ""
        body = self.escape_code(code.rstrip("\n"))
        return self._verbatim(f"```{body}```")


class _Plain(_Renderer):
    bullet = "- "

    def escape(self, text: str) -> str:
        return text

    def escape_code(self, code: str) -> str:
        return code

    def code_block(self, code: str, language: str) -> str:
        return self._verbatim(code.rstrip("\n")) if code.strip() else ""

    def code_inline(self, code: str) -> None:
        self._text(code)


def to_telegram(markdown: str) -> str:
    """Render model Markdown as Telegram MarkdownV2 (send it with ``parse_mode="MarkdownV2"``).

    Headings become bold lines, bullets "•", tables and code blocks ``pre`` blocks (with the fence's language),
    quotes ``>`` lines. Links keep their target when it is http(s) or tg; other targets are shown in parentheses.
    Whatever the input, every entity in the output is balanced and every reserved character escaped.
    """
    return _Telegram().document(markdown)


def to_slack(markdown: str) -> str:
    """Render model Markdown as Slack mrkdwn.

    ``*bold*``, ``_italic_``, ``~strike~``, code spans and blocks (no language), ``<url|text>`` links for http(s)
    and mailto targets only, headings as bold lines, "•" bullets, ``>`` quotes, tables as code blocks. ``&``,
    ``<``, ``>`` of the text are escaped, so the model cannot write a mention, a ``<!channel>`` or a link Slack
    would parse; a bare ``@channel``, ``@here`` or ``@everyone`` gets an invisible word joiner after its "@".
    """
    return _Slack().document(markdown)


def to_whatsapp(markdown: str) -> str:
    """Render model Markdown in WhatsApp's formatting.

    ``*bold*``, ``_italic_``, ``~strike~``, triple-backtick monospace blocks (no language), inline code in
    single backticks, ``> `` quotes, ``- `` and ``1. `` lists; headings as bold lines, links as ``text (url)``,
    tables as monospace blocks.
    """
    return _WhatsApp().document(markdown)


def to_plain(markdown: str) -> str:
    """Render model Markdown as plain text: no markup, links as ``text (url)``, lists as ``- ``/``1. ``."""
    return _Plain().document(markdown)


# --- splitting ---------------------------------------------------------------------------------------

_CONTENT, _OPENER, _CLOSER = 0, 1, 2
_PARAGRAPH, _LINE, _SENTENCE, _SPACE = 4, 3, 2, 1
_WHITESPACE = frozenset({" ", "\t", "\n"})
_LIST_MARK = re.compile(r"(>|> |│ )?\s*(•|-|\d+\\?\.)?\s*")


@dataclass(frozen=True, slots=True)
class _Span:
    opener: str  # what reopens the span at the start of a part
    closer: str  # what closes it at the end of one
    kind: str


@dataclass(frozen=True, slots=True)
class _Atom:
    text: str
    after: tuple[_Span, ...]  # the spans open once this atom is written
    role: int = _CONTENT
    verbatim: bool = False  # inside code, where whitespace is content
    fallback: str | None = None  # plain text to cut instead when the atom alone does not fit


def _reopen(spans: tuple[_Span, ...]) -> str:
    return "".join(span.opener for span in sorted(spans, key=lambda span: span.kind != "quote"))


def _close(spans: tuple[_Span, ...]) -> str:
    return "".join(span.closer for span in reversed(spans))


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


class _Scan:
    """Turns rendered text into atoms, tracking the spans that are open."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.atoms: list[_Atom] = []
        self.stack: list[_Span] = []

    @property
    def top(self) -> str:
        return self.stack[-1].kind if self.stack else ""

    def kinds(self) -> set[str]:
        return {span.kind for span in self.stack}

    def add(self, size: int, role: int = _CONTENT, fallback: str | None = None) -> None:
        verbatim = any(span.kind in ("code", "pre") for span in self.stack)
        text = self.text[self.i : self.i + size]
        self.atoms.append(_Atom(text, tuple(self.stack), role, verbatim, fallback))
        self.i += size

    def char(self) -> None:
        run = _RUN.match(self.text, self.i)  # a run of ASCII letters is one atom, cut into letters only if need be
        if run and len(run.group()) > 1:
            self.add(len(run.group()), fallback=run.group())
        else:
            self.add(_grapheme_end(self.text, self.i) - self.i)

    def open(self, size: int, span: _Span) -> None:
        self.stack.append(span)
        self.add(size, _OPENER)

    def close(self, size: int, kind: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index].kind == kind:
                del self.stack[index]
                break
        self.add(size, _CLOSER)

    def toggle(self, marker: str, kind: str) -> None:
        if kind in self.kinds():
            self.close(len(marker), kind)
        else:
            self.open(len(marker), _Span(marker, marker, kind))

    def newline(self) -> None:
        self.stack = [span for span in self.stack if span.kind != "quote"]  # a quote lasts one line
        self.add(1)

    def at_line_start(self) -> bool:
        return self.i == 0 or self.text[self.i - 1] == "\n"


def _telegram_link_closer(text: str, start: int) -> str | None:
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


def _telegram_atoms(text: str) -> list[_Atom]:
    scan = _Scan(text)
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
            scan.open(1, _Span(">", "", "quote"))
        elif text.startswith("```", i):
            end = text.find("\n", i)
            head = text[i:] if end < 0 else text[i : end + 1]
            scan.open(len(head), _Span(head, "```", "pre"))
        elif char == "`":
            scan.open(1, _Span("`", "`", "code"))
        elif char == "[" and "link" not in scan.kinds() and (closer := _telegram_link_closer(text, i)):
            scan.open(1, _Span("[", closer, "link"))
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


_ENTITY = re.compile(r"&(?:amp|lt|gt);")
_SLACK_LINK = re.compile(r"<([^<>|\n]+)(?:\|([^<>\n]*))?>")


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _has_closer(text: str, i: int, marker: str) -> bool:
    """Whether the style marker at ``i`` has a closing one later on its line, by WhatsApp's and Slack's rule."""
    for j in range(i + 2, _line_end(text, i)):
        if text[j] == marker and not text[j - 1].isspace() and (j + 1 == len(text) or not text[j + 1].isalnum()):
            return True
    return False


def _mrkdwn_atoms(text: str, *, slack: bool) -> list[_Atom]:
    """Atoms of Slack mrkdwn or WhatsApp text: neither can escape a marker, so markers are told by position."""
    scan = _Scan(text)
    while scan.i < len(text):
        i, top, char = scan.i, scan.top, text[scan.i]
        entity = _ENTITY.match(text, i) if slack and char == "&" else None
        link = _SLACK_LINK.match(text, i) if slack and char == "<" else None
        if entity:
            scan.add(len(entity.group()))
        elif link:
            target, label = link.group(1), link.group(2)
            scan.add(len(link.group()), fallback=f"{label} ({target})" if label else target)
        elif top == "pre" and text.startswith("```", i):
            scan.close(3, "pre")
        elif top == "code" and char == "`":
            scan.close(1, "code")
        elif top in ("pre", "code"):
            scan.char()
        elif char == "\n":
            scan.newline()
        elif char == ">" and scan.at_line_start():
            mark = "> " if text.startswith("> ", i) else ">"
            scan.open(len(mark), _Span(mark, "", "quote"))
        elif text.startswith("```", i):
            head = "```\n" if text.startswith("```\n", i) else "```"
            scan.open(len(head), _Span(head, "```", "pre"))
        elif char == "`" and "`" in text[i + 1 : _line_end(text, i)]:
            scan.open(1, _Span("`", "`", "code"))
        elif char in "*_~":
            kind = {"*": "bold", "_": "italic", "~": "strike"}[char]
            after = text[i + 1] if i + 1 < len(text) else ""
            if kind in scan.kinds() and i and not text[i - 1].isspace() and not after.isalnum():
                scan.close(1, kind)
            elif (
                kind not in scan.kinds()
                and (i == 0 or not text[i - 1].isalnum())
                and after
                and not after.isspace()
                and _has_closer(text, i, char)
            ):
                scan.open(1, _Span(char, char, kind))
            else:
                scan.char()
        else:
            scan.char()
    return scan.atoms


def _plain_atoms(text: str) -> list[_Atom]:
    scan = _Scan(text)
    while scan.i < len(text):
        if text[scan.i] == "\n":
            scan.newline()
        elif scan.at_line_start() and text.startswith("> ", scan.i):
            scan.open(2, _Span("> ", "", "quote"))
        else:
            scan.char()
    return scan.atoms


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_DIALECTS: dict[str, tuple[Callable[[str], list[_Atom]], Callable[[str], int]]] = {
    "telegram": (_telegram_atoms, _utf16_length),
    "slack": (functools.partial(_mrkdwn_atoms, slack=True), len),
    "whatsapp": (functools.partial(_mrkdwn_atoms, slack=False), _utf16_length),
    "plain": (_plain_atoms, len),
}


def _boundary(atoms: Sequence[_Atom], start: int, k: int) -> int:
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


def _choose_cut(atoms: Sequence[_Atom], start: int, end: int, measure: Callable[[str], int], limit: int) -> int | None:
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
    while cut - 1 > start and atoms[cut - 1].role == _OPENER:  # never end a part on an opening marker
        cut -= 1
    while cut < len(atoms) and atoms[cut].role == _CLOSER:  # nor start one on a closing marker (same length)
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
    closing: dict[tuple[_Span, ...], int] = {}
    parts: list[str] = []
    start = 0
    while True:
        while start < len(atoms) and atoms[start].text == "\n" and not atoms[start].verbatim:
            start += 1
        if start >= len(atoms):
            return parts
        prefix = _reopen(atoms[start - 1].after) if start else ""
        used, end = measure(prefix), start
        while end < len(atoms):
            size = measure(atoms[end].text)
            after = atoms[end].after
            if after not in closing:
                closing[after] = measure(_close(after))
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
            atoms[end : end + 1] = [_Atom(char, atom.after, verbatim=atom.verbatim) for char in atom.fallback]
            continue
        last = cut  # drop the whitespace at the cut, and a span that would be left empty
        while last > start and (
            atoms[last - 1].role == _OPENER or (atoms[last - 1].text in _WHITESPACE and not atoms[last - 1].verbatim)
        ):
            last -= 1
        if any(atom.role == _CONTENT and atom.text not in _WHITESPACE for atom in atoms[start:last]):
            body = "".join(atom.text for atom in atoms[start:last])
            parts.append(prefix + body + _close(atoms[last - 1].after))
        start = cut


_RENDERERS: dict[str, Callable[[str], str]] = {
    "telegram": to_telegram,
    "slack": to_slack,
    "whatsapp": to_whatsapp,
    "plain": to_plain,
}
_LIMITS = {"telegram": TELEGRAM_LIMIT, "slack": SLACK_LIMIT, "whatsapp": WHATSAPP_LIMIT, "plain": PLAIN_LIMIT}


def render(markdown: str, dialect: Dialect, limit: int | None = None) -> list[str]:
    """Render model Markdown for ``dialect`` and split it into messages of at most ``limit`` (default: the
    platform's limit). Returns ``[]`` when there is nothing to show."""
    if dialect not in _RENDERERS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {sorted(_RENDERERS)}")
    return split(_RENDERERS[dialect](markdown), _LIMITS[dialect] if limit is None else limit, dialect=dialect)
