"""Run-folder logs: CSV files, TensorBoard events, the skipped-sample report and a curves PNG.

Files (under the run folder)::

    train.csv         one row per ``log_every`` steps: step, epoch, lr, loss terms, grad norm,
                      samples/s
    val.csv           one row per validation: step, epoch and the evaluator's overall metrics
    skipped.csv       every skipped sample: epoch, index, sample id, reason
    tensorboard/      the same scalars for TensorBoard (``tensorboard --logdir RUN``)
    curves.png        training loss and validation metrics against the step

On resume, CSV rows and TensorBoard events after the resumed step (written by the interrupted
run after its last checkpoint) are dropped, so every step appears once.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRAIN_CSV = "train.csv"
VAL_CSV = "val.csv"
SKIPPED_CSV = "skipped.csv"
TENSORBOARD_DIR = "tensorboard"
CURVES_PNG = "curves.png"

TRAIN_COLUMNS = (
    "step",
    "epoch",
    "lr",
    "loss",
    "refine_mask",
    "refine_grasp",
    "coarse_mask",
    "coarse_grasp",
    "grad_norm",
    "samples_per_s",
)
"""Columns of ``train.csv`` (losses are means over the steps since the previous row)."""

PLOTTED_METRICS = ("j@1", "j@5", "iou")
"""Validation metrics drawn in ``curves.png`` when the evaluator reports them."""


def truncate_csv(path: Path, last_step: int) -> None:
    """Drop rows of a CSV with a ``step`` column that lie after ``last_step``."""
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or "step" not in rows[0]:
        return
    column = rows[0].index("step")
    kept = [rows[0]] + [r for r in rows[1:] if _step_of(r, column, last_step + 1) <= last_step]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(kept)


def _step_of(row: list[str], column: int, unreadable: int) -> int:
    """The step of a CSV row; ``unreadable`` for a row cut short by a crash."""
    try:
        return int(float(row[column]))
    except (IndexError, ValueError):
        return unreadable


def _append(path: Path, row: dict[str, Any], columns: Sequence[str]) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with open(path, newline="", encoding="utf-8") as f:
            columns = next(csv.reader(f))  # keep the header the file was started with
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: _cell(v) for k, v in row.items()})


def _cell(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


class RunLog:
    """CSV and TensorBoard writer of one process (use only on the main process)."""

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        """Open the logs of ``run_dir``; with ``resume_step``, drop what came after it."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        if resume_step is not None:
            for name in (TRAIN_CSV, VAL_CSV):
                truncate_csv(run_dir / name, resume_step)
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=purge)

    def train(self, row: dict[str, Any]) -> None:
        """Log one training row (keys of ``TRAIN_COLUMNS``)."""
        _append(self.run_dir / TRAIN_CSV, row, TRAIN_COLUMNS)
        for key in TRAIN_COLUMNS[2:]:
            if key in row and row[key] is not None:
                self.writer.add_scalar(f"train/{key}", row[key], row["step"])

    def val(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        """Log one validation (the evaluator's metrics)."""
        row = {"step": step, "epoch": epoch, **metrics}
        overall = [k for k in row if "/" not in k]  # per-group/family breakdowns: TensorBoard only
        _append(self.run_dir / VAL_CSV, row, overall)
        for key, value in metrics.items():
            self.writer.add_scalar(f"val/{key}", value, step)

    def skipped(self, epoch: int, records: Sequence[Any]) -> None:
        """Append skipped samples (``data.Skipped``) of an epoch to ``skipped.csv``."""
        for record in records:
            row = {"epoch": epoch, "index": record.index, "sample_id": record.sample_id}
            row["reason"] = record.reason
            _append(self.run_dir / SKIPPED_CSV, row, list(row))
        self.writer.add_scalar("train/skipped_samples", len(records), epoch)

    def close(self) -> None:
        """Flush and close TensorBoard."""
        self.writer.close()


def _read_columns(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(math.nan)
    return columns


def plot_curves(run_dir: Path) -> Path:
    """Draw training losses and validation metrics of a run into ``curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = _read_columns(run_dir / TRAIN_CSV), _read_columns(run_dir / VAL_CSV)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "refine_mask", "refine_grasp"):
        if key in train:
            left.plot(train["step"], train[key], label=key)
    left.set(xlabel="step", ylabel="loss", title="training loss")
    if train.get("loss") and min(train["loss"]) > 0:
        left.set_yscale("log")
    for key in PLOTTED_METRICS:
        if key in val:
            right.plot(val["step"], val[key], marker="o", label=key)
    right.set(xlabel="step", ylabel="metric", title="validation", ylim=(-0.02, 1.02))
    for axis in (left, right):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    fig.tight_layout()
    out = run_dir / CURVES_PNG
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
