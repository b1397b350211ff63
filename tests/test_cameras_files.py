"""RGB-only cameras (image folder, video file) and the camera config / factory."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.errors import InputError
from langgrasp.runtime.camera import CameraEndedError, CameraError
from langgrasp.runtime.cameras import (
    KINDS,
    CameraConfig,
    ImageFolderCamera,
    RealSenseCamera,
    RealSensePlayback,
    SyntheticCamera,
    VideoCamera,
    open_camera,
)

W, H = 32, 24
K = CameraIntrinsics(W, H, 30.0, 30.0, 15.5, 11.5)


def _image(value: int, width: int = W, height: int = H) -> np.ndarray:
    """RGB image with a distinct colour per channel, so channel order mistakes show."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = value, 255 - value, 7
    return rgb


def _write(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture
def folder(tmp_path):
    """b.png, a.png, c.jpg (out of name order on purpose) and a text file that is ignored."""
    for name, value in (("b.png", 20), ("a.png", 10), ("c.jpg", 30)):
        _write(tmp_path / name, _image(value))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_folder_reads_images_in_name_order_as_rgb(folder):
    with ImageFolderCamera(folder, intrinsics=K) as camera:
        frames = [camera.read() for _ in range(3)]
        with pytest.raises(CameraEndedError, match="all 3 images read"):
            camera.read()
        assert camera.status().frames == 3
    np.testing.assert_array_equal(frames[0].rgb, _image(10))
    np.testing.assert_array_equal(frames[1].rgb, _image(20))
    assert np.abs(frames[2].rgb.astype(int) - _image(30)).max() <= 3  # JPEG
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(f.depth_m is None and not f.has_depth and f.intrinsics == K for f in frames)
    assert frames[0].source == "folder:" + folder.name
    assert not camera.has_depth


def test_image_folder_loops(folder):
    with ImageFolderCamera(folder, loop=True) as camera:
        frames = [camera.read() for _ in range(5)]
    assert [int(f.rgb[0, 0, 0]) for f in frames[:2]] == [10, 20]
    assert [int(f.rgb[0, 0, 0]) for f in frames[3:]] == [10, 20]
    assert [f.index for f in frames] == list(range(5))


def test_image_folder_skips_bad_images_with_a_warning(folder, caplog):
    (folder / "b2.png").write_bytes(b"\x89PNG broken")
    _write(folder / "b3.png", _image(50, width=W + 2))  # does not match the intrinsics
    with caplog.at_level(logging.WARNING), ImageFolderCamera(folder, intrinsics=K) as camera:
        values = [int(camera.read().rgb[0, 0, 0]) for _ in range(3)]
        assert "b3.png" in camera.status().message
    assert values[:2] == [10, 20]
    assert "skipped b2.png: it cannot be decoded" in caplog.text
    assert "skipped b3.png: it is 34x24, the intrinsics are 32x24" in caplog.text


def test_image_folder_errors(tmp_path):
    with pytest.raises(CameraError, match="does not exist"):
        ImageFolderCamera(tmp_path / "missing").connect()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match=r"holds no \.png/\.jpg/\.jpeg files"):
        ImageFolderCamera(tmp_path / "empty").connect()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"nope")
    camera = ImageFolderCamera(broken, loop=True)
    camera.connect()
    with pytest.raises(CameraError, match="none of the 1 images"):
        camera.read()
    with pytest.raises(CameraError, match="not connected"):
        ImageFolderCamera(tmp_path).read()


@pytest.fixture
def video(tmp_path):
    """Four frames of MJPG video at 10 fps."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened()
    for value in (40, 80, 120, 160):
        writer.write(cv2.cvtColor(_image(value), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_reads_frames_as_rgb_with_timestamps(video):
    with VideoCamera(video) as camera:
        frames = [camera.read() for _ in range(4)]
        with pytest.raises(CameraEndedError, match="no more frames"):
            camera.read()
    assert [int(f.rgb[0, 0, 0]) for f in frames] == pytest.approx([40, 80, 120, 160], abs=4)
    assert int(frames[0].rgb[0, 0, 1]) == pytest.approx(215, abs=4)  # RGB, not BGR
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert all(f.depth_m is None and f.intrinsics is None for f in frames)


def test_video_loops_with_increasing_time(video):
    with VideoCamera(video, loop=True) as camera:
        frames = [camera.read() for _ in range(6)]
    assert int(frames[4].rgb[0, 0, 0]) == pytest.approx(40, abs=4)
    assert np.all(np.diff([f.timestamp_s for f in frames]) > 0)
    assert [f.index for f in frames] == list(range(6))


def test_video_errors(tmp_path):
    with pytest.raises(CameraError, match="does not exist"):
        VideoCamera(tmp_path / "missing.mp4").connect()
    (tmp_path / "fake.mp4").write_text("not a video")
    with pytest.raises(CameraError, match="cannot decode"):
        VideoCamera(tmp_path / "fake.mp4").connect()
    with pytest.raises(CameraError, match="not connected"):
        VideoCamera(tmp_path / "fake.mp4").read()


# --- CameraConfig and open_camera ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "kind"),
    [
        ({"kind": "realsense", "serial": "123", "filters": ["spatial"]}, RealSenseCamera),
        ({"kind": "playback", "path": "scene.db3", "loop": True}, RealSensePlayback),
        ({"kind": "folder", "path": "images"}, ImageFolderCamera),
        ({"kind": "video", "path": "clip.mp4"}, VideoCamera),
        ({"kind": "synthetic", "seed": 3, "width": 160, "height": 120}, SyntheticCamera),
        ({}, SyntheticCamera),
    ],
)
def test_open_camera_builds_each_kind_unconnected(table, kind, tmp_path):
    camera = open_camera(CameraConfig.from_dict(table, "robot.toml [camera]", base_dir=tmp_path))
    assert type(camera) is kind
    assert not camera.is_connected


def test_config_fields_reach_the_backends(tmp_path):
    live = open_camera(
        CameraConfig.from_dict(
            {"kind": "realsense", "width": 1280, "height": 720, "fps": 15, "depth": False}, "t"
        )
    )
    assert live.config.describe() == "colour 1280x720 rgb8 at 15 fps"
    playback = open_camera(
        CameraConfig.from_dict(
            {"kind": "playback", "path": "rec/scene.db3", "loop": True, "real_time": True},
            "t",
            base_dir=tmp_path,
        )
    )
    assert playback.path == tmp_path / "rec" / "scene.db3"
    assert playback.repeat and playback.real_time
    folder = open_camera(
        CameraConfig.from_dict({"kind": "folder", "path": "/data", "intrinsics": K.to_dict()}, "t")
    )
    assert folder.intrinsics == K and folder.folder == Path("/data")
    synthetic = open_camera(CameraConfig.from_dict({"width": 160, "height": 120, "fps": 5}, "t"))
    assert synthetic.intrinsics.size == (160, 120) and synthetic.fps == 5


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kind": "kinect"}, "unknown camera kind 'kinect'; use one of " + ", ".join(KINDS)),
        ({"kind": "realsense", "serail": "1"}, "unknown key.*serail; known keys: kind, serial"),
        ({"kind": "folder", "path": "x", "seed": 1}, "'seed' does not apply to a folder camera"),
        ({"kind": "video"}, "a video camera needs a path"),
        ({"kind": "realsense", "width": 640}, "set both width and height"),
        ({"kind": "realsense", "fps": 29.97}, "fps must be an integer"),
        ({"kind": "realsense", "width": "640", "height": 480}, "width must be a whole number"),
        ({"kind": "realsense", "depth": "yes"}, "depth must be true or false"),
        ({"kind": "realsense", "filters": "spatial"}, "filters must be a list of names"),
        ({"kind": "realsense", "filters": ["median"]}, "unknown depth post-filter"),
        ({"kind": "synthetic", "split": "holdout"}, "unknown synthetic split"),
        ({"kind": "synthetic", "fps": 0}, "fps must be a positive number"),
        ({"kind": "folder", "path": "x", "intrinsics": {"fx_px": 1}}, "missing field"),
    ],
)
def test_config_errors_name_the_place_and_the_fix(table, message):
    with pytest.raises(InputError, match=message) as error:
        CameraConfig.from_dict(table, "robot.toml [camera]")
    assert str(error.value).startswith("robot.toml [camera]: ")


def test_config_rejects_fields_of_another_kind_when_built_directly():
    with pytest.raises(InputError, match="'serial' does not apply to a synthetic camera"):
        CameraConfig(kind="synthetic", serial="123")
    with pytest.raises(InputError, match="unknown camera kind"):
        CameraConfig(kind="usb")
    assert CameraConfig(kind="playback", path="x.db3").path == Path("x.db3")
