"""``/v1/files``: upload, list, read, download and delete the files a user sent, over HTTP.

The routes follow OpenAI's files API where it fits (``POST /v1/files`` with a multipart ``file`` field,
``{"object": "list", "data": [...]}``, ``{"deleted": true}``), so the ``openai`` SDK and curl recipes work;
an OpenAI client's ``purpose`` field is accepted and ignored. A file object adds what hearth knows: the
sniffed ``media_type``, ``pages``, and ``status`` ``ready`` or ``failed`` (with ``error``) for its text.

An upload is read as a stream and cut off at the size limit: an oversized body is refused with 413
before it is held in memory whole (the multipart parser spools the file part to disk past 1 MB).
Downloads are always attachments with ``nosniff``, so a stored file is never rendered by the browser
under hearth's origin. Errors are ``{"error": {"code", "message"}}`` with 400/401/404/413/415.

This module does not import the skills layer: it gets a ``FileService`` from the composition root.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from hearth.errors import HearthError, InvalidRequest, NotFound
from hearth.gateway.base import Authenticator, bearer_token
from hearth.types import Actor

CHANNEL = "api"
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the small fields around the file
_FILE_ID = re.compile(r"^[0-9a-f]{32}$")
_STATUS = {"unauthenticated": 401, "not_found": 404, "too_large": 413, "unsupported_type": 415,
           "unsupported_media_type": 415, "storage_error": 500, "internal": 500, "not_ready": 503}


class StoredFile(Protocol):
    """What the API shows of a stored file."""

    @property
    def id(self) -> str: ...
    @property
    def conversation_id(self) -> str | None: ...
    @property
    def filename(self) -> str: ...
    @property
    def media_type(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def pages(self) -> int | None: ...
    @property
    def status(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...


class FileService(Protocol):
    """Users' files, as the API needs them (``FileIntake`` in the skills layer is one)."""

    @property
    def max_bytes(self) -> int: ...

    async def ingest(self, user_id: int, filename: str, data: bytes, *, conversation_id: str | None = None,
                     claimed_type: str | None = None) -> StoredFile:
        """Check, keep, read and record a file; ``InvalidRequest`` (``empty``, ``too_large``,
        ``unsupported_type``) when refused."""
        ...

    async def get(self, user_id: int, file_id: str) -> StoredFile:
        """The user's file; ``NotFound`` for another user's."""
        ...

    async def list(self, user_id: int, limit: int = 100) -> Sequence[StoredFile]:
        """The user's files, newest first."""
        ...

    async def text(self, user_id: int, file_id: str) -> str:
        """The extracted text; ``InvalidRequest(code="no_text")`` when it could not be read."""
        ...

    async def content(self, user_id: int, file_id: str) -> tuple[StoredFile, Path]:
        """The user's file and the path of its bytes."""
        ...

    async def delete(self, user_id: int, file_id: str) -> None:
        """Delete the user's file, bytes included."""
        ...


class _TooLarge(Exception):
    pass


def _error(status: int, code: str, message: str) -> Response:
    return Response(orjson.dumps({"error": {"code": code, "message": message}}), status_code=status,
                    media_type="application/json")


def _error_for(exc: HearthError) -> Response:
    status = _STATUS.get(exc.code)
    if status is None:
        status = 400 if isinstance(exc, InvalidRequest) else 500
    message = f"Invalid API key: {exc}" if status == 401 else exc.user_message
    return _error(status, exc.code, message)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def file_object(record: StoredFile) -> dict[str, Any]:
    """A file as the API shows it (OpenAI's file object, with hearth's fields added)."""
    return {
        "id": record.id, "object": "file", "filename": record.filename, "media_type": record.media_type,
        "bytes": record.size, "sha256": record.sha256, "pages": record.pages, "status": record.status,
        "error": record.error, "created_at": int(record.created_at.timestamp()),
        "conversation": record.conversation_id,
    }


class FilesApi:
    """The ``/v1/files`` routes over a ``FileService``, for callers with an API key."""

    def __init__(self, files: FileService, auth: Authenticator) -> None:
        self._files = files
        self._auth = auth

    def routes(self) -> list[Route]:
        return [
            Route("/v1/files", self.upload, methods=["POST"]),
            Route("/v1/files", self.list, methods=["GET"]),
            Route("/v1/files/{file_id}", self.get, methods=["GET"]),
            Route("/v1/files/{file_id}", self.delete, methods=["DELETE"]),
            Route("/v1/files/{file_id}/content", self.content, methods=["GET"]),
        ]

    async def _actor(self, request: Request) -> Actor:
        return await self._auth.authenticate(bearer_token(request.headers.get("authorization")), channel=CHANNEL)

    async def upload(self, request: Request) -> Response:
        try:
            actor = await self._actor(request)
            filename, data, claimed, conversation = await self._read_upload(request)
            record = await self._files.ingest(actor.user_id, filename, data, conversation_id=conversation,
                                              claimed_type=claimed)
        except HearthError as exc:
            return _error_for(exc)
        return _json(file_object(record), 201)

    async def _read_upload(self, request: Request) -> tuple[str, bytes, str | None, str | None]:
        """The upload's file name, bytes, claimed media type and conversation; refused past the size limit."""
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise InvalidRequest("send the file as multipart/form-data, in a field named 'file'",
                                 code="unsupported_media_type")
        limit = self._files.max_bytes
        too_large = InvalidRequest(f"The file is larger than the {_size(limit)} limit.", code="too_large")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
            raise too_large
        parser = MultiPartParser(request.headers, _limited(request.stream(), limit + MULTIPART_OVERHEAD),
                                 max_files=1, max_fields=16, max_part_size=4096)
        try:
            form = await parser.parse()
        except _TooLarge:
            raise too_large from None
        except MultiPartException as exc:
            raise InvalidRequest(f"the multipart body could not be read: {exc.message}", code="bad_multipart") from None
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidRequest("the request has no file: send it in a multipart field named 'file'",
                                     code="missing_file")
            if upload.size is not None and upload.size > limit:
                raise too_large
            data = await upload.read()
            conversation = form.get("conversation")
            if conversation is not None and (not isinstance(conversation, str) or not _FILE_ID.match(conversation)):
                raise InvalidRequest("'conversation' must be a conversation id (32 hex digits)",
                                     code="bad_conversation")
            return upload.filename or "", data, upload.content_type, conversation or None
        finally:
            await form.close()

    async def list(self, request: Request) -> Response:
        try:
            actor = await self._actor(request)
            raw = request.query_params.get("limit", "100")
            if not raw.isdigit() or not 1 <= int(raw) <= 1000:
                raise InvalidRequest("'limit' must be a number from 1 to 1000", code="bad_limit")
            records = await self._files.list(actor.user_id, int(raw))
        except HearthError as exc:
            return _error_for(exc)
        return _json({"object": "list", "data": [file_object(r) for r in records]})

    async def get(self, request: Request) -> Response:
        try:
            actor = await self._actor(request)
            file_id = _file_id(request)
            record = await self._files.get(actor.user_id, file_id)
            body = file_object(record)
            if request.query_params.get("text", "").lower() in ("1", "true", "yes"):
                body["text"] = await self._files.text(actor.user_id, file_id) if record.status == "ready" else None
        except HearthError as exc:
            return _error_for(exc)
        return _json(body)

    async def content(self, request: Request) -> Response:
        try:
            actor = await self._actor(request)
            record, path = await self._files.content(actor.user_id, _file_id(request))
        except HearthError as exc:
            return _error_for(exc)
        headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
                   "Cache-Control": "private, no-store"}
        return FileResponse(path, media_type=record.media_type, filename=record.filename, headers=headers,
                            content_disposition_type="attachment")

    async def delete(self, request: Request) -> Response:
        try:
            actor = await self._actor(request)
            file_id = _file_id(request)
            await self._files.delete(actor.user_id, file_id)
        except HearthError as exc:
            return _error_for(exc)
        return _json({"id": file_id, "object": "file", "deleted": True})


def _file_id(request: Request) -> str:
    file_id = str(request.path_params["file_id"])
    if not _FILE_ID.match(file_id):
        raise NotFound(f"No file {file_id[:64]!r}.")
    return file_id


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    """The request body, stopped with ``_TooLarge`` once it passes ``limit`` bytes."""
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        yield chunk


def _size(count: int) -> str:
    mb = 1024 * 1024
    return f"{count // mb} MB" if count >= mb and count % mb == 0 else f"{count:,} bytes"
