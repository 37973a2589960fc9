"""extra reference photos per expert

Revision ID: 0075
Revises: 0004
Create Date: 2026-12-04

Photo import takes several photos per ID number (ID_1.jpg, ID_2.jpg, ...): the first stays in
reference_photos, the others go here, encrypted like it; identify compares the captures with all.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from platform_server.db.models import UtcDateTime

revision = '0075'
down_revision = '0070'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('extra_reference_photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('expert_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('image_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('encoding_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('image_sha256', sa.String(length=64), nullable=False),
    sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['expert_id'], ['experts.id'], name=op.f('fk_extra_reference_photos_expert_id_experts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extra_reference_photos')),
    sa.UniqueConstraint('expert_id', 'position', name='uq_extra_reference_photos_expert_id_position')
    )
    with op.batch_alter_table('extra_reference_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extra_reference_photos_expert_id'), ['expert_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('extra_reference_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_extra_reference_photos_expert_id'))
    op.drop_table('extra_reference_photos')
