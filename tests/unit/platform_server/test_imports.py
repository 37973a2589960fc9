"""Invitation, room and band imports: all rows or none, every bad row named, every bad file refused."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from personal_data import id_number
from personal_data.crypto import open_records
from platform_server.db.models import Expert
from platform_server.errors import ImportRefusedError
from platform_server.services import batches, imports, roster, spreadsheets
from tests.unit.platform_server.support import FakeFaceVerifier, Seeded, face_image, many_ids, seed

if TYPE_CHECKING:
    from collections.abc import Sequence

TEST_KEY_TEXT = "cli test data key, never used in production"


HEADER: list[object] = ["身份证号", "姓名", "手机号", "工作单位", "专业", "房间号"]


def write_csv(path: Path, rows: Sequence[Sequence[object]], encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, rows: Sequence[Sequence[object]]) -> Path:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    for row in rows:
        sheet.append(list(row))
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


def test_many_chunks_all_land_and_known_experts_are_refreshed_without_stale_copies(
    seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spreadsheets, "CHUNK_ROWS", 40)  # several chunks and pages on a small file
    monkeypatch.setattr(spreadsheets, "PAGE_SLOTS", 16)
    ids = many_ids(130, seed=15)
    path = write_csv(tmp_path / "big.csv", rows_for(ids))
    report = imports.import_invitations(seeded.new_uow(), seeded.ctx, seeded.batch_code, path)
    assert report.rows == len(ids)
    with seeded.new_uow() as uow:
        found = roster.expert_ids_by_hash(uow, roster.hashes_of(seeded.ctx.data_key, ids))
        assert len(found) == len(ids)
        pages_before = uow.execute(sa.text("SELECT count(*) FROM pii_pages")).scalar_one()
        assert pages_before >= 130 // 16
    # The same experts invited to another batch with new phones: rows refreshed, old records blanked.
    with seeded.new_uow() as uow:
        batches.create_batch(uow, seeded.ctx, batches.BatchSpec(code="B2", name="二批", hotel_code="H1"), actor="t")
    again = write_csv(
        tmp_path / "again.csv",
        [HEADER] + [[v, f"专家{i}", f"1880000{i:04d}", "院", "市政", ""] for i, v in enumerate(ids[:20])],
    )
    assert imports.import_invitations(seeded.new_uow(), seeded.ctx, "B2", again).rows == 20
    with seeded.new_uow() as uow:
        rows = uow.execute(
            sa.select(Expert.id_hash, Expert.pii_page_id, Expert.pii_slot, Expert.pii_encrypted).where(
                Expert.id_hash.in_(roster.hashes_of(seeded.ctx.data_key, ids[:20]))
            )
        ).all()
        stored = [roster.StoredPii(*r) for r in rows]
        numbers = dict(
            zip([r[0] for r in rows], roster.personal_numbers(uow, seeded.ctx.data_key, stored), strict=True)
        )
        for i, v in enumerate(ids[:20]):
            assert numbers[roster.hashes_of(seeded.ctx.data_key, [v])[0]] == (v, f"1880000{i:04d}")
        # No page still holds an old phone of these experts.
        plain = b"".join(
            b"\x1e".join(open_records(seeded.ctx.data_key, blob, spreadsheets.PII_PAGE_AAD))
            for (blob,) in uow.execute(sa.text("SELECT sealed FROM pii_pages")).all()
        )
        assert all(f"1390000{i:04d}".encode() not in plain for i in range(20))
        assert f"1390000{25:04d}".encode() in plain  # untouched experts keep theirs


def test_first_import_into_an_empty_platform_still_refuses_duplicates(tmp_path: Path) -> None:
    s = seed(f"sqlite:///{tmp_path / 'empty.db'}", experts=0)
    ids = many_ids(5, seed=21)
    rows: list[list[object]] = [*rows_for(ids), [ids[1], "重复", "13900000099", "院", "市政", ""]]
    with pytest.raises(ImportRefusedError) as info:
        imports.import_invitations(s.new_uow(), s.ctx, s.batch_code, write_csv(tmp_path / "d.csv", rows))
    assert [p.row for p in info.value.problems] == [7]
    assert invited_count(s) == 0


def test_cli_import_reads_in_a_forked_process_and_refuses_bad_files(tmp_path: Path) -> None:
    env = {**os.environ, "PLATFORM_DB_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PLATFORM_DATA_KEY": TEST_KEY_TEXT}
    cli = [str(Path(sys.executable).parent / "platform-server")]
    subprocess.run([*cli, "batch", "create", "C1", "--name", "批次"], env=env, check=True, capture_output=True)
    ids = many_ids(300, seed=22)
    good = write_xlsx(tmp_path / "good.xlsx", rows_for(ids))
    done = subprocess.run(
        [*cli, "invitations", "import", str(good), "--batch", "C1"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "imported 300 invitations" in done.stdout
    bad_rows: list[list[object]] = [
        *rows_for(many_ids(3, seed=23)),
        [ids[0], "甲", "13900000001", "院", "市政", ""],
        ["110105196503150124", "乙", "1", "院", "市政", ""],
    ]
    bad = write_xlsx(tmp_path / "bad.xlsx", bad_rows)
    refused = subprocess.run(
        [*cli, "invitations", "import", str(bad), "--batch", "C1"], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 3
    assert "第5行" in refused.stderr  # already invited (found by the database)
    # A file the reader refuses at once (it may have left before the writer sends it the key).
    for name, content in (("empty.xlsx", b""), ("text.xlsx", b"not a workbook"), ("h.csv", "身份证号\n".encode())):
        (tmp_path / name).write_bytes(content)
        early = subprocess.run(
            [*cli, "invitations", "import", str(tmp_path / name), "--batch", "C1"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert early.returncode == 3, (name, early.returncode, early.stderr)
        assert " / " in early.stderr
        assert "Traceback" not in early.stderr
    assert "第6行" in refused.stderr  # bad ID and phone (found by the reader)
    assert "Traceback" not in refused.stderr
    engine = sa.create_engine(env["PLATFORM_DB_URL"])
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM invitations")).scalar_one() == 300
    engine.dispose()


def test_rooms_a_band_cannot_carry_and_reserved_tag_ids_are_refused(seeded: Seeded, tmp_path: Path) -> None:
    rooms = write_csv(tmp_path / "rooms.csv", [["房间号"], ["1701"], ["ROOM-1234567"]])
    with pytest.raises(ImportRefusedError) as info:
        imports.import_rooms(seeded.new_uow(), seeded.ctx, seeded.batch_code, rooms)
    assert [p.row for p in info.value.problems] == [3]
    assert "wristband" in info.value.problems[0].message
    listed = rows_for(many_ids(2, seed=24))
    listed[2][5] = "A-123456789"
    with pytest.raises(ImportRefusedError) as info2:
        imports.import_invitations(
            seeded.new_uow(), seeded.ctx, seeded.batch_code, write_csv(tmp_path / "i.csv", listed)
        )
    assert [p.row for p in info2.value.problems] == [3]
    assert "wristband" in info2.value.problems[0].message
    bands = write_csv(
        tmp_path / "bands.csv",
        [
            ["rfid_uid", "uwb_tag_id"],
            ["04AABBCCDDEE31", "0000"],
            ["04AABBCCDDEE32", "ffff"],
            ["04AABBCCDDEE33", "0B01"],
        ],
    )
    with pytest.raises(ImportRefusedError) as info3:
        imports.import_bands(seeded.new_uow(), seeded.ctx, bands)
    assert [p.row for p in info3.value.problems] == [2, 3]
    assert all("reserved" in p.message for p in info3.value.problems)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789Xx ", min_size=15, max_size=20),
        st.builds(
            lambda d, birth, tail: f"{d}{birth}{tail}",
            st.from_regex(r"[1-6][0-9]{5}", fullmatch=True),
            st.dates().map(lambda d: d.strftime("%Y%m%d")),
            st.from_regex(r"[0-9]{3}[0-9Xx]", fullmatch=True),
        ),
        st.text(max_size=20),
    )
)
def test_fast_id_check_agrees_with_the_reference_validator(text: str) -> None:
    value, reason = spreadsheets._id_problem(text, id_number.BirthDates())
    expected = _reference(text)
    if not text.strip():
        assert value == ""
        assert "missing" in reason
    else:
        assert (value, reason) == expected


def _reference(text: str) -> tuple[str, str]:
    try:
        return id_number.validate(text), ""
    except id_number.InvalidIdNumberError as err:
        return "", str(err)


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


def test_cli_verbose_prints_each_phase_and_no_personal_numbers(tmp_path: Path) -> None:
    env = {**os.environ, "PLATFORM_DB_URL": f"sqlite:///{tmp_path / 'v.db'}", "PLATFORM_DATA_KEY": TEST_KEY_TEXT}
    cli = [str(Path(sys.executable).parent / "platform-server")]
    subprocess.run([*cli, "batch", "create", "V1", "--name", "批次"], env=env, check=True, capture_output=True)
    rows = rows_for(many_ids(50, seed=24))
    path = write_xlsx(tmp_path / "v.xlsx", rows)
    done = subprocess.run(
        [*cli, "invitations", "import", str(path), "--batch", "V1", "--verbose"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "imported 50 invitations" in done.stdout
    phases = [m.group(1) for m in re.finditer(r"^ +[\d.]+ +\w+ +\+ *[\d.]+ +(.+)$", done.stderr, re.MULTILINE)]
    for phase in ("reader process forked", "parsed 50 rows", "database code imported", "committed", "database closed"):
        assert phase in phases, done.stderr
    assert phases.index("parsed 50 rows") < phases.index("committed")
    for row in rows[1:]:
        assert str(row[0]) not in done.stderr
        assert str(row[2]) not in done.stderr
