"""``langgrasp listen``: options, WAV files through the recogniser into the loop, clear errors."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

import pytest

from langgrasp.calibration.io import save_calibration
from langgrasp.errors import InputError
from langgrasp.runtime.demo import DEMO_BUNDLE, demo_calibration
from langgrasp.runtime.voice.audio import synthesize
from langgrasp.runtime.voice.commands import EXIT_NOT_UNDERSTOOD, EXIT_OK, register_cli
from langgrasp.runtime.voice.microphone import MicrophoneUnavailableError


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="langgrasp")
    register_cli(parser.add_subparsers(dest="command", required=True))
    return parser


def listen(*argv: str) -> int:
    args = parser().parse_args(["listen", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng)")
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (langgrasp[voice])")
    folder = tmp_path_factory.mktemp("speech")
    phrases = {
        "pick": "um pick up the red mug please",
        "yes": "yes",
        "wake": "robot pick up the blue box",
        "no_wake": "pick up the blue box",
    }
    return {key: str(synthesize(text, folder / f"{key}.wav")) for key, text in phrases.items()}


def test_options():
    args = parser().parse_args(["listen", "--config", "robot.toml"])
    assert args.mode == "push-to-talk" and args.wake_word == "robot" and not args.execute
    assert args.wav is None and args.backend == "pocketsphinx"
    args = parser().parse_args(
        ["listen", "--mode", "wake-word", "--wake-word", "computer", "--wav", "a.wav", "b.wav"]
    )
    assert args.mode == "wake-word" and args.wake_word == "computer"
    assert [str(p) for p in args.wav] == ["a.wav", "b.wav"]
    with pytest.raises(SystemExit):
        parser().parse_args(["listen", "--mode", "always"])


def test_without_a_robot_prints_what_was_understood(wavs, capsys):
    assert listen("--wav", wavs["pick"], wavs["yes"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "-> pick: 'pick up the red mug'" in out and "-> confirm" in out
    assert listen("--mode", "wake-word", "--wav", wavs["wake"], wavs["no_wake"]) == (
        EXIT_NOT_UNDERSTOOD
    )
    out = capsys.readouterr().out
    assert "-> pick: 'pick up the blue box'" in out and "no wake word 'robot'" in out
    assert listen("--json", "--wav", wavs["yes"]) == EXIT_OK
    record = json.loads(capsys.readouterr().out)
    assert record["intent"]["kind"] == "confirm" and record["transcript"]["backend"]


def test_files_drive_the_loop_from_robot_toml(wavs, tmp_path, capsys):
    calibration = save_calibration(tmp_path / "calibration.json", demo_calibration())
    config = tmp_path / "robot.toml"
    config.write_text(
        f'[camera]\nkind = "synthetic"\nseed = 0\nwidth = 320\nheight = 240\n'
        f'[bundle]\npath = "{DEMO_BUNDLE}"\nproviders = ["cpu"]\n'
        f'[calibration]\npath = "{calibration}"\n'
        '[audit]\npath = "audit.jsonl"\n'
    )
    assert listen("--config", str(config), "--wav", wavs["pick"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "pick.wav: heard" in out and "for the red mug; offering #1" in out
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    heard = [r for r in records if r["event"] == "heard"]
    assert heard and heard[0]["source"] == "pick.wav"
    command = next(r for r in records if r["event"] == "command")
    assert command["intent"]["detector_command"] == "pick up the red mug"


def test_errors_are_clear(tmp_path, monkeypatch):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (langgrasp[voice])")
    with pytest.raises(InputError, match="need --config"):
        listen("--execute", "--wav", "a.wav")
    with pytest.raises(InputError, match="unknown transcriber 'vosk'"):
        listen("--backend", "vosk", "--wav", "a.wav")
    words = tmp_path / "words.toml"
    words.write_text('objects = ["zorbel"]\n')
    with pytest.raises(InputError, match="no pronunciation for 'zorbel'"):
        listen("--vocabulary", str(words), "--wav", "a.wav")
    with pytest.raises(InputError, match="no pronunciation for 'qwzx'"):
        listen("--mode", "wake-word", "--wake-word", "qwzx", "--wav", "a.wav")
    # without sounddevice the error says what to install, before any robot config is read
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import sounddevice -> ImportError
    with pytest.raises(MicrophoneUnavailableError, match="pip install sounddevice"):
        listen("--config", str(tmp_path / "missing.toml"))
