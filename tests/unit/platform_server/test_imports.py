"""Invitation, room and band imports: all rows or none, every bad row named, every bad file refused."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from platform_server.errors import ImportRefusedError
from platform_server.services import imports, roster, spreadsheets
from tests.unit.platform_server.support import FakeFaceVerifier, Seeded, face_image, many_ids

if TYPE_CHECKING:
    from pathlib import Path

HEADER = ["身份证号", "姓名", "手机号", "工作单位", "专业", "房间号"]


def write_csv(path: Path, rows: list[list[object]], encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def invited_count(s: Seeded) -> int:
    with s.new_uow() as uow:
        return int(uow.execute(sa.text("SELECT count(*) FROM invitations")).scalar_one())


def rows_for(ids: list[str]) -> list[list[object]]:
    return [HEADER] + [[v, f"专家{i}", f"1390000{i:04d}", "设计院", "市政", ""] for i, v in enumerate(ids)]


@pytest.mark.parametrize(
    ("suffix", "encoding"), [(".csv", "utf-8"), (".csv", "utf-8-sig"), (".csv", "gbk"), (".xlsx", None)]
)
def test_good_file_imports_every_row(seeded: Seeded, tmp_path: Path, suffix: str, encoding: str | None) -> None:
    ids = many_ids(40, seed=11)
    path = tmp_path / f"list{suffix}"
    if suffix == ".csv":
        write_csv(path, rows_for(ids), encoding or "utf-8")
    else:
        write_xlsx(path, rows_for(ids))
    before = invited_count(seeded)
    report = imports.import_invitations(seeded.new_uow(), seeded.ctx, seeded.batch_code, path)
    assert report.rows == 40
    assert invited_count(seeded) == before + 40


def test_bad_rows_are_all_named_and_nothing_is_written(seeded: Seeded, tmp_path: Path) -> None:
    ids = many_ids(10, seed=12)
    rows = rows_for(ids)
    rows[2][0] = ids[0]  # duplicate of row 2 (sheet row 3)
    rows[3][0] = ids[3][:-1] + ("0" if ids[3][-1] != "0" else "1")  # bad check digit
    rows[4][1] = ""  # no name
    rows[5][0] = seeded.ids[0]  # already invited to the batch
    rows[6][5] = "9999"  # room not in the batch
    rows[7][2] = "phone?"
    path = write_xlsx(tmp_path / "bad.xlsx", rows)
    before = invited_count(seeded)
    with pytest.raises(ImportRefusedError) as info:
        imports.import_invitations(seeded.new_uow(), seeded.ctx, seeded.batch_code, path)
    by_row = {p.row: p.message for p in info.value.problems}
    assert sorted(by_row) == [3, 4, 5, 6, 7, 8]
    assert "row 2" in by_row[3]
    assert "check digit" in by_row[4]
    assert "name missing" in by_row[5]
    assert "already invited" in by_row[6]
    assert "not in the batch" in by_row[7]
    assert "phone" in by_row[8]
    assert "第3行" in str(info.value)
    assert invited_count(seeded) == before


def test_numeric_id_cells_from_excel_are_explained(seeded: Seeded, tmp_path: Path) -> None:
    rows = rows_for(many_ids(2, seed=13))
    rows[1][0] = 110105196503150123.0
    path = write_xlsx(tmp_path / "numeric.xlsx", rows)
    with pytest.raises(ImportRefusedError) as info:
        imports.import_invitations(seeded.new_uow(), seeded.ctx, seeded.batch_code, path)
    assert "format the column as text" in info.value.problems[0].message


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty": tmp_path / "empty.xlsx",
        "not_a_workbook": tmp_path / "fake.xlsx",
        "truncated_zip": tmp_path / "truncated.xlsx",
        "wrong_type": tmp_path / "list.txt",
        "missing_columns": tmp_path / "cols.csv",
        "binary_csv": tmp_path / "binary.csv",
        "undecodable_csv": tmp_path / "latin.csv",
        "header_only": tmp_path / "header.csv",
        "workbook_named_csv": tmp_path / "book.csv",
    }
    files["empty"].write_bytes(b"")
    files["not_a_workbook"].write_bytes(b"this is not a workbook at all")
    good = write_xlsx(tmp_path / "good.xlsx", rows_for(many_ids(3, seed=14)))
    files["truncated_zip"].write_bytes(good.read_bytes()[:300])
    files["wrong_type"].write_text("x", encoding="utf-8")
    write_csv(files["missing_columns"], [["姓名", "手机号"], ["张三", "13900000000"]])
    files["binary_csv"].write_bytes(b"\x00\x01\x02" * 100)
    files["undecodable_csv"].write_bytes(b"\xff\xfe\xfa\xfb" * 50)
    write_csv(files["header_only"], [HEADER])
    files["workbook_named_csv"].write_bytes(good.read_bytes())
    return files


def test_each_kind_of_bad_file_is_refused_quickly(seeded: Seeded, tmp_path: Path) -> None:
    timings = {}
    for kind, path in _bad_files(tmp_path).items():
        started = time.perf_counter()
        with pytest.raises(ImportRefusedError) as info:
            imports.import_invitations(seeded.new_uow(), seeded.ctx, seeded.batch_code, path)
        timings[kind] = time.perf_counter() - started
        assert str(info.value)
        assert " / " in str(info.value)  # Chinese and English
    print("refusal times (ms):", {k: round(v * 1000, 1) for k, v in timings.items()})
    assert invited_count(seeded) == len(seeded.ids)


def test_worker_process_path_matches(seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roster, "MIN_WORKER_CPUS", 2)  # exercise the worker processes on any machine
    ids = many_ids(roster.PARALLEL_THRESHOLD + 100, seed=15)
    path = write_csv(tmp_path / "big.csv", rows_for(ids))
    report = imports.import_invitations(seeded.new_uow(), seeded.ctx, seeded.batch_code, path)
    assert report.rows == len(ids)
    with seeded.new_uow() as uow:
        found = roster.expert_ids_by_hash(uow, roster.hashes_of(seeded.ctx.data_key, ids[:50] + ids[-50:]))
    assert len(found) == 100


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cells=st.lists(
        st.lists(
            st.text(alphabet=st.characters(codec="gbk", exclude_categories=("Cs", "Cc")), max_size=12),
            min_size=2,
            max_size=2,
        ),
        min_size=1,
        max_size=8,
    ),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gbk"]),
)
def test_csv_reader_round_trips_any_text(tmp_path: Path, cells: list[list[str]], encoding: str) -> None:
    path = write_csv(tmp_path / "t.csv", [["rfid_uid", "uwb_tag_id"], *cells], encoding)
    table = spreadsheets.read_table(path, imports.BAND_COLUMNS, ("rfid_uid", "uwb_tag_id"))
    assert table.columns == ["rfid_uid", "uwb_tag_id"]
    expected = [[c.strip() for c in row] for row in cells]
    got = [[str(c).strip() for c in row] for row in table.rows]
    # csv drops rows that are entirely empty strings written as a blank line
    assert [r for r in got if any(r)] == [r for r in expected if any(r)]


def test_rooms_and_bands_imports(seeded: Seeded, tmp_path: Path) -> None:
    rooms = write_csv(tmp_path / "rooms.csv", [["房间号"], ["1501"], ["1502"]])
    assert imports.import_rooms(seeded.new_uow(), seeded.ctx, seeded.batch_code, rooms).rows == 2
    dup = write_csv(tmp_path / "dup.csv", [["房间号"], ["1601"], ["1601"], [seeded.rooms[0]]])
    with pytest.raises(ImportRefusedError) as info:
        imports.import_rooms(seeded.new_uow(), seeded.ctx, seeded.batch_code, dup)
    assert [p.row for p in info.value.problems] == [3, 4]
    bands = write_xlsx(
        tmp_path / "bands.xlsx", [["rfid_uid", "uwb_tag_id"], ["04:AA:BB:CC:DD:EE:01", "0A01"], ["04AABBCCDDEE02", 102]]
    )
    assert imports.import_bands(seeded.new_uow(), seeded.ctx, bands).rows == 2
    bad = write_csv(
        tmp_path / "badbands.csv", [["rfid_uid", "uwb_tag_id"], ["XYZ", "0001"], [seeded.bands[0][0], "FFFF"]]
    )
    with pytest.raises(ImportRefusedError) as info2:
        imports.import_bands(seeded.new_uow(), seeded.ctx, bad)
    assert sorted(p.row for p in info2.value.problems) == [2, 3]


def test_photos_from_zip_all_or_nothing(seeded: Seeded, tmp_path: Path, verifier: FakeFaceVerifier) -> None:
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{seeded.ids[0]}.jpg", face_image("a"))
        z.writestr(f"{seeded.ids[1]}.png", b"NOFACE....")
        z.writestr("not-an-id.jpg", face_image("c"))
    with pytest.raises(ImportRefusedError) as info:
        imports.import_photos(seeded.new_uow(), seeded.ctx, seeded.batch_code, archive)
    assert len(info.value.problems) == 2
    assert seeded.ids[1] not in str(info.value)  # the ID is masked in the refusal
    with seeded.new_uow() as uow:
        assert uow.execute(sa.text("SELECT count(*) FROM reference_photos")).scalar_one() == 0
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / f"{seeded.ids[0]}.jpg").write_bytes(face_image("a"))
    assert imports.import_photos(seeded.new_uow(), seeded.ctx, seeded.batch_code, folder).rows == 1
