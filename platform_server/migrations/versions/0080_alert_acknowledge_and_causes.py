"""alerts: acknowledged by a person; causes held for a rule's duration

Revision ID: 0080
Revises: 0070
Create Date: 2026-12-04

An open alert can be acknowledged (who, when) before its cause recovers. `alert_causes` remembers
when each rule's cause was first seen, so a rule with a duration (device fault for 60 s, a queue not
draining for 5 min) opens its alert only once the cause has lasted that long, on every replica alike.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from platform_server.db.models import UtcDateTime

revision = '0080'
down_revision = '0075'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.add_column(sa.Column('acknowledged_at', UtcDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('acknowledged_by', sa.String(length=64), nullable=True))
    op.create_table('alert_causes',
    sa.Column('open_key', sa.String(length=100), nullable=False),
    sa.Column('first_seen_at', UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('open_key', name=op.f('pk_alert_causes'))
    )


def downgrade() -> None:
    op.drop_table('alert_causes')
    with op.batch_alter_table('alerts') as batch:
        batch.drop_column('acknowledged_by')
        batch.drop_column('acknowledged_at')
