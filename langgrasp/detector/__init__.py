"""The LGGD detector: model, grasp encoding/decoding, losses and metrics.

``grasp``, ``metrics``, ``preprocess`` and ``visualize`` need only NumPy and OpenCV (the runtime
imports them); ``config`` is plain dataclasses; ``model`` and ``losses`` need torch. Nothing is
imported here, so importing a torch-free module never loads torch.
"""
