"""Camera intrinsics and hand-eye calibration (torch-free, Python 3.10 compatible).

The workflow (docs/calibration.md) is: print a ChArUco board (``board``, ``printing``), capture
frames with arm poses (``capture``, ``capture_folder``), calibrate intrinsics (``intrinsics``, or
the RealSense factory values via ``camera.intrinsics_from_realsense``) and the hand-eye transform
(``handeye``, ``motion``), write ``calibration.json`` (``io``), and check it (``verify``).
``camera`` holds the lens models and ``transforms`` the frame conventions (``T_a_b`` maps frame-b
points to frame a; metres). ``synthetic`` renders boards through a known camera and rig for tests
and practice. ``commands`` is the ``langgrasp calibrate`` CLI. Nothing is imported here, so
``import langgrasp.calibration`` stays cheap.
"""
