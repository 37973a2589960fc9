"""Console look-ups and desk actions: expert search (masked), staff annulment's refusals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from platform_server.errors import InvalidRequestError, NotFoundError
from platform_server.services import staff
from tests.unit.platform_server.support import seed

if TYPE_CHECKING:
    from pathlib import Path


def test_search_by_name_or_last_digits_shows_masked_numbers_only(tmp_path: Path) -> None:
    s = seed(f"sqlite:///{tmp_path / 'p.db'}", experts=5)
    by_name = staff.search_experts(s.new_uow(), s.batch_code, "专家3")
    assert [h.name for h in by_name] == ["专家3"]
    assert by_name[0].id_masked == s.ids[3][:4] + "*" * 10 + s.ids[3][-4:]
    by_digits = staff.search_experts(s.new_uow(), s.batch_code, s.ids[2][-4:])
    assert s.ids[2][-4:] in {h.id_masked[-4:] for h in by_digits}
    assert all(not h.checked_in for h in by_digits)
    assert staff.search_experts(s.new_uow(), s.batch_code, "  ") == []
    assert staff.search_experts(s.new_uow(), s.batch_code, "%") == []  # LIKE wildcards are literal
    with pytest.raises(InvalidRequestError, match="last 4 digits"):
        staff.search_experts(s.new_uow(), s.batch_code, s.ids[0][-8:])


def test_staff_annulment_needs_a_reason_and_an_existing_check_in(tmp_path: Path) -> None:
    s = seed(f"sqlite:///{tmp_path / 'p.db'}")
    with pytest.raises(InvalidRequestError, match="reason"):
        staff.annul_by_staff(s.new_uow(), s.ctx, "whatever", "   ", actor="person:x")
    with pytest.raises(NotFoundError):
        staff.annul_by_staff(s.new_uow(), s.ctx, "no-such-check-in", "专家要求", actor="person:x")
