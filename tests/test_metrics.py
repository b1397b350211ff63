import math

import numpy as np
import pytest

from langgrasp.detector.grasp import Grasp
from langgrasp.detector.metrics import (
    GroundingMetrics,
    angle_difference_deg,
    grasp_match,
    grasp_success,
    j_at_n,
    mask_iou,
    mean_iou,
    precision_at,
    rect_iou,
)


def _g(x: float, y: float, deg: float, w: float, h: float) -> Grasp:
    return Grasp(x, y, math.radians(deg), w, h)


def test_identical_rectangles():
    a = _g(50, 40, 25, 40, 20)
    assert rect_iou(a, a) == pytest.approx(1.0)
    assert angle_difference_deg(a, a) == 0.0
    assert grasp_match(a, a)


def test_90_degree_rotation_of_non_square_rectangle():
    # 40 x 20 vs 20 x 40 on the same centre: intersection 20 * 20 = 400, union 800 + 800 - 400.
    a, b = _g(50, 50, 0, 40, 20), _g(50, 50, -90, 40, 20)
    assert rect_iou(a, b) == pytest.approx(400 / 1200)
    assert angle_difference_deg(a, b) == pytest.approx(90.0)
    assert not grasp_match(a, b)  # IoU 1/3 > 0.25 but the angle gate fails
    assert not grasp_match(a, b, gate="crog")  # CROG: |0 - -90| and |0 + -90| both > 30


def test_square_rotated_45_degrees_hand_computed():
    # Concentric 10 px squares, one turned 45°: the overlap is a regular octagon with inradius 5,
    # area 8 * 5**2 * tan(22.5°) = 200 (sqrt2 - 1); IoU = 200 (sqrt2 - 1) / (200 - that) = 1/sqrt2.
    assert rect_iou(_g(0, 0, 0, 10, 10), _g(0, 0, 45, 10, 10)) == pytest.approx(1 / math.sqrt(2))


def test_wrap_at_180_degrees():
    a, b = _g(50, 50, 179, 40, 20), _g(50, 50, 1, 40, 20)
    assert angle_difference_deg(a, b) == pytest.approx(2.0)
    assert angle_difference_deg(_g(0, 0, -89, 4, 2), _g(0, 0, 89, 4, 2)) == pytest.approx(2.0)
    assert rect_iou(a, b) > 0.9
    assert grasp_match(a, b)


def test_wrapped_gate_threshold():
    # Exactly 30° is not tested: radians -> degrees round-off decides it either way.
    a = _g(50, 50, 0, 40, 20)
    assert not grasp_match(a, _g(50, 50, 30.1, 40, 20))
    assert grasp_match(a, _g(50, 50, 29.9, 40, 20))
    assert grasp_match(a, _g(50, 50, -29.9, 40, 20))


def test_disjoint_rectangles():
    assert rect_iou(_g(10, 10, 0, 10, 10), _g(40, 10, 30, 10, 10)) == 0.0
    assert not grasp_match(_g(10, 10, 0, 10, 10), _g(40, 10, 0, 10, 10))


def test_partially_overlapping_axis_aligned():
    # x [0, 20] y [5, 15] vs x [10, 30] y [5, 15]: 100 / (200 + 200 - 100).
    assert rect_iou(_g(10, 10, 0, 20, 10), _g(20, 10, 0, 20, 10)) == pytest.approx(1 / 3)
    # x [0, 20] y [5, 15] vs x [5, 25] y [8, 18]: 15 * 7 = 105 / (400 - 105).
    assert rect_iou(_g(10, 10, 0, 20, 10), _g(15, 13, 0, 20, 10)) == pytest.approx(105 / 295)
    # The same pair described with the opening along y (angle -90, width and height swapped).
    assert rect_iou(_g(10, 10, -90, 10, 20), _g(15, 13, 0, 20, 10)) == pytest.approx(105 / 295)


def test_degenerate_rectangle_has_zero_iou():
    assert rect_iou(_g(10, 10, 0, 0, 10), _g(10, 10, 0, 0, 10)) == 0.0


def test_crog_gate_accepts_40_vs_minus_40():
    a, b = _g(50, 50, 40, 30, 30), _g(50, 50, -40, 30, 30)  # squares: IoU stays high
    assert angle_difference_deg(a, b) == pytest.approx(80.0)
    assert rect_iou(a, b) > 0.25
    assert not grasp_match(a, b)
    assert grasp_match(a, b, gate="crog")
    # CROG rejects 60 vs 10: |50| > 30 and |70| > 30.
    assert not grasp_match(_g(50, 50, 60, 30, 30), _g(50, 50, 10, 30, 30), gate="crog")
    # Our -90 is CROG's +90, so 85 vs -90 is 5 degrees apart in both gates.
    c, d = _g(50, 50, 85, 40, 20), _g(50, 50, -90, 40, 20)
    assert grasp_match(c, d) and grasp_match(c, d, gate="crog")


def test_unknown_gate_lists_options():
    a = _g(0, 0, 0, 4, 2)
    with pytest.raises(ValueError, match="wrapped"):
        grasp_match(a, a, gate="cornell")
    with pytest.raises(ValueError, match="crog"):
        j_at_n([], [a], 1, gate="cornell")


def test_success_and_j_at_n():
    gt = [_g(50, 50, 0, 40, 20), _g(150, 50, 45, 40, 20)]
    miss, hit = _g(300, 300, 0, 40, 20), _g(152, 51, 40, 38, 20)
    assert grasp_success(hit, gt) and not grasp_success(miss, gt)
    assert not grasp_success(hit, [])
    ranked = [miss, miss, hit]
    assert not j_at_n(ranked, gt, 1)
    assert not j_at_n(ranked, gt, 2)
    assert j_at_n(ranked, gt, 3) and j_at_n(ranked, gt, 5)
    assert not j_at_n([], gt, 5)
    assert not j_at_n(ranked, [], 5)
    with pytest.raises(ValueError, match="n >= 1"):
        j_at_n(ranked, gt, 0)


def test_mask_iou():
    pred = np.zeros((3, 4), bool)
    gt = np.zeros((3, 4), bool)
    pred[0, :3] = True  # 3 pixels
    gt[0, 1:] = True  # 3 pixels, 2 shared -> 2 / 4
    assert mask_iou(pred, gt) == pytest.approx(0.5)
    assert mask_iou(pred, pred) == 1.0
    assert mask_iou(pred, np.zeros((3, 4), bool)) == 0.0
    assert mask_iou(np.zeros((3, 4), bool), np.zeros((3, 4), bool)) == 1.0  # both empty
    assert mask_iou(pred.astype(np.uint8) * 255, gt) == pytest.approx(0.5)  # non-zero = True
    with pytest.raises(ValueError, match="equal shape"):
        mask_iou(pred, gt.T)


def test_precision_at_and_mean():
    ious = [0.95, 0.5, 0.75, 0.2]
    assert precision_at(ious) == {
        "pr@50": 0.5,  # 0.5 itself does not count (strictly greater)
        "pr@60": 0.5,
        "pr@70": 0.5,
        "pr@80": 0.25,
        "pr@90": 0.25,
    }
    assert mean_iou(ious) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="at least one"):
        precision_at([])


def test_grounding_metrics_accumulator():
    gt = [_g(10, 10, 0, 8, 4)]
    mask_a = np.zeros((4, 4), bool)
    mask_a[:2] = True
    mask_b = np.zeros((4, 4), bool)
    mask_b[:1] = True
    metrics = GroundingMetrics()
    with pytest.raises(ValueError):
        metrics.summary()
    metrics.add([_g(10, 10, 5, 8, 4)], gt, mask_a, mask_a)  # IoU 1, J@1 hit
    metrics.add([_g(90, 90, 0, 8, 4), *gt], gt, mask_b, mask_a)  # IoU 0.5, hit only at 5
    summary = metrics.summary()
    assert summary["n"] == 2
    assert summary["iou"] == pytest.approx(0.75)
    assert summary["pr@50"] == 0.5 and summary["pr@90"] == 0.5
    assert summary["j@1"] == 0.5 and summary["j@5"] == 1.0
    with pytest.raises(ValueError):
        GroundingMetrics(j_ns=(0,))
