"""needs-staff cases; kiosks can be disabled, removed, pinned to a certificate and throttled

Revision ID: 0010
Revises: 0004
Create Date: 2026-12-04

`needs_staff_cases` holds what a person must look at (a handed-out band whose check-in cannot be
honoured, a band whose fate is unknown, a kiosk refusing many IDs in a row, ...), open until resolved
with a reason. Kiosks gain revocation (disabled_at, removed_at, the SHA-256 of their one accepted
client certificate) and a refusal streak with a throttle. Check-in events may name a case.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from platform_server.db.models import UtcDateTime

revision = '0010'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('needs_staff_cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('kiosk_id', sa.String(length=64), nullable=False),
    sa.Column('invitation_id', sa.Integer(), nullable=True),
    sa.Column('check_in_id', sa.Integer(), nullable=True),
    sa.Column('band_uid', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=160), nullable=True),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('resolved_at', UtcDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.CheckConstraint("state IN ('open', 'resolved')", name=op.f('ck_needs_staff_cases_state')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_needs_staff_cases_batch_id_batches')),
    sa.ForeignKeyConstraint(['check_in_id'], ['check_ins.id'], name=op.f('fk_needs_staff_cases_check_in_id_check_ins')),
    sa.ForeignKeyConstraint(['invitation_id'], ['invitations.id'], name=op.f('fk_needs_staff_cases_invitation_id_invitations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_needs_staff_cases')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_needs_staff_cases_dedupe_key')),
    sa.UniqueConstraint('public_id', name=op.f('uq_needs_staff_cases_public_id'))
    )
    with op.batch_alter_table('needs_staff_cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_needs_staff_cases_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index('ix_needs_staff_cases_state_id', ['state', 'id'], unique=False)
    with op.batch_alter_table('kiosks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled_at', UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('disabled_reason', sa.String(length=200), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('removed_at', UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cert_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('refusal_streak', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('throttled_until', UtcDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('check_in_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('needs_staff_case_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_check_in_events_needs_staff_case_id_needs_staff_cases'),
            'needs_staff_cases', ['needs_staff_case_id'], ['id'],
        )


def downgrade() -> None:
    with op.batch_alter_table('check_in_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_check_in_events_needs_staff_case_id_needs_staff_cases'), type_='foreignkey')
        batch_op.drop_column('needs_staff_case_id')
    with op.batch_alter_table('kiosks', schema=None) as batch_op:
        for column in ('throttled_until', 'refusal_streak', 'cert_sha256', 'removed_at', 'disabled_reason', 'disabled_at'):
            batch_op.drop_column(column)
    with op.batch_alter_table('needs_staff_cases', schema=None) as batch_op:
        batch_op.drop_index('ix_needs_staff_cases_state_id')
        batch_op.drop_index(batch_op.f('ix_needs_staff_cases_batch_id'))
    op.drop_table('needs_staff_cases')
