"""Journal tally: counts of the journal entries housekeeping prunes, so that message
counters never count back; indexes that count certificates without reading their content.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 23:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    tally = op.create_table('journal_tally',
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('target', sa.String(length=80), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('latency_count', sa.BigInteger(), nullable=False),
    sa.Column('latency_sum', sa.Float(), nullable=False),
    sa.Column('latency_buckets', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('event', 'type', 'source', 'target', name=op.f('pk_journal_tally'))
    )
    # The row each fold locks first (hub.tally), so two housekeepers never fold twice.
    op.bulk_insert(tally, [{'event': '', 'type': '', 'source': '', 'target': '', 'count': 0,
                            'latency_count': 0, 'latency_sum': 0.0, 'latency_buckets': '{}'}])
    with op.batch_alter_table('certificate', schema=None) as batch_op:
        batch_op.create_index('ix_certificate_superseded_by', ['superseded_by'], unique=False)
    with op.batch_alter_table('certificate_file', schema=None) as batch_op:
        batch_op.create_index('ix_certificate_file_lang_render_ms', ['lang', 'render_ms'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('certificate_file', schema=None) as batch_op:
        batch_op.drop_index('ix_certificate_file_lang_render_ms')
    with op.batch_alter_table('certificate', schema=None) as batch_op:
        batch_op.drop_index('ix_certificate_superseded_by')
    op.drop_table('journal_tally')
