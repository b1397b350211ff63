"""``langgrasp eval``: score a checkpoint on a dataset split and print the paper's table.

Only argparse-level imports at the top (``langgrasp --help`` must work without torch); the
handler imports the rest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PROTOCOL_NAMES = ("standard", "crog")
"""Keys of ``langgrasp.evaluation.scoring.PROTOCOLS`` (not imported here: it loads OpenCV)."""

SKIPPED_SHOWN = 10
"""Skipped samples listed on the terminal; the JSON report lists all of them."""

DEFAULT_OVERLAY_DIR = Path("eval_overlays")
"""Overlay folder when neither --out-dir nor --json is given."""


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand to the ``langgrasp`` parser."""
    parser = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset split (J@1, J@5, mask IoU, Pr@X; seen/unseen/H)",
        description="Run a trained checkpoint on a dataset split, print the paper's table "
        "(OCID-VLG: J@1, J@5, IoU, Pr@50..90; Grasp-Anything++: seen / unseen / H; synthetic: "
        "also per instruction family) and optionally write a JSON report and overlay pictures. "
        "Protocol 'standard': IoU > 0.25 and angle < 30 deg wrapped at 180; 'crog': CROG's "
        "evaluation code (its angle gate, 20 px jaws, GT opening clipped to 100 px) for "
        "comparisons with CROG's numbers.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder")
    parser.add_argument(
        "--dataset", required=True, help="dataset name: ocid-vlg, grasp-anything or synthetic"
    )
    parser.add_argument(
        "--data-root", type=Path, default=None, help="dataset root (not needed for synthetic)"
    )
    parser.add_argument("--split", default="test", help="split name (default: %(default)s)")
    parser.add_argument(
        "--version", default=None, help="dataset version, e.g. OCID-VLG 'multiple' or 'novel-*'"
    )
    parser.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader option (repeatable), e.g. opening_edge=p1p2 for ocid-vlg, "
        "split_file=PATH or layout=release for grasp-anything, n=200 for synthetic",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    parser.add_argument(
        "--overlays",
        type=int,
        default=0,
        metavar="N",
        help="write overlay PNGs of the first N samples (default: %(default)s)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="overlay folder (default: <json name>_overlays next to --json, else "
        f"./{DEFAULT_OVERLAY_DIR})",
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="evaluate N samples spread evenly"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="samples per network call (default: %(default)s)"
    )
    parser.add_argument(
        "--top-k", type=int, default=5, help="grasps kept per sample, J@k (default: %(default)s)"
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOL_NAMES,
        default="standard",
        help="grasp matching rules (default: %(default)s)",
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... or auto (default: %(default)s)"
    )
    parser.set_defaults(func=_cmd_eval)


def _overlay_dir(args: argparse.Namespace) -> Path | None:
    if not args.overlays:
        return None
    if args.out_dir is not None:
        return args.out_dir
    if args.json is not None:
        return args.json.with_name(f"{args.json.stem}_overlays")
    return DEFAULT_OVERLAY_DIR


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    import torch

    from langgrasp.datasets.base import open_dataset, parse_options
    from langgrasp.detector.checkpoint import load_checkpoint
    from langgrasp.errors import InputError
    from langgrasp.evaluation.evaluate import evaluate_model
    from langgrasp.fileio import atomic_write_bytes

    if args.overlays < 0:
        raise InputError(f"--overlays must be >= 0, got {args.overlays}")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, meta = load_checkpoint(args.checkpoint, map_location=device)
    options = parse_options(args.dataset_option)
    if args.version is not None:
        options["version"] = args.version
    dataset = open_dataset(args.dataset, args.data_root, args.split, **options)
    overlay_dir = _overlay_dir(args)
    result = evaluate_model(
        model,
        dataset,
        max_samples=args.limit,
        batch_size=args.batch_size,
        progress=True,
        device=device,
        top_k=args.top_k,
        overlays=args.overlays,
        overlay_dir=overlay_dir,
        protocol=args.protocol,
    )
    version = "" if args.version is None else f" (version {args.version})"
    print(
        result.report(
            f"{args.dataset} split {args.split}{version}, {model.config.name} "
            f"checkpoint {args.checkpoint}"
        )
    )
    for sample_id, reason in result.skipped[:SKIPPED_SHOWN]:
        print(f"  skipped {sample_id}: {reason}")
    if len(result.skipped) > SKIPPED_SHOWN:
        more = len(result.skipped) - SKIPPED_SHOWN
        print(f"  ... and {more} more skipped" + (" (all listed in --json)" if args.json else ""))
    if args.json is not None:
        report = {
            "checkpoint": str(args.checkpoint),
            "checkpoint_meta": meta,
            "model": model.config.name,
            "dataset": args.dataset,
            "data_root": None if args.data_root is None else str(args.data_root),
            "split": args.split,
            "version": args.version,
            "dataset_options": options,
            "limit": args.limit,
            "top_k": args.top_k,
            **result.to_dict(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.json, (json.dumps(report, indent=1) + "\n").encode())
        print(f"report written to {args.json}")
    if overlay_dir is not None:
        print(f"{len(result.overlays)} overlay pictures written to {overlay_dir}")
    return 0 if result.metrics.get("n") else 1
