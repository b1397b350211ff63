"""Train lggd-tiny on synthetic scenes in a CPU time budget; J@1, J@5, IoU on held-out scenes.

Usage: python benchmarks/bench_synthetic.py [--minutes 30] [--threads T] [--out runs/bench]

Two runs share the budget: the full model (DCVLF fusion) and the ablation without DCVLF (plain
concatenation fusion, paper Table VI first row). Both train from scratch (no pretrained CLIP
weights exist here, so CLIP is trainable) on the same pre-rendered scenes and are evaluated on the
same held-out ``test`` scenes. Figures are measured, never asserted.

Choices that give a small model on 2 CPU cores its best chance (not tuned at length):

* Scenes are rendered at 128x96 and the model input is 96 px: at 64 px a grasp opening is 2-7 px
  and rectangle IoU becomes a lottery; at 128 px a step costs ~2x more and the budget buys too few.
* The training scenes are rendered once and kept in memory (rendering costs ~1/3 of a step).
* The step count is calibrated from a few timed steps, so the cosine schedule ends when the time
  runs out (a hard time limit stops the run anyway if the machine gets slower).
* Vertical flips are on (the camera looks straight down), rotations stay small (+-10 degrees).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from langgrasp.datasets.base import GroundingDataset, GroundingSample
from langgrasp.datasets.synthetic import SceneConfig
from langgrasp.datasets.synthetic_set import SyntheticDataset
from langgrasp.detector.checkpoint import load_checkpoint
from langgrasp.detector.losses import lggd_loss
from langgrasp.detector.model import PretrainedWeightsWarning, build_model
from langgrasp.evaluation import evaluate_model
from langgrasp.training.config import AugmentConfig, default_config
from langgrasp.training.data import TrainingDataset, collate
from langgrasp.training.loop import train
from langgrasp.training.rundir import resolve_model_config

IMAGE_SIZE = (128, 96)  # rendered scenes, width x height
INPUT_SIZE = 96
BATCH = 16
LR = 1e-3
SCENES = 2000  # distinct training scenes kept in memory (~37 MB)
EVAL_RESERVE_S = 45.0  # evaluation and model loading per run (at most a quarter of its time)
CALIBRATION_STEPS = 2
FUSIONS = ("dcvlf", "concat")


class CachedDataset(GroundingDataset):
    """The first ``n`` samples of ``inner``, each loaded once and then kept in memory."""

    def __init__(self, inner: GroundingDataset, n: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.n = len(inner) if n is None else min(n, len(inner))
        self.samples: dict[int, GroundingSample] = {}

    def __len__(self) -> int:
        return self.n

    def head(self, n: int) -> CachedDataset:
        """The first ``n`` samples, sharing this cache."""
        view = CachedDataset(self.inner, n)
        view.samples = self.samples
        return view

    def sample_id(self, index: int) -> str:
        return self.inner.sample_id(index)

    def load(self, index: int) -> GroundingSample:
        if index not in self.samples:
            self.samples[index] = self.inner.load(index)
        return self.samples[index]


def seconds_per_step(config, data: TrainingDataset) -> float:
    """Median time of a training step (forward, loss, backward, AdamW) of a fresh model."""
    model = build_model(resolve_model_config(config), freeze_clip=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    batch = collate([data[i] for i in range(config.batch_size)])
    times = []
    for _ in range(CALIBRATION_STEPS + 1):
        start = time.monotonic()
        output = model(batch.images, batch.tokens)
        lggd_loss(output, batch.masks, batch.grasp_maps)["total"].backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.monotonic() - start)
    return statistics.median(times[1:])  # the first step warms up the allocator


def run(fusion: str, seconds: float, train_set, test_set, args) -> dict:
    """Train one model for about ``seconds`` and evaluate it on the held-out scenes."""
    config = default_config(
        "lggd-tiny",
        out=str(Path(args.out) / fusion),
        batch_size=BATCH,
        lr=LR,
        num_workers=0,
        val_split="",
        freeze_clip=False,
        model_options={"input_size": INPUT_SIZE, "fusion": fusion},
        augment=AugmentConfig(vflip=0.5, rotation_deg=10.0),
        log_every=25,
        checkpoint_every=10_000,
        seed=args.seed,
    )
    step_s = seconds_per_step(config, TrainingDataset(train_set, resolve_model_config(config)))
    reserve = min(EVAL_RESERVE_S, seconds / 4)
    train_s = max(seconds - reserve - (CALIBRATION_STEPS + 1) * step_s, step_s)
    steps = max(int(train_s / step_s), 1)
    # Whole epochs over as many distinct scenes as the steps can visit.
    epochs = max(round(steps * BATCH / len(train_set)), 1)
    train_set = train_set.head(max(steps * BATCH // epochs, BATCH))
    steps_per_epoch = math.ceil(len(train_set) / BATCH)
    config = replace(
        config,
        epochs=epochs,
        warmup_steps=min(100, steps // 10),
        time_limit_minutes=train_s / 60,
    )
    started = time.monotonic()
    result = train(config, train_data=train_set, show_progress=args.progress)
    trained_s = time.monotonic() - started
    model, _ = load_checkpoint(result.checkpoint)
    metrics = evaluate_model(model, test_set, batch_size=32).metrics
    return {
        "fusion": fusion,
        "steps": result.step,
        "planned_steps": config.epochs * steps_per_epoch,
        "s_per_step": round(step_s, 3),
        "train_scenes": len(train_set),
        "epochs": result.epoch,
        "train_min": round(trained_s / 60, 2),
        "J@1": round(metrics["j@1"], 4),
        "J@5": round(metrics["j@5"], 4),
        "IoU": round(metrics["iou"], 4),
        "test_samples": int(metrics["n"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="total time budget")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--test-samples", type=int, default=200, help="held-out test scenes")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--out", default=f"runs/bench-synthetic-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--progress", action="store_true", help="show the training progress bar")
    args = parser.parse_args()
    started = time.monotonic()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", PretrainedWeightsWarning)  # no CLIP weights on purpose
    scene = SceneConfig().resized(*IMAGE_SIZE)
    budget_s = args.minutes * 60
    scenes = min(SCENES, max(BATCH * 8, int(budget_s * 2)))  # ~1 s of rendering per 100 scenes
    train_set = CachedDataset(SyntheticDataset("train", n=scenes, scene_config=scene))
    for i in tqdm(range(len(train_set)), desc="rendering training scenes", leave=False):
        train_set.load(i)
    test_set = SyntheticDataset("test", n=args.test_samples, scene_config=scene)
    per_run_s = (budget_s - (time.monotonic() - started)) / len(FUSIONS)
    header = {"model": "lggd-tiny", "input_px": INPUT_SIZE, "scene_px": IMAGE_SIZE}
    header.update(train_scenes=scenes, batch=BATCH, lr=LR, threads=args.threads)
    print(json.dumps({**header, "budget_min": args.minutes}), flush=True)
    rows = [run(fusion, per_run_s, train_set, test_set, args) for fusion in FUSIONS]
    print(f"{'fusion':8} {'steps':>6} {'train min':>9} {'J@1':>6} {'J@5':>6} {'IoU':>6}")
    for row in rows:
        print(
            f"{row['fusion']:8} {row['steps']:6d} {row['train_min']:9.2f} {row['J@1']:6.3f} "
            f"{row['J@5']:6.3f} {row['IoU']:6.3f}"
        )
        print(json.dumps(row), flush=True)
    print(f"total {(time.monotonic() - started) / 60:.1f} min; runs in {args.out}")


if __name__ == "__main__":
    main()
