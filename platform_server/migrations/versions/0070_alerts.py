"""operations alerts

Revision ID: 0070
Revises: 0040
Create Date: 2026-12-04

The operations console opens an alert when a rule's cause appears (kiosk offline, band stock low,
printer paper out) and resolves it when the cause goes away. `open_key` is set only while the alert
is open and is unique, so two console replicas evaluating the rules cannot open the same alert twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from platform_server.db.models import UtcDateTime

revision = '0070'
down_revision = '0040'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('open_key', sa.String(length=100), nullable=True),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('opened_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('open_key', name=op.f('uq_alerts_open_key'))
    )


def downgrade() -> None:
    op.drop_table('alerts')
