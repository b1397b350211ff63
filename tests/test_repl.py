"""The typed console: replies, state changes, scripted order, Ctrl-C and end of input stop."""

from __future__ import annotations

import io
import threading

import numpy as np

from langgrasp.calibration.io import Calibration, HandEyeCalibration
from langgrasp.calibration.transforms import make_transform
from langgrasp.datasets.synthetic import SceneConfig
from langgrasp.runtime.audit import AuditLog
from langgrasp.runtime.cameras import SyntheticCamera
from langgrasp.runtime.devices import (
    Arm,
    ArmState,
    ArmStatus,
    Gripper,
    GripperState,
    GripperStatus,
)
from langgrasp.runtime.oracle import GroundTruthDetector
from langgrasp.runtime.pick import LoopState, PickLoop
from langgrasp.runtime.repl import run_repl
from langgrasp.runtime.safety import SafetyConfig

SEED = 3  # a bar with five grasps
SCENE = SceneConfig().resized(320, 240)
T_BASE_CAM = make_transform(
    np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]), [0.35, 0.0, 0.65]
)


class EndlessArm(Arm):
    """An in-process arm whose moves never finish until it is stopped."""

    name = "arm"

    def __init__(self):
        self.state = ArmState.IDLE
        self.stops = 0
        self.moving = threading.Event()

    def connect(self):
        pass

    def disconnect(self):
        pass

    def move_to(self, T_base_ee, speed=0.25, wait=True, timeout_s=30.0):  # noqa: N803
        self.state = ArmState.MOVING
        self.moving.set()
        return self.status()

    def home(self, wait=True, timeout_s=30.0):
        return self.move_to(None)

    def stop(self):
        self.stops += 1
        self.state = ArmState.STOPPED

    def status(self):
        return ArmStatus(self.state, None)


class QuietGripper(Gripper):
    name = "gripper"
    max_width_m = 0.085

    def connect(self):
        pass

    def disconnect(self):
        pass

    def activate(self, timeout_s=10.0):
        return self.status()

    def move_to(self, width_m, speed=1.0, force=0.5):
        pass

    def stop(self):
        pass

    def status(self):
        return GripperStatus(GripperState.AT_POSITION, 0.0, None)

    def wait(self, timeout_s=5.0):
        return self.status()


def make_loop(execute=False, arm=None, gripper=None) -> PickLoop:
    camera = SyntheticCamera(SEED, SCENE)
    camera.connect()
    calibration = Calibration(
        camera.intrinsics, hand_eye=HandEyeCalibration("eye-to-hand", T_BASE_CAM, "park")
    )
    return PickLoop(
        camera,
        GroundTruthDetector(camera),
        calibration,
        arm=arm,
        gripper=gripper,
        safety=SafetyConfig(watchdog_timeout_s=30.0),  # slow CI machines must not trip it
        audit=AuditLog(None),
        execute=execute,
    )


def test_scripted_session_runs_in_order_and_prints_replies_and_states():
    script = "pick the bar\nnext\n\nconfirm\nstatus\nhelp\nsing\npick it up\nquit\npick the bar\n"
    out = io.StringIO()
    with make_loop() as loop:
        assert run_repl(loop, io.StringIO(script), out) == 0
        assert loop.last_report.outcome == "held"  # the motion finished before "status"
    text = out.getvalue()
    assert "DRY RUN" in text
    assert "> pick the bar" in text and "offering #1" in text
    assert "offering #2" in text
    assert "confirmed grasp #2" in text
    assert "  [pregrasp]" in text and "  [idle]" in text  # state changes of the motion thread
    assert text.index("  [idle]") < text.index("> status")
    assert "idle: holding the object" in text  # the status line
    assert "commands: 'pick the red mug'" in text
    assert "! I did not understand 'sing'" in text
    assert "! say what to pick" in text
    assert text.count("> pick the bar") == 1  # nothing is read after quit
    assert text.rstrip().endswith("bye")


def test_end_of_input_stops_a_running_motion():
    arm = EndlessArm()
    with make_loop(execute=True, arm=arm, gripper=QuietGripper()) as loop:
        out = io.StringIO()
        run_repl(loop, io.StringIO("pick the bar\nconfirm\n"), out, wait_for_motion=False)
        assert arm.stops >= 1
        assert loop.wait_until_settled(30.0)
        assert loop.state is LoopState.STOPPED
    assert "stopped during the motion" in out.getvalue()


class InterruptedInput(io.StringIO):
    """Delivers its lines, then raises KeyboardInterrupt like Ctrl-C at the prompt."""

    def readline(self, *args):
        line = super().readline(*args)
        if not line:
            raise KeyboardInterrupt
        return line


def test_ctrl_c_stops_the_robot_and_ends_the_session():
    arm = EndlessArm()
    with make_loop(execute=True, arm=arm, gripper=QuietGripper()) as loop:
        out = io.StringIO()
        lines = InterruptedInput("pick the bar\nconfirm\n")
        assert run_repl(loop, lines, out, wait_for_motion=False) == 0
        assert arm.stops >= 1
        assert loop.wait_until_settled(30.0)
        assert loop.state is LoopState.STOPPED
    assert "stopped" in out.getvalue() and out.getvalue().rstrip().endswith("bye")


# -- langgrasp run ------------------------------------------------------------------------------


def run_parser():
    import argparse

    from langgrasp.runtime.run_commands import register_cli

    parser = argparse.ArgumentParser(prog="langgrasp")
    register_cli(parser.add_subparsers(dest="command", required=True))
    return parser


def test_run_command_line_options():
    args = run_parser().parse_args(
        [
            "run",
            "--config",
            "robot.toml",
            "--execute",
            "--command",
            "pick the bar",
            "--auto-confirm",
        ]
    )
    assert args.execute and args.auto_confirm and args.command == "pick the bar"
    args = run_parser().parse_args(["run", "--config", "robot.toml"])
    assert not args.execute and args.command is None  # dry run and the console by default


def test_run_reports_config_errors_clearly(tmp_path):
    import pytest

    from langgrasp.errors import LanggraspError

    path = tmp_path / "robot.toml"
    path.write_text('[camera]\nkind = "synthetic"\n[safety]\nmin_qualty = 0.5\n')
    args = run_parser().parse_args(["run", "--config", str(path)])
    with pytest.raises(LanggraspError, match=r"\[safety\]: unknown key 'min_qualty'"):
        args.func(args)


def test_one_shot_prints_the_report_and_exit_status(capsys):
    import json

    from langgrasp.runtime.run_commands import EXIT_NOT_DONE, EXIT_OK, _one_shot

    with make_loop() as loop:
        assert _one_shot(loop, "pick the bar", as_json=False) == EXIT_NOT_DONE  # not confirmed
        assert "not confirmed: add --auto-confirm" in capsys.readouterr().out
        loop.auto_confirm = True
        assert _one_shot(loop, "pick the bar", as_json=False) == EXIT_OK
        text = capsys.readouterr().out
        assert "outcome: held" in text and "would send" in text
        assert _one_shot(loop, "pick the unicorn", as_json=True) == EXIT_NOT_DONE
        payload = json.loads(capsys.readouterr().out)
        assert payload["report"]["outcome"] == "not_found" and not payload["reply"]["ok"]
