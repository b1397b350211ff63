"""ONNX export of the detector and the model bundle (text graph + per-frame graph)."""
