"""Spoken-command recognition: espeak-ng phrases -> PocketSphinx transcript -> intent.

Usage: python benchmarks/bench_voice.py [--voices en-us+f2 en-us en-us+m3] [--stream] [--list]

Each phrase of ``PHRASES`` is spoken by espeak-ng in each voice (``audio.synthesize``, 150 words
per minute), converted to 16 kHz mono and transcribed by the default transcriber (PocketSphinx
with the command grammar built from the default vocabulary). Counted per voice:

* exact: the transcript is the phrase, word for word;
* right command: ``intents.parse_intent`` of the transcript gives the phrase's own intent (same
  kind and, for picks, the same detector phrase). Wake-word phrases are compared after the wake
  word, as the listener does.

``--stream`` also cuts each phrase out of a stream (quiet room noise, the phrase, a pause)
with ``UtteranceSegmenter``, as wake-word mode does, and counts again: the segmenter's pre-roll
and trailing silence change what the recogniser hears. ``--list`` prints every transcript.

This is the measurement behind the README's recognition figures; the phrase set is the one
below (28 phrases: picks, replies, stops, wake word, other commands). A speech synthesiser is not
a person: the figures compare versions of the grammar and the segmenter, they do not predict
how well an operator is understood. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from langgrasp.runtime.intents import Intent, parse_intent
from langgrasp.runtime.voice.audio import (
    ESPEAK_VOICE,
    UtteranceSegmenter,
    load_utterance,
    synthesize,
)
from langgrasp.runtime.voice.grammar import DEFAULT_WAKE_WORD
from langgrasp.runtime.voice.listener import text_after
from langgrasp.runtime.voice.transcriber import Transcriber, TranscriberConfig, create_transcriber

PHRASES = (
    # picks
    "pick up the red mug",
    "um pick up the red mug please",
    "pick up the blue box",
    "pick the red mug",
    "grab the blue box",
    "pick up the green ball",
    "pick up the yellow bar",
    "pick up the mug by the handle",
    "pick up the box next to the mug",
    "pick up the object closest to the left",
    # replies
    "yes",
    "next one",
    "go ahead",
    "do it",
    "no",
    "try another one",
    # stops
    "stop",
    "stop the robot",
    "halt",
    "abort",
    "cancel that",
    "hold on",
    # wake word
    "robot pick up the blue box",
    "robot stop",
    "robot yes",
    # other commands
    "go home",
    "open the gripper",
    "status",
)
VOICES = (ESPEAK_VOICE, "en-us", "en-us+m3")
"""espeak-ng voices measured by default: the tuned one (``audio.ESPEAK_VOICE``) and two others."""

RATE = 16_000
BLOCK = 480  # 30 ms blocks, like the microphone (``microphone.MIC_BLOCK_S``)
LEAD_S, TRAIL_S = 0.5, 1.0  # stream mode: room noise before, pause after the phrase
ROOM_NOISE_STD = 30.0  # quiet room noise, about -60 dBFS (as in tests/test_voice_audio.py)


def same_command(heard: Intent, expected: Intent) -> bool:
    """The transcript's intent does what the phrase's would."""
    return heard.kind is expected.kind and heard.detector_command == expected.detector_command


def command_line(text: str) -> str:
    """What the listener hands on: the words after the wake word when it was said."""
    return text_after(text, DEFAULT_WAKE_WORD)


def stream_transcript(transcriber: Transcriber, samples: np.ndarray, seed: int) -> str:
    """Cut the phrase out of a noisy stream and transcribe every utterance found."""
    rng = np.random.default_rng(seed)
    lead = rng.normal(0, ROOM_NOISE_STD, round(LEAD_S * RATE)).astype(np.int16)
    trail = rng.normal(0, ROOM_NOISE_STD, round(TRAIL_S * RATE)).astype(np.int16)
    stream = np.concatenate([lead, samples, trail])
    cutter = UtteranceSegmenter(RATE)
    found = [u for i in range(0, stream.size, BLOCK) for u in cutter.feed(stream[i : i + BLOCK])]
    found += cutter.flush()
    texts = [transcriber.transcribe(u, RATE) for u in found]
    return " ".join(t.text or t.partial for t in texts if t.text or t.partial)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", nargs="+", default=list(VOICES))
    parser.add_argument("--stream", action="store_true", help="also cut phrases from a stream")
    parser.add_argument("--list", action="store_true", help="print every transcript")
    args = parser.parse_args()
    transcriber = create_transcriber(TranscriberConfig())
    modes = ["clip", "stream"] if args.stream else ["clip"]
    totals = {mode: [0, 0] for mode in modes}
    print(f"{len(PHRASES)} phrases, transcriber {transcriber.name}")
    with tempfile.TemporaryDirectory() as folder:
        for voice in args.voices:
            counts = {mode: [0, 0] for mode in modes}
            decode_s = 0.0
            for i, phrase in enumerate(PHRASES):
                path = synthesize(phrase, Path(folder) / f"{i}.wav", voice=voice)
                samples = load_utterance(path, RATE)
                expected = parse_intent(command_line(phrase))
                for mode in modes:
                    start = time.perf_counter()
                    if mode == "clip":
                        t = transcriber.transcribe(samples, RATE)
                        heard = t.text or t.partial
                    else:
                        heard = stream_transcript(transcriber, samples, i)
                    decode_s += time.perf_counter() - start
                    exact = heard == phrase
                    right = same_command(parse_intent(command_line(heard)), expected)
                    counts[mode][0] += exact
                    counts[mode][1] += right
                    if args.list:
                        mark = "=" if exact else ("~" if right else "x")
                        print(f"  {voice:10s} {mode:6s} {mark} {phrase!r} -> {heard!r}")
            for mode in modes:
                exact, right = counts[mode]
                totals[mode][0] += exact
                totals[mode][1] += right
                print(
                    f"{voice:10s} {mode:6s}: {exact:2d}/{len(PHRASES)} exact, "
                    f"{right:2d}/{len(PHRASES)} right command"
                )
            print(f"{voice:10s} decoding {decode_s:.1f} s in all")
    n = len(PHRASES) * len(args.voices)
    for mode in modes:
        exact, right = totals[mode]
        print(f"all voices {mode:6s}: {exact}/{n} exact, {right}/{n} right command")


if __name__ == "__main__":
    main()
