"""Hand-eye calibration from board captures: all five OpenCV methods, checked for consistency.

Set-ups (frames and units as in ``transforms.py``; metres):

* **eye-in-hand**: the camera rides on the arm and the board lies still in the work cell. The
  unknown is ``T_ee_cam``; the board's pose in the base frame,
  ``T_base_board = T_base_ee_i @ T_ee_cam @ T_cam_board_i``, must come out the same for every
  capture i.
* **eye-to-hand**: the camera is fixed and the board is mounted on the flange. The unknown is
  ``T_base_cam``; the board's pose on the flange,
  ``T_ee_board = inv(T_base_ee_i) @ T_base_cam @ T_cam_board_i``, must be the same for every i.
  OpenCV solves it when given the inverted arm poses (shared/research/runtime.md 4.1).

``cv2.calibrateHandEye`` is run with Tsai, Park, Horaud, Andreff and Daniilidis. Each solution is
scored by how constant it makes that board pose: the RMS translation spread (mm) plus the RMS
rotation spread turned into millimetres at the median camera-board distance. The lowest score
wins. Before solving, the motion set is checked (enough captures, rotations about at least two
different axes, arm and camera motions that agree); afterwards the board's print scale and the
alternative explanations of a bad fit (inverted poses, the other set-up) are checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from langgrasp.calibration.board import BoardConfig, detect_views, solve_board_pose
from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.calibration.capture_folder import Capture
from langgrasp.calibration.io import SETUPS
from langgrasp.calibration.motion import (
    board_scale,
    motion_diversity,
    motion_mismatch_deg,
    require_diverse_motion,
)
from langgrasp.calibration.transforms import (
    invert_transform,
    make_transform,
    mean_rotation,
    rotation_angle_deg,
)
from langgrasp.errors import InputError

METHODS = {
    "tsai": cv2.CALIB_HAND_EYE_TSAI,
    "park": cv2.CALIB_HAND_EYE_PARK,
    "horaud": cv2.CALIB_HAND_EYE_HORAUD,
    "andreff": cv2.CALIB_HAND_EYE_ANDREFF,
    "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS,
}
"""The five ``cv2.calibrateHandEye`` methods by name."""


@dataclass(frozen=True)
class HandEyeConfig:
    """Thresholds of the hand-eye calibration.

    Attributes:
        min_captures: Fewest usable captures (OpenCV needs 3; fewer than 5 cannot be checked).
        recommended_captures: Below this a warning suggests more captures.
        min_corners: Fewest ChArUco corners per image.
        min_rotation_deg: The largest rotation between two captures must exceed this.
        min_axis_spread_deg: Rotation axes must spread at least this much (0 = all parallel).
        max_motion_mismatch_deg: A capture whose arm motion and camera motion rotate by angles
            that differ by more than this (median over the other captures) is dropped.
        outlier_factor: Captures whose board-pose error exceeds this multiple of the median ...
        outlier_min_mm: ... and this many millimetres are flagged.
        good_score_mm: Consistency score under which the calibration is called good.
        bad_score_mm: Score above which the set-up and pose conventions are questioned.
        max_scale_error: Relative board-scale misfit above which a print-scale warning is given.
    """

    min_captures: int = 5
    recommended_captures: int = 12
    min_corners: int = 8
    min_rotation_deg: float = 10.0
    min_axis_spread_deg: float = 5.0
    max_motion_mismatch_deg: float = 2.0
    outlier_factor: float = 3.0
    outlier_min_mm: float = 2.0
    good_score_mm: float = 2.0
    bad_score_mm: float = 10.0
    max_scale_error: float = 0.01


@dataclass(frozen=True)
class BoardObservation:
    """The board seen in one capture.

    Attributes:
        name: Image name.
        T_cam_board: ``(4, 4)`` board pose in the camera frame from PnP, metres.
        corners: ChArUco corners used.
        rms_px: PnP reprojection RMS in pixels.
    """

    name: str
    T_cam_board: np.ndarray
    corners: int
    rms_px: float


@dataclass(frozen=True)
class MethodResult:
    """One method's solution and how consistent it is.

    Attributes:
        method: Method name (key of ``METHODS``).
        transform: ``T_ee_cam`` (eye-in-hand) or ``T_base_cam`` (eye-to-hand), metres.
        board_pose: Mean ``T_base_board`` (eye-in-hand) or ``T_ee_board`` (eye-to-hand).
        translation_spread_mm: RMS distance of the per-capture board positions from the mean.
        rotation_spread_deg: RMS angle of the per-capture board rotations from the mean.
        score_mm: ``translation_spread_mm`` + rotation spread (rad) x median board distance (mm).
        translation_errors_mm: Per-capture distance from the mean board position.
        rotation_errors_deg: Per-capture angle from the mean board rotation.
    """

    method: str
    transform: np.ndarray
    board_pose: np.ndarray
    translation_spread_mm: float
    rotation_spread_deg: float
    score_mm: float
    translation_errors_mm: list[float] = field(repr=False)
    rotation_errors_deg: list[float] = field(repr=False)

    def summary(self) -> dict:
        """JSON-ready consistency figures."""
        return {
            "translation_spread_mm": self.translation_spread_mm,
            "rotation_spread_deg": self.rotation_spread_deg,
            "score_mm": self.score_mm,
        }


@dataclass(frozen=True)
class HandEyeReport:
    """Result of a hand-eye calibration.

    Attributes:
        setup: ``"eye-in-hand"`` or ``"eye-to-hand"``.
        best: The most consistent method's result.
        methods: Every method's result by name.
        observations: The captures used, in order.
        skipped: ``(name, reason)`` of captures not used.
        outliers: Names of used captures whose board pose deviates much more than the rest.
        board_scale: Fitted scale of the camera's translations relative to the arm's (1.0 = the
            board is printed at the configured size); None when the motions cannot tell.
        max_rotation_deg: Largest rotation between two captures.
        axis_spread_deg: Spread of the rotation axes (0 = all parallel).
        verdict: One line for the technician: good, acceptable or bad, and what to do.
        warnings: Further advice (few captures, print scale, outliers).
    """

    setup: str
    best: MethodResult
    methods: dict[str, MethodResult]
    observations: list[BoardObservation]
    skipped: list[tuple[str, str]]
    outliers: list[str]
    board_scale: float | None
    max_rotation_deg: float
    axis_spread_deg: float
    verdict: str
    warnings: list[str]

    @property
    def transform(self) -> np.ndarray:
        """The chosen ``T_ee_cam`` or ``T_base_cam``."""
        return self.best.transform

    def residuals(self) -> dict:
        """JSON-ready residuals for calibration.json."""
        best = self.best
        return {
            **best.summary(),
            "pnp_rms_px": float(np.sqrt(np.mean([o.rms_px**2 for o in self.observations]))),
            "board_scale": self.board_scale,
            "max_rotation_deg": self.max_rotation_deg,
            "axis_spread_deg": self.axis_spread_deg,
            "verdict": self.verdict,
            "methods": {name: result.summary() for name, result in self.methods.items()},
            "per_capture": [
                {
                    "image": o.name,
                    "translation_error_mm": t,
                    "rotation_error_deg": r,
                    "pnp_rms_px": o.rms_px,
                    "outlier": o.name in self.outliers,
                }
                for o, t, r in zip(
                    self.observations,
                    best.translation_errors_mm,
                    best.rotation_errors_deg,
                    strict=False,
                )
            ],
            "skipped": [{"image": name, "reason": reason} for name, reason in self.skipped],
            "warnings": list(self.warnings),
        }


def observe_board(
    images: Sequence[tuple[str, np.ndarray]],
    intrinsics: CameraIntrinsics,
    board: BoardConfig,
    min_corners: int,
) -> tuple[list[BoardObservation], list[tuple[str, str]]]:
    """Board poses ``T_cam_board`` by PnP in each image (lens distortion removed first).

    Returns:
        ``(observations, skipped)``; skipped images have too few corners or a failed PnP.
    """
    for name, image in images:
        if np.asarray(image).shape[:2] != (intrinsics.height, intrinsics.width):
            raise InputError(
                f"{name} is {image.shape[1]}x{image.shape[0]} but the intrinsics are for "
                f"{intrinsics.width}x{intrinsics.height}: use intrinsics of this resolution"
            )
    used, skipped = detect_views(images, board, min_corners)
    observations = []
    for name, detection in used:
        solved = solve_board_pose(detection, board, intrinsics)
        if solved is None:
            skipped.append((name, "the board pose could not be solved (PnP failed)"))
            continue
        observations.append(BoardObservation(name, solved[0], len(detection), solved[1]))
    return observations, skipped


def _motion_poses(T_base_ee: Sequence[np.ndarray], setup: str) -> list[np.ndarray]:  # noqa: N803
    """The arm poses as OpenCV's ``gripper2base`` input for this set-up."""
    if setup == "eye-in-hand":
        return [np.asarray(p) for p in T_base_ee]
    return [invert_transform(np.asarray(p)) for p in T_base_ee]


def _consistency(
    method: str,
    transform: np.ndarray,
    motion: Sequence[np.ndarray],
    observations: Sequence[BoardObservation],
) -> MethodResult:
    boards = [m @ transform @ o.T_cam_board for m, o in zip(motion, observations, strict=True)]
    mean_r = mean_rotation([b[:3, :3] for b in boards])
    mean_t = np.mean([b[:3, 3] for b in boards], axis=0)
    t_err = [float(np.linalg.norm(b[:3, 3] - mean_t) * 1000) for b in boards]
    r_err = [rotation_angle_deg(b[:3, :3] @ mean_r.T) for b in boards]
    t_rms = float(np.sqrt(np.mean(np.square(t_err))))
    r_rms = float(np.sqrt(np.mean(np.square(r_err))))
    distance_m = float(np.median([np.linalg.norm(o.T_cam_board[:3, 3]) for o in observations]))
    score = t_rms + math.radians(r_rms) * distance_m * 1000
    return MethodResult(
        method, transform, make_transform(mean_r, mean_t), t_rms, r_rms, score, t_err, r_err
    )


def _score(result: MethodResult) -> float:
    return result.score_mm


def solve_methods(
    T_base_ee: Sequence[np.ndarray],  # noqa: N803
    observations: Sequence[BoardObservation],
    setup: str,
) -> dict[str, MethodResult]:
    """Run the five OpenCV methods and score each (no checks; see ``calibrate_hand_eye``)."""
    motion = _motion_poses(T_base_ee, setup)
    results = {}
    for name, flag in METHODS.items():
        try:
            rotation, translation = cv2.calibrateHandEye(
                [m[:3, :3] for m in motion],
                [m[:3, 3] for m in motion],
                [o.T_cam_board[:3, :3] for o in observations],
                [o.T_cam_board[:3, 3] for o in observations],
                method=flag,
            )
        except cv2.error:  # e.g. Daniilidis on data that fits no rigid transform
            continue
        transform = make_transform(rotation, translation)
        if np.all(np.isfinite(transform)):
            results[name] = _consistency(name, transform, motion, observations)
    if not results:
        raise InputError("every hand-eye method failed: the motions are degenerate")
    return results


def calibrate_hand_eye(
    captures: Sequence[Capture],
    images: Sequence[tuple[str, np.ndarray]],
    intrinsics: CameraIntrinsics,
    board: BoardConfig,
    setup: str,
    config: HandEyeConfig | None = None,
) -> HandEyeReport:
    """Hand-eye calibration from captures (arm poses) and their images.

    Args:
        captures: Arm poses ``T_base_ee`` (metres) with image names.
        images: ``(name, image)`` pairs for the captures (RGB or grey uint8).
        intrinsics: The camera that took the images.
        board: The board in the images.
        setup: ``"eye-in-hand"`` or ``"eye-to-hand"``.
        config: Thresholds.

    Returns:
        The report with the best method's transform.

    Raises:
        InputError: too few usable captures, a degenerate motion set (no or single-axis
            rotation), or a legacy-pattern mismatch, each with what to do about it.
    """
    config = config or HandEyeConfig()
    if setup not in SETUPS:
        raise InputError(f"setup must be one of {', '.join(SETUPS)}, got {setup!r}")
    poses = {c.image: c.T_base_ee for c in captures}
    observations, skipped = observe_board(images, intrinsics, board, config.min_corners)
    _require_captures(len(observations), len(images), skipped, config)
    observations = _drop_mismatched(observations, poses, setup, skipped, config)
    motion = _motion_poses([poses[o.name] for o in observations], setup)
    _require_captures(len(observations), len(images), skipped, config)
    largest, spread = motion_diversity(motion, config.min_rotation_deg)
    require_diverse_motion(largest, spread, config.min_rotation_deg, config.min_axis_spread_deg)
    methods = solve_methods([poses[o.name] for o in observations], observations, setup)
    best = min(methods.values(), key=_score)
    return _report(setup, best, methods, observations, skipped, motion, largest, spread, config)


def _drop_mismatched(
    observations: list[BoardObservation],
    poses: dict[str, np.ndarray],
    setup: str,
    skipped: list[tuple[str, str]],
    config: HandEyeConfig,
) -> list[BoardObservation]:
    """Drop captures whose arm pose does not fit their image (appends the reason to skipped).

    Raises:
        InputError: when half or more do not fit (shuffled or wrong poses, not single slips).
    """
    motion = _motion_poses([poses[o.name] for o in observations], setup)
    mismatch = motion_mismatch_deg(motion, [o.T_cam_board for o in observations])
    bad = [k for k in range(len(observations)) if mismatch[k] > config.max_motion_mismatch_deg]
    if len(bad) > len(observations) / 2:
        raise InputError(
            f"the arm poses do not match the images for {len(bad)} of {len(observations)} "
            "captures (the arm and the camera rotate by different angles between captures): "
            "check that poses.json lists the images in the order they were taken, that each "
            "pose was read after the arm stopped, and that the rotation is the one of T_base_ee"
        )
    for k in bad:
        skipped.append(
            (
                observations[k].name,
                f"arm pose and board view disagree by {mismatch[k]:.1f} degrees: the pose was "
                "probably mistyped or read before the arm settled; re-take this capture",
            )
        )
    return [o for k, o in enumerate(observations) if k not in bad]


def _require_captures(
    usable: int, total: int, skipped: list[tuple[str, str]], config: HandEyeConfig
) -> None:
    if usable >= config.min_captures:
        return
    detail = "; ".join(f"{name}: {reason}" for name, reason in skipped[:5])
    raise InputError(
        f"only {usable} of {total} captures are usable; hand-eye calibration needs at least "
        f"{config.min_captures} ({config.recommended_captures}-20 recommended). Capture more "
        f"poses with the whole board in view. {detail}".strip()
    )


def _report(
    setup: str,
    best: MethodResult,
    methods: dict[str, MethodResult],
    observations: list[BoardObservation],
    skipped: list[tuple[str, str]],
    motion: list[np.ndarray],
    largest: float,
    spread: float,
    config: HandEyeConfig,
) -> HandEyeReport:
    warnings = []
    if len(observations) < config.recommended_captures:
        warnings.append(
            f"only {len(observations)} captures: {config.recommended_captures}-20 give a more "
            "reliable result"
        )
    errors = np.asarray(best.translation_errors_mm)
    limit = max(config.outlier_factor * float(np.median(errors)), config.outlier_min_mm)
    outliers = [o.name for o, e in zip(observations, errors, strict=True) if e > limit]
    if outliers:
        warnings.append(
            f"captures {', '.join(outliers)} deviate much more than the rest: re-take them (was "
            "the board bumped, or the pose read before the arm stopped?)"
        )
    scale = board_scale(best.transform, motion, [o.T_cam_board for o in observations])
    if scale is not None and abs(scale - 1) > config.max_scale_error:
        warnings.append(
            f"the board looks printed at {scale * 100:.1f} % of its configured size: measure a "
            "square with a ruler and pass the measured size (--board "
            "<sx>x<sy>:<square>mm:<marker>mm:<DICT>), or reprint at 100 %"
        )
    return HandEyeReport(
        setup=setup,
        best=best,
        methods=methods,
        observations=observations,
        skipped=skipped,
        outliers=outliers,
        board_scale=scale,
        max_rotation_deg=largest,
        axis_spread_deg=spread,
        verdict=_verdict(setup, best, motion, observations, config),
        warnings=warnings,
    )


def _verdict(
    setup: str,
    best: MethodResult,
    motion: list[np.ndarray],
    observations: list[BoardObservation],
    config: HandEyeConfig,
) -> str:
    figures = (
        f"board pose spread {best.translation_spread_mm:.2f} mm / "
        f"{best.rotation_spread_deg:.2f} deg (score {best.score_mm:.2f} mm, {best.method})"
    )
    if best.score_mm <= config.good_score_mm:
        return f"good: {figures}"
    if best.score_mm <= config.bad_score_mm:
        return (
            f"acceptable: {figures}; for better accuracy add captures with larger tilts and "
            "check that the board is flat and rigidly fixed"
        )
    # The other set-up uses the inverted arm poses, so it is also the fit of poses given as
    # T_ee_base by mistake: one solve tests both explanations.
    ee_poses = [m if setup == "eye-in-hand" else invert_transform(m) for m in motion]
    other_setup = SETUPS[1 - SETUPS.index(setup)]
    other = min(solve_methods(ee_poses, observations, other_setup).values(), key=_score)
    if other.score_mm < best.score_mm / 3:
        return (
            f"bad: {figures}. As {other_setup}, or with the poses inverted (T_ee_base instead "
            f"of T_base_ee), the spread is only {other.score_mm:.2f} mm: check --setup and "
            "which way the arm poses were written"
        )
    return (
        f"bad: {figures}. Check --setup, that poses are T_base_ee of the same TCP in metres, "
        "that the board is rigid and did not move, and that images and poses belong together"
    )
