"""How message text becomes stored bytes, and back.

Every message body and conversation summary passes through a ``MessageCodec`` on its way in and
out of the database, and nothing else in hearth sees the stored form. That single seam is where
encryption at rest goes later (an AEAD codec with a key from ``data/``), without touching a caller
or a table: the columns are already binary.
"""

from __future__ import annotations

from typing import Protocol


class MessageCodec(Protocol):
    """Turns text into the bytes stored in the database and back.

    ``decode(encode(text)) == text`` for every string. ``decode`` raises ``ValueError`` on bytes it
    cannot read (a wrong key, a corrupt row); the repository reports that as a ``StorageError``.
    Both may be called from the database's worker threads at once, so they must be thread-safe.
    """

    def encode(self, text: str) -> bytes: ...

    def decode(self, data: bytes) -> str: ...


class PlainTextCodec:
    """Stores text as UTF-8: the default, for databases that are protected by other means."""

    __slots__ = ()

    def encode(self, text: str) -> bytes:
        return text.encode()

    def decode(self, data: bytes) -> str:
        return data.decode()
