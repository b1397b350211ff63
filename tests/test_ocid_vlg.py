import json
import math
import re

import cv2
import numpy as np
import pytest

from langgrasp.datasets.base import LayoutError, SampleError, open_dataset
from langgrasp.datasets.ocid_vlg import (
    OCIDVLGDataset,
    Reason,
    corners_from_grasp,
    expression_row,
    grasp_from_corners,
    mask_box,
    write_expressions,
    write_image_files,
    write_ocid_vlg_split,
)
from langgrasp.datasets.synthetic import SceneConfig, render_scene
from langgrasp.datasets.synthetic_set import SyntheticDataset
from langgrasp.detector.grasp import Grasp
from langgrasp.errors import InputError

SMALL = SceneConfig().resized(160, 120)
SEQ = "ARID20/table/top/seq08"  # real OCID sequence path shape (datasets.md 1.2)
IMAGE = "result_2018-08-21-14-44-31.png"


def _angle_diff(a, b):
    d = (a - b) % math.pi
    return min(d, math.pi - d)


# --- corner conventions, hand-computed ---------------------------------------------------------

AXIS_RECT = [[0, 0], [0, 10], [20, 10], [20, 0]]  # p1->p4 = +x (20 px), p1->p2 = down (10 px)
DIAG_RECT = [[0, 0], [4, 4], [14, -6], [10, -10]]  # p1->p4 = up-right, p1->p2 = down-right


def test_p1p4_opening_along_x_is_angle_zero():
    g = grasp_from_corners(AXIS_RECT, "p1p4")
    assert (g.x, g.y, g.width, g.height, g.quality) == pytest.approx((10, 5, 20, 10, 1.0))
    assert g.angle == pytest.approx(0.0)


def test_p1p4_up_right_is_plus_45_degrees():
    g = grasp_from_corners(DIAG_RECT, "p1p4")
    assert math.degrees(g.angle) == pytest.approx(45.0)
    assert (g.x, g.y) == pytest.approx((7, -3))
    assert g.width == pytest.approx(10 * math.sqrt(2))  # |p4 - p1|
    assert g.height == pytest.approx(4 * math.sqrt(2))  # |p2 - p1|


def test_p1p2_takes_the_other_edge_as_opening():
    g = grasp_from_corners(AXIS_RECT, "p1p2")  # opening straight down: -90 deg (= +90)
    assert (g.width, g.height) == pytest.approx((10, 20))
    assert g.angle == pytest.approx(-math.pi / 2)
    g = grasp_from_corners(DIAG_RECT, "p1p2")  # opening down-right: -45 deg
    assert math.degrees(g.angle) == pytest.approx(-45.0)
    assert (g.width, g.height) == pytest.approx((4 * math.sqrt(2), 10 * math.sqrt(2)))
    assert (g.x, g.y) == pytest.approx((7, -3))


@pytest.mark.parametrize("edge", ["p1p4", "p1p2"])
def test_corners_round_trip(edge):
    rng = np.random.default_rng(0)
    for _ in range(50):
        w, h = rng.uniform(2, 80, size=2)
        g = Grasp(*rng.uniform(0, 500, size=2), rng.uniform(-math.pi / 2, math.pi / 2), w, h)
        back = grasp_from_corners(corners_from_grasp(g, edge), edge)
        assert (back.x, back.y, back.width, back.height) == pytest.approx((g.x, g.y, w, h))
        assert _angle_diff(back.angle, g.angle) < 1e-9
        assert -math.pi / 2 <= back.angle < math.pi / 2


def test_p1p4_matches_crog_formula():
    # GraspTransforms: theta = degrees(atan2(dx, dy)) of p1->p4, then -90 if > 0 else +90.
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = rng.uniform(0, 100, size=(4, 2))
        p[2] = p[1] + p[3] - p[0]  # a parallelogram, as CROG only reads p1, p2, p4
        dx, dy = p[3] - p[0]
        theta = math.degrees(math.atan2(dx, dy))
        theta = theta - 90 if theta > 0 else theta + 90
        ours = grasp_from_corners(p, "p1p4")
        assert _angle_diff(ours.angle, math.radians(theta)) < 1e-9
        assert ours.width == pytest.approx(np.hypot(dx, dy))


@pytest.mark.parametrize(
    "corners",
    [
        [[0, 0], [1, 1], [2, 2]],
        [[0, 0], [1, 0], [1, 1], [0, float("nan")]],
        [[0, 0], [0, 0], [1, 1], [0, 0]],
        "rect",
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]],
    ],
)
def test_malformed_corners_raise(corners):
    with pytest.raises(InputError):
        grasp_from_corners(corners)


def test_unknown_opening_edge_raises(tmp_path):
    with pytest.raises(InputError, match="p1p4"):
        grasp_from_corners(AXIS_RECT, "p2p3")
    with pytest.raises(InputError, match="opening_edge"):
        OCIDVLGDataset(tmp_path, "test", opening_edge="long")


# --- a fixture in the real layout --------------------------------------------------------------


def _real_style_fixture(root, **overrides):
    """One real-looking OCID-VLG sample: 3 instances in a uint16 map, target id 7 (apple_1)."""
    scene = render_scene(5, SMALL)
    ids = np.zeros(scene.mask.shape, np.uint16)
    ids[:, :20] = 3
    ids[scene.mask] = 7
    ids[-10:, -10:] = 300
    image_filename = f"{SEQ},{IMAGE}"
    write_image_files(root, image_filename, scene.rgb, scene.depth, ids)
    row = expression_row(
        image_filename=image_filename,
        question="pick up the red apple",
        answer=7,
        target="apple_1",
        box=mask_box(scene.mask),
        grasps=scene.grasps,
        question_index=17748,
        family="name",
    )
    row["program"] = [{"op": "filter", "arg": "apple"}]
    row.update(overrides)
    write_expressions(root, "multiple", "test", [row])
    write_expressions(root, "multiple", "train", [])
    return scene


def test_loads_real_layout_sample(tmp_path):
    scene = _real_style_fixture(tmp_path)
    ds = OCIDVLGDataset(tmp_path, "test")
    assert (
        len(ds) == 1 and ds.sample_id(0) == "17748" and len(OCIDVLGDataset(tmp_path, "train")) == 0
    )
    s = ds[0]
    np.testing.assert_array_equal(s.rgb, scene.rgb)
    assert s.depth.dtype == np.float32 and np.abs(s.depth - scene.depth).max() < 1e-6
    np.testing.assert_array_equal(s.mask, scene.mask)
    assert (s.text, s.target_name, s.sample_id) == ("pick up the red apple", "apple_1", "17748")
    assert s.meta["target_class"] == "apple" and s.meta["answer"] == 7
    assert s.meta["image_filename"] == f"{SEQ},{IMAGE}" and s.meta["question_index"] == 17748
    assert s.meta["box"] == mask_box(scene.mask) and s.meta["version"] == "multiple"
    assert s.meta["family"] == "name" and s.meta["program"][0]["op"] == "filter"
    json.dumps(s.meta)  # JSON-only
    for a, b in zip(s.grasps, scene.grasps, strict=True):
        assert (a.x, a.y, a.width, a.height) == pytest.approx((b.x, b.y, b.width, b.height))
        assert _angle_diff(a.angle, b.angle) < 1e-9


def test_opening_edge_option_passes_through_open_dataset(tmp_path):
    scene = _real_style_fixture(tmp_path)
    crog = open_dataset("ocid-vlg", tmp_path, "test")[0].grasps
    other = open_dataset("ocid-vlg", tmp_path, "test", opening_edge="p1p2")[0].grasps
    for a, b, g in zip(crog, other, scene.grasps, strict=True):
        assert (b.width, b.height) == pytest.approx((a.height, a.width))
        assert _angle_diff(b.angle, a.angle + math.pi / 2) < 1e-9
        assert a.width == pytest.approx(g.width)


def test_misspelt_option_is_an_input_error_naming_the_options(tmp_path):
    from langgrasp.datasets.base import parse_options

    _real_style_fixture(tmp_path)
    options = parse_options(["opening_egde=p1p2", "version=multiple"])
    assert options == {"opening_egde": "p1p2", "version": "multiple"}
    with pytest.raises(InputError, match=r"opening_egde;.*version, opening_edge"):
        open_dataset("ocid-vlg", tmp_path, "test", **options)
    with pytest.raises(InputError, match="does not take the option"):
        open_dataset("grasp-anything", tmp_path, "all", version="multiple")
    assert parse_options(["n=3", "flag=true", "name=x=y"]) == {"n": 3, "flag": True, "name": "x=y"}
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_options(["p1p2"])


def test_fixture_writer_round_trips_grounding_samples(tmp_path):
    samples = [SyntheticDataset("val", n=2, scene_config=SMALL)[i] for i in range(2)]
    write_ocid_vlg_split(tmp_path, samples, version="unique", split="val")
    ds = OCIDVLGDataset(tmp_path, "val", version="unique")
    assert len(ds) == 2
    for a, b in zip(ds, samples, strict=True):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.text == b.text and a.target_name == b.target_name
        assert a.meta["family"] == b.meta["family"] and a.meta["seed"] == b.meta["seed"]


# --- layout errors -----------------------------------------------------------------------------


def test_layout_errors_name_what_is_missing(tmp_path):
    with pytest.raises(LayoutError, match="not a folder"):
        OCIDVLGDataset(tmp_path / "nope", "test")
    with pytest.raises(LayoutError, match="needs a dataset root"):
        open_dataset("ocid-vlg", None, "test")
    with pytest.raises(LayoutError, match=r"no refer/ folder.*seg_mask_instances_combi"):
        OCIDVLGDataset(tmp_path, "test")
    _real_style_fixture(tmp_path / "OCID_VLG" / "OCID_Grasp")
    with pytest.raises(LayoutError, match=r"did you mean root .*OCID_Grasp"):
        OCIDVLGDataset(tmp_path, "test")
    root = tmp_path / "OCID_VLG" / "OCID_Grasp"
    with pytest.raises(LayoutError, match="no unique/ folder; found versions: multiple"):
        OCIDVLGDataset(root, "test", version="unique")
    with pytest.raises(
        LayoutError, match=r"refer/multiple/ has no val_expressions.json.*found splits: test, train"
    ):
        OCIDVLGDataset(root, "val")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"info": {}}', '{"data": {}}'])
def test_bad_expressions_file_is_a_layout_error(tmp_path, content):
    path = tmp_path / "refer" / "multiple" / "test_expressions.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(LayoutError, match=r"test_expressions\.json"):
        OCIDVLGDataset(tmp_path, "test")


@pytest.mark.parametrize("name", ["../x", "a/b", "", None])
def test_split_and_version_must_be_plain_names(tmp_path, name):
    with pytest.raises(InputError):
        OCIDVLGDataset(tmp_path, name)
    with pytest.raises(InputError):
        OCIDVLGDataset(tmp_path, "test", version=name)


# --- sample errors -----------------------------------------------------------------------------


def _load_error(root, reason):
    ds = OCIDVLGDataset(root, "test")
    with pytest.raises(SampleError) as info:
        ds.load(0)
    assert info.value.reason == reason
    message = str(info.value)
    assert message.startswith("multiple/test sample ")
    return message


@pytest.mark.parametrize("folder", ["rgb", "depth", "seg_mask_instances_combi"])
def test_missing_file_names_the_path(tmp_path, folder):
    _real_style_fixture(tmp_path)
    path = tmp_path / SEQ / folder / IMAGE
    path.unlink()
    what = "instance mask" if folder.startswith("seg") else folder
    message = _load_error(tmp_path, f"missing {what} file")
    assert "missing" in message and str(path) in message


def test_unreadable_image(tmp_path):
    _real_style_fixture(tmp_path)
    path = tmp_path / SEQ / "rgb" / IMAGE
    path.write_bytes(b"\x89PNG not really")
    message = _load_error(tmp_path, "unreadable rgb file")
    assert "cannot decode rgb" in message and str(path) in message


def test_eight_bit_depth_is_refused(tmp_path):
    _real_style_fixture(tmp_path)
    cv2.imwrite(str(tmp_path / SEQ / "depth" / IMAGE), np.zeros((120, 160), np.uint8))
    assert "16-bit" in _load_error(tmp_path, Reason.BAD_DEPTH)


def test_wrong_shapes(tmp_path):
    _real_style_fixture(tmp_path)
    cv2.imwrite(str(tmp_path / SEQ / "depth" / IMAGE), np.zeros((60, 80), np.uint16))
    assert "image sizes differ (rgb 120x160, depth 60x80" in _load_error(
        tmp_path, Reason.SHAPE_MISMATCH
    )


def test_mask_id_absent(tmp_path):
    _real_style_fixture(tmp_path, answer=9)
    message = _load_error(tmp_path, Reason.ID_ABSENT)
    assert "instance id 9 does not occur" in message and "ids present: 0, 3, 7, 300" in message


def test_no_grasps(tmp_path):
    _real_style_fixture(tmp_path, grasps=[])
    assert _load_error(tmp_path, Reason.NO_GRASPS).endswith("no grasps")


@pytest.mark.parametrize(
    "bad", [[[0, 0], [1, 1], [2, 2]], [[0, 0], [1, 0], [1, "x"], [0, 1]], [[0, 0]] * 4]
)
def test_malformed_grasp_corners(tmp_path, bad):
    scene = render_scene(5, SMALL)
    grasps = [corners_from_grasp(g).tolist() for g in scene.grasps] + [bad]
    _real_style_fixture(tmp_path, grasps=grasps)
    assert f"malformed grasp {len(scene.grasps)}" in _load_error(tmp_path, Reason.MALFORMED_GRASP)


def test_row_with_missing_keys_is_a_sample_error(tmp_path):
    _real_style_fixture(tmp_path)
    path = tmp_path / "refer" / "multiple" / "test_expressions.json"
    doc = json.loads(path.read_text())
    good = doc["data"][0]
    doc["data"] = [{"question": "x", "question_index": 5}, "not a row", good]
    path.write_text(json.dumps(doc))
    ds = OCIDVLGDataset(tmp_path, "test")  # opening works: rows are checked when loaded
    assert [ds.sample_id(i) for i in range(3)] == ["5", "row1", "17748"]
    with pytest.raises(
        SampleError, match=r"lacks key.*image_filename, answer, target, box, grasps"
    ):
        ds.load(0)
    with pytest.raises(SampleError) as info:
        ds.load(0)
    assert info.value.reason == Reason.MISSING_KEYS
    with pytest.raises(SampleError, match="not a JSON object"):
        ds.load(1)
    assert ds[-1].sample_id == "17748"


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("image_filename", "no-comma.png", "seq_path"),
        ("image_filename", "../../etc,passwd", "relative"),
        ("answer", "7", "integer instance id"),
        ("question", None, "question must be a string"),
    ],
)
def test_bad_row_values(tmp_path, key, value, match):
    _real_style_fixture(tmp_path, **{key: value})
    assert re.search(match, _load_error(tmp_path, Reason.BAD_ROW))


def test_writer_rejects_bad_input(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    ok = np.zeros((4, 5))
    with pytest.raises(InputError, match="depth"):
        write_image_files(tmp_path, "s,a.png", rgb, np.full((4, 5), 70.0), ok.astype(int))
    with pytest.raises(InputError, match="must be"):
        write_image_files(tmp_path, "s,a.png", rgb, np.zeros((4, 4)), ok.astype(int))
    with pytest.raises(InputError, match="relative"):
        write_image_files(tmp_path, "/abs,a.png", rgb, ok, ok.astype(int))
    with pytest.raises(InputError, match="overwrite"):
        expression_row(
            image_filename="s,a.png", question="q", answer=1, target="t", box=[0, 0, 1, 1],
            grasps=[], question_index=0, program=1,
        )  # fmt: skip
