"""``langgrasp train``: train a detector, or resume a run (imports torch only when it runs)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

DATASETS = ("synthetic", "ocid-vlg", "grasp-anything")
"""The registered datasets (``langgrasp.datasets.base.list_datasets``; a test keeps them equal)."""

EPILOG = """examples:
  langgrasp train --dataset synthetic --out runs/synth
  langgrasp train --dataset ocid-vlg --data-root /data/OCID_VLG/OCID_Grasp --model lggd-rn50 \\
      --dataset-option version=multiple --out runs/ocid-rn50
  langgrasp train --resume --out runs/ocid-rn50          (continue after a crash or a stop)
  langgrasp train --dataset synthetic --set augment.vflip=0.5 --set model_options.fusion=concat
  torchrun --nproc_per_node 4 -m langgrasp.cli train --dataset ocid-vlg ...   (several GPUs)

--set KEY=VALUE sets any TrainConfig field (langgrasp/training/config.py), nested with dots.
The run folder gets config.json, train.csv, val.csv, skipped.csv, tensorboard/, curves.png,
checkpoints/ (resumable training state) and best/ (best validation J@1)."""


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = sub.add_parser(
        "train",
        help="train a detector on a dataset (resumable; several GPUs with torchrun)",
        description="Train an LGGD model. lggd-rn50 uses the paper's recipe (AdamW, lr 1e-4, "
        "weight decay 0.06, 2,000 warm-up steps, cosine decay, 50 epochs, batch 72); lggd-tiny "
        "a lighter one. Every setting can be changed with the options below or --set.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", choices=DATASETS, help="dataset to train on")
    parser.add_argument(
        "--data-root", help="dataset root folder (not needed for synthetic: generated on the fly)"
    )
    parser.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader option, e.g. version=multiple for ocid-vlg (repeatable)",
    )
    parser.add_argument("--model", help="registered model name (default for new runs: lggd-tiny)")
    parser.add_argument(
        "--out", type=Path, help="run folder (default: runs/DATASET-MODEL-TIME; required to resume)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument("--epochs", type=int, help="number of epochs")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--clip-weights", type=Path, help="local pretrained CLIP checkpoint")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any TrainConfig field, e.g. augment.vflip=0.5 or stop_after_steps=1000 (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_cmd_train)


def _explicit(args: argparse.Namespace) -> dict:
    """TrainConfig fields given on the command line (None: not given)."""
    values = {
        "dataset": args.dataset,
        "data_root": None if args.data_root is None else str(args.data_root),
        "model": args.model,
        "out": None if args.out is None else str(args.out),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": args.device,
        "clip_weights": None if args.clip_weights is None else str(args.clip_weights),
    }
    return {k: v for k, v in values.items() if v is not None}


def build_config(args: argparse.Namespace):
    """The TrainConfig a ``langgrasp train`` command line asks for.

    New runs start from the model's recipe; ``--resume`` starts from the run's stored config.
    """
    from langgrasp.errors import InputError
    from langgrasp.training.config import apply_overrides, default_config, replace_fields
    from langgrasp.training.rundir import load_run_config

    explicit = _explicit(args)
    if args.resume:
        if args.out is None:
            raise InputError("--resume needs --out RUN_FOLDER: the run to continue")
        config = replace_fields(load_run_config(args.out), explicit)
    else:
        if args.dataset is None:
            raise InputError(
                f"--dataset is required to start a run (one of {', '.join(DATASETS)}); "
                "to continue one, pass --resume --out RUN_FOLDER"
            )
        explicit.setdefault("model", "lggd-tiny")
        if args.out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise InputError(
                "pass --out RUN_FOLDER under torchrun: every process must use the same folder"
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        explicit.setdefault("out", f"runs/{args.dataset}-{explicit['model']}-{stamp}")
        config = default_config(**explicit)
    options = [f"dataset_options.{item}" for item in args.dataset_option]
    return apply_overrides(config, options + list(args.set))


def _cmd_train(args: argparse.Namespace) -> int:
    from langgrasp.training.loop import train

    config = build_config(args)
    result = train(config, resume=args.resume, show_progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    best = "none" if result.best_metric is None else f"{result.best_metric:.4f}"
    print(f"run folder: {result.run_dir}")
    print(f"steps: {result.step}, epochs done: {result.epoch}/{config.epochs}, best J@1: {best}")
    overall = {k: v for k, v in result.val_metrics.items() if "/" not in k}
    if overall:
        print("last validation: " + ", ".join(f"{k} {v:.4g}" for k, v in overall.items()))
    if result.skipped:
        print(f"skipped {result.skipped} broken samples (listed in {result.run_dir}/skipped.csv)")
    if not result.finished:
        print(
            f"stopped early ({result.stop_reason}) with a checkpoint; continue with: "
            f"langgrasp train --resume --out {result.run_dir}"
        )
    return 0
