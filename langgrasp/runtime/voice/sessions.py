"""Listening sessions: WAV files, the push-to-talk console, a continuous stream.

Each session prints what was heard and the loop's replies, plus the state changes the loop's
motion thread makes while the session listens on. Ctrl-C stops a running motion and ends the
session, as in the typed console (``langgrasp.runtime.repl``).

The live sessions (push-to-talk, wake word) run commands in a ``CommandThread``: the listening
thread only transcribes, so "stop" is heard and run at once even while a pick is detecting.
Replies are printed when each command finishes. ``run_files`` runs each file's command in turn.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import numpy as np

from langgrasp.runtime.intents import HELP_TEXT
from langgrasp.runtime.voice.audio import (
    SegmenterConfig,
    UtteranceSegmenter,
    load_utterance,
    prepare,
)
from langgrasp.runtime.voice.listener import CommandThread, Heard, Listener
from langgrasp.runtime.voice.transcriber import AudioError

if TYPE_CHECKING:
    from langgrasp.runtime.pick import StateChange

QUIT_WORDS = frozenset({"quit", "exit", "bye"})
"""Typed lines that end a push-to-talk session (as in the typed console)."""


class _Output:
    """Thread-safe printing; state changes from the motion thread are printed as they happen."""

    def __init__(self, out: TextIO | None, as_json: bool = False) -> None:
        self.out = out or sys.stdout
        self.as_json = as_json
        self._lock = threading.Lock()
        self._owner = threading.get_ident()

    def line(self, text: str) -> None:
        if not self.as_json and text:
            with self._lock:
                print(text, file=self.out, flush=True)

    def heard(self, heard: Heard) -> None:
        with self._lock:
            text = json.dumps(heard.to_dict()) if self.as_json else heard.format()
            print(text, file=self.out, flush=True)

    def on_change(self, change: StateChange) -> None:
        if threading.get_ident() != self._owner:
            self.line(f"  [{change.state}] {change.message}")


def _banner(listener: Listener, how: str) -> str:
    loop = listener.loop
    if loop is None:
        mode = "no robot: only what was understood is printed"
    elif getattr(loop, "execute", False):
        mode = "EXECUTE: the robot moves"
    else:
        mode = "DRY RUN: nothing is sent to the devices"
    return f"langgrasp voice, {listener.config.mode.value} ({mode}). {how}"


class _Session:
    """Listener + output + the loop's state changes, for the duration of a ``with`` block."""

    def __init__(self, listener: Listener, out: TextIO | None, as_json: bool) -> None:
        self.listener = listener
        self.output = _Output(out, as_json)
        self.loop: Any = listener.loop

    def __enter__(self) -> _Session:
        if self.loop is not None and hasattr(self.loop, "add_listener"):
            self.loop.add_listener(self.output.on_change)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and hasattr(self.loop, "remove_listener"):
            self.loop.remove_listener(self.output.on_change)

    def stop(self) -> None:
        """Stop a running motion (Ctrl-C, end of input)."""
        if self.loop is not None and getattr(self.loop, "busy", False):
            self.output.line(self.loop.stop().message)

    def settle(self) -> None:
        if self.loop is not None and hasattr(self.loop, "wait_until_settled"):
            self.loop.wait_until_settled()


def run_files(
    listener: Listener,
    paths: Sequence[str | Path],
    out: TextIO | None = None,
    wait_for_motion: bool = True,
    as_json: bool = False,
) -> list[Heard]:
    """Hear WAV files in order, one utterance each (scripts and tests instead of a microphone).

    Files are mixed down to mono and resampled to the transcriber's rate.

    Args:
        listener: The listener (its loop gets the commands).
        paths: WAV files.
        out: Output stream (default stdout).
        wait_for_motion: Let each command's motion finish before the next file; False sends
            the next file at once, so a "stop" file interrupts the motion before it.
        as_json: Print one JSON object per file instead of text.

    Returns:
        What was heard in each file. The last motion is waited for before returning.

    Raises:
        AudioError: a file that is not a readable PCM WAV file.
    """
    heard_all = []
    with _Session(listener, out, as_json) as session:
        try:
            for path in paths:
                samples = load_utterance(path, listener.sample_rate)
                heard = listener.hear(samples, listener.sample_rate, Path(path).name)
                session.output.heard(heard)
                heard_all.append(heard)
                if wait_for_motion:
                    session.settle()
            session.settle()
        except KeyboardInterrupt:
            session.stop()
    return heard_all


class Recorder(Protocol):
    """Push-to-talk audio: ``Microphone`` or anything recording between start and stop."""

    sample_rate: int

    def start(self) -> None:
        """Start recording."""
        ...

    def stop(self) -> np.ndarray:
        """Stop; the ``(N,)`` int16 samples at ``sample_rate`` recorded since ``start``."""
        ...


def run_push_to_talk(
    listener: Listener,
    recorder: Recorder,
    keys: TextIO | None = None,
    out: TextIO | None = None,
    as_json: bool = False,
) -> int:
    """Push-to-talk console: Enter starts a recording, Enter ends it; typed lines work too.

    A typed line goes through the same path as speech; ``quit`` or end of input ends the
    session and Ctrl-C stops the robot and ends it (both stop a running motion).

    Returns:
        Exit status 0.
    """
    keys = keys or sys.stdin
    with _Session(listener, out, as_json) as session:
        say = session.output.line
        say(_banner(listener, f"Enter: talk, Enter again: done; or type a command. {HELP_TEXT}"))
        commands = CommandThread(listener, session.output.heard)
        try:
            while True:
                line = keys.readline()
                text = line.strip()
                if not line or text.lower() in QUIT_WORDS:
                    commands.close()  # let what was asked for finish replying
                    session.stop()
                    break
                if text:
                    commands.submit(listener.typed(text))
                    continue
                recorder.start()
                say("recording... press Enter to stop")
                keys.readline()
                samples = recorder.stop()
                try:
                    commands.submit(listener.understand(samples, recorder.sample_rate, "mic"))
                except AudioError as err:
                    say(f"! {err}")
        except KeyboardInterrupt:
            say("")
            session.stop()
            commands.close(cancel=True)
    return 0


def run_wake_word(
    listener: Listener,
    blocks: Iterable[np.ndarray],
    block_rate: int,
    out: TextIO | None = None,
    segmenter: SegmenterConfig | None = None,
    as_json: bool = False,
    source: str = "mic",
) -> list[Heard]:
    """Listen to a continuous stream: cut utterances, hear each (wake-word mode).

    Args:
        listener: The listener; wake-word mode is what this is for.
        blocks: ``(N,)`` int16 mono blocks (``Microphone.blocks()``, ``audio.wav_blocks``).
        block_rate: Samples per second of ``blocks``.
        out: Output stream (default stdout).
        segmenter: Endpointing settings.
        as_json: One JSON object per utterance instead of text.
        source: Label of the stream in messages.

    Returns:
        What was heard, in the order each utterance was finished with (ignored or stop at
        once, other commands when their reply came); queued commands are waited for when the
        stream ends; Ctrl-C stops the robot and ends the session.
    """
    cutter = UtteranceSegmenter(block_rate, segmenter)
    heard_all: list[Heard] = []
    with _Session(listener, out, as_json) as session:
        wake = listener.config.wake_word
        session.output.line(
            _banner(listener, f"Say '{wake}' and the command; 'stop' works without it.")
        )

        def done(heard: Heard) -> None:
            heard_all.append(heard)
            session.output.heard(heard)

        commands = CommandThread(listener, done)

        def hear(utterance: np.ndarray) -> None:
            samples = prepare(utterance, block_rate, listener.sample_rate)
            commands.submit(listener.understand(samples, listener.sample_rate, source))

        try:
            for block in blocks:
                for utterance in cutter.feed(block):
                    hear(utterance)
            for utterance in cutter.flush():
                hear(utterance)
            commands.close()
            session.settle()
        except KeyboardInterrupt:
            session.stop()
            commands.close(cancel=True)
    return heard_all
