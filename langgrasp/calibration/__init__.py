"""Camera intrinsics and hand-eye calibration (torch-free, Python 3.10 compatible)."""
