"""Invitation imports on SQLite and PostgreSQL: several slices, rooms, re-imports, refusals leave nothing."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from personal_data.crypto import open_records
from platform_server.errors import ImportRefusedError
from platform_server.services import batches, imports, roster, spreadsheets
from tests.unit.platform_server.support import Seeded, many_ids, seed

if TYPE_CHECKING:
    from pathlib import Path

HEADER = ["身份证号", "姓名", "手机号", "工作单位", "专业", "房间号"]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([HEADER, *rows])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def counts(s: Seeded) -> tuple[int, int, int]:
    with s.new_uow() as uow:
        return tuple(  # type: ignore[return-value]
            int(uow.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("experts", "invitations", "pii_pages")
        )


def numbers_on_file(s: Seeded, ids: list[str]) -> dict[str, tuple[str, str]]:
    with s.new_uow() as uow:
        rows = uow.execute(
            sa.text("SELECT id_hash, pii_page_id, pii_slot, pii_encrypted FROM experts WHERE id_hash IN :h").bindparams(
                sa.bindparam("h", expanding=True)
            ),
            {"h": roster.hashes_of(s.ctx.data_key, ids)},
        ).all()
        found = roster.personal_numbers(uow, s.ctx.data_key, [roster.StoredPii(*r) for r in rows])
    by_hash = dict(zip([r[0] for r in rows], found, strict=True))
    return {v: by_hash[h] for v, h in zip(ids, roster.hashes_of(s.ctx.data_key, ids), strict=True)}


def test_slices_rooms_reimports_and_refusals(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spreadsheets, "CHUNK_ROWS", 50)  # four slices
    monkeypatch.setattr(spreadsheets, "PAGE_SLOTS", 16)  # several pages per slice
    s = seed(db_url, experts=3, rooms=4)
    before = counts(s)
    ids = many_ids(170, seed=41)
    rows = [[v, f"专家{i}", f"1390000{i:04d}", "设计院", "市政", ""] for i, v in enumerate(ids)]
    rows[7][5], rows[120][5] = s.rooms[0], s.rooms[1]  # pre-assigned rooms, in two different slices
    report = imports.import_invitations(s.new_uow(), s.ctx, s.batch_code, write_csv(tmp_path / "a.csv", rows))
    assert report.rows == 170
    experts, invitations, pages = counts(s)
    assert (experts, invitations) == (before[0] + 170, before[1] + 170)
    assert pages >= before[2] + 170 // 16
    assert numbers_on_file(s, ids[:5] + ids[-5:]) == {
        v: (v, f"1390000{i:04d}") for i, v in enumerate(ids) if i < 5 or i >= 165
    }
    with s.new_uow() as uow:
        assigned = uow.execute(
            sa.text("SELECT r.number FROM invitations i JOIN rooms r ON r.id = i.room_id ORDER BY r.number")
        ).scalars()
        assert list(assigned) == [s.rooms[0], s.rooms[1]]

    # The same experts in a second batch with new phones: rows refreshed, their old records blanked.
    with s.new_uow() as uow:
        batches.create_batch(uow, s.ctx, batches.BatchSpec(code="B2", name="二批", hotel_code="H2"), actor="t")
    again = [[v, f"专家{i}", f"1880000{i:04d}", "院", "市政", ""] for i, v in enumerate(ids[:60])]
    assert imports.import_invitations(s.new_uow(), s.ctx, "B2", write_csv(tmp_path / "b.csv", again)).rows == 60
    assert numbers_on_file(s, ids[:60:7]) == {v: (v, f"1880000{i:04d}") for i, v in enumerate(ids[:60]) if i % 7 == 0}
    with s.new_uow() as uow:
        plain = b"\x1e".join(
            b"\x1e".join(open_records(s.ctx.data_key, bytes(blob), spreadsheets.PII_PAGE_AAD))
            for blob in uow.execute(sa.text("SELECT sealed FROM pii_pages")).scalars()
        )
    assert all(f"1390000{i:04d}".encode() not in plain for i in range(60))
    assert f"1390000{100:04d}".encode() in plain

    # Refused: a row already invited (found by the database) and a bad phone (found by the reader).
    settled = counts(s)
    bad = [[v, "新", "13900009999", "院", "市政", ""] for v in many_ids(80, seed=42)]
    bad[10][0] = ids[3]  # already invited to B2
    bad[70][2] = "phone?"
    with pytest.raises(ImportRefusedError) as refused:
        imports.import_invitations(s.new_uow(), s.ctx, "B2", write_csv(tmp_path / "c.csv", bad))
    assert [p.row for p in refused.value.problems] == [12, 72]
    assert counts(s) == settled

    # Ids taken by the import stay taken: the ordinary paths insert after them.
    with s.new_uow() as uow:
        roster.write_invitations(
            uow,
            s.ctx,
            "B2",
            roster.prepare(
                s.ctx.data_key, [roster.InvitationRow(many_ids(1, seed=43)[0], "后", "13900000001", "院", "市政")]
            ),
        )
        uow.commit()
    assert counts(s)[:2] == (settled[0] + 1, settled[1] + 1)
