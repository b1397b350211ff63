"""Spoken commands driving the pick loop: push-to-talk, wake word, stop during a motion.

Covers ``voice.listener`` and the sessions built on it (``voice.sessions``).

Speech comes from espeak-ng and is recognised by PocketSphinx (both skip, saying why, where
missing). The loop runs on a synthetic camera (scene 25: a red mug, the target, and a blue box)
with a detector that returns the scene's ground-truth grasps for "pick up the red mug" only, so
a test fails unless speech reaches the detector in exactly the typed wording. The motion test
drives the simulated Robotiq gripper and Modbus arm on 127.0.0.1.
"""

from __future__ import annotations

import io
import shutil
import threading
import time

import numpy as np
import pytest

from langgrasp.calibration.io import Calibration, HandEyeCalibration, save_calibration
from langgrasp.calibration.transforms import make_transform
from langgrasp.datasets.synthetic import SceneConfig
from langgrasp.runtime import oracle
from langgrasp.runtime.audit import AuditLog
from langgrasp.runtime.cameras import SyntheticCamera
from langgrasp.runtime.config import robot_config_from_dict
from langgrasp.runtime.engine import Detection
from langgrasp.runtime.intents import IntentKind
from langgrasp.runtime.pick import LoopState, PickLoop, build_loop
from langgrasp.runtime.safety import SafetyConfig
from langgrasp.runtime.voice.audio import load_utterance, synthesize, write_wav
from langgrasp.runtime.voice.listener import Listener, ListenerConfig, ListenMode, text_after
from langgrasp.runtime.voice.sessions import run_files, run_push_to_talk, run_wake_word
from langgrasp.runtime.voice.transcriber import AudioError, TranscriberConfig, create_transcriber

if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed (apt install espeak-ng)", allow_module_level=True)
pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (langgrasp[voice])")

RATE = 16_000
SEED = 25  # target: the red mug (4 grasps); a blue box lies next to it
TARGET = "pick up the red mug"
SCENE = SceneConfig().resized(320, 240)
T_BASE_CAM = make_transform(
    np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]), [0.35, 0.0, 0.65]
)
"""Camera straight down 0.65 m above the table (as in tests/test_pick.py)."""
WAIT_S = 30.0  # generous limit for waits on events (never a timing assertion)
PHRASES = {
    "mumbled": "um pick up the red mug please",
    "pick": "pick up the red mug",
    "next": "next one",
    "yes": "yes",
    "stop": "stop",
    "stop_robot": "stop the robot",  # a lone "stop" cut from a stream is not recognised
    "wake": "robot pick up the blue box",
    "no_wake": "pick up the blue box",
    "robot": "robot",
    "cut": "pick up the",
}


class GroundTruthDetector(oracle.GroundTruthDetector):
    """The scene oracle for ``TARGET`` only; records every command."""

    def __init__(self, camera: SyntheticCamera) -> None:
        super().__init__(camera, matches=lambda command, scene: command == TARGET)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("speech")
    return {key: synthesize(text, folder / f"{key}.wav") for key, text in PHRASES.items()}


@pytest.fixture(scope="module")
def speech(wavs) -> dict[str, np.ndarray]:
    return {key: load_utterance(path, RATE) for key, path in wavs.items()}


@pytest.fixture(scope="module")
def transcriber():
    return create_transcriber(TranscriberConfig())


def calibration(camera: SyntheticCamera) -> Calibration:
    return Calibration(
        camera.intrinsics, hand_eye=HandEyeCalibration("eye-to-hand", T_BASE_CAM, "park")
    )


@pytest.fixture
def loop():
    """A dry-run loop without devices."""
    camera = SyntheticCamera(SEED, SCENE)
    camera.connect()
    safety = SafetyConfig(watchdog_timeout_s=30.0)  # slow CI machines must not trip it
    with PickLoop(
        camera,
        GroundTruthDetector(camera),
        calibration(camera),
        safety=safety,
        audit=AuditLog(None),
    ) as loop:
        yield loop


def wake_listener(transcriber, loop=None, **options) -> Listener:
    return Listener(transcriber, loop, ListenerConfig(ListenMode.WAKE_WORD, **options))


# -- push-to-talk -------------------------------------------------------------------------------


def test_spoken_and_typed_commands_reach_the_detector_alike(transcriber, speech, loop):
    listener = Listener(transcriber, loop)
    spoken = listener.hear(speech["mumbled"], RATE, "mumbled.wav")
    assert spoken.reply.ok and spoken.reply.state == "awaiting_confirm", spoken.format()
    assert spoken.intent.target == "the red mug" and spoken.command == spoken.text
    typed = listener.type("pick the red mug")
    assert typed.reply.ok and typed.transcript is None
    assert loop.detector.commands == [TARGET, TARGET]
    heard = loop.audit.tail(10, "heard")
    assert heard[-1]["text"] == spoken.text and heard[-1]["source"] == "mumbled.wav"
    assert "mumbled.wav: heard" in spoken.format() and "offering #1" in spoken.format()


def test_spoken_replies_next_confirm_stop(transcriber, speech, loop):
    listener = Listener(transcriber, loop)
    assert listener.hear(speech["pick"], RATE).reply.ok
    following = listener.hear(speech["next"], RATE)
    assert following.intent.kind is IntentKind.NEXT and "#2" in following.reply.message
    confirmed = listener.hear(speech["yes"], RATE)
    assert confirmed.intent.kind is IntentKind.CONFIRM and confirmed.reply.ok
    assert loop.wait_until_settled(WAIT_S)
    assert loop.last_report.outcome == "held" and loop.last_report.chosen.rank == 2
    stopped = listener.hear(speech["stop"], RATE)
    assert stopped.intent.kind is IntentKind.STOP and loop.state is LoopState.STOPPED


def test_bad_audio_is_refused_before_the_loop(transcriber, speech, loop):
    listener = Listener(transcriber, loop)
    stereo = np.stack([speech["yes"]] * 2, axis=1)
    with pytest.raises(AudioError, match="channels"):
        listener.hear(stereo, RATE)
    with pytest.raises(AudioError, match="22050 Hz"):
        listener.hear(speech["yes"], 22_050)
    with pytest.raises(AudioError, match="empty"):
        listener.hear(np.zeros(0, np.int16), RATE)
    assert loop.audit.tail(10, "command") == []


def test_low_confidence_and_silence_are_ignored(transcriber, speech):
    strict = Listener(transcriber, None, ListenerConfig(min_confidence=1.0))
    assert "confidence" in strict.hear(speech["pick"], RATE).ignored
    assert strict.hear(speech["stop"], RATE).ignored is None  # stop is never filtered
    cut = Listener(transcriber).hear(speech["cut"], RATE)
    assert cut.ignored.startswith("incomplete command 'pick up") and cut.command is None
    assert cut.text.startswith("pick up")  # the fragment is shown to the operator
    quiet = Listener(transcriber).hear(np.zeros(RATE // 2, np.int16), RATE)
    assert quiet.ignored.startswith("silence (loudest -100 dBFS)") and quiet.command is None
    assert quiet.format().startswith("audio: heard ''\n  (ignored: silence")


# -- wake word ----------------------------------------------------------------------------------


def test_wake_word_gates_commands_but_not_stop(transcriber, speech, loop):
    listener = wake_listener(transcriber, loop)
    woken = listener.hear(speech["wake"], RATE)
    assert woken.woke and woken.ignored is None
    assert woken.command == "pick up the blue box" and woken.intent.target == "the blue box"
    ignored = listener.hear(speech["no_wake"], RATE)
    assert ignored.ignored == "no wake word 'robot'" and ignored.reply is None
    assert loop.detector.commands == ["pick up the blue box"]
    stopped = listener.hear(speech["stop"], RATE)
    assert not stopped.woke and stopped.reply.ok and loop.state is LoopState.STOPPED


def test_lone_wake_word_opens_a_window(transcriber, speech):
    listener = wake_listener(transcriber, None, wake_window_s=60.0)
    alone = listener.hear(speech["robot"], RATE)
    assert alone.woke and "listening for the command" in alone.ignored
    follow = listener.hear(speech["no_wake"], RATE)
    assert follow.ignored is None and follow.intent.target == "the blue box"
    assert "-> pick: 'pick up the blue box'" in follow.format()
    again = listener.hear(speech["no_wake"], RATE)  # the window closes after one command
    assert again.ignored == "no wake word 'robot'"
    closed = wake_listener(transcriber, None, wake_window_s=0.0)
    closed.hear(speech["robot"], RATE)
    time.sleep(0.01)
    assert closed.hear(speech["no_wake"], RATE).ignored == "no wake word 'robot'"


def test_wake_word_session_on_a_continuous_stream(transcriber, speech, loop):
    pause = np.zeros(RATE, np.int16)
    stream = np.concatenate([pause, speech["no_wake"], pause, speech["wake"], pause])
    blocks = (stream[i : i + 480] for i in range(0, stream.size, 480))  # 30 ms, like a mic
    out = io.StringIO()
    heard = run_wake_word(wake_listener(transcriber, loop), blocks, RATE, out=out)
    assert [h.ignored is None for h in heard] == [False, True]
    assert loop.detector.commands == ["pick up the blue box"]
    text = out.getvalue()
    assert "Say 'robot' and the command" in text and "no wake word" in text


def test_listener_config_is_checked():
    from langgrasp.errors import InputError

    assert ListenerConfig("wake-word", " Hey  Jarvis ").wake_word == "hey jarvis"
    with pytest.raises(InputError, match="unknown listen mode 'always'; use one of push-to-talk"):
        ListenerConfig("always")
    with pytest.raises(InputError, match="wake word is empty"):
        ListenerConfig(wake_word=" ")
    with pytest.raises(InputError, match="min_confidence"):
        ListenerConfig(min_confidence=2.0)


def test_text_after_the_wake_word():
    assert text_after("um robot pick the mug", "robot") == "pick the mug"
    assert text_after("pick the mug", "robot") == "pick the mug"
    assert text_after("hey jarvis stop", "hey jarvis") == "stop"


# -- sessions -----------------------------------------------------------------------------------


def test_files_drive_a_dry_run_loop_end_to_end(transcriber, wavs, loop):
    out = io.StringIO()
    paths = [wavs["mumbled"], wavs["next"], wavs["yes"]]
    heard = run_files(Listener(transcriber, loop), paths, out=out)
    assert [h.intent.kind for h in heard] == [IntentKind.PICK, IntentKind.NEXT, IntentKind.CONFIRM]
    assert all(h.reply.ok for h in heard)
    assert loop.last_report.outcome == "held"  # run_files waits for the last motion
    text = out.getvalue()
    assert "mumbled.wav: heard" in text and "found 4 grasp(s) for the red mug" in text
    assert "[pregrasp]" in text  # state changes of the motion thread are printed


def test_files_accept_other_rates_and_stereo(transcriber, speech, tmp_path):
    stereo = np.stack([speech["yes"]] * 2, axis=1)
    path = write_wav(tmp_path / "stereo.wav", stereo, RATE)
    [heard] = run_files(Listener(transcriber), [path], out=io.StringIO(), as_json=True)
    assert heard.intent.kind is IntentKind.CONFIRM
    with pytest.raises(AudioError, match="no such audio file"):
        run_files(Listener(transcriber), [tmp_path / "missing.wav"], out=io.StringIO())


class WavRecorder:
    """Push-to-talk recorder that plays back one utterance per recording."""

    sample_rate = RATE

    def __init__(self, utterances: list[np.ndarray]) -> None:
        self.utterances = list(utterances)
        self.recording = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> np.ndarray:
        assert self.recording, "stop() without start()"
        self.recording = False
        return self.utterances.pop(0)


def test_push_to_talk_console(transcriber, speech, loop):
    recorder = WavRecorder([speech["pick"], np.zeros(0, np.int16)])
    keys = io.StringIO("\n\n" + "\n\n" + "next\n" + "quit\n")
    out = io.StringIO()
    assert run_push_to_talk(Listener(transcriber, loop), recorder, keys, out) == 0
    text = out.getvalue()
    assert "push-to-talk (DRY RUN" in text and "Enter: talk" in text
    assert "recording... press Enter to stop" in text
    assert "mic: heard 'pick up the red mug'" in text
    assert "! the audio is empty" in text  # an empty recording is reported, not fatal
    assert "typed: typed 'next'" in text and "#2" in text
    assert recorder.utterances == []


# -- stop while a pick is detecting ------------------------------------------------------------

HOLD_S = 10.0
"""How long the blocking detector waits for a stop before giving up (the test then fails)."""


class BlockingDetector(GroundTruthDetector):
    """Holds every detection until the loop reports STOPPED (a slow model on a busy machine)."""

    def __init__(self, camera: SyntheticCamera) -> None:
        super().__init__(camera)
        self.started = threading.Event()
        self.released = threading.Event()
        self.released_by_stop: bool | None = None

    def on_change(self, change) -> None:
        if change.state == LoopState.STOPPED.value:
            self.released.set()

    def detect(self, rgb: np.ndarray, command: str) -> Detection:
        self.started.set()
        self.released_by_stop = self.released.wait(HOLD_S)
        return super().detect(rgb, command)


@pytest.fixture
def detecting_loop():
    """A dry-run loop whose detector blocks until stopped."""
    camera = SyntheticCamera(SEED, SCENE)
    camera.connect()
    detector = BlockingDetector(camera)
    safety = SafetyConfig(watchdog_timeout_s=30.0)
    with PickLoop(camera, detector, calibration(camera), safety=safety) as loop:
        loop.add_listener(detector.on_change)
        yield loop


def test_spoken_stop_interrupts_a_detection_in_a_stream(transcriber, speech, detecting_loop):
    loop, detector = detecting_loop, detecting_loop.detector
    pause = np.zeros(RATE, np.int16)

    def blocks():
        for part in (pause, speech["pick"], pause):
            yield from (part[i : i + 480] for i in range(0, part.size, 480))
        assert detector.started.wait(WAIT_S), "the pick never reached the detector"
        for part in (speech["stop_robot"], pause):
            yield from (part[i : i + 480] for i in range(0, part.size, 480))

    out = io.StringIO()
    heard = run_wake_word(Listener(transcriber, loop), blocks(), RATE, out=out)
    assert detector.released_by_stop, (
        f"stop was not run until the detection ended: {out.getvalue()}"
    )
    # stop finished first, in the listening thread; the pick then ended as stopped
    assert [h.intent.kind for h in heard] == [IntentKind.STOP, IntentKind.PICK]
    assert heard[0].reply.ok and not heard[1].reply.ok
    assert "stopped by the operator" in heard[1].reply.message
    assert loop.state is LoopState.STOPPED and loop.last_report.outcome == "stopped"


class Keys:
    """Console input that types each line only once ``ready`` (a callable) says so."""

    def __init__(self, *lines: tuple[str, object]) -> None:
        self.lines = list(lines)

    def readline(self) -> str:
        if not self.lines:
            return ""
        line, ready = self.lines.pop(0)
        if ready is not None:
            assert ready(), f"gave up waiting to type {line!r}"
        return line


def test_push_to_talk_stop_drops_queued_commands(transcriber, speech, detecting_loop):
    loop, detector = detecting_loop, detecting_loop.detector
    started = lambda: detector.started.wait(WAIT_S)  # noqa: E731
    keys = Keys(("\n", None), ("\n", None), ("next\n", started), ("stop\n", None), ("quit\n", None))
    out = io.StringIO()
    assert (
        run_push_to_talk(Listener(transcriber, loop), WavRecorder([speech["pick"]]), keys, out) == 0
    )
    assert detector.released_by_stop, "stop was not run until the detection ended"
    text = out.getvalue()
    dropped = "typed: typed 'next'\n  (ignored: dropped: stop was heard before it ran)"
    assert dropped in text
    assert text.index("typed: typed 'stop'") < text.index("mic: heard 'pick up the red mug'")
    assert loop.state is LoopState.STOPPED and loop.detector.commands == [TARGET]


# -- stop during a motion on the simulated devices ----------------------------------------------


@pytest.fixture
def slow_rig_loop(tmp_path):
    """Execute mode against the simulators; the arm needs seconds per move."""
    from langgrasp.runtime.sim.arm import ArmSim
    from langgrasp.runtime.sim.robotiq import RobotiqSim

    arm, gripper = ArmSim(speed_m_s=0.02, angular_speed_rad_s=0.4), RobotiqSim(activation_s=0.01)
    servers = [gripper.serve()]
    servers.append(arm.serve())
    camera = SyntheticCamera(SEED, SCENE)
    path = save_calibration(tmp_path / "calibration.json", calibration(camera))
    config = {
        "camera": {"kind": "synthetic", "seed": SEED, "width": 320, "height": 240},
        "calibration": {"path": str(path)},
        "gripper": {
            "poll_period_s": 0.005,
            "modbus": {"transport": "rtu-over-tcp", "port": servers[0].port, "device_id": 9},
        },
        "arm": {"poll_interval_s": 0.005, "modbus": {"port": servers[1].port}},
        "motion": {"poll_interval_s": 0.005, "move_timeout_s": 60.0},
        "safety": {
            "workspace_min_m": [0.05, -0.4, -0.05],
            "workspace_max_m": [0.65, 0.4, 0.5],
            "watchdog_timeout_s": 10.0,
        },
    }
    loop = build_loop(
        robot_config_from_dict(config, tmp_path / "robot.toml"),
        execute=True,
        detector=GroundTruthDetector(camera),
        camera=camera,
    )
    try:
        yield loop, arm
    finally:
        loop.close()
        for server in servers:
            server.stop()


def test_spoken_stop_halts_a_running_motion(transcriber, speech, slow_rig_loop):
    loop, arm = slow_rig_loop
    listener = Listener(transcriber, loop)
    assert listener.hear(speech["pick"], RATE).reply.ok
    assert listener.hear(speech["yes"], RATE).reply.ok
    deadline = time.monotonic() + WAIT_S
    while arm.state.name != "MOVING":
        assert time.monotonic() < deadline, "the arm never started moving"
        time.sleep(0.005)
    stopped = listener.hear(speech["stop"], RATE)  # heard while the worker thread moves
    assert stopped.reply.ok and "during the motion" in stopped.reply.message
    assert loop.wait_until_settled(WAIT_S)
    assert loop.state is LoopState.STOPPED and loop.last_report.outcome == "stopped"
    assert arm.stops >= 1 and arm.state.name == "STOPPED"
    assert len(arm.targets) == 1  # only the pre-grasp was ever sent


def test_files_without_waiting_let_a_stop_file_interrupt_the_motion(
    transcriber, wavs, slow_rig_loop
):
    loop, arm = slow_rig_loop
    paths = [wavs["pick"], wavs["yes"], wavs["stop"]]
    out = io.StringIO()
    heard = run_files(Listener(transcriber, loop), paths, out=out, wait_for_motion=False)
    assert [h.intent.kind for h in heard] == [IntentKind.PICK, IntentKind.CONFIRM, IntentKind.STOP]
    assert "during the motion" in heard[-1].reply.message
    assert loop.state is LoopState.STOPPED and loop.last_report.outcome == "stopped"
    assert arm.stops >= 1 and len(arm.targets) <= 1  # never got past the pre-grasp
