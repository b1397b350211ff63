import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from langgrasp.detector.grasp import Grasp
from langgrasp.detector.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    PAD_RGB,
    Letterbox,
    normalize,
    prepare_image,
    validate_rgb,
)
from langgrasp.errors import InputError


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def test_fit_640x480_to_416():
    box = Letterbox.fit(480, 640, 416)
    assert box.scale == pytest.approx(0.65)
    assert (box.resized_height, box.resized_width) == (312, 416)
    assert (box.pad_top, box.pad_left) == (52, 0)


def test_fit_portrait_and_upscale():
    box = Letterbox.fit(100, 50, 200)
    assert box.scale == 2.0
    assert (box.resized_height, box.resized_width, box.pad_top, box.pad_left) == (200, 100, 0, 50)


@pytest.mark.parametrize("args", [(0, 640, 416), (480, -1, 416), (480, 640, 0), (480.0, 640, 416)])
def test_fit_rejects_bad_sizes(args):
    with pytest.raises(InputError, match="positive integer"):
        Letterbox.fit(*args)


def test_image_shape_and_padding(rgb):
    box = Letterbox.fit(480, 640, 416)
    out = box.image(rgb)
    assert out.shape == (416, 416, 3) and out.dtype == np.uint8
    assert (out[:52] == PAD_RGB).all() and (out[52 + 312 :] == PAD_RGB).all()
    assert not (out[52:364] == PAD_RGB).all(axis=-1).all()
    black = box.image(rgb, fill=(0, 0, 0))
    assert (black[:52] == 0).all()
    assert rgb.flags.writeable and rgb.shape == (480, 640, 3)  # input untouched


def test_upscaled_image_keeps_content():
    img = np.full((100, 50, 3), 200, np.uint8)
    out = Letterbox.fit(100, 50, 200).image(img, fill=(0, 0, 0))
    assert (out[:, 50:150] == 200).all() and (out[:, :50] == 0).all() and (out[:, 150:] == 0).all()


def test_image_rejects_wrong_size(rgb):
    with pytest.raises(InputError, match=r"\(240, 320\)"):
        Letterbox.fit(240, 320, 416).image(rgb)


def test_mask_is_nearest_and_aligned_with_points():
    mask = np.zeros((480, 640), bool)
    mask[100:200, 300:420] = True
    box = Letterbox.fit(480, 640, 416)
    out = box.mask(mask)
    assert out.shape == (416, 416) and out.dtype == bool
    assert not out[:52].any() and not out[364:].any()
    ys, xs = np.nonzero(mask)
    centre_model = box.points_to_model(np.array([xs.mean(), ys.mean()]))
    ys2, xs2 = np.nonzero(out)
    np.testing.assert_allclose([xs2.mean(), ys2.mean()], centre_model, atol=0.5)
    assert out.sum() == pytest.approx(mask.sum() * box.scale**2, rel=0.05)


def test_depth_is_nearest_in_metres():
    depth = np.random.default_rng(1).uniform(0.3, 1.0, (480, 640)).astype(np.float32)
    out = Letterbox.fit(480, 640, 416).depth(depth)
    assert out.shape == (416, 416) and out.dtype == np.float32
    assert (out[:52] == 0).all()
    assert np.isin(out[52:364], depth).all()  # no interpolated values


def test_grasps_round_trip_and_scale():
    box = Letterbox.fit(480, 640, 416)
    grasps = [Grasp(10.5, 470.0, -1.2, 80.0, 40.0, 0.7), Grasp(639.0, 0.0, 0.3, 5.0, 2.5)]
    model = box.grasps_to_model(grasps)
    assert model[0].width == pytest.approx(80.0 * 0.65)
    assert model[0].height == pytest.approx(40.0 * 0.65)
    assert model[0].angle == grasps[0].angle and model[0].quality == 0.7
    back = box.grasps_to_image(model)
    for g, b in zip(grasps, back, strict=True):
        np.testing.assert_allclose(
            [b.x, b.y, b.angle, b.width, b.height, b.quality],
            [g.x, g.y, g.angle, g.width, g.height, g.quality],
            atol=1e-6,
        )


def test_grasp_corners_map_like_points():
    box = Letterbox.fit(480, 640, 416)
    g = Grasp(200.0, 150.0, math.pi / 5, 60.0, 30.0)
    np.testing.assert_allclose(
        box.grasps_to_model([g])[0].corners(), box.points_to_model(g.corners()), atol=1e-9
    )


def test_points_round_trip_vectorised_and_match_matrix():
    box = Letterbox.fit(480, 640, 416)
    pts = np.random.default_rng(2).uniform(0, 640, (4, 5, 2))
    model = box.points_to_model(pts)
    assert model.shape == pts.shape
    np.testing.assert_allclose(box.points_to_image(model), pts, atol=1e-6)
    flat = pts.reshape(-1, 1, 2)
    np.testing.assert_allclose(cv2.transform(flat, box.matrix).reshape(pts.shape), model, atol=1e-9)
    np.testing.assert_allclose(
        cv2.transform(model.reshape(-1, 1, 2), box.inverse_matrix).reshape(pts.shape),
        pts,
        atol=1e-9,
    )
    with pytest.raises(InputError, match=r"\(\.\.\., 2\)"):
        box.points_to_image(np.zeros((3, 3)))


def test_normalize_values():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = 255
    img[1, 2] = [round(m * 255) for m in CLIP_MEAN]
    out = normalize(img)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    expected_white = [(1 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD, strict=True)]
    np.testing.assert_allclose(out[:, 0, 0], expected_white, rtol=1e-6)
    np.testing.assert_allclose(
        out[:, 0, 1], [-m / s for m, s in zip(CLIP_MEAN, CLIP_STD, strict=True)], rtol=1e-6
    )
    np.testing.assert_allclose(out[:, 1, 2], 0.0, atol=0.01)
    np.testing.assert_allclose(normalize(img, (0, 0, 0), (1, 1, 1))[:, 0, 0], 1.0)
    with pytest.raises(InputError, match="positive std"):
        normalize(img, std=(1, 0, 1))


@pytest.mark.parametrize(
    ("arr", "fragments"),
    [
        ([[1, 2, 3]], ["(H, W, 3)", "uint8", "got list"]),
        (np.zeros((480, 640), np.float32), ["got shape (480, 640) float32"]),
        (np.zeros((4, 4, 4), np.uint8), ["got shape (4, 4, 4) uint8"]),
        (np.zeros((4, 4, 3), np.float64), ["got shape (4, 4, 3) float64"]),
        (np.zeros((0, 4, 3), np.uint8), ["empty image", "(0, 4, 3)"]),
    ],
)
def test_validate_rgb_messages(arr, fragments):
    with pytest.raises(InputError) as info:
        validate_rgb(arr)
    message = str(info.value)
    assert "expected" in message
    for fragment in fragments:
        assert fragment in message


def test_validate_rgb_returns_input(rgb):
    assert validate_rgb(rgb) is rgb


def test_prepare_image(rgb):
    tensor, box = prepare_image(rgb, 224)
    assert tensor.shape == (3, 224, 224) and tensor.dtype == np.float32
    assert box == Letterbox.fit(480, 640, 224)
    np.testing.assert_allclose(tensor[:, 0, 0], 0.0, atol=0.01)  # padding ~ CLIP mean
    with pytest.raises(InputError):
        prepare_image(rgb.astype(np.float32), 224)


def test_runtime_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import langgrasp.datasets.synthetic, langgrasp.detector.preprocess\n"
        "import langgrasp.detector.visualize\n"
        "sys.exit('torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (100, 100), (37, 91)])
def test_content_mask_is_the_letterboxed_image_area(hw):
    box = Letterbox.fit(*hw, 128)
    assert np.array_equal(box.content_mask(), box.mask(np.ones(hw, dtype=bool)))
