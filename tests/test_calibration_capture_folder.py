"""The capture folder format (poses.json, camera.json), typed poses, and file helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.calibration.capture_folder import (
    Capture,
    parse_typed_pose,
    read_camera_info,
    read_poses,
    write_camera_info,
    write_poses,
)
from langgrasp.calibration.storage import list_images, read_image, write_image
from langgrasp.calibration.transforms import make_transform
from langgrasp.errors import InputError

POSE = make_transform([0.1, -0.2, 0.3], [0.45, -0.1, 0.32])
POSE_MM = make_transform([0.1, -0.2, 0.3], [450.0, -100.0, 320.0])


@pytest.fixture
def folder(tmp_path):
    for name in ("000.png", "001.png"):
        write_image(tmp_path / name, np.full((8, 8, 3), 200, np.uint8))
    return tmp_path


def test_poses_round_trip(folder):
    captures = [
        Capture("000.png", POSE),
        Capture("001.png", POSE @ make_transform([0.2, 0, 0], [0, 0, 0.01])),
    ]
    write_poses(folder, captures)
    data = json.loads((folder / "poses.json").read_text())
    assert data[0]["image"] == "000.png" and len(data[0]["T_base_ee"]) == 4
    back = read_poses(folder)
    assert [c.image for c in back] == ["000.png", "001.png"]
    np.testing.assert_allclose(back[1].T_base_ee, captures[1].T_base_ee, atol=1e-9)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"image": "000.png"}, "must be a list"),
        ([{"image": "000.png"}], "needs the keys"),
        ([{"image": "missing.png", "T_base_ee": POSE.tolist()}], "missing.png is not in"),
        ([{"image": "000.png", "T_base_ee": POSE.T.tolist()}], "transposed"),
        (
            [{"image": "000.png", "T_base_ee": POSE_MM.tolist()}],
            "entry 0 \\(000.png\\).*millimetres",
        ),
    ],
)
def test_bad_poses_json_names_the_entry(folder, entries, message):
    (folder / "poses.json").write_text(json.dumps(entries))
    with pytest.raises(InputError, match=message):
        read_poses(folder)


def test_missing_or_broken_poses_json(tmp_path):
    with pytest.raises(InputError, match=r"poses\.json not found"):
        read_poses(tmp_path)
    (tmp_path / "poses.json").write_text("[{")
    with pytest.raises(InputError, match="not valid JSON"):
        read_poses(tmp_path)


def test_camera_info_round_trip(tmp_path):
    assert read_camera_info(tmp_path) == (None, None)
    camera = CameraIntrinsics(640, 480, 610.0, 611.0, 320.0, 240.0, "inverse_brown_conrady")
    write_camera_info(tmp_path, camera, "843112071234")
    assert read_camera_info(tmp_path) == (camera, "843112071234")


def test_typed_pose_formats():
    six = parse_typed_pose("0.45 -0.1 0.32 0.1 -0.2 0.3")
    np.testing.assert_allclose(six, POSE, atol=1e-12)
    sixteen = parse_typed_pose(json.dumps(POSE.tolist()))  # a pasted nested list
    np.testing.assert_allclose(sixteen, POSE, atol=1e-12)
    commas = parse_typed_pose("0.45, -0.1, 0.32, 0.1, -0.2, 0.3")
    np.testing.assert_allclose(commas, POSE, atol=1e-12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("450 -100 320 0.1 -0.2 0.3", "millimetres"),
        ("0.45 -0.1 0.32 180 0 0", "degrees"),
        ("0.45 -0.1 0.32", "got 3 numbers"),
        ("x y z", "could not read numbers"),
    ],
)
def test_typed_pose_errors_explain(text, message):
    with pytest.raises(InputError, match=message):
        parse_typed_pose(text)


def test_image_helpers(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255  # red stays red through the BGR file
    write_image(tmp_path / "b.png", rgb)
    write_image(tmp_path / "a.png", rgb)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.png"]
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)
    with pytest.raises(InputError, match="cannot read image"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="not found"):
        list_images(tmp_path / "nowhere")
