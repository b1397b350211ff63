"""``langgrasp export``: write a model bundle for the torch-free runtime from a checkpoint.

Only argparse-level imports at the top: torch and onnx load inside the handler.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = sub.add_parser(
        "export",
        help="export a checkpoint as an ONNX model bundle for the runtime (GraspDetector)",
        description="Export a checkpoint as a self-contained bundle: text-encoder graph, "
        "per-frame graph (optionally also int8 and fp16), tokenizer files and manifest.json. "
        "The export checks the graphs against PyTorch on generated scenes and fails if any "
        "output differs by more than --atol or a top-1 grasp changes.",
    )
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="checkpoint folder (langgrasp train)"
    )
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    parser.add_argument(
        "--int8", action="store_true", help="also write a static QDQ int8 frame graph (CPU)"
    )
    parser.add_argument(
        "--fp16", action="store_true", help="also write an fp16 frame graph (GPU providers)"
    )
    parser.add_argument(
        "--calib-data",
        default="synthetic",
        help="int8 calibration scenes: 'synthetic' (generated) or a dataset name "
        "(default: %(default)s)",
    )
    parser.add_argument("--calib-root", type=Path, default=None, help="dataset root folder")
    parser.add_argument(
        "--calib-split", default="train", help="dataset split (default: %(default)s)"
    )
    parser.add_argument(
        "--calib-n", type=int, default=None, help="calibration scenes (default: 256)"
    )
    parser.add_argument(
        "--parity-scenes",
        type=int,
        default=None,
        help="generated scenes for the parity checks (default: 8)",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=None,
        help="largest |ONNX fp32 - PyTorch| of any output (default: 1e-4)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from langgrasp.detector.checkpoint import load_checkpoint
    from langgrasp.export.exporter import ExportOptions, checkpoint_source, export_bundle
    from langgrasp.export.quantize import DEFAULT_CALIBRATION_COUNT, CalibrationSource

    calibration = CalibrationSource(
        dataset=args.calib_data,
        root=args.calib_root,
        split=args.calib_split,
        count=DEFAULT_CALIBRATION_COUNT if args.calib_n is None else args.calib_n,
    )
    defaults = ExportOptions()
    options = ExportOptions(
        fp16=args.fp16,
        int8=args.int8,
        calibration=calibration,
        parity_scenes=defaults.parity_scenes if args.parity_scenes is None else args.parity_scenes,
        atol=defaults.atol if args.atol is None else args.atol,
        overwrite=args.overwrite,
    )
    model, meta = load_checkpoint(args.checkpoint)
    result = export_bundle(
        model, args.out, options, source=checkpoint_source(args.checkpoint, meta)
    )
    manifest = result.manifest
    files = [manifest.text_graph, *manifest.frame_graphs.values(), manifest.vocab]
    if args.json:
        print(
            json.dumps(
                {
                    "bundle": str(result.bundle),
                    "model": manifest.model,
                    "files": {f.file: f.size_bytes for f in files},
                    "parity": [r.to_dict() for r in result.reports],
                    "seconds": result.seconds,
                }
            )
        )
        return 0
    versions = f"opset {manifest.opset}, IR {manifest.ir_version}"
    print(f"bundle {result.bundle} ({manifest.model}, {versions})")
    for entry in files:
        print(f"  {entry.file:32s} {entry.size_bytes / 2**20:9.1f} MiB")
    for report in result.reports:
        print(f"  parity: {report.summary()}")
    print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
    return 0
