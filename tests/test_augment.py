import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from langgrasp.detector.config import get_config
from langgrasp.detector.grasp import Grasp, GraspEncoding, encode_grasps, wrap_angle
from langgrasp.detector.model import tokenize
from langgrasp.training.augment import (
    AugmentParams,
    BatchAugmenter,
    flip_text,
    geometric_matrix,
    sample_params,
    transform_grasp_maps,
)
from langgrasp.training.config import AugmentConfig
from langgrasp.training.data import Batch

SIZE = 64
ENC = GraspEncoding(width_scale=32.0)
MODEL = replace(get_config("lggd-tiny"), input_size=SIZE)
# Two well separated grasps with different qualities, so every filled pixel names its grasp.
GRASPS = [
    Grasp(x=22.0, y=24.0, angle=math.radians(20.0), width=30.0, height=12.0, quality=0.9),
    Grasp(x=42.0, y=40.0, angle=math.radians(-65.0), width=26.0, height=10.0, quality=0.6),
]


def params(angle_deg=0.0, hflip=False, vflip=False, batch=1) -> AugmentParams:
    p = AugmentParams.identity(batch)
    p.angle = torch.full((batch,), math.radians(angle_deg))
    p.hflip = torch.full((batch,), hflip)
    p.vflip = torch.full((batch,), vflip)
    return p


def transform_point(x, y, angle_deg, hflip, vflip, size=SIZE):
    """Flip about the image centre, then rotate counter-clockwise ON SCREEN (y down)."""
    c = (size - 1) / 2
    if hflip:
        x = 2 * c - x
    if vflip:
        y = 2 * c - y
    phi = math.radians(angle_deg)
    dx, dy = x - c, y - c
    return c + math.cos(phi) * dx + math.sin(phi) * dy, c - math.sin(phi) * dx + math.cos(phi) * dy


def transform_grasp(g: Grasp, angle_deg, hflip, vflip) -> Grasp:
    x, y = transform_point(g.x, g.y, angle_deg, hflip, vflip)
    theta = -g.angle if hflip != vflip else g.angle
    return replace(g, x=x, y=y, angle=float(wrap_angle(theta + math.radians(angle_deg))))


def angle_error(a, b):
    d = (a - b) % math.pi
    return np.minimum(d, math.pi - d)


@pytest.mark.parametrize(
    ("angle_deg", "hflip", "vflip"),
    [(30.0, False, False), (-50.0, False, False), (0.0, True, False), (0.0, False, True),
     (0.0, True, True), (25.0, True, False), (-15.0, False, True), (90.0, True, True)],
)  # fmt: skip
def test_grasp_maps_match_encoding_of_transformed_grasps(angle_deg, hflip, vflip):
    maps = torch.from_numpy(encode_grasps(GRASPS, (SIZE, SIZE), ENC))[None]
    got = transform_grasp_maps(maps, params(angle_deg, hflip, vflip))[0].numpy()
    moved = [transform_grasp(g, angle_deg, hflip, vflip) for g in GRASPS]
    want = encode_grasps(moved, (SIZE, SIZE), ENC)
    for g in moved:
        expected = np.isclose(want[0], g.quality)
        found = np.isclose(got[0], g.quality)
        both = expected & found
        # Nearest-neighbour resampling moves single boundary pixels only.
        assert both.sum() >= 0.8 * expected.sum() and both.sum() >= 0.8 * found.sum()
        theta = np.arctan2(got[2][both], got[1][both]) / 2
        assert angle_error(theta, g.angle).max() < 1e-4
        assert np.allclose(np.hypot(got[1][both], got[2][both]), 1.0, atol=1e-5)
        assert np.allclose(got[3][both], g.width / ENC.width_scale)


def test_rotation_is_counter_clockwise_on_screen():
    # A dot right of the centre must go UP (smaller y) for a positive angle.
    image = torch.zeros(1, 1, SIZE, SIZE)
    image[0, 0, 31, 50] = 1.0
    out = transform_grasp_maps(image.expand(1, 4, SIZE, SIZE).clone(), params(90.0))[0, 0]
    row, col = np.unravel_index(int(out.argmax()), out.shape)
    x, y = transform_point(50, 31, 90.0, False, False)
    assert (col, row) == (round(x), round(y))
    assert row < 31


@pytest.mark.parametrize(("hflip", "vflip"), [(True, False), (False, True), (True, True)])
def test_flip_matrix_mirrors_pixels_exactly(hflip, vflip):
    image = torch.rand(1, 3, SIZE, SIZE)
    augmenter = BatchAugmenter(AugmentConfig(), MODEL, seed=0)
    batch = make_batch(image, ["grab the red box"])
    out = augmenter.apply(batch, params(0.0, hflip, vflip))
    dims = [d for d, on in ((3, hflip), (2, vflip)) if on]
    assert torch.allclose(out.images, image.flip(dims), atol=1e-3)  # colour round trip
    assert torch.equal(out.masks, batch.masks.flip(dims))


def test_geometric_matrix_is_identity_for_identity_params():
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    assert torch.allclose(geometric_matrix(AugmentParams.identity(2), SIZE), eye.expand(2, 2, 3))


def make_batch(images, texts):
    n = len(texts)
    masks = torch.zeros(n, 1, SIZE, SIZE)
    masks[:, :, 10:30, 5:20] = 1.0
    maps = torch.from_numpy(encode_grasps(GRASPS, (SIZE, SIZE), ENC))[None].repeat(n, 1, 1, 1)
    tokens = tokenize(texts, MODEL.context_length)
    return Batch(images, tokens, masks, maps, list(texts), [str(i) for i in range(n)])


def test_flip_text_swaps_sides_and_keeps_other_words():
    assert flip_text("pick up the mug on the left", True, False) == "pick up the mug on the right"
    assert flip_text("Right cup, not the leftmost", True, False) == "Left cup, not the rightmost"
    assert flip_text("pick up the top box above the ball", False, True) == (
        "pick up the bottom box below the ball"
    )
    assert flip_text("the upper left one", True, True) == "the lower right one"
    assert flip_text("pick up the mug on the left", False, True) == "pick up the mug on the left"
    assert flip_text("grab the lefty bottle", True, False) == "grab the lefty bottle"


def test_flipped_batch_rewrites_text_and_tokens():
    texts = ["pick up the mug on the left", "grab the red box"]
    batch = make_batch(torch.zeros(2, 3, SIZE, SIZE), texts)
    augmenter = BatchAugmenter(AugmentConfig(), MODEL, seed=0)
    out = augmenter.apply(batch, params(0.0, hflip=True, batch=2))
    assert out.texts == ["pick up the mug on the right", "grab the red box"]
    assert torch.equal(out.tokens, tokenize(out.texts, MODEL.context_length))
    assert batch.texts == texts  # the input batch is left alone


def test_no_flip_policy_keeps_spatial_samples_unflipped():
    config = AugmentConfig(hflip=1.0, vflip=1.0, text_policy="no-flip")
    texts = ["pick up the mug on the left", "grab the top box", "grab the red box"]
    p = sample_params(config, texts, torch.Generator().manual_seed(0))
    assert p.hflip.tolist() == [False, True, True]
    assert p.vflip.tolist() == [True, False, True]


def test_photometric_changes_only_the_image():
    batch = make_batch(torch.zeros(2, 3, SIZE, SIZE), ["grab the red box"] * 2)
    p = AugmentParams.identity(2)
    p.brightness = torch.tensor([0.2, -0.2])
    p.blur_sigma = torch.tensor([1.0, 0.0])
    p.noise_std = torch.tensor([0.0, 0.05])
    out = BatchAugmenter(AugmentConfig(), MODEL, seed=0).apply(batch, p)
    assert not torch.allclose(out.images, batch.images)
    assert torch.equal(out.masks, batch.masks)
    assert torch.equal(out.grasp_maps, batch.grasp_maps)
    assert out.texts == batch.texts


def test_identity_params_keep_the_batch():
    mean = torch.tensor(MODEL.mean)[:, None, None]
    std = torch.tensor(MODEL.std)[:, None, None]
    images = (torch.rand(2, 3, SIZE, SIZE) - mean) / std  # normalised [0, 1] RGB
    batch = make_batch(images, ["a", "b"])
    out = BatchAugmenter(AugmentConfig(), MODEL, seed=0).apply(batch, AugmentParams.identity(2))
    assert torch.allclose(out.images, batch.images, atol=1e-3)  # colour round trip
    assert torch.equal(out.grasp_maps, batch.grasp_maps)


def test_random_augmentation_is_reproducible_and_keeps_targets_valid():
    config = AugmentConfig(vflip=0.5, blur_p=0.5, noise_p=0.5)
    batch = make_batch(torch.rand(4, 3, SIZE, SIZE), ["pick up the mug on the left"] * 4)
    a = BatchAugmenter(config, MODEL, seed=3)(batch)
    b = BatchAugmenter(config, MODEL, seed=3)(batch)
    assert torch.equal(a.images, b.images) and a.texts == b.texts
    assert set(a.masks.unique().tolist()) <= {0.0, 1.0}
    filled = a.grasp_maps[:, 0] > 0
    assert torch.allclose(a.grasp_maps[:, 1][filled] ** 2 + a.grasp_maps[:, 2][filled] ** 2,
                          torch.tensor(1.0), atol=1e-5)  # fmt: skip


def test_disabled_augmentation_returns_the_batch():
    batch = make_batch(torch.rand(1, 3, SIZE, SIZE), ["a"])
    assert BatchAugmenter(AugmentConfig(enabled=False), MODEL, seed=0)(batch) is batch
