"""check-in slips and the printer's paper

Revision ID: 0040
Revises: 0004
Create Date: 2026-12-04

The kiosk prints a slip (签到凭证) after the band is handed out. Each check-in gets a random
verification code (its QR code, no personal data; `platform-server slips show CODE` looks it up) and
the kiosk's running number. Check-ins made before this migration have neither (NULL). Kiosks report
their receipt printer's paper (ok, near_end, out) in the heartbeat.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0040'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('check_ins', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slip_code', sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column('slip_serial', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_check_ins_slip_code'), ['slip_code'])
        batch_op.create_index('uq_check_ins_kiosk_slip_serial', ['kiosk_id', 'slip_serial'], unique=True)
    with op.batch_alter_table('kiosks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('printer_paper', sa.String(length=10), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('kiosks', schema=None) as batch_op:
        batch_op.drop_column('printer_paper')
    with op.batch_alter_table('check_ins', schema=None) as batch_op:
        batch_op.drop_index('uq_check_ins_kiosk_slip_serial')
        batch_op.drop_constraint(batch_op.f('uq_check_ins_slip_code'), type_='unique')
        batch_op.drop_column('slip_serial')
        batch_op.drop_column('slip_code')
