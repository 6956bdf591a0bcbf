"""What Slack's mrkdwn and WhatsApp's formatting share: the same markers, and no way to escape them.

Both write ``*bold*``, ``_italic_``, ``~strike~`` and code in backticks; neither has an escape character (Slack
documents only ``&amp;``, ``&lt;`` and ``&gt;``, https://api.slack.com/reference/surfaces/formatting#escaping;
WhatsApp none at all, https://faq.whatsapp.com/539178204879377). So a ``*``, ``_``, ``~`` or backtick that is
the model's *text* — ``\\*not bold\\*``, ``~/a and b~``, a ``*`` markdown-it left as text, ``a*b and c*d`` —
can still pair with another marker on its line and be read as markup. How each platform pairs them:

* **Slack** reads a marker only at a word boundary: an opener after the start of the line or a non-word
  character and before a non-space, a closer after a non-space and before the end or a non-word character.
  ``snake_case_name``, ``2*3*4`` and ``:white_check_mark:`` are shown as typed. (jsx-slack documents this
  behaviour: ``Super_cali_fragilistic*expiali*docious`` is shown literally,
  https://github.com/yhatt/jsx-slack/blob/main/docs/about-escape-and-exact-mode.md.)
* **WhatsApp** documents no rule, and reports disagree on whether a marker inside a word counts; hearth takes
  the wider reading: an opener before a non-space, a closer after a non-space, anywhere in a line.

**The neutralisation.** After rendering, every line is read the way the platform reads it (``_settle``): a
marker character of the model's text that could pair with another marker on its line (the model's or
hearth's own) is replaced by a look-alike that no parser takes for a marker, and so is the rest of its run
(``**`` stays a pair of one kind of star)::

    *  ->  ∗  U+2217 ASTERISK OPERATOR        _  ->  ˍ  U+02CD MODIFIER LETTER LOW MACRON
    ~  ->  ∼  U+223C TILDE OPERATOR           `  ->  ˋ  U+02CB MODIFIER LETTER GRAVE ACCENT

A backtick of the text is replaced whenever another backtick is on its line, and a run of three always (a
code block may span lines). Markers that cannot pair (``**unbalanced``, ``2 * 3``, ``snake_case`` on
Slack) are left alone, so the text copies back as written wherever it safely can; code spans, code blocks,
link addresses and bare URLs (``https://x.y/a_b_c``) are never touched.

Why look-alikes and not an invisible character next to the marker (U+200B zero-width space, U+2060 word
joiner), which other converters insert: those are not whitespace (Unicode category Cf), so a marker next to
one is still "before a non-space" and opens, or "after a non-space" and closes; and Slack counts U+200B as a
word boundary, so beside a marker inside a word it makes that marker count (jsx-slack's "exact mode" inserts
U+200B for exactly that). Only a marker's *position* rule could be broken by an invisible character, and the
position rules are what is undocumented. A look-alike is a different character, never a marker whatever a
parser's word rules; the price is that the replaced characters copy as the look-alikes. These four are the
ones jsx-slack's ``<Escape>`` uses for link labels, and ˋ is what code spans here already use for backticks.

**hearth's own markers** are placed at word boundaries by the renderer, except for emphasis inside a word,
which CommonMark allows (``2*3*4`` is ``2<em>3</em>4``) and a platform would show as stray ``_``/``*``: such a
span is written back as the Markdown the model typed (``**``, ``*``, ``~~``) and then neutralised like any
text, so ``2*3*4`` stays ``2*3*4`` on Slack (``2∗3∗4`` on WhatsApp).

The renderer marks what it writes with Unicode noncharacters (reserved for a program's internal use, and
removed from the model's text first), which ``_settle`` reads and drops: nothing of them reaches the platform.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from ._atoms import Atom, Scan, Span, line_end
from ._tree import Walker

LOOK_ALIKES = {"*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb"}
_TEXT_MARK = "\ufdd0"  # the next character is a marker character of the model's text
_STYLE_MARK = "\ufdd3"  # the next character is a style marker hearth wrote
_SHIELD, _UNSHIELD = "\ufdd1", "\ufdd2"  # around what the platform never formats: code, a Slack link's target
_LINK, _UNLINK = "\ufdd4", "\ufdd5"  # around a bare address: kept as written, though its markers may pair
_INTERNAL = re.compile("[\ufdd0-\ufdef]")  # Unicode noncharacters, for a program's internal use
_MARKER = re.compile(r"[*_~`]")
# An address as the apps link it, in the characters RFC 3986 allows (a backtick or a space ends it)
_ADDRESS = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://|mailto:|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_AS_TYPED = {"*": "**", "_": "*", "~": "~~"}  # a style the platform cannot show, as the model's Markdown
_PLAIN, _TEXT, _STYLE, _SHIELDED, _ADDRESSED = range(5)  # what a character of a rendered line is


class Mrkdwn(Walker):
    """A dialect whose markers cannot be escaped: the model's marker characters are neutralised instead."""

    markers: ClassVar[dict[str, tuple[str, str]]] = {
        style: (_STYLE_MARK + marker, _STYLE_MARK + marker)
        for style, marker in (("bold", "*"), ("italic", "_"), ("strike", "~"))
    }
    inside_words: ClassVar[bool] = False  # whether the platform may read a marker inside a word (WhatsApp)

    def escape(self, text: str) -> str:
        text = _INTERNAL.sub("", text)
        out: list[str] = []
        start = 0
        for address in _ADDRESS.finditer(text):
            out.append(_MARKER.sub(_TEXT_MARK + r"\g<0>", text[start : address.start()]))
            out.append(_LINK + address.group() + _UNLINK)
            start = address.end()
        out.append(_MARKER.sub(_TEXT_MARK + r"\g<0>", text[start:]))
        return "".join(out)

    def escape_code(self, code: str) -> str:
        return super().escape_code(_INTERNAL.sub("", code))

    @staticmethod
    def shield(text: str) -> str:
        """``text`` kept out of the neutralisation: the platform does not format it (code, an address)."""
        return _SHIELD + _INTERNAL.sub("", text) + _UNSHIELD

    def code_inline(self, code: str) -> None:
        self._sync(self._wanted)
        self._parts.append(f"`{self.shield(self.escape_code(code.replace('`', 'ˋ')))}`")

    def finish(self, message: str) -> str:
        return "\n".join(_settle(line, inside_words=self.inside_words) for line in message.split("\n"))


# --- the neutralisation ------------------------------------------------------------------------------


def _settle(line: str, *, inside_words: bool) -> str:
    """The line as the platform should get it: hearth's styles that cannot show written back as Markdown, the
    model's markers that could pair replaced by look-alikes, the renderer's marks dropped."""
    if not _INTERNAL.search(line):
        return line
    chars, kinds = _decode(line)
    chars, kinds = _as_typed(chars, kinds)
    risky = _pairable(chars, kinds, inside_words=inside_words)
    return "".join(LOOK_ALIKES[char] if k in risky else char for k, char in enumerate(chars))


def _decode(line: str) -> tuple[list[str], list[int]]:
    chars: list[str] = []
    kinds: list[int] = []
    shielded, addressed, mark = False, False, ""
    for char in line:
        if char in (_SHIELD, _UNSHIELD):
            shielded = char == _SHIELD
        elif char in (_LINK, _UNLINK):
            addressed = char == _LINK
        elif char in (_TEXT_MARK, _STYLE_MARK):
            mark = char
        else:
            chars.append(char)
            kinds.append(_SHIELDED if shielded else _ADDRESSED if addressed else _TEXT if mark == _TEXT_MARK
                         else _STYLE if mark else _PLAIN)
            mark = ""
    return chars, kinds


def _glued(chars: Sequence[str], kinds: Sequence[int], k: int) -> bool:
    """Whether the character at ``k`` may be part of a word, by any platform's rule (hearth's markers are not)."""
    return 0 <= k < len(chars) and kinds[k] != _STYLE and (chars[k].isalnum() or chars[k] == "_")


def _as_typed(chars: list[str], kinds: list[int]) -> tuple[list[str], list[int]]:
    """hearth's style spans that touch a word (``2*3*4`` is emphasis in CommonMark) back as Markdown text."""
    stack: list[int] = []
    dead: set[int] = set()
    for k, char in enumerate(chars):
        if kinds[k] != _STYLE:
            continue
        if stack and chars[stack[-1]] == char:  # spans nest and close innermost first, within a line
            start = stack.pop()
            if _glued(chars, kinds, start - 1) or _glued(chars, kinds, k + 1):
                dead.update((start, k))
        else:
            stack.append(k)
    if not dead:
        return chars, kinds
    out_chars: list[str] = []
    out_kinds: list[int] = []
    for k, char in enumerate(chars):
        typed = _AS_TYPED[char] if k in dead else char
        out_chars.extend(typed)
        out_kinds.extend([_TEXT if k in dead else kinds[k]] * len(typed))
    return out_chars, out_kinds


def _word(char: str) -> bool:
    return char.isascii() and char.isalnum()  # Slack's word characters, at most: fewer means more is neutralised


def _opens(chars: Sequence[str], k: int, inside_words: bool) -> bool:
    return (k + 1 < len(chars) and not chars[k + 1].isspace()
            and (inside_words or k == 0 or not _word(chars[k - 1])))


def _closes(chars: Sequence[str], k: int, inside_words: bool) -> bool:
    return (k > 0 and not chars[k - 1].isspace()
            and (inside_words or k + 1 == len(chars) or not _word(chars[k + 1])))


def _pairable(chars: Sequence[str], kinds: Sequence[int], *, inside_words: bool) -> set[int]:
    """Where the model's marker characters could pair with another marker on the line, runs included. A marker
    in an address may be a partner (an app may end the link before it) but is never replaced."""
    risky: set[int] = set()
    for marker in "*_~":
        spots = [k for k, char in enumerate(chars) if char == marker and kinds[k] != _SHIELDED]
        if not any(kinds[k] == _TEXT for k in spots):
            continue
        openers = {k for k in spots if _opens(chars, k, inside_words)}
        closers = {k for k in spots if _closes(chars, k, inside_words)}
        if not openers or not closers:
            continue
        first, last = min(openers), max(closers)
        risky.update(k for k in spots if kinds[k] == _TEXT
                     and ((k in openers and last >= k + 2) or (k in closers and first <= k - 2)))
    ticks = [k for k, char in enumerate(chars) if char == "`" and kinds[k] != _SHIELDED]
    if len(ticks) > 1:
        risky.update(k for k in ticks if kinds[k] == _TEXT)
    for k in sorted(risky):  # the rest of a run too: "**" stays one kind of star
        for step in (-1, 1):
            j = k + step
            while 0 <= j < len(chars) and chars[j] == chars[k] and kinds[j] == _TEXT:
                risky.add(j)
                j += step
    return risky


# --- read back, for split -----------------------------------------------------------------------------

_ENTITY = re.compile(r"&(?:amp|lt|gt);")
_SLACK_LINK = re.compile(r"<([^<>|\n]+)(?:\|([^<>\n]*))?>")


def _has_closer(text: str, i: int, marker: str) -> bool:
    """Whether the style marker at ``i`` has a closing one later on its line, by WhatsApp's and Slack's rule."""
    for j in range(i + 2, line_end(text, i)):
        if text[j] == marker and not text[j - 1].isspace() and (j + 1 == len(text) or not text[j + 1].isalnum()):
            return True
    return False


def mrkdwn_atoms(text: str, *, slack: bool) -> list[Atom]:
    """Atoms of Slack mrkdwn or WhatsApp text: neither can escape a marker, so markers are told by position
    (after ``_settle``, every marker left that pairs is hearth's own)."""
    scan = Scan(text)
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
            scan.open(len(mark), Span(mark, "", "quote"))
        elif text.startswith("```", i):
            head = "```\n" if text.startswith("```\n", i) else "```"
            scan.open(len(head), Span(head, "```", "pre"))
        elif char == "`" and "`" in text[i + 1 : line_end(text, i)]:
            scan.open(1, Span("`", "`", "code"))
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
                scan.open(1, Span(char, char, kind))
            else:
                scan.char()
        else:
            scan.char()
    return scan.atoms
