"""Exports never carry a formula: text that starts like one comes out as text (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from platform_server.db.models import Expert
from platform_server.services import check_in, exports, identify
from tests.unit.platform_server.support import Seeded, luhn_pan, signature_png

if TYPE_CHECKING:
    from pathlib import Path

NAME = '=HYPERLINK("http://x","y")'
ORGANISATION = "@SUM(1+1)*cmd|' /C calc'!A0"


def _check_in_with_hostile_text(seeded: Seeded) -> None:
    """The first expert renamed as an attacker would write them on an invitation list, then checked in."""
    s = seeded
    with s.new_uow() as uow:
        uow.execute(sa.update(Expert).values(name=NAME, organisation=ORGANISATION).where(Expert.name == "专家0"))
        uow.commit()
    found = identify.identify(
        s.new_uow(),
        s.ctx,
        identify.IdentifyCommand(request_id="r1", kiosk_id="K1", batch_code=s.batch_code, id_number=s.ids[0]),
    )
    assert found.verified, found.refusal
    done = check_in.complete_check_in(
        s.new_uow(),
        s.ctx,
        check_in.CompleteCommand(
            request_id="r2",
            kiosk_id="K1",
            identification_token=found.identification_token,
            use_card_on_file=False,
            new_card_pan=luhn_pan(),
            card_source="CHIP",
            signature_png=signature_png(),
            band_uid=s.bands[0][0],
        ),
    )
    assert done.refusal is None


def _csv_rows(path: Path) -> list[list[str]]:
    """The rows as a spreadsheet program reads them (carriage returns inside quotes kept)."""
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


@pytest.mark.parametrize("kind", ["check_ins", "fees"])
def test_a_formula_name_is_plain_text_in_the_xlsx_export(seeded: Seeded, tmp_path: Path, kind: str) -> None:
    _check_in_with_hostile_text(seeded)
    out = tmp_path / f"{kind}.xlsx"
    if kind == "check_ins":
        exports.write_table(
            out, "xlsx", exports.CHECK_IN_HEADER, exports.check_in_rows(seeded.new_uow(), seeded.ctx, seeded.batch_code)
        )
    else:
        rows = exports.fee_rows(seeded.new_uow(), seeded.ctx, seeded.batch_code, full_numbers=True)
        exports.write_table(out, "xlsx", exports.FEE_HEADER, rows, private=True)
    sheet = load_workbook(out).active
    assert sheet is not None
    cells = [c for row in sheet.iter_rows() for c in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]  # no formula anywhere
    name = sheet.cell(row=2, column=2 if kind == "check_ins" else 1)
    assert name.value == NAME  # the name exactly as given, as a plain string
    assert name.data_type == "s"
    assert name.quotePrefix  # Excel shows it as text and keeps it text when edited
    if kind == "fees":
        organisation = sheet.cell(row=2, column=3)
        assert organisation.value == ORGANISATION
        assert organisation.data_type == "s"
        assert sheet.cell(row=2, column=5).value == luhn_pan()  # a card number is text, unprefixed


def test_a_formula_name_is_prefixed_in_the_csv_export(seeded: Seeded, tmp_path: Path) -> None:
    _check_in_with_hostile_text(seeded)
    out = tmp_path / "fees.csv"
    rows = exports.fee_rows(seeded.new_uow(), seeded.ctx, seeded.batch_code, full_numbers=False)
    exports.write_table(out, "csv", exports.FEE_HEADER, rows)
    read = _csv_rows(out)
    assert read[1][0] == "'" + NAME
    assert read[1][2] == "'" + ORGANISATION


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_start_is_neutralised_and_numbers_stay_numbers(tmp_path: Path, start: str) -> None:
    header = ["text", "amount", "count", "flag"]
    rows = [[start + "1+1", -12.5, -3, True]]
    exports.write_table(tmp_path / "t.csv", "csv", header, rows)
    read = _csv_rows(tmp_path / "t.csv")[1]
    assert read[0] == "'" + start + "1+1"
    assert read[1:3] == ["-12.5", "-3"]  # data, not text: no prefix
    exports.write_table(tmp_path / "t.xlsx", "xlsx", header, rows)
    sheet = load_workbook(tmp_path / "t.xlsx").active
    assert sheet is not None
    text_cell, amount, count, flag = (sheet.cell(row=2, column=c) for c in range(1, 5))
    # XML turns a bare carriage return into a line feed when the file is read back: still text.
    assert text_cell.value == ("\n" if start == "\r" else start) + "1+1"
    assert text_cell.data_type == "s"
    assert text_cell.quotePrefix
    assert (amount.value, amount.data_type) == (-12.5, "n")
    assert (count.value, count.data_type) == (-3, "n")
    assert flag.value is True


def test_ordinary_text_is_left_alone(tmp_path: Path) -> None:
    exports.write_table(tmp_path / "t.csv", "csv", ["name"], [["张三"], ["O'Neil"]])
    assert (tmp_path / "t.csv").read_text(encoding="utf-8-sig").splitlines()[1:] == ["张三", "O'Neil"]
    exports.write_table(tmp_path / "t.xlsx", "xlsx", ["name"], [["张三"]])
    sheet = load_workbook(tmp_path / "t.xlsx").active
    assert sheet is not None
    assert sheet.cell(row=2, column=1).value == "张三"
    assert not sheet.cell(row=2, column=1).quotePrefix
