"""Randomized soak: thousands of dispenses against the simulator with faults injected at random.

Invariants checked with the test's own ledger after every dispense and at the end:
- each band is in exactly one of stock, reject bin, handed out (nothing held or in the slot at rest);
- no band is handed out unbound, and none is bound twice;
- every band the dispenser reports handed out / in the reject bin / in stock is really there;
- the platform's active bindings are exactly the bands handed out (the rest were annulled).
Set ARM_SOAK_SEED to replay a run; ARM_SOAK_DISPENSES to change its length.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from robot_arm.dispenser import WristbandDispenser
from robot_arm.driver import ArmDriver
from robot_arm.models import BandLocation, BindDecision, DispenseOutcome, DispenseResult
from robot_arm.simulator import MECHANICAL_FAULTS, TRANSPORT_FAULTS, ArmSimulator, SimSettings, default_bands
from tests.support.arm import FakeBandReader, FakePlatform

if TYPE_CHECKING:
    from collections.abc import Callable

PLACES = ("before_pick", "after_bind")


STAFF_DEADLINE_S = 30.0  # staff keep starting the arm up until it answers ready


class Soak:
    """The kiosk's side of the soak: dispenses, annuls, plays staff, and keeps the counts."""

    def __init__(self, seed: int, dispenses: int) -> None:
        self.rng = random.Random(seed)
        self.dispenses = dispenses
        self.bands = default_bands(dispenses + 50)
        self.reader = FakeBandReader()
        self.platform = FakePlatform()
        self.sim = ArmSimulator(
            SimSettings(bands=tuple(self.bands), speed=10_000, pickup_take_after=1.0, reboot_time=2.0, seed=seed),
            on_band_at_reader=self.reader.band_arrived,
            on_band_left_reader=self.reader.band_left,
        )
        self.counts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.staff_pending: dict[str, DispenseResult] = {}

    def run(self) -> None:
        with self.sim:
            # Each motion and pickup wait runs out only on an injected fault (a lost event, a band nobody
            # takes), each costing its timeout, so they stay short; but a stalled simulator thread on a
            # loaded CI machine must not spoil a good dispense: 0.3 s (0.6 s for a motion the arm says
            # is still running) instead of 0.08 / 0.15. A lost reply is retried 3 times, so 0.1 s per
            # command is enough. The band reader answers at once, so its wait costs nothing.
            arm = ArmDriver.open(self.sim.url, command_timeout=0.1, motion_timeout=0.3, backoff=0.01)
            try:
                dispenser = WristbandDispenser(
                    arm, self.reader.read_uid, pickup_timeout=0.3, read_timeout=5.0, poll_interval=0.02
                )
                self.staff(dispenser)
                for _ in range(self.dispenses):
                    result = dispenser.dispense(self.plan())
                    self.account(result)
                    if result.needs_staff:
                        self.staff(dispenser)
                    self.check_places()
                self.staff(dispenser)
                self.check_end()
            finally:
                arm.close()

    def plan(self) -> Callable[[str], BindDecision]:
        """Pick what goes wrong in this dispense (about one in six has a fault)."""
        roll = self.rng.random()
        inject_after_bind: str | None = None
        if roll < 0.07:
            fault = self.rng.choice(MECHANICAL_FAULTS)
            place = self.rng.choice(PLACES)
            self.injected[f"{fault}@{place}"] += 1
            if place == "before_pick":
                self.inject(fault)
            else:
                inject_after_bind = fault
        elif roll < 0.10:
            fault = self.rng.choice(TRANSPORT_FAULTS)
            self.injected[fault] += 1
            self.sim.inject(fault)
        elif roll < 0.12:
            self.injected["unreadable_uid"] += 1
            self.reader.fail_next = 1
        elif roll < 0.14:
            self.injected["bind_refused"] += 1
            self.platform.refuse_next = "BAND_NOT_AVAILABLE"
        elif roll < 0.16:
            after = self.rng.random() < 0.5
            self.injected["bind_error_after_commit" if after else "bind_error"] += 1
            self.platform.fail_next = ConnectionError("platform unreachable")
            self.platform.fail_after_binding = after

        def bind(uid: str) -> BindDecision:
            decision = self.platform.bind(uid)
            if inject_after_bind is not None:
                self.inject(inject_after_bind)
            return decision

        return bind

    def inject(self, fault: str) -> None:
        if fault == "power_loss":
            self.sim.inject(fault, keep_band=self.rng.random() < 0.5)
        else:
            self.sim.inject(fault)

    def account(self, result: DispenseResult) -> None:
        self.counts["dispenses"] += 1
        self.counts[f"outcome {result.outcome.value}"] += 1
        if result.reason is not None:
            self.counts[f"  {result.outcome.value} because {result.reason.value}"] += 1
        if result.needs_staff:
            self.counts["needs staff"] += 1
        ledger = self.sim.ledger()
        if result.outcome is DispenseOutcome.HANDED_OUT:
            assert result.uid in ledger.handed_out, result
            assert result.uid in self.platform.bound, result
        if result.band_location is BandLocation.REJECT_BIN:
            assert result.uid is None or result.uid in ledger.reject_bin, result
        if result.band_location in {BandLocation.STOCK, BandLocation.NONE}:
            assert result.uid is None, result
        if result.needs_annul:
            assert result.uid is not None
            self.platform.annul(result.uid)
            self.counts["annulled by kiosk"] += 1
        elif result.band_location is BandLocation.PICKUP_SLOT:
            assert result.uid is not None
            self.staff_pending[result.uid] = result

    def staff(self, dispenser: WristbandDispenser) -> None:
        """What staff do when called: release the e-stop, close the door, put the cassette back, start up."""
        self.counts["staff start-ups"] += 1
        # Until the arm is ready, with a generous deadline: after a power loss it reboots for 2 s, and a
        # fixed number of start-ups (each a few 0.1 s tries) can all fall inside that on a loaded machine.
        deadline = time.monotonic() + STAFF_DEADLINE_S
        while True:
            self.sim.release_estop()
            self.sim.close_door()
            self.sim.refill()
            report = dispenser.start_up()
            if report.ready:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"arm not ready within {STAFF_DEADLINE_S} s of start-ups: {report.problems}")
        ledger = self.sim.ledger()
        for uid in list(self.staff_pending):
            # A band left in the slot: taken meanwhile (valid hand-out) or withdrawn (annul it).
            if uid in ledger.reject_bin:
                self.platform.annul(uid)
            del self.staff_pending[uid]

    def check_places(self) -> None:
        ledger = self.sim.ledger()
        everywhere = ledger.all_bands()
        assert len(everywhere) == len(self.bands)
        assert set(everywhere) == set(self.bands)
        # No band handed out unbound; the same band never bound twice.
        active = set(self.platform.bound) - self.platform.annulled
        unbound = [u for u in ledger.handed_out if u not in active]
        assert not unbound, f"handed out unbound: {unbound}"
        assert max(Counter(self.platform.bind_calls).values(), default=0) <= 1

    def check_end(self) -> None:
        ledger = self.sim.ledger()
        assert ledger.held is None
        assert ledger.pickup_slot is None
        places = [set(ledger.stock), set(ledger.reject_bin), set(ledger.handed_out)]
        assert sum(len(p) for p in places) == len(self.bands)
        assert set().union(*places) == set(self.bands)
        active = set(self.platform.bound) - self.platform.annulled
        assert active == set(ledger.handed_out)

    def report(self, seconds: float) -> str:
        ledger = self.sim.ledger()
        lines = [
            f"arm soak: seed={self.seed} {self.counts['dispenses']} dispenses in {seconds:.1f} s",
            (
                f"  bands: {len(ledger.stock)} in stock, {len(ledger.reject_bin)} in reject bin, "
                f"{len(ledger.handed_out)} handed out (total {len(self.bands)})"
            ),
            *(f"  {k}: {v}" for k, v in sorted(self.counts.items()) if k != "dispenses"),
            f"  faults injected: {sum(self.injected.values())}",
            *(f"    {k}: {v}" for k, v in sorted(self.injected.items())),
            f"  faults fired in the simulator: {dict(sorted((k, v) for k, v in self.sim.faults_fired.items() if v))}",
        ]
        return "\n".join(lines)

    seed = 0


def _run(dispenses: int) -> None:
    seed = int(os.environ.get("ARM_SOAK_SEED", random.SystemRandom().randrange(1 << 30)))
    soak = Soak(seed, dispenses)
    soak.seed = seed
    started = time.monotonic()
    try:
        soak.run()
    finally:
        print()
        print(soak.report(time.monotonic() - started))
    assert soak.counts["outcome handed_out"] > dispenses // 2


def test_soak_short() -> None:
    _run(int(os.environ.get("ARM_SOAK_SHORT", "300")))


@pytest.mark.slow
def test_soak_thousands() -> None:
    _run(int(os.environ.get("ARM_SOAK_DISPENSES", "3000")))
