"""identification tokens are signed, not stored

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

IdentifyExpert now hands out an HMAC-signed token (services.identification_token) that CompleteCheckIn
verifies without a table, so `identifications` goes. Its rows lived at most identification_ttl_s
(10 minutes by default): a token issued before the upgrade is refused as IDENTIFICATION_EXPIRED and
the expert identifies again. Downgrading recreates the empty table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from platform_server.db.models import UtcDateTime

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('identifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identifications_invitation_id'))
    op.drop_table('identifications')


def downgrade() -> None:
    op.create_table('identifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('kiosk_id', sa.String(length=64), nullable=False),
    sa.Column('invitation_id', sa.Integer(), nullable=False),
    sa.Column('face_distance', sa.Double(), nullable=True),
    sa.Column('face_threshold', sa.Double(), nullable=True),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['invitation_id'], ['invitations.id'], name=op.f('fk_identifications_invitation_id_invitations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identifications')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_identifications_token_hash'))
    )
    with op.batch_alter_table('identifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identifications_invitation_id'), ['invitation_id'], unique=False)
