"""hearth's storage: SQLite (WAL) by default, PostgreSQL for a cluster, one schema for both.

Open a ``Database`` from a URL, bring it to the current schema with ``upgrade``, and use the
repositories; nothing outside this package touches SQLAlchemy. Rows come back as the frozen
records of ``hearth.store.records``; failures as ``hearth.errors`` exceptions (``StorageError``
for the database's own, ``InvalidRequest``/``NotFound`` for the caller's).

    db = Database(settings.store.database_url)
    await upgrade(db)
    conversations = ConversationRepository(db, PlainTextCodec())
"""

from hearth.store.codec import MessageCodec, PlainTextCodec
from hearth.store.conversations import ConversationRepository
from hearth.store.engine import ConstraintViolation, Database, create_engine
from hearth.store.migrate import current_revision, head_revision, upgrade
from hearth.store.records import (
    Accepted,
    ApiKeyRecord,
    ConversationRecord,
    IdentityRecord,
    MessageRecord,
    NewMessage,
    Role,
    TurnStatus,
    UserRecord,
)
from hearth.store.users import UserRepository

__all__ = [
    "Accepted",
    "ApiKeyRecord",
    "ConstraintViolation",
    "ConversationRecord",
    "ConversationRepository",
    "Database",
    "IdentityRecord",
    "MessageCodec",
    "MessageRecord",
    "NewMessage",
    "PlainTextCodec",
    "Role",
    "TurnStatus",
    "UserRecord",
    "UserRepository",
    "create_engine",
    "current_revision",
    "head_revision",
    "upgrade",
]
