"""Spoken commands into the pick loop: push-to-talk and wake-word modes.

A ``Listener`` turns one utterance into one operator line and hands it to ``PickLoop.command``,
the entry point typed lines use, so spoken and typed commands go through the one normalisation
of ``langgrasp.runtime.intents``: "um, pick up the red mug please" said and "pick the red mug"
typed both reach the detector as "pick up the red mug".

Modes:

* push-to-talk: the operator marks the utterance (Enter to start recording, Enter to stop; a
  terminal sends no key-release events, so hold-to-talk needs a GUI); everything heard is a
  command.
* wake-word: the microphone listens all the time (``UtteranceSegmenter`` cuts the stream) and an
  utterance is a command only if the wake word ("robot") was spotted in it, or it follows a lone
  wake word within ``wake_window_s``.

Stop: a transcript that parses as STOP is acted on in both modes without the wake word and
without a confidence check. ``Listener.hear`` runs a command in the caller's thread and returns
its reply; the live sessions instead hand every other command to a ``CommandThread``, so a pick
that is still detecting (``PickLoop.pick`` runs in its caller's thread) never blocks the
listening thread, and a spoken "stop" is run there at once: it halts a detection or a motion as
soon as the utterance ends, and drops commands still queued behind it.

Sessions (WAV files, the push-to-talk console, a continuous stream) are in ``sessions``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from langgrasp.errors import InputError
from langgrasp.runtime.intents import Intent, IntentKind, parse_intent
from langgrasp.runtime.voice.audio import SPEECH_MIN_DBFS, peak_level_dbfs
from langgrasp.runtime.voice.grammar import DEFAULT_WAKE_WORD
from langgrasp.runtime.voice.transcriber import Transcriber, Transcript, check_audio, find_phrase

if TYPE_CHECKING:
    from langgrasp.runtime.pick import Reply

WAKE_WINDOW_S = 5.0
"""After a lone wake word, the next utterance within this many seconds is the command (people
say "robot", wait for attention, then speak)."""


class ListenMode(str, Enum):
    """How utterances are marked as commands."""

    PUSH_TO_TALK = "push-to-talk"
    WAKE_WORD = "wake-word"


@dataclass(frozen=True)
class ListenerConfig:
    """How the listener treats utterances.

    Attributes:
        mode: Push-to-talk or wake-word.
        wake_word: Wake-word mode: the keyphrase that opens a command.
        wake_window_s: Wake-word mode: seconds a lone wake word keeps the listener open.
        min_confidence: Ignore transcripts whose confidence is below this (0 keeps all;
            never applied to stop).
        min_level_dbfs: Utterances whose loudest 20 ms stay below this level are silence and
            not transcribed (recognisers find words in silence).
    """

    mode: ListenMode = ListenMode.PUSH_TO_TALK
    wake_word: str = DEFAULT_WAKE_WORD
    wake_window_s: float = WAKE_WINDOW_S
    min_confidence: float = 0.0
    min_level_dbfs: float = SPEECH_MIN_DBFS

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", ListenMode(self.mode))
        except ValueError as err:
            modes = ", ".join(m.value for m in ListenMode)
            raise InputError(f"unknown listen mode {self.mode!r}; use one of {modes}") from err
        wake = " ".join(str(self.wake_word).lower().split())
        if not wake:
            raise InputError("the wake word is empty; use e.g. 'robot'")
        object.__setattr__(self, "wake_word", wake)
        if not 0.0 <= self.min_confidence <= 1.0:
            raise InputError(f"min_confidence must be in [0, 1], got {self.min_confidence}")


class CommandLoop(Protocol):
    """What the listener drives: ``PickLoop`` (or anything taking operator lines)."""

    def command(self, text: str) -> Reply:
        """Run one operator line."""
        ...


@dataclass(frozen=True)
class Heard:
    """One utterance (or typed line) and what came of it.

    Attributes:
        source: Where it came from ("microphone", a file name, "typed").
        transcript: What the transcriber heard; None for typed lines.
        command: The line handed to the loop (wake word removed); None when ignored.
        intent: ``parse_intent`` of the line; None when nothing was recognised.
        reply: The loop's reply; None when ignored or without a loop.
        ignored: Why the utterance was not passed on, else None.
        woke: The wake word was spotted (wake-word mode).
    """

    source: str
    transcript: Transcript | None
    command: str | None
    intent: Intent | None
    reply: Reply | None = None
    ignored: str | None = None
    woke: bool = False

    @property
    def text(self) -> str:
        """What was heard (or typed)."""
        if self.transcript is not None:
            return self.transcript.text or self.transcript.partial
        return self.command or ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "text": self.text,
            "transcript": None if self.transcript is None else self.transcript.to_dict(),
            "command": self.command,
            "intent": None if self.intent is None else self.intent.to_dict(),
            "reply": None if self.reply is None else self.reply.to_dict(),
            "ignored": self.ignored,
            "woke": self.woke,
        }

    def format(self) -> str:
        """Operator-facing lines: what was heard, then the reply or why it was ignored."""
        t = self.transcript
        conf = "" if t is None or t.confidence is None else f", confidence {t.confidence:.2f}"
        verb = "typed" if t is None and self.command is not None else "heard"
        lines = [f"{self.source}: {verb} {self.text!r}{conf}"]
        if self.ignored is not None:
            lines.append(f"  (ignored: {self.ignored})")
        elif self.reply is not None:
            mark = "" if self.reply.ok else "! "
            lines.append(f"  {mark}{self.reply.message}" if self.reply.message else "")
        elif self.intent is not None:
            target = f": {self.intent.detector_command!r}" if self.intent.target else ""
            lines.append(f"  -> {self.intent.kind.value}{target}")
        return "\n".join(line for line in lines if line)


def text_after(text: str, phrase: str) -> str:
    """The words of ``text`` after the first ``phrase``; all of ``text`` if it is absent."""
    at = find_phrase(text, phrase)
    return text if at is None else " ".join(text.split()[at + len(phrase.split()) :])


class Listener:
    """Utterances in, operator lines out to the loop (see the module docstring).

    Args:
        transcriber: Speech-to-text backend.
        loop: The pick loop; None only prints what was understood.
        config: Mode, wake word, thresholds.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        loop: CommandLoop | None = None,
        config: ListenerConfig | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.loop = loop
        self.config = config or ListenerConfig()
        self._armed_until = -1.0

    @property
    def sample_rate(self) -> int:
        """Samples per second the transcriber takes."""
        return self.transcriber.sample_rate

    def hear(self, samples: np.ndarray, sample_rate: int, source: str = "audio") -> Heard:
        """Transcribe one utterance and pass it to the loop when it is a command.

        Runs the command in the caller's thread (``understand`` then ``dispatch``); live
        sessions use ``CommandThread`` so that the listening thread stays free.

        Args:
            samples: ``(N,)`` int16 mono audio at ``sample_rate``.
            sample_rate: Must equal ``self.sample_rate`` (convert with ``audio.prepare``).
            source: Label for messages and the audit log.

        Raises:
            AudioError: wrong dtype, shape, rate, or empty audio.
        """
        heard = self.understand(samples, sample_rate, source)
        return heard if heard.command is None else self.dispatch(heard)

    def understand(self, samples: np.ndarray, sample_rate: int, source: str = "audio") -> Heard:
        """Transcribe one utterance and decide whether it is a command, without running it.

        Returns:
            ``Heard`` with ``command`` set (pass it to ``dispatch``) or ``ignored`` saying why
            not (already in the audit log).

        Raises:
            AudioError: wrong dtype, shape, rate, or empty audio.
        """
        samples = check_audio(samples, sample_rate, self.sample_rate)
        level = peak_level_dbfs(samples, sample_rate)
        if level < self.config.min_level_dbfs:  # recognisers "hear" words in silence
            quiet = f"silence (loudest {level:.0f} dBFS); is the microphone muted?"
            return self._record(Heard(source, None, None, None, ignored=quiet))
        wake_mode = self.config.mode is ListenMode.WAKE_WORD
        wake = self.config.wake_word
        woke = wake_mode and bool(self.transcriber.spot(samples, sample_rate, [wake]))
        transcript = self.transcriber.transcribe(samples, sample_rate)
        heard = transcript.text or transcript.partial  # a fragment may still say "stop"
        line = text_after(heard, wake) if wake_mode else heard
        intent = parse_intent(line)
        reason = self._why_ignored(transcript, intent, woke)
        if reason is not None:
            return self._record(Heard(source, transcript, None, intent, ignored=reason, woke=woke))
        self._armed_until = -1.0
        return Heard(source, transcript, line, intent, woke=woke)

    def _why_ignored(self, transcript: Transcript, intent: Intent, woke: bool) -> str | None:
        """Why an utterance is not a command (None: it is); a lone wake word arms the window."""
        if intent.kind is IntentKind.STOP:
            return None  # always acted on
        wake_mode = self.config.mode is ListenMode.WAKE_WORD
        if wake_mode and not (woke or time.monotonic() < self._armed_until):
            return f"no wake word {self.config.wake_word!r}"
        if intent.kind is IntentKind.EMPTY and woke:
            window = self.config.wake_window_s
            self._armed_until = time.monotonic() + window
            return f"wake word only; listening for the command for {window:g} s"
        if not transcript.text and transcript.partial:
            return f"incomplete command {transcript.partial!r}; say it again"
        if intent.kind is IntentKind.EMPTY:
            return "nothing recognised"
        confidence, least = transcript.confidence, self.config.min_confidence
        if confidence is not None and confidence < least:
            return f"confidence {confidence:.2f} below {least:.2f}; say it again"
        return None

    def type(self, text: str, source: str = "typed") -> Heard:
        """A typed line, through the same path as a spoken one (run in the caller's thread)."""
        return self.dispatch(self.typed(text, source))

    def typed(self, text: str, source: str = "typed") -> Heard:
        """A typed line as a ``Heard`` to ``dispatch`` (or hand to a ``CommandThread``)."""
        return Heard(source, None, text, parse_intent(text))

    def dispatch(self, heard: Heard) -> Heard:
        """Run ``heard.command`` on the loop in the caller's thread.

        Returns:
            The ``Heard`` with the loop's reply (unchanged when ignored or without a loop),
            recorded in the audit log.
        """
        if self.loop is not None and heard.command is not None:
            heard = replace(heard, reply=self.loop.command(heard.command))
        return self._record(heard)

    def _record(self, heard: Heard) -> Heard:
        audit = getattr(self.loop, "audit", None)
        if audit is not None and heard.transcript is not None:
            t = heard.transcript
            audit.record(
                "heard",
                source=heard.source,
                mode=self.config.mode.value,
                text=t.text,
                confidence=t.confidence,
                command=heard.command,
                ignored=heard.ignored,
                timings_ms=t.timings_ms,
            )
        return heard


DROPPED_BY_STOP = "dropped: stop was heard before it ran"
"""Why a queued command did not run: the operator said stop after it."""


class CommandThread:
    """Runs the listener's commands off the listening thread; stop runs at once.

    ``submit`` returns at once: an ignored utterance is reported there, a STOP is dispatched in
    the caller's (listening) thread and drops the commands queued behind the running one, and
    any other command is queued for this thread, which runs them one by one in order. Every
    outcome goes to ``on_done`` (from whichever thread produced it).

    Args:
        listener: Its ``dispatch`` runs the commands.
        on_done: Called with each finished ``Heard`` (reply filled, or ``ignored``).
    """

    def __init__(self, listener: Listener, on_done: Callable[[Heard], None]) -> None:
        self.listener = listener
        self.on_done = on_done
        self._queue: queue.Queue[Heard | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0  # submitted commands not yet finished
        self._thread = threading.Thread(target=self._run, name="voice-commands", daemon=True)
        self._thread.start()

    def submit(self, heard: Heard) -> None:
        """Hand over one understood utterance or typed line (see the class docstring)."""
        if heard.command is None:
            self.on_done(heard)
            return
        if heard.intent is not None and heard.intent.kind is IntentKind.STOP:
            for dropped in self._drain():
                self.on_done(replace(dropped, ignored=DROPPED_BY_STOP))
            self.on_done(self.listener.dispatch(heard))
            return
        with self._idle:
            self._pending += 1
        self._queue.put(heard)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every submitted command has finished; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def close(self, cancel: bool = False) -> None:
        """End the thread once the queued commands ran; waits for the running one.

        Args:
            cancel: Drop the queued commands instead (each reported as dropped).
        """
        if cancel:
            for dropped in self._drain():
                self.on_done(replace(dropped, ignored="dropped: the session ended"))
        self._queue.put(None)
        self._thread.join()

    def __enter__(self) -> CommandThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)

    def _drain(self) -> list[Heard]:
        dropped = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # keep the end marker
                self._queue.put(None)
                break
            dropped.append(item)
        self._finished(len(dropped))
        return dropped

    def _finished(self, n: int) -> None:
        with self._idle:
            self._pending -= n
            self._idle.notify_all()

    def _run(self) -> None:
        while (heard := self._queue.get()) is not None:
            try:
                try:
                    done = self.listener.dispatch(heard)
                except Exception as err:  # keep serving: the operator may still say stop
                    done = replace(heard, ignored=f"the command failed: {err}")
                self.on_done(done)
            finally:
                self._finished(1)
