"""The `langgrasp calibrate` commands end to end, as a technician runs them."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

from langgrasp.calibration.capture_folder import read_poses
from langgrasp.calibration.io import load_calibration
from langgrasp.calibration.storage import read_json
from langgrasp.calibration.transforms import rotation_angle_deg
from langgrasp.cli import main


@pytest.fixture(scope="module")
def capture_folder(tmp_path_factory):
    """14 synthetic eye-in-hand captures taken through `langgrasp calibrate capture`."""
    folder = tmp_path_factory.mktemp("cell") / "caps"
    stdin = sys.stdin
    sys.stdin = io.StringIO("\n" * 14 + "q\n")
    try:
        code = main(
            [
                "calibrate",
                "capture",
                "--synthetic",
                "eye-in-hand",
                "--out",
                str(folder),
                "--board",
                "charuco-a4",
                "--seed",
                "3",
            ]
        )
    finally:
        sys.stdin = stdin
    assert code == 0
    return folder


def test_help_lists_the_steps(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    out = capsys.readouterr().out
    for step in ("board", "capture", "intrinsics", "handeye", "verify"):
        assert step in out


def test_board_command_writes_png_pdf_json(tmp_path, capsys):
    assert (
        main(
            ["calibrate", "board", "--board", "charuco-a4", "--out", str(tmp_path), "--dpi", "100"]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "charuco-a4.json",
        "charuco-a4.pdf",
        "charuco-a4.png",
    ]
    assert "32.0 mm" in capsys.readouterr().out


def test_handeye_then_verify(capture_folder, tmp_path, capsys):
    assert len(read_poses(capture_folder)) == 14
    out_file = tmp_path / "calibration.json"
    code = main(
        [
            "calibrate",
            "handeye",
            "--captures",
            str(capture_folder),
            "--setup",
            "eye-in-hand",
            "--board",
            "charuco-a4",
            "--out",
            str(out_file),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    for method in ("tsai", "park", "horaud", "andreff", "daniilidis"):
        assert method in text
    assert "<- best" in text and "good:" in text
    calibration = load_calibration(out_file)
    truth = read_json(capture_folder / "synthetic_truth.json", "truth")
    true_x = np.array(truth["hand_eye"])
    found = calibration.hand_eye.transform
    assert np.linalg.norm(found[:3, 3] - true_x[:3, 3]) < 0.002
    assert rotation_angle_deg(found[:3, :3] @ true_x[:3, :3].T) < 0.5
    # camera.json of the capture folder provided the (factory) intrinsics and serial.
    assert calibration.serial == "SYNTHETIC-0001"
    assert calibration.intrinsics_source.startswith("camera-factory")
    assert calibration.hand_eye.residuals["verdict"].startswith("good")

    overlays = tmp_path / "overlays"
    code = main(
        [
            "calibrate",
            "verify",
            "--calibration",
            str(out_file),
            "--captures",
            str(capture_folder),
            "--out",
            str(overlays),
            "--json",
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 14 and max(line["error_mm"] for line in lines) < 1.0
    assert len(list(overlays.glob("verify_*.png"))) == 14

    first = read_poses(capture_folder)[0]
    pose = " ".join(str(v) for v in first.T_base_ee.reshape(-1))
    code = main(
        [
            "calibrate",
            "verify",
            "--calibration",
            str(out_file),
            "--image",
            str(capture_folder / first.image),
            "--pose",
            pose,
        ]
    )
    assert code == 0 and "good: largest error" in capsys.readouterr().out


def test_intrinsics_from_images(capture_folder, tmp_path, capsys):
    out_file = tmp_path / "intrinsics.json"
    code = main(
        [
            "calibrate",
            "intrinsics",
            "--images",
            str(capture_folder),
            "--board",
            "charuco-a4",
            "--out",
            str(out_file),
            "--serial",
            "ABC",
        ]
    )
    assert code == 0
    assert "RMS reprojection error" in capsys.readouterr().out
    calibration = load_calibration(out_file)
    truth = read_json(capture_folder / "camera.json", "camera")["intrinsics"]
    assert calibration.camera.fx == pytest.approx(truth["fx_px"], rel=0.01)
    assert calibration.serial == "ABC" and calibration.hand_eye is None
    assert calibration.intrinsics_residuals["images_used"] == 14
    # handeye reading these intrinsics with --intrinsics keeps them and adds the hand-eye block
    both = tmp_path / "calibration.json"
    code = main(
        [
            "calibrate",
            "handeye",
            "--captures",
            str(capture_folder),
            "--setup",
            "eye-in-hand",
            "--board",
            "charuco-a4",
            "--intrinsics",
            str(out_file),
            "--out",
            str(both),
        ]
    )
    assert code == 0
    combined = load_calibration(both)
    assert combined.camera == calibration.camera and combined.hand_eye is not None
    capsys.readouterr()
    # Re-calibrating the intrinsics into that file drops the hand-eye block and says so.
    args = ["calibrate", "intrinsics", "--images", str(capture_folder), "--board", "charuco-a4"]
    assert main([*args, "--out", str(both)]) == 0
    assert "run `langgrasp calibrate handeye` again" in capsys.readouterr().out
    assert load_calibration(both).hand_eye is None


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(
        [
            "calibrate",
            "intrinsics",
            "--images",
            str(empty),
            "--board",
            "charuco-a4",
            "--out",
            str(tmp_path / "c.json"),
        ]
    )
    assert code == 2
    assert "error: only 0 of 0 images" in capsys.readouterr().err
    code = main(["calibrate", "board", "--board", "nonsense", "--out", str(tmp_path)])
    assert code == 2 and "charuco-a4" in capsys.readouterr().err
    code = main(
        [
            "calibrate",
            "verify",
            "--calibration",
            str(tmp_path / "missing.json"),
            "--captures",
            str(empty),
        ]
    )
    assert code == 2 and "not found" in capsys.readouterr().err


def _robot_toml(path, camera: str, arm_port: int | None = None) -> None:
    arm = (
        ""
        if arm_port is None
        else f'[arm]\nprofile = "ur"\n[arm.modbus]\ntransport = "tcp"\nport = {arm_port}\n'
    )
    path.write_text(f"[camera]\n{camera}\n{arm}")


def test_capture_from_robot_toml_reads_the_arm_pose(tmp_path, capsys):
    from langgrasp.runtime.sim.arm import ArmSim

    sim = ArmSim()
    server = sim.serve()
    try:
        config = tmp_path / "robot.toml"
        _robot_toml(config, 'kind = "synthetic"\nwidth = 160\nheight = 120', server.port)
        stdin = sys.stdin
        sys.stdin = io.StringIO("\n\nq\n")
        try:
            code = main(
                ["calibrate", "capture", "--config", str(config), "--out", str(tmp_path / "caps")]
            )
        finally:
            sys.stdin = stdin
    finally:
        server.stop()
    assert code == 0
    captures = read_poses(tmp_path / "caps")
    assert len(captures) == 2
    # The arm simulator's pose readback is 0.1 mm / 1 mrad resolution.
    np.testing.assert_allclose(captures[0].T_base_ee, sim.pose, atol=2e-3)
    camera = read_json(tmp_path / "caps" / "camera.json", "camera")
    assert camera["intrinsics"]["width_px"] == 160
    assert "2 captures" in capsys.readouterr().out


def test_verify_from_robot_toml_takes_one_frame(capture_folder, tmp_path, capsys):
    calibration = tmp_path / "calibration.json"
    args = ["--captures", str(capture_folder), "--setup", "eye-in-hand", "--board", "charuco-a4"]
    assert main(["calibrate", "handeye", *args, "--out", str(calibration)]) == 0
    capsys.readouterr()
    config = tmp_path / "robot.toml"
    _robot_toml(config, f'kind = "folder"\npath = "{capture_folder}"')
    first = read_poses(capture_folder)[0]  # the folder camera's first frame
    pose = " ".join(str(v) for v in first.T_base_ee.reshape(-1))
    code = main(
        [
            "calibrate",
            "verify",
            "--calibration",
            str(calibration),
            "--config",
            str(config),
            "--pose",
            pose,
            "--out",
            str(tmp_path / "overlay"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("live: ") and "good: largest error" in out
    assert (tmp_path / "overlay" / "verify_live.png").is_file()
