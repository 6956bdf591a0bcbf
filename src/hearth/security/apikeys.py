"""API keys: ``hth_<prefix>_<secret>``, stored as an argon2id hash of the whole key.

The prefix (12 characters) is stored in clear so a key can be found without trying every hash; the
secret (32 characters, ~190 bits) never is. Keys are shown once, at creation. Verification costs an
argon2 computation by design, so callers cache successful checks briefly (see ``hearth.core.identity``)
and run it off the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 12
SECRET_LENGTH = 32
SCHEME = "hth"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly made key: ``token`` is shown to the user once, ``secret_hash`` is stored."""

    token: str = field(repr=False)
    prefix: str
    secret_hash: str = field(repr=False)


class ApiKeyHasher:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()

    def new_key(self) -> NewKey:
        prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LENGTH))
        secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
        token = f"{SCHEME}_{prefix}_{secret}"
        return NewKey(token=token, prefix=prefix, secret_hash=self._hasher.hash(token))

    def verify(self, secret_hash: str, token: str) -> bool:
        try:
            return self._hasher.verify(secret_hash, token)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def parse_prefix(token: str) -> str | None:
    """The lookup prefix of a well-formed key, or None for anything else."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != SCHEME:
        return None
    prefix, secret = parts[1], parts[2]
    if len(prefix) != PREFIX_LENGTH or len(secret) != SECRET_LENGTH:
        return None
    if not (prefix.isalnum() and secret.isalnum() and prefix.isascii() and secret.isascii()):
        return None
    return prefix


def fingerprint(token: str) -> str:
    """A cache key for a token that is useless to anyone who reads memory dumps or logs."""
    return hashlib.blake2b(token.encode(), digest_size=20, key=b"hearth-api-key").hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
