"""Camera backends behind the ``langgrasp.runtime.camera.Camera`` interface.

* ``RealSenseCamera`` (live device) and ``RealSensePlayback`` (``.db3`` / ``.bag`` recordings):
  colour + depth aligned to colour through one pipeline code path (``realsense``).
* ``record_rgbd``: write RGB-D frames to a ``.db3`` without a camera (``recording``).
* ``ImageFolderCamera`` and ``VideoCamera``: RGB only (``files``).
* ``SyntheticCamera``: rendered table-top scenes with ground truth and fault simulation
  (``synthetic``).
* ``CameraConfig`` (the ``[camera]`` table of robot.toml) and ``open_camera`` (``factory``).

pyrealsense2 is imported only when a RealSense camera connects or a recording is written.
"""

from langgrasp.runtime.cameras.factory import KINDS, CameraConfig, open_camera
from langgrasp.runtime.cameras.files import ImageFolderCamera, VideoCamera
from langgrasp.runtime.cameras.realsense import (
    POST_FILTERS,
    RealSenseCamera,
    RealSenseConfig,
    RealSensePlayback,
    list_devices,
)
from langgrasp.runtime.cameras.recording import record_rgbd
from langgrasp.runtime.cameras.synthetic import SyntheticCamera

__all__ = [
    "KINDS",
    "POST_FILTERS",
    "CameraConfig",
    "ImageFolderCamera",
    "RealSenseCamera",
    "RealSenseConfig",
    "RealSensePlayback",
    "SyntheticCamera",
    "VideoCamera",
    "list_devices",
    "open_camera",
    "record_rgbd",
]
