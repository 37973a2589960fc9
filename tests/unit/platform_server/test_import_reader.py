"""The invitation reader's fast paths agree with the row-by-row rules; staged chunks point at the right records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from personal_data import id_number
from personal_data.crypto import lookup_hash, open_records
from platform_server.services import spreadsheets
from platform_server.services.reader_process import import_file_in
from platform_server.services.spreadsheets import INVITATION_COLUMNS, InvitationChecker, Table
from tests.unit.platform_server.support import TEST_KEY, many_ids

HEADER = ["id_number", "name", "phone", "organisation", "specialty", "room"]
VALID = many_ids(40, seed=31)


def checker() -> InvitationChecker:
    columns = [next(k for k in INVITATION_COLUMNS if k == h) for h in HEADER]
    return InvitationChecker(Table(columns=columns, rows=[], first_row_number=2))


def _alter_id(value: str, how: int) -> Any:
    """A valid ID number made into the kinds of cell organisers produce, good and bad."""
    return [
        value,
        value[:-1] + ("0" if value[-1] != "0" else "1"),  # wrong check digit
        value[:10] + "13" + value[12:],  # month 13
        f" {value} ",  # spaces around
        value[:6] + " " + value[6:],  # a space inside
        value.lower(),  # a lower-case x (where there is one)
        float(value[:15]),  # Excel made it a number
        "",  # missing
        value[:17],  # too short
        "１" + value[1:],  # a full-width digit
        None,
    ][how]


# Mostly good cells, so slices with exactly one problem (the fast path's hardest case) come up often.
cells = st.tuples(
    st.integers(0, len(VALID) - 1),
    st.sampled_from([0] * 12 + list(range(11))),
    st.sampled_from(["张三"] * 6 + ["", "  李四 ", "名" * 101, 3.0]),
    st.sampled_from(["13900000000"] * 6 + ["+86 139-0000-0000", "phone?", "", 13900000000.0, "1"]),
    st.sampled_from(["设计院"] * 6 + ["", "院" * 201]),
    st.sampled_from(["给排水", " 造价 "]),
    st.sampled_from([""] * 8 + ["1201", "1202", "bad room!", "ROOM-1234567"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cells, min_size=1, max_size=12))
@example([(0, 0, "张三", "13900000000", "设计院", "给排水", "")] * 1)
def test_column_check_agrees_with_the_row_by_row_check(rows: list[tuple[Any, ...]]) -> None:
    sheet = [[_alter_id(VALID[i], how), *rest] for i, how, *rest in rows]
    fast = checker().check_columns(sheet, 2)
    slow_checker = checker()
    slow = slow_checker.check_rows(sheet, 2)
    if fast is not None:  # the fast path only ever accepts a slice the exact rules accept in full
        assert not slow_checker.problems
        assert fast.as_rows() == slow
    elif not slow_checker.problems:
        # Declining a good slice is allowed (the row-by-row check then runs), only for ID cells the
        # exact rules first normalise: spaces, or digits that are not ASCII.
        assert any(not (isinstance(row[0], str) and len(row[0]) == 18 and row[0].isascii()) for row in sheet)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789Xx ", min_size=17, max_size=19))
def test_whole_column_id_check_agrees_with_the_reference(text: str) -> None:
    joined = text * 3  # the same number three times: three rows of one column
    accepted = id_number.all_valid_normalised(joined, 3, id_number.BirthDates())
    assert accepted == (len(text) == 18 and text == text.upper() and id_number.is_valid(text))


def test_each_bad_position_is_found_among_many_rows() -> None:
    ids = many_ids(500, seed=32)
    assert id_number.all_valid_normalised("".join(ids), len(ids), id_number.BirthDates())
    for row in (0, 123, 499):
        bad = list(ids)
        bad[row] = bad[row][:-1] + ("0" if bad[row][-1] != "0" else "1")
        assert not id_number.all_valid_normalised("".join(bad), len(bad), id_number.BirthDates())


def test_repeats_across_slices_fall_back_and_are_named() -> None:
    c = checker()
    first = [[v, "甲", "13900000000", "院", "市政", ""] for v in VALID[:3]]
    again = [[VALID[1], "乙", "13900000001", "院", "市政", ""], [VALID[5], "丙", "13900000002", "院", "市政", ""]]
    assert len(c.check(first, 2)) == 3
    assert c.check_columns(again, 5) is None
    assert [r[1] for r in c.check(again, 5).as_rows()] == [VALID[5]]
    assert [(p.row, "row 3" in p.message) for p in c.problems] == [(5, True)]


def test_staged_rows_are_in_hash_order_and_point_at_their_own_records() -> None:
    rows = [[v, f"专家{i}", f"1390000{i:04d}", "院", "市政", ""] for i, v in enumerate(VALID[:37])]
    checked = checker().check(rows, 2)
    chunk = spreadsheets.prepare_chunk(TEST_KEY, checked)
    staged = chunk.rows()
    assert chunk.count == len(staged) == 37
    assert [r[0] for r in staged] == list(range(37))
    assert [r[2] for r in staged] == sorted(r[2] for r in staged)
    pages = [open_records(TEST_KEY, p, spreadsheets.PII_PAGE_AAD) for p in chunk.pages]
    for _n, row, id_hash, masked, page, slot, name, *_ in staged:
        i = row - 2  # sheet row 2 is the first data row
        id_value, phone = pages[page][slot].decode().split(spreadsheets.PII_SEPARATOR)
        assert (id_value, phone, name) == (VALID[i], f"1390000{i:04d}", f"专家{i}")
        assert lookup_hash(TEST_KEY, id_value) == id_hash
        assert masked == id_number.mask(id_value)
    assert b"1390000" not in chunk.staged  # phones only inside the sealed pages
    assert not any(v.encode() in chunk.staged for v in VALID[:37])  # ID numbers only sealed


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["invitations", "import", "a.xlsx", "--batch", "B1"], "a.xlsx"),
        (["invitations", "import", "--batch", "B1", "a.xlsx", "-v"], "a.xlsx"),
        (["--db", "sqlite:///x.db", "-c", "p.toml", "invitations", "import", "a.xlsx", "-b", "B1"], "a.xlsx"),
        (["--db=sqlite:///x.db", "invitations", "import", "--batch=B1", "a.xlsx"], "a.xlsx"),
        (["invitations", "import", "--help"], None),
        (["invitations", "import", "a.xlsx", "b.xlsx"], None),
        (["invitations", "template", "a.xlsx"], None),
        (["--verbose", "invitations", "import", "a.xlsx"], None),
        (["rooms", "import", "a.xlsx", "--batch", "B1"], None),
        ([], None),
    ],
)
def test_the_console_script_finds_the_file_before_typer_does(argv: list[str], expected: str | None) -> None:
    assert import_file_in(argv) == (Path(expected) if expected else None)
