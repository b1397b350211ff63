"""Live audio from a microphone through ``sounddevice`` (PortAudio).

``sounddevice`` is imported when a ``Microphone`` opens, never at module import, so the runtime
imports on machines without it; the error then says what to install. Push-to-talk records
between ``start()`` and ``stop()``; wake-word mode reads the endless ``blocks()`` stream.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from langgrasp.runtime.voice.audio import resample
from langgrasp.runtime.voice.transcriber import SPEECH_SAMPLE_RATE, VoiceError

MIC_BLOCK_S = 0.03
"""Seconds of audio per block from PortAudio (30 ms: short enough for endpointing)."""

MIC_QUEUE_S = 10.0
"""Most audio ``blocks()`` holds for a reader that fell behind, seconds (the longest utterance,
``SegmenterConfig.max_utterance_s``); older blocks are dropped, so a stalled listener cannot
fill memory and, once it catches up, hears the present rather than a backlog."""

SOUNDDEVICE_HINT = "pip install sounddevice"
PORTAUDIO_HINT = "sudo apt install libportaudio2 (Debian/Ubuntu/JetPack)"


class MicrophoneUnavailableError(VoiceError):
    """No microphone can be opened; the message says what to install or which device to pick."""


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError as err:
        raise MicrophoneUnavailableError(
            f"live audio needs the sounddevice package: {SOUNDDEVICE_HINT} (and PortAudio: "
            f"{PORTAUDIO_HINT}); or pass recordings with --wav"
        ) from err
    except OSError as err:  # sounddevice is there, the PortAudio library is not
        raise MicrophoneUnavailableError(
            f"sounddevice cannot load PortAudio ({err}): {PORTAUDIO_HINT}; or pass recordings "
            "with --wav"
        ) from err
    return sounddevice


class Microphone:
    """Live mono input through sounddevice; blocks arrive from PortAudio's thread.

    Push-to-talk uses ``start()``/``stop()``; wake-word mode iterates ``blocks()``. The device
    records at ``sample_rate`` when it supports it, else at its own default rate, which
    ``rate`` reports (``stop()`` converts to ``sample_rate``).

    Args:
        sample_rate: Rate the transcriber wants.
        device: PortAudio device index or name substring; None: the default input.
        block_s: Seconds per block delivered by PortAudio.

    Raises:
        MicrophoneUnavailableError: on ``open()``: sounddevice/PortAudio missing, no input
            device, or the device refuses mono 16-bit input.
    """

    def __init__(
        self,
        sample_rate: int = SPEECH_SAMPLE_RATE,
        device: int | str | None = None,
        block_s: float = MIC_BLOCK_S,
    ) -> None:
        self.sample_rate = sample_rate
        self.device = device
        self.block_s = block_s
        self.rate = sample_rate
        self._stream: Any = None
        self._blocks: queue.Queue[np.ndarray] = queue.Queue(
            maxsize=max(1, math.ceil(MIC_QUEUE_S / block_s))
        )
        self.dropped_blocks = 0  # blocks discarded because blocks() was not read in time
        self._recording: list[np.ndarray] | None = None
        self._streaming = False  # blocks() is being read: queue every block
        self._lock = threading.Lock()

    def open(self) -> Microphone:
        """Open and start the input stream (idempotent)."""
        if self._stream is not None:
            return self
        sd = _import_sounddevice()
        try:
            info = sd.query_devices(self.device, "input")
            try:
                sd.check_input_settings(self.device, 1, "int16", samplerate=self.sample_rate)
                self.rate = self.sample_rate
            except Exception:  # the device does not record at this rate: record at its own
                self.rate = int(info["default_samplerate"])
            self._stream = sd.InputStream(
                samplerate=self.rate,
                blocksize=max(1, round(self.block_s * self.rate)),
                device=self.device,
                channels=1,
                dtype="int16",
                callback=self._callback,
            )
            self._stream.start()
        except Exception as err:
            self._stream = None
            which = (
                "the default microphone" if self.device is None else f"microphone {self.device!r}"
            )
            raise MicrophoneUnavailableError(
                f"cannot open {which} ({err}); list devices with `python -m sounddevice` and "
                "pass --device"
            ) from err
        return self

    def _callback(self, data: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        block = np.array(data[:, 0], dtype=np.int16)
        with self._lock:
            if self._recording is not None:
                self._recording.append(block)
        if self._streaming:
            self._put(block)

    def _put(self, block: np.ndarray) -> None:
        """Queue a block for ``blocks()``; when full, drop the oldest (callbacks never block)."""
        while True:
            try:
                self._blocks.put_nowait(block)
                return
            except queue.Full:
                try:
                    self._blocks.get_nowait()
                    self.dropped_blocks += 1
                except queue.Empty:
                    pass

    def start(self) -> None:
        """Start a push-to-talk recording."""
        self.open()
        with self._lock:
            self._recording = []

    def stop(self) -> np.ndarray:
        """End the recording: ``(N,)`` int16 at ``sample_rate`` (empty if nothing came)."""
        with self._lock:
            blocks, self._recording = self._recording or [], None
        if not blocks:
            return np.zeros(0, np.int16)
        return resample(np.concatenate(blocks), self.rate, self.sample_rate)

    def blocks(self, timeout_s: float = 1.0) -> Iterator[np.ndarray]:
        """Endless stream of ``(N,)`` int16 blocks at ``rate``; stops when closed.

        Blocks are queued only while the stream is read: when the generator ends (closed,
        exhausted or dropped) queuing stops and what was left is discarded.
        """
        self.open()
        self._streaming = True
        try:
            while self._stream is not None:
                try:
                    yield self._blocks.get(timeout=timeout_s)
                except queue.Empty:
                    continue
        finally:
            self._streaming = False
            self._discard_queued()

    def _discard_queued(self) -> None:
        while True:
            try:
                self._blocks.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        """Stop and release the stream."""
        stream, self._stream = self._stream, None
        self._streaming = False
        if stream is not None:
            stream.stop()
            stream.close()

    def __enter__(self) -> Microphone:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
