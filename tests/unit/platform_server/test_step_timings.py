"""Where experts give up: the per-screen table computed from the kiosks' step events as the platform stores them."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from platform_server.db.models import Batch, Kiosk
from platform_server.errors import NotFoundError
from platform_server.services import batches, kiosks, step_timings
from tests.unit.platform_server.support import seed

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.platform_server.support import Seeded


def report(s: Seeded, kiosk_id: str, step: str, detail: str) -> None:
    kiosks.report_event(
        s.new_uow(),
        s.ctx,
        kiosk_id=kiosk_id,
        event="step",
        outcome=step,
        detail=detail,
        id_hint="",
        kiosk_time=None,
        request_id=str(uuid.uuid4()),
    )


def test_reached_abandoned_timed_out_median_and_p90(tmp_path: Path) -> None:
    s = seed(f"sqlite:///{tmp_path}/p.db")
    for seconds in range(1, 11):  # 1..10 s on the face screen: median 5 s, p90 9 s (nearest rank)
        report(s, "K1", "face", f"ms={seconds * 1000} end=next")
    report(s, "K2", "face", "ms=40000 end=cancelled")
    report(s, "K2", "id_card", "ms=75000 end=timeout")
    report(s, "K1", "id_card", "ms=2500 end=next")
    report(s, "K1", "signature", "garbled")  # an unreadable detail is skipped, not guessed
    kiosks.report_event(  # other kiosk events do not count
        s.new_uow(), s.ctx, kiosk_id="K1", event="cancelled", outcome="home", detail="", id_hint="", kiosk_time=None
    )
    table = step_timings.step_timings(s.new_uow(), "B2025")
    assert [row.step for row in table] == ["id_card", "face"]
    reading, face = table
    assert (reading.reached, reading.abandoned, reading.timed_out) == (2, 0, 1)
    assert (reading.median_s, reading.p90_s) == (2.5, 75.0)
    assert (face.reached, face.abandoned, face.timed_out) == (11, 1, 0)
    assert (face.median_s, face.p90_s) == (6.0, 10.0)
    assert face.title.startswith("拍照")


def test_only_kiosks_serving_the_batch_count(tmp_path: Path) -> None:
    s = seed(f"sqlite:///{tmp_path}/p.db")
    report(s, "K1", "id_card", "ms=1000 end=next")
    report(s, "K2", "id_card", "ms=1000 end=next")
    batches.create_batch(s.new_uow(), s.ctx, batches.BatchSpec(code="B2026", name="另一批"), actor="os:test")
    with s.uow.engine.begin() as c:  # K2 now serves the other batch
        other = c.execute(sa.select(Batch.id).where(Batch.code == "B2026")).scalar_one()
        c.execute(sa.update(Kiosk).where(Kiosk.kiosk_id == "K2").values(batch_id=other))
    assert [row.reached for row in step_timings.step_timings(s.new_uow(), "B2025")] == [1]
    with pytest.raises(NotFoundError):
        step_timings.step_timings(s.new_uow(), "NOPE")


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=50))
def test_percentile_is_a_member_and_ordered(values: list[float]) -> None:
    ordered = sorted(values)
    median = step_timings.percentile(ordered, 0.5)
    p90 = step_timings.percentile(ordered, 0.9)
    assert median in ordered
    assert p90 in ordered
    assert median is not None
    assert p90 is not None
    assert median <= p90
    assert step_timings.percentile([], 0.5) is None
