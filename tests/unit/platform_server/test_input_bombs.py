"""Import bombs refused before anything is allocated or extracted, each with its own message.

Peak memory of each refusal against a normal import is measured by bench/input_bombs.py; here a
refusal must also come fast and small (a subprocess's peak RSS stays near a normal import's).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from platform_server.errors import ImportRefusedError
from platform_server.services import file_limits, imports, spreadsheets
from tests.unit.platform_server import bombs
from tests.unit.platform_server.support import FakeFaceVerifier, Seeded, many_ids

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[3]


def refusal(path: Path) -> str:
    with pytest.raises(ImportRefusedError) as raised:
        spreadsheets.read_table(path, spreadsheets.INVITATION_COLUMNS, spreadsheets.INVITATION_REQUIRED)
    return str(raised.value)


def test_one_cell_at_xfd2000_is_refused_naming_the_extent(tmp_path: Path) -> None:
    path = bombs.xlsx(tmp_path / "bomb.xlsx", [bombs.HEADER], far_cell="XFD2000")
    assert path.stat().st_size < 10_000
    message = refusal(path)
    assert "A1:XFD2000" in message
    assert "32768000 cells" in message
    assert "5000000 cells" in message


@pytest.mark.parametrize(("reference", "quote"), [("XFD2000", b'"'), ("xfd2000", b"'"), ("A0999999999", b'"')])
def test_a_far_cell_without_a_declared_dimension_is_refused(tmp_path: Path, reference: str, quote: bytes) -> None:
    """No <dimension> to give it away, the reference spelt as XML allows (newline, single quotes)."""
    message = refusal(bombs.far_cell_without_dimension(tmp_path / "far.xlsx", reference, quote))
    assert "named by its cells" in message


def test_a_huge_declared_dimension_is_refused(tmp_path: Path) -> None:
    message = refusal(bombs.declared_dimension(tmp_path / "dimension.xlsx"))
    assert "A1:XFD1048576" in message
    assert "declared <dimension>" in message


def test_millions_of_cells_without_references_are_refused(tmp_path: Path) -> None:
    path = bombs.many_cells(tmp_path / "cells.xlsx")
    assert path.stat().st_size < 200_000
    message = refusal(path)
    assert "6000006 cells" in message or "cells without an A1 reference" in message


def test_a_wide_or_long_sheet_within_the_limits_is_measured_and_read(tmp_path: Path) -> None:
    """Past column Z the quick check hands over to the exact one, which lets a legitimate sheet through."""
    header = [*bombs.HEADER, *(f"备注{i}" for i in range(40))]
    ids = many_ids(30)
    rows = [header, *([v, f"专家{i}", "13900000000", "设计院", "市政", "", *["x"] * 40] for i, v in enumerate(ids))]
    path = bombs.xlsx(tmp_path / "wide.xlsx", rows)
    table = spreadsheets.read_table(path, spreadsheets.INVITATION_COLUMNS, spreadsheets.INVITATION_REQUIRED)
    assert len(table.rows) == 30


def test_a_csv_with_millions_of_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "commas.csv"
    path.write_bytes(("身份证号,姓名,手机号,工作单位,专业\n" + "," * 6_000_000).encode())
    assert "fields" in refusal(path)


def test_an_xlsx_with_thousands_of_parts_is_refused(tmp_path: Path) -> None:
    path = bombs.many_entries(tmp_path / "parts.xlsx", count=1_500)
    assert "1500 entries" in refusal(path)


# --- photo archives ------------------------------------------------------------------------------


def photo_refusal(seeded: Seeded, source: Path) -> str:
    with pytest.raises(ImportRefusedError) as raised:
        imports.import_photos(seeded.new_uow(), seeded.ctx, seeded.batch_code, source)
    return str(raised.value)


@pytest.fixture
def photo_seeded(tmp_path: Path) -> Seeded:
    from tests.unit.platform_server.support import seed  # noqa: PLC0415

    return seed(f"sqlite:///{tmp_path / 'p.db'}", verifier=FakeFaceVerifier())


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: bombs.many_entries(p, 20_000), "20000 entries"),
        (bombs.huge_total, "unpacks to more than 2048 MB"),
        (bombs.nested, "nested archives are not opened"),
        (bombs.traversal, "climbs out of the folder"),
        (lambda p: bombs.traversal(p, "/etc/110101199003071234.jpg"), "absolute path"),
        (lambda p: bombs.traversal(p, "C:\\photos\\110101199003071234.jpg"), "names a drive"),
        (lambda p: bombs.raw_zip(p, [bombs.zeros_entry("110101199003071234.jpg", 11 * 1024 * 1024)]), "11 MB"),
    ],
    ids=["many-entries", "huge-total", "nested", "dot-dot", "absolute", "drive", "one-too-big"],
)
def test_a_hostile_photo_zip_is_refused_from_its_directory(
    photo_seeded: Seeded, tmp_path: Path, make: Callable[[Path], Path], expected: str
) -> None:
    source = make(tmp_path / "photos.zip")
    assert source.stat().st_size < 5 * 1024 * 1024
    assert expected in photo_refusal(photo_seeded, source)


def test_a_photo_folder_with_a_link_outside_it_is_refused(photo_seeded: Seeded, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8 not for import")
    (folder / "110101199003071234.jpg").symlink_to(secret)
    assert "links outside" in photo_refusal(photo_seeded, folder)


def test_a_photo_folder_with_too_many_files_is_refused(
    photo_seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.jpg").write_bytes(b"x")
    monkeypatch.setattr(file_limits, "PHOTO_LIMITS", file_limits.ArchiveLimits(5, 10_000, 1_000))
    assert "more than 5 entries" in photo_refusal(photo_seeded, folder)


def test_a_lying_entry_count_is_refused_before_zipfile_reads_the_directory(tmp_path: Path) -> None:
    """The end record's directory size bounds what zipfile would build, whatever the count says."""
    path = bombs.many_entries(tmp_path / "lying.zip", count=3_000)
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = (1).to_bytes(2, "little") * 2  # claim one entry
    path.write_bytes(bytes(data))
    limits = file_limits.ArchiveLimits(max_entries=10, max_total_bytes=10**9, max_entry_bytes=10**6)
    with pytest.raises(ImportRefusedError, match="entries"):
        file_limits.open_zip(path, limits)


def test_a_normal_photo_zip_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "ok.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photos/110101199003071234.jpg", b"\xff\xd8 photo")
    with file_limits.open_zip(path, file_limits.PHOTO_LIMITS) as archive:
        file_limits.check_zip(archive, file_limits.PHOTO_LIMITS, path.name)


# --- memory: a refusal costs what a normal import costs ----------------------------------------

_PEAK = """
import sys
from pathlib import Path
from platform_server.errors import ImportRefusedError
from platform_server.services import spreadsheets
try:
    spreadsheets.read_table(Path(sys.argv[1]), spreadsheets.INVITATION_COLUMNS, spreadsheets.INVITATION_REQUIRED)
except ImportRefusedError:
    pass
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent that spawned this process.
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_kib(path: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, check=True, cwd=ROOT, timeout=120
    )
    return int(done.stdout.split()[-1])


def test_refusing_the_xfd2000_bomb_takes_no_more_memory_than_a_normal_import(tmp_path: Path) -> None:
    normal = bombs.xlsx(
        tmp_path / "normal.xlsx", [bombs.HEADER, *([v, "专家", "13900000000", "院", "市政", ""] for v in many_ids(20))]
    )
    bomb = bombs.xlsx(tmp_path / "bomb.xlsx", [bombs.HEADER], far_cell="XFD2000")
    baseline, refused = peak_kib(normal), peak_kib(bomb)
    assert refused < baseline + 20 * 1024, (baseline, refused)  # before the check: about 1 300 000 KiB
