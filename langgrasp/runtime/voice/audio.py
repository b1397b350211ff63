"""Audio in: WAV files, conversion to 16 kHz mono int16, utterance segmentation, a microphone.

* ``read_wav`` / ``write_wav``: PCM WAV files (8, 16, 24 or 32-bit integer samples).
* ``to_int16``, ``to_mono``, ``resample`` and ``prepare`` (all three): explicit conversions;
  transcribers refuse anything but ``(N,)`` int16 at their rate instead of guessing.
* ``UtteranceSegmenter``: cuts a continuous stream into utterances by energy against an
  adaptive noise floor (wake-word mode listens continuously).
* ``synthesize``: test speech from espeak-ng.

The live microphone is in ``langgrasp.runtime.voice.microphone``.

Samples are int16 in [-32768, 32767]; shapes are ``(N,)`` mono or ``(N, C)`` interleaved
channels; rates are samples per second.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from langgrasp.runtime.voice.transcriber import AudioError, VoiceError

INT16_FULL_SCALE = 32768.0
"""Magnitude of the most negative int16 sample: float audio in [-1, 1] maps onto it."""

SILENCE_DBFS = -100.0
"""Level given to digital silence (log of zero), far below any real noise floor."""

SPEECH_MIN_DBFS = -50.0
"""Quietest 20 ms frame level counted as speech, dB full scale (speech at arm's length into a
typical microphone peaks far above it; a muted or unplugged one stays below)."""

FRAME_S = 0.02
"""Analysis frame for levels, seconds (the usual speech frame length)."""

FLOOR_WINDOW_S = 3.0
"""Minimum-statistics window for the noise floor, seconds. Martin (2001, "Noise power spectral
density estimation based on optimal smoothing and minimum statistics") uses about 1.5 s; we use
twice that because a spoken command is one breath of a few seconds and always has quiet frames
(pauses, stop consonants) within 3 s, while steady noise has none."""

ESPEAK = "espeak-ng"
ESPEAK_VOICE = "en-us+f2"
"""espeak-ng voice for test speech: of the en-us voices tried (default, +m1, +m3, +f2, +f3,
+f4, en, en-gb-x-rp, en-us-nyc), PocketSphinx's wheel model recognised this one best."""
ESPEAK_WORDS_PER_MINUTE = 150
"""espeak-ng speed: slow speech (120-130 words per minute) was recognised worse than 150-160."""
ESPEAK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Audio:
    """Samples with their rate.

    Attributes:
        samples: ``(N,)`` mono or ``(N, C)`` int16 samples.
        sample_rate: Samples per second (per channel).
    """

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.samples.shape[0] / self.sample_rate


def read_wav(path: str | Path) -> Audio:
    """Read a PCM WAV file.

    Returns:
        ``Audio`` with int16 samples, ``(N,)`` for mono and ``(N, C)`` otherwise (8, 24 and
        32-bit files are scaled to 16 bits).

    Raises:
        AudioError: the file is missing, not a WAV file, or not integer PCM.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as err:
        raise AudioError(
            f"{path}: not a PCM WAV file ({err}); convert it to 16-bit PCM WAV, e.g. "
            f"`ffmpeg -i {path.name} -ac 1 -ar 16000 -c:a pcm_s16le out.wav`"
        ) from err
    samples = _pcm_to_int16(data, width, path)
    if channels > 1:
        samples = samples[: samples.size - samples.size % channels].reshape(-1, channels)
    return Audio(samples, rate)


def _pcm_to_int16(data: bytes, width: int, path: Path) -> np.ndarray:
    if width == 1:  # unsigned 8-bit, 128 = silence
        return ((np.frombuffer(data, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if width == 2:
        return np.frombuffer(data, "<i2").astype(np.int16)
    if width == 3:
        raw = np.frombuffer(data[: len(data) - len(data) % 3], np.uint8).reshape(-1, 3)
        return (raw[:, 2].astype(np.int8).astype(np.int16) << 8) | raw[:, 1].astype(np.int16)
    if width == 4:
        return (np.frombuffer(data, "<i4") >> 16).astype(np.int16)
    raise AudioError(f"{path}: {8 * width}-bit samples are not supported; use 16-bit PCM")


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write ``(N,)`` or ``(N, C)`` int16 samples as a 16-bit PCM WAV file; returns the path."""
    samples = to_int16(samples)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def to_int16(samples: np.ndarray) -> np.ndarray:
    """int16 samples from int16, float (full scale [-1, 1], clipped) or int32 (top 16 bits)."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples
    if np.issubdtype(samples.dtype, np.floating):
        scaled = np.round(np.clip(samples, -1.0, 1.0) * INT16_FULL_SCALE)
        return np.clip(scaled, -INT16_FULL_SCALE, INT16_FULL_SCALE - 1).astype(np.int16)
    if samples.dtype == np.int32:
        return (samples >> 16).astype(np.int16)
    raise AudioError(f"cannot convert {samples.dtype} samples; give int16, int32 or float")


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``(N, C)`` -> ``(N,)`` by averaging the channels; ``(N,)`` is returned as is."""
    samples = to_int16(samples)
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"audio must have shape (N,) or (N, channels), got {samples.shape}")
    return np.round(samples.mean(axis=1)).astype(np.int16)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling of ``(N,)`` int16 samples (FFT method, NumPy only).

    The spectrum is cut (or zero-padded) at the new Nyquist frequency, which low-passes before
    decimating; the clip is treated as one period, fine for utterances of a few seconds.
    """
    samples = to_int16(samples)
    if from_rate == to_rate or samples.size == 0:
        return samples
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    n_out = max(1, round(samples.size * to_rate / from_rate))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    keep = min(spectrum.size, n_out // 2 + 1)
    out = np.fft.irfft(spectrum[:keep], n_out) * (n_out / samples.size)
    return np.clip(np.round(out), -INT16_FULL_SCALE, INT16_FULL_SCALE - 1).astype(np.int16)


def prepare(samples: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Any int16/float audio -> ``(N,)`` int16 mono at ``target_rate`` (what transcribers take)."""
    return resample(to_mono(samples), sample_rate, target_rate)


def load_utterance(path: str | Path, target_rate: int) -> np.ndarray:
    """A WAV file as ``(N,)`` int16 mono at ``target_rate``.

    Raises:
        AudioError: unreadable file, or no samples in it.
    """
    audio = read_wav(path)
    if audio.samples.shape[0] == 0:
        raise AudioError(f"{path}: the WAV file has no samples")
    return prepare(audio.samples, audio.sample_rate, target_rate)


def wav_blocks(path: str | Path, block_s: float = 0.05) -> tuple[Iterator[np.ndarray], int]:
    """A WAV file as a stream of mono blocks, like a microphone: (blocks, sample rate)."""
    audio = read_wav(path)
    mono = to_mono(audio.samples)
    step = max(1, round(block_s * audio.sample_rate))
    return (mono[i : i + step] for i in range(0, mono.size, step)), audio.sample_rate


def synthesize(
    text: str,
    path: str | Path,
    voice: str = ESPEAK_VOICE,
    words_per_minute: int = ESPEAK_WORDS_PER_MINUTE,
) -> Path:
    """Speak ``text`` into a WAV file with espeak-ng: test audio without a microphone.

    espeak-ng writes 16-bit mono at its own rate (22050 Hz); ``load_utterance`` converts.

    Raises:
        VoiceError: espeak-ng is not installed or failed.
    """
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise VoiceError(f"{ESPEAK} is not installed: sudo apt install espeak-ng")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [exe, "-v", voice, "-s", str(words_per_minute), "-w", str(path), text]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=ESPEAK_TIMEOUT_S)
    except (subprocess.SubprocessError, OSError) as err:
        raise VoiceError(f"{ESPEAK} failed to speak {text!r}: {err}") from err
    return path


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 samples in dB full scale (``SILENCE_DBFS`` for digital silence)."""
    if samples.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) / INT16_FULL_SCALE
    return SILENCE_DBFS if rms <= 0.0 else max(SILENCE_DBFS, 20.0 * float(np.log10(rms)))


def peak_level_dbfs(samples: np.ndarray, sample_rate: int, frame_s: float = FRAME_S) -> float:
    """Level of the loudest ``frame_s`` frame of ``(N,)`` int16 samples, dB full scale."""
    step = max(1, round(frame_s * sample_rate))
    return max(
        (level_dbfs(samples[i : i + step]) for i in range(0, samples.size, step)),
        default=SILENCE_DBFS,
    )


# -- segmentation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmenterConfig:
    """Energy endpointing settings (seconds and dB).

    Attributes:
        frame_s: Analysis frame (20 ms: the usual speech frame length).
        speech_margin_db: A frame is speech this far above the noise floor (12 dB: a voice at
            arm's length over room noise).
        min_level_dbfs: Never speech below this level, dB full scale.
        start_s: Speech needed to open an utterance (drops clicks).
        end_silence_s: Silence that closes it (a pause between words is shorter).
        pre_roll_s: Audio kept from before the onset (quiet first consonants).
        min_speech_s: Shorter utterances are dropped as noise.
        max_utterance_s: Longer utterances are cut here.
        floor_adapt: Fraction the noise floor moves toward a louder non-speech frame.
        floor_window_s: Minimum statistics: the floor is never below the quietest frame of
            the last ``floor_window_s``, so a room that got louder (a fan, a machine) stops
            counting as speech after this long instead of cutting 10 s utterances forever.
    """

    frame_s: float = FRAME_S
    speech_margin_db: float = 12.0
    min_level_dbfs: float = SPEECH_MIN_DBFS
    start_s: float = 0.06
    end_silence_s: float = 0.5
    pre_roll_s: float = 0.25
    min_speech_s: float = 0.15
    max_utterance_s: float = 10.0
    floor_adapt: float = 0.05
    floor_window_s: float = FLOOR_WINDOW_S


class UtteranceSegmenter:
    """Cut a continuous int16 stream into utterances (speech between pauses).

    Args:
        sample_rate: Samples per second of the stream.
        config: Thresholds and durations.
    """

    def __init__(self, sample_rate: int, config: SegmenterConfig | None = None) -> None:
        self.config = c = config or SegmenterConfig()
        self.sample_rate = int(sample_rate)
        self._frame = max(1, round(c.frame_s * self.sample_rate))
        self._pending = np.zeros(0, np.int16)
        self._pre: deque[np.ndarray] = deque(maxlen=max(1, round(c.pre_roll_s / c.frame_s)))
        self._current: list[np.ndarray] = []
        self._onset = 0  # consecutive speech frames before an utterance opens
        self._speech = 0  # speech frames in the current utterance
        self._silence = 0  # consecutive non-speech frames in it
        self._floor: float | None = None
        self._levels: deque[float] = deque(maxlen=max(1, round(c.floor_window_s / c.frame_s)))
        self._current_levels: list[float] = []  # level of each frame of the utterance

    def feed(self, block: np.ndarray) -> list[np.ndarray]:
        """Add ``(N,)`` int16 samples; returns the utterances completed by them."""
        self._pending = np.concatenate([self._pending, to_mono(block)])
        done = []
        n = self._pending.size // self._frame * self._frame
        for start in range(0, n, self._frame):
            utterance = self._step(self._pending[start : start + self._frame])
            if utterance is not None:
                done.append(utterance)
        self._pending = self._pending[n:]
        return done

    def flush(self) -> list[np.ndarray]:
        """End of stream: the utterance in progress, if long enough."""
        out = self._close() if self._current else None
        return [] if out is None else [out]

    @property
    def noise_floor_dbfs(self) -> float | None:
        """The current noise-floor estimate, dB full scale (None before the first frame)."""
        return self._floor

    def _is_speech(self, level: float) -> bool:
        c = self.config
        floor = level if self._floor is None else self._floor
        self._levels.append(level)
        if len(self._levels) == self._levels.maxlen:  # minimum statistics: a louder room
            quietest = min(self._levels)
            if quietest > floor:
                floor = quietest
                self._recount(floor)
        speech = level >= max(floor + c.speech_margin_db, c.min_level_dbfs)
        if not speech:  # follow the floor down at once, up slowly
            floor = level if level < floor else floor + c.floor_adapt * (level - floor)
        self._floor = floor
        return speech

    def _recount(self, floor: float) -> None:
        """Count the open utterance's speech frames again after the floor rose.

        A stretch of steady noise then has none and is dropped instead of transcribed.
        """
        threshold = max(floor + self.config.speech_margin_db, self.config.min_level_dbfs)
        self._speech = sum(level >= threshold for level in self._current_levels)

    def _step(self, frame: np.ndarray) -> np.ndarray | None:
        c = self.config
        level = level_dbfs(frame)
        speech = self._is_speech(level)
        if not self._current:
            self._pre.append(frame)
            self._onset = self._onset + 1 if speech else 0
            if self._onset * c.frame_s >= c.start_s:
                self._current, self._speech, self._silence = list(self._pre), self._onset, 0
                self._current_levels = [level_dbfs(f) for f in self._current]
                self._pre.clear()
            return None
        self._current.append(frame)
        self._current_levels.append(level)
        self._speech += speech
        self._silence = 0 if speech else self._silence + 1
        long = len(self._current) * c.frame_s >= c.max_utterance_s
        if self._silence * c.frame_s >= c.end_silence_s or long:
            return self._close()
        return None

    def _close(self) -> np.ndarray | None:
        frames, speech = self._current, self._speech
        self._current, self._speech, self._silence, self._onset = [], 0, 0, 0
        self._current_levels = []
        if speech * self.config.frame_s < self.config.min_speech_s:
            return None
        return np.concatenate(frames)
