"""WhatsApp's formatting ("How to format your messages", https://faq.whatsapp.com/539178204879377).

Bold, italic, strikethrough, monospace blocks, inline code, quotes and lists; links are shown as
``text (url)``. WhatsApp has no escape at all: the model's marker characters are neutralised by ``_mrkdwn``,
reading markers inside words as WhatsApp may.
"""

from __future__ import annotations

from ._mrkdwn import Mrkdwn


class _WhatsApp(Mrkdwn):
    bullet = "- "
    inside_words = True

    def code_block(self, code: str, language: str) -> str:
        if not code.strip():
            return ""
        body = self.escape_code(code.rstrip("\n"))
        return self.verbatim(f"```{body}```")


def to_whatsapp(markdown: str) -> str:
    """Render model Markdown in WhatsApp's formatting.

    ``*bold*``, ``_italic_``, ``~strike~``, triple-backtick monospace blocks (no language), inline code in
    single backticks, ``> `` quotes, ``- `` and ``1. `` lists; headings as bold lines, links as ``text (url)``,
    tables as monospace blocks. A ``*``, ``_``, ``~`` or backtick of the text that WhatsApp could pair with
    another is replaced by a look-alike (see ``hearth.gateway.formatting._mrkdwn``).
    """
    return _WhatsApp().document(markdown)
