"""Conversations remember their last completed turn.

``conversations.last_turn`` is the id of the user message of the last turn that completed; the
memory uses it to tell whether its cached history of a conversation is current without reading it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("last_turn", Id, nullable=True))
    # conversations that already have finished turns get their last one
    op.execute(
        "UPDATE conversations SET last_turn = (SELECT max(m.id) FROM messages m "
        "WHERE m.conversation_id = conversations.id AND m.role = 'user' AND m.status = 'done')"
    )


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("last_turn")
