"""The model's Markdown parsed once, and the walk over its syntax tree that every dialect shares.

markdown-it-py reads CommonMark with GFM strikethrough and tables, raw HTML off (so a ``<script>`` the model
wrote is text). ``Walker`` turns the tree into one dialect; a subclass says how each construct looks (its
markers, ``escape``, ``code_block``, ``link``...) and ``finish`` may rework the whole message at the end.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import ClassVar

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

VERBATIM = "\x00"  # marks lines of code blocks, which list indentation must not touch (the parser maps NUL to U+FFFD)
RULE = "───────"
SAFE_LANGUAGE = re.compile(r"[^A-Za-z0-9_+#-]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_STYLES = {"strong": "bold", "em": "italic", "s": "strike"}


@functools.cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])


def plain_text(nodes: Sequence[SyntaxTreeNode]) -> str:
    """The visible text of inline nodes: what a table cell or a link label shows without its markup."""
    out: list[str] = []
    for node in nodes:
        if node.type in ("text", "code_inline", "html_inline"):
            out.append(node.content)
        elif node.type in ("softbreak", "hardbreak"):
            out.append(" ")
        else:
            out.append(plain_text(node.children))
    return "".join(out)


def _table_text(table: SyntaxTreeNode) -> str:
    rows = [
        [plain_text(cell.children[0].children) if cell.children else "" for cell in row.children]
        for section in table.children
        for row in section.children
    ]
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    sizes = [max(len(row[col]) for row in rows) for col in range(width)]
    lines = [" | ".join(cell.ljust(size) for cell, size in zip(row, sizes, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * size for size in sizes))
    return "\n".join(lines) + "\n"


def same_target(label: str, url: str) -> bool:
    return label in (url, url.removeprefix("mailto:"))


class Walker:
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

    keeps_glued_markup = False  # whether emphasis touching a word is written back as its Markdown markers

    def escape(self, text: str) -> str:
        return text

    def escape_code(self, code: str) -> str:
        return code.replace("```", "``\u200b`")  # a fence inside code must not close its block

    def number(self, n: int) -> str:
        return f"{n}. "

    def finish(self, message: str) -> str:
        """The whole rendered message, for a last pass over it (``_mrkdwn``'s literal markers)."""
        return message

    def document(self, markdown: str) -> str:
        tree = SyntaxTreeNode(_parser().parse(markdown))
        return self.finish(self._blocks(tree.children, quoted=False).replace(VERBATIM, "").strip("\n"))

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
            return self.escape(RULE)
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
            lines.extend(line if not line or line.startswith(VERBATIM) else indent + line for line in body[1:])
        self._lists -= 1
        return "\n".join(lines)

    def _quote(self, block: str) -> str:
        mark = self.quote_mark if not self._lists else "│ "
        lines = []
        for line in block.split("\n"):
            verbatim = line.startswith(VERBATIM)
            line = line.removeprefix(VERBATIM)
            quoted = mark + line if line else mark.rstrip()
            lines.append(VERBATIM + quoted if verbatim else quoted)
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
    def verbatim(block: str) -> str:
        return "\n".join(VERBATIM + line for line in block.split("\n"))

    # --- inline ------------------------------------------------------------------------------------

    def _inline(self, node: SyntaxTreeNode, *, heading: bool = False) -> str:
        self._parts, self._wanted, self._shown = [], ["bold"] if heading else [], []
        self._walk(node.children)
        self._sync([])
        return "".join(self._parts)

    def _walk(self, nodes: Sequence[SyntaxTreeNode]) -> None:
        for index, node in enumerate(nodes):
            kind = node.type
            if kind in ("text", "html_inline"):
                self._text(node.content)
            elif kind in ("softbreak", "hardbreak"):
                self._break()
            elif kind in _STYLES and self.keeps_glued_markup and _glued(nodes, index):
                self._text(node.markup)  # "2*3*4": CommonMark's emphasis inside a word, shown as typed
                self._walk(node.children)
                self._text(node.markup)
            elif kind in _STYLES:
                self._wanted.append(_STYLES[kind])
                self._walk(node.children)
                self._wanted.pop()
            elif kind == "code_inline":
                if node.content:
                    self.code_inline(node.content)
            elif kind in ("link", "image"):
                url = str(node.attrs.get("href" if kind == "link" else "src", ""))
                label = plain_text(node.children).strip()
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
        if not same_target(label, url):
            self._text(f" ({url})")

    def linkable(self, url: str) -> bool:
        match = _SCHEME.match(url)
        return match is not None and match.group(1).lower() in self.link_schemes


def _glued(nodes: Sequence[SyntaxTreeNode], index: int) -> bool:
    """Whether the styled node at ``index`` touches a letter or digit of its neighbours ("2*3*4")."""
    before = nodes[index - 1].content if index > 0 and nodes[index - 1].type == "text" else ""
    after = nodes[index + 1].content if index + 1 < len(nodes) and nodes[index + 1].type == "text" else ""
    return bool(before[-1:].isalnum() or after[:1].isalnum())
