"""Two things the flow does before it is asked: the band fetched while the expert signs, and an ID card
placed at the home screen starting the check-in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from checkin.app import flow_settings
from checkin.config import hash_pin, load_config
from checkin.flow.machine import Step
from checkin.flow.ports import DeviceFaultError
from tests.unit.kiosk.fakes import FakeIdentity, Kiosk, completed, identified, make_kiosk, nothing
from tests.unit.kiosk.test_flow import signed

if TYPE_CHECKING:
    from pathlib import Path


class FakeBandFetch:
    """BandFetchPort: records the calls, in order, into a log shared with the dispenser."""

    def __init__(self, uid: str | None = "04A1B2C3D4E5F0") -> None:
        self.uid = uid
        self.calls: list[str] = []
        self.held = False

    def fetch_band(self) -> str | None:
        self.calls.append("fetch")
        self.held = self.uid is not None
        return self.uid

    def put_away_band(self) -> bool:
        self.calls.append("put_away")
        held, self.held = self.held, False
        return held


def to_signature(k: Kiosk) -> None:
    k.platform.identify_script.append(identified(card_on_file=True))
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity())
    k.settle()
    k.flow.press_use_card_on_file()
    assert k.screen == "signature"


def one_read(k: Kiosk) -> None:
    """Run the ID-card read that is out, and hand its result to the flow."""
    k.worker.queue.popleft()()  # the read, on the worker
    k.worker.queue.popleft()()  # its result, on the flow's thread


def events(k: Kiosk) -> list[tuple[str, str]]:
    return [(e.event, e.outcome) for e in k.audit.events]


# ---- the band fetched while the expert signs ------------------------------------------------------------


def test_the_band_is_fetched_when_the_signature_screen_opens_and_dispensed_after_signing() -> None:
    fetch = FakeBandFetch()
    k = make_kiosk(band_fetch=fetch)
    to_signature(k)
    k.settle()
    assert fetch.calls == ["fetch"]  # while the expert signs, before anything is bound
    assert k.platform.complete_requests == []
    k.platform.complete_script.append(completed())
    k.flow.submit_signature(signed())
    k.settle()
    assert k.screen == "done"
    assert fetch.calls == ["fetch"]  # the dispense took the band; nothing put away
    k.flow.press_home()
    k.settle()
    assert fetch.calls == ["fetch"]


def test_an_expert_who_cancels_at_the_signature_sends_the_fetched_band_to_the_reject_bin() -> None:
    fetch = FakeBandFetch()
    k = make_kiosk(band_fetch=fetch)
    to_signature(k)
    k.settle()
    k.flow.press_cancel()
    k.settle()
    assert k.screen == "home"
    assert fetch.calls == ["fetch", "put_away"]
    assert ("band_put_away", "reject_bin") in events(k)
    assert k.platform.complete_requests == []  # never bound


def test_the_signature_timing_out_also_puts_the_band_away() -> None:
    fetch = FakeBandFetch()
    k = make_kiosk(band_fetch=fetch)
    to_signature(k)
    k.settle()
    k.clock.advance(60 + 15 + 1)
    k.settle()
    assert k.screen == "home"
    assert fetch.calls == ["fetch", "put_away"]


def test_a_failed_fetch_is_recorded_and_the_dispense_still_runs() -> None:
    fetch = FakeBandFetch(uid=None)
    k = make_kiosk(band_fetch=fetch)
    to_signature(k)
    k.settle()
    assert ("band_fetch", "failed") in events(k)
    k.platform.complete_script.append(completed())
    k.flow.submit_signature(signed())
    k.settle()
    assert k.screen == "done"
    assert len(k.dispenser.decisions) == 1


def test_cancel_before_the_signature_fetches_nothing() -> None:
    fetch = FakeBandFetch()
    k = make_kiosk(band_fetch=fetch)
    k.platform.identify_script.append(identified(card_on_file=True))
    k.flow.press_start()
    k.id_card.script.append(FakeIdentity())
    k.settle()
    assert k.screen == "card_on_file"
    k.flow.press_cancel()
    k.settle()
    assert fetch.calls == []


# ---- an ID card placed at the home screen ---------------------------------------------------------------


def test_an_id_card_placed_at_home_starts_the_check_in_without_a_touch() -> None:
    k = make_kiosk(start_on_id_card=True)
    assert k.screen == "home"
    one_read(k)  # the reader is seen empty: armed
    assert k.screen == "home"
    k.id_card.script.append(FakeIdentity())
    one_read(k)
    assert k.flow.state is Step.CAPTURING_FACE  # read once, at home; the ID screen is passed through
    assert [v.screen.value for v in k.views][-3:] == ["home", "id_card", "face"]
    assert ("id_card_at_home", "start") in events(k)


def test_a_card_already_on_the_reader_at_home_waits_to_be_lifted_and_placed_again() -> None:
    k = make_kiosk(start_on_id_card=True)
    k.id_card.script.extend([FakeIdentity(), FakeIdentity()])  # left lying on the reader
    one_read(k)
    one_read(k)
    assert k.screen == "home"
    k.id_card.script.extend([nothing(), FakeIdentity()])  # lifted, then placed again
    one_read(k)
    assert k.screen == "home"
    one_read(k)
    assert k.flow.state is Step.CAPTURING_FACE


def test_pressing_start_while_the_home_poll_is_out_reads_the_card_once() -> None:
    k = make_kiosk(start_on_id_card=True)
    assert len(k.worker.queue) == 1  # the home poll
    k.flow.press_start()
    assert k.screen == "id_card"
    assert len(k.worker.queue) == 1  # no second read on the same reader
    k.id_card.script.append(FakeIdentity())
    one_read(k)
    assert k.flow.state is Step.CAPTURING_FACE


def test_a_reader_fault_at_home_is_polled_again_after_the_poll_interval_not_at_once() -> None:
    k = make_kiosk(start_on_id_card=True)
    k.id_card.script.append(DeviceFaultError("SAM offline"))
    one_read(k)
    assert not k.worker.queue  # no spinning on a dead reader
    k.clock.advance(2.0)
    assert len(k.worker.queue) == 1
    assert k.screen == "home"


def test_without_the_setting_nothing_is_read_at_home() -> None:
    k = make_kiosk()
    assert not k.worker.queue
    k.id_card.script.append(FakeIdentity())
    k.settle()
    assert k.screen == "home"


def test_the_kiosk_setting_is_on_by_default_can_be_turned_off_and_reaches_the_flow(tmp_path: Path) -> None:
    body = '[kiosk]\nid = "K1"\n[staff]\npin_hash = "{h}"\n[data]\nkey = "kiosk-test-secret-kiosk-test-secret"\n'
    path = tmp_path / "kiosk.toml"
    path.write_text(body.format(h=hash_pin("246810")), encoding="utf-8")
    on = load_config(path, env={})
    assert on.start_on_id_card
    assert flow_settings(on).start_on_id_card
    assert flow_settings(on).home_poll_s == 0.5
    path.write_text(body.format(h=hash_pin("246810")) + "[flow]\nstart_on_id_card = false\n", encoding="utf-8")
    off = load_config(path, env={})
    assert not off.start_on_id_card
    assert not flow_settings(off).start_on_id_card
