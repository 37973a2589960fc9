"""sealed pages of personal numbers for bulk imports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Experts imported in bulk keep their ID and phone in `pii_pages` (one SM4-GCM envelope per 256 experts)
and point to their record by (pii_page_id, pii_slot); rows from before keep `pii_encrypted`, now
nullable. No data moves: both forms are read (services.roster.personal_numbers).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from platform_server.db.models import UtcDateTime

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pii_pages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.Column('records', sa.Integer(), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pii_pages'))
    )
    with op.batch_alter_table('experts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pii_page_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('pii_slot', sa.Integer(), nullable=True))
        batch_op.alter_column('pii_encrypted', existing_type=sa.LargeBinary(), nullable=True)
        batch_op.create_foreign_key(batch_op.f('fk_experts_pii_page_id_pii_pages'), 'pii_pages', ['pii_page_id'], ['id'])


def downgrade() -> None:
    # Going back needs every expert's personal numbers in its own blob again: refuse while pages hold any.
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM experts WHERE pii_page_id IS NOT NULL")).scalar_one():
        raise RuntimeError("experts' personal numbers are in sealed pages; downgrading would lose them")
    with op.batch_alter_table('experts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_experts_pii_page_id_pii_pages'), type_='foreignkey')
        batch_op.alter_column('pii_encrypted', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('pii_slot')
        batch_op.drop_column('pii_page_id')
    op.drop_table('pii_pages')
