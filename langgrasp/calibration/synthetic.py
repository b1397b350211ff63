"""Synthetic board views and robot rigs with known ground truth (tests, demos, training the eye).

``BoardRenderer`` draws a printed board seen through a known camera (lens distortion included):
the board texture is warped with the board-to-image homography into an ideal pinhole image, which
is then resampled through the distortion model, supersampled and area-averaged, blurred and given
Gaussian pixel noise. ``SyntheticRig`` is a simulated arm with a camera (eye-in-hand) or a board
on its flange (eye-to-hand) that acts as both a frame source and a pose source for ``capture.py``.

Frames and units as in ``transforms.py``: ``T_a_b`` maps frame-b points to frame a, metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from langgrasp.calibration.board import BoardConfig, get_board
from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.calibration.capture_folder import Capture
from langgrasp.calibration.transforms import invert_transform, make_transform

TEXTURE_PIXELS_PER_M = 4000.0
"""Board texture resolution (4 px/mm): finer than any view of it at the rig's distances."""
BACKGROUND_GREY = 100
MAP_GRID_STEP = 8
"""Spacing in supersampled pixels of the grid on which the lens model is evaluated exactly."""
WHITE_MARGIN_M = 0.012
"""White border printed around the pattern (as ``printing.MARGIN_M``)."""


def default_camera() -> CameraIntrinsics:
    """A 640x480 camera with mild barrel distortion, like a RealSense colour stream."""
    return CameraIntrinsics(
        640, 480, 615.0, 612.0, 322.5, 238.0, "brown_conrady", (-0.08, 0.06, 0.0008, -0.0005, 0.0)
    )


@dataclass(frozen=True)
class RenderConfig:
    """Image degradations of a synthetic view.

    Attributes:
        blur_sigma_px: Gaussian blur (optics, motion) in output pixels; 0 disables.
        noise_std: Gaussian pixel noise in grey levels (0..255); 0 disables.
        supersample: Rendering resolution factor before area-averaging (anti-aliasing).
    """

    blur_sigma_px: float = 0.6
    noise_std: float = 1.0
    supersample: int = 2


class BoardRenderer:
    """Renders a board through one camera; the distortion maps are computed once.

    Args:
        board: The board to draw.
        camera: The camera, any distortion model of ``CameraIntrinsics``.
        config: Blur, noise and supersampling.
    """

    def __init__(
        self, board: BoardConfig, camera: CameraIntrinsics, config: RenderConfig | None = None
    ) -> None:
        self.board, self.camera = board, camera
        self.config = config or RenderConfig()
        ss = self.config.supersample
        square_px = round(board.square_m * TEXTURE_PIXELS_PER_M)
        self._texture_ppm = square_px / board.square_m
        pattern = board.create().generateImage(
            (board.squares_x * square_px, board.squares_y * square_px), marginSize=0, borderBits=1
        )
        self._margin_px = round(WHITE_MARGIN_M * self._texture_ppm)
        self._texture = cv2.copyMakeBorder(
            pattern, *(4 * [self._margin_px]), cv2.BORDER_CONSTANT, value=255
        )
        self._map_x, self._map_y, self._offset, self._canvas = _distortion_maps(camera, ss)

    def render(self, T_cam_board: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:  # noqa: N803
        """Render the board at pose ``T_cam_board`` (board frame to camera frame, metres).

        Returns:
            ``(H, W, 3)`` uint8 RGB image at the camera's resolution.
        """
        ss = self.config.supersample
        scale = np.array([[ss, 0, (ss - 1) / 2], [0, ss, (ss - 1) / 2], [0, 0, 1.0]])
        to_canvas = np.array([[1, 0, -self._offset[0]], [0, 1, -self._offset[1]], [0, 0, 1.0]])
        ppm, margin = self._texture_ppm, self._margin_px
        # Texture pixel (i, j) centre -> board point ((i + 0.5 - margin) / ppm, ...).
        texture_to_board = np.array(
            [[1 / ppm, 0, (0.5 - margin) / ppm], [0, 1 / ppm, (0.5 - margin) / ppm], [0, 0, 1.0]]
        )
        plane = np.column_stack([T_cam_board[:3, 0], T_cam_board[:3, 1], T_cam_board[:3, 3]])
        homography = to_canvas @ scale @ self.camera.matrix @ plane @ texture_to_board
        ideal = cv2.warpPerspective(
            self._texture,
            homography,
            self._canvas,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=BACKGROUND_GREY,
        )
        image = cv2.remap(ideal, self._map_x, self._map_y, cv2.INTER_LINEAR)
        image = cv2.resize(image, self.camera.size, interpolation=cv2.INTER_AREA).astype(np.float32)
        if self.config.blur_sigma_px > 0:
            image = cv2.GaussianBlur(image, (0, 0), self.config.blur_sigma_px)
        if self.config.noise_std > 0:
            rng = rng if rng is not None else np.random.default_rng()
            image += rng.normal(0.0, self.config.noise_std, image.shape).astype(np.float32)
        grey = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)


def _distortion_maps(
    camera: CameraIntrinsics, ss: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Where each supersampled distorted pixel samples the supersampled ideal pinhole image.

    The lens model is evaluated on a grid every ``MAP_GRID_STEP`` supersampled pixels and
    interpolated bilinearly (the mapping is smooth; the interpolation error is far below 0.01 px).

    Returns:
        ``(map_x, map_y, offset, canvas)``: float32 ``(H*ss, W*ss)`` remap tables into a canvas of
        size ``canvas`` (width, height) whose pixel (0, 0) is ideal supersampled pixel ``offset``.
    """
    width, height = camera.width * ss, camera.height * ss
    grid_w = width // MAP_GRID_STEP + 2
    grid_h = height // MAP_GRID_STEP + 2
    gu, gv = np.meshgrid(np.arange(grid_w) * MAP_GRID_STEP, np.arange(grid_h) * MAP_GRID_STEP)
    # Supersampled pixel i covers output pixel (i + 0.5) / ss - 0.5.
    output = np.column_stack([gu.ravel(), gv.ravel()]).astype(np.float64)
    normalized = camera.normalize((output + 0.5) / ss - 0.5)
    ideal = normalized * [camera.fx, camera.fy] + [camera.cx, camera.cy]  # pinhole pixels
    ideal_ss = ((ideal + 0.5) * ss - 0.5).reshape(grid_h, grid_w, 2).astype(np.float32)
    u, v = np.meshgrid(
        np.arange(width, dtype=np.float32) / MAP_GRID_STEP,
        np.arange(height, dtype=np.float32) / MAP_GRID_STEP,
    )
    dense = cv2.remap(ideal_ss, u, v, cv2.INTER_LINEAR)
    offset = np.floor(dense.reshape(-1, 2).min(axis=0)) - 1
    extent = np.ceil(dense.reshape(-1, 2).max(axis=0)) + 1 - offset
    map_x = np.ascontiguousarray(dense[:, :, 0] - offset[0])
    map_y = np.ascontiguousarray(dense[:, :, 1] - offset[1])
    return map_x, map_y, offset, (int(extent[0]), int(extent[1]))


def look_at(camera_position: np.ndarray, target: np.ndarray, roll_rad: float) -> np.ndarray:
    """``T_board_cam`` of a camera at ``camera_position`` whose optical axis points at ``target``.

    Both points are in the board frame (z into the board, so a camera in front of the printed
    side has negative z). ``roll_rad`` turns the camera about its optical axis.
    """
    forward = target - camera_position
    forward /= np.linalg.norm(forward)
    helper = np.array([0.0, 1.0, 0.0]) if abs(forward[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    right = np.cross(helper, forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = (
        np.column_stack([right, down, forward])
        @ make_transform([0, 0, roll_rad], [0, 0, 0])[:3, :3]
    )
    return make_transform(rotation, camera_position)


@dataclass(frozen=True)
class ViewSampling:
    """Random viewpoints of the board for synthetic captures.

    Attributes:
        distance_m: Range of camera-to-aim-point distances in metres.
        tilt_deg: Range of angles between the optical axis and the board normal, degrees.
        roll_deg: Largest roll about the optical axis, degrees.
        aim_spread: Aim points are spread over this fraction of the board size around its centre.
    """

    distance_m: tuple[float, float] = (0.35, 0.5)
    tilt_deg: tuple[float, float] = (10.0, 35.0)
    roll_deg: float = 30.0
    aim_spread: float = 0.3


def sample_views(
    board: BoardConfig, count: int, rng: np.random.Generator, sampling: ViewSampling | None = None
) -> list[np.ndarray]:
    """``count`` random ``T_cam_board`` poses looking at the board's front side."""
    sampling = sampling or ViewSampling()
    width, height = board.size_m
    centre = np.array([width / 2, height / 2, 0.0])
    views = []
    for _ in range(count):
        aim = centre + np.array(
            [
                rng.uniform(-1, 1) * sampling.aim_spread * width / 2,
                rng.uniform(-1, 1) * sampling.aim_spread * height / 2,
                0.0,
            ]
        )
        distance = rng.uniform(*sampling.distance_m)
        tilt = math.radians(rng.uniform(*sampling.tilt_deg))
        azimuth = rng.uniform(0, 2 * math.pi)
        position = aim + distance * np.array(
            [
                math.sin(tilt) * math.cos(azimuth),
                math.sin(tilt) * math.sin(azimuth),
                -math.cos(tilt),
            ]
        )
        roll = math.radians(rng.uniform(-sampling.roll_deg, sampling.roll_deg))
        views.append(invert_transform(look_at(position, aim, roll)))
    return views


@dataclass(frozen=True)
class RigTruth:
    """Ground truth of a synthetic rig.

    Attributes:
        setup: ``"eye-in-hand"`` or ``"eye-to-hand"``.
        hand_eye: ``T_ee_cam`` (eye-in-hand) or ``T_base_cam`` (eye-to-hand), metres.
        board_pose: ``T_base_board`` (eye-in-hand: board on the table) or ``T_ee_board``
            (eye-to-hand: board on the flange), metres.
        camera: The camera intrinsics.
    """

    setup: str
    hand_eye: np.ndarray
    board_pose: np.ndarray
    camera: CameraIntrinsics


def default_truth(setup: str, camera: CameraIntrinsics | None = None) -> RigTruth:
    """A plausible rig: camera 10 cm off the flange, or 0.9 m from the base looking down."""
    camera = camera or default_camera()
    if setup == "eye-in-hand":
        hand_eye = make_transform([0.02, -0.03, 1.57], [0.035, -0.06, 0.09])  # T_ee_cam
        board_pose = make_transform([math.pi, 0, 0.4], [0.45, 0.08, 0.0])  # board face up
    elif setup == "eye-to-hand":
        hand_eye = make_transform([2.4, 0.4, -0.3], [0.75, -0.35, 0.65])  # T_base_cam
        board_pose = make_transform([0.1, -0.05, 0.3], [0.02, -0.03, 0.06])  # T_ee_board
    else:
        raise ValueError(f"setup must be eye-in-hand or eye-to-hand, got {setup!r}")
    return RigTruth(setup, hand_eye, board_pose, camera)


@dataclass
class SyntheticRig:
    """A simulated arm and camera: a ``FrameSource`` and ``PoseSource`` for ``run_capture``.

    Each ``grab()`` moves the arm to the next random viewpoint and renders the board;
    ``read_pose()`` returns the arm pose ``T_base_ee`` of the last grab.

    Attributes:
        truth: The rig's ground truth.
        board: The board in the scene.
        seed: Seed of the viewpoints and the pixel noise.
        render: Image degradations.
        sampling: Viewpoint ranges.
        serial: Camera serial reported to the capture loop.
    """

    truth: RigTruth
    board: BoardConfig = field(default_factory=lambda: get_board("charuco-a4"))
    seed: int = 0
    render: RenderConfig = field(default_factory=RenderConfig)
    sampling: ViewSampling = field(default_factory=ViewSampling)
    serial: str = "SYNTHETIC-0001"

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._renderer = BoardRenderer(self.board, self.truth.camera, self.render)
        self._pose: np.ndarray | None = None

    @property
    def intrinsics(self) -> CameraIntrinsics:
        """The true camera intrinsics (like a RealSense's factory values)."""
        return self.truth.camera

    def arm_pose_for_view(self, T_cam_board: np.ndarray) -> np.ndarray:  # noqa: N803
        """The arm pose ``T_base_ee`` at which the camera sees the board at ``T_cam_board``."""
        if self.truth.setup == "eye-in-hand":  # T_base_board = T_base_ee @ T_ee_cam @ T_cam_board
            return (
                self.truth.board_pose
                @ invert_transform(T_cam_board)
                @ invert_transform(self.truth.hand_eye)
            )
        # eye-to-hand: T_base_cam @ T_cam_board = T_base_ee @ T_ee_board
        return self.truth.hand_eye @ T_cam_board @ invert_transform(self.truth.board_pose)

    def grab(self) -> np.ndarray:
        """Move to the next viewpoint and return the ``(H, W, 3)`` uint8 RGB frame."""
        (view,) = sample_views(self.board, 1, self._rng, self.sampling)
        self._pose = self.arm_pose_for_view(view)
        return self._renderer.render(view, self._rng)

    def read_pose(self) -> np.ndarray | None:
        """``T_base_ee`` (metres) at the last ``grab()``."""
        return None if self._pose is None else self._pose.copy()

    def take(self, count: int) -> tuple[list[Capture], list[tuple[str, np.ndarray]]]:
        """``count`` captures in memory: ``(captures, [(name, RGB image)])``, named 000.png on."""
        captures, images = [], []
        for index in range(count):
            image = self.grab()
            name = f"{index:03d}.png"
            captures.append(Capture(name, self._pose))
            images.append((name, image))
        return captures, images
