"""Alembic environment for hearth: always run from ``hearth.store.migrate`` on a live connection.

There is no ``alembic.ini`` and no URL here: ``migrate.upgrade`` opens the connection (holding
the migration lock) and passes it in ``config.attributes["connection"]``. To write a new
revision, call ``alembic.command.revision(migrate.alembic_config(connection), autogenerate=True,
message=...)`` against a database at head, then edit the result into explicit operations.
"""

from __future__ import annotations

from alembic import context

from hearth.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("hearth migrations run through hearth.store.migrate, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables, and is a no-op on PostgreSQL.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
