"""The process that reads a file's text: PDF and DOCX parsing, image clean-up, OCR.

Parsers of untrusted files are where a hostile or merely broken upload can spin for minutes or eat
gigabytes (a zip bomb in a DOCX, a PDF whose object graph loops, a 30,000-pixel PNG). A thread cannot
be stopped from outside, so each extraction runs here, in a child process that ``extract.Extractor``
starts with ``python -I worker.py``: it caps its own address space, CPU time and file sizes before
touching the file, and those limits are inherited by the ``pdftoppm`` and ``tesseract`` it runs. The
parent kills the whole process group when its timeout passes. The environment is minimal (no secrets).

Protocol: one JSON request on stdin (``kind``, ``path``, ``workdir`` and the limits), one JSON answer on
stdout: ``{"ok": true, "text", "pages", "truncated"}`` or ``{"ok": false, "code", "message"}`` with a
message a user can read. Only the standard library is imported at module level, so this file also
serves the parent as a module (``clean_text``, ``truncate``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import traceback
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# A page whose text layer has fewer letters and digits than this is treated as scanned and OCRed.
MIN_LAYER_CHARS = 16
OCR_DPI = 200
MAX_RENDER_SIDE = 5000  # pixels: huge PDF pages are rendered at a lower resolution instead
MAX_IMAGE_PIXELS = 50_000_000
UPSCALE_BELOW = 1200  # images whose longer side is smaller are enlarged 2x: Tesseract wants tall letters
MAX_UNZIPPED = 256 * 1024 * 1024  # a DOCX that inflates past this is refused (zip bomb)
MAX_ZIP_ENTRIES = 5000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


class Refused(Exception):
    """The file cannot be read, for a reason the user can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def clean_text(text: str) -> str:
    """Text as stored: Unix newlines, no control characters, no runs of blank lines or trailing spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def truncate(text: str, max_chars: int) -> tuple[str, bool]:
    """``text`` cut to ``max_chars`` at a line end when one is near, and whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    cut = text.rfind("\n", max_chars - 2000, max_chars)
    return text[: cut if cut > 0 else max_chars].rstrip(), True


# --- the child process ----------------------------------------------------------------------------------


def _limit_resources(memory: int, cpu_seconds: int) -> None:
    import resource

    for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu_seconds),
                         (resource.RLIMIT_FSIZE, 512 * 1024 * 1024), (resource.RLIMIT_CORE, 0)):
        _soft, hard = resource.getrlimit(limit)
        wanted = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(limit, (wanted, hard))


class Job:
    """One extraction in this process: the request's limits, its deadline and its scratch directory."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.kind: str = request["kind"]
        self.path = Path(request["path"])
        self.workdir = Path(request["workdir"])
        self.max_pages: int = request["max_pages"]
        self.max_chars: int = request["max_chars"]
        self.language: str = request.get("language", "eng")
        self.ocr_threads: int = max(1, request.get("ocr_threads", 1))
        self.deadline = time.monotonic() + float(request["timeout"])
        self.ocr_missing = False

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Refused("timeout", "Reading this file took too long.")
        return left

    def run(self) -> dict[str, Any]:
        if self.kind == "pdf":
            text, pages = self.pdf()
        elif self.kind == "docx":
            text, pages = self.docx(), None
        elif self.kind in ("png", "jpeg"):
            text, pages = self.image(), 1
        else:
            raise Refused("unsupported_type", f"hearth cannot read {self.kind} files.")
        text = clean_text(text)
        if not re.search(r"\w", text):
            if self.ocr_missing:
                raise Refused("ocr_unavailable", "This file needs OCR, but Tesseract OCR is not installed on "
                                                 "this server (the operator can install tesseract-ocr).")
            raise Refused("no_text", "No text could be found in this file.")
        text, truncated = truncate(text, self.max_chars)
        return {"text": text, "pages": pages, "truncated": truncated}

    # --- PDF ---

    def pdf(self) -> tuple[str, int]:
        from pypdf import PasswordType, PdfReader
        from pypdf.errors import DependencyError, PyPdfError

        try:
            reader = PdfReader(self.path)
            if reader.is_encrypted:
                try:
                    # Many PDFs are encrypted only to restrict printing: their user password is empty.
                    opened = reader.decrypt("")
                except (DependencyError, NotImplementedError) as exc:
                    raise Refused("encrypted", "This PDF is encrypted in a way hearth cannot open; send a "
                                               "copy without protection.") from exc
                if opened == PasswordType.NOT_DECRYPTED:
                    raise Refused("encrypted", "This PDF is protected by a password; send a copy without "
                                               "a password.")
            total = len(reader.pages)
        except Refused:
            raise
        except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
                RecursionError) as exc:
            raise Refused("damaged", "This PDF could not be read: it looks damaged.") from exc
        if total == 0:
            raise Refused("damaged", "This PDF has no pages.")
        count = min(total, self.max_pages)
        texts: list[str] = []
        sides: list[float] = []
        for index in range(count):
            self.remaining()
            page_text = ""
            side = 11.7 * 72  # A4, when the page does not say
            try:
                page = reader.pages[index]
                side = max(float(page.mediabox.width), float(page.mediabox.height)) or side
                page_text = page.extract_text() or ""
            except Exception:  # noqa: S110 - a damaged page is OCRed below, or left empty
                pass
            texts.append(page_text)
            sides.append(side)
        scanned = [i for i, t in enumerate(texts) if len(re.sub(r"\W", "", t)) < MIN_LAYER_CHARS]
        if scanned:
            with ThreadPoolExecutor(self.ocr_threads) as pool:
                for index, found in zip(scanned, pool.map(lambda i: self.ocr_pdf_page(i, sides[i]), scanned),
                                        strict=True):
                    if len(re.sub(r"\W", "", found)) > len(re.sub(r"\W", "", texts[index])):
                        texts[index] = found
        body = "\n\n".join(f"--- page {n} ---\n{clean_text(t)}" for n, t in enumerate(texts, 1))
        if total > count:
            body += f"\n\n[only the first {count} of {total} pages were read]"
        return body, total

    def ocr_pdf_page(self, index: int, side_points: float) -> str:
        if self.ocr_missing:
            return ""
        dpi = max(50, min(OCR_DPI, int(MAX_RENDER_SIDE / (side_points / 72))))
        prefix = self.workdir / f"page-{index + 1}"
        command = ["pdftoppm", "-r", str(dpi), "-f", str(index + 1), "-l", str(index + 1), "-singlefile",
                   "-gray", "-png", str(self.path), str(prefix)]
        done = self.ocr_tool(command)
        image = prefix.with_suffix(".png")
        if done is None or done.returncode != 0 or not image.exists():
            return ""
        try:
            return self.tesseract(image)
        finally:
            image.unlink(missing_ok=True)

    # --- DOCX ---

    def docx(self) -> str:
        try:
            with zipfile.ZipFile(self.path) as archive:
                entries = archive.infolist()
                if len(entries) > MAX_ZIP_ENTRIES or sum(e.file_size for e in entries) > MAX_UNZIPPED:
                    raise Refused("too_complex", "This Word document is too large to read once unpacked.")
        except zipfile.BadZipFile as exc:
            raise Refused("damaged", "This Word document could not be read: it looks damaged.") from exc
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        try:
            document = docx.Document(str(self.path))
            lines: list[str] = []
            for block in document.iter_inner_content():
                self.remaining()
                if isinstance(block, Paragraph):
                    lines.append(block.text)
                elif isinstance(block, Table):
                    lines.extend(_table_lines(block))
                    lines.append("")
        except Refused:
            raise
        except Exception as exc:
            raise Refused("damaged", "This Word document could not be read: it looks damaged.") from exc
        return "\n".join(lines)

    # --- images ---

    def image(self) -> str:
        from PIL import Image, ImageOps, UnidentifiedImageError

        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        normalised = self.workdir / "image.png"
        try:
            with Image.open(self.path) as probe:
                width, height = probe.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise Refused("too_complex", f"This image is too large to read ({width}x{height} pixels).")
                probe.verify()
            with Image.open(self.path) as original:
                picture = ImageOps.exif_transpose(original)
                if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
                    white = Image.new("RGBA", picture.size, "white")
                    picture = Image.alpha_composite(white, picture.convert("RGBA"))
                picture = picture.convert("L")
                if max(picture.size) < UPSCALE_BELOW:
                    picture = picture.resize((picture.width * 2, picture.height * 2), Image.Resampling.LANCZOS)
                picture.save(normalised)
        except Refused:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
            raise Refused("damaged", "This image could not be read: it looks damaged.") from exc
        text = self.tesseract(normalised)
        normalised.unlink(missing_ok=True)
        return text

    def ocr_tool(self, command: list[str]) -> subprocess.CompletedProcess[bytes] | None:
        """Run pdftoppm or tesseract within what is left of the time; None (and noted) when it is missing."""
        try:
            return subprocess.run(command, capture_output=True, timeout=self.remaining(), check=False)  # noqa: S603
        except FileNotFoundError:
            self.ocr_missing = True
            return None
        except subprocess.TimeoutExpired as exc:
            raise Refused("timeout", "Reading this file took too long.") from exc

    def tesseract(self, image: Path) -> str:
        done = self.ocr_tool(["tesseract", str(image), "-", "-l", self.language])
        if done is None:
            return ""
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            if "language" in detail[0].lower() or "traineddata" in detail[0].lower():
                raise Refused("ocr_unavailable", f"OCR for language {self.language!r} is not installed on this "
                                                 "server.")
            return ""
        return done.stdout.decode("utf-8", errors="replace")


def _table_lines(table: Any) -> list[str]:
    """A table as one line per row, cells separated by " | " (merged cells once)."""
    lines = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a merged cell appears once per grid column it spans
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            lines.append(" | ".join(cells))
    return lines


def main() -> None:
    request = json.loads(sys.stdin.read())
    _limit_resources(int(request["memory"]), int(request["timeout"]) + 5)
    logging.disable(logging.WARNING)  # pypdf warns on every odd object: noise, and unbounded
    try:
        answer: dict[str, Any] = {"ok": True, **Job(request).run()}
    except Refused as exc:
        answer = {"ok": False, "code": exc.code, "message": exc.message}
    except MemoryError:
        answer = {"ok": False, "code": "too_complex", "message": "This file is too complex to read."}
    except Exception as exc:
        answer = {"ok": False, "code": "unreadable", "message": "This file could not be read.",
                  "detail": "".join(traceback.format_exception_only(exc)).strip()[:500]}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: nothing is left to flush, and it is slow with big heaps


if __name__ == "__main__":
    main()
