"""The transcriber interface, its result types, audio checks and the registry of backends.

A transcriber turns one utterance of 16-bit mono audio into text. Backends register themselves
by name (``@register_transcriber("pocketsphinx")``) and ``create_transcriber(config)`` builds the
one a ``TranscriberConfig`` names; importing this module imports no backend package, so a robot
PC without the voice extra still imports the runtime.

Audio is checked, never silently converted: ``transcribe`` takes an ``(N,)`` int16 array at the
backend's sample rate and raises ``AudioError`` saying how to convert anything else
(``langgrasp.runtime.voice.audio.prepare`` mixes down to mono and resamples).
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from langgrasp.errors import InputError, LanggraspError
from langgrasp.runtime.voice.grammar import Vocabulary

SPEECH_SAMPLE_RATE = 16_000
"""Samples per second of the usual offline speech models (pocketsphinx en-us, Vosk small
models): 16 kHz mono, 16-bit."""

DEFAULT_BACKEND = "pocketsphinx"

DEFAULT_KEYWORD_THRESHOLD = 1e-20
"""Keyphrase-spotting threshold (a likelihood ratio): pocketsphinx's own default is 1e-30; on
espeak-ng speech 1e-20 still found "robot" in every wake-word phrase and no false "robot" in
commands without it, while 1e-40 heard "robot" in "stop" (measured for this module)."""

BACKEND_MODULES = {"pocketsphinx": "langgrasp.runtime.voice.pocketsphinx_backend"}
"""Modules that register the built-in backends, imported on first use."""


class VoiceError(LanggraspError):
    """Speech input failed: a backend, model or microphone that cannot be used."""


class TranscriberUnavailableError(VoiceError):
    """The backend's package or model is not installed; the message says what to install."""


class AudioError(InputError):
    """Audio with the wrong dtype, shape, sample rate or length; the message says how to fix it."""


@dataclass(frozen=True)
class WordTiming:
    """One recognised word.

    Attributes:
        word: The word, lower case.
        start_s: Start in seconds from the beginning of the audio.
        end_s: End in seconds from the beginning of the audio.
        confidence: Posterior probability in [0, 1] when the backend gives one.
    """

    word: str
    start_s: float
    end_s: float
    confidence: float | None = None


@dataclass(frozen=True)
class Transcript:
    """What a transcriber heard in one utterance.

    Attributes:
        text: Recognised words, lower case, single spaces; "" when nothing was recognised.
        confidence: In [0, 1] when the backend estimates one (pocketsphinx: the mean word
            posterior), else None. Grammar-constrained recognisers map any speech onto the
            grammar, so a confidence is a weak out-of-vocabulary signal.
        timings_ms: Named durations in milliseconds (``decode``, ``total``).
        words: Per-word timings when the backend gives them.
        audio_s: Length of the audio in seconds.
        backend: Name of the backend that produced it.
        partial: Words decoded that do not form a complete sentence of the grammar (the speech
            was cut off or not a command); ``text`` is then "".
    """

    text: str
    confidence: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    words: tuple[WordTiming, ...] = ()
    audio_s: float = 0.0
    backend: str = ""
    partial: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "text": self.text,
            "confidence": self.confidence,
            "timings_ms": dict(self.timings_ms),
            "words": [vars(w).copy() for w in self.words],
            "audio_s": self.audio_s,
            "backend": self.backend,
            "partial": self.partial,
        }


@dataclass(frozen=True)
class Spotted:
    """A keyphrase found in an utterance (wake word or stop word).

    Attributes:
        phrase: The keyphrase, as configured.
        start_s: Start in seconds, None when the backend gives no timing.
        end_s: End in seconds, None when the backend gives no timing.
    """

    phrase: str
    start_s: float | None = None
    end_s: float | None = None


@dataclass(frozen=True)
class TranscriberConfig:
    """Which backend to build and its model.

    Attributes:
        backend: A registered backend name (``available_transcribers()``).
        model_path: Acoustic model folder; None uses the model the backend package ships
            (pocketsphinx's wheel carries US English). Nothing is ever downloaded.
        dictionary: Pronunciation dictionary file; None uses the backend's default.
        vocabulary: Object words the grammar accepts; None uses ``default_vocabulary()``
            (the synthetic scenes' colours, object kinds, parts and sides).
        pronunciations: Extra words for the dictionary, ``{"mug": "M AH G"}`` (ARPAbet phones
            of the acoustic model), for vocabulary words the dictionary lacks.
        grammar: Recognise only the command grammar (see ``grammar``); False decodes with the
            backend's general language model, which gets few robot commands right.
        keyword_threshold: Keyphrase-spotting threshold (``DEFAULT_KEYWORD_THRESHOLD``); lower
            finds more wake words and more false ones.
        sample_rate: Samples per second the model expects.
    """

    backend: str = DEFAULT_BACKEND
    model_path: Path | None = None
    dictionary: Path | None = None
    vocabulary: Vocabulary | None = None
    pronunciations: Mapping[str, str] = field(default_factory=dict)
    grammar: bool = True
    keyword_threshold: float = DEFAULT_KEYWORD_THRESHOLD
    sample_rate: int = SPEECH_SAMPLE_RATE

    def __post_init__(self) -> None:
        if not isinstance(self.backend, str) or not self.backend:
            raise InputError(f"transcriber backend must be a name, got {self.backend!r}")
        if not 0.0 < self.keyword_threshold < 1.0:
            raise InputError(
                f"keyword_threshold must be in (0, 1), got {self.keyword_threshold!r}; "
                f"the default is {DEFAULT_KEYWORD_THRESHOLD:g}"
            )
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int):
            raise InputError(f"sample_rate must be an integer, got {self.sample_rate!r}")
        if self.sample_rate <= 0:
            raise InputError(f"sample_rate must be positive, got {self.sample_rate}")


class Transcriber(ABC):
    """Offline speech-to-text for one utterance at a time.

    Subclasses set ``name`` and ``sample_rate`` and implement ``transcribe``; ``spot`` has a
    generic implementation on top of ``transcribe`` that backends with keyphrase spotting
    replace. Instances are not thread-safe: use one per listening thread.
    """

    name: str = ""
    sample_rate: int = SPEECH_SAMPLE_RATE

    @abstractmethod
    def transcribe(self, samples: np.ndarray, sample_rate: int) -> Transcript:
        """Recognise one utterance.

        Args:
            samples: ``(N,)`` int16 mono audio.
            sample_rate: Samples per second of ``samples``; must equal ``self.sample_rate``.

        Returns:
            The transcript ("" text when nothing was recognised).

        Raises:
            AudioError: wrong dtype, shape, rate, or empty audio.
        """

    def spot(self, samples: np.ndarray, sample_rate: int, phrases: Sequence[str]) -> list[Spotted]:
        """Find keyphrases (wake word, stop words) in one utterance, in order of time.

        The generic version transcribes and looks for each phrase as whole words.

        Args:
            samples: ``(N,)`` int16 mono audio.
            sample_rate: Samples per second; must equal ``self.sample_rate``.
            phrases: Lower-case keyphrases.

        Returns:
            The phrases found (each at most once), earliest first.
        """
        transcript = self.transcribe(samples, sample_rate)
        found = []
        for phrase in phrases:
            at = find_phrase(transcript.text, phrase)
            if at is not None:
                found.append((at, phrase))
        return [Spotted(phrase) for _, phrase in sorted(found)]

    def close(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Release the model (optional)."""

    def __enter__(self) -> Transcriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_phrase(text: str, phrase: str) -> int | None:
    """Word index where ``phrase`` first occurs in ``text`` as whole words, or None."""
    words, key = text.split(), phrase.split()
    for i in range(len(words) - len(key) + 1):
        if key and words[i : i + len(key)] == key:
            return i
    return None


def check_audio(samples: Any, sample_rate: Any, expected_rate: int) -> np.ndarray:
    """Validate one utterance for a transcriber.

    Args:
        samples: Should be an ``(N,)`` int16 array (mono), N > 0.
        sample_rate: Should equal ``expected_rate`` (samples per second).
        expected_rate: The rate the model was trained at.

    Returns:
        ``samples`` as a C-contiguous ``(N,)`` int16 array.

    Raises:
        AudioError: saying what was wrong and which ``audio`` function fixes it.
    """
    if not isinstance(samples, np.ndarray):
        raise AudioError(
            f"audio must be a numpy int16 array, got {type(samples).__name__}; "
            "read files with langgrasp.runtime.voice.audio.read_wav"
        )
    if samples.ndim == 2:
        raise AudioError(
            f"audio has {samples.shape[1]} channels (shape {samples.shape}); the transcriber "
            "takes mono (N,) samples: mix down with langgrasp.runtime.voice.audio.to_mono"
        )
    if samples.ndim != 1:
        raise AudioError(f"audio must be mono with shape (N,), got shape {samples.shape}")
    if samples.dtype != np.int16:
        raise AudioError(
            f"audio must be 16-bit PCM (int16), got {samples.dtype}; convert with "
            "langgrasp.runtime.voice.audio.to_int16"
        )
    if samples.size == 0:
        raise AudioError("the audio is empty (0 samples); nothing was recorded")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise AudioError(f"sample_rate must be an integer, got {sample_rate!r}")
    if int(sample_rate) != expected_rate:
        raise AudioError(
            f"audio at {int(sample_rate)} Hz, but the speech model expects {expected_rate} Hz; "
            f"resample with langgrasp.runtime.voice.audio.prepare(samples, {int(sample_rate)}, "
            f"{expected_rate})"
        )
    return np.ascontiguousarray(samples)


# -- registry -----------------------------------------------------------------------------------

TranscriberFactory = Callable[[TranscriberConfig], Transcriber]
TRANSCRIBERS: dict[str, TranscriberFactory] = {}
"""Registered backends by name; built-in ones register when their module is imported."""

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def register_transcriber(name: str) -> Callable[[TranscriberFactory], TranscriberFactory]:
    """Class or function decorator registering a backend factory under ``name``.

    Example::

        @register_transcriber("vosk")
        class VoskTranscriber(Transcriber):
            def __init__(self, config: TranscriberConfig) -> None: ...

    Raises:
        InputError: the name is not lower-case ``[a-z0-9_-]`` or is taken.
    """
    if not _NAME.match(name):
        raise InputError(f"transcriber name {name!r} must match {_NAME.pattern}")

    def register(factory: TranscriberFactory) -> TranscriberFactory:
        if TRANSCRIBERS.get(name, factory) is not factory:
            raise InputError(f"a transcriber named {name!r} is already registered")
        TRANSCRIBERS[name] = factory
        return factory

    return register


def available_transcribers() -> list[str]:
    """Names of the registered backends (built-in ones included, even if not installed)."""
    for module in BACKEND_MODULES.values():
        importlib.import_module(module)  # the module imports its speech package lazily
    return sorted(TRANSCRIBERS)


def create_transcriber(config: TranscriberConfig | None = None) -> Transcriber:
    """Build the backend ``config.backend`` names.

    Raises:
        InputError: unknown backend name (the message lists the registered ones).
        TranscriberUnavailableError: the backend's package or model is missing.
    """
    config = config or TranscriberConfig()
    if config.backend not in TRANSCRIBERS and config.backend in BACKEND_MODULES:
        importlib.import_module(BACKEND_MODULES[config.backend])
    factory = TRANSCRIBERS.get(config.backend)
    if factory is None:
        raise InputError(
            f"unknown transcriber {config.backend!r}; available: "
            f"{', '.join(available_transcribers())} (register others with "
            "langgrasp.runtime.voice.register_transcriber)"
        )
    return factory(config)
