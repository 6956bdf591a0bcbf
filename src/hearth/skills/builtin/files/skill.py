"""Files users sent, as a skill: list them, describe one, and read one's text to the model.

The skill has no model of its own. Summaries and answers about a document come from the conversation's
model, which calls ``read_file`` and works on the text it gets back; the intents' descriptions say so,
because they are what the model reads when it chooses a tool. Long texts come in parts that fit a prompt
(``part i of n``); PDFs can also be read page by page.
"""

from __future__ import annotations

import re
from typing import Any

from hearth.errors import HearthError, NotFound
from hearth.records import FileRecord
from hearth.sdk import Number, Result, Skill, SkillContext, SkillFailed, Text, intent

from .intake import FileIntake, describe

PART_CHARS = 12_000
_PAGE = re.compile(r"^--- page (\d+) ---$", re.M)
_FILE = Text(description="which file: its id, the start of its id, or (part of) its name; the latest file "
                         "when left out", required=False, max_length=255)


def split_parts(text: str, size: int = PART_CHARS) -> list[str]:
    """``text`` in parts of at most ``size`` characters, cut at a paragraph, line or word end when one is in
    the second half of the part."""
    parts: list[str] = []
    rest = text
    while len(rest) > size:
        window = rest[:size]
        cut = window.rfind("\n\n")
        if cut < size // 2:
            cut = window.rfind("\n")
        if cut < size // 2:
            cut = window.rfind(" ")
        if cut < size // 2:
            cut = size
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts


def page_text(text: str, page: int) -> str | None:
    """The text of page ``page`` of a PDF's extracted text (``None`` if that page was not read)."""
    marks = list(_PAGE.finditer(text))
    for index, mark in enumerate(marks):
        if int(mark.group(1)) == page:
            end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
            return text[mark.end():end].strip()
    return None


class FilesSkill(Skill):
    """Lists the files you sent and reads their text, so that the assistant can summarise them or answer
    questions about them."""

    name = "files"
    version = "1.0.0"
    permissions = ("files",)

    def __init__(self, intake: FileIntake) -> None:
        self.intake = intake

    @intent("list_files", slots={"limit": Number(description="how many files (default 10)", required=False,
                                                 integer=True, minimum=1, maximum=50)},
            examples=["what files did I send", "list my files", "show my files", "which files do I have",
                      "what documents did I send"])
    async def list_files(self, params: dict[str, Any], context: SkillContext) -> Result:
        """List the files the user sent (newest first): id, name, type, size, pages, whether their text could
        be read."""
        records = await self.intake.list(context.user.id, int(params.get("limit") or 10))
        if not records:
            return Result(text="You haven't sent me any files yet.", data={"files": []})
        lines = [f"• {r.filename} — {_kind(r)}, {_size(r.size)}{_pages(r)}, {r.created_at:%Y-%m-%d %H:%M} "
                 f"(id {r.id[:8]}){'' if r.status == 'ready' else ' — text unreadable: ' + (r.error or '?')}"
                 for r in records]
        return Result(text="Your files, newest first:\n" + "\n".join(lines),
                      data={"files": [describe(r) for r in records]})

    @intent("read_file",
            description="Read the text of a file the user sent, to summarise it or answer questions about it. "
                        "Long texts come in parts of about 12,000 characters: read the next part with "
                        "part=N, or one page of a PDF with page=N.",
            slots={"file": _FILE,
                   "part": Number(description="which part of a long text (from 1)", required=False, integer=True,
                                  minimum=1),
                   "page": Number(description="one page of a PDF (from 1)", required=False, integer=True,
                                  minimum=1)},
            examples=["show the text of {file}", "read part {part} of {file}", "read page {page} of {file}",
                      "show the text of my last file"])
    async def read_file(self, params: dict[str, Any], context: SkillContext) -> Result:
        record = await self._record(context.user.id, params.get("file"))
        try:
            text = await self.intake.text(context.user.id, record.id)
        except HearthError as exc:
            raise SkillFailed(exc.user_message, code=exc.code) from exc
        if params.get("page"):
            page = int(params["page"])
            found = page_text(text, page) if record.pages else None
            if found is None:
                raise SkillFailed(f"{record.filename} has no page {page}"
                                  + (f" (it has {record.pages})." if record.pages else "; read it by part instead."),
                                  code="no_page")
            text = found or "(this page has no text)"
        parts = split_parts(text)
        number = int(params.get("part") or 1)
        if number > len(parts):
            raise SkillFailed(f"{record.filename} has only {len(parts)} part{'s' if len(parts) > 1 else ''}.",
                              code="no_part")
        chunk = parts[number - 1]
        data: dict[str, Any] = {"file": describe(record), "part": number, "parts": len(parts), "text": chunk}
        if params.get("page"):
            data["page"] = int(params["page"])
        if number < len(parts):
            data["more"] = f"this is part {number} of {len(parts)}: call read_file with part={number + 1} for more"
        heading = f"{record.filename}" + (f", page {params['page']}" if params.get("page") else "")
        return Result(text=f"{heading} — part {number} of {len(parts)}:\n\n{chunk}", data=data)

    @intent("file_info", slots={"file": _FILE},
            examples=["info about {file}", "details of {file}", "tell me about my last file", "file info"])
    async def file_info(self, params: dict[str, Any], context: SkillContext) -> Result:
        """Describe a file the user sent: name, type, size, pages, when, and whether its text could be read."""
        record = await self._record(context.user.id, params.get("file"))
        status = "its text is ready to read" if record.status == "ready" else f"its text is unreadable: {record.error}"
        return Result(text=f"{record.filename}: {_kind(record)}, {_size(record.size)}{_pages(record)}, sent "
                           f"{record.created_at:%Y-%m-%d %H:%M} UTC (id {record.id}); {status}.",
                      data=describe(record))

    async def _record(self, user_id: int, ref: str | None) -> FileRecord:
        try:
            if ref and ref.strip().lower() not in ("latest", "last", "my last file", "my latest file", "it"):
                return await self.intake.find(user_id, ref)
            latest = await self.intake.list(user_id, 1)
        except NotFound as exc:
            raise SkillFailed(f"I can't find a file matching {ref!r}; ask me to list your files.",
                              code="not_found") from exc
        except HearthError as exc:
            raise SkillFailed(exc.user_message, code=exc.code) from exc
        if not latest:
            raise SkillFailed("You haven't sent me any files yet.", code="no_files")
        return latest[0]


def _kind(record: FileRecord) -> str:
    return {"application/pdf": "PDF", "text/plain": "text", "text/markdown": "Markdown", "image/png": "PNG image",
            "image/jpeg": "JPEG image"}.get(record.media_type, "Word document")


def _pages(record: FileRecord) -> str:
    if not record.pages or record.media_type.startswith("image/"):
        return ""
    return f", {record.pages} page{'s' if record.pages != 1 else ''}"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count / 1024 / 1024:.1f} MB"
