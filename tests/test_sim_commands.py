"""``langgrasp devices sim``: starts both simulators, prints robot.toml tables that reach them."""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from langgrasp.errors import InputError, LanggraspError
from langgrasp.runtime.devices import ArmState, GripperState
from langgrasp.runtime.modbus_arm import ModbusArm, ModbusArmConfig
from langgrasp.runtime.robotiq import RobotiqConfig, RobotiqGripper
from langgrasp.runtime.sim.commands import register_cli, start_simulators


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="langgrasp")
    register_cli(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(*argv: str) -> int:
    args = _parser().parse_args(["devices", "sim", *argv])
    return args.func(args)


def test_command_prints_where_the_simulators_listen(capsys):
    assert _run("--gripper-port", "0", "--arm-port", "0", "--seconds", "0") == 0
    out = capsys.readouterr().out
    gripper_port = int(re.search(r"Robotiq 2f-85 .*rtu-over-tcp\) on 127\.0\.0\.1:(\d+)", out)[1])
    arm_port = int(re.search(r"registers 128-139, 400-405\) on 127\.0\.0\.1:(\d+)", out)[1])
    tables = tomllib.loads(out[out.index("[gripper]") : out.index("running for")])
    gripper = RobotiqConfig.from_dict(tables["gripper"])
    arm = ModbusArmConfig.from_dict(tables["arm"])
    assert (gripper.modbus.transport, gripper.modbus.port) == ("rtu-over-tcp", gripper_port)
    assert (arm.modbus.transport, arm.modbus.port) == ("tcp", arm_port)
    assert out.rstrip().endswith("simulators stopped")


def test_printed_tables_reach_the_running_devices():
    sims = start_simulators(gripper_port=0, arm_port=0, object_width_m=0.04, arm_speed_m_s=2.0)
    try:
        tables = tomllib.loads(sims.robot_toml())
        arm = ModbusArm(ModbusArmConfig.from_dict(tables["arm"]))
        arm.connect()
        target = sims.arm.home_pose.copy()
        target[2, 3] -= 0.05
        status = arm.move_to(target, speed=1.0)
        assert status.state is ArmState.IDLE
        np.testing.assert_allclose(status.pose[:3, 3], target[:3, 3], atol=1e-4)
        arm.disconnect()
        gripper = RobotiqGripper(RobotiqConfig.from_dict(tables["gripper"]))
        gripper.connect()
        gripper.activate()
        gripper.close()
        held = gripper.wait()
        assert held.state is GripperState.HOLDING  # the --object-width object
        assert held.width_m == pytest.approx(0.04, abs=0.001)
        gripper.disconnect()
    finally:
        sims.stop()


def test_taken_port_is_an_error_and_nothing_is_left_running():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            gripper_port = probe.getsockname()[1]
        with pytest.raises(LanggraspError, match=f"could not listen on 127.0.0.1:{taken}"):
            _run("--gripper-port", str(gripper_port), "--arm-port", str(taken), "--seconds", "0")
    with socket.socket() as again:  # the gripper server that did start was stopped
        # SO_REUSEADDR ignores connections left in TIME_WAIT, but on Linux a bind still fails
        # while a socket is listening on the port, which is what this checks.
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", gripper_port))


def test_bad_arguments():
    with pytest.raises(InputError, match="seconds"):
        _run("--seconds", "-1")
    with pytest.raises(InputError, match="unknown Robotiq model"):
        _run("--gripper-model", "3f", "--gripper-port", "0", "--arm-port", "0")
    with pytest.raises(SystemExit):
        _parser().parse_args(["devices"])  # an action is required


def test_module_imports_only_argparse_level_things():
    code = (
        "import sys, langgrasp.runtime.sim.commands; "
        "print(sorted(m for m in ('numpy', 'pymodbus') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
