"""FP16 and INT8 versions of the frame graph.

* FP16 (GPU providers): every float tensor in half precision, inputs and outputs kept float32,
  so the engine feeds the same arrays (``onnxruntime.transformers.float16``).
* INT8: static quantisation in QDQ format (``onnxruntime.quantization.quantize_static``) with
  per-channel int8 weights and uint8 activations, calibrated (MinMax) on letterboxed scenes and
  their text-graph outputs. Activations are uint8 because on x86 onnxruntime's S8S8 QDQ graphs
  are partly rewritten to u8 and half of the convolutions then stay float (measured on lggd-rn50:
  47 of 97 Conv nodes unfused with int8 activations, none with uint8). The frame graph is
  pre-processed with ``quant_pre_process`` without symbolic shape inference, which fails on the
  exported attention reshapes. Two parts stay float: the attention-mask paths that carry -inf
  (``non_finite_nodes``) and the output tail from the last convolutions to the graph outputs
  (``output_tail_nodes``), whose tensors mix mask logits with the grasp maps under one scale.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from langgrasp.datasets.synthetic import render_scene
from langgrasp.errors import InputError
from langgrasp.export.graphs import ExportError, finalize

log = logging.getLogger(__name__)

CALIBRATION_SEED = 500_000
"""First seed of the generated calibration scenes (parity scenes use other seeds)."""

DEFAULT_CALIBRATION_COUNT = 256
"""Calibration scenes by default: a few hundred (the issue), ~1-3 s each for lggd-rn50 on CPU."""

MAX_INTERMEDIATE_OUTPUTS = 16
"""Scenes whose intermediate tensors the MinMax calibrator keeps before folding them into the
running ranges (bounds memory: lggd-rn50 keeps ~0.3 GB of activations per scene)."""

FeedFn = Callable[[np.ndarray, str], dict[str, np.ndarray]]
"""(rgb, command) -> frame-graph feeds for one scene (batch 1)."""


@dataclass(frozen=True)
class CalibrationSource:
    """Where the INT8 calibration scenes come from.

    Attributes:
        dataset: ``"synthetic"`` (generated scenes, no files needed) or a registered dataset
            name (``langgrasp.datasets.base.list_datasets``).
        root: The dataset's root folder (None for synthetic).
        split: Split to draw from (datasets only).
        count: Number of scenes (evenly spaced over a dataset split).
    """

    dataset: str = "synthetic"
    root: Path | None = None
    split: str = "train"
    count: int = DEFAULT_CALIBRATION_COUNT

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InputError(f"the calibration count must be a positive int, got {self.count!r}")

    def scenes(self) -> Iterator[tuple[np.ndarray, str]]:
        """``count`` (rgb, command) pairs; unreadable dataset samples are skipped with a warning.

        Raises:
            InputError: An unknown dataset or a root that does not hold it.
        """
        if self.dataset == "synthetic":
            for i in range(self.count):
                scene = render_scene(CALIBRATION_SEED + i)
                yield scene.rgb, scene.text
            return
        from langgrasp.datasets.base import SampleError, open_dataset

        dataset = open_dataset(self.dataset, self.root, self.split)
        if len(dataset) == 0:
            raise InputError(f"{self.dataset} split {self.split!r} has no samples to calibrate on")
        indices = np.unique(np.linspace(0, len(dataset) - 1, self.count).round().astype(int))
        for index in indices:
            try:
                sample = dataset.load(int(index))
            except SampleError as err:
                log.warning("calibration: skipping %s (%s)", dataset.sample_id(int(index)), err)
                continue
            yield sample.rgb, sample.text


def _reader(source: CalibrationSource, feeds: FeedFn) -> object:
    """An onnxruntime ``CalibrationDataReader`` over the source, with a progress bar."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._scenes = source.scenes()
            self._bar = tqdm(total=source.count, desc="int8 calibration", unit="scene")

        def get_next(self) -> dict[str, np.ndarray] | None:
            for rgb, text in self._scenes:
                self._bar.update()
                return feeds(rgb, text)
            self._bar.close()
            return None

    return _Reader()


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` in place so every node follows its inputs' producers (Kahn).

    ``convert_float_to_float16`` appends its input casts at the end; the checker needs order.

    Raises:
        ExportError: The graph has a cycle or an input nobody produces.
    """
    produced = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    waiting: dict[str, list[int]] = {}
    missing = []
    for index, node in enumerate(graph.node):
        needs = {name for name in node.input if name not in produced}
        missing.append(len(needs))
        for name in needs:
            waiting.setdefault(name, []).append(index)
    producer_outputs = {name for node in graph.node for name in node.output}
    absent = sorted(set(waiting) - producer_outputs)
    if absent:
        raise ExportError(f"graph inputs {absent[:5]} are produced by no node")
    ready = deque(i for i, count in enumerate(missing) if count == 0)
    order: list[int] = []
    while ready:
        index = ready.popleft()
        order.append(index)
        for name in graph.node[index].output:
            for consumer in waiting.pop(name, []):
                missing[consumer] -= 1
                if missing[consumer] == 0:
                    ready.append(consumer)
    if len(order) != len(graph.node):
        raise ExportError("the graph has a cycle; cannot order its nodes")
    nodes = [graph.node[i] for i in order]
    del graph.node[:]
    graph.node.extend(nodes)


def non_finite_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes that carry infinite values and must stay float when quantising.

    Attention key-padding masks are exported as ``Where(pad, -inf, 0)`` added to the attention
    logits; a calibrated range containing -inf gives an infinite scale and garbage outputs. This
    walks from every node that reads a non-finite constant down to (and including) the first
    Softmax on each path, whose output is finite again.
    """
    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("Constant", "ConstantOfShape"):
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = attribute.t
    infinite = {
        name
        for name, tensor in constants.items()
        if tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        and not np.isfinite(onnx.numpy_helper.to_array(tensor)).all()
    }
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return _walk(
        [consumer for name in infinite for consumer in consumers.get(name, [])],
        lambda node: [c for out in node.output for c in consumers.get(out, [])],
        "Softmax",
    )


def output_tail_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes between the graph outputs and the last convolution on each path, both included.

    Static QDQ gives each activation tensor one scale. The frame graph's last tensors hold
    channels of very different ranges side by side: the LDCH head's (B, 5 tasks x K experts, H, W)
    conv output and its π-weighted sum, and the final concat of mask logits with the grasp maps.
    Calibrated on all of them, the step is set by the mask logits, and the width channel
    (w / width_scale) falls on a grid of step x width_scale input pixels: 0.077 x 64 = 4.9 input
    px, 25 image px on a 640 px frame, for the trained lggd-tiny demo checkpoint. In float this
    tail costs no time on the x86 CPU: the head's grouped 3x3 conv, the only heavy node in it,
    took 2.4 ms in float and 3.1 ms as QLinearConv (lggd-tiny, 1 thread).

    Walks back from every graph output through producers and stops at (and includes) each Conv.
    """
    producers = {name: node for node in model.graph.node for name in node.output}
    return _walk(
        [producers[o.name] for o in model.graph.output if o.name in producers],
        lambda node: [producers[name] for name in node.input if name in producers],
        "Conv",
    )


def _walk(
    start: list[onnx.NodeProto],
    neighbours: Callable[[onnx.NodeProto], list[onnx.NodeProto]],
    last_op: str,
) -> list[str]:
    """Names of the nodes reached from ``start`` through ``neighbours``, in visiting order.

    A node of type ``last_op`` is included but not walked past.
    """
    stack = list(start)
    reached: dict[str, None] = {}
    while stack:
        node = stack.pop()
        if node.name in reached:
            continue
        reached[node.name] = None
        if node.op_type != last_op:
            stack.extend(neighbours(node))
    return list(reached)


def _float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes the int8 graph keeps in float: ``non_finite_nodes`` and ``output_tail_nodes``."""
    return list(dict.fromkeys(non_finite_nodes(model) + output_tail_nodes(model)))


class _QuantizerChatter(logging.Filter):
    """Drops onnxruntime.quantization's per-tensor info and warnings from the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silence the quantizer's chatter while quantising.

    It logs every bias copy and per-axis note on the root logger, and numpy warns about the zero
    points of the tensors that stay float (``non_finite_nodes``).
    """
    root = logging.getLogger()
    chatter = _QuantizerChatter()
    root.addFilter(chatter)
    try:
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="onnxruntime")
            yield
    finally:
        root.removeFilter(chatter)


def convert_fp16(fp32_path: Path, out_path: Path) -> onnx.ModelProto:
    """Write the fp16 version of a graph (float32 inputs/outputs kept); returns it checked."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    topological_sort(model.graph)
    finalize(model, model.doc_string + " (fp16)")
    onnx.save_model(model, str(out_path))
    return model


def quantize_int8(
    fp32_path: Path, out_path: Path, source: CalibrationSource, feeds: FeedFn
) -> onnx.ModelProto:
    """Write the static QDQ int8 version of the frame graph; returns it checked.

    Args:
        fp32_path: The fp32 frame graph.
        out_path: Destination file.
        source: Calibration scenes.
        feeds: Builds the frame-graph inputs of one scene, exactly as the engine does.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="langgrasp-int8-") as tmp, _quiet_quantizer():
        prepared = Path(tmp) / "frame_pre.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            _reader(source, feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_float_nodes(onnx.load(str(prepared))),
            extra_options={"max_intermediate_outputs": MAX_INTERMEDIATE_OUTPUTS},
        )
    model = onnx.load(str(out_path))
    finalize(model, (model.doc_string or "langgrasp frame graph") + " (int8 QDQ)")
    onnx.save_model(model, str(out_path))
    return model
