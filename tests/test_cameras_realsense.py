"""RealSense cameras through the real SDK: software-device frames recorded to .db3, played back.

``RealSensePlayback`` shares the pipeline, filter, align, capture-thread and copy-out code of the
live ``RealSenseCamera``, so these tests exercise the live path without a camera
(shared/research/runtime.md 1.4, 7).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rs = pytest.importorskip(
    "pyrealsense2", reason="pyrealsense2 is not importable (pip install pyrealsense2; needs libusb)"
)

from langgrasp.calibration.camera import CameraIntrinsics  # noqa: E402
from langgrasp.errors import InputError  # noqa: E402
from langgrasp.runtime.camera import (  # noqa: E402
    CameraEndedError,
    CameraError,
    CameraTimeoutError,
)
from langgrasp.runtime.cameras.pipeline import FrameBuffer  # noqa: E402
from langgrasp.runtime.cameras.realsense import (  # noqa: E402
    RealSenseCamera,
    RealSenseConfig,
    RealSensePlayback,
)
from langgrasp.runtime.cameras.recording import record_rgbd  # noqa: E402

W, H = 32, 24
FRAMES = 4
# Values exact in float32 (the SDK stores intrinsics as float), so they compare equal.
K = CameraIntrinsics(
    W,
    H,
    fx=40.5,
    fy=41.25,
    cx=15.75,
    cy=11.5,
    model="brown_conrady",
    coeffs=(0.125, -0.0625, 0, 0, 0),
)
WAIT_S = 5.0  # generous read timeout: the machine is shared with a training job


def _frames(seed: int, count: int = FRAMES) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random colour and depth in [0.2, 3] m with holes (0) in the top-left corner."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        depth = rng.uniform(0.2, 3.0, (H, W)).astype(np.float32)
        depth[:4, :5] = 0.0
        frames.append((rgb, depth))
    return frames


@pytest.fixture(scope="module", params=[0.001, 0.0001], ids=["1mm", "0.1mm-D405"])
def recording(request, tmp_path_factory):
    """``(path, frames, depth unit)`` of a recording at each depth unit."""
    unit = request.param
    frames = _frames(seed=int(unit * 1e4))
    path = tmp_path_factory.mktemp("rec") / "scene.db3"
    assert record_rgbd(path, frames, K, depth_unit_m=unit, serial="SYN0042") == path
    return path, frames, unit


@pytest.fixture(scope="module")
def plane_recording(tmp_path_factory):
    """Six frames of a plane at 0.8 m with a hole, colour = frame number."""
    frames = []
    for k in range(6):
        depth = np.full((H, W), 0.8, np.float32)
        depth[10:12, 14:16] = 0.0
        frames.append((np.full((H, W, 3), k, np.uint8), depth))
    return record_rgbd(tmp_path_factory.mktemp("plane") / "plane.db3", frames, K), frames


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """24 frames at 1 m, colour = frame number: enough to fail on after the buffer filled."""
    frames = [(np.full((H, W, 3), k, np.uint8), np.ones((H, W), np.float32)) for k in range(24)]
    return record_rgbd(tmp_path_factory.mktemp("long") / "long.db3", frames, K)


def _read_all(camera) -> list:
    frames = []
    with pytest.raises(CameraEndedError, match="no more frames"):
        while True:
            frames.append(camera.read(WAIT_S))
    return frames


def test_playback_returns_the_recorded_frames(recording):
    path, recorded, unit = recording
    with RealSensePlayback(path) as camera:
        assert camera.intrinsics == K
        assert camera.depth_scale_m == pytest.approx(unit, rel=1e-6)
        assert camera.serial == "SYN0042"
        assert camera.has_depth
        frames = _read_all(camera)
        with pytest.raises(CameraEndedError):  # stays ended
            camera.read(0.1)
        assert camera.status().frames == FRAMES
    assert len(frames) == FRAMES
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [f.timestamp_s for f in frames] == pytest.approx([k / 30 for k in range(FRAMES)])
    for frame, (rgb, depth) in zip(frames, recorded, strict=True):
        np.testing.assert_array_equal(frame.rgb, rgb)
        assert frame.depth_m.dtype == np.float32 and frame.depth_m.shape == (H, W)
        # Metres within half a depth unit (z16 rounding), float32 scale error aside.
        np.testing.assert_allclose(frame.depth_m, depth, rtol=1e-6, atol=unit / 2 * 1.001)
        np.testing.assert_array_equal(frame.depth_m == 0, depth == 0)
        assert frame.intrinsics == K
        assert frame.serial == "SYN0042" and frame.source == "playback:scene.db3"
        # Copies owned by the frame, not views into SDK buffers (runtime.md 1.5).
        assert frame.rgb.base is None and frame.depth_m.base is None


def test_depth_scale_comes_from_the_device(recording):
    """Reading 0.1 mm units as 1 mm would make depth 10x too large (or small)."""
    path, recorded, unit = recording
    with RealSensePlayback(path) as camera:
        frame = camera.read(WAIT_S)
    valid = recorded[0][1] > 0
    ratio = frame.depth_m[valid] / recorded[0][1][valid]
    assert ratio == pytest.approx(np.ones_like(ratio), abs=unit / 0.2)


def test_slow_reader_still_gets_every_frame_in_order(plane_recording):
    path, recorded = plane_recording
    with RealSensePlayback(path) as camera:
        time.sleep(0.3)  # the capture thread must wait for read, not drop frames
        frames = _read_all(camera)
    assert [int(f.rgb[0, 0, 0]) for f in frames] == list(range(len(recorded)))


def test_real_time_playback_keeps_only_the_newest_frame(tmp_path):
    frames = [(np.full((H, W, 3), k, np.uint8), np.full((H, W), 1.0, np.float32)) for k in range(8)]
    # Real-time playback paces by record time, so the frames must be recorded paced.
    path = record_rgbd(tmp_path / "paced.db3", frames, K, fps=20, paced=True)
    with RealSensePlayback(path, real_time=True) as camera:
        deadline = time.monotonic() + 10 * WAIT_S
        while not camera.finished and time.monotonic() < deadline:
            time.sleep(0.05)
        assert camera.finished
        late = _read_all(camera)
    # The reader slept through the file: only the newest frames are left, the last one last.
    assert 1 <= len(late) < len(frames)
    assert int(late[-1].rgb[0, 0, 0]) == len(frames) - 1
    assert np.all(np.diff([f.index for f in late]) > 0)


def test_repeat_starts_over_with_increasing_index(plane_recording):
    path, recorded = plane_recording
    with RealSensePlayback(path, repeat=True) as camera:
        frames = [camera.read(WAIT_S) for _ in range(len(recorded) + 2)]
    assert [int(f.rgb[0, 0, 0]) for f in frames[len(recorded) :]] == [0, 1]
    assert np.all(np.diff([f.index for f in frames]) > 0)


def test_unaligned_depth_is_aligned_to_colour(tmp_path):
    """A half-resolution depth stream comes out on the colour grid (rs.align runs)."""
    depth_k = CameraIntrinsics(W // 2, H // 2, fx=20.25, fy=20.625, cx=7.625, cy=5.5)
    depth = np.full((H // 2, W // 2), 1.25, np.float32)
    depth[:, W // 4 :] = 0.75  # right half nearer
    rgb = np.zeros((H, W, 3), np.uint8)
    path = record_rgbd(tmp_path / "unaligned.db3", [(rgb, depth)], K, depth_intrinsics=depth_k)
    with RealSensePlayback(path) as camera:
        frame = camera.read(WAIT_S)
    assert frame.depth_m.shape == (H, W) and frame.intrinsics == K
    assert np.allclose(frame.depth_m[2:-2, 2 : W // 2 - 2], 1.25)
    assert np.allclose(frame.depth_m[2:-2, W // 2 + 2 : -2], 0.75)


def test_post_filters_run_and_keep_the_colour_grid(plane_recording):
    path, _ = plane_recording
    with RealSensePlayback(path, filters=["hole_filling"]) as camera:
        filled = camera.read(WAIT_S).depth_m
    with RealSensePlayback(path, filters=["decimation", "spatial", "temporal"]) as camera:
        decimated = camera.read(WAIT_S)
    assert np.count_nonzero(filled == 0) == 0  # the 2x2 hole is filled
    assert filled == pytest.approx(np.full((H, W), 0.8), abs=1e-6)
    # Decimation halves the depth stream; alignment puts it back on the colour grid.
    assert decimated.depth_m.shape == (H, W) and decimated.intrinsics == K
    assert np.median(decimated.depth_m) == pytest.approx(0.8, abs=1e-3)


class FlakyPlayback(RealSensePlayback):
    """Playback whose frameset conversion fails on demand, like an SDK error on a live camera."""

    failing = False

    def _to_frame(self, frameset):
        if self.failing:
            raise RuntimeError("Frame didn't arrive within 5000")
        return super()._to_frame(frameset)


def test_failures_make_the_camera_degraded_then_an_error_until_reconnect(long_recording):
    camera = FlakyPlayback(long_recording, max_failures=3)
    with camera:
        camera.read(WAIT_S)
        camera.failing = True
        degraded = False
        deadline = time.monotonic() + 10 * WAIT_S
        with pytest.raises(CameraError, match="stopped delivering: 3 failures") as error:
            while time.monotonic() < deadline:
                try:
                    camera.read(0.01)  # frames already waiting, then timeouts
                except CameraTimeoutError:
                    degraded = degraded or camera.status().degraded
        assert not isinstance(error.value, (CameraTimeoutError, CameraEndedError))
        assert degraded and camera.status().degraded
        assert "Frame didn't arrive" in camera.status().message
        camera.failing = False
        camera.reconnect()
        assert int(camera.read(WAIT_S).rgb[0, 0, 0]) == 0  # from the start again
        assert not camera.status().degraded


def test_a_frame_after_failures_clears_the_degraded_status(long_recording):
    camera = FlakyPlayback(long_recording, max_failures=100)
    with camera:
        camera.failing = True
        deadline = time.monotonic() + 10 * WAIT_S
        while not camera.status().degraded and time.monotonic() < deadline:
            time.sleep(0.01)
        assert camera.status().degraded
        camera.failing = False
        frames = _read_all(camera)
        assert frames and not camera.status().degraded
        assert camera.status().message == "ok"


def test_lifecycle_errors(plane_recording, tmp_path):
    path, _ = plane_recording
    camera = RealSensePlayback(path)
    with pytest.raises(CameraError, match="not connected"):
        camera.read(0.1)
    camera.close()  # never connected: fine
    camera.connect()
    camera.connect()  # already connected: nothing happens
    assert camera.status().connected and camera.status().message == "ok"
    camera.close()
    camera.close()
    assert not camera.status().connected
    with pytest.raises(InputError, match=r"\.db3 or \.bag"):
        RealSensePlayback(tmp_path / "scene.mp4")
    with pytest.raises(CameraError, match="does not exist"):
        RealSensePlayback(tmp_path / "missing.db3").connect()
    (tmp_path / "garbage.db3").write_bytes(b"not a rosbag2 file")
    with pytest.raises(CameraError, match="cannot play"):
        RealSensePlayback(tmp_path / "garbage.db3").connect()


def test_live_camera_reports_a_missing_device():
    camera = RealSenseCamera(RealSenseConfig(serial="000000000000", warmup_frames=0))
    with pytest.raises(CameraError, match="no RealSense camera"):
        camera.connect()
    assert not camera.is_connected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": ("median",)}, "unknown depth post-filter"),
        ({"filters": ("spatial",), "depth": False}, "need the depth stream"),
        ({"width": 0}, "width must be an integer >= 1"),
        ({"fps": 30.0}, "fps must be an integer"),
        ({"frame_timeout_s": 0}, "frame_timeout_s must be a positive number"),
        ({"serial": ""}, "serial must be a non-empty string"),
    ],
)
def test_realsense_config_rejects_bad_values(kwargs, message):
    with pytest.raises(InputError, match=message):
        RealSenseConfig(**kwargs)


def test_realsense_config_describes_the_mode():
    config = RealSenseConfig(width=1280, height=720, depth_width=848, depth_height=480)
    assert config.depth_size == (848, 480)
    assert config.describe() == "colour 1280x720 rgb8 + depth 848x480 z16 at 30 fps"


def test_frame_buffer_keeps_the_newest_or_every_frame():
    live = FrameBuffer("live", capacity=1)
    frames = [object(), object(), object()]
    live.put(frames[0], wait=False)
    live.put(frames[1], wait=False)  # replaces the unread frame
    assert live.take(0.1) is frames[1]
    with pytest.raises(CameraTimeoutError, match="no new frame within"):
        live.take(0.01)
    ordered = FrameBuffer("playback", capacity=2)
    ordered.put(frames[0], wait=True)
    ordered.put(frames[1], wait=True)
    waiting = threading.Thread(target=ordered.put, args=(frames[2], True))
    waiting.start()  # full: waits for the reader
    assert ordered.take(1.0) is frames[0]
    waiting.join(WAIT_S)
    assert [ordered.take(1.0) for _ in range(2)] == frames[1:]
    ordered.end()
    with pytest.raises(CameraEndedError):
        ordered.take(0.01)
    live.close()  # wakes a waiting reader; later frames are dropped
    live.put(frames[0], wait=True)
    with pytest.raises(CameraError, match="was closed"):
        live.take(WAIT_S)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path": "scene.bag"}, r"must end in \.db3"),
        ({"frames": []}, "at least one"),
        ({"rgb": np.zeros((H, W, 3), np.float32)}, "rgb must be uint8"),
        ({"rgb": np.zeros((H, W + 1, 3), np.uint8)}, "rgb must be uint8 of shape"),
        ({"depth": np.zeros((H, W), np.uint16)}, "depth_m must be float metres"),
        ({"depth": np.full((H, W), -1.0)}, "finite and >= 0"),
        ({"depth": np.full((H, W), np.nan)}, "finite and >= 0"),
        ({"depth": np.full((H, W), 7.0), "unit": 0.0001}, "does not fit z16"),
        ({"unit": 0.0}, "depth_unit_m must be a positive"),
    ],
)
def test_record_rgbd_rejects_bad_input(tmp_path, change, message):
    rgb = change.get("rgb", np.zeros((H, W, 3), np.uint8))
    depth = change.get("depth", np.ones((H, W), np.float32))
    frames = change.get("frames", [(rgb, depth)])
    path = tmp_path / change.get("path", "x.db3")
    with pytest.raises(InputError, match=message):
        record_rgbd(path, frames, K, depth_unit_m=change.get("unit", 0.001))
    assert not path.exists()
