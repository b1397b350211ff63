"""``langgrasp calibrate ...``: board, capture, intrinsics, handeye, verify.

Only argparse-level imports at the top; each handler imports what it needs, so ``langgrasp
--help`` stays fast and works without OpenCV being imported. The step-by-step guide is
docs/calibration.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VERIFY_GOOD_MM = 2.0
VERIFY_BAD_MM = 5.0


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` command group to the ``langgrasp`` subparsers."""
    group = sub.add_parser(
        "calibrate",
        help="camera intrinsics and hand-eye calibration with a ChArUco board",
        description="Calibration workflow: print a board, capture board images with arm poses, "
        "calibrate, verify. See docs/calibration.md.",
    )
    steps = group.add_subparsers(dest="step", metavar="STEP", required=True)
    _add_board(steps)
    _add_capture(steps)
    _add_intrinsics(steps)
    _add_handeye(steps)
    _add_verify(steps)


def _board_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--board",
        required=required,
        help="board name (charuco-a4, charuco-a3) or spec SXxSY:SQUAREmm:MARKERmm:DICT, e.g. "
        "8x6:30mm:22mm:DICT_4X4_50 for a board printed elsewhere (measure the printed squares)",
    )
    parser.add_argument(
        "--legacy-pattern",
        action="store_true",
        help="the board was generated with OpenCV < 4.6 (starts with a white square)",
    )


def _board(args: argparse.Namespace):
    from langgrasp.calibration.board import get_board

    return get_board(args.board, legacy=True if args.legacy_pattern else None)


def _add_board(steps: argparse._SubParsersAction) -> None:
    parser = steps.add_parser(
        "board", help="write a printable board: PNG (with DPI), PDF at true scale, JSON config"
    )
    _board_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--dpi", type=float, default=300.0, help="PNG resolution (default 300)")
    parser.set_defaults(func=_cmd_board)


def _cmd_board(args: argparse.Namespace) -> int:
    from langgrasp.calibration.printing import render_sheet, write_board_files

    board = _board(args)
    paths = write_board_files(board, args.out, args.dpi)
    width, height = render_sheet(board, args.dpi).size_m
    pattern_w, pattern_h = board.size_m
    print(f"board {board.name}: pattern {pattern_w * 1000:.0f} x {pattern_h * 1000:.0f} mm")
    print(f"sheet {width * 1000:.0f} x {height * 1000:.0f} mm; print the PDF at 100 %, no fitting")
    print(f"then measure a square: it must be {board.square_m * 1000:.1f} mm")
    for path in paths:
        print(f"  {path}")
    return 0


def _add_capture(steps: argparse._SubParsersAction) -> None:
    parser = steps.add_parser(
        "capture",
        help="take a frame and the arm pose at each Enter into a capture folder",
        description="Press Enter to capture, type q to finish. Arm poses come from the source "
        "or are typed in (x y z rx ry rz in metres/radians, or 16 numbers row-major).",
    )
    parser.add_argument("--out", type=Path, required=True, help="capture folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="frames from a folder of images (poses typed)")
    source.add_argument(
        "--synthetic",
        choices=("eye-in-hand", "eye-to-hand"),
        help="a simulated arm and camera with known ground truth (demo and practice)",
    )
    source.add_argument(
        "--config",
        type=Path,
        help="robot.toml: frames from its [camera], arm poses read from its [arm] (typed in when "
        "there is no [arm] table or the arm has no pose readback)",
    )
    _board_arguments(parser, required=False)
    parser.add_argument("--seed", type=int, default=0, help="synthetic rig seed (default 0)")
    parser.set_defaults(func=_cmd_capture)


def _cmd_capture(args: argparse.Namespace) -> int:
    from langgrasp.calibration.board import get_board
    from langgrasp.calibration.capture import ImageFolderFrames, TypedPoses, run_capture
    from langgrasp.calibration.storage import atomic_write_json

    board = _board(args) if args.board else None
    if args.config is not None:
        with _robot_sources(args.config) as (camera, arm):
            session = run_capture(camera, arm or TypedPoses(), args.out, board=board)
        return 0 if session.captures else 2
    if args.images is not None:
        frames, poses = ImageFolderFrames(args.images), TypedPoses()
    else:
        from langgrasp.calibration.synthetic import SyntheticRig, default_truth

        rig = SyntheticRig(
            default_truth(args.synthetic), board=board or get_board("charuco-a4"), seed=args.seed
        )
        frames = poses = rig
        args.out.mkdir(parents=True, exist_ok=True)
        truth = rig.truth
        atomic_write_json(
            args.out / "synthetic_truth.json",
            {
                "setup": truth.setup,
                "hand_eye": truth.hand_eye.tolist(),
                "board_pose": truth.board_pose.tolist(),
                "board": rig.board.to_dict(),
            },
        )
    session = run_capture(frames, poses, args.out, board=board)
    return 0 if session.captures else 2


@contextlib.contextmanager
def _robot_sources(config_path: Path) -> Iterator[tuple[Any, Any]]:
    """The camera (connected) and the arm (connected, or None) named by robot.toml.

    The arm is only read (pose readback); nothing is ever sent to it from here.
    """
    from langgrasp.runtime.cameras import open_camera
    from langgrasp.runtime.config import load_robot_config

    config = load_robot_config(config_path)
    camera = open_camera(config.camera)
    arm = None
    try:
        camera.connect()
        if config.arm is not None:
            from langgrasp.runtime.modbus_arm import ModbusArm

            arm = ModbusArm(config.arm)
            arm.connect()
        yield camera, arm
    finally:
        if arm is not None:
            arm.disconnect()
        camera.close()


def _add_intrinsics(steps: argparse._SubParsersAction) -> None:
    parser = steps.add_parser(
        "intrinsics", help="calibrate the camera from a folder of board images"
    )
    parser.add_argument("--images", type=Path, required=True, help="folder of board images")
    _board_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="calibration.json to write")
    parser.add_argument("--serial", default=None, help="camera serial number to record")
    parser.add_argument(
        "--drop-outliers", action="store_true", help="re-calibrate without outlier images"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_cmd_intrinsics)


def _cmd_intrinsics(args: argparse.Namespace) -> int:
    from langgrasp.calibration.intrinsics import IntrinsicsConfig, calibrate_intrinsics
    from langgrasp.calibration.io import Calibration, save_calibration
    from langgrasp.calibration.storage import list_images, read_image

    images = [(p.name, read_image(p)) for p in list_images(args.images)]
    report = calibrate_intrinsics(
        images, _board(args), IntrinsicsConfig(drop_outliers=args.drop_outliers)
    )
    calibration = Calibration(
        camera=report.intrinsics,
        serial=args.serial,
        intrinsics_source="charuco-images",
        intrinsics_residuals=report.to_dict(),
    )
    replaces_hand_eye = args.out.is_file() and _has_hand_eye(args.out)
    save_calibration(args.out, calibration)
    if args.json:
        print(json.dumps(calibration.to_dict()))
        return 0
    if replaces_hand_eye:
        print(
            f"note: {args.out} held a hand-eye calibration; new intrinsics invalidate it, so run "
            "`langgrasp calibrate handeye` again"
        )
    k = report.intrinsics
    print(
        f"intrinsics from {len(report.views)} images: RMS reprojection error {report.rms_px:.3f} px"
    )
    print(f"  fx {k.fx:.2f}  fy {k.fy:.2f}  cx {k.cx:.2f}  cy {k.cy:.2f} px, {k.width}x{k.height}")
    print(f"  distortion (k1 k2 p1 p2 k3) {' '.join(f'{c:+.5f}' for c in k.coeffs)}")
    for view in report.views:
        flag = "  <- outlier" if view.outlier else ""
        print(f"  {view.name}: {view.corners} corners, {view.rms_px:.3f} px{flag}")
    for name, reason in report.skipped:
        print(f"  skipped {name}: {reason}")
    if report.dropped:
        print(f"  dropped outliers: {', '.join(report.dropped)}")
    if report.outliers:
        print(
            "outliers are much worse than the other images: delete or re-take them, or run "
            "again with --drop-outliers"
        )
    print(f"wrote {args.out}")
    return 0


def _has_hand_eye(path: Path) -> bool:
    from langgrasp.calibration.io import load_calibration
    from langgrasp.errors import LanggraspError

    try:
        return load_calibration(path).hand_eye is not None
    except LanggraspError:
        return False


def _add_handeye(steps: argparse._SubParsersAction) -> None:
    parser = steps.add_parser(
        "handeye", help="hand-eye calibration from a capture folder (all five OpenCV methods)"
    )
    parser.add_argument("--captures", type=Path, required=True, help="capture folder")
    parser.add_argument(
        "--setup",
        choices=("eye-in-hand", "eye-to-hand"),
        required=True,
        help="eye-in-hand: camera on the arm; eye-to-hand: camera fixed, board on the flange",
    )
    _board_arguments(parser)
    parser.add_argument(
        "--intrinsics",
        type=Path,
        default=None,
        help="calibration.json with the camera intrinsics (default: the capture folder's "
        "camera.json, else calibrated from the capture images)",
    )
    parser.add_argument("--out", type=Path, required=True, help="calibration.json to write")
    parser.add_argument("--json", action="store_true", help="print calibration.json content")
    parser.set_defaults(func=_cmd_handeye)


def _camera_for_captures(args: argparse.Namespace, images, board):
    """``Calibration`` holding the intrinsics for the capture images (see --intrinsics)."""
    from langgrasp.calibration.capture_folder import read_camera_info
    from langgrasp.calibration.intrinsics import calibrate_intrinsics
    from langgrasp.calibration.io import Calibration, load_calibration

    if args.intrinsics is not None:
        return load_calibration(args.intrinsics)
    intrinsics, serial = read_camera_info(args.captures)
    if intrinsics is not None:
        return Calibration(intrinsics, serial, "camera-factory (camera.json)")
    report = calibrate_intrinsics(images, board)
    print(f"intrinsics calibrated from the captures: RMS {report.rms_px:.3f} px")
    return Calibration(report.intrinsics, serial, "charuco-images", report.to_dict())


def _cmd_handeye(args: argparse.Namespace) -> int:
    from langgrasp.calibration.capture_folder import load_capture_images, read_poses
    from langgrasp.calibration.handeye import calibrate_hand_eye
    from langgrasp.calibration.io import (
        BOARD_KEY,
        HAND_EYE_KEY,
        HandEyeCalibration,
        save_calibration,
    )

    board = _board(args)
    captures = read_poses(args.captures)
    images = load_capture_images(args.captures, captures)
    base = _camera_for_captures(args, images, board)
    report = calibrate_hand_eye(captures, images, base.camera, board, args.setup)
    hand_eye = HandEyeCalibration(
        setup=args.setup,
        transform=report.transform,
        method=report.best.method,
        board=board,
        board_pose=report.best.board_pose,
        residuals=report.residuals(),
    )
    calibration = base.with_hand_eye(hand_eye)
    save_calibration(args.out, calibration)
    if args.json:
        print(json.dumps(calibration.to_dict()))
        return 0
    print(f"{args.setup}: {len(report.observations)} captures used, {len(report.skipped)} skipped")
    print("method      board spread (mm)  (deg)   score (mm)")
    for name, result in report.methods.items():
        mark = "  <- best" if name == report.best.method else ""
        print(
            f"  {name:10s} {result.translation_spread_mm:10.2f} {result.rotation_spread_deg:10.3f}"
            f" {result.score_mm:10.2f}{mark}"
        )
    transform = report.transform
    print(
        f"{HAND_EYE_KEY[args.setup]} translation (m): "
        + " ".join(f"{v:+.4f}" for v in transform[:3, 3])
    )
    print(f"board pose {BOARD_KEY[args.setup]} saved for `langgrasp calibrate verify`")
    for name, reason in report.skipped:
        print(f"  skipped {name}: {reason}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(report.verdict)
    print(f"wrote {args.out}")
    return 0


def _add_verify(steps: argparse._SubParsersAction) -> None:
    parser = steps.add_parser(
        "verify",
        help="predict a board corner in an image through the calibration and report the miss",
        description="Projects ChArUco corner --corner (or a point touched with the TCP) into the "
        "image and reports the pixel and millimetre error; writes overlay pictures.",
    )
    parser.add_argument("--calibration", type=Path, required=True, help="calibration.json")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="one image (give its arm pose with --pose)")
    source.add_argument("--captures", type=Path, help="check every capture of a capture folder")
    source.add_argument(
        "--config",
        type=Path,
        help="robot.toml: check the live (or played-back) frame of its [camera], with the arm "
        "pose read from its [arm] (or given with --pose)",
    )
    parser.add_argument(
        "--pose",
        default=None,
        help="T_base_ee of --image: 'x y z rx ry rz' (m, rad) or 16 numbers row-major",
    )
    parser.add_argument(
        "--touched",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=None,
        help="base-frame position (m) of the corner, touched with the TCP",
    )
    parser.add_argument("--corner", type=int, default=0, help="ChArUco corner id (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="folder for overlay pictures")
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    parser.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from langgrasp.calibration.capture_folder import parse_typed_pose, read_poses
    from langgrasp.calibration.io import load_calibration
    from langgrasp.calibration.storage import read_image, write_image
    from langgrasp.calibration.verify import draw_verification, verify_view

    calibration = load_calibration(args.calibration)
    typed = None if args.pose is None else parse_typed_pose(args.pose)
    if args.image is not None:
        views = [(args.image.name, lambda: read_image(args.image), typed)]
    elif args.config is not None:
        views = [("live", None, typed)]
    else:
        views = [
            (c.image, lambda c=c: read_image(args.captures / c.image), c.T_base_ee)
            for c in read_poses(args.captures)
        ]
    errors = []
    for name, load, pose in views:
        if load is None:  # one frame and the arm pose now, from robot.toml's devices
            with _robot_sources(args.config) as (camera, arm):
                image = camera.grab()
                if pose is None and arm is not None:
                    pose = arm.read_pose()
        else:
            image = load()
        result, detection = verify_view(
            image, calibration, pose, args.touched, corner_id=args.corner
        )
        errors.append(result.error_mm)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            write_image(
                args.out / f"verify_{Path(name).stem}.png",
                draw_verification(image, result, detection),
            )
        if args.json:
            print(json.dumps({"image": name, **result.to_dict()}))
        else:
            print(f"{name}: {result.pixel_error:.2f} px, {result.error_mm:.2f} mm")
    if not args.json:
        worst = max(errors)
        verdict = (
            "good" if worst <= VERIFY_GOOD_MM else "acceptable" if worst <= VERIFY_BAD_MM else "bad"
        )
        print(f"{verdict}: largest error {worst:.2f} mm over {len(errors)} image(s)")
        if verdict == "bad":
            print(
                "re-run the hand-eye calibration with more and more varied captures; check that "
                "the board is flat and did not move"
            )
    return 0
