"""Model Markdown in Telegram MarkdownV2, Slack mrkdwn, WhatsApp and plain text, and the split to each limit.

Every Telegram output, split parts included, goes through ``parse_markdown_v2`` below: an independent reading
of https://core.telegram.org/bots/api#formatting-options that fails on an unescaped reserved character, an
unbalanced or badly nested entity, or an empty one, and returns the text Telegram would show.
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

from hearth.gateway.formatting import (
    SLACK_LIMIT,
    SLACK_MAX_LIMIT,
    TELEGRAM_LIMIT,
    WHATSAPP_LIMIT,
    render,
    split,
    to_plain,
    to_slack,
    to_telegram,
    to_whatsapp,
)

RESERVED = "_*[]()~`>#+-=|{}.!"
TOGGLES = {"*": "bold", "_": "italic", "~": "strike", "__": "underline", "||": "spoiler"}


class InvalidMarkdownV2(AssertionError):
    pass


def parse_markdown_v2(text: str) -> str:
    """The visible text of a MarkdownV2 message; raises InvalidMarkdownV2 where Telegram would refuse it.

    Stricter than Telegram on one point, which hearth's renderer promises: no style is open at a line break.
    """
    visible: list[str] = []
    stack: list[tuple[str, int]] = []  # (entity, len(visible) when it opened)
    i = 0

    def fail(why: str) -> InvalidMarkdownV2:
        return InvalidMarkdownV2(f"{why} at {i} in {text!r}")

    def close(kind: str) -> None:
        if not stack or stack[-1][0] != kind:
            raise fail(f"{kind} closed while {stack[-1][0] if stack else 'nothing'} is open")
        if len(visible) == stack[-1][1]:
            raise fail(f"empty {kind}")
        stack.pop()

    while i < len(text):
        char, top = text[i], stack[-1][0] if stack else ""
        if top == "url":
            if char == "\\":
                if text[i + 1 : i + 2] not in (")", "\\"):
                    raise fail("needless escape in a link address")
                i += 2
            elif char == ")":
                stack.pop()
                i += 1
            else:
                i += 1
            continue
        if char == "\\":
            if i + 1 >= len(text) or not 1 <= ord(text[i + 1]) <= 126:
                raise fail("dangling backslash")
            if top in ("pre", "code") and text[i + 1] not in "`\\":
                raise fail("escape of a character code does not reserve")
            visible.append(text[i + 1])
            i += 2
            continue
        if top == "pre":
            if text.startswith("```", i):
                close("pre")
                i += 3
            elif char == "`":
                raise fail("unescaped backtick in pre")
            else:
                visible.append(char)
                i += 1
            continue
        if top == "code":
            if char == "`":
                close("code")
            elif char == "\n":
                raise fail("line break in inline code")
            else:
                visible.append(char)
            i += 1
            continue
        if char == "\n":
            if any(kind != "quote" for kind, _ in stack):
                raise fail(f"{stack} open at a line break")
            stack.clear()
            visible.append("\n")
            i += 1
        elif char == ">" and (i == 0 or text[i - 1] == "\n"):
            stack.append(("quote", len(visible)))
            i += 1
        elif text.startswith("```", i):
            end = text.find("\n", i)
            if end < 0 or not re.fullmatch(r"[A-Za-z0-9_+#-]*", text[i + 3 : end]):
                raise fail("pre without a clean language line")
            if any(kind in ("link", "code", "pre") for kind, _ in stack):
                raise fail("pre inside another entity")
            stack.append(("pre", len(visible)))
            i = end + 1
        elif char == "`":
            if any(kind == "link" for kind, _ in stack):
                raise fail("code inside a link")
            stack.append(("code", len(visible)))
            i += 1
        elif char == "[":
            if any(kind == "link" for kind, _ in stack):
                raise fail("link inside a link")
            stack.append(("link", len(visible)))
            i += 1
        elif char == "]":
            close("link")
            if text[i + 1 : i + 2] != "(":
                raise fail("link text without an address")
            stack.append(("url", 0))
            i += 2
        else:
            marker = text[i : i + 2] if text[i : i + 2] in ("__", "||") else char
            if marker in TOGGLES:
                kind = TOGGLES[marker]
                if any(entry == kind for entry, _ in stack):
                    close(kind)
                else:
                    stack.append((kind, len(visible)))
                i += len(marker)
            elif char in RESERVED:
                raise fail(f"unescaped {char!r}")
            else:
                visible.append(char)
                i += 1
    if any(kind != "quote" for kind, _ in stack):
        raise fail(f"unclosed {stack}")
    return "".join(visible)


def check_slack(text: str) -> None:
    """No raw control character of Slack but our own links, so no mention the model could have typed."""
    for match in re.finditer(r"<[^>]*>?", text):
        assert re.fullmatch(r"<(https?://|mailto:)[^<>|\s]+(\|[^<>]+)?>", match.group()), (match.group(), text)
    assert not re.search(r"&(?!amp;|lt;|gt;)", text), text
    outside_links = re.sub(r"<[^<>]*>", "", text)
    assert not re.search(r"@(channel|here|everyone)", outside_links, re.IGNORECASE), text


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def unmarked(text: str, *, slack: bool = False) -> str:
    """Text without what a split may add or drop in Slack and WhatsApp: markers, whitespace, a link's brackets."""
    if slack:  # a link too long for a part is cut as "label (url)"
        text = re.sub(r"<((?:https?://|mailto:)[^<>|\s]+)\|([^<>]*)>", r"\2(\1)", text)
    return re.sub(r"[\s*_~`<>]", "", text)


# --- Telegram ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("char", [*RESERVED, "\\"])
def test_telegram_escapes_every_reserved_character_of_text(char: str) -> None:
    shown = f"a {char} b {char}{char}{char} c" if char != "`" else "a ` b"  # three backticks would open a fence
    source = shown.replace("\\", "\\\\")  # Markdown reads "\\" as one backslash
    rendered = to_telegram(source)
    assert rendered == shown.replace(char, f"\\{char}")
    assert parse_markdown_v2(rendered) == shown


def test_telegram_escapes_all_reserved_characters_together() -> None:
    source = "".join(f"\\{char}" for char in RESERVED + "\\")
    rendered = to_telegram(source)
    assert rendered == "".join(f"\\{char}" for char in RESERVED + "\\")
    assert parse_markdown_v2(rendered) == RESERVED + "\\"


def test_telegram_code_escapes_only_backtick_and_backslash() -> None:
    rendered = to_telegram("run `x_1 *[a](b)* ~> #+-=|{}.! \\n` now.")
    assert rendered == "run `x_1 *[a](b)* ~> #+-=|{}.! \\\\n` now\\."
    assert parse_markdown_v2(rendered) == "run x_1 *[a](b)* ~> #+-=|{}.! \\n now."
    assert to_telegram("``a`b``") == "`a\\`b`"


def test_telegram_pre_keeps_the_language_and_escapes_only_backtick_and_backslash() -> None:
    rendered = to_telegram('```python\nprint("a_b", 1 + 2)  # `x` \\ done.\n```')
    assert rendered == '```python\nprint("a_b", 1 + 2)  # \\`x\\` \\\\ done.\n```'
    assert parse_markdown_v2(rendered) == 'print("a_b", 1 + 2)  # `x` \\ done.\n'


def test_telegram_pre_language_is_sanitised_and_indented_code_has_none() -> None:
    assert to_telegram("```c++ {.numberLines}\nint x;\n```").startswith("```c++\n")
    assert to_telegram("```a`b\nx\n```") == "\\`\\`\\`a\\`b\nx"  # a backtick in the info string: no fence
    assert to_telegram("para\n\n    indented code_1\n") == "para\n\n```\nindented code_1\n```"


def test_telegram_link_address_escapes_only_paren_and_backslash() -> None:
    rendered = to_telegram("see [the *docs*](https://x.org/a_b/(c)?q=1&r=*!#frag).")
    assert rendered == "see [the _docs_](https://x.org/a_b/(c\\)?q=1&r=*!#frag)\\."
    assert parse_markdown_v2(rendered) == "see the docs."


def test_telegram_link_label_reserved_characters_are_escaped() -> None:
    rendered = to_telegram("[a.b [c] (d)!](https://e.f)")
    assert rendered == "[a\\.b \\[c\\] \\(d\\)\\!](https://e.f)"
    parse_markdown_v2(rendered)


def test_telegram_bare_and_autolinked_addresses_are_text_for_the_client_to_link() -> None:
    assert to_telegram("go to https://a.b/c_d now") == "go to https://a\\.b/c\\_d now"
    assert to_telegram("<https://a.b/c>") == "https://a\\.b/c"


def test_telegram_links_it_cannot_hold_are_shown_with_their_address() -> None:
    assert to_telegram("[mail](mailto:a@b.c)") == "mail \\(mailto:a@b\\.c\\)"
    assert to_telegram("[x](javascript:alert(1))") == "\\[x\\]\\(javascript:alert\\(1\\)\\)"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("**bold** and *it* and _it_ and ~~gone~~", "*bold* and _it_ and _it_ and ~gone~"),
        ("***both***", "_*both*_"),
        ("**bold _and italic_ text**", "*bold _and italic_ text*"),
        ("*italic **and bold** text*", "_italic *and bold* text_"),
        ("**a *b ~~c~~* d**", "*a _b ~c~_ d*"),
        ("*a*_b_", "_ab_"),  # adjacent spans merge, so no "__" that Telegram would read as underline
        ("_a_*b*", "_ab_"),
        ("**`code` in bold**", "`code` *in bold*"),
        ("**[link](https://x.y) in bold**", "*[link](https://x.y) in bold*"),
        ("[`code` label](https://x.y)", "[code label](https://x.y)"),
    ],
)
def test_telegram_styles(source: str, expected: str) -> None:
    assert to_telegram(source) == expected
    parse_markdown_v2(expected)


@pytest.mark.parametrize(
    "source",
    [
        "**unbalanced bold",
        "unbalanced **bold",
        "lone ` backtick",
        "two `` backticks",
        "lone [ bracket",
        "[label](",
        "[label]",
        "](x)",
        "* not a list item*",
        "_under_score_",
        "snake_case_name and __dunder__",
        "~ ~~ text ~~~",
        "***",
        "a ** b ** c",
        "```unclosed fence\nwith `code`",
        "`unclosed code\nspan`",
        "||spoiler?||",
        "trailing backslash \\",
        "> quote with **bold\nand lazy line**",
        "- item\n\n      code in item_1\n- **b**",
    ],
)
def test_telegram_malformed_input_is_shown_literally_and_stays_valid(source: str) -> None:
    rendered = to_telegram(source)
    visible = parse_markdown_v2(rendered)
    assert squeeze(visible)  # nothing vanished


def test_telegram_unbalanced_markers_are_literal() -> None:
    assert to_telegram("**bold") == "\\*\\*bold"
    assert to_telegram("lone ` tick") == "lone \\` tick"
    assert to_telegram("a [ b") == "a \\[ b"


def test_telegram_raw_html_is_text() -> None:
    rendered = to_telegram("<script>alert('x')</script> <b>hi</b>")
    assert parse_markdown_v2(rendered) == "<script>alert('x')</script> <b>hi</b>"
    assert rendered == "<script\\>alert\\('x'\\)</script\\> <b\\>hi</b\\>"


def test_telegram_blocks() -> None:
    source = (
        "# Title *x*\n\nIntro.\n\n- one\n- **two**\n  - nested\n\n3. three\n4. four\n\n"
        "> quoted **b**\n> > deeper\n\n---\n\n| a | b |\n|---|---|\n| 1 | 22 |\n"
    )
    rendered = to_telegram(source)
    assert rendered == (
        "*Title _x_*\n\nIntro\\.\n\n• one\n• *two*\n  • nested\n\n3\\. three\n4\\. four\n\n"
        ">quoted *b*\n>\n>deeper\n\n───────\n\n```\na | b\n--+---\n1 | 22\n```"
    )
    parse_markdown_v2(rendered)


def test_telegram_code_block_in_a_quote_becomes_code_lines() -> None:
    rendered = to_telegram("> look:\n> ```py\n> x = `1`\n>\n> y\n> ```")
    assert rendered == ">look:\n>\n>`x = \\`1\\``\n>\n>`y`"
    parse_markdown_v2(rendered)


def test_telegram_code_block_in_a_list_is_not_indented() -> None:
    rendered = to_telegram("1. step\n\n   ```sh\n   ls -l\n   ```\n2. done")
    assert rendered == "1\\. step\n```sh\nls -l\n```\n2\\. done"
    parse_markdown_v2(rendered)


def test_telegram_keeps_emoji_and_non_bmp_characters() -> None:
    rendered = to_telegram("**héllo 👋🏽 𝔘𝔫𝔦** — 👨‍👩‍👧 done!")
    assert rendered == "*héllo 👋🏽 𝔘𝔫𝔦* — 👨‍👩‍👧 done\\!"
    parse_markdown_v2(rendered)


def test_empty_input_renders_nothing() -> None:
    for dialect in ("telegram", "slack", "whatsapp", "plain"):
        assert render("", dialect) == []
        assert render("  \n\n ", dialect) == []


# --- Slack -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("<!channel> hi", "&lt;!channel&gt; hi"),
        ("<!here|here> and <!everyone>", "&lt;!here|here&gt; and &lt;!everyone&gt;"),
        ("ping <@U123> in <#C456|general>", "ping &lt;@U123&gt; in &lt;#C456|general&gt;"),
        ("fish & chips < 3 > 2", "fish &amp; chips &lt; 3 &gt; 2"),
        ("already &amp; escaped", "already &amp; escaped"),
        ("tell @channel and @Here, `@everyone`", "tell @\u2060channel and @\u2060Here, `@\u2060everyone`"),
        ("[x](!channel) [y](@U1) [z](#C1)", "x (!channel) y (@U1) z (#C1)"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ],
)
def test_slack_text_cannot_mention_or_inject(source: str, expected: str) -> None:
    rendered = to_slack(source)
    assert rendered == expected
    check_slack(rendered)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("**bold** *it* ~~s~~ `c & d`", "*bold* _it_ ~s~ `c &amp; d`"),
        ("***both***", "_*both*_"),
        ("[docs](https://x.y/a?b=1&c=<2>|3)", "<https://x.y/a?b=1&amp;c=%3C2%3E%7C3|docs>"),
        ("[a > b](https://x.y)", "<https://x.y|a &gt; b>"),
        ("<https://x.y/z>", "<https://x.y/z>"),
        ("<me@x.y>", "<mailto:me@x.y>"),
        ("**[bold link](https://x.y)**", "*<https://x.y|bold link>*"),
        ("# Heading", "*Heading*"),
        ("- a\n- b\n  1. c", "• a\n• b\n  1. c"),
        ("> quote\n> **two**", "> quote\n> *two*"),
        ("```python\nif a < b && c:\n    pass\n```", "```\nif a &lt; b &amp;&amp; c:\n    pass\n```"),
        ("| a | b |\n|---|---|\n| <1> | & |", "```\na   | b\n----+--\n&lt;1&gt; | &amp;\n```"),
        ("**unbalanced", "**unbalanced"),
    ],
)
def test_slack_formatting(source: str, expected: str) -> None:
    rendered = to_slack(source)
    assert rendered == expected
    check_slack(rendered)


def test_slack_code_cannot_close_early() -> None:
    assert to_slack("``a`b``") == "`aˋb`"
    assert "```\n``\u200b`\n```" in to_slack("````\n```\n````")


# --- WhatsApp and plain --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("**bold** *it* ~~s~~ `code`", "*bold* _it_ ~s~ `code`"),
        ("# Title\n\ntext", "*Title*\n\ntext"),
        ("- a\n- b\n\n1. c\n2. d", "- a\n- b\n\n1. c\n2. d"),
        ("> quoted\n> line", "> quoted\n> line"),
        ("```js\nlet a = 1;\n```", "```let a = 1;```"),
        ("[docs](https://x.y) and <https://z.w>", "docs (https://x.y) and https://z.w"),
        ("**[bold](https://x.y)**", "*bold (https://x.y)*"),
        ("<script>x</script> & <@U1>", "<script>x</script> & <@U1>"),
    ],
)
def test_whatsapp_formatting(source: str, expected: str) -> None:
    assert to_whatsapp(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("# Title\n\n**bold** *it* ~~s~~ `code`", "Title\n\nbold it s code"),
        ("[docs](https://x.y) ![cat](https://c.at/p.png)", "docs (https://x.y) cat (https://c.at/p.png)"),
        ("- a\n  - b\n\n1. c", "- a\n  - b\n\n1. c"),
        ("> quote", "> quote"),
        ("```py\nx = 1\n```", "x = 1"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "a | b\n--+--\n1 | 2"),
        ("\\*not emphasis\\*", "*not emphasis*"),
    ],
)
def test_plain_formatting(source: str, expected: str) -> None:
    assert to_plain(source) == expected


# --- split -------------------------------------------------------------------------------------------


def test_limits_are_the_documented_ones() -> None:
    assert TELEGRAM_LIMIT == 4096
    assert WHATSAPP_LIMIT == 4096
    assert SLACK_LIMIT == 4000
    assert SLACK_MAX_LIMIT == 40000


def test_split_leaves_short_text_alone_and_refuses_nonsense() -> None:
    assert split("short", 10, dialect="telegram") == ["short"]
    assert split("", 10, dialect="telegram") == []
    with pytest.raises(ValueError, match="dialect"):
        split("x", 10, dialect="irc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        split("x", 0, dialect="plain")
    with pytest.raises(ValueError, match="cannot hold"):
        split("[" + "x" * 40 + "](https://example.org/a/very/long/address)", 30, dialect="telegram")


def long_reply(seed: int = 7) -> str:
    rng = random.Random(seed)
    words = ["model", "reply", "**bold**", "_it_", "`x.y`", "a-b", "(c)", "1.5", "#tag", "[l](https://x.y/z)", "😀"]
    paragraphs = []
    while sum(len(p) for p in paragraphs) < 10_000:
        sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + "." for _ in range(4)]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


@pytest.mark.parametrize("dialect", ["telegram", "slack", "whatsapp", "plain"])
def test_split_a_long_reply_at_paragraphs(dialect: str) -> None:
    source = long_reply()
    assert len(source) >= 10_000
    whole = {"telegram": to_telegram, "slack": to_slack, "whatsapp": to_whatsapp, "plain": to_plain}[dialect](source)
    parts = render(source, dialect)  # type: ignore[arg-type]
    limit = {"telegram": TELEGRAM_LIMIT, "slack": SLACK_LIMIT, "whatsapp": WHATSAPP_LIMIT, "plain": 4096}[dialect]
    assert len(parts) >= 3
    for part in parts:
        assert part and part == part.strip()
        assert (utf16(part) if dialect in ("telegram", "whatsapp") else len(part)) <= limit
    assert all(utf16(part) > limit // 2 for part in parts[:-1])  # cut late in a part, not at the first break
    for before, after in itertools.pairwise(parts):
        assert before.endswith(".")
        assert before + "\n\n" + after in whole  # cut at a paragraph break, with nothing to close or reopen
    if dialect == "telegram":
        assert squeeze("".join(parse_markdown_v2(p) for p in parts)) == squeeze(parse_markdown_v2(whole))
    else:
        assert unmarked("".join(parts), slack=dialect == "slack") == unmarked(whole, slack=dialect == "slack")
    if dialect == "slack":
        for part in parts:
            check_slack(part)


def test_split_a_long_code_block_into_balanced_blocks() -> None:
    code = "\n".join(f"    value_{n} = compute(`{n}`) * 2  # \\ step {n}." for n in range(150))
    assert len(code) > 6000
    source = f"Here:\n\n```python\n{code}\n```\n\nDone."
    parts = render(source, "telegram")
    assert len(parts) >= 2
    for part in parts:
        assert utf16(part) <= TELEGRAM_LIMIT
        parse_markdown_v2(part)
    assert parts[0].startswith("Here:\n\n```python\n")
    for part in parts[1:-1]:
        assert part.startswith("```python\n") and part.endswith("\n```")
    shown = "".join(parse_markdown_v2(part) for part in parts)
    assert code in shown  # every line back, cut between lines

    for dialect, opener in (("slack", "```\n"), ("whatsapp", "```")):
        parts = render(source, dialect, 2000)  # type: ignore[arg-type]
        assert len(parts) >= 4
        for part in parts:
            assert len(part) <= 2000
            assert part.count("```") % 2 == 0
        for part in parts[1:-1]:
            assert part.startswith(opener) and part.endswith("```")


def test_split_a_long_word_without_spaces() -> None:
    word = "abc." * 2500
    for dialect in ("telegram", "slack", "whatsapp", "plain"):
        parts = render(word, dialect, 1000)  # type: ignore[arg-type]
        assert all(0 < utf16(part) <= 1000 for part in parts)
        if dialect == "telegram":
            assert all(not re.search(r"(?<!\\)(\\\\)*\\$", part) for part in parts)  # no escape cut in two
            assert "".join(parse_markdown_v2(part) for part in parts) == word
        else:
            assert "".join(parts) == word


def test_split_counts_utf16_code_units_for_telegram() -> None:
    faces = "😀" * 3000  # 3000 characters, 6000 UTF-16 code units
    parts = split(faces, TELEGRAM_LIMIT, dialect="telegram")
    assert len(parts) == 2
    assert all(utf16(part) <= TELEGRAM_LIMIT for part in parts)
    assert "".join(parts) == faces
    assert split(faces, SLACK_LIMIT, dialect="slack") == [faces]  # Slack counts characters


def test_split_never_cuts_a_grapheme() -> None:
    family = "👨‍👩‍👧‍👦"
    parts = split(family * 200, 100, dialect="telegram")
    assert all(part.replace(family, "") == "" for part in parts)
    flags = "🇫🇷🇩🇪" * 100
    assert all(len(part) % 2 == 0 for part in split(flags, 51, dialect="whatsapp"))


def test_split_closes_and_reopens_a_long_bold_span() -> None:
    source = "**" + " ".join(f"word{n}." for n in range(300)) + "**"
    for dialect in ("telegram", "slack", "whatsapp"):
        parts = render(source, dialect, 200)  # type: ignore[arg-type]
        assert len(parts) > 5
        for part in parts:
            assert part.startswith("*") and part.endswith("*") and not part.endswith("\\*"), part
            if dialect == "telegram":
                parse_markdown_v2(part)


def test_split_reopens_a_link_in_telegram() -> None:
    source = "[" + " ".join(["long label"] * 60) + "](https://x.y/a_(b))"
    parts = render(source, "telegram", 200)
    assert len(parts) > 2
    for part in parts:
        assert part.startswith("[") and part.endswith("](https://x.y/a_(b\\))")
        parse_markdown_v2(part)


def test_split_reopens_a_quote() -> None:
    source = "> " + " ".join(f"quoted{n}" for n in range(200))
    for dialect, mark in (("telegram", ">"), ("slack", "> "), ("whatsapp", "> "), ("plain", "> ")):
        parts = render(source, dialect, 150)  # type: ignore[arg-type]
        assert all(part.startswith(mark) for part in parts), parts


def test_split_never_cuts_a_slack_link_or_entity() -> None:
    source = " ".join(f"a&b<c> [l{n}](https://x.y/{n}?p=1&q=2)" for n in range(200))
    parts = render(source, "slack", 97)
    assert len(parts) > 10
    for part in parts:
        assert len(part) <= 97
        check_slack(part)


def test_split_falls_back_to_text_for_a_slack_link_longer_than_a_part() -> None:
    parts = split("<https://x.y/" + "a" * 300 + "|label>", 100, dialect="slack")
    assert all(len(part) <= 100 and "<" not in part for part in parts)
    assert "".join(parts) == "label(https://x.y/" + "a" * 300 + ")"


def test_split_prefers_paragraph_then_line_then_sentence_then_space() -> None:
    filler = "x" * 50
    assert split(f"{filler} {filler}.\n{filler}\n\n{filler} tail", 160, dialect="plain")[0] == (
        f"{filler} {filler}.\n{filler}"
    )
    assert split(f"{filler}. {filler}\n{filler} tail", 140, dialect="plain")[0] == f"{filler}. {filler}"
    assert split(f"{filler} {filler}. {filler} tail", 140, dialect="plain")[0] == f"{filler} {filler}."
    assert split(f"{filler} {filler} {filler}", 140, dialect="plain")[0] == f"{filler} {filler}"


def test_split_never_leaves_a_bare_bullet() -> None:
    source = "intro\n\n- " + "x" * 150 + " tail\n- b"
    for dialect in ("telegram", "slack", "whatsapp", "plain"):
        parts = render(source, dialect, 100)  # type: ignore[arg-type]
        assert parts[0] == "intro"
        assert parts[1].startswith(("• x", "- x")), parts


def test_render_uses_the_platform_limit_by_default() -> None:
    source = "\n\n".join(["A sentence of some length."] * 400)  # about 11,000 characters
    assert [len(render(source, dialect)) for dialect in ("telegram", "slack", "whatsapp", "plain")] == [3, 3, 3, 3]
    assert len(render(source, "slack", SLACK_MAX_LIMIT)) == 1


def test_quote_inside_a_list_uses_a_bar_the_platforms_cannot_misread() -> None:
    source = "- item\n\n  > quoted"
    assert to_telegram(source) == "• item\n  │ quoted"
    assert to_slack(source) == "• item\n  │ quoted"
    parse_markdown_v2(to_telegram(source))


def test_split_keeps_list_indentation_at_a_line_cut() -> None:
    source = "\n".join(f"- item {n}\n  - sub {n}" for n in range(40))
    parts = render(source, "plain", 100)
    assert all(line.startswith(("- ", "  - ")) for part in parts for line in part.split("\n"))


# --- randomised ----------------------------------------------------------------------------------------

FRAGMENTS = [
    "word", "text", " ", " ", " ", "\n", "\n\n", "**", "*", "_", "__", "~~", "~", "`", "```", "```py\n", "[", "]",
    "(", ")", "](https://x.y/a_b)", "<https://q.r/s>", "> ", "- ", "1. ", "# ", "| a | b |\n|---|---|\n| 1 | 2 |\n",
    "\\", "\\*", ".", "!", "#", "+", "-", "=", "|", "{", "}", ">", "<", "&", "&amp;", "<!channel>", "<@U1>",
    "@here", "<script>", "😀", "👨‍👩‍👧", "é", "𝔘", "||", "---\n", "    code\n", "https://b.c/d_e",
]  # fmt: skip


def random_markdown(rng: random.Random) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 120)))


@pytest.mark.parametrize("seed", range(40))
def test_random_markdown_always_renders_valid_parts(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(15):
        source = random_markdown(rng)
        limit = rng.randint(60, 400)

        telegram = to_telegram(source)
        shown = parse_markdown_v2(telegram)
        parts = split(telegram, limit, dialect="telegram")
        assert all(part.strip() and utf16(part) <= limit for part in parts)
        assert squeeze("".join(parse_markdown_v2(part) for part in parts)) == squeeze(shown)

        slack = to_slack(source)
        check_slack(slack)
        parts = split(slack, limit, dialect="slack")
        assert all(part.strip() and len(part) <= limit for part in parts)
        for part in parts:
            check_slack(part)
        assert unmarked("".join(parts), slack=True) == unmarked(slack, slack=True)

        for text, dialect in ((to_whatsapp(source), "whatsapp"), (to_plain(source), "plain")):
            measure = utf16 if dialect == "whatsapp" else len
            parts = split(text, limit, dialect=dialect)  # type: ignore[arg-type]
            assert all(part.strip() and measure(part) <= limit for part in parts)
            assert unmarked("".join(parts)) == unmarked(text)


# --- Slack and WhatsApp: the model's markers stay text ----------------------------------------------------------

LOOK_ALIKES = {"∗": "*", "ˍ": "_", "∼": "~", "ˋ": "`"}


def platform_styles(text: str, dialect: str) -> list[tuple[str, str]]:
    """What Slack or WhatsApp would format in ``text``: (marker, text) for each pair on a line.

    An independent reading of the platforms' rules: Slack takes a marker only at a word boundary (an opener after
    the line's start or a non-word character and before a non-space; a closer after a non-space and before the
    line's end or a non-word character); WhatsApp, which documents no rule, is read as widely as reported: any
    opener before a non-space, any closer after one. Code spans, Slack links and bare URLs are not formatted.
    """
    edge = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"
    before, after = edge if dialect == "slack" else ("", "")

    def hidden(match: re.Match[str]) -> str:  # no marker left, and words and non-words where they were
        return re.sub(r"[A-Za-z0-9]", "x", re.sub(r"[^A-Za-z0-9]", "\x01", match.group()))

    found: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if dialect == "slack":  # a link's target: "<" of text is always "&lt;"
            line = re.sub(r"<[^<>|]+(?=[|>])", hidden, line)
        line = re.sub(r"https?://[\w\-.~:/?#\[\]@!$&'()*+,;=%]+", hidden, line, flags=re.ASCII)
        spans = [("`", m.group(1)) for m in re.finditer(r"`([^`]+)`", line)]
        line = re.sub(r"`[^`]+`", hidden, line)
        for marker in "*_~":
            m = re.escape(marker)
            spans += [(marker, hit.group(1)) for hit in re.finditer(f"{before}{m}(?=\\S)(.+?)(?<=\\S){m}{after}", line)]
        found += spans
    return found


def as_written(text: str) -> str:
    return "".join(LOOK_ALIKES.get(char, char) for char in text)


@pytest.mark.parametrize(
    ("source", "slack", "whatsapp"),
    [
        ("2*3*4", "2*3*4", "2∗3∗4"),  # emphasis to CommonMark, but inside a word: shown as typed
        ("snake_case_name", "snake_case_name", "snakeˍcaseˍname"),
        ("file_name_v2", "file_name_v2", "fileˍnameˍv2"),
        ("~/path ~ approx", "~/path ~ approx", "~/path ~ approx"),  # no pair: left as typed
        ("a*b and c*d", "a*b and c*d", "a∗b and c∗d"),
        ("\\*not bold\\*", "∗not bold∗", "∗not bold∗"),
        ("a \\*b* c", "a ∗b∗ c", "a ∗b∗ c"),  # markdown-it keeps the second "*" as text too
        ("\\_x\\_ and \\~y\\~ and ~z~", "ˍxˍ and ∼y∼ and ∼z∼", "ˍxˍ and ∼y∼ and ∼z∼"),
        ("\\`code\\`", "ˋcodeˋ", "ˋcodeˋ"),
        ("a ``` b", "a ˋˋˋ b", "a ˋˋˋ b"),  # a fence could open a block over the next lines
        ("a ``b` c", "a ˋˋbˋ c", "a ˋˋbˋ c"),
        ("**bold**text", "∗∗bold∗∗text", "∗∗bold∗∗text"),  # a style no platform shows inside a word
        ("**unbalanced", "**unbalanced", "**unbalanced"),
        ("2 * 3 = 6, x_1 and :white_check_mark:", "2 * 3 = 6, x_1 and :white_check_mark:",
         "2 * 3 = 6, xˍ1 and :whiteˍcheckˍmark:"),
        ("see https://x.y/a_b_c~d~e and ~x~", "see https://x.y/a_b_c~d~e and ∼x∼", "see https://x.y/a_b_c~d~e and ∼x∼"),
        ("[a_b_c](https://x.y/_q_)", "<https://x.y/_q_|a_b_c>", "aˍbˍc (https://x.y/_q_)"),
    ],
)
def test_literal_markers_stay_literal_in_slack_and_whatsapp(source: str, slack: str, whatsapp: str) -> None:
    for render_as, expected, dialect in ((to_slack, slack, "slack"), (to_whatsapp, whatsapp, "whatsapp")):
        rendered = render_as(source)
        assert rendered == expected, dialect
        assert platform_styles(rendered, dialect) == [], dialect
    if not source.startswith("["):  # the same characters, whichever were replaced
        assert as_written(to_whatsapp(source)) == as_written(to_slack(source))


@pytest.mark.parametrize("dialect", ["slack", "whatsapp"])
def test_real_emphasis_still_renders_beside_literal_markers(dialect: str) -> None:
    render_as = to_slack if dialect == "slack" else to_whatsapp
    source = "**bold** and _it_ and ~~gone~~, not \\*this\\* or `co*de*` or a_b_c_d, but ***both***"
    rendered = render_as(source)
    underscores = "a_b_c_d" if dialect == "slack" else "aˍbˍcˍd"
    assert rendered == f"*bold* and _it_ and ~gone~, not ∗this∗ or `co*de*` or {underscores}, but _*both*_"
    assert platform_styles(rendered, dialect) == [
        ("`", "co*de*"), ("*", "bold"), ("*", "both"), ("_", "it"), ("_", "*both*"), ("~", "gone")]
    heading = render_as("# Title with \\*stars\\*\n\n> quoted ~~old~~ \\~new\\~\n\n- item **b** x_y_z")
    assert platform_styles(heading, dialect) == [("*", "Title with ∗stars∗"), ("~", "old"), ("*", "b")]


def test_hearths_own_marks_never_reach_the_platform() -> None:
    source = "a\ufdd0*b* \ufdd1x\ufdd2 \ufdd3`c\ufdd0d` [l\ufdd0](https://e.f/\ufdd2g)"
    for rendered in (to_slack(source), to_whatsapp(source)):
        assert not re.search("[\ufdd0-\ufdef]", rendered), rendered


LITERALS = ["word", "x", " ", "\n", "*", "_", "~", "`", "```", "snake_case", "2*3", "a~b", "**", "~~", "(", ")", "é",
            "😀", ":ok_hand:", "https://q.r/s_t", "&", "<", "\\"]


@pytest.mark.parametrize("seed", range(20))
def test_random_literal_markers_never_format(seed: int) -> None:
    """Text whose every marker is escaped, or cannot be emphasis, is shown as written and never formatted."""
    rng = random.Random(seed)
    for _ in range(20):
        raw = re.sub(r"(?m)^ +| +(?= )", "", "".join(rng.choice(LITERALS) for _ in range(rng.randint(1, 60))))
        source = re.sub(r"([*_~`\\<&])", r"\\\1", raw)  # every marker escaped: none is Markdown
        shown = to_plain(source)
        for render_as, dialect in ((to_slack, "slack"), (to_whatsapp, "whatsapp")):
            rendered = render_as(source)
            assert platform_styles(rendered, dialect) == [], (source, rendered)
            text = as_written(rendered)
            if dialect == "slack":
                text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
            assert squeeze(text) == squeeze(shown), (source, rendered)
        spaced = " ".join(rng.choice(LITERALS) for _ in range(rng.randint(1, 60)))
        spaced = re.sub(r"([*_~`\\<&])", r"\\\1", re.sub(r"(?m)^ +| +(?= )", "", spaced))
        for dialect in ("slack", "whatsapp"):  # cut at spaces, a part is read as it was in the whole
            for part in render(spaced, dialect, rng.randint(30, 80)):  # type: ignore[arg-type]
                assert platform_styles(part, dialect) == [], (spaced, part)


def test_split_keeps_neutralised_markers_literal_and_within_the_limit() -> None:
    source = " ".join(f"**step {n}** renames file_{n}_v2 to \\*{n}\\* in ~/dir_{n} (a*b*c)." for n in range(120))
    for dialect, measure in (("slack", len), ("whatsapp", utf16)):
        whole = to_slack(source) if dialect == "slack" else to_whatsapp(source)
        parts = render(source, dialect, 300)  # type: ignore[arg-type]
        assert len(parts) > 10
        for part in parts:
            assert measure(part) <= 300
            assert {marker for marker, _ in platform_styles(part, dialect)} <= {"*"}, part
            assert all(shown.startswith("step") for _, shown in platform_styles(part, dialect)), part
        assert squeeze("".join(parts)) == squeeze(whole)
        assert "∗" in whole and ("ˍ" in whole) == (dialect == "whatsapp")


@pytest.mark.parametrize(("markdown", "plain"), [
    ("2*3*4", "2*3*4"),  # CommonMark reads emphasis inside a word; as plain text it is shown as typed
    ("x**y**z", "x**y**z"),
    ("a ~~b~~c", "a ~~b~~c"),
    ("a **b** c", "a b c"),  # emphasis between words is still dropped
    ("*x*", "x"),
])
def test_plain_text_keeps_markers_inside_words(markdown: str, plain: str) -> None:
    assert to_plain(markdown) == plain
