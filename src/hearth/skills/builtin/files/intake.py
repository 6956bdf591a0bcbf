"""Taking in a file a user sent: check it, keep it, read its text, record it — all or nothing.

Every channel and the HTTP API hand uploads to ``FileIntake.ingest``. The bytes are kept on this machine
under ``root/<user id>/<file id><extension>`` (directories 0700, files 0600, written to a temporary file
and renamed, so a crash never leaves half a file under a real name); the extension comes from the sniffed
type, never from the name the user gave, which is kept only as a label. A file whose text cannot be read
(damaged, encrypted, no words in it) is still kept and listed, with status ``failed`` and the reason;
a file that cannot be *recorded* is removed again, so no bytes are left without a row.

``FileIntake`` is also the ``FileStore`` that skills reach through ``context.files``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import logging
import os
import tempfile
import unicodedata
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from hearth.errors import InvalidRequest, StorageError
from hearth.records import FileRecord, FileStatus

from .extract import ACCEPTED, Extracted, ExtractionError, ExtractionLimits, Extractor, sniff, unsupported_hint

__all__ = ["FileIntake", "safe_filename"]

_log = logging.getLogger("hearth.files")
MB = 1024 * 1024
MAX_NAME = 200


class FileRows(Protocol):
    """The table that records files (``hearth.store.FileRepository``); reads are scoped to one user."""

    async def add(self, *, file_id: str, user_id: int, filename: str, media_type: str, size: int, sha256: str,
                  path: str, status: FileStatus, text: str | None = None, pages: int | None = None,
                  error: str | None = None, conversation_id: str | None = None) -> FileRecord: ...

    async def get(self, user_id: int, file_id: str) -> FileRecord: ...

    async def list(self, user_id: int, limit: int = 100) -> builtins.list[FileRecord]: ...

    async def find(self, user_id: int, ref: str) -> FileRecord: ...

    async def text(self, user_id: int, file_id: str) -> str | None: ...

    async def delete(self, user_id: int, file_id: str) -> str: ...


def safe_filename(name: str, fallback_extension: str = "") -> str:
    """``name`` as a label that is safe to show and to send back in a header: no directories, no control
    or bidirectional-override characters, no leading dots, at most 200 characters (keeping the extension)."""
    name = unicodedata.normalize("NFC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if c.isspace() else c for c in name if unicodedata.category(c)[0] != "C" or c.isspace())
    name = " ".join(name.split()).lstrip(".").strip()
    if len(name) > MAX_NAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_NAME - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:MAX_NAME].rstrip()
    return name or f"file{fallback_extension}"


def accepted_types() -> str:
    labels = [t.label for t in ACCEPTED]
    return ", ".join(labels[:-1]) + " and " + labels[-1]


class FileIntake:
    """Users' files: ingest, look up, read, delete. ``max_bytes`` bounds one file; ``limits`` bound reading."""

    def __init__(self, repository: FileRows, root: Path, *, max_bytes: int = 20 * MB,
                 limits: ExtractionLimits | None = None) -> None:
        self.repository = repository
        self.root = Path(root).absolute()
        self.max_bytes = max_bytes
        self.extractor = Extractor(limits)

    # --- taking files in -------------------------------------------------------------------------------

    async def ingest(self, user_id: int, filename: str, data: bytes, *, conversation_id: str | None = None,
                     claimed_type: str | None = None) -> FileRecord:
        """Check, store, read and record one file; returns its record (status ``ready`` or ``failed``).

        Refused with ``InvalidRequest``: ``empty``, ``too_large`` (over ``max_bytes``) and
        ``unsupported_type`` (by the bytes: the name and ``claimed_type`` do not decide). A refused file
        leaves nothing behind, and so does one that cannot be recorded (``NotFound`` for an unknown user or
        conversation, ``StorageError``).
        """
        if not data:
            raise InvalidRequest("The file is empty.", code="empty")
        if len(data) > self.max_bytes:
            raise InvalidRequest(f"The file is larger than the {_size(self.max_bytes)} limit.", code="too_large")
        file_type = await asyncio.to_thread(sniff, data, filename, claimed_type)
        label = safe_filename(filename, file_type.extension if file_type else "")
        if file_type is None:
            raise InvalidRequest(f"{label} is not a file type hearth can read; it accepts {accepted_types()} files."
                                 + unsupported_hint(data), code="unsupported_type")
        file_id = uuid.uuid4().hex
        relative = f"{int(user_id)}/{file_id}{file_type.extension}"
        path = self.root / relative
        digest = await asyncio.to_thread(self._write, path, data)
        recorded = False
        try:
            extracted: Extracted | None = None
            error: str | None = None
            try:
                extracted = await self.extractor.extract(path, file_type)
            except ExtractionError as exc:
                error = exc.user_message
                _log.info("file %s (%s) could not be read: %s", file_id, file_type.kind, exc.code)
            text = None
            if extracted is not None:
                text = extracted.text
                if extracted.truncated:
                    text += f"\n\n[the text was cut here: only the first {len(extracted.text):,} characters are kept]"
            record = await self.repository.add(
                file_id=file_id, user_id=user_id, conversation_id=conversation_id, filename=label,
                media_type=file_type.media_type, size=len(data), sha256=digest, path=relative,
                status="ready" if extracted is not None else "failed", text=text,
                pages=extracted.pages if extracted is not None else None, error=error)
            recorded = True
            return record
        finally:
            if not recorded:
                await asyncio.to_thread(path.unlink, missing_ok=True)

    def _write(self, path: Path, data: bytes) -> str:
        """Write ``data`` to ``path`` atomically (0600, in 0700 directories); returns its SHA-256."""
        try:
            for directory in (self.root, path.parent):
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(directory, 0o700)  # mkdir's mode is narrowed by the umask, and an old one may be wider
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".part")  # 0600
            try:
                with os.fdopen(descriptor, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            _fsync_directory(path.parent)
        except OSError as exc:
            raise StorageError(f"the file could not be stored: {exc.strerror or exc}") from exc
        return hashlib.sha256(data).hexdigest()

    # --- looking files up ---------------------------------------------------------------------------------

    async def get(self, user_id: int, file_id: str) -> FileRecord:
        """The user's file; ``NotFound`` for an unknown id or another user's file."""
        return await self.repository.get(user_id, file_id)

    async def list(self, user_id: int, limit: int = 100) -> list[FileRecord]:
        """The user's files, newest first."""
        return await self.repository.list(user_id, limit)

    async def find(self, user_id: int, ref: str) -> FileRecord:
        """The user's file by id, id prefix or name (see ``FileRows.find``)."""
        return await self.repository.find(user_id, ref)

    async def content(self, user_id: int, file_id: str) -> tuple[FileRecord, Path]:
        """The user's file and where its bytes are (``StorageError`` if the bytes have gone missing)."""
        record = await self.repository.get(user_id, file_id)
        path = self._path(record)
        if not await asyncio.to_thread(path.is_file):
            raise StorageError(f"the bytes of file {record.id} are missing from {self.root}")
        return record, path

    async def text(self, user_id: int, file_id: str) -> str:
        """The extracted text of the user's file; ``InvalidRequest(code="no_text")`` if it could not be read."""
        text = await self.repository.text(user_id, file_id)
        if text is None:
            record = await self.repository.get(user_id, file_id)
            raise InvalidRequest(f"The text of {record.filename} could not be read: {record.error}", code="no_text")
        return text

    async def recent(self, user_id: int, limit: int = 5) -> builtins.list[Mapping[str, Any]]:
        """The user's latest files as plain data (the ``FileStore`` protocol of skills)."""
        return [describe(record) for record in await self.repository.list(user_id, limit)]

    # --- removing files -----------------------------------------------------------------------------------

    async def delete(self, user_id: int, file_id: str) -> None:
        """Delete the user's file: its row, then its bytes (``NotFound`` if there is no such file)."""
        relative = await self.repository.delete(user_id, file_id)
        path = self._resolve(relative)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:  # the row is gone, which is what users see; the operator cleans up
            _log.warning("could not remove the bytes of deleted file %s: %s", file_id, exc)

    def _path(self, record: FileRecord) -> Path:
        return self._resolve(record.path)

    def _resolve(self, relative: str) -> Path:
        root = self.root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):  # only a tampered row could do this
            raise StorageError(f"a stored file path leaves the files directory: {relative!r}")
        return path


def describe(record: FileRecord) -> dict[str, Any]:
    """A file's metadata as plain data, for skills and the model."""
    return {"id": record.id, "name": record.filename, "media_type": record.media_type, "size": record.size,
            "pages": record.pages, "status": record.status, "error": record.error,
            "created_at": record.created_at.isoformat()}


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable: a crash after ``ingest`` returned must not lose the file."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _size(count: int) -> str:
    return f"{count // MB} MB" if count >= MB and count % MB == 0 else f"{count:,} bytes"
