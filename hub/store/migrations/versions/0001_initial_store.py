"""The hub store's first schema: xref, sync state, watermarks, outbox, inbox, journal,
dead letters, the embedded bus and component heartbeats.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 17:47:16.999775
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime as TS

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bus_binding',
    sa.Column('queue', sa.String(length=200), nullable=False),
    sa.Column('pattern', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('queue', 'pattern', name=op.f('pk_bus_binding'))
    )
    op.create_table('bus_message',
    sa.Column('id', BIGID, autoincrement=True, nullable=False),
    sa.Column('queue', sa.String(length=200), nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('routing_key', sa.String(length=200), nullable=False),
    sa.Column('headers', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('available_at', TS, nullable=False),
    sa.Column('lease_until', TS, nullable=True),
    sa.Column('lease_owner', sa.String(length=36), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bus_message'))
    )
    with op.batch_alter_table('bus_message', schema=None) as batch_op:
        batch_op.create_index('ix_bus_message_queue_available', ['queue', 'available_at', 'id'], unique=False)

    op.create_table('component',
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('process', sa.String(length=80), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('started_at', TS, nullable=False),
    sa.Column('heartbeat_at', TS, nullable=False),
    sa.Column('last_poll_at', TS, nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_component'))
    )
    op.create_table('dead_letter',
    sa.Column('id', BIGID, autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('queue', sa.String(length=200), nullable=False),
    sa.Column('routing_key', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=True),
    sa.Column('correlation_key', sa.String(length=64), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('headers', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('error_code', sa.String(length=40), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('dead_at', TS, nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('resolved_at', TS, nullable=True),
    sa.Column('resolved_by', sa.String(length=80), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letter'))
    )
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letter_correlation_key'), ['correlation_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letter_dead_at'), ['dead_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letter_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_dead_letter_status_queue', ['status', 'queue'], unique=False)

    op.create_table('id_xref',
    sa.Column('id', BIGID, autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('canonical_id', sa.String(length=36), nullable=False),
    sa.Column('system', sa.String(length=10), nullable=False),
    sa.Column('local_key', sa.String(length=100), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_id_xref')),
    sa.UniqueConstraint('kind', 'canonical_id', 'system', name=op.f('uq_id_xref_kind_canonical_id_system')),
    sa.UniqueConstraint('kind', 'system', 'local_key', name=op.f('uq_id_xref_kind_system_local_key'))
    )
    op.create_table('inbox',
    sa.Column('consumer', sa.String(length=80), nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('processed_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'message_id', name=op.f('pk_inbox'))
    )
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_processed_at'), ['processed_at'], unique=False)

    op.create_table('journal',
    sa.Column('id', BIGID, autoincrement=True, nullable=False),
    sa.Column('at', TS, nullable=False),
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=True),
    sa.Column('type', sa.String(length=40), nullable=True),
    sa.Column('correlation_key', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=10), nullable=True),
    sa.Column('target', sa.String(length=80), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal'))
    )
    with op.batch_alter_table('journal', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journal_at'), ['at'], unique=False)
        batch_op.create_index('ix_journal_correlation_key_at', ['correlation_key', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_journal_message_id'), ['message_id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', BIGID, autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('routing_key', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('correlation_key', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', TS, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('message_id', name=op.f('uq_outbox_message_id'))
    )
    op.create_table('sync_state',
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('canonical_id', sa.String(length=36), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('versions', sa.Text(), nullable=False),
    sa.Column('updated_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('kind', 'canonical_id', name=op.f('pk_sync_state'))
    )
    op.create_table('watermark',
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('position', TS, nullable=True),
    sa.Column('updated_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('source', name=op.f('pk_watermark'))
    )
    op.create_table('watermark_seen',
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('row_key', sa.String(length=100), nullable=False),
    sa.Column('row_version', sa.String(length=64), nullable=False),
    sa.Column('changed_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('source', 'row_key', 'row_version', name=op.f('pk_watermark_seen'))
    )
    with op.batch_alter_table('watermark_seen', schema=None) as batch_op:
        batch_op.create_index('ix_watermark_seen_source_changed_at', ['source', 'changed_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('watermark_seen', schema=None) as batch_op:
        batch_op.drop_index('ix_watermark_seen_source_changed_at')

    op.drop_table('watermark_seen')
    op.drop_table('watermark')
    op.drop_table('sync_state')
    op.drop_table('outbox')
    with op.batch_alter_table('journal', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journal_message_id'))
        batch_op.drop_index('ix_journal_correlation_key_at')
        batch_op.drop_index(batch_op.f('ix_journal_at'))

    op.drop_table('journal')
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbox_processed_at'))

    op.drop_table('inbox')
    op.drop_table('id_xref')
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.drop_index('ix_dead_letter_status_queue')
        batch_op.drop_index(batch_op.f('ix_dead_letter_message_id'))
        batch_op.drop_index(batch_op.f('ix_dead_letter_dead_at'))
        batch_op.drop_index(batch_op.f('ix_dead_letter_correlation_key'))

    op.drop_table('dead_letter')
    op.drop_table('component')
    with op.batch_alter_table('bus_message', schema=None) as batch_op:
        batch_op.drop_index('ix_bus_message_queue_available')

    op.drop_table('bus_message')
    op.drop_table('bus_binding')
