"""Scoring protocols, per-sample scores and the summary table (NumPy only, no torch).

Two protocols decide how a predicted grasp is matched against the ground truth (``PROTOCOLS``):

``standard`` (default)
    The paper's rectangle metric (Section V.B): IoU > 0.25 with any ground-truth rectangle and an
    angle difference below 30 degrees, wrapped at 180 degrees (a grasp is symmetric under a half
    turn). Rectangles are used as they are: ground truth from the dataset, predictions with the
    jaw size the decoder gives them (``GraspDecoding.jaw_ratio`` x width). This is also the
    Grasp-Anything++ criterion of LGD/GR-ConvNet (shared/research/datasets.md 2.7 point 4), up to
    ``< 30`` vs their ``<= 30`` on the angle.
``crog``
    Reproduces the quirks of CROG's released evaluation code, so that numbers can be put next to
    CROG's (datasets.md 1.9 points 4-5): the angle gate passes unless ``|θp - θg| > 30`` and
    ``|θp + θg| > 30`` (degrees in (-90, 90]; not a wrap at 180, it also accepts 40 vs -40), every
    ground-truth rectangle gets a jaw size of 20 px and its opening clipped to at most 100 px, and
    every predicted rectangle gets a jaw size of 20 px too (CROG builds its predictions with
    ``height = 20``). Predicted openings are not clipped: CROG's are bounded by its sigmoid, ours
    are regressed.

Both protocols score in the original image's pixels (after undoing the letterbox), with exact
polygon IoU (``langgrasp.detector.metrics.rect_iou``) where CROG and GR-ConvNet rasterise, so
expect differences of a few tenths of a point. Ground-truth masks are the dataset's own at full
resolution (CROG compares with its letterboxed GT warped back, which is slightly dilated,
datasets.md 1.9 point 3). LGD scores Grasp-Anything++ at 224 px with the GT scaled down
(datasets.md 2.7); rectangle IoU does not change under a uniform scale, so only rasterisation
differs. Candidates come from the same decoder as
``Predictor`` (mask-gated, Gaussian-smoothed quality peaks), not CROG's ungated
``peak_local_max(min_distance=2, threshold_abs=0.4)``.

Metrics (keys of ``summarize``): ``j@N`` = fraction of samples where any of the top-N predictions
matches any ground-truth grasp (N = 1 and ``top_k``); ``iou`` = mean mask IoU and ``pr@50`` ..
``pr@90`` = fraction with IoU strictly above 0.5 .. 0.9 (CROG's mask protocol, datasets.md 1.9
point 3), over the samples that have a ground-truth mask (``n_mask``); the predicted mask is the
probability map >= the decoder's ``mask_threshold``. Grasp-Anything++ samples carry
``meta["group"]`` (``seen``/``unseen``): ``seen/success`` and ``unseen/success`` are the top-1
success rates of each group and ``h`` their harmonic mean (paper Table IV, LGD Table 1). Samples
with ``meta["family"]`` (synthetic sets: name/attribute/location/relation/part) are also broken
down by family, like CROG's per expression-type table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from langgrasp.detector.grasp import Grasp
from langgrasp.detector.metrics import (
    ANGLE_THRESHOLD_DEG,
    GRASP_IOU_THRESHOLD,
    PR_THRESHOLDS,
    j_at_n,
    mask_iou,
    mean_iou,
    precision_at,
)
from langgrasp.errors import InputError

CROG_JAW_PX = 20.0
"""Jaw size CROG gives every rectangle, prediction and ground truth (datasets.md 1.9 points 4-5,
HilbertXu/CROG utils/grasp_eval.py)."""

CROG_MAX_OPENING_PX = 100.0
"""Upper clip of ground-truth openings in CROG's evaluation (datasets.md 1.9 point 5)."""

GROUPS = ("seen", "unseen")
"""Values of ``meta["group"]`` reported separately (Grasp-Anything++ splits, datasets.md 2.5)."""


@dataclass(frozen=True)
class EvalProtocol:
    """How predicted grasps are matched with the ground truth (see the module docstring).

    Attributes:
        name: Registry key in ``PROTOCOLS``.
        gate: Angle test of ``langgrasp.detector.metrics.grasp_match``: ``"wrapped"`` or
            ``"crog"``.
        gt_jaw_px: When set, every ground-truth rectangle's jaw size (``height``) in pixels.
        gt_max_opening_px: When set, ground-truth openings (``width``) are clipped to it (pixels).
        pred_jaw_px: When set, every predicted rectangle's jaw size in pixels.
        iou_threshold: Rectangle IoU a match must strictly exceed.
        angle_threshold_deg: Angle tolerance in degrees.
        summary: One line for table headers and JSON reports.
    """

    name: str
    gate: str
    gt_jaw_px: float | None = None
    gt_max_opening_px: float | None = None
    pred_jaw_px: float | None = None
    iou_threshold: float = GRASP_IOU_THRESHOLD
    angle_threshold_deg: float = ANGLE_THRESHOLD_DEG
    summary: str = ""

    def ground_truth(self, grasps: Iterable[Grasp]) -> list[Grasp]:
        """Ground-truth rectangles as this protocol scores them (image pixels)."""
        out = []
        for g in grasps:
            if self.gt_max_opening_px is not None:
                g = replace(g, width=min(g.width, self.gt_max_opening_px))
            if self.gt_jaw_px is not None:
                g = replace(g, height=self.gt_jaw_px)
            out.append(g)
        return out

    def predictions(self, grasps: Iterable[Grasp]) -> list[Grasp]:
        """Predicted rectangles as this protocol scores them (order kept)."""
        if self.pred_jaw_px is None:
            return list(grasps)
        return [replace(g, height=self.pred_jaw_px) for g in grasps]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return asdict(self)


PROTOCOLS: dict[str, EvalProtocol] = {
    "standard": EvalProtocol(
        name="standard",
        gate="wrapped",
        summary="standard: rect IoU > 0.25 and angle < 30 deg wrapped at 180 (paper V.B, LGD)",
    ),
    "crog": EvalProtocol(
        name="crog",
        gate="crog",
        gt_jaw_px=CROG_JAW_PX,
        gt_max_opening_px=CROG_MAX_OPENING_PX,
        pred_jaw_px=CROG_JAW_PX,
        summary=(
            "crog: CROG's code - rect IoU > 0.25, angle gate |dp-dg|<=30 or |dp+dg|<=30 (no wrap), "
            "jaw 20 px, GT opening clipped to 100 px"
        ),
    ),
}


def get_protocol(protocol: str | EvalProtocol) -> EvalProtocol:
    """Look up a protocol by name (or pass one through).

    Raises:
        InputError: For an unknown name; the message lists the known ones.
    """
    if isinstance(protocol, EvalProtocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise InputError(
            f"unknown evaluation protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}"
        )
    return PROTOCOLS[protocol]


def j_ns_for(top_k: int) -> tuple[int, ...]:
    """The N of the J@N metrics reported for ``top_k`` candidates: 1 and ``top_k``."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be an int >= 1 (grasps kept per sample), got {top_k!r}")
    return tuple(sorted({1, top_k}))


def score_sample(
    ranked: Sequence[Grasp],
    gt_grasps: Sequence[Grasp],
    pred_mask: np.ndarray | None,
    gt_mask: np.ndarray | None,
    *,
    protocol: EvalProtocol,
    j_ns: Sequence[int],
) -> dict[str, Any]:
    """Score one sample.

    Args:
        ranked: Predicted grasps in image pixels, strongest first.
        gt_grasps: Ground-truth grasps of the referred object in the same pixels.
        pred_mask: ``(H, W)`` predicted mask (non-zero = target), or None.
        gt_mask: ``(H, W)`` ground-truth mask, or None when the sample has none.
        protocol: Matching rules.
        j_ns: N values of J@N.

    Returns:
        ``{"j@N": bool for each N, "mask_iou": float or None}``; the IoU is None unless both
        masks are given.
    """
    preds = protocol.predictions(ranked)
    gts = protocol.ground_truth(gt_grasps)
    match = {
        "iou_threshold": protocol.iou_threshold,
        "angle_threshold_deg": protocol.angle_threshold_deg,
        "gate": protocol.gate,
    }
    scores: dict[str, Any] = {f"j@{n}": j_at_n(preds, gts, n, **match) for n in j_ns}
    both = pred_mask is not None and gt_mask is not None
    scores["mask_iou"] = mask_iou(pred_mask, gt_mask) if both else None
    return scores


def _grasp_and_mask_metrics(records: Sequence[dict[str, Any]], j_ns: Sequence[int]) -> dict:
    metrics: dict[str, float] = {"n": len(records)}
    if not records:
        return metrics
    for n in j_ns:
        metrics[f"j@{n}"] = float(np.mean([r[f"j@{n}"] for r in records]))
    ious = [r["mask_iou"] for r in records if r["mask_iou"] is not None]
    metrics["n_mask"] = len(ious)
    if ious:
        metrics["iou"] = mean_iou(ious)
        metrics.update(precision_at(ious, PR_THRESHOLDS))
    return metrics


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b); 0 when both are 0."""
    return 2.0 * a * b / (a + b) if a + b > 0 else 0.0


def summarize(records: Sequence[dict[str, Any]], j_ns: Sequence[int]) -> dict[str, float]:
    """Aggregate per-sample records into the reported metrics.

    Args:
        records: ``score_sample`` results extended with ``"group"`` and ``"family"`` (str or
            None), one per evaluated sample.
        j_ns: N values of J@N.

    Returns:
        Flat dict: ``n``, ``j@N``, and when masks exist ``n_mask``, ``iou``, ``pr@50..pr@90``
        (fractions in [0, 1]). With groups: ``<group>/n`` for both groups, ``<group>/success``
        (top-1) for non-empty ones, ``h`` when both are non-empty, ``group_unknown/n`` when some
        records have no group. With families: ``family/<name>/<metric>`` for each family present.
        Metrics of an empty set are absent, never 0.
    """
    metrics = _grasp_and_mask_metrics(records, j_ns)
    if any(r.get("group") is not None for r in records):
        for group in GROUPS:
            members = [r for r in records if r.get("group") == group]
            metrics[f"{group}/n"] = len(members)
            if members:
                metrics[f"{group}/success"] = float(np.mean([r["j@1"] for r in members]))
        unknown = sum(r.get("group") not in GROUPS for r in records)
        if unknown:
            metrics["group_unknown/n"] = unknown
        if all(f"{g}/success" in metrics for g in GROUPS):
            metrics["h"] = harmonic_mean(metrics["seen/success"], metrics["unseen/success"])
    families = sorted({r["family"] for r in records if r.get("family") is not None})
    for family in families:
        members = [r for r in records if r.get("family") == family]
        for key, value in _grasp_and_mask_metrics(members, j_ns).items():
            metrics[f"family/{family}/{key}"] = value
    return metrics


def _pct(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    return "-" if value is None else f"{100.0 * value:.1f}"


def _row(cells: Sequence[str], width: int = 8) -> str:
    return "".join(f"{c:>{width}}" for c in cells).rstrip()


def format_report(
    metrics: dict[str, float],
    *,
    title: str,
    protocol: EvalProtocol,
    j_ns: Sequence[int],
    skipped: int = 0,
) -> str:
    """The paper's tables as text.

    OCID-VLG layout (Table I): J@1, J@N, IoU, Pr@50..Pr@90 in percent. When the records carry
    seen/unseen groups, the Grasp-Anything++ layout (Table IV): success rates as fractions and
    their harmonic mean H. A per-family table follows when families are present.

    Args:
        metrics: ``summarize`` output.
        title: First line (dataset, split, checkpoint).
        protocol: Printed in the header.
        j_ns: N values of J@N, as summarised.
        skipped: Samples that could not be loaded.

    Returns:
        Multi-line text without a trailing newline.
    """
    n = int(metrics.get("n", 0))
    lines = [title, f"protocol {protocol.summary}", f"{n} samples evaluated, {skipped} skipped"]
    if n == 0:
        lines.append("no sample could be evaluated: nothing to report")
        return "\n".join(lines)
    n_mask = int(metrics.get("n_mask", 0))
    if n_mask < n:
        lines.append(
            f"mask metrics over the {n_mask} of {n} samples that have a ground-truth mask"
            if n_mask
            else "no sample has a ground-truth mask: no mask metrics"
        )
    j_keys = [f"j@{k}" for k in j_ns]
    pr_keys = [f"pr@{round(t * 100)}" for t in PR_THRESHOLDS]
    if f"{GROUPS[0]}/n" in metrics:
        lines += ["", "Grasp-Anything++ (top-1 success rate; Table IV)"]
        lines.append(_row(["Seen", "Unseen", "H"]))
        cells = []
        for group in GROUPS:
            value = metrics.get(f"{group}/success")
            cells.append("-" if value is None else f"{value:.3f}")
        cells.append("-" if "h" not in metrics else f"{metrics['h']:.3f}")
        lines.append(_row(cells))
        lines.append(
            "  samples: "
            + ", ".join(f"{g} {int(metrics[f'{g}/n'])}" for g in GROUPS)
            + (
                f", no group {int(metrics['group_unknown/n'])}"
                if "group_unknown/n" in metrics
                else ""
            )
        )
        for group in GROUPS:
            if not metrics[f"{group}/n"]:
                lines.append(f"  no {group} samples in this split: {group} and H are not defined")
        lines += ["", "all samples (%)"]
    else:
        lines += ["", "grounding and grasping (%; Table I)"]
    lines.append(_row(["J@" + k[2:] for k in j_keys] + ["IoU"] + ["Pr@" + k[3:] for k in pr_keys]))
    lines.append(_row([_pct(metrics, k) for k in (*j_keys, "iou", *pr_keys)]))
    families = sorted({k.split("/")[1] for k in metrics if k.startswith("family/")})
    if families:
        lines += ["", "by instruction family (%)"]
        lines.append(f"{'family':<12}" + _row(["n", *("J@" + k[2:] for k in j_keys), "IoU"]))
        for family in families:
            prefix = f"family/{family}/"
            sub = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
            cells = [str(int(sub["n"])), *(_pct(sub, k) for k in (*j_keys, "iou"))]
            lines.append(f"{family:<12}" + _row(cells))
    return "\n".join(lines)
