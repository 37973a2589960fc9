"""rooms: the check-in holding each room, and an index of the free rooms in assignment order

Revision ID: 0090
Revises: 0080
Create Date: 2026-12-05

A completion takes the lowest free room of its batch (by number length, then number). Found by
checking every room of the batch against the active check-ins, that cost grew with the batch: with
3 000 rooms it bounded PostgreSQL at about 70 check-ins/s. `rooms.occupied_by` names the active
check-in holding the room (kept with each check-in and annulment; the unique index on active
check-ins stays the guarantee), and `ix_rooms_free` lists the free rooms in assignment order, so
the lowest free room is the first entry of the index. Filled here from the active check-ins.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0090'
down_revision = '0080'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rooms') as batch:
        batch.add_column(sa.Column('occupied_by', sa.Integer(), nullable=True))
    op.execute(
        "UPDATE rooms SET occupied_by = "
        "(SELECT c.id FROM check_ins c WHERE c.room_id = rooms.id AND c.annulled_at IS NULL)"
    )
    op.create_index(
        'ix_rooms_free',
        'rooms',
        ['batch_id', sa.text('length(number)'), 'number'],
        unique=False,
        sqlite_where=sa.text('occupied_by IS NULL'),
        postgresql_where=sa.text('occupied_by IS NULL'),
    )


def downgrade() -> None:
    op.drop_index('ix_rooms_free', table_name='rooms')
    # Plain ALTER on both databases (SQLite 3.35+): a batch copy of rooms trips the foreign keys to it.
    op.execute('ALTER TABLE rooms DROP COLUMN occupied_by')
