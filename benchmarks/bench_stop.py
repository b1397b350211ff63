"""Stop latency: from the HTTP stop request to the arm-stop register write, while the arm moves.

Usage: python benchmarks/bench_stop.py [--repeats 50] [--speed 0.02] [--load 0]

Set-up, all on this machine: the Robotiq and arm simulators on 127.0.0.1, a synthetic RGB-D
camera, a detector that returns the scene's ground-truth grasps (the model is not what is
measured), the pick loop executing against the simulators, and ``langgrasp serve``'s app on a
real uvicorn server. Each repetition picks, confirms, waits until the simulated arm moves, waits
a random fraction of the loop's poll period (so the stop lands anywhere in the status-poll
cycle), then sends ``POST /api/stop`` from an HTTP client with a kept-alive connection.

Measured: request -> write, from just before the client sends the request to the moment the arm
simulator handles the stop register write (``ArmSim.stop_times``); the server, the simulator
and the client share this process, hence one ``time.monotonic`` clock. Also printed: the HTTP
round trip as the client sees it. ``--load N`` adds N clients that fetch live camera pictures
(``GET /api/live``: a frame, drawing, JPEG encoding) without pause during the whole run, to show
that a stop does not queue behind other requests. The whole run is made twice: with an
``[audit]`` file in robot.toml (as a real cell has: every device write and command is appended
to it) and without one (records kept in memory only). Target (issue 7): under 50 ms median.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from langgrasp.calibration.io import save_calibration
from langgrasp.runtime.cameras import SyntheticCamera
from langgrasp.runtime.config import robot_config_from_dict
from langgrasp.runtime.demo import demo_calibration, demo_scene_config
from langgrasp.runtime.oracle import GroundTruthDetector
from langgrasp.runtime.pick import build_loop
from langgrasp.runtime.sim.arm import ArmSim
from langgrasp.runtime.sim.robotiq import RobotiqSim
from langgrasp.runtime.web.server import WebServer
from langgrasp.runtime.web.settings import WebSettings

SEED = 3  # a scene whose target ("the bar") has five ground-truth grasps
COMMAND = "pick the bar"
TARGET_MS = 50.0
POLL_S = 0.01  # the loop's arm status poll while a move runs ([motion] poll_interval_s default)
WAIT_S = 30.0  # longest wait for the arm to start moving or to settle
MS = 1000.0


def robot_toml(folder: Path, gripper_port: int, arm_port: int, audit: bool) -> dict:
    """robot.toml content for the simulators (the `langgrasp serve` path).

    Args:
        folder: Where the calibration (and the audit file) are written.
        gripper_port: The Robotiq simulator's TCP port.
        arm_port: The arm simulator's TCP port.
        audit: Add an ``[audit]`` table with a file in ``folder``.
    """
    scene = demo_scene_config()
    calibration = save_calibration(folder / "calibration.json", demo_calibration(scene))
    table = {
        "camera": {"kind": "synthetic", "seed": SEED, "width": scene.width, "height": scene.height},
        "calibration": {"path": str(calibration)},
        "gripper": {"modbus": {"transport": "rtu-over-tcp", "port": gripper_port, "device_id": 9}},
        "arm": {"modbus": {"port": arm_port}},
        "motion": {"travel_speed": 1.0, "approach_speed": 1.0, "poll_interval_s": POLL_S},
        "safety": {
            "workspace_min_m": [0.05, -0.4, -0.05],
            "workspace_max_m": [0.85, 0.4, 0.5],
            "max_speed": 1.0,
        },
    }
    if audit:
        table["audit"] = {"path": str(folder / "audit.jsonl")}
    return table


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.001)


def load_client(url: str, done: threading.Event, counts: list[int]) -> None:
    """Fetch live pictures until ``done``; counts them in ``counts``."""
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        while not done.is_set():
            http.get("/api/live").raise_for_status()
            counts.append(1)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="stops to time (default 50)")
    parser.add_argument(
        "--speed", type=float, default=0.02, help="simulated arm speed, m/s (default 0.02)"
    )
    parser.add_argument(
        "--load", type=int, default=0, help="clients fetching live pictures meanwhile (default 0)"
    )
    args = parser.parse_args()
    for audit in (True, False):
        run(args, audit)


def run(args: argparse.Namespace, audit: bool) -> None:
    """Time ``args.repeats`` stops and print the figures; ``audit``: with an audit file."""
    gripper_sim = RobotiqSim(finger_speed_m_s=5.0, activation_s=0.01)
    arm_sim = ArmSim(speed_m_s=args.speed)
    servers = [gripper_sim.serve(), arm_sim.serve()]
    rng = random.Random(0)
    write_ms: list[float] = []
    round_trip_ms: list[float] = []
    done = threading.Event()
    pictures: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = robot_config_from_dict(
            robot_toml(Path(tmp), servers[0].port, servers[1].port, audit),
            Path(tmp) / "robot.toml",
        )
        camera = SyntheticCamera(SEED, demo_scene_config())
        oracle = GroundTruthDetector(camera, matches=lambda command, scene: True)
        loop = build_loop(config, execute=True, detector=oracle, camera=camera)
        try:
            with (
                loop,
                WebServer(loop, WebSettings(port=0)) as server,
                httpx.Client(base_url=server.url, timeout=WAIT_S) as http,
            ):
                loaders = [
                    threading.Thread(target=load_client, args=(server.url, done, pictures))
                    for _ in range(args.load)
                ]
                for loader in loaders:
                    loader.start()
                for _ in range(args.repeats):
                    reply = http.post("/api/command", json={"text": COMMAND}).json()
                    if not reply["ok"]:
                        raise RuntimeError(f"the pick was refused: {reply['message']}")
                    http.post("/api/confirm").raise_for_status()
                    wait_until(lambda: arm_sim.state.name == "MOVING", "the arm to move")
                    time.sleep(rng.uniform(0.0, POLL_S))
                    before = len(arm_sim.stop_times)
                    start = time.monotonic()
                    http.post("/api/stop").raise_for_status()
                    end = time.monotonic()
                    wait_until(lambda n=before: len(arm_sim.stop_times) > n, "the stop write")
                    write_ms.append((arm_sim.stop_times[before] - start) * MS)
                    round_trip_ms.append((end - start) * MS)
                    if not loop.wait_until_settled(WAIT_S):
                        raise RuntimeError("the loop did not settle after the stop")
                done.set()
                for loader in loaders:
                    loader.join(WAIT_S)
        finally:
            done.set()
            for sim_server in servers:
                sim_server.stop()

    load = f", {args.load} client(s) fetching {len(pictures)} live pictures" if args.load else ""
    where = "with an [audit] file" if audit else "without an audit file"
    print(f"stop latency over {len(write_ms)} stops while the simulated arm moved{load}, {where}:")
    for name, values in (("request -> write", write_ms), ("HTTP round trip", round_trip_ms)):
        print(
            f"  {name:17s} median {statistics.median(values):6.2f} ms   "
            f"p95 {percentile(values, 95):6.2f} ms   max {max(values):6.2f} ms"
        )
    verdict = "meets" if statistics.median(write_ms) < TARGET_MS else "misses"
    print(f"target: request -> write under {TARGET_MS:.0f} ms median ({verdict} it)")


if __name__ == "__main__":
    main()
