"""uwb_deliveries: an index on (tag_id, id), for "is there a newer row for this tag?"

Revision ID: 0100
Revises: 0090
Create Date: 2026-12-06

Before sending a row the UWB worker checks that no newer row exists for its tag (an older write
must never land after a newer one). Without an index on the tag, that check read every row newer
than the one checked: cheap while the outbox's pending rows are the newest, but after a gateway
outage, with thousands of rows waiting, each round's check read the waiting backlog once per row it
checked (on SQLite half the worker's time went to it while the backlog drained). With the index it
is one short index range per row.
"""

from __future__ import annotations

from alembic import op

revision = "0100"
down_revision = "0090"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_uwb_deliveries_tag_id_id", "uwb_deliveries", ["tag_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_uwb_deliveries_tag_id_id", table_name="uwb_deliveries")
