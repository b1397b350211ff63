"""A camera that looks at synthetic table-top scenes (RGB-D with known intrinsics).

``SyntheticCamera`` renders scenes with ``langgrasp.datasets.synthetic.render_scene`` and returns
the current scene on every ``read`` (a fresh frame index and timestamp each time) until
``next_scene`` moves on. ``Frame.ground_truth`` is the rendered ``SceneSample`` (instruction,
target, grasps), for demo reports and tests. ``stall``/``resume`` simulate a camera that stops
delivering, so the pick loop's fault handling can be tested without hardware.

Frames and units: ``rgb`` ``(H, W, 3)`` uint8; ``depth_m`` ``(H, W)`` float32 metres along the
optical axis (0 = hole), already on the colour grid; intrinsics from the ``SceneConfig``
(pinhole, no distortion).
"""

from __future__ import annotations

import threading
import time

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.datasets.synthetic import SceneConfig, SceneSample, render_scene, split_scene_seed
from langgrasp.errors import InputError, check_int
from langgrasp.runtime.camera import Camera, CameraError, CameraStatus, CameraTimeoutError, Frame

NOMINAL_FPS = 30.0
"""Scene-time step of unpaced frames (``timestamp_s = index / fps``), a RealSense's 30 fps."""

SERIAL = "SYNTHETIC"
"""Serial number the synthetic camera reports."""


class SyntheticCamera(Camera):
    """Synthetic scenes as an RGB-D camera.

    Args:
        seed: Scene ``k`` uses seed ``seed + k``, or ``split_scene_seed(split, seed, k)`` when a
            split is given.
        scene_config: Camera and scene parameters; default ``SceneConfig()`` (640x480, D435-like).
        split: A synthetic split (``langgrasp.datasets.synthetic.SPLITS``) whose rules and seeds
            apply; None draws from every object combination, like the demo.
        fps: Deliver at most this many frames per second (``read`` sleeps); None: no pacing.
    """

    has_depth = True

    def __init__(
        self,
        seed: int = 0,
        scene_config: SceneConfig | None = None,
        split: str | None = None,
        fps: float | None = None,
    ) -> None:
        self.seed = check_int("seed", seed, 0)
        self.scene_config = scene_config if scene_config is not None else SceneConfig()
        self.split = split
        if split is not None:
            split_scene_seed(split, self.seed, 0)  # raises InputError naming the known splits
        if fps is not None and (isinstance(fps, bool) or not fps > 0):
            raise InputError(f"fps must be a positive number or None, got {fps!r}")
        self.fps = fps
        self.name = f"synthetic:{self.seed}"
        cfg = self.scene_config
        self._intrinsics = CameraIntrinsics(cfg.width, cfg.height, cfg.fx, cfg.fy, cfg.cx, cfg.cy)
        self._scene_index = 0
        self._scene: SceneSample | None = None
        self._connected = False
        self._frames = 0
        self._next_frame_s = 0.0
        self._running = threading.Event()  # cleared while stalled
        self._running.set()
        self._stall_ends_on_reconnect = False
        self.connect_count = 0
        """How many times ``connect`` opened the camera (fault tests count reconnections)."""

    @property
    def is_connected(self) -> bool:
        """True between ``connect`` and ``close``."""
        return self._connected

    @property
    def intrinsics(self) -> CameraIntrinsics:
        """Pinhole intrinsics of the scene camera (known before ``connect``)."""
        return self._intrinsics

    @property
    def serial(self) -> str:
        """``SERIAL``."""
        return SERIAL

    @property
    def scene_seed(self) -> int:
        """Seed of the current scene."""
        if self.split is None:
            return self.seed + self._scene_index
        return split_scene_seed(self.split, self.seed, self._scene_index)

    @property
    def scene(self) -> SceneSample:
        """The current scene (rendered on first use)."""
        if self._scene is None:
            self._scene = render_scene(self.scene_seed, self.scene_config, self.split)
        return self._scene

    def next_scene(self) -> SceneSample:
        """Move on to the next scene and return it; later reads show it."""
        self._scene_index += 1
        self._scene = None
        return self.scene

    def connect(self) -> None:
        """Render the current scene; ends a ``stall(until_reconnect=True)``."""
        if self._connected:
            return
        self.connect_count += 1
        if self._stall_ends_on_reconnect:
            self.resume()
        self.scene  # noqa: B018 (render now, so that read does not pay for it)
        self._next_frame_s = time.monotonic()
        self._connected = True

    def close(self) -> None:
        """Stop delivering; the scene is kept."""
        self._connected = False

    def stall(self, until_reconnect: bool = False) -> None:
        """Simulate a camera that stops delivering: ``read`` raises ``CameraTimeoutError``.

        Args:
            until_reconnect: Also end the stall on the next ``connect`` (a USB drop that
                reopening fixes); otherwise only ``resume`` ends it.
        """
        self._stall_ends_on_reconnect = bool(until_reconnect)
        self._running.clear()

    def resume(self) -> None:
        """End a stall; a ``read`` waiting for a frame returns at once."""
        self._stall_ends_on_reconnect = False
        self._running.set()

    @property
    def stalled(self) -> bool:
        """True between ``stall`` and its end."""
        return not self._running.is_set()

    def status(self) -> CameraStatus:
        """Connected, degraded while stalled, frames delivered."""
        message = "stalled (simulated fault)" if self.stalled else "ok"
        if not self._connected:
            message = "closed"
        return CameraStatus(
            self._connected, self._connected and self.stalled, self._frames, message
        )

    def read(self, timeout_s: float = 1.0) -> Frame:
        """The current scene as a new frame (copies; callers may modify them).

        Raises:
            CameraTimeoutError: stalled for the whole ``timeout_s``, or the ``fps`` pacing would
                need longer than ``timeout_s``.
            CameraError: not connected.
        """
        if not self._connected:
            raise CameraError(f"{self.name} is not connected; call connect() first")
        deadline = time.monotonic() + timeout_s
        if not self._running.wait(max(0.0, timeout_s)):
            raise CameraTimeoutError(f"{self.name}: no new frame within {timeout_s:g} s (stalled)")
        if self.fps is not None:
            wait_s = self._next_frame_s - time.monotonic()
            if wait_s > deadline - time.monotonic():
                raise CameraTimeoutError(
                    f"{self.name}: next frame at {self.fps:g} fps is after the {timeout_s:g} s "
                    "timeout"
                )
            if wait_s > 0:
                time.sleep(wait_s)
            self._next_frame_s = max(self._next_frame_s, time.monotonic()) + 1.0 / self.fps
        scene = self.scene
        index = self._frames
        self._frames += 1
        return Frame(
            rgb=scene.rgb.copy(),
            depth_m=scene.depth.astype("float32", copy=True),
            intrinsics=self._intrinsics,
            index=index,
            timestamp_s=index / (self.fps or NOMINAL_FPS),
            serial=SERIAL,
            source=self.name,
            ground_truth=scene,
        )
