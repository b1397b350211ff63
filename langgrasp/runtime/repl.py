"""The typed operator console: one command per line, replies and state changes printed.

``run_repl(loop)`` reads lines (``pick the red mug``, ``next``, ``confirm``, ``stop``, ``home``,
``open``, ``activate``, ``status``, ``help``) from a stream, hands each to ``PickLoop.command``
and prints the reply; state changes made by the motion thread are printed as they happen. When
the input is not a terminal (a script or a test's ``io.StringIO``), each command's motion
finishes before the next line is read, so scripted sessions run in order. Ctrl-C stops the robot
and ends the session; end of input stops a motion still running and ends it. The caller closes
the loop.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from langgrasp.runtime.intents import HELP_TEXT
from langgrasp.runtime.pick import PickLoop, StateChange

PROMPT = "langgrasp> "
QUIT_WORDS = frozenset({"quit", "exit", "bye"})
"""Lines that end the session (after stopping a running motion)."""


class _Printer:
    """Thread-safe line output; state changes from other threads are printed, own ones not."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._owner = threading.get_ident()

    def line(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def prompt(self, text: str) -> None:
        with self._lock:
            print(text, end="", file=self.out, flush=True)

    def on_change(self, change: StateChange) -> None:
        if threading.get_ident() != self._owner:  # the reply already says what this thread did
            self.line(f"  [{change.state}] {change.message}")


def _interactive(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run_repl(
    loop: PickLoop,
    lines: TextIO | None = None,
    out: TextIO | None = None,
    wait_for_motion: bool | None = None,
) -> int:
    """Run the console until end of input, ``quit`` or Ctrl-C.

    Args:
        loop: The pick loop to drive.
        lines: Input stream (default ``sys.stdin``).
        out: Output stream (default ``sys.stdout``).
        wait_for_motion: Let each command's motion finish before reading the next line; default:
            only when the input is not a terminal.

    Returns:
        Exit status 0.
    """
    lines = sys.stdin if lines is None else lines
    printer = _Printer(sys.stdout if out is None else out)
    interactive = _interactive(lines)
    wait = (not interactive) if wait_for_motion is None else wait_for_motion
    loop.add_listener(printer.on_change)
    mode = (
        "DRY RUN: nothing is sent to the devices"
        if not loop.execute
        else "EXECUTE: the robot moves"
    )
    printer.line(f"langgrasp pick console ({mode}). {HELP_TEXT}; 'quit' ends.")
    try:
        _read_commands(loop, lines, printer, interactive, wait)
    except KeyboardInterrupt:
        printer.line("")
        printer.line(loop.stop().message)
    finally:
        loop.remove_listener(printer.on_change)
    printer.line("bye")
    return 0


def _read_commands(
    loop: PickLoop, lines: TextIO, printer: _Printer, interactive: bool, wait: bool
) -> None:
    while True:
        if interactive:
            printer.prompt(PROMPT)
        raw = lines.readline()
        if not raw:  # end of input
            if loop.busy:
                printer.line(loop.stop().message)
            return
        text = raw.strip()
        if not text:
            continue
        if text.lower() in QUIT_WORDS:
            if loop.busy:
                printer.line(loop.stop().message)
            return
        if not interactive:
            printer.line(f"> {text}")
        reply = loop.command(text)
        if reply.message:
            printer.line(reply.message if reply.ok else f"! {reply.message}")
        if wait:
            loop.wait_until_settled()
