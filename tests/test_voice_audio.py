"""Audio in for spoken commands: WAV files, conversions, segmentation, the microphone's errors.

Covers ``voice.audio`` and ``voice.microphone`` (only its errors: no microphone here).
"""

from __future__ import annotations

import math
import shutil
import threading
import time
import wave

import numpy as np
import pytest

from langgrasp.runtime.voice.audio import (
    SegmenterConfig,
    UtteranceSegmenter,
    load_utterance,
    prepare,
    read_wav,
    resample,
    synthesize,
    to_int16,
    to_mono,
    wav_blocks,
    write_wav,
)
from langgrasp.runtime.voice.microphone import (
    MIC_QUEUE_S,
    Microphone,
    MicrophoneUnavailableError,
)
from langgrasp.runtime.voice.transcriber import AudioError

RATE = 16_000


def tone(freq_hz: float, seconds: float, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return to_int16(amplitude * np.sin(2 * np.pi * freq_hz * t))


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / samples.size)


def test_wav_round_trip_mono_and_stereo(tmp_path):
    mono = tone(440, 0.1)
    stereo = np.stack([mono, -mono], axis=1)
    a = read_wav(write_wav(tmp_path / "m.wav", mono, RATE))
    b = read_wav(write_wav(tmp_path / "s.wav", stereo, 22_050))
    np.testing.assert_array_equal(a.samples, mono)
    assert a.sample_rate == RATE and a.duration_s == pytest.approx(0.1)
    np.testing.assert_array_equal(b.samples, stereo)
    assert b.sample_rate == 22_050


@pytest.mark.parametrize("width", [1, 3, 4])
def test_other_pcm_widths_scale_to_16_bits(tmp_path, width):
    values = np.array([0, 1000, -1000, 32767, -32768], np.int32) << 16  # 32-bit full scale
    raw = {
        1: ((values >> 24) + 128).astype(np.uint8).tobytes(),
        3: b"".join(int(v >> 8).to_bytes(3, "little", signed=True) for v in values),
        4: values.astype("<i4").tobytes(),
    }[width]
    path = tmp_path / f"w{width}.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(width)
        wav.setframerate(RATE)
        wav.writeframes(raw)
    got = read_wav(path).samples
    expected = (values >> 16).astype(np.int16)
    tolerance = 256 if width == 1 else 0  # 8-bit keeps the top byte only
    assert got.dtype == np.int16
    np.testing.assert_allclose(got, expected, atol=tolerance)


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(AudioError, match="no such audio file"):
        read_wav(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(AudioError, match=r"not a PCM WAV file.*ffmpeg"):
        read_wav(text)
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16), RATE)
    with pytest.raises(AudioError, match="no samples"):
        load_utterance(empty, RATE)


def test_conversions():
    np.testing.assert_array_equal(
        to_int16(np.array([0.0, 0.5, -1.0, 2.0])), [0, 16384, -32768, 32767]
    )
    np.testing.assert_array_equal(to_mono(np.array([[100, 300], [-2, 0]], np.int16)), [200, -1])
    with pytest.raises(AudioError, match="cannot convert"):
        to_int16(np.array([1, 2], np.uint16))
    with pytest.raises(AudioError, match=r"shape \(N,\) or \(N, channels\)"):
        to_mono(np.zeros((2, 2, 2), np.int16))


def test_resample_keeps_the_pitch_and_duration():
    x = tone(1000, 0.5, rate=22_050)
    y = resample(x, 22_050, RATE)
    assert y.dtype == np.int16 and y.size == RATE // 2
    assert peak_hz(y, RATE) == pytest.approx(1000, abs=4)
    # a tone above the new Nyquist frequency is removed, not folded back into the speech band
    high = resample(tone(10_000, 0.5, rate=44_100), 44_100, RATE)
    assert np.abs(high).max() < 200
    assert resample(x, 22_050, 22_050) is x


def test_prepare_and_load_give_16k_mono(tmp_path):
    stereo = np.stack([tone(500, 0.2, 44_100)] * 2, axis=1)
    path = write_wav(tmp_path / "s.wav", stereo, 44_100)
    samples = load_utterance(path, RATE)
    assert samples.shape == (round(0.2 * RATE),) and samples.dtype == np.int16
    np.testing.assert_array_equal(samples, prepare(stereo, 44_100, RATE))


def stream(*parts: tuple[str, float]) -> np.ndarray:
    """Concatenated ("tone"|"silence"|"noise", seconds) pieces at 16 kHz."""
    rng = np.random.default_rng(0)
    out = []
    for kind, seconds in parts:
        n = round(seconds * RATE)
        if kind == "tone":
            out.append(tone(300, seconds))
        elif kind == "noise":  # quiet room noise, about -60 dBFS
            out.append(rng.normal(0, 30, n).astype(np.int16))
        else:
            out.append(np.zeros(n, np.int16))
    return np.concatenate(out)


def segment(samples: np.ndarray, config: SegmenterConfig | None = None) -> list[np.ndarray]:
    cutter = UtteranceSegmenter(RATE, config)
    found = []
    for i in range(0, samples.size, 480):  # 30 ms blocks, like a microphone
        found += cutter.feed(samples[i : i + 480])
    return found + cutter.flush()


def test_segmenter_cuts_speech_between_pauses():
    samples = stream(
        ("noise", 0.5), ("tone", 0.6), ("noise", 0.8), ("tone", 0.3), ("noise", 0.2),
        ("tone", 0.3), ("noise", 1.0),
    )  # fmt: skip
    found = segment(samples)
    # two utterances: the short 0.2 s pause inside the second one does not split it
    assert len(found) == 2
    config = SegmenterConfig()
    first = found[0].size / RATE
    assert 0.6 <= first <= 0.6 + config.pre_roll_s + config.end_silence_s + 0.05
    assert found[1].size / RATE >= 0.8


def test_segmenter_drops_clicks_and_cuts_long_speech_and_flushes():
    assert segment(stream(("silence", 0.3), ("tone", 0.04), ("silence", 1.0))) == []
    config = SegmenterConfig(max_utterance_s=1.0)
    found = segment(stream(("noise", 0.3), ("tone", 2.5)), config)
    assert len(found) == 3 and all(f.size / RATE <= 1.0 + 1e-6 for f in found[:2])


LOUD_NOISE_STD = 600  # steady fan noise, about -35 dBFS: 25 dB over the quiet room


def loud_noise(seconds: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, LOUD_NOISE_STD, round(seconds * RATE)).astype(np.int16)


def test_segmenter_adapts_to_a_room_that_got_louder():
    """Steady noise far over the floor stops counting as speech after ``floor_window_s``;
    before the fix it made back-to-back 10 s utterances and a spoken command was lost in
    them."""
    config = SegmenterConfig()
    quiet, noise, after = stream(("noise", 1.0)), loud_noise(8.0), loud_noise(2.0, seed=2)
    spoken = np.clip(tone(300, 0.6).astype(np.int32) + loud_noise(0.6, seed=3), -32768, 32767)
    cutter = UtteranceSegmenter(RATE, config)
    found = []
    for samples in (quiet, noise, spoken.astype(np.int16), after):
        for i in range(0, samples.size, 480):
            found += cutter.feed(samples[i : i + 480])
    found += cutter.flush()
    # the noise alone is dropped; the command said over it is cut on its own
    assert len(found) == 1, [f.size / RATE for f in found]
    assert 0.6 <= found[0].size / RATE <= 0.6 + config.pre_roll_s + config.end_silence_s + 0.05
    assert cutter.noise_floor_dbfs > -40.0  # the floor now sits at the fan noise


def test_segmenter_floor_stays_down_through_long_speech():
    """Speech has quiet frames (pauses) in every window, so minimum statistics keep the floor
    at the room noise and 6 s of talking stay one utterance."""
    parts = [("noise", 1.0)] + [("tone", 0.4), ("noise", 0.1)] * 12 + [("noise", 1.0)]
    samples = stream(*parts)
    cutter = UtteranceSegmenter(RATE)
    found = [u for i in range(0, samples.size, 480) for u in cutter.feed(samples[i : i + 480])]
    assert len(found) == 1 and found[0].size / RATE >= 6.0
    assert cutter.noise_floor_dbfs < -55.0  # quiet room noise is about -60 dBFS


def test_wav_blocks_stream_a_file(tmp_path):
    samples = stream(("noise", 0.3), ("tone", 0.5), ("noise", 0.8))
    blocks, rate = wav_blocks(write_wav(tmp_path / "s.wav", samples, RATE), block_s=0.05)
    blocks = list(blocks)
    assert rate == RATE and len(blocks) == 32
    np.testing.assert_array_equal(np.concatenate(blocks), samples)


def test_microphone_says_what_to_install_when_unavailable():
    try:
        import sounddevice

        sounddevice.query_devices(kind="input")
    except ImportError:
        hint = "pip install sounddevice"
    except OSError:
        hint = "libportaudio2"  # sounddevice installed, the PortAudio library is not
    except Exception:  # PortAudio without an input device
        hint = "python -m sounddevice"
    else:
        pytest.skip("a microphone is present; this test covers machines without one")
    with pytest.raises(MicrophoneUnavailableError, match=hint):
        Microphone().open()


class OpenStream:
    """Stands in for an open PortAudio stream (no microphone here); blocks are pushed through
    ``Microphone._callback``, the function PortAudio calls."""

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_microphone_queue_is_bounded_and_stops_when_the_reader_does():
    mic = Microphone(block_s=0.03)
    mic._stream = OpenStream()
    capacity = mic._blocks.maxsize
    assert capacity == math.ceil(MIC_QUEUE_S / 0.03)
    total = capacity + 50

    def push() -> None:
        while not mic._streaming:
            time.sleep(0.001)
        for i in range(total):
            mic._callback(np.full((480, 1), i, np.int16), 480, None, None)

    pusher = threading.Thread(target=push)
    pusher.start()
    blocks = mic.blocks(timeout_s=0.01)
    first = next(blocks)  # waits for the pusher
    pusher.join()
    assert mic._blocks.qsize() <= capacity and mic.dropped_blocks >= total - capacity - 1
    rest = [int(next(blocks)[0]) for _ in range(mic._blocks.qsize())]
    assert rest[-1] == total - 1 and rest == list(range(total - len(rest), total))
    assert int(first[0]) == 0 or int(first[0]) < rest[0]
    blocks.close()  # the reader went away: nothing is queued any more
    assert not mic._streaming and mic._blocks.empty()
    mic._callback(np.zeros((480, 1), np.int16), 480, None, None)
    assert mic._blocks.empty()
    mic.close()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synthesize_writes_speech(tmp_path):
    path = synthesize("pick up the red mug", tmp_path / "s.wav")
    audio = read_wav(path)
    assert audio.samples.ndim == 1 and audio.duration_s > 0.5
    assert np.abs(audio.samples).max() > 1000
