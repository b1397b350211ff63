"""A detector that knows the synthetic scene, for testing loops, cells and interfaces.

Its answers are the scene's ground truth, never a network's: use it where no model is wanted.

``GroundTruthDetector(camera).detect(rgb, command)`` returns the synthetic camera's current
scene's target grasps (image pixels, ranked with qualities 1.0, 0.95, ...) and target mask when
``matches(command, scene)`` says the command names the target (default: the target's kind noun
is in the command), else an empty "target not found" detection. Every command is recorded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from langgrasp.datasets.synthetic import SceneSample
from langgrasp.detector.grasp import Grasp
from langgrasp.runtime.cameras.synthetic import SyntheticCamera
from langgrasp.runtime.engine import Detection

QUALITY_STEP = 0.05
"""Quality drop per rank, so the ground-truth grasps come out in a fixed order."""


def names_target(command: str, scene: SceneSample) -> bool:
    """True when the target's kind noun (e.g. "mug") appears in the command."""
    return scene.target_name in command


class GroundTruthDetector:
    """See the module docstring. ``commands`` lists every command received, in order."""

    def __init__(
        self,
        camera: SyntheticCamera,
        matches: Callable[[str, SceneSample], bool] = names_target,
    ) -> None:
        self.camera = camera
        self.matches = matches
        self.commands: list[str] = []

    def detect(self, rgb: np.ndarray, command: str) -> Detection:
        """The scene's ranked target grasps and mask, or "target not found"."""
        self.commands.append(command)
        scene = self.camera.scene
        if not self.matches(command, scene):
            empty = np.zeros(rgb.shape[:2], bool)
            return Detection([], empty, empty.astype(np.float32), 0.0, "target not found", command)
        grasps = [
            Grasp(g.x, g.y, g.angle, g.width, g.height, 1.0 - QUALITY_STEP * i)
            for i, g in enumerate(scene.grasps)
        ]
        return Detection(grasps, scene.mask, scene.mask.astype(np.float32), 1.0, None, command)
