"""reference photos: on SQLite, the face encoding stored before the photo in each row

Revision ID: 0110
Revises: 0100
Create Date: 2026-12-07

A face identify reads the expert's reference encodings (about 1 KB each) from reference_photos and
extra_reference_photos. SQLite stores a row's columns in order, and a photo of a few hundred KB spills
over a chain of overflow pages; with the photo first, reading the encoding behind it walks that whole
chain, page by page, on every identify (about 0.1-0.2 ms of the serving process's CPU for a 150-300 KB
photo, measured in docs/performance.md). With the encoding first it is read from the row's first
page. The tables are rebuilt with the columns in the new order (SQLite cannot move a column in
place); nothing else changes. The rebuild copies every photo once, in one transaction: 2 000 photos
of 250 KB took 15 s here; run `platform-server db upgrade` outside check-in hours, with room on the
disk for a second copy of the photos. PostgreSQL keeps such a photo out of line (TOAST), so reading the
encoding never touches it there: its tables are left as they are.
"""

from __future__ import annotations

from alembic import op

revision = "0110"
down_revision = "0100"
branch_labels = None
depends_on = None

_TABLES = ("reference_photos", "extra_reference_photos")


def _put_first(first: str, second: str) -> None:
    """Rebuild both tables (SQLite only) with column `first` before column `second`."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in _TABLES:
        with op.batch_alter_table(table, recreate="always", partial_reordering=[(first, second)]):
            pass


def upgrade() -> None:
    _put_first("encoding_encrypted", "image_encrypted")


def downgrade() -> None:
    _put_first("image_encrypted", "encoding_encrypted")
