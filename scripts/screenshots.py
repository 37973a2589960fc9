"""Render every kiosk screen under Xvfb and save docs/screens/<screen>-<lang>.png (and a few at 1920x1080).

The real UI code renders view models fed straight from here (the flow is not involved), so each
screen can be shown with sample data. Run: `.venv/bin/python -m scripts.screenshots [--out DIR]`.
Needs Xvfb and ImageMagick's `import` (both in scripts/bootstrap.sh's APT_PACKAGES).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tkinter as tk
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFilter

from checkin.flow.models import CardSource, QueuedRecordInfo, RefusalCode
from checkin.flow.ports import DispensePhase
from checkin.flow.views import (
    BandProblemView,
    CardConfirmView,
    CardInsertView,
    CardOnFileView,
    CardSwipeView,
    CardTypeView,
    DispensingView,
    DoneView,
    FaceView,
    HomeView,
    IdCardView,
    OutOfServiceView,
    RefusalView,
    RoomPendingView,
    SelfTestLine,
    SignatureView,
    StaffMenuView,
    StaffPinView,
    VerifyingView,
    View,
)
from checkin.texts import Language

if TYPE_CHECKING:
    from collections.abc import Iterator

    from checkin.ui.window import KioskWindow

REPO = Path(__file__).resolve().parent.parent


def sample_views() -> list[tuple[str, View]]:
    """One or more sample views for every screen, in Chinese (the caller switches the language)."""
    return [
        ("home", HomeView(batch_name="2026年第3批次 市政道路工程施工评标", evaluation_start="2026-03-09 09:30")),
        ("out_of_service", OutOfServiceView(problems=("platform_unreachable",))),
        ("id_card", IdCardView()),
        ("id_card-error", IdCardView(error="error.id_card_unreadable")),
        ("face", FaceView(hint="too_far", attempt=1)),
        ("face-retry", FaceView(hint="blink_please", attempt=2)),
        ("verifying", VerifyingView()),
        ("verifying-busy", VerifyingView(busy=True)),
        ("refusal-not_invited", RefusalView(code=RefusalCode.NOT_INVITED, text_key="refusal.not_invited")),
        (
            "refusal-platform_busy",
            RefusalView(code=RefusalCode.PLATFORM_BUSY, text_key="refusal.platform_busy", can_retry=True, step_shown=1),
        ),
        (
            "refusal-face_mismatch",
            RefusalView(
                code=RefusalCode.FACE_MISMATCH,
                text_key="refusal.face_mismatch",
                params={"n": "1"},
                can_retry=True,
                step_shown=1,
            ),
        ),
        (
            "refusal-already_checked_in",
            RefusalView(
                code=RefusalCode.ALREADY_CHECKED_IN,
                text_key="refusal.already_checked_in",
                params={"time": "08:12", "kiosk": "一楼大厅K2", "room": "1208"},
                step_shown=1,
            ),
        ),
        ("card_on_file", CardOnFileView(bank_name="中国农业银行", pan_masked="622848******1234")),
        ("card_insert", CardInsertView()),
        ("card_swipe", CardSwipeView()),
        ("card_type", CardTypeView(error="error.card_number_invalid")),
        ("card_confirm", CardConfirmView(pan_masked="621234******1232", source=CardSource.CHIP)),
        (
            "signature",
            SignatureView(expert_name="张三", id_number_masked="1101**********002X", pan_masked="621234******1232"),
        ),
        (
            "signature-empty",
            SignatureView(
                expert_name="张三",
                id_number_masked="1101**********002X",
                pan_masked="621234******1232",
                error="error.signature_empty",
            ),
        ),
        ("dispensing", DispensingView(phase=DispensePhase.PREPARING)),
        ("dispensing-take", DispensingView(phase=DispensePhase.AT_PICKUP)),
        (
            "done",
            DoneView(
                expert_name="张三",
                hotel_name="交易中心宾馆",
                room_number="1208",
                evaluation_venue="第3评标室",
                evaluation_start="2026-03-09 09:30",
                seconds_left=20,
            ),
        ),
        (
            "done-slip_failed",
            DoneView(
                expert_name="张三",
                hotel_name="交易中心宾馆",
                room_number="1208",
                evaluation_venue="第3评标室",
                evaluation_start="2026-03-09 09:30",
                seconds_left=20,
                slip="failed",
            ),
        ),
        ("room_pending", RoomPendingView(seconds_left=20)),
        ("band_problem", BandProblemView()),
        ("band_problem-not_taken", BandProblemView(not_taken=True)),
        (
            "countdown",
            SignatureView(
                expert_name="张三", id_number_masked="1101**********002X", pan_masked="621234******1232", countdown=12
            ),
        ),
        ("staff_pin", StaffPinView()),
        (
            "staff_menu",
            StaffMenuView(
                band_stock=37,
                pending_check_ins=2,
                queued=(
                    QueuedRecordInfo("r-1", "deliver", "04A1B2C3D4E5F0", "", "", 3, "2026-06-01 01:02:03"),
                    QueuedRecordInfo(
                        "r-2",
                        "refused",
                        "04A1B2C3D4E5F1",
                        "batch_closed",
                        "case_5f2c0a9e1d3b7c4a",
                        1,
                        "2026-06-01 00:58:10",
                    ),
                ),
                self_test=(
                    SelfTestLine(device="id_card_reader", ok=True, detail="OK"),
                    SelfTestLine(device="arm", ok=False, detail="E31 stock empty"),
                ),
            ),
        ),
        (
            "staff_menu-printer",
            StaffMenuView(
                band_stock=37,
                pending_check_ins=0,
                printer_installed=True,
                printer_paper="near_end",
                test_print="printed",
            ),
        ),
    ]


def synthetic_frame(width: int = 640, height: int = 480) -> Image.Image:
    """A camera-like frame with a head-and-shoulders silhouette (no real person's face in the docs)."""
    image = Image.new("RGB", (width, height), (92, 104, 118))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, int(height * 0.62), width, height), fill=(70, 78, 90))
    draw.ellipse((int(width * 0.22), int(height * 0.72), int(width * 0.78), int(height * 1.35)), fill=(40, 52, 74))
    draw.ellipse((int(width * 0.37), int(height * 0.2), int(width * 0.63), int(height * 0.68)), fill=(214, 176, 150))
    return image.filter(ImageFilter.GaussianBlur(2))


class NoActions:
    """FlowActions that do nothing (the screenshots are of views, not of a running flow)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *_args, **_kwargs: None


def draw_signature(window: KioskWindow) -> None:
    """Sign the pad with synthetic pointer events, as a finger would."""
    from checkin.ui.screens import SignatureRenderer  # noqa: PLC0415

    renderer = window.renderer
    if not isinstance(renderer, SignatureRenderer) or renderer.pad is None:
        return
    canvas = renderer.pad.canvas
    w = int(canvas.cget("width"))
    h = int(canvas.cget("height"))
    strokes = [
        [(0.18, 0.55), (0.22, 0.35), (0.26, 0.62), (0.30, 0.40), (0.34, 0.66)],
        [(0.40, 0.30), (0.42, 0.70), (0.48, 0.50), (0.52, 0.32), (0.55, 0.72)],
        [(0.60, 0.45), (0.68, 0.40), (0.74, 0.58), (0.80, 0.36)],
    ]
    for stroke in strokes:
        x, y = stroke[0]
        canvas.event_generate("<ButtonPress-1>", x=int(x * w), y=int(y * h))
        for x, y in stroke[1:]:
            canvas.event_generate("<B1-Motion>", x=int(x * w), y=int(y * h))
        canvas.event_generate("<ButtonRelease-1>", x=int(x * w), y=int(y * h))


@contextlib.contextmanager
def xvfb(width: int, height: int) -> Iterator[str]:
    """Start a private Xvfb at width x height on a free display; yield the DISPLAY value."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(  # noqa: S603 - fixed arguments
        [
            shutil.which("Xvfb") or "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            f"{width}x{height}x24",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()  # Xvfb writes the display number once it is ready
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def capture(display: str, path: Path) -> None:
    """Screenshot the whole X screen with ImageMagick's import."""
    subprocess.run(  # noqa: S603
        [shutil.which("import") or "import", "-display", display, "-window", "root", str(path)], check=True
    )


def shoot(out: Path, width: int, height: int, names: set[str] | None, suffix: str = "") -> list[Path]:
    """Render the sample views at one size, in both languages, and save PNGs."""
    from checkin.ui.window import KioskWindow  # noqa: PLC0415 - needs DISPLAY set first

    saved: list[Path] = []
    with xvfb(width, height) as display:
        os.environ["DISPLAY"] = display
        window = KioskWindow(NoActions(), width=width, height=height, fullscreen=False, frame_source=synthetic_frame)
        for name, view in sample_views():
            if names is not None and name not in names:
                continue
            for lang in (Language.ZH, Language.EN):
                window.on_view(dataclasses.replace(view, language=lang))
                window.settle()
                if name.startswith(("signature", "countdown")) and not name.endswith("empty"):
                    draw_signature(window)
                window.settle()
                # Park the pointer in the corner so no button is drawn in its hover colour.
                window.root.event_generate("<Motion>", warp=True, x=1, y=1)
                with contextlib.suppress(tk.TclError):
                    window.root.update()
                path = out / f"{name}-{lang.value}{suffix}.png"
                capture(display, path)
                saved.append(path)
        window.root.destroy()
    return saved


LARGE_SCREEN_SAMPLES = "home,face,signature,done,card_type"


def main(argv: list[str] | None = None) -> int:
    """Command line: both sizes (each in its own process: Tk cannot move to a second X server)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screens")
    parser.add_argument("--size", help="WxH: render only this size, in this process")
    parser.add_argument("--only", help="comma-separated sample names")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.size:
        width, height = (int(v) for v in args.size.split("x"))
        names = set(args.only.split(",")) if args.only else None
        suffix = "" if (width, height) == (1280, 800) else f"-{width}x{height}"
        for path in shoot(args.out, width, height, names, suffix=suffix):
            print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
        return 0
    me = [sys.executable, "-m", "scripts.screenshots", "--out", str(args.out)]
    subprocess.run([*me, "--size", "1280x800"], check=True, cwd=REPO)  # noqa: S603
    subprocess.run([*me, "--size", "1920x1080", "--only", LARGE_SCREEN_SAMPLES], check=True, cwd=REPO)  # noqa: S603
    return 0


if __name__ == "__main__":
    sys.exit(main())
