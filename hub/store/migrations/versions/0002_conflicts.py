"""Conflicts: fields changed on both sides of a bound record, and who won.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 18:32:42.025390
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import UtcDateTime as TS

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('conflict',
    sa.Column('id', BIGID, autoincrement=True, nullable=False),
    sa.Column('at', TS, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('canonical_id', sa.String(length=36), nullable=False),
    sa.Column('correlation_key', sa.String(length=64), nullable=True),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('crm_value', sa.Text(), nullable=True),
    sa.Column('erp_value', sa.Text(), nullable=True),
    sa.Column('base_value', sa.Text(), nullable=True),
    sa.Column('winner', sa.String(length=10), nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conflict'))
    )
    with op.batch_alter_table('conflict', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conflict_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_conflict_correlation_key'), ['correlation_key'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('conflict', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conflict_correlation_key'))
        batch_op.drop_index(batch_op.f('ix_conflict_at'))

    op.drop_table('conflict')
