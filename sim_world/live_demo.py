"""`make demo` with a webcam: a demo expert enrolled live, the kiosk on the webcam, the devices by hand.

At the start the person trying the demo looks at the camera: the kiosk's own capture code (quality
gates, the blink check, the best frame cropped) takes their picture, and the platform's photo import
(`platform-server photos import`) stores it as the reference photo of the demo expert 演示专家, who is
invited to the demo batch. The kiosk then runs with that camera. When they press 登记办理 the demo
expert's ID card is put on the simulated reader for them, so they check in as themself. A small
control window plays the other devices: bank card in and out, another ID card, taking the band.

Tests use the same code with OpenCV reading an image folder or a video file in place of the webcam.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import customtkinter as ctk  # lazy (lazy_imports): only the control panel needs it, with a display

from bank_card_reader.simulator import UnionPayDebitCard
from checkin.app import face_analyser_factory
from checkin.face.models import CaptureSettings
from checkin.flow.views import Screen
from checkin.port_adapters import FaceCaptureAdapter
from checkin.texts import Language, text
from sim_world.model import SAMPLE_PAN, Expert
from sim_world.world import PLATFORM_SERVER, World, identity_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from checkin.config import KioskConfig
    from checkin.flow.views import View
    from sim_world.model import Scenario

log = logging.getLogger(__name__)

#: The expert whose reference photo is taken live (a valid GB 11643 number, made up for the demo).
LIVE_EXPERT: Final = Expert(key="live", id_number="110108199003070024", name="演示专家", photo="(taken live)")
#: Longest the enrolment waits for a usable, live face (the challenge done) in front of the camera.
ENROL_TIMEOUT_S: Final = 60.0


class LiveDemoError(RuntimeError):
    """The live demo could not start: no usable face from the camera, or the photo import failed."""


class LiveDemo:
    """The simulated world plus the live demo expert: enrol, build the kiosk's config, follow its screens."""

    def __init__(self, scenario: Scenario, work: Path, camera: str) -> None:
        experts = {**scenario.experts, LIVE_EXPERT.key: LIVE_EXPERT}
        self.scenario = dataclasses.replace(scenario, experts=experts)
        self.work = work
        self.camera = camera
        self.world = World(self.scenario, work, band_count=20)
        #: Put the demo expert's ID card on the reader whenever the ID card screen opens.
        self.auto_id_card = True
        self._screen: Screen | None = None

    def start(self, on_hint: Callable[[str], None] | None = None) -> KioskConfig:
        """Start the world, enrol the person at the camera, and return the kiosk's configuration."""
        self.world.start()
        self.enrol(on_hint)
        return self.world.kiosk_config(camera=self.camera)

    def stop(self) -> None:
        """Stop the world (platform, pcscd, simulators)."""
        self.world.stop()

    def enrol(self, on_hint: Callable[[str], None] | None = None) -> bytes:
        """Take the reference photo with the kiosk's capture code and import it through the platform's CLI."""
        camera = FaceCaptureAdapter(
            self.camera,
            settings=CaptureSettings(),
            timeout_s=ENROL_TIMEOUT_S,
            analyser_factory=face_analyser_factory(CaptureSettings().detect_width),
        )
        shown: list[str] = []

        def hint(key: str) -> None:
            if not shown or shown[-1] != key:
                shown.append(key)
                if on_hint is not None:
                    on_hint(f"{text(f'hint.{key}', Language.ZH)} / {text(f'hint.{key}', Language.EN)}")

        try:
            frames = camera.capture(hint)
        except Exception as err:
            raise LiveDemoError(
                f"no usable face from camera {self.camera} within {ENROL_TIMEOUT_S:.0f} s: {err}"
            ) from err
        if not frames.liveness_passed or not frames.images_jpeg:
            raise LiveDemoError(
                f"camera {self.camera}: the liveness challenge was not done, so no live reference photo was taken"
            )
        photo = frames.images_jpeg[0]  # the sharpest frame with open eyes, cropped to the face
        # The import reads a folder of <ID number>.jpg files. The face stays in clear on disk only for
        # the import: the platform stores it encrypted, and the file is deleted whatever happens.
        with tempfile.TemporaryDirectory(prefix="enrol-", dir=self.work) as tmp:
            folder = Path(tmp)
            (folder / f"{LIVE_EXPERT.id_number}.jpg").write_bytes(photo)
            done = self._import_photos(folder)
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).strip().splitlines()
            raise LiveDemoError(f"the platform refused the live photo: {reason[-1] if reason else done.returncode}")
        log.info("demo expert enrolled live (%d-byte reference photo)", len(photo))
        return photo

    def _import_photos(self, folder: Path) -> subprocess.CompletedProcess[str]:
        """`platform-server photos import FOLDER --batch CODE` against the world's platform."""
        return subprocess.run(  # noqa: S603 - fixed argument list
            [
                str(PLATFORM_SERVER),
                "--config",
                str(self.world.platform_config),
                "photos",
                "import",
                str(folder),
                "--batch",
                self.scenario.batch_code,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # ---- the kiosk's screens (a flow listener, on the kiosk's UI thread) ------------------------

    def on_view(self, view: View) -> None:
        """On the ID card screen, put the demo expert's card on the reader; on the face screen, take it back."""
        entered = view.screen is not self._screen
        self._screen = view.screen
        if not entered or self.world.id_card is None:
            return
        if view.screen is Screen.ID_CARD and self.auto_id_card:
            self.world.id_card.place(identity_for(LIVE_EXPERT))
        elif view.screen in {Screen.FACE, Screen.HOME}:
            self.world.id_card.remove()

    # ---- the control window's actions (any thread) ----------------------------------------------

    def place_id_card(self, key: str) -> str:
        """Put the ID card of scenario expert `key` on the reader."""
        assert self.world.id_card is not None
        expert = self.scenario.experts[key]
        self.world.id_card.place(identity_for(expert))
        return f"身份证已放置 / ID card placed: {expert.name}"

    def remove_id_card(self) -> str:
        """Take the ID card off the reader."""
        assert self.world.id_card is not None
        self.world.id_card.remove()
        return "身份证已移走 / ID card removed"

    def insert_bank_card(self) -> str:
        """Insert a UnionPay debit card (the sample number) into the card reader; returns at once."""
        self.world.insert_bank_card(UnionPayDebitCard(SAMPLE_PAN), wait=False)
        return "银行卡已插入 / bank card inserted"

    def remove_bank_card(self) -> str:
        """Take the bank card out."""
        self.world.remove_bank_card()
        return "银行卡已拔出 / bank card removed"

    def take_band(self) -> str:
        """Take the band from the pickup slot, if the arm has put one there."""
        assert self.world.arm is not None
        uid = self.world.arm.take_from_pickup()
        return "手环已取走 / band taken" if uid else "出口没有手环 / no band in the slot"


def control_panel(root: Any, demo: LiveDemo, *, x: int) -> Any:
    """A small window beside the kiosk with one button per thing a person does to the simulated devices."""
    panel = ctk.CTkToplevel(root)
    panel.title("模拟设备 / Simulated devices")
    panel.geometry(f"400x540+{x}+0")
    status = ctk.CTkLabel(panel, text="", wraplength=360)

    def act(action: Callable[[], str]) -> Callable[[], None]:
        def run() -> None:
            try:
                status.configure(text=action())
            except Exception as err:  # a demo control must never take the kiosk down
                log.warning("demo control failed: %s", err)
                status.configure(text=f"失败 / failed: {err}")

        return run

    buttons: list[tuple[str, Callable[[], str]]] = [
        (f"放置身份证：{LIVE_EXPERT.name} / Place my ID card", lambda: demo.place_id_card(LIVE_EXPERT.key)),
    ]
    for expert in demo.scenario.experts.values():
        if expert.key != LIVE_EXPERT.key:
            label = f"放置身份证：{expert.name} / Place {expert.key}'s ID card"
            buttons.append((label, functools.partial(demo.place_id_card, expert.key)))
    buttons += [
        ("移走身份证 / Remove ID card", demo.remove_id_card),
        ("插入银行卡 / Insert bank card", demo.insert_bank_card),
        ("拔出银行卡 / Remove bank card", demo.remove_bank_card),
        ("取走手环 / Take the wristband", demo.take_band),
    ]
    for label, action in buttons:
        ctk.CTkButton(panel, text=label, command=act(action), height=48).pack(fill="x", padx=12, pady=6)
    auto = ctk.BooleanVar(value=demo.auto_id_card)

    def toggle_auto() -> None:
        demo.auto_id_card = bool(auto.get())

    ctk.CTkCheckBox(
        panel, text="登记时自动放置本人身份证 / Auto-place my ID card", variable=auto, command=toggle_auto
    ).pack(fill="x", padx=12, pady=6)
    status.pack(fill="x", padx=12, pady=12)
    return panel
