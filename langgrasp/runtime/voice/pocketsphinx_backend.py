"""Offline recognition with CMU PocketSphinx (``pip install 'langgrasp[voice]'``).

The ``pocketsphinx`` wheel (5.x) carries a US English acoustic model, the CMU pronunciation
dictionary and a general language model, so nothing is downloaded. Commands are decoded against
the JSGF grammar of ``grammar.build_grammar`` rather than the general model (the module docstring
there says why); wake and stop words are found with PocketSphinx's keyphrase search, which
scores the keyphrase against a phone loop and so can also say "not heard".

``pocketsphinx`` is imported when a transcriber is built, never at module import.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from langgrasp.errors import InputError
from langgrasp.runtime.voice.grammar import Grammar, build_grammar
from langgrasp.runtime.voice.transcriber import (
    Spotted,
    Transcriber,
    TranscriberConfig,
    TranscriberUnavailableError,
    Transcript,
    VoiceError,
    WordTiming,
    check_audio,
    register_transcriber,
)

INSTALL_HINT = (
    "pip install 'langgrasp[voice]' (or pip install 'pocketsphinx>=5'; its wheel carries the "
    "US English model, nothing is downloaded)"
)
DEFAULT_MODEL = "en-us/en-us"
"""Acoustic model folder inside the wheel (``pocketsphinx.get_model_path``)."""
DEFAULT_DICTIONARY = "en-us/cmudict-en-us.dict"
DEFAULT_LANGUAGE_MODEL = "en-us/en-us.lm.bin"
MODEL_FILES = ("mdef", "means", "variances", "transition_matrices")
"""Files every PocketSphinx acoustic model folder has (``feat.params`` and ``noisedict`` are
optional)."""

GRAMMAR_SEARCH = "command"
LANGUAGE_MODEL_SEARCH = "english"
MS_PER_S = 1000.0
NON_WORDS = ("<s>", "</s>", "<sil>")
"""Segment labels that are silence, not words (noise fillers are written ``[NOISE]``)."""


def _import_pocketsphinx() -> Any:
    try:
        import pocketsphinx
    except ImportError as err:
        raise TranscriberUnavailableError(
            f"the pocketsphinx transcriber needs the pocketsphinx package: {INSTALL_HINT}"
        ) from err
    return pocketsphinx


def _model_files(ps: Any, config: TranscriberConfig) -> tuple[str, str]:
    """(acoustic model folder, dictionary path), checked to exist."""
    hmm = Path(config.model_path) if config.model_path else Path(ps.get_model_path(DEFAULT_MODEL))
    missing = [name for name in MODEL_FILES if not (hmm / name).is_file()]
    if missing:
        raise TranscriberUnavailableError(
            f"no PocketSphinx acoustic model in {hmm} (missing {', '.join(missing)}); set "
            f"model_path to a model folder, or leave it unset to use the one in the wheel "
            f"({INSTALL_HINT})"
        )
    dictionary = (
        Path(config.dictionary)
        if config.dictionary
        else Path(ps.get_model_path(DEFAULT_DICTIONARY))
    )
    if not dictionary.is_file():
        raise TranscriberUnavailableError(
            f"no pronunciation dictionary at {dictionary}; set dictionary to a CMUdict-format "
            "file, or leave it unset to use the wheel's"
        )
    return str(hmm), str(dictionary)


def _clean_word(label: str) -> str:
    """Drop a pronunciation variant mark: "the(2)" -> "the"."""
    return label.split("(", 1)[0].lower()


@register_transcriber("pocketsphinx")
class PocketsphinxTranscriber(Transcriber):
    """PocketSphinx decoding of one utterance at a time against the command grammar.

    Args:
        config: Backend settings (``TranscriberConfig``); ``vocabulary`` and
            ``pronunciations`` shape the grammar.

    Raises:
        TranscriberUnavailableError: pocketsphinx or the model folder is missing.
        InputError: a vocabulary word without pronunciation, or a bad pronunciation.
    """

    name = "pocketsphinx"

    def __init__(self, config: TranscriberConfig | None = None) -> None:
        self.config = config or TranscriberConfig()
        self.sample_rate = self.config.sample_rate
        ps = _import_pocketsphinx()
        hmm, dictionary = _model_files(ps, self.config)
        try:
            self._decoder = ps.Decoder(
                hmm=hmm,
                dict=dictionary,
                lm=None,
                samprate=float(self.sample_rate),
                bestpath=True,  # word posteriors for the confidence
                loglevel="FATAL",
            )
        except (RuntimeError, ValueError) as err:
            raise TranscriberUnavailableError(
                f"PocketSphinx could not load the model in {hmm}: {err}"
            ) from err
        self._frame_rate = float(self._decoder.config["frate"])
        self._lock = threading.Lock()
        self._keyword_searches: dict[tuple[str, ...], str] = {}
        self._active: str | None = None
        self._add_pronunciations()
        self.grammar: Grammar | None = None
        self._fsg: Any = None
        if self.config.grammar:
            self.grammar = build_grammar(self.config.vocabulary, self.known)
            self._add_grammar(self.grammar.jsgf)
            self._fsg = self._decoder.get_fsg(GRAMMAR_SEARCH)
            self._search = GRAMMAR_SEARCH
        else:
            self._decoder.add_lm_file(
                LANGUAGE_MODEL_SEARCH, ps.get_model_path(DEFAULT_LANGUAGE_MODEL)
            )
            self._search = LANGUAGE_MODEL_SEARCH

    def known(self, word: str) -> bool:
        """True when the dictionary has a pronunciation for ``word``."""
        return self._decoder.lookup_word(word) is not None

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> Transcript:
        """Decode one utterance (see ``Transcriber.transcribe``)."""
        samples = check_audio(samples, sample_rate, self.sample_rate)
        start = time.perf_counter()
        with self._lock:
            hyp, segments = self._decode(self._search, samples)
        decoded = time.perf_counter()
        words = tuple(
            WordTiming(
                _clean_word(s.word),
                s.start_frame / self._frame_rate,
                (s.end_frame + 1) / self._frame_rate,  # end_frame is inclusive
                float(min(max(s.prob, 0.0), 1.0)),
            )
            for s in segments
            if s.word not in NON_WORDS and not s.word.startswith("[")
        )
        confidences = [w.confidence for w in words if w.confidence is not None]
        text = " ".join((hyp.hypstr if hyp is not None else "").lower().split())
        partial = ""
        if text and self._fsg is not None and not self._fsg.accept(text):
            text, partial = "", text  # the best path ended inside the grammar: a fragment
        ms = (decoded - start) * MS_PER_S
        return Transcript(
            text,
            float(np.mean(confidences)) if confidences else None,
            {"decode": ms, "total": (time.perf_counter() - start) * MS_PER_S},
            words,
            samples.size / self.sample_rate,
            self.name,
            partial,
        )

    def spot(self, samples: np.ndarray, sample_rate: int, phrases: Sequence[str]) -> list[Spotted]:
        """Keyphrase search for ``phrases`` (see ``Transcriber.spot``).

        Raises:
            InputError: a phrase with a word the dictionary lacks.
        """
        samples = check_audio(samples, sample_rate, self.sample_rate)
        key = tuple(dict.fromkeys(" ".join(p.lower().split()) for p in phrases if p.strip()))
        if not key:
            return []
        with self._lock:
            _, segments = self._decode(self._keyword_search(key), samples)
        first: dict[str, Spotted] = {}
        for s in sorted(segments, key=lambda s: s.start_frame):
            phrase = " ".join(_clean_word(w) for w in s.word.split())
            if phrase in key and phrase not in first:
                first[phrase] = Spotted(
                    phrase, s.start_frame / self._frame_rate, (s.end_frame + 1) / self._frame_rate
                )
        return sorted(first.values(), key=lambda s: s.start_s or 0.0)

    # -- internals ------------------------------------------------------------------------------

    def _decode(self, search: str, samples: np.ndarray) -> tuple[Any, list[Any]]:
        if self._active != search:  # (Decoder.current_search() crashes before the first one)
            self._decoder.activate_search(search)
            self._active = search
        self._decoder.start_utt()
        self._decoder.process_raw(samples.astype("<i2", copy=False).tobytes(), full_utt=True)
        self._decoder.end_utt()
        return self._decoder.hyp(), list(self._decoder.seg() or [])

    def _add_pronunciations(self) -> None:
        for word, phones in self.config.pronunciations.items():
            try:
                self._decoder.add_word(word.lower(), phones.upper(), True)
            except (RuntimeError, ValueError) as err:
                raise InputError(
                    f"pronunciation {word!r}: {phones!r} was refused ({err}); write the "
                    "acoustic model's ARPAbet phones separated by spaces, e.g. 'M AH G'"
                ) from err

    def _add_grammar(self, jsgf: str) -> None:
        try:
            self._decoder.add_jsgf_string(GRAMMAR_SEARCH, jsgf)
        except (RuntimeError, ValueError) as err:
            raise VoiceError(f"PocketSphinx refused the command grammar ({err}):\n{jsgf}") from err

    def _keyword_search(self, phrases: tuple[str, ...]) -> str:
        name = self._keyword_searches.get(phrases)
        if name is not None:
            return name
        unknown = sorted({w for p in phrases for w in p.split() if not self.known(w)})
        if unknown:
            raise InputError(
                f"keyphrase word(s) {', '.join(map(repr, unknown))} are not in the speech "
                "dictionary; pick another wake word or add a pronunciation"
            )
        name = f"keywords{len(self._keyword_searches)}"
        threshold = self.config.keyword_threshold
        handle, path = tempfile.mkstemp(suffix=".kws", text=True)  # add_kws reads a file
        try:
            with os.fdopen(handle, "w") as keyfile:
                keyfile.writelines(f"{p} /{threshold:g}/\n" for p in phrases)
            self._decoder.add_kws(name, path)
        finally:
            os.unlink(path)
        self._keyword_searches[phrases] = name
        return name
