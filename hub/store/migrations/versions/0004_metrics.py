"""Metrics: source-commit time of outbox messages, end-to-end latency of applied messages,
certificate render time, and an index that counts the journal by route, outcome and time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 23:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime as TS

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('occurred_at', TS, nullable=True))
    with op.batch_alter_table('journal', schema=None) as batch_op:
        batch_op.add_column(sa.Column('latency_ms', sa.Float(), nullable=True))
        batch_op.create_index('ix_journal_event_at_route',
                              ['event', 'at', 'type', 'source', 'target', 'latency_ms'],
                              unique=False)
    with op.batch_alter_table('certificate_file', schema=None) as batch_op:
        batch_op.add_column(sa.Column('render_ms', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('certificate_file', schema=None) as batch_op:
        batch_op.drop_column('render_ms')
    with op.batch_alter_table('journal', schema=None) as batch_op:
        batch_op.drop_index('ix_journal_event_at_route')
        batch_op.drop_column('latency_ms')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('occurred_at')
