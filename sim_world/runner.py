"""Runs a scenario's check-ins through the real kiosk: the flow, the drivers, the simulators and the platform.

The runner plays the person at the kiosk. It follows the flow's views (a FlowListener) and acts on
each screen as the scenario says: presses 登记办理, puts the ID card on the reader simulator, stands
in front of the camera (the camera's image folder shows a clip of the face), inserts the virtual
bank card or types/swipes it, signs, and takes the band from the pickup slot. Everything else is the
kiosk's own code, built by checkin.app from a configuration that points at the simulated world.

Machine time (docs/scenario-format.md) is the wall time from 登记办理 to the result screen minus
the time the kiosk waited for the person (camera input until the blink was seen, and the runner's
reaction to each screen) minus the arm's motion (the simulator's nominal motion times at its speed).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from bank_card_reader.simulator import DeadCard, UnionPayDebitCard
from camera.simulator import make_clip, make_no_face_clip
from checkin.app import Kiosk, build_kiosk
from checkin.flow.machine import FlowListenerBase
from checkin.flow.ports import DispensePhase
from checkin.flow.views import (
    CardInsertView,
    DispensingView,
    DoneView,
    RefusalView,
    Screen,
    SignatureView,
    View,
)
from checkin.flow_thread import FlowThread
from checkin.signature import Signature
from checkin.texts import Language, text
from robot_arm.protocol import Command
from robot_arm.simulator import GRIP_TIME, HOME_TIME, RELEASE_TIME, RETRACT_TIME, TRAVEL_TIME
from sim_world.faces import resolve_face
from sim_world.metrics_client import FaceTimes, MetricsError, PlatformMetrics
from sim_world.model import SAMPLE_PAN, CardKind, FaultWhen, Liveness
from sim_world.world import World, identity_for
from uwb import payload
from uwb.models import BandCleared

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from checkin.port_adapters import StepSpan
    from sim_world.model import CheckInCase, Fault, Scenario
    from sim_world.world import StampedCard

log = logging.getLogger(__name__)

#: Nominal seconds of each arm motion at speed 1 (robot_arm.simulator's timings).
MOTION_SECONDS: Final = {
    Command.HOME: HOME_TIME,
    Command.PICK: TRAVEL_TIME + GRIP_TIME,
    Command.MOVE: TRAVEL_TIME,
    Command.RELEASE: RELEASE_TIME,
    Command.RETRACT: RETRACT_TIME,
}
CASE_TIMEOUT_S: Final = 60.0
SETTLE_TIMEOUT_S: Final = 60.0
CLIP_FRAMES: Final = 60  # 4 s at 15 fps (looped): blinks at 1.2 and 3.2 s, each head turn twice (synthetic.TURNS)


class RunnerError(RuntimeError):
    """The runner could not drive a check-in (the kiosk never showed what the person waits for)."""


@dataclass
class CaseResult:
    """One check-in, as printed on one JSON line."""

    name: str
    expected: str
    outcome: str = ""
    ok: bool = False
    screens: list[str] = field(default_factory=list)
    #: Seconds from 登记办理 at which each screen in `screens` appeared.
    timeline: list[float] = field(default_factory=list)
    machine_time_s: float | None = None
    wall_time_s: float | None = None
    person_time_s: float | None = None
    arm_motion_s: float | None = None
    card_detect_s: float | None = None
    #: pcscd noticing the band the arm brought to the reader (vpcd polling), like card_detect_s.
    band_detect_s: float | None = None
    #: Machine time without the simulated readers' detection latency (card_detect_s, band_detect_s).
    machine_time_excl_vpcd_s: float | None = None
    #: Where the machine time went, step by step (docs/scenario-format.md, "Time breakdown").
    breakdown: dict[str, float] = field(default_factory=dict)
    room: str | None = None
    band_uid: str | None = None
    band_holds: dict[str, Any] | None = None
    #: The check-in slip: state (printed / failed), code (its QR), lines, complete, png (docs/scenario-format.md).
    slip: dict[str, Any] | None = None
    message: str | None = None
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON object of this line (rounded times, no empty extras)."""
        out: dict[str, Any] = {
            "name": self.name,
            "expected": self.expected,
            "outcome": self.outcome,
            "ok": self.ok,
            "screens": self.screens,
            "timeline_s": [round(t, 3) for t in self.timeline],
        }
        for key in (
            "machine_time_s",
            "machine_time_excl_vpcd_s",
            "wall_time_s",
            "person_time_s",
            "arm_motion_s",
            "card_detect_s",
            "band_detect_s",
        ):
            value = getattr(self, key)
            out[key] = round(value, 3) if value is not None else None
        if self.breakdown:
            out["breakdown_s"] = {k: round(v, 3) for k, v in self.breakdown.items()}
        out |= {"room": self.room, "band_uid": self.band_uid, "band_holds": self.band_holds}
        if self.slip is not None:
            out["slip"] = self.slip
        if self.message:
            out["message"] = self.message
        if self.problems:
            out["problems"] = self.problems
        if self.skipped:
            out["skipped"] = self.skipped
        return out


class _ViewQueue(FlowListenerBase):
    """Views as they are published (on the flow's thread), stamped, for the person's thread."""

    def __init__(self) -> None:
        self.views: queue.SimpleQueue[tuple[float, View]] = queue.SimpleQueue()
        self.latest: View | None = None

    def on_view(self, view: View) -> None:
        self.latest = view
        self.views.put((time.monotonic(), view))


def scribble() -> Signature:
    """A signature of three strokes on an 800x300 pad."""
    pad = Signature(800, 300)
    for y0 in (120.0, 160.0, 200.0):
        pad.begin_stroke(80.0, y0)
        for i in range(1, 40):
            pad.extend_stroke(80.0 + i * 15.0, y0 + (30.0 if i % 2 else -30.0))
    return pad


def swipe_text(pan: str) -> str:
    """What a keyboard-wedge stripe reader types for a card: track 2 only."""
    return f";{pan}=30122201000000000000?"


class ScenarioRunner:
    """Sets up the world, builds the kiosk from its configuration, and plays each check-in."""

    def __init__(
        self, scenario: Scenario, *, work: Path | None = None, listeners: list[Any] | None = None, printer: bool = True
    ) -> None:
        self.scenario = scenario
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if work is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kiosk-scenario-")
            work = Path(self._tmp.name)
        self.work = work
        self.world = World(scenario, work, band_count=len(scenario.checkins) * 2 + 6, with_printer=printer)
        self.thread: FlowThread | None = None
        self.kiosk: Kiosk | None = None
        self.views = _ViewQueue()
        self._extra_listeners = listeners or []
        self._clips: dict[tuple[str, Liveness], Path | str] = {}
        self._band_at_reader: list[str] = []
        self._case_faults_at_reader: list[Fault] = []
        self._slips_before = 0
        self._close_lock = threading.Lock()
        self._closed = False

    # ---- set-up --------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()  # a half-started world must not leave pcscd or the platform running
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the world and the kiosk; return once the kiosk shows its home screen."""
        self.world.start()
        self.world.on_band_at_reader.append(self._band_arrived)
        self._prepare_clips()
        config = self.world.kiosk_config(done_return_s=60)
        self.thread = FlowThread()
        thread = self.thread
        self.kiosk = thread.call_and_wait(lambda: build_kiosk(config, scheduler=thread, worker=thread), timeout=120)
        kiosk = self.kiosk
        thread.call_and_wait(lambda: kiosk.flow.add_listener(self.views))
        for listener in self._extra_listeners:
            thread.call_and_wait(functools.partial(kiosk.flow.add_listener, listener))
        kiosk.start()
        self._wait_screen({Screen.HOME}, SETTLE_TIMEOUT_S, "the kiosk's home screen after start-up")

    def close(self) -> None:
        """Stop the kiosk and the world, and remove temporary files (once; safe from any thread)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self.kiosk is not None:
            with contextlib.suppress(Exception):
                self.kiosk.close()
        if self.thread is not None:
            self.thread.stop()
        self.world.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _prepare_clips(self) -> None:
        """Make the camera clip of every (face, liveness) a check-in shows, before any clock starts."""
        clips = self.work / "clips"
        for index, case in enumerate(self.scenario.checkins):
            key = self._clip_key(case)
            if key in self._clips:
                continue
            reference, liveness = key
            out = clips / f"{index:02d}-{liveness.value}"
            if liveness is Liveness.NO_FACE:
                self._clips[key] = make_no_face_clip(out, frames=CLIP_FRAMES)
                continue
            face = resolve_face(reference, base=self.scenario.path.parent, work=self.work / "faces")
            if face.path is None:
                self._clips[key] = face.reason
                continue
            self._clips[key] = make_clip(face.path, out, blink=liveness is Liveness.BLINK, frames=CLIP_FRAMES)

    def _clip_key(self, case: CheckInCase) -> tuple[str, Liveness]:
        expert = self.scenario.experts[case.expert]
        reference = case.camera or expert.photo
        return ("" if case.liveness is Liveness.NO_FACE else reference, case.liveness)

    # ---- running -------------------------------------------------------------------------------

    def run(self) -> Iterator[CaseResult]:
        """Play every check-in in order, yielding each result as soon as it is known."""
        for case in self.scenario.checkins:
            yield self.run_case(case)

    def run_case(self, case: CheckInCase) -> CaseResult:
        """One expert's visit, from 登记办理 to the result screen and back home, then the after-checks."""
        result = CaseResult(name=case.name, expected=case.expect)
        clip = self._clips[self._clip_key(case)]
        if isinstance(clip, str):
            result.skipped = f"no camera picture for this case: {clip}"
            result.ok = True
            return result
        self._wait_screen({Screen.HOME}, SETTLE_TIMEOUT_S, "the home screen before the check-in")
        self._drain_views()
        self.world.show_camera(clip)
        for fault in case.faults:
            if fault.when is FaultWhen.START:
                self._fire(fault)
        self._case_faults_at_reader = [f for f in case.faults if f.when in {FaultWhen.DISPENSING, FaultWhen.AT_READER}]
        self._band_at_reader.clear()
        arm = self.world.arm
        assert arm is not None
        motions_before = dict(arm.motions_run)
        self._slips_before = len(self.world.printer.slips) if self.world.printer is not None else 0
        try:
            self._play(case, result, motions_before)
        except RunnerError as err:
            result.problems.append(str(err))
        finally:
            self._case_faults_at_reader = []
            self.world.remove_bank_card()
            if self.world.id_card is not None:
                self.world.id_card.remove()
        self._after_checks(case, result)
        if self.world.printer is not None:
            self.world.printer.clear()  # a case's printer fault ends with it (paper refilled, cover shut)
        result.ok = not result.problems and _matches(case.expect, result.outcome)
        if not _matches(case.expect, result.outcome):
            result.problems.append(f"expected {case.expect}, got {result.outcome or 'nothing'}")
        return result

    def _play(self, case: CheckInCase, result: CaseResult, motions_before: dict[Command, int]) -> None:  # noqa: C901, PLR0912, PLR0915 - one branch per screen the person acts on
        kiosk = self.kiosk
        assert kiosk is not None
        flow = kiosk.flow
        expert = self.scenario.experts[case.expert]
        person = 0.0
        card_detect = 0.0
        signed_empty = False
        card_in = False
        typed_after_dead = False
        placed_at: float | None = None
        face_before = self._face_times()
        started = time.monotonic()
        self._do(flow.press_start)
        deadline = started + CASE_TIMEOUT_S
        previous: Screen | None = None
        face_started: float | None = None
        taken = False
        ended: float | None = None
        # When the signature was handed in and the arm's motion counts by then: the band fetched while
        # the person signed moved inside person time, so only motion after this lies on the machine's path.
        signed_at: float | None = None
        motions_at_sign: dict[Command, int] | None = None
        while ended is None:
            seen, view = self._next_view(deadline, case.name)
            screen = view.screen
            if screen is not previous:
                result.screens.append(screen.value)
                result.timeline.append(seen - started)
            if previous is Screen.FACE and screen is not Screen.FACE and face_started is not None:
                # The time the camera showed the person until the capture had what it needed.
                person += kiosk.face.last_media_s
                face_started = None
            entered = screen is not previous
            previous = screen
            if screen is Screen.ID_CARD and entered:
                assert self.world.id_card is not None
                # Timed before the card lands: the kiosk's poll may read it before place() returns (its
                # log line takes the GIL), which would put the read's end before a time taken after.
                placed_at = time.monotonic()
                self.world.id_card.place(_identity(expert))
                person += placed_at - seen
            elif screen is Screen.FACE and entered:
                face_started = seen
                assert self.world.id_card is not None
                self.world.id_card.remove()  # the person takes the ID card back
            elif screen is Screen.CARD_ON_FILE and entered:
                self._do(flow.press_use_card_on_file if case.card is CardKind.ON_FILE else flow.press_replace_card)
                person += time.monotonic() - seen
            elif screen is Screen.CARD_INSERT and isinstance(view, CardInsertView):
                if entered and case.card in (CardKind.CHIP, CardKind.DEAD_CHIP_THEN_TYPED) and not card_in:
                    card = (
                        UnionPayDebitCard(case.card_number or SAMPLE_PAN) if case.card is CardKind.CHIP else DeadCard()
                    )
                    person += time.monotonic() - seen
                    put = time.monotonic()
                    self.world.insert_bank_card(card, wait=True)  # returns when pcscd has read its ATR
                    card_detect += time.monotonic() - put
                    card_in = True
                elif entered and case.card is CardKind.TYPED:
                    self._do(flow.press_type)
                    person += time.monotonic() - seen
                elif entered and case.card is CardKind.SWIPE:
                    self._do(flow.press_swipe)
                    person += time.monotonic() - seen
                elif case.card is CardKind.DEAD_CHIP_THEN_TYPED and view.error and not typed_after_dead:
                    typed_after_dead = True
                    self.world.remove_bank_card()
                    self._do(flow.press_type)
                    person += time.monotonic() - seen
            elif screen is Screen.CARD_TYPE and entered:
                number = case.card_number or ""
                self._do(functools.partial(flow.submit_card_number, number))
                person += time.monotonic() - seen
            elif screen is Screen.CARD_SWIPE and entered:
                track = swipe_text(case.card_number or "")
                self._do(functools.partial(flow.submit_swipe, track))
                person += time.monotonic() - seen
            elif screen is Screen.CARD_CONFIRM and entered:
                self._do(flow.press_confirm_card)
                self.world.remove_bank_card()
                person += time.monotonic() - seen
            elif screen is Screen.SIGNATURE and isinstance(view, SignatureView):
                if entered and case.signature == "empty_then_scribble" and not signed_empty:
                    signed_empty = True
                    self._do(lambda: flow.submit_signature(Signature(800, 300)))
                    person += time.monotonic() - seen
                elif view.error == "error.signature_empty" or (entered and case.signature == "scribble"):
                    if view.error:
                        result.message = text(view.error, Language.ZH)
                    pad = scribble()
                    # The person's hand on the pad (person time): not waiting for the kiosk.
                    time.sleep(self.scenario.sign_s)
                    arm_now = self.world.arm
                    assert arm_now is not None
                    motions_at_sign = dict(arm_now.motions_run)
                    self._do(functools.partial(flow.submit_signature, pad))
                    signed_at = time.monotonic()
                    person += signed_at - seen
            elif screen is Screen.DISPENSING and isinstance(view, DispensingView):
                if view.phase is DispensePhase.AT_PICKUP and case.take_band and not taken:
                    taken = True
                    arm = self.world.arm
                    assert arm is not None
                    arm.take_from_pickup()
                    person += time.monotonic() - seen
            elif screen in {Screen.DONE, Screen.REFUSAL, Screen.BAND_PROBLEM, Screen.ROOM_PENDING}:
                ended = seen
                result.outcome = _outcome(view)
                if isinstance(view, DoneView):
                    result.room = view.room_number
                if isinstance(view, RefusalView):
                    lang = Language.ZH
                    result.message = text(view.text_key, lang, **dict(view.params))
            elif screen in {Screen.HOME, Screen.OUT_OF_SERVICE} and len(result.screens) > 1:
                ended = seen
                result.outcome = screen.value
        arm = self.world.arm
        assert arm is not None
        speed = self.scenario.arm_speed
        since = motions_at_sign if motions_at_sign is not None else motions_before
        arm_motion = sum(
            MOTION_SECONDS.get(cmd, 0.0) * (count - since.get(cmd, 0)) / speed for cmd, count in arm.motions_run.items()
        )
        wall = ended - started
        result.wall_time_s = wall
        result.person_time_s = person
        result.arm_motion_s = arm_motion
        result.card_detect_s = card_detect if card_in else None
        result.machine_time_s = wall - person - arm_motion
        result.band_uid = self._band_at_reader[-1] if self._band_at_reader else None
        band = self.world.last_band if self._band_at_reader else None
        result.band_detect_s = _detect_on_path(band, signed_at)
        result.machine_time_excl_vpcd_s = (
            result.machine_time_s - (result.card_detect_s or 0.0) - (result.band_detect_s or 0.0)
        )
        result.breakdown = self._breakdown(
            result, started=started, ended=ended, placed_at=placed_at, face_before=face_before
        )
        # The slip prints while the band is taken; the person takes it too (not part of the machine time).
        self._slip_checks(result, self._slips_before)
        # Back to the home screen, as the person leaves (返回首页).
        self._do(flow.press_home)

    def _breakdown(
        self,
        result: CaseResult,
        *,
        started: float,
        ended: float,
        placed_at: float | None,
        face_before: FaceTimes | None,
    ) -> dict[str, float]:
        """Split the machine time into the kiosk's timed steps; what no step covers is `flow_and_handoffs`.

        Top-level keys add up to the machine time (the dispense step less the arm's motion); dotted
        keys (`identify_rpc.face_descriptors`, `dispense.band_read`, ...) are parts of their parent.
        """
        kiosk = self.kiosk
        assert kiosk is not None
        last: dict[str, StepSpan] = {}
        for span in kiosk.timings.between(started, ended):
            if span.ok or span.step not in last:
                last[span.step] = span
        out: dict[str, float] = {}
        if placed_at is not None and "id_card.read" in last:
            # From the card landing on the reader: the rest of the find-card poll, select and read.
            out["id_card_read"] = last["id_card.read"].end - placed_at
        if "face.capture" in last:
            # Camera opening, the analysis lag behind the last frame, the JPEG crops (not the person).
            out["face_capture_overhead"] = last["face.capture"].seconds - kiosk.face.last_media_s
        if "platform.identify" in last:
            out |= self._identify_breakdown(last["platform.identify"], face_before)
        card = self.world.last_bank_card
        if result.card_detect_s is not None and card is not None and card.seen is not None:
            out["bank_card_detect_vpcd"] = result.card_detect_s
            if "bank_card.read" in last:
                out["bank_card_read"] = last["bank_card.read"].end - card.seen
        if "arm.dispense" in last:
            out |= self._dispense_breakdown(result, last)
        if result.machine_time_s is not None:
            covered = sum(v for k, v in out.items() if "." not in k) - out.get("dispense.arm_motion", 0.0)
            out["flow_and_handoffs"] = result.machine_time_s - covered
        return out

    def _identify_breakdown(self, span: StepSpan, face_before: FaceTimes | None) -> dict[str, float]:
        out = {"identify_rpc": span.seconds}
        face_after = self._face_times() if face_before is not None else None
        spent = face_after.since(face_before) if face_after is not None and face_before is not None else None
        if spent is not None:
            out["identify_rpc.face_checks"], out["identify_rpc.face_descriptors"] = spent
        return out

    def _dispense_breakdown(self, result: CaseResult, last: dict[str, StepSpan]) -> dict[str, float]:
        out = {"dispense": last["arm.dispense"].seconds, "dispense.arm_motion": result.arm_motion_s or 0.0}
        band = self.world.last_band
        if result.band_detect_s is not None and band is not None and band.seen is not None:
            out["dispense.band_detect_vpcd"] = result.band_detect_s
            if "band.read_uid" in last:
                out["dispense.band_read"] = last["band.read_uid"].end - band.seen
        if "platform.complete" in last:
            out["dispense.complete_rpc"] = last["platform.complete"].seconds
        return out

    def _face_times(self) -> FaceTimes | None:
        """The platform's face-verification totals from its /metrics (None, logged, if it cannot be read)."""
        try:
            return FaceTimes.of(PlatformMetrics(self.world.platform_metrics_url).scrape())
        except MetricsError as err:
            log.warning("platform metrics unavailable: %s", err)
            return None

    def _after_checks(self, case: CheckInCase, result: CaseResult) -> None:  # noqa: C901 - one check per kind of band outcome
        """Wait for the kiosk's queue to settle, then read what the band holds over UWB (bounded waits)."""
        kiosk = self.kiosk
        assert kiosk is not None
        try:
            _wait_until(lambda: kiosk.queue.depth() == 0, SETTLE_TIMEOUT_S, "the kiosk's queue to settle")
        except RunnerError as err:
            result.problems.append(str(err))
        uid = result.band_uid
        if uid is None or result.outcome.startswith("refused"):
            return
        tag_id = self.world.tag_for(uid)
        uwb = self.world.uwb
        if tag_id is None or uwb is None:
            result.problems.append(f"band {uid} is not one of the world's bands")
            return
        wants_room = case.expect in {"checked_in", "room_pending"}
        expected_room = result.room or self._room_in_platform(uid)

        def holds() -> dict[str, Any] | None:
            held = uwb.tag(tag_id).held
            if not held:
                return None
            content = payload.decode(held)
            if isinstance(content, BandCleared):
                return {"cleared": True}
            return {"batch": content.batch_code, "hotel": content.hotel_code, "room": content.room_number}

        def settled() -> bool:
            now = holds()
            if wants_room:
                return now is not None and now.get("room") == expected_room
            return now is None or bool(now.get("cleared"))

        try:
            _wait_until(settled, SETTLE_TIMEOUT_S, f"band {uid} (tag {tag_id:04X}) to hold what the platform decided")
        except RunnerError as err:
            result.problems.append(str(err))
        result.band_holds = holds()
        if wants_room and result.room is None:
            result.room = expected_room

    def _room_in_platform(self, uid: str) -> str | None:
        """The room the platform bound to this band in a live (not annulled) check-in, read from its database."""
        with contextlib.closing(sqlite3.connect(f"file:{self.world.platform_db}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT rooms.number FROM check_ins JOIN wristbands ON wristbands.id = check_ins.wristband_id "
                "JOIN rooms ON rooms.id = check_ins.room_id WHERE wristbands.rfid_uid = ? "
                "AND check_ins.annulled_at IS NULL ORDER BY check_ins.id DESC LIMIT 1",
                (uid,),
            ).fetchone()
        return str(row[0]) if row else None

    # ---- faults --------------------------------------------------------------------------------

    def _band_arrived(self, uid: str) -> None:
        """Arm simulator hook (its worker thread): a band is at the reader; fire faults due now."""
        self._band_at_reader.append(uid)
        for fault in self._case_faults_at_reader:
            self._fire(fault)
        self._case_faults_at_reader = []

    def _slip_checks(self, result: CaseResult, slips_before: int) -> None:
        """After a check-in: wait (bounded) until the kiosk says how its slip went, and record the slip."""
        printer, kiosk = self.world.printer, self.kiosk
        if printer is None or kiosk is None or result.outcome != "checked_in":
            return

        def slip_state() -> str:
            view = kiosk.flow.view
            return view.slip if isinstance(view, DoneView) else "gone"

        try:
            _wait_until(lambda: slip_state() in {"printed", "failed", "gone"}, SETTLE_TIMEOUT_S, "the slip to print")
        except RunnerError as err:
            result.problems.append(str(err))
        printer.save_pngs()
        slips = printer.slips[slips_before:]
        result.slip = {"state": slip_state()}
        if slips:
            slip = slips[-1]
            result.slip |= {
                "code": slip.qr_payloads[0] if slip.qr_payloads else None,
                "complete": slip.complete,
                "lines": slip.lines,
                "png": str(slip.png_path) if slip.png_path else None,
            }

    def _fire(self, fault: Fault) -> None:
        log.info("fault: %s %s", fault.device, fault.name)
        if fault.device == "arm":
            assert self.world.arm is not None
            self.world.arm.inject(fault.name)
        elif fault.device == "platform":
            self.world.kill_platform()
            self.world.restart_platform_after(fault.restart_after_s)
        elif fault.device == "id_card":
            assert self.world.id_card is not None
            self.world.id_card.inject(fault.name)
        elif fault.device == "uwb":
            assert self.world.uwb is not None
            self.world.uwb.set_offline(fault.name == "offline")
        elif fault.device == "printer" and self.world.printer is not None:
            self.world.printer.inject(fault.name)

    # ---- helpers -------------------------------------------------------------------------------

    def _do(self, action: Callable[[], object]) -> None:
        assert self.thread is not None
        self.thread.call_and_wait(action)

    def _drain_views(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.views.views.get_nowait()

    def _next_view(self, deadline: float, case: str) -> tuple[float, View]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RunnerError(f"{case}: no result screen within {CASE_TIMEOUT_S:.0f} s")
        try:
            return self.views.views.get(timeout=remaining)
        except queue.Empty:
            latest = self.views.latest.screen.value if self.views.latest else "none"
            raise RunnerError(f"{case}: no result screen within {CASE_TIMEOUT_S:.0f} s (stuck on {latest})") from None

    def _wait_screen(self, screens: set[Screen], timeout: float, what: str) -> None:
        def there() -> bool:
            latest = self.views.latest
            return latest is not None and latest.screen in screens

        _wait_until(there, timeout, what)


def _detect_on_path(band: StampedCard | None, signed_at: float | None) -> float | None:
    """The part of pcscd noticing the band that the machine time holds: none of it if that happened while signing."""
    if band is None or band.seen is None:
        return None
    start = band.inserted if signed_at is None else max(band.inserted, signed_at)
    return max(0.0, band.seen - start)


def _identity(expert: Any) -> Any:
    return identity_for(expert)


def _outcome(view: View) -> str:
    if isinstance(view, RefusalView):
        return f"refused:{view.code.value}"
    return {
        Screen.DONE: "checked_in",
        Screen.BAND_PROBLEM: "band_problem",
        Screen.ROOM_PENDING: "room_pending",
    }.get(view.screen, view.screen.value)


def _matches(expected: str, outcome: str) -> bool:
    return expected == outcome


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` with a deadline (the things waited on give no event to wait for)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            raise RunnerError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def run_in_thread(target: Callable[[], None]) -> threading.Thread:
    """Start `target` on a daemon thread (used by the UI mode, whose main thread runs Tk)."""
    thread = threading.Thread(target=target, name="scenario-person", daemon=True)
    thread.start()
    return thread
