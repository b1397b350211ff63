"""The synthetic scene camera: RGB-D with ground truth, scene changes, pacing, simulated faults."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from langgrasp.datasets.synthetic import SceneConfig, render_scene, split_scene_seed
from langgrasp.errors import InputError
from langgrasp.runtime.camera import CameraError, CameraTimeoutError
from langgrasp.runtime.cameras import SyntheticCamera

SMALL = SceneConfig().resized(160, 120)


def test_frames_show_the_rendered_scene_with_its_intrinsics():
    with SyntheticCamera(seed=4, scene_config=SMALL) as camera:
        frame = camera.read()
    scene = render_scene(4, SMALL)
    np.testing.assert_array_equal(frame.rgb, scene.rgb)
    np.testing.assert_array_equal(frame.depth_m, scene.depth)
    assert frame.depth_m.dtype == np.float32 and frame.has_depth
    np.testing.assert_allclose(frame.intrinsics.matrix, SMALL.intrinsics)
    assert frame.intrinsics.size == (160, 120) and frame.intrinsics.model == "none"
    assert frame.ground_truth.text == scene.text and frame.ground_truth.seed == 4
    assert frame.serial == "SYNTHETIC" and frame.source == "synthetic:4"


def test_same_scene_until_next_scene_with_fresh_index_and_time():
    camera = SyntheticCamera(seed=7, scene_config=SMALL)
    camera.connect()
    first, second = camera.read(), camera.read()
    np.testing.assert_array_equal(first.rgb, second.rgb)
    assert (first.index, second.index) == (0, 1)
    assert second.timestamp_s > first.timestamp_s
    first.rgb[:] = 0  # frames own their data
    assert camera.read().rgb.any()
    nxt = camera.next_scene()
    third = camera.read()
    assert nxt.seed == camera.scene_seed == 8 and third.ground_truth is nxt
    assert not np.array_equal(third.rgb, second.rgb)
    assert third.index == 3


def test_split_seeds_follow_the_dataset_numbering():
    camera = SyntheticCamera(seed=1, scene_config=SMALL, split="test")
    camera.next_scene()
    assert camera.scene_seed == split_scene_seed("test", 1, 1)
    assert camera.scene.split == "test"


def test_stall_times_out_until_resume():
    camera = SyntheticCamera(scene_config=SMALL)
    camera.connect()
    camera.stall()
    with pytest.raises(CameraTimeoutError, match="stalled"):
        camera.read(timeout_s=0.01)
    status = camera.status()
    assert status.connected and status.degraded and "stalled" in status.message
    camera.reconnect()  # a plain stall survives reconnection attempts
    assert camera.stalled and camera.connect_count == 2
    camera.resume()
    assert camera.read(timeout_s=0.01).index == 0
    assert not camera.status().degraded


def test_resume_wakes_a_waiting_read():
    camera = SyntheticCamera(scene_config=SMALL)
    camera.connect()
    camera.stall()
    timer = threading.Timer(0.05, camera.resume)
    timer.start()
    assert camera.read(timeout_s=30.0).index == 0  # returns when resumed, not after 30 s
    timer.join()


def test_stall_until_reconnect_ends_on_reconnect():
    camera = SyntheticCamera(scene_config=SMALL)
    camera.connect()
    camera.stall(until_reconnect=True)
    with pytest.raises(CameraTimeoutError):
        camera.read(timeout_s=0.01)
    camera.reconnect()
    assert not camera.stalled
    camera.read(timeout_s=0.01)


def test_fps_pacing_timestamps_and_timeout():
    camera = SyntheticCamera(scene_config=SMALL, fps=50.0)
    camera.connect()
    frames = [camera.read(timeout_s=1.0) for _ in range(3)]
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.02, 0.04])
    slow = SyntheticCamera(scene_config=SMALL, fps=0.01)  # one frame per 100 s
    slow.connect()
    slow.read()
    with pytest.raises(CameraTimeoutError, match=r"after the 0\.01 s timeout"):
        slow.read(timeout_s=0.01)


def test_errors():
    camera = SyntheticCamera(scene_config=SMALL)
    with pytest.raises(CameraError, match="not connected"):
        camera.read()
    camera.connect()
    camera.close()
    assert not camera.status().connected and camera.status().message == "closed"
    with pytest.raises(InputError, match="unknown synthetic split"):
        SyntheticCamera(split="nope")
    with pytest.raises(InputError, match="fps must be a positive number"):
        SyntheticCamera(fps=-1)
    with pytest.raises(InputError, match="seed must be an integer"):
        SyntheticCamera(seed=-1)
