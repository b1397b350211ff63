"""Intrinsics from rendered board images: accuracy, outliers and the bad-input messages."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from langgrasp.calibration.board import BoardConfig, get_board
from langgrasp.calibration.intrinsics import IntrinsicsConfig, calibrate_intrinsics
from langgrasp.calibration.synthetic import (
    BoardRenderer,
    RenderConfig,
    ViewSampling,
    default_camera,
    sample_views,
)
from langgrasp.errors import InputError

BOARD = get_board("charuco-a4")
CAMERA = default_camera()
# Views that put the board all over the image, as the technician's guide asks.
SPREAD = ViewSampling(distance_m=(0.3, 0.45), tilt_deg=(15, 40), aim_spread=0.8)


def render_views(count: int, seed: int, camera=CAMERA, board: BoardConfig = BOARD, render=None):
    rng = np.random.default_rng(seed)
    renderer = BoardRenderer(board, camera, render or RenderConfig(blur_sigma_px=0.8, noise_std=3))
    views = sample_views(board, count, rng, SPREAD)
    return [(f"{seed}_{i:03d}.png", renderer.render(view, rng)) for i, view in enumerate(views)]


@pytest.fixture(scope="module")
def views():
    return render_views(12, seed=11)


def test_recovers_the_camera_from_blurred_noisy_renders(views):
    report = calibrate_intrinsics(views, BOARD)
    k = report.intrinsics
    assert k.fx == pytest.approx(CAMERA.fx, rel=0.01)
    assert k.fy == pytest.approx(CAMERA.fy, rel=0.01)
    assert abs(k.cx - CAMERA.cx) < 2 and abs(k.cy - CAMERA.cy) < 2
    assert k.coeffs[0] == pytest.approx(CAMERA.coeffs[0], abs=0.02)  # barrel distortion k1
    assert (k.width, k.height, k.model) == (640, 480, "brown_conrady")
    assert report.rms_px < 0.3
    assert len(report.views) == 12 and not report.outliers and not report.skipped
    summary = report.to_dict()
    assert summary["images_used"] == 12 and len(summary["per_image"]) == 12


def test_an_image_from_another_camera_is_flagged_and_can_be_dropped(views):
    other = replace(CAMERA, fx=CAMERA.fx * 1.3, fy=CAMERA.fy * 1.3)
    foreign = render_views(1, seed=12, camera=other)
    report = calibrate_intrinsics(views + foreign, BOARD)
    assert report.outliers == [foreign[0][0]]
    dropped = calibrate_intrinsics(views + foreign, BOARD, IntrinsicsConfig(drop_outliers=True))
    assert dropped.dropped == [foreign[0][0]] and not dropped.outliers
    assert dropped.intrinsics.fx == pytest.approx(CAMERA.fx, rel=0.01)


def test_too_few_images_says_how_many_and_how_to_take_them(views):
    with pytest.raises(InputError, match=r"only 3 of 3 images .* at least 6.*tilted"):
        calibrate_intrinsics(views[:3], BOARD)


def test_images_without_the_board_are_skipped_and_reported(views):
    blank = [(f"blank_{i}.png", np.full((480, 640, 3), 90, np.uint8)) for i in range(8)]
    with pytest.raises(InputError, match=r"only 2 of 10 images.*blank_0\.png: only 0 of 24"):
        calibrate_intrinsics(views[:2] + blank, BOARD)
    report = calibrate_intrinsics(views[:8] + blank[:1], BOARD)
    assert report.skipped[0][0] == "blank_0.png" and len(report.views) == 8


def test_mixed_resolutions_are_refused(views):
    small = [("small.png", np.zeros((240, 320, 3), np.uint8))]
    with pytest.raises(InputError, match="different sizes"):
        calibrate_intrinsics(views + small, BOARD)


def test_legacy_board_is_diagnosed():
    spec = "8x6:25mm:18mm:DICT_4X4_50"
    legacy = get_board(spec, legacy=True)
    images = render_views(2, seed=13, board=legacy)
    with pytest.raises(InputError, match=r"legacy-pattern board.*--legacy-pattern"):
        calibrate_intrinsics(images, get_board(spec))
