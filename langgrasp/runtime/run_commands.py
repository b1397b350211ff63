"""``langgrasp run``: the pick loop from robot.toml, as a console or one command for scripts.

Only argparse-level imports at the top; the loop, camera, detector and devices load inside the
handler, so ``langgrasp --help`` stays fast and torch-free.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langgrasp.runtime.pick import PickLoop

EXIT_OK = 0
EXIT_NOT_DONE = 1
"""One-shot mode: the pick did not complete (not found, refused, stopped, fault, unconfirmed)."""

DONE_OUTCOMES = ("placed", "held")


def add_loop_arguments(parser: argparse.ArgumentParser, config_required: bool = True) -> None:
    """``--config``, ``--execute`` and ``--auto-confirm``: shared by run, serve and listen."""
    parser.add_argument("--config", type=Path, required=config_required, help="robot.toml")
    parser.add_argument(
        "--execute",
        action="store_true",
        help="send commands to the gripper and arm (default: dry run, nothing is sent)",
    )
    parser.add_argument(
        "--auto-confirm",
        action="store_true",
        help="execute the best executable grasp without asking (the safety limits still apply)",
    )


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    parser = sub.add_parser(
        "run",
        help="run the pick loop from robot.toml (typed console, or one --command)",
        description="Open the camera, model bundle, calibration, gripper and arm named in "
        "robot.toml and run the pick loop: a typed console ('pick the red mug', next, confirm, "
        "stop, home, open, status, help), or one --command for scripts. Dry run unless "
        "--execute: everything is computed, checked and logged, nothing is sent to the devices.",
    )
    add_loop_arguments(parser)
    parser.add_argument(
        "--command",
        default=None,
        help='run one command (e.g. "pick the red mug"), print the pick report and exit',
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from langgrasp.runtime.config import load_robot_config
    from langgrasp.runtime.pick import build_loop
    from langgrasp.runtime.repl import run_repl

    config = load_robot_config(args.config)
    if args.execute:
        print("EXECUTE: commands are sent to the devices; the robot will move", file=sys.stderr)
    loop = build_loop(config, execute=args.execute, auto_confirm=args.auto_confirm)
    with loop:
        if args.command is None:
            return run_repl(loop)
        return _one_shot(loop, args.command, args.json)


def _one_shot(loop: PickLoop, command: str, as_json: bool) -> int:
    """Run one command, wait for its motion, print the report; 0 when the pick completed."""
    try:
        reply = loop.command(command)
        loop.wait_until_settled()
    except KeyboardInterrupt:
        reply = loop.stop()
    report = loop.last_report
    if report is not None and report.outcome == "awaiting_confirm":
        report.message += " (not confirmed: add --auto-confirm, or use the console to confirm)"
    if as_json:
        payload = {"reply": reply.to_dict(), "report": None if report is None else report.to_dict()}
        print(json.dumps(payload))
    else:
        print(reply.message)
        if report is not None and report.command == command:
            print(report.format())
    if report is not None and report.command == command:
        return EXIT_OK if report.outcome in DONE_OUTCOMES else EXIT_NOT_DONE
    return EXIT_OK if reply.ok else EXIT_NOT_DONE
