"""Grounding metrics: rectangle IoU, grasp success, J@N and mask IoU / Pr@X (paper Section V.B).

Pure NumPy, no torch (``grasp``, imported for ``Grasp``, adds OpenCV), so evaluation and the
edge runtime can share it. Grasps follow the conventions of ``langgrasp.detector.grasp`` (pixels,
angle in radians in [-π/2, π/2), counter-clockwise on screen).

Grasp success (the Cornell/Jacquard "rectangle metric", shared/research/datasets.md 3.2 and 3.5):
a predicted grasp matches a ground-truth one when their rectangles' IoU is > 0.25 and their angles
agree within 30 degrees. J@N is the fraction of samples where any of the top-N predictions matches
any ground truth. Our IoU is exact (polygon clipping), whereas GR-ConvNet and CROG rasterise
(datasets.md 1.9 point 5), so pixel-level differences of a few percent in IoU are expected.

Mask metrics follow CROG (datasets.md 1.9 point 3): per-sample IoU, its mean, and Pr@X, the
fraction of samples with IoU strictly greater than X.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from langgrasp.detector.grasp import Grasp, wrap_angle

GRASP_IOU_THRESHOLD = 0.25
"""Rectangle IoU a match must exceed (Cornell rectangle metric: paper V.B, CROG, GR-ConvNet)."""

ANGLE_THRESHOLD_DEG = 30.0
"""Angle tolerance in degrees of the rectangle metric (paper Section V.B: "less than 30°")."""

PR_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
"""Mask IoU thresholds of Pr@50..Pr@90 (CROG's test protocol, datasets.md 1.9 point 3)."""

J_AT_NS = (1, 5)
"""N values of J@N reported by CROG and the paper (datasets.md 1.9 point 5)."""

ANGLE_GATES = ("wrapped", "crog")
"""Angle tests accepted by ``grasp_match`` (see there)."""


def _cross(o: np.ndarray, a: np.ndarray, p: np.ndarray) -> float:
    """Z component of (a - o) x (p - o); > 0 when p is left of the directed line o -> a."""
    return float((a[0] - o[0]) * (p[1] - o[1]) - (a[1] - o[1]) * (p[0] - o[0]))


def _polygon_area(points: np.ndarray) -> float:
    """Signed shoelace area of a simple polygon.

    Args:
        points: ``(N, 2)`` vertices (x, y) in order; N may be 0.

    Returns:
        Area in square pixels, positive when the vertices run counter-clockwise in a y-up frame
        (clockwise on screen, where y points down); 0 for fewer than 3 vertices.
    """
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _clip_convex(subject: np.ndarray, clipper: np.ndarray) -> np.ndarray:
    """Sutherland–Hodgman: the part of convex ``subject`` inside convex ``clipper``.

    Args:
        subject: ``(N, 2)`` convex polygon.
        clipper: ``(M, 2)`` convex polygon with positive signed area (``_ccw``).

    Returns:
        ``(K, 2)`` intersection polygon, K = 0 when they do not overlap.
    """
    output = list(subject)
    for a, b in zip(clipper, np.roll(clipper, -1, axis=0), strict=True):
        points, output = output, []
        for i, cur in enumerate(points):
            prev = points[i - 1]
            s_prev, s_cur = _cross(a, b, prev), _cross(a, b, cur)
            if (s_cur >= 0) != (s_prev >= 0):  # the edge crosses the clip line
                output.append(prev + (cur - prev) * (s_prev / (s_prev - s_cur)))
            if s_cur >= 0:
                output.append(cur)
    return np.asarray(output, dtype=np.float64).reshape(-1, 2)


def _ccw(points: np.ndarray) -> np.ndarray:
    return points if _polygon_area(points) >= 0 else points[::-1]


def rect_iou(a: Grasp, b: Grasp) -> float:
    """Exact intersection over union of two grasp rectangles (polygon clipping, not rasterised).

    Args:
        a: First rectangle (width x height pixels, any angle).
        b: Second rectangle.

    Returns:
        IoU in [0, 1]; 0 when the union has zero area (degenerate rectangles).
    """
    pa, pb = _ccw(a.corners()), _ccw(b.corners())
    area_a, area_b = _polygon_area(pa), _polygon_area(pb)
    inter = _polygon_area(_clip_convex(pa, pb)) if area_a > 0 and area_b > 0 else 0.0
    union = area_a + area_b - inter
    return float(min(max(inter / union, 0.0), 1.0)) if union > 0 else 0.0


def angle_difference_deg(a: Grasp, b: Grasp) -> float:
    """Absolute angle difference of two grasps in degrees, wrapped at 180 (grasp symmetry).

    Args:
        a: First grasp (angle in radians).
        b: Second grasp.

    Returns:
        Difference in degrees in [0, 90]; e.g. 179° vs 1° gives 2°.
    """
    d = abs(math.degrees(a.angle - b.angle)) % 180.0
    return min(d, 180.0 - d)


def _check_gate(gate: str) -> None:
    if gate not in ANGLE_GATES:
        raise ValueError(f"unknown angle gate {gate!r}; expected one of {ANGLE_GATES}")


def _crog_deg(angle: float) -> float:
    """Radians -> degrees in CROG's range (-90, 90] (datasets.md 1.6), where our -90 is +90."""
    return -math.degrees(float(wrap_angle(-angle)))


def angle_gate(pred: Grasp, gt: Grasp, angle_threshold_deg: float, gate: str = "wrapped") -> bool:
    """Whether two grasp angles agree under the chosen test.

    Args:
        pred: Predicted grasp.
        gt: Ground-truth grasp.
        angle_threshold_deg: Tolerance in degrees.
        gate: ``"wrapped"``: ``angle_difference_deg < threshold`` (the proper test; paper: "less
            than 30°"). ``"crog"``: CROG's released code (datasets.md 1.9 point 5) with both angles
            in degrees in (-90, 90]: passes unless ``|θp - θg| > thr and |θp + θg| > thr``. That is
            not a wrap at 180° (it accepts 40° vs -40°, 80° apart) and exists only to compare with
            CROG's published numbers.

    Returns:
        True when the angles agree.

    Raises:
        ValueError: For an unknown gate.
    """
    _check_gate(gate)
    if gate == "crog":
        tp, tg = _crog_deg(pred.angle), _crog_deg(gt.angle)
        return abs(tp - tg) <= angle_threshold_deg or abs(tp + tg) <= angle_threshold_deg
    return angle_difference_deg(pred, gt) < angle_threshold_deg


def grasp_match(
    pred: Grasp,
    gt: Grasp,
    *,
    iou_threshold: float = GRASP_IOU_THRESHOLD,
    angle_threshold_deg: float = ANGLE_THRESHOLD_DEG,
    gate: str = "wrapped",
) -> bool:
    """Rectangle metric: IoU > ``iou_threshold`` and the angle gate passes.

    Args:
        pred: Predicted grasp in pixels.
        gt: Ground-truth grasp in the same pixels.
        iou_threshold: IoU the pair must strictly exceed.
        angle_threshold_deg: Angle tolerance in degrees.
        gate: ``"wrapped"`` or ``"crog"``, see ``angle_gate``.

    Returns:
        True when the prediction matches the ground truth.

    Raises:
        ValueError: For an unknown gate.
    """
    return angle_gate(pred, gt, angle_threshold_deg, gate) and rect_iou(pred, gt) > iou_threshold


def grasp_success(
    pred: Grasp,
    gts: Sequence[Grasp],
    *,
    iou_threshold: float = GRASP_IOU_THRESHOLD,
    angle_threshold_deg: float = ANGLE_THRESHOLD_DEG,
    gate: str = "wrapped",
) -> bool:
    """Whether ``pred`` matches any ground-truth grasp (``grasp_match``); False for no GTs."""
    _check_gate(gate)
    return any(
        grasp_match(
            pred,
            gt,
            iou_threshold=iou_threshold,
            angle_threshold_deg=angle_threshold_deg,
            gate=gate,
        )
        for gt in gts
    )


def j_at_n(
    ranked_preds: Sequence[Grasp],
    gts: Sequence[Grasp],
    n: int,
    *,
    iou_threshold: float = GRASP_IOU_THRESHOLD,
    angle_threshold_deg: float = ANGLE_THRESHOLD_DEG,
    gate: str = "wrapped",
) -> bool:
    """One sample's J@N: whether any of the top ``n`` predictions matches any ground truth.

    Args:
        ranked_preds: Predictions sorted by quality, strongest first (``decode_grasps`` order).
        gts: Ground-truth grasps of the referred object.
        n: Number of top predictions considered, >= 1.
        iou_threshold: See ``grasp_match``.
        angle_threshold_deg: See ``grasp_match``.
        gate: See ``grasp_match``.

    Returns:
        True on success; False when there are no predictions or no ground truths.

    Raises:
        ValueError: If ``n < 1`` or the gate is unknown.
    """
    if n < 1:
        raise ValueError(f"J@N needs n >= 1, got {n}")
    _check_gate(gate)
    return any(
        grasp_success(
            pred,
            gts,
            iou_threshold=iou_threshold,
            angle_threshold_deg=angle_threshold_deg,
            gate=gate,
        )
        for pred in list(ranked_preds)[:n]
    )


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two masks.

    Args:
        pred: ``(H, W)`` predicted mask; non-zero means foreground (threshold probabilities first).
        gt: ``(H, W)`` ground-truth mask, same convention.

    Returns:
        IoU in [0, 1]. When both masks are empty the prediction is exactly right and the IoU is
        defined as 1.0 (CROG's ``inter / (union + 1e-6)`` would give 0; referring targets are
        never empty in OCID-VLG, so this does not affect comparisons).

    Raises:
        ValueError: If the masks are not 2-D or their shapes differ.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f"masks must be (H, W) of equal shape, got {pred.shape} and {gt.shape}")
    union = np.count_nonzero(pred | gt)
    return float(np.count_nonzero(pred & gt) / union) if union else 1.0


def _as_ious(ious: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(ious, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("need at least one IoU value")
    return values


def mean_iou(ious: Sequence[float] | np.ndarray) -> float:
    """Mean of per-sample mask IoUs (CROG's "IoU"); ValueError when empty."""
    return float(_as_ious(ious).mean())


def precision_at(
    ious: Sequence[float] | np.ndarray, thresholds: Sequence[float] = PR_THRESHOLDS
) -> dict[str, float]:
    """Pr@X: fraction of samples whose mask IoU is strictly greater than X.

    Args:
        ious: Per-sample mask IoUs in [0, 1].
        thresholds: IoU thresholds X in (0, 1).

    Returns:
        ``{"pr@50": ..., "pr@90": ...}``: keys are ``pr@`` plus X in percent (rounded), values
        fractions in [0, 1].

    Raises:
        ValueError: When ``ious`` is empty.
    """
    values = _as_ious(ious)
    return {f"pr@{round(t * 100)}": float(np.mean(values > t)) for t in thresholds}


class GroundingMetrics:
    """Accumulates per-sample grasp and mask results and summarises them.

    Args:
        j_ns: N values for J@N.
        iou_threshold: Rectangle IoU threshold of a grasp match.
        angle_threshold_deg: Angle tolerance in degrees.
        gate: Angle gate, ``"wrapped"`` or ``"crog"`` (see ``angle_gate``).
        pr_thresholds: Mask IoU thresholds of Pr@X.
    """

    def __init__(
        self,
        j_ns: Sequence[int] = J_AT_NS,
        *,
        iou_threshold: float = GRASP_IOU_THRESHOLD,
        angle_threshold_deg: float = ANGLE_THRESHOLD_DEG,
        gate: str = "wrapped",
        pr_thresholds: Sequence[float] = PR_THRESHOLDS,
    ) -> None:
        if not j_ns or min(j_ns) < 1:
            raise ValueError(f"j_ns must be non-empty with all N >= 1, got {j_ns!r}")
        _check_gate(gate)
        self.j_ns = tuple(j_ns)
        self.pr_thresholds = tuple(pr_thresholds)
        self._match = {
            "iou_threshold": iou_threshold,
            "angle_threshold_deg": angle_threshold_deg,
            "gate": gate,
        }
        self.mask_ious: list[float] = []
        self.j_hits: dict[int, list[bool]] = {n: [] for n in self.j_ns}

    def add(
        self,
        ranked_preds: Sequence[Grasp],
        gts: Sequence[Grasp],
        pred_mask: np.ndarray,
        gt_mask: np.ndarray,
    ) -> None:
        """Record one sample.

        Args:
            ranked_preds: Predicted grasps, strongest first, in the GT's pixels.
            gts: Ground-truth grasps of the referred object.
            pred_mask: ``(H, W)`` predicted mask (non-zero = foreground).
            gt_mask: ``(H, W)`` ground-truth mask.
        """
        self.mask_ious.append(mask_iou(pred_mask, gt_mask))
        for n in self.j_ns:
            self.j_hits[n].append(j_at_n(ranked_preds, gts, n, **self._match))

    def summary(self) -> dict[str, float | int]:
        """Summarise the samples added so far.

        Returns:
            ``{"iou", "pr@50", ..., "pr@90", "j@1", "j@5", "n"}``: mean mask IoU, Pr@X and J@N
            as fractions in [0, 1] (keys follow ``pr_thresholds`` and ``j_ns``) and the number of
            samples.

        Raises:
            ValueError: Before any sample was added.
        """
        result: dict[str, float | int] = {"iou": mean_iou(self.mask_ious)}
        result.update(precision_at(self.mask_ious, self.pr_thresholds))
        result.update({f"j@{n}": float(np.mean(hits)) for n, hits in self.j_hits.items()})
        result["n"] = len(self.mask_ious)
        return result
