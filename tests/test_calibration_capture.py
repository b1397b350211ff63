"""The interactive capture loop with an image-folder camera, typed poses and a simulated arm."""

from __future__ import annotations

import io

import numpy as np
import pytest

from langgrasp.calibration.board import get_board
from langgrasp.calibration.capture import (
    FrameSource,
    ImageFolderFrames,
    PoseSource,
    TypedPoses,
    run_capture,
)
from langgrasp.calibration.capture_folder import read_camera_info, read_poses
from langgrasp.calibration.storage import read_image, write_image
from langgrasp.calibration.synthetic import SyntheticRig, default_truth
from langgrasp.calibration.transforms import make_transform
from langgrasp.errors import InputError

BOARD = get_board("charuco-a4")


@pytest.fixture(scope="module")
def rig_frames():
    """Three synthetic board frames with their true arm poses."""
    rig = SyntheticRig(default_truth("eye-in-hand"), seed=5)
    frames = []
    for _ in range(3):
        frames.append((rig.grab(), rig.read_pose()))
    return frames


@pytest.fixture
def image_folder(tmp_path, rig_frames):
    folder = tmp_path / "recorded"
    folder.mkdir()
    for index, (frame, _) in enumerate(rig_frames):
        write_image(folder / f"frame_{index}.png", frame)
    return folder


def pose_text(pose: np.ndarray) -> str:
    return " ".join(f"{v:.12f}" for v in pose.reshape(-1))


def test_sources_satisfy_the_protocols(image_folder):
    assert isinstance(ImageFolderFrames(image_folder), FrameSource)
    assert isinstance(TypedPoses(), PoseSource)
    rig = SyntheticRig(default_truth("eye-to-hand"))
    assert isinstance(rig, FrameSource) and isinstance(rig, PoseSource)


def test_typed_poses_are_written_with_each_frame(tmp_path, image_folder, rig_frames):
    poses = [pose for _, pose in rig_frames]
    script = "\n".join(
        [
            "",  # Enter: capture frame_0 ...
            "not a pose",  # ... a typo is answered with help, and asked again
            pose_text(poses[0]),
            "",  # Enter: frame_1, pose typed as x y z rx ry rz in millimetres by mistake
            "450 -100 320 0.1 0.2 0.3",
            pose_text(poses[1]),
            "q",
        ]
    )
    out = io.StringIO()
    session = run_capture(
        ImageFolderFrames(image_folder),
        TypedPoses(),
        tmp_path / "caps",
        stdin=io.StringIO(script + "\n"),
        stdout=out,
    )
    text = out.getvalue()
    assert "could not read numbers" in text and "millimetres" in text
    captures = read_poses(tmp_path / "caps")
    assert (
        [c.image for c in captures] == ["000.png", "001.png"] == [c.image for c in session.captures]
    )
    for capture, pose in zip(captures, poses[:2], strict=True):
        np.testing.assert_allclose(capture.T_base_ee, pose, atol=1e-9)
    np.testing.assert_array_equal(
        read_image(tmp_path / "caps" / "001.png"), read_image(image_folder / "frame_1.png")
    )
    assert read_camera_info(tmp_path / "caps") == (None, None)  # a folder has no factory values


def test_a_second_session_continues_the_folder(tmp_path, image_folder, rig_frames):
    pose = pose_text(rig_frames[0][1])
    folder = tmp_path / "caps"
    run_capture(
        ImageFolderFrames(image_folder),
        TypedPoses(),
        folder,
        stdin=io.StringIO(f"\n{pose}\n"),
        stdout=io.StringIO(),
    )
    run_capture(
        ImageFolderFrames(image_folder),
        TypedPoses(),
        folder,
        stdin=io.StringIO(f"\n{pose}\n"),
        stdout=io.StringIO(),
    )
    assert [c.image for c in read_poses(folder)] == ["000.png", "001.png"]


def test_frames_without_the_board_are_rejected_with_advice(tmp_path):
    folder = tmp_path / "blank"
    folder.mkdir()
    write_image(folder / "a.png", np.full((120, 160, 3), 90, np.uint8))
    out = io.StringIO()
    session = run_capture(
        ImageFolderFrames(folder),
        TypedPoses(),
        tmp_path / "caps",
        board=BOARD,
        stdin=io.StringIO("\n\n"),
        stdout=out,
    )
    assert session.rejected == 1 and not session.captures
    assert "0 of 24 corners visible" in out.getvalue()
    assert "no more frames" in out.getvalue()


def test_simulated_arm_reports_poses_and_factory_intrinsics(tmp_path):
    rig = SyntheticRig(default_truth("eye-to-hand"), seed=2)
    session = run_capture(
        rig, rig, tmp_path / "caps", board=BOARD, stdin=io.StringIO("\n\n\n"), stdout=io.StringIO()
    )
    assert len(session.captures) == 3
    intrinsics, serial = read_camera_info(tmp_path / "caps")
    assert intrinsics == rig.truth.camera and serial == rig.serial
    last = read_poses(tmp_path / "caps")[-1]
    np.testing.assert_allclose(last.T_base_ee, rig.read_pose(), atol=1e-9)


def test_pose_source_values_are_validated(tmp_path, image_folder):
    class MillimetreArm:
        def read_pose(self):
            return make_transform([0, 0, 0], [400.0, 0.0, 300.0])

    with pytest.raises(InputError, match="millimetres"):
        run_capture(
            ImageFolderFrames(image_folder),
            MillimetreArm(),
            tmp_path / "caps",
            stdin=io.StringIO("\n"),
            stdout=io.StringIO(),
        )
