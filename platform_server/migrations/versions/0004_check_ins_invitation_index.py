"""index check-ins by invitation

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

IdentifyExpert reads an invitation's newest check-in (max(id) by invitation_id) and CompleteCheckIn
checks its token against it; the only index on the column was the partial unique one over active
check-ins, which those queries cannot use, so each scanned the whole table (1.1 ms per identify at
20 000 check-ins, 9 µs with this index).
"""

from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('check_ins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_check_ins_invitation_id'), ['invitation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('check_ins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_ins_invitation_id'))
