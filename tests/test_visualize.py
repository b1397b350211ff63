import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from langgrasp.detector.grasp import Grasp
from langgrasp.detector.visualize import DEFAULT_STYLE, MAX_COORD, draw_overlay, save_image
from langgrasp.errors import InputError


@pytest.fixture
def rgb():
    img = np.full((120, 160, 3), 90, np.uint8)
    img[:, 80:] = 160
    return img


def test_no_annotations_returns_equal_copy(rgb):
    out = draw_overlay(rgb)
    assert out is not rgb
    np.testing.assert_array_equal(out, rgb)


def test_mask_tints_region_only(rgb):
    before = rgb.copy()
    prob = np.zeros(rgb.shape[:2], np.float32)
    prob[40:80, 50:110] = 0.9
    prob[0:10, 0:10] = 0.4  # below the threshold
    out = draw_overlay(rgb, mask_prob=prob)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(rgb, before)  # input not modified
    assert (out[45:75, 55:105] != rgb[45:75, 55:105]).any(axis=-1).all()
    np.testing.assert_array_equal(out[0:10, 0:10], rgb[0:10, 0:10])
    np.testing.assert_array_equal(out[100:, :], rgb[100:, :])
    assert (draw_overlay(rgb, mask_prob=prob, mask_threshold=0.3)[2, 2] != rgb[2, 2]).any()


def test_bool_mask_is_accepted(rgb):
    mask = np.zeros(rgb.shape[:2], bool)
    mask[10:20, 10:20] = True
    assert (draw_overlay(rgb, mask_prob=mask)[15, 15] != rgb[15, 15]).any()


def test_grasps_are_drawn_with_thick_jaws(rgb):
    g = Grasp(80.0, 60.0, 0.0, 60.0, 30.0)  # opening along +x: jaws are vertical at x = 50, 110
    out = draw_overlay(rgb, grasps=[g])
    pred = np.array(DEFAULT_STYLE.pred_rgb)
    close = np.abs(out.astype(int) - pred).sum(-1) < 60
    jaw_cols = close[50:70, 46:55].sum(axis=1)  # a jaw, away from the corners
    side_rows = close[42:49, 60:75].sum(axis=0)  # the top side, away from the label
    assert jaw_cols.min() > side_rows.max() >= 1


def test_gt_grasps_are_green_and_thin(rgb):
    g = Grasp(80.0, 60.0, math.pi / 4, 40.0, 20.0)
    out = draw_overlay(rgb, gt_grasps=[g])
    changed = (out != rgb).any(-1)
    assert changed.any() and changed.sum() < 400
    assert (out[changed][:, 1] >= out[changed][:, 0]).all()  # green dominates


def test_rank_numbers_are_drawn(rgb):
    grasps = [Grasp(40.0, 60.0, 0.0, 30.0, 15.0), Grasp(120.0, 60.0, 0.0, 30.0, 15.0)]
    out = draw_overlay(rgb, grasps=grasps)
    white = out.min(-1) > 220
    assert white[50:70, 30:50].any() and white[50:70, 110:130].any()


def test_title_has_dark_box(rgb):
    out = draw_overlay(rgb, title="pick up the red mug")
    assert (out[1, 1] == DEFAULT_STYLE.text_bg_rgb).all()
    assert (out.min(-1) > 220)[:20].any()
    long = draw_overlay(rgb, title="x" * 500 + " ünïcode")  # shortened, does not raise
    assert long.shape == rgb.shape


def test_bad_inputs_raise(rgb):
    with pytest.raises(InputError, match=r"mask_prob of shape \(120, 160\)"):
        draw_overlay(rgb, mask_prob=np.zeros((10, 10)))
    with pytest.raises(InputError, match="Grasp objects"):
        draw_overlay(rgb, grasps=[(1, 2, 3)])
    with pytest.raises(InputError, match="uint8"):
        draw_overlay(rgb.astype(np.float32))


def test_save_image_writes_png(tmp_path, rgb):
    img = rgb.copy()
    img[0, 0] = (255, 0, 0)
    path = save_image(tmp_path / "a" / "b" / "overlay.png", img)
    assert path.is_file()
    back = cv2.imread(str(path), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(back[..., ::-1], img)  # RGB stored correctly (PNG is lossless)


@pytest.mark.parametrize("name", ["overlay.txt", "overlay", "overlay.exr_nope"])
def test_save_image_rejects_non_image_extensions(tmp_path, rgb, name):
    with pytest.raises(InputError, match="extension"):
        save_image(tmp_path / name, rgb)
    assert not (tmp_path / name).exists()


GOOD = Grasp(80.0, 60.0, 0.0, 40.0, 20.0)


@pytest.mark.parametrize("name", ["grasps", "gt_grasps"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Grasp(math.nan, 60.0, 0.0, 40.0, 20.0), "non-finite or non-numeric x"),
        (Grasp(80.0, math.inf, 0.0, 40.0, 20.0), "non-finite or non-numeric y"),
        (Grasp(80.0, 60.0, math.inf, 40.0, 20.0), "non-finite or non-numeric angle"),
        (Grasp(80.0, 60.0, 0.0, math.nan, -math.inf), "non-finite or non-numeric width, height"),
        (Grasp(80.0, 60.0, 0.0, "40", 20.0), "non-finite or non-numeric width"),
        (Grasp(1e300, 60.0, 0.0, 40.0, 20.0), "outside the drawable range"),
        (Grasp(80.0, 60.0, 0.0, 1e308, 1e308), "outside the drawable range"),  # corners overflow
        (Grasp(80.0, 60.0, 0.0, 40.0, 1e10), "outside the drawable range"),
        (Grasp(MAX_COORD + 1.0, 60.0, 0.0, 0.0, 0.0), "outside the drawable range"),
    ],
)
def test_bad_grasp_values_name_list_and_index(rgb, name, bad, message):
    with pytest.raises(InputError, match=rf"^{name}\[1\] has .*{message}"):
        draw_overlay(rgb, **{name: [GOOD, bad]})


def test_grasps_at_the_coordinate_limit_are_drawn(rgb):
    edge = Grasp(MAX_COORD - 1.0, -(MAX_COORD - 1.0), 0.0, 2.0, 2.0)  # corners at ±MAX_COORD
    out = draw_overlay(rgb, grasps=[edge, GOOD], gt_grasps=[edge])
    assert out.shape == rgb.shape and (out != rgb).any()


@pytest.mark.parametrize("title", [3, 0, 2.5, Path("scene/frame_01.png"), ["a", "b"]])
def test_title_accepts_any_object(rgb, title):
    out = draw_overlay(rgb, title=title)
    np.testing.assert_array_equal(out, draw_overlay(rgb, title=str(title)))
    assert (out[1, 1] == DEFAULT_STYLE.text_bg_rgb).all()


def test_empty_or_none_title_draws_nothing(rgb):
    np.testing.assert_array_equal(draw_overlay(rgb, title=""), rgb)
    np.testing.assert_array_equal(draw_overlay(rgb, title=None), rgb)


def test_grasps_accept_any_iterable(rgb):
    grasps = [Grasp(40.0, 60.0, 0.0, 30.0, 15.0), Grasp(120.0, 60.0, 0.5, 30.0, 15.0)]
    gts = [Grasp(80.0, 30.0, 0.3, 30.0, 15.0)]
    expected = draw_overlay(rgb, grasps=grasps, gt_grasps=gts)
    assert (expected != rgb).any()
    from_generators = draw_overlay(rgb, grasps=(g for g in grasps), gt_grasps=(g for g in gts))
    np.testing.assert_array_equal(from_generators, expected)
    from_other = draw_overlay(rgb, grasps=iter(grasps), gt_grasps={0: gts[0]}.values())
    np.testing.assert_array_equal(from_other, expected)


@pytest.mark.parametrize("name", ["grasps", "gt_grasps"])
def test_non_iterable_grasps_raise(rgb, name):
    with pytest.raises(InputError, match=rf"expected {name} as an iterable .* got Grasp"):
        draw_overlay(rgb, **{name: GOOD})  # a single grasp, not a list of them
    with pytest.raises(InputError, match=rf"expected {name} as an iterable .* got int"):
        draw_overlay(rgb, **{name: 5})
    with pytest.raises(InputError, match=rf"at {name}\[0\]"):
        draw_overlay(rgb, **{name: "ab"})


def test_non_numeric_mask_raises(rgb):
    with pytest.raises(InputError, match="mask_prob as real numbers"):
        draw_overlay(rgb, mask_prob=np.full(rgb.shape[:2], "x"))
