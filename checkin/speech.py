"""Spoken prompts: pyttsx3 with espeak-ng's Mandarin voice, on its own thread, never blocking the UI.

The speaker is a flow listener: each new screen (or face hint, or error) is said once. Speech can be
switched off by the expert (the flow's speech toggle) or by configuration; with no speech engine
installed the kiosk degrades silently to text only.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Protocol

from checkin.texts import Language
from checkin.ui.wording import spoken_line

if TYPE_CHECKING:
    from checkin.flow.views import View

log = logging.getLogger(__name__)


class SpeechEngine(Protocol):
    """The part of pyttsx3's engine the speaker uses."""

    def say(self, text: str) -> None:
        """Queue text."""
        ...

    def runAndWait(self) -> None:  # noqa: N802 - pyttsx3's name
        """Speak what is queued."""
        ...

    def setProperty(self, name: str, value: object) -> None:  # noqa: N802 - pyttsx3's name
        """Set voice, rate or volume."""
        ...

    def stop(self) -> None:
        """Stop speaking."""
        ...

    def getProperty(self, name: str) -> Any:  # noqa: N802 - pyttsx3's name
        """Read a property ("voices" lists the installed voices)."""
        ...


def _voice_id(engine: SpeechEngine, name: str) -> str:
    """espeak-ng voice ids look like 'sit/cmn'; find the one named `name` (or keep the name)."""
    voices = engine.getProperty("voices") or []
    for voice in voices:
        vid = str(getattr(voice, "id", ""))
        if vid == name or vid.endswith(f"/{name}"):
            return vid
    return name


def _pyttsx3_engine() -> SpeechEngine | None:
    try:
        import pyttsx3  # noqa: PLC0415 - optional at run time

        engine: SpeechEngine = pyttsx3.init("espeak")
    except Exception as err:  # no espeak-ng, no audio: text only
        log.warning("speech engine unavailable (%s): prompts are text only", type(err).__name__)
        return None
    return engine


# espeak-ng voice names: cmn is Mandarin (Latin-script input is read in English by it), en for English.
_VOICES = {Language.ZH: "cmn", Language.EN: "en"}


class Speaker:
    """Says lines on a background thread; a newer line replaces any line still waiting."""

    def __init__(
        self, *, enabled: bool = True, rate: int = 150, zh_voice: str = "cmn", engine: SpeechEngine | None = None
    ) -> None:
        self.enabled = enabled
        self._rate = rate
        self._voices = {**_VOICES, Language.ZH: zh_voice}
        self._engine = engine
        # One waiting line at most (say() replaces it), plus room for stop()'s sentinel.
        self._lines: queue.Queue[tuple[str, Language] | None] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self.spoken: list[str] = []  # what was said, for diagnostics and tests

    def start(self) -> None:
        """Start the speech thread (creates the engine on it, as pyttsx3 wants)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="speech", daemon=True)
            self._thread.start()

    def say(self, line: str, language: Language) -> None:
        """Say `line` soon; never blocks (a line not yet started is replaced)."""
        if not self.enabled or not line:
            return
        with contextlib.suppress(queue.Empty):
            self._lines.get_nowait()
        try:
            self._lines.put_nowait((line, language))
        except queue.Full:  # pragma: no cover - the only producer just emptied it
            log.debug("speech line dropped")

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread after the line already waiting (if any)."""
        self._lines.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        engine = self._engine if self._engine is not None else _pyttsx3_engine()
        if engine is not None:
            try:
                engine.setProperty("rate", self._rate)
                self._voices = {lang: _voice_id(engine, name) for lang, name in self._voices.items()}
            except Exception as err:
                log.warning("could not set up the speech engine: %s", type(err).__name__)
        while True:
            item = self._lines.get()
            if item is None:
                return
            line, language = item
            self.spoken.append(line)
            if engine is None:
                continue
            try:
                engine.setProperty("voice", self._voices[language])
                engine.say(line)
                engine.runAndWait()
            except Exception as err:  # a broken audio device must not stop the kiosk
                log.warning("speech failed: %s", type(err).__name__)


class PromptSpeaker:
    """A flow listener that speaks each new main line, hint or error once."""

    def __init__(self, speaker: Speaker) -> None:
        self._speaker = speaker
        self._last: str | None = None

    def on_view(self, view: View) -> None:
        """Say what changed, if the expert has not switched speech off."""
        line = spoken_line(view)
        if line == self._last:
            return
        self._last = line
        if view.speech_on:
            self._speaker.say(line, view.language)
