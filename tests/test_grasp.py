import math

import numpy as np
import pytest

from langgrasp.detector.grasp import (
    GRASP_CHANNELS,
    Grasp,
    GraspDecoding,
    GraspEncoding,
    decode_grasps,
    encode_grasps,
    wrap_angle,
)

WIDTH_SCALE = 100.0
ENC = GraspEncoding(width_scale=WIDTH_SCALE)
DEC = GraspDecoding(width_scale=WIDTH_SCALE, threshold=0.1, top_n=20)


def _angle_error_deg(a: float, b: float) -> float:
    d = abs(math.degrees(a - b)) % 180.0
    return min(d, 180.0 - d)


def _nearest(decoded: list[Grasp], gt: Grasp) -> Grasp:
    return min(decoded, key=lambda g: math.hypot(g.x - gt.x, g.y - gt.y))


# (angle deg, opening width px, jaw height px). Small grasps whose blurred fill has a single
# maximum; realistic sizes with flat-topped fills are in REALISTIC_* below.
ROUND_TRIP = [
    (-90.0, 24, 8),
    (88.0, 20, 10),
    (0.0, 16, 12),
    (45.0, 24, 6),
    (-45.0, 22, 10),
    (30.0, 18, 8),
    (-70.0, 24, 12),
    (60.0, 16, 6),
    (15.0, 20, 12),
]


def test_round_trip_recovers_centre_angle_and_width():
    gts = []
    for i, (deg, width, height) in enumerate(ROUND_TRIP):
        x = 40.0 + 70.0 * (i % 3) + 0.3 * i
        y = 40.0 + 70.0 * (i // 3) + 0.5 * (i % 2)
        angle = float(wrap_angle(math.radians(deg)))
        gts.append(Grasp(x, y, angle, width, height, quality=0.5 + 0.05 * i))
    maps = encode_grasps(gts, (224, 224), ENC)
    assert maps.shape == (len(GRASP_CHANNELS), 224, 224) and maps.dtype == np.float32
    decoded = decode_grasps(maps, DEC)
    assert len(decoded) == len(gts)
    for gt in gts:
        got = _nearest(decoded, gt)
        assert math.hypot(got.x - gt.x, got.y - gt.y) <= 2.0, (gt, got)
        assert _angle_error_deg(got.angle, gt.angle) <= 3.0, (gt, got)
        assert abs(got.width - gt.width) <= 2.0, (gt, got)
        assert got.height == pytest.approx(DEC.jaw_ratio * got.width)
        assert -math.pi / 2 <= got.angle < math.pi / 2


def test_long_ridge_decodes_to_its_centre_once():
    # A 60 px opening fills 30 px: the blurred quality is a flat ridge with no unique maximum.
    # The plateau-aware peak is the ridge's centre, with the exact angle and width, and the ridge
    # yields one grasp even with room for 20.
    gt = Grasp(100.3, 90.6, math.radians(35.0), 60.0, 10.0)
    decoded = decode_grasps(encode_grasps([gt], (224, 224), ENC), DEC)
    assert len(decoded) == 1
    (best,) = decoded
    assert math.hypot(best.x - gt.x, best.y - gt.y) <= 1.0, best
    assert _angle_error_deg(best.angle, gt.angle) < 1e-3
    assert best.width == pytest.approx(gt.width, abs=1e-3)


# Realistic OCID-VLG sizes (openings 30-100 px, jaws 10-25 px, fill_fraction 0.5): every blurred
# fill is a flat-topped plateau. (x, y, angle deg, opening px, jaw px) with fractional centres.
REALISTIC_480x640 = [
    (80.3, 70.6, 0.0, 100.0, 20.0),
    (240.7, 80.2, 89.5, 96.0, 10.0),
    (400.45, 75.8, -90.0, 60.0, 25.0),
    (560.2, 90.1, 45.0, 80.0, 15.0),
    (90.6, 240.35, -45.0, 70.0, 22.0),
    (250.15, 250.9, 30.0, 50.0, 12.0),
    (410.9, 235.4, -60.0, 100.0, 18.0),
    (565.5, 245.25, 89.0, 40.0, 10.0),
    (85.8, 400.7, -88.5, 85.0, 14.0),
    (240.4, 395.15, 15.0, 30.0, 25.0),
    (405.05, 410.55, -30.0, 64.0, 11.0),
    (560.65, 400.3, 75.0, 92.0, 16.0),
]
REALISTIC_224x224 = [
    (55.3, 60.6, 89.5, 90.0, 12.0),
    (165.7, 55.2, 45.0, 64.0, 20.0),
    (60.45, 165.8, -45.0, 100.0, 10.0),
    (165.2, 168.1, -90.0, 30.0, 25.0),
]


@pytest.mark.parametrize(
    ("size", "layout"),
    [((480, 640), REALISTIC_480x640), ((224, 224), REALISTIC_224x224)],
    ids=["480x640", "224x224"],
)
def test_round_trip_realistic_sizes_one_grasp_each(size, layout):
    gts = [
        Grasp(x, y, float(wrap_angle(math.radians(deg))), w, h, quality=0.55 + 0.03 * i)
        for i, (x, y, deg, w, h) in enumerate(layout)
    ]
    # The full rectangles (not only their fills) are pairwise disjoint.
    whole = GraspEncoding(WIDTH_SCALE, fill_fraction=1.0)
    full = [encode_grasps([g], size, whole)[0] > 0 for g in gts]
    assert (np.sum(full, axis=0) <= 1).all()
    decoding = GraspDecoding(width_scale=WIDTH_SCALE, threshold=0.1, top_n=len(gts) + 4)
    decoded = decode_grasps(encode_grasps(gts, size, ENC), decoding)
    # The extra top-N slots stay empty: no ground truth yields a second, duplicate peak.
    assert len(decoded) == len(gts)
    matched = set()
    for gt in gts:
        close = [i for i, g in enumerate(decoded) if math.hypot(g.x - gt.x, g.y - gt.y) <= 2.0]
        assert len(close) == 1, (gt, [decoded[i] for i in close])
        got = decoded[close[0]]
        matched.add(close[0])
        assert _angle_error_deg(got.angle, gt.angle) <= 3.0, (gt, got)
        assert abs(got.width - gt.width) <= 2.0, (gt, got)
        assert -math.pi / 2 <= got.angle < math.pi / 2
    assert len(matched) == len(gts)
    assert [g.quality for g in decoded] == sorted((g.quality for g in decoded), reverse=True)


@pytest.mark.parametrize(("sx", "sy", "rot"), [(4.0, 4.0, 0.0), (9.0, 3.0, 0.6), (2.5, 6.0, -1.2)])
def test_smooth_blob_decodes_to_its_maximum(sx, sy, rot):
    # A smooth single-peaked (rotated, anisotropic) Gaussian quality blob: one grasp, at the blob's
    # maximum within 1 px, with the angle and width of the maps there.
    x0, y0 = 70.3, 41.7
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float64)
    a = (xx - x0) * math.cos(rot) + (yy - y0) * math.sin(rot)
    b = -(xx - x0) * math.sin(rot) + (yy - y0) * math.cos(rot)
    maps = np.zeros((4, 96, 128), np.float32)
    maps[0] = 0.9 * np.exp(-0.5 * ((a / sx) ** 2 + (b / sy) ** 2))
    maps[1], maps[2], maps[3] = math.cos(1.0), math.sin(1.0), 0.4
    decoded = decode_grasps(maps, GraspDecoding(width_scale=WIDTH_SCALE, top_n=5))
    assert len(decoded) == 1
    (got,) = decoded
    assert math.hypot(got.x - x0, got.y - y0) <= 1.0, got
    assert got.angle == pytest.approx(0.5) and got.width == pytest.approx(40.0)


def test_flat_topped_noisy_blob_decodes_to_its_centre():
    # A network-like blob: a flat top with 0.3 % noise has many local maxima but is one plateau.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float64)
    disc = np.hypot(xx - 81.4, yy - 57.8) <= 18.0
    maps = np.zeros((4, 120, 160), np.float32)
    maps[0] = np.where(disc, 0.8 + rng.uniform(-0.0024, 0.0024, disc.shape), 0.0)
    maps[1], maps[3] = 1.0, 0.3
    decoded = decode_grasps(maps, GraspDecoding(width_scale=WIDTH_SCALE, top_n=5))
    assert len(decoded) == 1
    assert math.hypot(decoded[0].x - 81.4, decoded[0].y - 57.8) <= 1.0, decoded[0]


def test_curved_plateau_centre_stays_on_the_plateau():
    # A C-shaped plateau: its centroid lies in the gap, so the grasp moves onto the plateau and
    # reads angle and width from a plateau pixel, not from the empty middle.
    maps = np.zeros((4, 40, 40), np.float32)
    yy, xx = np.mgrid[0:40, 0:40]
    ring = np.abs(np.hypot(xx - 20, yy - 20) - 12) <= 1.5
    arc = ring & (xx <= 26)
    maps[0][arc], maps[1][arc], maps[3][arc] = 0.7, 1.0, 0.25
    decoding = GraspDecoding(width_scale=WIDTH_SCALE, quality_sigma=0.0, top_n=5)
    decoded = decode_grasps(maps, decoding)
    assert len(decoded) == 1
    (got,) = decoded
    assert arc[round(got.y), round(got.x)]
    assert got.width == pytest.approx(25.0) and got.angle == pytest.approx(0.0)


def test_plateau_tolerance_is_validated():
    with pytest.raises(ValueError, match="plateau_tolerance"):
        decode_grasps(
            np.zeros((4, 8, 8), np.float32),
            GraspDecoding(width_scale=WIDTH_SCALE, plateau_tolerance=1.0),
        )


def test_corners_angle_zero_opens_along_plus_x():
    corners = Grasp(10.0, 20.0, 0.0, 4.0, 2.0).corners()
    expected = [[8.0, 19.0], [8.0, 21.0], [12.0, 21.0], [12.0, 19.0]]
    np.testing.assert_allclose(corners, expected, atol=1e-12)


def test_corners_positive_angle_is_counter_clockwise_on_screen():
    # +90 degrees: the opening axis points up on screen, i.e. towards -y (image y points down).
    corners = Grasp(10.0, 20.0, math.pi / 2, 4.0, 2.0).corners()
    np.testing.assert_allclose(corners, [[9, 22], [11, 22], [11, 18], [9, 18]], atol=1e-12)
    # +45 degrees: the +w/2 end (corners 2 and 3) is up and to the right of the centre.
    end = Grasp(0.0, 0.0, math.pi / 4, 2 * math.sqrt(2), 0.0).corners()[2:].mean(axis=0)
    np.testing.assert_allclose(end, [1.0, -1.0], atol=1e-12)


def test_wrap_angle():
    assert wrap_angle(math.pi / 2) == pytest.approx(-math.pi / 2)
    assert wrap_angle(-math.pi / 2) == pytest.approx(-math.pi / 2)
    assert wrap_angle(math.pi) == pytest.approx(0.0)
    assert wrap_angle(3 * math.pi / 4) == pytest.approx(-math.pi / 4)
    assert wrap_angle(-3 * math.pi / 4) == pytest.approx(math.pi / 4)
    np.testing.assert_allclose(wrap_angle(np.array([0.1, math.pi + 0.1])), [0.1, 0.1])


def test_encode_fills_rectangle_with_channel_values():
    grasp = Grasp(10.0, 10.0, math.pi / 6, 8.0, 4.0, quality=0.7)
    maps = encode_grasps([grasp], (20, 20), ENC)
    inside = maps[0] > 0
    assert inside[10, 10]
    np.testing.assert_allclose(maps[0][inside], 0.7)
    np.testing.assert_allclose(maps[1][inside], math.cos(math.pi / 3), rtol=1e-6)
    np.testing.assert_allclose(maps[2][inside], math.sin(math.pi / 3), rtol=1e-6)
    np.testing.assert_allclose(maps[3][inside], 8.0 / WIDTH_SCALE, rtol=1e-6)
    assert not maps[:, ~inside].any()


def test_encode_extents_and_min_fill():
    # angle 0: half of an 8 px opening = 4 px along x, 4 px jaw along y; edges inclusive.
    maps = encode_grasps([Grasp(10.0, 10.0, 0.0, 8.0, 4.0)], (20, 20), ENC)
    rows, cols = np.nonzero(maps[0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (8, 12, 8, 12)
    # A 1 x 1 px grasp still fills min_fill_px = 2 px along both axes (3 x 3 pixel centres).
    tiny = encode_grasps([Grasp(5.0, 5.0, 0.0, 1.0, 1.0)], (10, 10), ENC)
    assert np.count_nonzero(tiny[0]) == 9


def test_encode_later_grasps_overwrite_and_outside_is_ignored():
    first = Grasp(10.0, 10.0, 0.0, 8.0, 4.0, quality=0.3)
    second = Grasp(10.0, 10.0, 0.0, 8.0, 4.0, quality=0.9)
    outside = Grasp(500.0, 500.0, 0.0, 8.0, 4.0)
    maps = encode_grasps([first, second, outside], (20, 20), ENC)
    assert maps[0, 10, 10] == pytest.approx(0.9)
    assert np.count_nonzero(maps[0]) == 25


@pytest.mark.parametrize(
    ("grasps", "size", "encoding", "message"),
    [
        ([], (0, 5), ENC, "size"),
        ([], (5.0, 5), ENC, "size"),
        ([], (5,), ENC, "size"),
        ([], (5, 5), GraspEncoding(width_scale=0.0), "width_scale"),
        ([Grasp(1.0, float("nan"), 0.0, 4.0, 2.0)], (5, 5), ENC, "grasp 0 has non-finite y"),
        ([Grasp(1.0, 1.0, 0.0, -4.0, 2.0)], (5, 5), ENC, "negative width"),
    ],
)
def test_encode_validation(grasps, size, encoding, message):
    with pytest.raises(ValueError, match=message):
        encode_grasps(grasps, size, encoding)


def test_empty_maps_decode_to_nothing():
    assert decode_grasps(np.zeros((4, 32, 48), np.float32), DEC) == []
    below = np.zeros((4, 32, 48), np.float32)
    below[0] = DEC.threshold * 0.5
    assert decode_grasps(below, DEC) == []


def _three_grasps() -> list[Grasp]:
    return [
        Grasp(30.0, 30.0, 0.0, 16.0, 8.0, quality=0.5),
        Grasp(90.0, 30.0, 0.5, 16.0, 8.0, quality=0.9),
        Grasp(60.0, 90.0, -0.5, 16.0, 8.0, quality=0.7),
    ]


def test_ranking_and_top_n():
    maps = encode_grasps(_three_grasps(), (128, 128), ENC)
    decoded = decode_grasps(maps, DEC)
    assert [(g.x, g.y) for g in decoded] == [(90.0, 30.0), (60.0, 90.0), (30.0, 30.0)]
    assert [g.quality for g in decoded] == sorted((g.quality for g in decoded), reverse=True)
    top2 = decode_grasps(maps, GraspDecoding(width_scale=WIDTH_SCALE, threshold=0.1, top_n=2))
    assert [(g.x, g.y) for g in top2] == [(90.0, 30.0), (60.0, 90.0)]


def test_mask_gating_removes_grasp_outside_mask():
    maps = encode_grasps(_three_grasps(), (128, 128), ENC)
    mask = np.zeros((128, 128), np.float32)
    mask[:60, :60] = 0.9  # covers only the grasp at (30, 30)
    decoded = decode_grasps(maps, DEC, mask_prob=mask)
    assert [(g.x, g.y) for g in decoded] == [(30.0, 30.0)]


def test_decode_angle_at_plus_minus_90_and_clipping():
    maps = np.zeros((4, 9, 9), np.float32)
    maps[0, 4, 4] = 1.7  # clipped to 1
    maps[1], maps[2], maps[3] = -1.0, 0.0, -0.2  # 2θ = π, negative width
    (grasp,) = decode_grasps(maps, GraspDecoding(width_scale=WIDTH_SCALE, quality_sigma=0.0))
    assert grasp.angle == pytest.approx(-math.pi / 2)
    assert grasp.width == 0.0 and grasp.quality == pytest.approx(1.0)


def test_plateau_collapses_to_one_peak():
    maps = np.zeros((4, 20, 20), np.float32)
    maps[0, 5:8, 5:8] = 0.8
    decoding = GraspDecoding(width_scale=WIDTH_SCALE, quality_sigma=0.0, top_n=10)
    assert len(decode_grasps(maps, decoding)) == 1


@pytest.mark.parametrize(
    ("shape", "mask_shape", "message"),
    [
        ((3, 8, 8), None, r"\(4, H, W\)"),
        ((1, 4, 8, 8), None, "batch"),
        ((4, 8, 8), (8, 9), "mask_prob must have shape"),
    ],
)
def test_decode_bad_shapes(shape, mask_shape, message):
    mask = None if mask_shape is None else np.zeros(mask_shape, np.float32)
    with pytest.raises(ValueError, match=message):
        decode_grasps(np.zeros(shape, np.float32), DEC, mask_prob=mask)


def test_decode_rejects_non_finite_maps():
    maps = np.zeros((4, 8, 8), np.float32)
    maps[3, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        decode_grasps(maps, DEC)


def test_decode_fills_top_n_on_large_noisy_maps():
    maps = np.random.default_rng(0).random((4, 480, 640), dtype=np.float32)
    decoded = decode_grasps(maps, GraspDecoding(width_scale=WIDTH_SCALE, top_n=50))
    assert len(decoded) == 50


@pytest.mark.parametrize("shape", [(4, 0, 0), (4, 0, 8), (4, 8, 0)])
def test_decode_rejects_empty_maps(shape):
    with pytest.raises(ValueError, match=r"H, W >= 1"):
        decode_grasps(np.zeros(shape, np.float32), DEC)


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        (np.full((4, 8, 8), "a"), "grasp_maps must be an array of real numbers"),
        ([np.zeros((8, 8)), np.zeros((8, 7))], "grasp_maps must be a numeric array"),
        (np.full((4, 8, 8), 1e300), "beyond float32"),  # finite as float64, inf as float32
    ],
    ids=["strings", "ragged", "float32-overflow"],
)
def test_decode_rejects_non_numeric_or_overflowing_maps(maps, message):
    with pytest.raises(ValueError, match=message):
        decode_grasps(maps, DEC)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_distance", 2.0, "decoding.min_distance must be an int >= 0, got 2.0 of type float"),
        ("min_distance", 2.5, "decoding.min_distance must be an int"),
        ("top_n", 3.0, "decoding.top_n must be an int >= 1, got 3.0 of type float"),
        ("top_n", True, "decoding.top_n must be an int >= 1, got True of type bool"),
        ("top_n", 0, "decoding.top_n must be an int >= 1, got 0"),
        ("min_distance", -1, "decoding.min_distance must be an int >= 0"),
        ("width_scale", "100", "decoding.width_scale must be a real number .* type str"),
        ("width_scale", None, "decoding.width_scale must be a real number"),
        ("width_scale", True, "decoding.width_scale must be a real number"),
        ("threshold", "0.2", "decoding.threshold must be a real number"),
        ("mask_threshold", float("nan"), "decoding.mask_threshold must be a finite number"),
        ("quality_sigma", float("nan"), "decoding.quality_sigma must be a finite number"),
        ("jaw_ratio", -0.5, "decoding.jaw_ratio must be >= 0"),
    ],
)
def test_decode_validates_decoding_types(field, value, message):
    decoding = GraspDecoding(**{"width_scale": WIDTH_SCALE, field: value})
    with pytest.raises(ValueError, match=message):
        decode_grasps(np.zeros((4, 8, 8), np.float32), decoding)


def test_decode_accepts_numpy_ints_for_int_constants():
    maps = encode_grasps(_three_grasps(), (128, 128), ENC)
    decoding = GraspDecoding(
        width_scale=np.float32(WIDTH_SCALE), threshold=0.1, top_n=np.int64(2), min_distance=4
    )
    assert [(g.x, g.y) for g in decode_grasps(maps, decoding)] == [(90.0, 30.0), (60.0, 90.0)]


# A blur wider than the map is refused before blurring (1e6 used to run for hours).
@pytest.mark.parametrize("sigma", [8.01, 1e4])
def test_decode_rejects_blur_wider_than_the_map(sigma):
    decoding = GraspDecoding(width_scale=WIDTH_SCALE, quality_sigma=sigma)
    with pytest.raises(ValueError, match=r"quality_sigma must be in \[0, max\(H, W\)\] = \[0, 8\]"):
        decode_grasps(np.zeros((4, 6, 8), np.float32), decoding)


def test_decode_accepts_blur_as_wide_as_the_map():
    maps = np.zeros((4, 6, 8), np.float32)
    maps[0, 3, 4] = 1.0
    decoding = GraspDecoding(width_scale=WIDTH_SCALE, quality_sigma=8.0, threshold=0.0)
    assert len(decode_grasps(maps, decoding)) == 1


def test_decode_huge_min_distance_is_capped_not_allocated():
    # The NMS window only needs to span the map; a min_distance of 10**12 must not build a
    # (2 * 10**12 + 1)^2 kernel. Any distance that covers the map keeps only the strongest peak.
    maps = encode_grasps(_three_grasps(), (128, 128), ENC)
    for min_distance in (10**12, 200):
        decoding = GraspDecoding(width_scale=WIDTH_SCALE, threshold=0.1, min_distance=min_distance)
        assert [(g.x, g.y) for g in decode_grasps(maps, decoding)] == [(90.0, 30.0)]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_non_finite_mask_counts_as_below_threshold(bad):
    maps = encode_grasps(_three_grasps(), (128, 128), ENC)
    mask = np.full((128, 128), 0.9, np.float32)
    mask[60:, :] = bad  # covers only the grasp at (60, 90)
    decoded = decode_grasps(maps, DEC, mask_prob=mask)
    assert [(g.x, g.y) for g in decoded] == [(90.0, 30.0), (30.0, 30.0)]


def test_decode_rejects_non_numeric_mask():
    with pytest.raises(ValueError, match="mask_prob must be an array of real numbers"):
        decode_grasps(np.zeros((4, 8, 8), np.float32), DEC, mask_prob=np.full((8, 8), "x"))


@pytest.mark.parametrize("name", ["lggd-rn50", "lggd-tiny"])
def test_round_trip_with_each_registered_width_scale(name):
    # Guards the scale constants that training, export and runtime take from the model config:
    # scene grasps, letterboxed to the model input, survive encode -> decode one at a time.
    from langgrasp.datasets.synthetic import render_scene
    from langgrasp.detector.config import get_config
    from langgrasp.detector.preprocess import Letterbox

    config = get_config(name)
    size = (config.output_size, config.output_size)
    encoding = GraspEncoding(width_scale=config.width_scale)
    decoding = GraspDecoding(width_scale=config.width_scale, threshold=0.1, top_n=1)
    checked = 0
    for seed in range(6):
        scene = render_scene(seed)
        box = Letterbox.fit(*scene.rgb.shape[:2], config.input_size)
        for gt in box.grasps_to_model(scene.grasps):
            (got,) = decode_grasps(encode_grasps([gt], size, encoding), decoding)
            assert math.hypot(got.x - gt.x, got.y - gt.y) <= 2.0, (gt, got)
            assert _angle_error_deg(got.angle, gt.angle) <= 3.0, (gt, got)
            assert abs(got.width - gt.width) <= 2.0, (gt, got)
            checked += 1
    assert checked >= 10


def test_invalid_fields_names_non_finite_and_non_numeric_values():
    assert Grasp(1.0, 2.0, 0.3, 4.0, 2.0).invalid_fields() == []
    bad = Grasp(math.nan, 2.0, math.inf, "4", True, quality=0.5)  # type: ignore[arg-type]
    assert bad.invalid_fields() == ["x", "angle", "width", "height"]
