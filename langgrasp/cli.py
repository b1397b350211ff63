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
)

UNTRAINED_NOTICE = (
    "UNTRAINED: {model} has random weights (no trained checkpoint exists yet), so the mask and "
    "grasps below only show that the pipeline runs end to end; they are not meaningful detections."
)


def _cmd_info(args: argparse.Namespace) -> int:
    from langgrasp.detector.profile import model_info

    print(json.dumps(model_info(args.model)))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from langgrasp.datasets.synthetic import render_scene
    from langgrasp.detector.model import build_model
    from langgrasp.detector.predict import Predictor
    from langgrasp.detector.visualize import draw_overlay, save_image

    scene = render_scene(args.seed)
    command = scene.text if args.command is None else args.command
    predictor = Predictor(build_model(args.model, clip_weights=args.clip_weights))
    prediction = predictor.predict(scene.rgb, command)
    overlay = draw_overlay(
        scene.rgb,
        mask_prob=prediction.mask_prob,
        grasps=prediction.grasps,
        gt_grasps=scene.grasps if command == scene.text else (),
        title=f"{args.model} (UNTRAINED): {command}",
    )
    out = save_image(args.out, overlay)
    result = {
        "model": args.model,
        "trained": False,
        "scene_seed": args.seed,
        "command": command,
        "target": scene.target_name if command == scene.text else None,
        "grasps": [g.to_dict() for g in prediction.grasps],
        "mask_pixels": int((prediction.mask_prob >= predictor.decoding.mask_threshold).sum()),
        "timings_ms": prediction.timings_ms,
        "overlay": str(out),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(UNTRAINED_NOTICE.format(model=args.model))
    print(f"scene {args.seed}: {command!r}")
    if not prediction.grasps:
        print("no grasp found: no quality peak above the threshold on the predicted target mask")
    for rank, g in enumerate(prediction.grasps, 1):
        print(
            f"  #{rank}: centre ({g.x:.1f}, {g.y:.1f}) px, angle {g.angle:+.3f} rad, "
            f"opening {g.width:.1f} px, quality {g.quality:.3f}"
        )
    network = prediction.timings_ms["network"]
    print(f"network {network:.0f} ms; overlay (green: ground truth, magenta: predicted): {out}")
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
        help="detect on a generated scene with an untrained model and write an overlay picture",
        description="Render a synthetic table-top scene, run the (untrained) detector on it, print "
        "the ranked grasps and write an overlay PNG.",
    )
    demo.add_argument(
        "--model", default="lggd-tiny", help="registered model name (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=0, help="scene seed (default: %(default)s)")
    demo.add_argument("--command", default=None, help="instruction (default: the scene's own)")
    demo.add_argument(
        "--out", type=Path, default=Path("demo.png"), help="overlay PNG (default: %(default)s)"
    )
    demo.add_argument("--clip-weights", type=Path, default=None, help="local CLIP checkpoint file")
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    demo.set_defaults(func=_cmd_demo)

    for entry in COMMAND_MODULES:
        module_name, function = entry.split(":")
        getattr(importlib.import_module(module_name), function)(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr if file is None else file)


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
            f"error: `langgrasp {args.command}` needs the training extra ({err}); install it with "
            "pip install 'langgrasp[train]'",
            file=sys.stderr,
        )
    except OSError as err:  # unwritable output folder, unreadable file, full disk, ...
        print(f"error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
