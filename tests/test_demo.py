"""The embedded demo's set-up: calibration, workspace, simulated object, and the shipped bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from langgrasp.calibration.io import load_calibration
from langgrasp.datasets.synthetic import render_scene
from langgrasp.runtime.bundle import read_manifest
from langgrasp.runtime.demo import (
    DEMO_BUNDLE,
    PLACE_POSITION_M,
    camera_pose,
    demo_calibration,
    demo_scene_config,
    object_width_m,
    workspace_box,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_shipped_example_calibration_is_the_demo_camera():
    shipped = load_calibration(EXAMPLES / "synthetic_calibration.json")
    expected = demo_calibration()
    assert shipped.camera == expected.camera
    np.testing.assert_allclose(shipped.hand_eye.transform, expected.hand_eye.transform)
    assert shipped.hand_eye.setup == "eye-to-hand"


def test_camera_pose_is_a_rotation_looking_down():
    pose = camera_pose(demo_scene_config())
    rotation = pose[:3, :3]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == 1.0
    np.testing.assert_allclose(rotation[:, 2], [0, 0, -1])  # optical axis points down
    # The principal point on the table (depth = camera height) maps to the base origin's plane.
    scene = demo_scene_config()
    point = pose @ np.array([0.0, 0.0, scene.camera_height_m, 1.0])
    assert abs(point[2]) < 1e-12


def test_workspace_holds_the_view_of_the_table_and_the_place_pose():
    scene = demo_scene_config()
    low, high = workspace_box(scene)
    pose = camera_pose(scene)
    for u, v in [(0, 0), (scene.width, 0), (0, scene.height), (scene.width, scene.height)]:
        ray = np.array([(u - scene.cx) / scene.fx, (v - scene.cy) / scene.fy, 1.0])
        corner = pose[:3, :3] @ (ray * scene.camera_height_m) + pose[:3, 3]
        assert np.all(corner >= low) and np.all(corner <= high), corner
    assert np.all(np.array(PLACE_POSITION_M) >= low) and np.all(np.array(PLACE_POSITION_M) <= high)


def test_simulated_object_is_narrower_than_every_ground_truth_opening():
    scene_config = demo_scene_config()
    scene = render_scene(3, scene_config)
    width = object_width_m(scene, scene_config)
    openings = [g.width / scene_config.pixels_per_metre for g in scene.grasps]
    assert 0 < width < min(openings)


def test_shipped_bundle_records_how_it_was_trained():
    manifest = read_manifest(DEMO_BUNDLE)
    assert manifest.model == "lggd-tiny"
    assert manifest.metrics is not None and manifest.metrics["j@1"] > 0
    raw = json.loads((DEMO_BUNDLE / "manifest.json").read_text())
    commands = [h["command"] for h in raw["source"]["training"]["history"]]
    assert commands and commands[0].startswith("langgrasp train --dataset synthetic")
    size = sum(p.stat().st_size for p in DEMO_BUNDLE.iterdir())
    assert size < 32 * 2**20  # "keep it small"
