"""Train lggd-tiny on synthetic scenes in a CPU time budget; J@1, J@5, IoU on held-out scenes.

Usage: python benchmarks/bench_synthetic.py [--minutes 30] [--threads T] [--out runs/bench]
       [--fusions dcvlf concat] [--eval-split test] [--set FIELD=JSON ...]

``--set`` changes a field of :class:`Recipe` (``--set lr=1e-3 --set camera_height_m=0.65``).
The choices below were compared in 8-minute training runs on 2,000 scenes, scored on ``val``; they
ran in a scratch copy of this script, and ``--fusions dcvlf --eval-split val --minutes 9
--set scenes=2000`` is the equivalent command.

Two runs share the budget: the full model (DCVLF fusion) and the ablation without DCVLF (plain
concatenation fusion, paper Table VI first row). Both train from scratch (no pretrained CLIP
weights exist here, so CLIP is trainable) on the same pre-rendered scenes and are evaluated on the
same held-out ``test`` scenes. Figures are measured, never asserted.

Choices that give a small model on 2 CPU cores its best chance. Each was compared with the one
before it in 8-minute runs scored on 200 ``val`` scenes (J@1 in brackets):

* The model input is 128 px and the decoder has four upsampling stages instead of five, so masks
  and grasp maps come out at half the input resolution (64x64) and are bilinearly upsampled
  before decoding, as for any config with ``output_stride`` 2. The full-resolution stage, heads
  and refinement cost two thirds of a step, so a step takes half the time of the 96 px
  full-resolution model it replaces (0.36).
* A foreground weight beta = 4 in the mask loss instead of the paper's 0.5, which left small
  targets such as handles below the decoder's 0.5 mask threshold, so no grasp was found on 27 of
  44 part-level instructions (0.35, mask IoU 0.33 -> 0.42), and a peak rate of 2e-3 instead of
  1e-3 (0.45).
* Scenes are rendered at 128x96 with the camera 0.45 m above the table instead of 0.65 m, so
  objects are 1.44x larger: at the default height a mug's handle is 2x3 px and its grasp
  rectangle 4x2 px, which no model locates to the rectangle IoU the metric asks for (0.60). A
  peak rate of 3e-3 then gave about the same (0.62).
* The training scenes are rendered once and kept in memory (rendering a batch of 16
  takes about 40 ms, a sixth of a step).
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
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from tqdm import tqdm

from langgrasp.datasets.base import GroundingDataset, GroundingSample
from langgrasp.datasets.synthetic import SceneConfig
from langgrasp.datasets.synthetic_set import SyntheticDataset
from langgrasp.detector.checkpoint import load_checkpoint
from langgrasp.detector.losses import LossConfig, lggd_loss
from langgrasp.detector.model import PretrainedWeightsWarning, build_model
from langgrasp.evaluation import evaluate_model
from langgrasp.training.config import AugmentConfig, default_config
from langgrasp.training.data import TrainingDataset, collate
from langgrasp.training.loop import train
from langgrasp.training.rundir import resolve_model_config

EVAL_RESERVE_S = 45.0  # evaluation and model loading per run (at most a quarter of its time)
CALIBRATION_STEPS = 2
FUSIONS = ("dcvlf", "concat")


@dataclass(frozen=True)
class Recipe:
    """What the benchmark trains on and how (the choices of the module docstring).

    Attributes:
        image_size: Rendered scenes, (width, height) pixels.
        camera_height_m: Camera above the table (``SceneConfig`` default 0.65).
        input_size: Model input side, pixels.
        decoder_channels: lggd-tiny's upsampling stages; four give outputs at 1/2 resolution.
        batch: Samples per step.
        lr: Peak learning rate (cosine decay to 0 over the calibrated steps).
        foreground_beta: Mask-loss foreground weight (paper eq. 36 uses 0.5).
        scenes: Most distinct training scenes kept in memory (~0.1 MB each with depth and mask).
    """

    image_size: tuple[int, int] = (128, 96)
    camera_height_m: float = 0.45
    input_size: int = 128
    decoder_channels: tuple[int, ...] = (64, 32, 32, 16)
    batch: int = 16
    lr: float = 3e-3
    foreground_beta: float = 4.0
    scenes: int = 4000

    def with_changes(self, items: list[str]) -> Recipe:
        """This recipe with ``FIELD=JSON`` changes (``lr=1e-3``, ``image_size=[160,120]``)."""
        known = {f.name for f in fields(self)}
        changes = {}
        for item in items:
            key, _, raw = item.partition("=")
            if key not in known:
                raise SystemExit(
                    f"--set {item!r}: unknown field; known: {', '.join(sorted(known))}"
                )
            value = json.loads(raw)
            changes[key] = tuple(value) if isinstance(value, list) else value
        return replace(self, **changes)


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


def run(fusion: str, seconds: float, recipe: Recipe, train_set, test_set, args) -> dict:
    """Train one model for about ``seconds`` and evaluate it on the held-out scenes."""
    config = default_config(
        "lggd-tiny",
        out=str(Path(args.out) / fusion),
        batch_size=recipe.batch,
        lr=recipe.lr,
        num_workers=0,
        val_split="",
        freeze_clip=False,
        model_options={
            "input_size": recipe.input_size,
            "decoder_channels": list(recipe.decoder_channels),
            "fusion": fusion,
        },
        augment=AugmentConfig(vflip=0.5, rotation_deg=10.0),
        loss=LossConfig(foreground_beta=recipe.foreground_beta),
        log_every=25,
        checkpoint_every=10_000,
        seed=args.seed,
    )
    step_s = seconds_per_step(config, TrainingDataset(train_set, resolve_model_config(config)))
    reserve = min(EVAL_RESERVE_S, seconds / 4)
    train_s = max(seconds - reserve - (CALIBRATION_STEPS + 1) * step_s, step_s)
    steps = max(int(train_s / step_s), 1)
    # Whole epochs over as many distinct scenes as the steps can visit.
    epochs = max(round(steps * recipe.batch / len(train_set)), 1)
    train_set = train_set.head(max(steps * recipe.batch // epochs, recipe.batch))
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch)
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
        "J@1 by family": {
            key.split("/")[1]: round(value, 3)
            for key, value in metrics.items()
            if key.startswith("family/") and key.endswith("/j@1")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="total time budget")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--test-samples", type=int, default=200, help="held-out scenes scored")
    parser.add_argument("--eval-split", default="test", help="synthetic split scored (val: tuning)")
    parser.add_argument("--fusions", nargs="+", choices=FUSIONS, default=list(FUSIONS))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="change a Recipe field, e.g. --set lr=1e-3",
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--out", default=f"runs/bench-synthetic-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--progress", action="store_true", help="show the training progress bar")
    args = parser.parse_args()
    recipe = Recipe().with_changes(args.set)
    started = time.monotonic()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", PretrainedWeightsWarning)  # no CLIP weights on purpose
    scene = SceneConfig(camera_height_m=recipe.camera_height_m).resized(*recipe.image_size)
    budget_s = args.minutes * 60
    # rendering takes ~0.25 s per 100 scenes at 128x96; memory is the limit
    scenes = min(recipe.scenes, max(recipe.batch * 8, int(budget_s * 2)))
    train_set = CachedDataset(SyntheticDataset("train", n=scenes, scene_config=scene))
    for i in tqdm(range(len(train_set)), desc="rendering training scenes", leave=False):
        train_set.load(i)
    test_set = SyntheticDataset(args.eval_split, n=args.test_samples, scene_config=scene)
    per_run_s = (budget_s - (time.monotonic() - started)) / len(args.fusions)
    header = {"model": "lggd-tiny", **asdict(recipe), "train_scenes": scenes}
    header.update(eval_split=args.eval_split, threads=args.threads, budget_min=args.minutes)
    print(json.dumps(header), flush=True)
    rows = [run(f, per_run_s, recipe, train_set, test_set, args) for f in args.fusions]
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
