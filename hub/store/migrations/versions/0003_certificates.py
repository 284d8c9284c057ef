"""Certificates: API tokens, entitlements (who got which batch), issued certificates and their
PDFs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:12:05.118204
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.store.types import Blob, LongText
from hub.store.types import UtcDateTime as TS

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_token',
    sa.Column('id', BIGID, autoincrement=True, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('subject', sa.String(length=80), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('revoked_at', TS, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_token_token_hash'))
    )
    op.create_table('certificate',
    sa.Column('id', BIGID, autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('batch_number', sa.String(length=36), nullable=False),
    sa.Column('customer', sa.String(length=15), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('issued_at', TS, nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('verify_token', sa.String(length=64), nullable=False),
    sa.Column('quality_hash', sa.String(length=64), nullable=False),
    sa.Column('lims_changed_on', TS, nullable=True),
    sa.Column('data', LongText, nullable=False),
    sa.Column('superseded_by', sa.Integer(), nullable=True),
    sa.Column('superseded_at', TS, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificate')),
    sa.UniqueConstraint('batch_number', 'customer', 'version', name=op.f('uq_certificate_batch_number_customer_version')),
    sa.UniqueConstraint('verify_token', name=op.f('uq_certificate_verify_token'))
    )
    op.create_table('entitlement',
    sa.Column('id', BIGID, autoincrement=True, nullable=False),
    sa.Column('batch_number', sa.String(length=36), nullable=False),
    sa.Column('customer', sa.String(length=15), nullable=False),
    sa.Column('customer_name', sa.String(length=100), nullable=True),
    sa.Column('order_key', sa.String(length=64), nullable=True),
    sa.Column('delivery_doc_entry', sa.Integer(), nullable=False),
    sa.Column('delivery_doc_num', sa.Integer(), nullable=False),
    sa.Column('delivery_line', sa.Integer(), nullable=False),
    sa.Column('delivery_date', sa.Date(), nullable=False),
    sa.Column('product_code', sa.String(length=50), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.Column('uom', sa.String(length=10), nullable=True),
    sa.Column('recorded_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entitlement')),
    sa.UniqueConstraint('delivery_doc_entry', 'delivery_line', 'batch_number', name=op.f('uq_entitlement_delivery_doc_entry_delivery_line_batch_number'))
    )
    with op.batch_alter_table('entitlement', schema=None) as batch_op:
        batch_op.create_index('ix_entitlement_batch_number_customer', ['batch_number', 'customer'], unique=False)

    op.create_table('certificate_file',
    sa.Column('certificate_id', BIGID, autoincrement=False, nullable=False),
    sa.Column('lang', sa.String(length=5), nullable=False),
    sa.Column('pdf', Blob, nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('rendered_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificate.id'], name=op.f('fk_certificate_file_certificate_id_certificate')),
    sa.PrimaryKeyConstraint('certificate_id', 'lang', name=op.f('pk_certificate_file'))
    )


def downgrade() -> None:
    op.drop_table('certificate_file')
    with op.batch_alter_table('entitlement', schema=None) as batch_op:
        batch_op.drop_index('ix_entitlement_batch_number_customer')

    op.drop_table('entitlement')
    op.drop_table('certificate')
    op.drop_table('api_token')
