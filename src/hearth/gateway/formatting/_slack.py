"""Slack's mrkdwn (https://api.slack.com/reference/surfaces/formatting).

``&``, ``<`` and ``>`` of text are HTML-escaped, so ``<!channel>`` or ``<@U1>`` typed by the model show
literally and never notify anyone, and a bare ``@channel`` gets an invisible word joiner after its "@". The
model's ``*``, ``_``, ``~`` and backticks, which Slack cannot escape, are neutralised by ``_mrkdwn``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from markdown_it.tree import SyntaxTreeNode

from ._mrkdwn import Mrkdwn
from ._tree import same_target

_BROADCAST = re.compile(r"@(channel|here|everyone)", re.IGNORECASE)


def _entities(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060\\1", text)  # a word joiner: never a broadcast, even with link_names


class _Slack(Mrkdwn):
    link_schemes = frozenset({"http", "https", "mailto"})  # never "!", "@" or "#": those are mentions

    def escape(self, text: str) -> str:
        return super().escape(_entities(text))

    def escape_code(self, code: str) -> str:
        return _entities(super().escape_code(code))

    def code_block(self, code: str, language: str) -> str:
        if not code.strip():
            return ""
        body = self.escape_code(code if code.endswith("\n") else code + "\n")
        return self.verbatim(f"```\n{body}```")

    def link(self, url: str, label: str, children: Sequence[SyntaxTreeNode]) -> None:
        if not self.linkable(url):
            super().link(url, label, children)
            return
        self._sync(self._wanted)
        target = self.shield(url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C"))
        self._parts.append(f"<{target}>" if same_target(label, url) else f"<{target}|{self.escape(label)}>")


def to_slack(markdown: str) -> str:
    """Render model Markdown as Slack mrkdwn.

    ``*bold*``, ``_italic_``, ``~strike~``, code spans and blocks (no language), ``<url|text>`` links for http(s)
    and mailto targets only, headings as bold lines, "•" bullets, ``>`` quotes, tables as code blocks. ``&``,
    ``<``, ``>`` of the text are escaped, so the model cannot write a mention, a ``<!channel>`` or a link Slack
    would parse; a bare ``@channel``, ``@here`` or ``@everyone`` gets an invisible word joiner after its "@".
    A ``*``, ``_``, ``~`` or backtick of the text that Slack could pair with another is replaced by a look-alike
    (see ``hearth.gateway.formatting._mrkdwn``), so only hearth's own markers format.
    """
    return _Slack().document(markdown)
