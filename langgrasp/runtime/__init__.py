"""Torch-free runtime: inference on exported bundles, cameras, geometry, devices, the pick loop.

Nothing in this package may import torch or open_clip: the edge box installs
``langgrasp[runtime]`` only. Keep it Python 3.10 compatible (JetPack 6).
"""
