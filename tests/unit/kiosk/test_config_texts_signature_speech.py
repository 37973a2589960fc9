"""Configuration loading, the words table, the signature's PNG, and the speech prompts."""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING

import pytest
import pyttsx3
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from checkin.config import ConfigError, hash_pin, load_config, verify_pin
from checkin.flow.views import FaceView, HomeView, IdCardView, SignatureView
from checkin.signature import MIN_INK_PX, Signature
from checkin.speech import PromptSpeaker, Speaker
from checkin.texts import TEXTS, Language, placeholders, text

if TYPE_CHECKING:
    from pathlib import Path

GOOD = """
[kiosk]
id = "K1"
[staff]
pin_hash = "{pin_hash}"
[data]
key = "kiosk-test-secret-kiosk-test-secret"
"""


@pytest.fixture(scope="module")
def the_hash() -> str:
    return hash_pin("246810")


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_a_minimal_config_loads_with_the_documented_defaults(tmp_path: Path, the_hash: str) -> None:
    cfg = load_config(write(tmp_path, GOOD.format(pin_hash=the_hash)), env={})
    assert (cfg.kiosk_id, cfg.inactivity_s, cfg.countdown_s, cfg.done_return_s, cfg.max_face_attempts) == (
        "K1",
        60.0,
        15,
        20,
        3,
    )
    assert cfg.platform.address == "127.0.0.1:50051"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[kiosk]\ncolour = 1\n", "Unknown option 'colour' in section 'kiosk'"),
        ("[printer]\nx = 1\n", "Unknown section 'printer'"),
        ("[timeouts]\ninactivity_s = 1\n", "Option 'inactivity_s' in section 'timeouts' must be at least 5"),
        ('[timeouts]\ncountdown_s = "soon"\n', "Option 'countdown_s' in section 'timeouts' must be a whole number"),
        ('[kiosk]\nlanguage = "fr"\n', "must be one of zh, en"),
        ('[platform]\naddress = "10.0.0.5:50051"\n', "Option 'ca_cert' in section 'platform' is required"),
        ('[platform]\nca_cert = "/nonexistent/ca.pem"\n', "go together"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(tmp_path: Path, the_hash: str, extra: str, message: str) -> None:
    body = GOOD.format(pin_hash=the_hash)
    # Merge the extra table into an existing one when it names the same section.
    for section in ("kiosk", "timeouts", "platform"):
        if extra.startswith(f"[{section}]") and f"[{section}]" in body:
            body = body.replace(f"[{section}]\n", extra, 1)
            break
    else:
        body += extra
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(write(tmp_path, body), env={})


def test_missing_secrets_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Option 'id' in section 'kiosk' is required"):
        load_config(write(tmp_path, ""), env={})
    with pytest.raises(ConfigError, match="never the PIN itself"):
        load_config(write(tmp_path, '[kiosk]\nid="K1"\n[staff]\npin_hash="1234"\n[data]\nkey="x"\n'), env={})


def test_environment_overrides_the_file(tmp_path: Path, the_hash: str) -> None:
    cfg = load_config(
        write(tmp_path, GOOD.format(pin_hash=the_hash)),
        env={
            "CHECKIN_TIMEOUTS_INACTIVITY_S": "90",
            "CHECKIN_SPEECH_ENABLED": "off",
            "CHECKIN_DATA_KEY": "from-env-secret-0123456789",
        },
    )
    assert (cfg.inactivity_s, cfg.speech_enabled, cfg.data_key) == (90.0, False, "from-env-secret-0123456789")


def test_pin_hash_round_trip_and_refusals(the_hash: str) -> None:
    assert verify_pin("246810", the_hash)
    assert not verify_pin("246811", the_hash)
    assert not verify_pin("246810", "scrypt$garbage")
    assert "246810" not in the_hash
    with pytest.raises(ConfigError):
        hash_pin("12")


def test_every_text_has_both_languages_with_the_same_placeholders() -> None:
    for key, (zh, en) in TEXTS.items():
        assert zh.strip(), key
        assert en.strip(), key
        assert placeholders(zh) == placeholders(en), key


def test_text_fills_placeholders_and_shows_a_dash_for_a_missing_one() -> None:
    assert text("refusal.face_mismatch", Language.ZH, n=2).endswith("（第2次，共3次）")
    assert text("done.room", Language.EN, hotel="H") == "Your room: H —"
    with pytest.raises(KeyError, match="no text for key"):
        text("no.such.key", Language.ZH)


# ---- signature -------------------------------------------------------------------------------------


def test_a_tap_is_blank_and_a_stroke_is_not() -> None:
    sig = Signature(400, 150)
    assert sig.is_blank()
    sig.begin_stroke(10, 10)
    assert sig.is_blank()
    sig.extend_stroke(10 + MIN_INK_PX, 10)
    assert not sig.is_blank()
    sig.clear()
    assert sig.is_blank()


# No per-example deadline: PNG compression time varies with machine load, and this test is about
# correctness (any strokes, even far off the pad, give a PNG of the pad's size), not speed.
@settings(deadline=None)
@given(st.lists(st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)), min_size=1, max_size=20), max_size=8))
def test_any_strokes_export_a_png_of_the_pad_size(strokes: list[list[tuple[float, float]]]) -> None:
    sig = Signature(300, 100)
    for stroke in strokes:
        sig.begin_stroke(*stroke[0])
        for x, y in stroke[1:]:
            sig.extend_stroke(x, y)
    image = Image.open(io.BytesIO(sig.to_png()))
    assert image.size == (300, 100)
    assert image.format == "PNG"


def test_pad_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Signature(0, 10)


# ---- speech ------------------------------------------------------------------------------------------


class FakeEngine:
    def __init__(self) -> None:
        self.said: list[tuple[str, object]] = []
        self.voice: object = None
        self.spoke = threading.Event()

    def say(self, line: str) -> None:
        self.said.append((line, self.voice))

    def runAndWait(self) -> None:  # noqa: N802
        self.spoke.set()

    def setProperty(self, name: str, value: object) -> None:  # noqa: N802
        if name == "voice":
            self.voice = value

    def stop(self) -> None:
        pass

    def getProperty(self, name: str) -> object:  # noqa: N802
        return [type("Voice", (), {"id": "sit/cmn"})(), type("Voice", (), {"id": "gmw/en"})()]


def test_prompts_say_each_new_line_once_in_the_right_voice() -> None:
    engine = FakeEngine()
    speaker = Speaker(engine=engine)
    prompts = PromptSpeaker(speaker)
    speaker.start()
    try:
        prompts.on_view(IdCardView())
        assert engine.spoke.wait(5)
        prompts.on_view(IdCardView())  # same line: not repeated
        engine.spoke.clear()
        prompts.on_view(FaceView(hint="blink_please", language=Language.EN))
        assert engine.spoke.wait(5)
    finally:
        speaker.stop()
    assert engine.said == [("请将身份证放在感应区", "sit/cmn"), ("Please blink", "gmw/en")]


def test_prompts_are_silent_when_the_expert_switches_speech_off() -> None:
    engine = FakeEngine()
    speaker = Speaker(engine=engine)
    prompts = PromptSpeaker(speaker)
    speaker.start()
    prompts.on_view(HomeView(speech_on=False))
    prompts.on_view(SignatureView(expert_name="x", id_number_masked="y", pan_masked="z", speech_on=False))
    speaker.stop()
    assert engine.said == []


def test_speech_degrades_to_text_when_no_engine_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("no audio device")

    monkeypatch.setattr(pyttsx3, "init", broken)
    speaker = Speaker()
    speaker.start()
    speaker.say("请正视摄像头", Language.ZH)
    speaker.stop()
    assert speaker.spoken == ["请正视摄像头"]
