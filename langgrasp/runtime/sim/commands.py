"""``langgrasp devices sim``: run the simulated gripper and arm on 127.0.0.1 until Ctrl-C.

Only argparse-level imports at the top; the simulators (and pymodbus) load inside the handler.
The ``devices`` group is meant to grow (e.g. ``devices check`` against real hardware).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_GRIPPER_PORT = 5020
"""Unprivileged stand-in for the UR RS485 tunnel (54321) in front of the gripper."""
DEFAULT_ARM_PORT = 5021
"""Unprivileged stand-in for the UR controller's Modbus TCP port 502."""
WAKE_INTERVAL_S = 0.2
"""How often the waiting loop checks its deadline."""


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``devices`` command group to the ``langgrasp`` subparsers."""
    group = sub.add_parser(
        "devices",
        help="simulated Modbus devices (gripper and arm) for tests and the demo",
        description="Device tools. `devices sim` serves a simulated Robotiq gripper and a "
        "simulated arm controller on local ports.",
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    sim = actions.add_parser(
        "sim",
        help="serve a simulated Robotiq gripper and arm controller until Ctrl-C",
        description="Start a simulated Robotiq gripper (Modbus RTU framing over TCP, like the UR "
        "RS485 tunnel) and a simulated arm controller (Modbus TCP, the register protocol of "
        "docs/arm_protocol.md), print where they listen and the robot.toml tables that reach "
        "them, and run until Ctrl-C.",
    )
    sim.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    sim.add_argument(
        "--gripper-port",
        type=int,
        default=DEFAULT_GRIPPER_PORT,
        help="gripper TCP port, 0 = any free one (default %(default)s)",
    )
    sim.add_argument(
        "--arm-port",
        type=int,
        default=DEFAULT_ARM_PORT,
        help="arm controller TCP port, 0 = any free one (default %(default)s)",
    )
    sim.add_argument(
        "--gripper-model",
        default="2f-85",
        help="Robotiq model: 2f-85, 2f-140 or hand-e (default %(default)s)",
    )
    sim.add_argument(
        "--object-width",
        type=float,
        default=None,
        metavar="METRES",
        help="width of an object between the fingers: closing stops on it and reports holding "
        "(default: no object)",
    )
    sim.add_argument(
        "--arm-speed",
        type=float,
        default=None,
        metavar="M_PER_S",
        help="simulated tool speed at full speed (default: the URScript program's 0.25 m/s)",
    )
    sim.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="stop after this many seconds instead of waiting for Ctrl-C",
    )
    sim.set_defaults(func=_cmd_sim)


@dataclass
class Simulators:
    """Running simulators: the device models and their servers."""

    host: str
    gripper: Any  # RobotiqSim
    gripper_server: Any  # SimServer
    arm: Any  # ArmSim
    arm_server: Any  # SimServer

    def robot_toml(self) -> str:
        """The ``[gripper]`` and ``[arm]`` robot.toml tables that reach these simulators."""
        return robot_toml_snippet(
            self.host, self.gripper, self.gripper_server, self.arm, self.arm_server
        )

    def stop(self) -> None:
        """Stop both servers."""
        self.arm_server.stop()
        self.gripper_server.stop()


def start_simulators(
    host: str = DEFAULT_HOST,
    gripper_port: int = DEFAULT_GRIPPER_PORT,
    arm_port: int = DEFAULT_ARM_PORT,
    gripper_model: str = "2f-85",
    object_width_m: float | None = None,
    arm_speed_m_s: float | None = None,
) -> Simulators:
    """Start the gripper and arm simulators (ports 0 = any free one).

    Raises:
        InputError: an unknown gripper model or an object wider than its stroke.
        LanggraspError: a port is taken (nothing is left running).
    """
    from langgrasp.runtime.sim.arm import DEFAULT_SPEED_M_S, ArmSim
    from langgrasp.runtime.sim.robotiq import RobotiqSim

    gripper = RobotiqSim(model=gripper_model, object_width_m=object_width_m)
    arm = ArmSim(speed_m_s=DEFAULT_SPEED_M_S if arm_speed_m_s is None else arm_speed_m_s)
    gripper_server = gripper.serve(host, gripper_port)
    try:
        arm_server = arm.serve(host, arm_port)
    except BaseException:
        gripper_server.stop()
        raise
    return Simulators(host, gripper, gripper_server, arm, arm_server)


def _cmd_sim(args: argparse.Namespace) -> int:
    from langgrasp.errors import InputError

    if args.seconds is not None and args.seconds < 0:
        raise InputError(f"--seconds must be >= 0, got {args.seconds}")
    sims = start_simulators(
        args.host,
        args.gripper_port,
        args.arm_port,
        args.gripper_model,
        args.object_width,
        args.arm_speed,
    )
    try:
        print(
            f"simulated Robotiq {sims.gripper.model.name} (unit {sims.gripper.device_id}, "
            f"{_transport(sims.gripper_server.framer)}) on {args.host}:{sims.gripper_server.port}"
        )
        print(
            f"simulated arm controller (unit {sims.arm.device_id}, tcp, registers "
            f"{_runs(sims.arm.map.register_numbers())}) on {args.host}:{sims.arm_server.port}"
        )
        print("\nrobot.toml tables for these devices:\n")
        print(sims.robot_toml())
        if args.seconds is None:
            print("Ctrl-C stops the simulators.", flush=True)
        else:
            print(f"running for {args.seconds:g} s", flush=True)
        _wait(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        sims.stop()
    print("simulators stopped")
    return 0


def robot_toml_snippet(
    host: str, gripper: Any, gripper_server: Any, arm: Any, arm_server: Any
) -> str:
    """The ``[gripper]`` and ``[arm]`` robot.toml tables that reach the running simulators.

    Args:
        host: Address the servers listen on.
        gripper: The ``RobotiqSim``.
        gripper_server: Its running ``SimServer``.
        arm: The ``ArmSim``.
        arm_server: Its running ``SimServer``.
    """
    return (
        "[gripper]\n"
        f'model = "{gripper.model.name}"\n'
        "[gripper.modbus]\n"
        f'transport = "{_transport(gripper_server.framer)}"\n'
        f'host = "{host}"\n'
        f"port = {gripper_server.port}\n"
        f"device_id = {gripper.device_id}\n"
        "\n"
        "[arm]\n"
        'profile = "ur"\n'
        "[arm.modbus]\n"
        'transport = "tcp"\n'
        f'host = "{host}"\n'
        f"port = {arm_server.port}\n"
        f"device_id = {arm.device_id}\n"
    )


def _runs(numbers: list[int]) -> str:
    """Sorted register numbers as ranges: ``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _transport(framer: str) -> str:
    """``ModbusConfig.transport`` that talks to a ``SimServer`` with this framer."""
    return "rtu-over-tcp" if framer == "rtu" else "tcp"


def _wait(seconds: float | None) -> None:
    deadline = None if seconds is None else time.monotonic() + seconds
    while deadline is None or time.monotonic() < deadline:
        remaining = WAKE_INTERVAL_S if deadline is None else deadline - time.monotonic()
        time.sleep(max(0.0, min(WAKE_INTERVAL_S, remaining)))
