"""What a file really is, and its text.

The type is *sniffed* from the bytes (magic numbers, the parts inside a DOCX, a UTF-8/binary check),
never taken from the file name or the media type a client claims: a renamed executable must not reach a
parser as a "PDF". The name only tells plain text from Markdown, which no byte can.

Reading runs off the event loop and inside limits: plain text is decoded in a thread; PDF, DOCX and
images go to a child process (``worker.py``) with capped memory and CPU, killed with its ``pdftoppm`` and
``tesseract`` children when the timeout passes; a semaphore bounds how many run at once. PDF pages with
no usable text layer (scans) are rendered with poppler's ``pdftoppm -r 200`` and read by Tesseract, so
scanned documents work like born-digital ones. Whatever goes wrong comes back as ``ExtractionError``
with a sentence for the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import HearthError, NextAction

from .worker import clean_text, truncate

__all__ = ["ACCEPTED", "Extracted", "ExtractionError", "ExtractionLimits", "Extractor", "FileType", "sniff"]

_log = logging.getLogger("hearth.files")
WORKER = Path(__file__).with_name("worker.py")
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileType:
    """A supported kind of file: ``kind`` (``pdf``, ``docx``, ``text``, ``markdown``, ``png``, ``jpeg``),
    its media type and the extension its bytes are stored under."""

    kind: str
    media_type: str
    extension: str
    label: str


PDF = FileType("pdf", "application/pdf", ".pdf", "PDF")
DOCX = FileType("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx",
                "Word (DOCX)")
TEXT = FileType("text", "text/plain", ".txt", "plain text")
MARKDOWN = FileType("markdown", "text/markdown", ".md", "Markdown")
PNG = FileType("png", "image/png", ".png", "PNG")
JPEG = FileType("jpeg", "image/jpeg", ".jpg", "JPEG")
ACCEPTED = (PDF, DOCX, TEXT, MARKDOWN, PNG, JPEG)
"""Every type hearth reads, in the order it names them to users."""

_MARKDOWN_NAMES = (".md", ".markdown", ".mdown", ".mkd")
_MARKDOWN_TYPES = ("text/markdown", "text/x-markdown")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .doc, and password-protected Office files


class ExtractionError(HearthError):
    """The text of a file could not be read; ``user_message`` says why in words a user can act on."""

    code = "extraction_failed"
    next_action = NextAction.FIX_INPUT
    default_user_message = "The text of this file could not be read."

    def __init__(self, message: str, *, code: str = "extraction_failed") -> None:
        super().__init__(message, user_message=message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ExtractionLimits:
    """How far reading one file may go. ``memory`` caps the worker's address space (bytes); ``concurrency``
    is how many files are read at once; ``ocr_threads`` how many scanned pages of one PDF at once."""

    max_pages: int = 200
    max_chars: int = 1_000_000
    timeout: float = 120.0
    memory: int = 1536 * MB
    concurrency: int = 2
    ocr_threads: int = 2
    language: str = "eng"


@dataclass(frozen=True, slots=True)
class Extracted:
    """A file's text; ``pages`` for PDFs (all of them, read or not) and images; ``truncated`` when a limit
    cut it."""

    text: str
    pages: int | None
    truncated: bool = False


def sniff(data: bytes, filename: str = "", claimed_type: str | None = None) -> FileType | None:
    """The type of ``data`` from its bytes, or ``None`` when hearth does not read it."""
    if b"%PDF-" in data[:1024]:  # the header may follow some junk, within the first kilobyte
        return PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"PK\x03\x04"):
        return DOCX if _is_docx(data) else None
    if _looks_binary(data) or decode_text(data) is None:
        return None
    markdown = filename.lower().endswith(_MARKDOWN_NAMES) or (claimed_type or "").split(";")[0].strip().lower() in (
        _MARKDOWN_TYPES)
    return MARKDOWN if markdown else TEXT


def unsupported_hint(data: bytes) -> str:
    """A word on why a refused file is refused, when the bytes tell."""
    if data.startswith(_OLE):
        return (" Older Word (.doc) files and password-protected Office documents cannot be read: save it as "
                ".docx without a password.")
    if data.startswith(b"PK\x03\x04"):
        return " This archive is not a Word document."
    return ""


def _is_docx(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return False
    return "[Content_Types].xml" in names and "word/document.xml" in names


def _looks_binary(data: bytes) -> bool:
    head = data[:65536]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 text: decode_text reads it
        return False
    if b"\x00" in head:
        return True
    controls = sum(head.count(bytes([c])) for c in (*range(0, 8), 11, *range(14, 27), *range(28, 32), 127))
    return controls > len(head) // 100


def decode_text(data: bytes) -> str | None:
    """Text from bytes: UTF-8 (with or without a BOM), UTF-16 with a BOM, else Windows-1252, else Latin-1
    (which decodes anything: the binary check before it is what refuses non-text)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


class Extractor:
    """Reads files' text within ``ExtractionLimits``."""

    def __init__(self, limits: ExtractionLimits | None = None) -> None:
        self.limits = limits or ExtractionLimits()
        self._slots = asyncio.Semaphore(max(1, self.limits.concurrency))

    async def extract(self, path: Path, file_type: FileType) -> Extracted:
        """The text of the file at ``path`` (absolute), already sniffed as ``file_type``; ``ExtractionError``
        when it cannot be read."""
        if not path.is_absolute():
            raise ValueError(f"extract needs an absolute path, not {path}")
        if file_type.kind in ("text", "markdown"):
            return await asyncio.to_thread(self._text, path)
        async with self._slots:
            return await self._in_worker(path, file_type)

    def _text(self, path: Path) -> Extracted:
        decoded = decode_text(path.read_bytes())
        if decoded is None:
            raise ExtractionError("This text file could not be decoded.", code="damaged")
        text = clean_text(decoded)
        if not text:
            raise ExtractionError("No text could be found in this file.", code="no_text")
        text, truncated = truncate(text, self.limits.max_chars)
        return Extracted(text, None, truncated)

    async def _in_worker(self, path: Path, file_type: FileType) -> Extracted:
        limits = self.limits
        with tempfile.TemporaryDirectory(prefix="hearth-extract-") as workdir:
            request = {"kind": file_type.kind, "path": str(path), "workdir": workdir,
                       "max_pages": limits.max_pages, "max_chars": limits.max_chars, "timeout": limits.timeout,
                       "memory": limits.memory, "ocr_threads": limits.ocr_threads, "language": limits.language}
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "OMP_THREAD_LIMIT": "1"}
            if "TESSDATA_PREFIX" in os.environ:
                env["TESSDATA_PREFIX"] = os.environ["TESSDATA_PREFIX"]
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", str(WORKER), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, cwd=workdir, env=env, start_new_session=True)
            try:
                # the worker stops itself at the deadline; the extra seconds are for its answer
                output, _ = await asyncio.wait_for(process.communicate(json.dumps(request).encode()),
                                                   limits.timeout + 10)
            except TimeoutError:
                raise ExtractionError("Reading this file took too long.", code="timeout") from None
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    await asyncio.shield(process.wait())
        try:
            answer = json.loads(output)
        except ValueError:
            # killed by a resource limit (SIGKILL from the kernel, SIGXCPU) before it could answer
            _log.warning("file reader for %s exited with %s and no answer", file_type.kind, process.returncode)
            raise ExtractionError("This file is too complex to read.", code="too_complex") from None
        if not answer.get("ok"):
            if answer.get("detail"):
                _log.warning("file reader for %s failed: %s", file_type.kind, answer["detail"])
            raise ExtractionError(str(answer.get("message") or "This file could not be read."),
                                  code=str(answer.get("code") or "unreadable"))
        return Extracted(str(answer["text"]), answer.get("pages"), bool(answer.get("truncated")))
