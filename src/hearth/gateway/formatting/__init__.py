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

Slack and WhatsApp have no escape for ``*``, ``_``, ``~`` or backticks. A marker character of the model's text
that the platform could pair with another on its line is replaced by a look-alike that is never a marker (``∗``
U+2217, ``ˍ`` U+02CD, ``∼`` U+223C, ``ˋ`` U+02CB); markers that cannot pair are left as typed. An invisible
U+200B or U+2060 beside the marker does not work: neither platform counts it as a space, and Slack counts it
as a word boundary. The platforms' rules and the reasons are in ``_mrkdwn``'s docstring.

``split`` cuts a rendered message into parts the platform accepts: it reads the dialect back into indivisible
atoms (an escape ``\\.``, an entity ``&amp;``, a Slack ``<url|text>``, a marker, a grapheme) with the spans open
after each, and closes at the end of a part what it reopens at the start of the next.

Layout: ``_tree`` (parser and the shared walk), one module per dialect (``_telegram``, ``_slack``,
``_whatsapp`` with their shared ``_mrkdwn``, ``_plain``), ``_atoms`` and ``_split`` for the cut.
"""

from __future__ import annotations

from collections.abc import Callable

from ._plain import to_plain
from ._slack import to_slack
from ._split import Dialect, split
from ._telegram import to_telegram
from ._whatsapp import to_whatsapp

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
