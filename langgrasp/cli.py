"""The ``langgrasp`` command line.

Subcommands import what they need when they run, so ``langgrasp --help`` works on a
runtime-only install without torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from langgrasp.errors import LanggraspError

EXIT_BAD_INPUT = 2

# Subcommand groups living next to the code they drive: "module:function", where the function
# takes the subparsers object and adds its parsers. These modules import only argparse-level
# things at the top, so `langgrasp --help` works on a runtime-only install.
COMMAND_MODULES = (
    "langgrasp.datasets.synthetic_set:register_cli",
    "langgrasp.datasets.check:register_cli",
    "langgrasp.training.commands:register_cli",
    "langgrasp.evaluation.commands:register_cli",
    "langgrasp.export.commands:register_cli",
    "langgrasp.runtime.commands:register_cli",
    "langgrasp.calibration.commands:register_cli",
    "langgrasp.runtime.sim.commands:register_cli",
    "langgrasp.runtime.run_commands:register_cli",
    "langgrasp.runtime.web.commands:register_cli",
    "langgrasp.runtime.voice.commands:register_cli",
)

DEMO_SEED = 4
"""Scene of `langgrasp demo` (and `make demo`): one the shipped demo bundle picks correctly."""


def _cmd_info(args: argparse.Namespace) -> int:
    from langgrasp.detector.profile import model_info

    print(json.dumps(model_info(args.model)))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from langgrasp.errors import InputError
    from langgrasp.runtime.bundle import read_manifest
    from langgrasp.runtime.demo import DEMO_BUNDLE, run_demo

    bundle = args.bundle or DEMO_BUNDLE
    if args.command is not None and not args.command.strip():
        raise InputError(
            "the command is empty; say what to pick, e.g. --command 'pick the red mug'"
        )
    manifest = read_manifest(bundle)
    result = run_demo(
        seed=args.seed,
        command=args.command,
        out=args.out,
        bundle=bundle,
        audit_path=args.audit,
        arm_speed_m_s=args.sim_speed,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "scene_seed": result.scene_seed,
                    "overlay": None if result.overlay is None else str(result.overlay),
                    **result.report,
                }
            )
        )
        return 0
    j1 = (manifest.metrics or {}).get("j@1")
    trained = f"validation J@1 {j1:.2f}" if j1 is not None else "no recorded metrics"
    print(f"bundle: {bundle} ({manifest.model}, {trained})")
    print(
        f"scene {result.scene_seed} (synthetic camera), simulated Robotiq gripper and arm on "
        "127.0.0.1, executed"
    )
    print(result.text)
    if result.overlay is not None:
        print(f"overlay (green: ground truth, magenta: detected grasps): {result.overlay}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from langgrasp import __version__

    parser = argparse.ArgumentParser(
        prog="langgrasp", description="Language-guided grasp detection (LGGD)."
    )
    parser.add_argument("--version", action="version", version=f"langgrasp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="print a model config's size and cost as one JSON line")
    info.add_argument(
        "--model", default="lggd-rn50", help="registered model name (default: %(default)s)"
    )
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser(
        "demo",
        help="a whole pick on a synthetic scene with simulated devices (no hardware, no torch)",
        description="Starts simulated Robotiq gripper and arm servers on 127.0.0.1, renders a "
        "table-top scene with the synthetic RGB-D camera, runs the shipped demo bundle through "
        "the pick loop (executing against the simulators), prints the pick report and writes an "
        "overlay PNG.",
    )
    demo.add_argument(
        "--seed", type=int, default=DEMO_SEED, help="scene seed (default: %(default)s)"
    )
    demo.add_argument("--command", default=None, help="instruction (default: the scene's own)")
    demo.add_argument(
        "--out", type=Path, default=Path("demo.png"), help="overlay PNG (default: %(default)s)"
    )
    demo.add_argument(
        "--bundle", type=Path, default=None, help="bundle folder (default: the shipped demo bundle)"
    )
    demo.add_argument("--audit", type=Path, default=None, help="JSONL audit log to append to")
    demo.add_argument(
        "--sim-speed",
        type=float,
        default=1.0,
        help="full speed of the simulated arm, m/s (default: %(default)s)",
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    demo.set_defaults(func=_cmd_demo)

    for entry in COMMAND_MODULES:
        module_name, function = entry.split(":")
        getattr(importlib.import_module(module_name), function)(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr if file is None else file)


EXTRA_OF_PACKAGE = {
    "torch": "train",
    "open_clip": "train",
    "kornia": "train",
    "onnx": "train",
    "safetensors": "train",
    "pocketsphinx": "voice",
    "sounddevice": "voice",
}
"""Top-level package -> the langgrasp extra that installs it (pyproject.toml)."""


def _install_hint(err: ImportError) -> str:
    """Which extra to install for the package behind ``err``."""
    package = (err.name or "").split(".")[0]
    extra = EXTRA_OF_PACKAGE.get(package, "runtime")
    return f"install it with pip install 'langgrasp[{extra}]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``langgrasp`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning  # one line per warning, no source excerpt
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except LanggraspError as err:
        print(f"error: {err}", file=sys.stderr)
    except ImportError as err:
        print(
            f"error: `langgrasp {args.command}` needs a package that is not installed ({err}); "
            f"{_install_hint(err)}",
            file=sys.stderr,
        )
    except OSError as err:  # unwritable output folder, unreadable file, full disk, ...
        print(f"error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
