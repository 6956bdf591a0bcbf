"""The ``files`` table: what users sent, where its bytes are, and the text extracted from it.

The bytes themselves live on disk under the data directory (``FileIntake`` writes them); a row holds
their path relative to that root, so the data directory can move. The extracted text is message-like
content and goes through the ``MessageCodec`` like message bodies, so that encryption at rest covers it
too. Every read is scoped to a user: another user's file is ``NotFound``, never "forbidden", so ids do
not leak.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.engine import Connection

from hearth.errors import InvalidRequest, NotFound, StorageError
from hearth.records import FileRecord, FileStatus
from hearth.store.codec import MessageCodec
from hearth.store.engine import ConstraintViolation, Database
from hearth.store.schema import conversations, files, utcnow

__all__ = ["FileRecord", "FileRepository", "FileStatus"]

_HEX = frozenset("0123456789abcdef")
MIN_PREFIX = 4


_f = files.c
_COLUMNS = (_f.id, _f.user_id, _f.conversation_id, _f.filename, _f.media_type, _f.size, _f.sha256, _f.path,
            _f.pages, _f.status, _f.error, _f.created_at)


def _record(row: Any) -> FileRecord:
    return FileRecord(*row)


class FileRepository:
    """Rows of the ``files`` table, always for one user at a time."""

    def __init__(self, db: Database, codec: MessageCodec) -> None:
        self._db = db
        self._codec = codec

    async def add(self, *, file_id: str, user_id: int, filename: str, media_type: str, size: int, sha256: str,
                  path: str, status: FileStatus, text: str | None = None, pages: int | None = None,
                  error: str | None = None, conversation_id: str | None = None) -> FileRecord:
        """Record a stored file. ``text`` is the extracted text (``None`` when extraction failed, with
        ``error`` saying why). An unknown user, or a conversation that is not the user's, is ``NotFound``
        and records nothing."""
        if status not in ("ready", "failed"):
            raise ValueError(f"unknown file status {status!r}")
        created_at = utcnow()
        values = {
            "id": file_id, "user_id": user_id, "conversation_id": conversation_id, "filename": filename,
            "media_type": media_type, "size": size, "sha256": sha256, "path": path, "pages": pages,
            "status": status, "error": error, "created_at": created_at,
            "text": None if text is None else self._codec.encode(text),
        }
        statement = insert(files).values(**values)

        def tx(conn: Connection) -> None:
            if conversation_id is not None:
                owner = conn.execute(select(conversations.c.user_id)
                                     .where(conversations.c.id == conversation_id)).scalar()
                if owner != user_id:  # someone else's conversation is as unknown as a missing one
                    raise NotFound(f"conversation {conversation_id} not found")
            conn.execute(statement)

        try:
            await self._db.write(tx)
        except ConstraintViolation as exc:
            raise NotFound(f"user {user_id} not found") from exc
        return FileRecord(file_id, user_id, conversation_id, filename, media_type, size, sha256, path, pages,
                          status, error, created_at)

    async def get(self, user_id: int, file_id: str) -> FileRecord:
        """The user's file ``file_id``; ``NotFound`` if there is none (or it is someone else's)."""
        query = select(*_COLUMNS).where(_f.user_id == user_id, _f.id == file_id)
        row = await self._db.read(lambda c: c.execute(query).first())
        if row is None:
            raise NotFound(f"no file {file_id!r}")
        return _record(row)

    async def list(self, user_id: int, limit: int = 100) -> list[FileRecord]:
        """The user's files, newest first."""
        query = (select(*_COLUMNS).where(_f.user_id == user_id)
                 .order_by(_f.created_at.desc(), _f.id.desc()).limit(max(1, limit)))
        rows = await self._db.read(lambda c: c.execute(query).all())
        return [_record(r) for r in rows]

    async def find(self, user_id: int, ref: str) -> FileRecord:
        """The user's file named by ``ref``: its id, a unique id prefix (at least 4 characters), or its
        name (exactly, ignoring case, else a part of it); the newest of files with that same name.

        ``NotFound`` when nothing matches; ``InvalidRequest(code="ambiguous")`` naming the candidates
        when an id prefix or a part of a name fits several different files.
        """
        wanted = ref.strip()
        if not wanted:
            raise NotFound("no file named ''")
        lowered = wanted.lower()
        by_id = len(lowered) >= MIN_PREFIX and set(lowered) <= _HEX and len(lowered) <= 32
        conditions = [func.lower(_f.filename).contains(lowered, autoescape=True)]
        if by_id:
            conditions.append(_f.id.startswith(lowered))
        query = (select(*_COLUMNS).where(_f.user_id == user_id, or_(*conditions))
                 .order_by(_f.created_at.desc(), _f.id.desc()).limit(50))
        found = [_record(r) for r in await self._db.read(lambda c: c.execute(query).all())]
        if by_id:
            if exact := [f for f in found if f.id == lowered]:
                return exact[0]
            prefixed = [f for f in found if f.id.startswith(lowered)]
            if len(prefixed) == 1:
                return prefixed[0]
            if prefixed:
                raise _ambiguous(wanted, prefixed)
        named = [f for f in found if f.filename.lower() == lowered]
        if named:
            return named[0]
        partial = [f for f in found if lowered in f.filename.lower()]
        if len({f.filename.lower() for f in partial}) == 1:
            return partial[0]
        if partial:
            raise _ambiguous(wanted, partial)
        raise NotFound(f"no file matches {wanted!r}")

    async def text(self, user_id: int, file_id: str) -> str | None:
        """The extracted text of the user's file (``None`` if extraction failed); ``NotFound`` if none."""
        query = select(_f.text).where(_f.user_id == user_id, _f.id == file_id)
        row = await self._db.read(lambda c: c.execute(query).first())
        if row is None:
            raise NotFound(f"no file {file_id!r}")
        if row[0] is None:
            return None
        try:
            return self._codec.decode(row[0])
        except ValueError as exc:
            raise StorageError("a stored file text could not be decoded (wrong codec or key?)") from exc

    async def delete(self, user_id: int, file_id: str) -> str:
        """Delete the user's file row and return its stored path, for the caller to remove the bytes."""

        def tx(conn: Connection) -> str:
            where = (_f.user_id == user_id, _f.id == file_id)
            row = conn.execute(select(_f.path).where(*where)).first()
            if row is None:
                raise NotFound(f"no file {file_id!r}")
            conn.execute(delete(files).where(*where))
            return str(row[0])

        return await self._db.write(tx)


def _ambiguous(ref: str, candidates: list[FileRecord]) -> InvalidRequest:
    shown = ", ".join(f"{f.filename} ({f.id[:8]})" for f in candidates[:5])
    more = f" and {len(candidates) - 5} more" if len(candidates) > 5 else ""
    return InvalidRequest(f"{ref!r} fits several files: {shown}{more}; say which one", code="ambiguous")
