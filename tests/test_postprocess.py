import numpy as np
import pytest

from langgrasp.detector.grasp import GraspDecoding
from langgrasp.detector.postprocess import (
    NO_GRASP_PEAK,
    TARGET_NOT_FOUND,
    maps_to_image,
    postprocess,
    sigmoid,
)
from langgrasp.detector.preprocess import Letterbox
from langgrasp.errors import InputError

SIZE = 64
DECODING = GraspDecoding(width_scale=32.0)


def test_sigmoid_is_stable_and_float32():
    x = np.array([-1e4, -30.0, 0.0, 2.0, 1e4], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        y = sigmoid(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0.0, 9.357623e-14, 0.5, 0.8807971, 1.0], rtol=1e-6)


@pytest.mark.parametrize("hw", [(48, 64), (64, 48), (30, 30), (17, 53)])
def test_mask_maps_back_to_every_image_pixel_including_the_border(hw):
    box = Letterbox.fit(*hw, SIZE)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    field = lambda p: 0.5 + 0.4 * np.sin(p[..., 0] / 9.0) * np.cos(p[..., 1] / 13.0)  # noqa: E731
    prob = field(box.points_to_image(np.stack([xx, yy], -1))).astype(np.float32)
    prob[~box.content_mask()] = 7.0  # padding must not leak into the image
    _, image = maps_to_image(prob, np.zeros((4, SIZE, SIZE), np.float32), box, DECODING)
    iy, ix = np.mgrid[0 : hw[0], 0 : hw[1]].astype(float)
    truth = field(np.stack([ix, iy], -1))
    assert image.shape == hw and image.dtype == np.float32
    # bilinear resampling error of a smooth field, also on the first and last rows/columns
    assert np.abs(image - truth).max() < 0.02


def test_reasons_and_score():
    box = Letterbox.fit(48, 64, SIZE)
    grasp = np.zeros((4, SIZE, SIZE), np.float32)
    absent = np.full((SIZE, SIZE), -5.0, np.float32)
    result = postprocess(absent, grasp, box, DECODING)
    assert result.grasps == [] and result.reason.startswith(TARGET_NOT_FOUND)
    assert result.mask_score == 0.0 and not result.mask.any()
    present = np.full((SIZE, SIZE), 3.0, np.float32)
    result = postprocess(present, grasp, box, DECODING)
    assert result.grasps == [] and result.reason.startswith(NO_GRASP_PEAK)
    assert result.mask.all() and result.mask_score == pytest.approx(sigmoid(np.float32(3.0)))
    grasp[0, 30:34, 30:34] = 0.9
    grasp[1] = 1.0  # cos 2θ = 1: angle 0
    grasp[3] = 0.5
    result = postprocess(present, grasp, box, DECODING)
    assert result.reason is None and len(result.grasps) == 1
    g = result.grasps[0]
    x, y = box.points_to_image(np.array([31.5, 31.5]))
    assert (g.x, g.y) == pytest.approx((x, y), abs=1e-6)
    assert g.width == pytest.approx(0.5 * DECODING.width_scale / box.scale)


def test_maps_of_the_wrong_size_are_rejected():
    box = Letterbox.fit(48, 64, SIZE)
    with pytest.raises(InputError, match="mask must have shape"):
        maps_to_image(np.zeros((SIZE, SIZE + 1)), np.zeros((4, SIZE, SIZE)), box, DECODING)
    with pytest.raises(InputError, match="grasp maps must have shape"):
        maps_to_image(np.zeros((SIZE, SIZE)), np.zeros((3, SIZE, SIZE)), box, DECODING)
