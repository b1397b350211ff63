"""The transcriber interface, its registry and the offline PocketSphinx backend.

Speech is synthesised with espeak-ng (voice ``audio.ESPEAK_VOICE``) once per module; tests that
need it or pocketsphinx skip, saying why, where they are missing.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from langgrasp.errors import InputError
from langgrasp.runtime.intents import IntentKind, parse_intent
from langgrasp.runtime.voice.audio import load_utterance, synthesize
from langgrasp.runtime.voice.grammar import Vocabulary
from langgrasp.runtime.voice.transcriber import (
    TRANSCRIBERS,
    AudioError,
    Transcriber,
    TranscriberConfig,
    TranscriberUnavailableError,
    Transcript,
    available_transcribers,
    check_audio,
    create_transcriber,
    register_transcriber,
)

RATE = 16_000
PHRASES = (
    "pick up the red mug",
    "um pick up the red mug please",
    "yes",
    "next one",
    "stop",
    "robot pick up the blue box",
    "pick up the blue box",
    "pick up the",
)
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt install espeak-ng)"
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, np.ndarray]:
    """16 kHz mono samples of each phrase, spoken by espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng)")
    folder = tmp_path_factory.mktemp("speech")
    return {
        p: load_utterance(synthesize(p, folder / f"{i}.wav"), RATE) for i, p in enumerate(PHRASES)
    }


@pytest.fixture(scope="module")
def sphinx():
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (langgrasp[voice])")
    return create_transcriber(TranscriberConfig())


class ScriptedTranscriber(Transcriber):
    """A backend that "hears" the next line of a script (exercises the generic interface)."""

    name = "scripted"

    def __init__(self, config: TranscriberConfig) -> None:
        self.lines = ["robot pick up the box", "pick up the box"]

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> Transcript:
        check_audio(samples, sample_rate, self.sample_rate)
        return Transcript(self.lines.pop(0), None, {}, (), samples.size / sample_rate, self.name)


# -- interface and registry ---------------------------------------------------------------------


def test_registry_builds_named_backends_and_lists_them_in_errors():
    assert "pocketsphinx" in available_transcribers()
    register_transcriber("scripted")(ScriptedTranscriber)
    try:
        backend = create_transcriber(TranscriberConfig(backend="scripted"))
        assert isinstance(backend, ScriptedTranscriber)
        with pytest.raises(InputError, match="already registered"):
            register_transcriber("scripted")(lambda config: backend)
        with pytest.raises(InputError, match=r"unknown transcriber 'vosk'; available: .*scripted"):
            create_transcriber(TranscriberConfig(backend="vosk"))
    finally:
        TRANSCRIBERS.pop("scripted")
    with pytest.raises(InputError, match="must match"):
        register_transcriber("Bad Name")


def test_generic_spot_uses_the_transcript():
    backend = ScriptedTranscriber(TranscriberConfig())
    silence = np.zeros(RATE // 10, np.int16)
    assert [s.phrase for s in backend.spot(silence, RATE, ["robot", "box"])] == ["robot", "box"]
    assert backend.spot(silence, RATE, ["robot"]) == []


@pytest.mark.parametrize(
    ("samples", "rate", "message"),
    [
        (np.zeros((RATE, 2), np.int16), RATE, "2 channels.*to_mono"),
        (np.zeros(RATE, np.int16), 44_100, "44100 Hz.*expects 16000 Hz.*prepare"),
        (np.zeros(0, np.int16), RATE, "empty"),
        (np.zeros(RATE, np.float32), RATE, "int16.*to_int16"),
        ([0, 1, 2], RATE, "numpy int16 array"),
        (np.zeros((2, 2, 2), np.int16), RATE, r"shape \(N,\)"),
        (np.zeros(RATE, np.int16), 16_000.0, "sample_rate must be an integer"),
    ],
)
def test_bad_audio_gets_a_clear_error(samples, rate, message):
    with pytest.raises(AudioError, match=message):
        check_audio(samples, rate, RATE)


def test_config_is_checked():
    with pytest.raises(InputError, match="keyword_threshold"):
        TranscriberConfig(keyword_threshold=2.0)
    with pytest.raises(InputError, match="sample_rate"):
        TranscriberConfig(sample_rate=0)


# -- pocketsphinx: availability -----------------------------------------------------------------


def test_missing_package_says_what_to_install(monkeypatch):
    from langgrasp.runtime.voice import pocketsphinx_backend

    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import pocketsphinx -> ImportError
    with pytest.raises(TranscriberUnavailableError, match=r"pip install 'langgrasp\[voice\]'"):
        pocketsphinx_backend.PocketsphinxTranscriber()


def test_missing_model_or_dictionary_is_named(tmp_path, sphinx):
    with pytest.raises(
        TranscriberUnavailableError, match=f"no PocketSphinx acoustic model in {tmp_path}"
    ):
        create_transcriber(TranscriberConfig(model_path=tmp_path))
    with pytest.raises(TranscriberUnavailableError, match="no pronunciation dictionary"):
        create_transcriber(TranscriberConfig(dictionary=tmp_path / "none.dict"))


def test_vocabulary_words_need_pronunciations(sphinx):
    words = Vocabulary(colours=("red",), objects=("mug", "zorbel"))
    with pytest.raises(InputError, match="no pronunciation for 'zorbel'"):
        create_transcriber(TranscriberConfig(vocabulary=words))
    backend = create_transcriber(
        TranscriberConfig(vocabulary=words, pronunciations={"zorbel": "Z AO R B AH L"})
    )
    assert backend.known("zorbel") and "zorbel" in backend.grammar.jsgf
    with pytest.raises(InputError, match="ARPAbet"):
        create_transcriber(TranscriberConfig(pronunciations={"zorbel": "Q9 X"}))


# -- pocketsphinx: recognition ------------------------------------------------------------------


@needs_espeak
def test_commands_are_recognised_through_the_grammar(sphinx, speech):
    exact = sphinx.transcribe(speech["pick up the red mug"], RATE)
    assert exact.text == "pick up the red mug"
    assert exact.backend == "pocketsphinx" and 0.0 <= exact.confidence <= 1.0
    assert exact.audio_s == pytest.approx(speech["pick up the red mug"].size / RATE)
    assert [w.word for w in exact.words] == ["pick", "up", "the", "red", "mug"]
    starts = [w.start_s for w in exact.words]
    assert starts == sorted(starts) and exact.words[-1].end_s <= exact.audio_s
    assert exact.timings_ms["decode"] > 0
    json.dumps(exact.to_dict())
    typed = parse_intent("pick the red mug")
    for phrase in ("pick up the red mug", "um pick up the red mug please"):
        spoken = parse_intent(sphinx.transcribe(speech[phrase], RATE).text)
        assert spoken.kind is IntentKind.PICK and spoken.target == typed.target == "the red mug"
        assert spoken.detector_command == typed.detector_command == "pick up the red mug"
    kinds = {p: parse_intent(sphinx.transcribe(speech[p], RATE).text).kind for p in PHRASES[2:5]}
    assert kinds == {
        "yes": IntentKind.CONFIRM,
        "next one": IntentKind.NEXT,
        "stop": IntentKind.STOP,
    }


@needs_espeak
def test_an_incomplete_command_is_not_passed_on_as_text(sphinx, speech):
    cut = sphinx.transcribe(speech["pick up the"], RATE)
    assert cut.text == "" and cut.partial.startswith("pick up")


@needs_espeak
def test_wake_word_is_spotted_only_where_said(sphinx, speech):
    [hit] = sphinx.spot(speech["robot pick up the blue box"], RATE, ["robot"])
    assert hit.phrase == "robot" and 0.0 <= hit.start_s < hit.end_s < 1.0
    assert sphinx.spot(speech["pick up the blue box"], RATE, ["robot"]) == []
    with pytest.raises(InputError, match="'zorbel' are not in the speech dictionary"):
        sphinx.spot(speech["yes"], RATE, ["zorbel"])
    with pytest.raises(AudioError, match="22050 Hz"):
        sphinx.spot(speech["yes"], 22_050, ["robot"])


@needs_espeak
def test_general_language_model_mode_still_transcribes(speech):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (langgrasp[voice])")
    english = create_transcriber(TranscriberConfig(grammar=False))
    assert english.grammar is None
    transcript = english.transcribe(speech["yes"], RATE)
    assert transcript.text and transcript.partial == ""
