"""Export an LGGD model as two ONNX graphs: text (once per command) and frame (once per frame).

The graphs' inputs, outputs and conventions are documented in ``langgrasp.runtime.bundle``.
Both have a dynamic batch dimension. The TorchScript-based exporter (``dynamo=False``) is used:
torch 2.15's default dynamo exporter needs the ``onnxscript`` package, which the train extra does
not install, and the TorchScript exporter gives checker-valid opset-17 graphs whose outputs match
PyTorch to ~1e-6 at every batch size (the export-time parity check proves it for each bundle).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from langgrasp.detector.model import LGGD, tokenize
from langgrasp.detector.model.encoders import TextFeatures
from langgrasp.detector.predict import full_resolution_maps
from langgrasp.errors import LanggraspError
from langgrasp.runtime.bundle import FRAME_INPUTS, FRAME_OUTPUTS, TEXT_INPUTS, TEXT_OUTPUTS

OPSET = 17
"""ONNX opset of exported graphs: native LayerNormalization (17), supported by onnxruntime >= 1.14
and TensorRT >= 8.6 (JetPack 6 ships TensorRT 10.3, shared/research/runtime.md 5.1)."""

MAX_IR_VERSION = 10
"""Highest ONNX IR version written into bundles. onnx 1.23 writes IR 14, which onnxruntime 1.31
rejects ("Unsupported model IR version: 14", shared/research/runtime.md 5.1); onnxruntime 1.20,
the oldest the runtime extra allows, reads up to IR 10. Opset 17 needs only IR 8."""

BATCH_AXIS = "batch"

EXAMPLE_COMMANDS = ("pick the red mug by the handle", "ball")
"""Tracing inputs: two commands of different lengths (batch 2, so no axis is traced as 1)."""


class ExportError(LanggraspError):
    """Export failed: an invalid graph, or a parity check that did not hold."""


class TextGraph(nn.Module):
    """``LGGD.encode_text`` as a module with tensor outputs: tokens -> words, padding, sentence."""

    def __init__(self, model: LGGD) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens (B, L) int64 -> words (B, L, Dw), padding (B, L) bool, sentence (B, Ds)."""
        text = self.model.encode_text(tokens)
        return text.words, text.padding, text.sentence


class FrameGraph(nn.Module):
    """``encode_image`` + ``decode`` with the cached text outputs as inputs.

    Outputs are at model-input resolution (``predict.full_resolution_maps``): mask logits
    (B, 1, S, S) and grasp maps (B, 4, S, S).
    """

    def __init__(self, model: LGGD) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        image: torch.Tensor,
        words: torch.Tensor,
        padding: torch.Tensor,
        sentence: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B, 3, S, S) and text outputs -> mask logits, grasp maps."""
        output = self.model.decode(
            self.model.encode_image(image), TextFeatures(words, padding, sentence)
        )
        maps = full_resolution_maps(output, self.model.config.input_size)
        return maps[:, :1], maps[:, 1:]


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
) -> onnx.ModelProto:
    """Trace ``module`` (eval mode) into an ONNX model with a dynamic batch axis everywhere."""
    module.eval()  # export restores the module's mode afterwards: it must be eval already
    buffer = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention's inference fast path (_native_multi_head_attention) has no ONNX
    # export; the regular path computes the same function.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # Shape checks inside nn.MultiheadAttention raise TracerWarnings; the parity check at
            # several batch sizes is what proves the graph generalises.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message=".*Removing mutation from node")
            warnings.filterwarnings("ignore", message="The feature will be removed")
            # The only advanced indexing is the end-of-text gather (argmax: never negative).
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            torch.onnx.export(
                module,
                args,
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes={name: {0: BATCH_AXIS} for name in (*input_names, *output_names)},
                do_constant_folding=True,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return onnx.load_model_from_string(buffer.getvalue())


def finalize(model: onnx.ModelProto, doc: str) -> onnx.ModelProto:
    """Cap the IR version (``MAX_IR_VERSION``), set a doc string and run the full ONNX checker.

    Raises:
        ExportError: The checker rejects the graph.
    """
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    model.doc_string = doc
    model.producer_name = "langgrasp"
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the exported graph is not valid ONNX: {err}") from err
    return model


def export_text_graph(model: LGGD, path: Path) -> onnx.ModelProto:
    """Write the text-encoder graph to ``path``; returns the checked model."""
    config = model.config
    tokens = tokenize(list(EXAMPLE_COMMANDS), config.context_length)
    onnx_model = _export(TextGraph(model), (tokens,), TEXT_INPUTS, TEXT_OUTPUTS)
    finalize(
        onnx_model, f"langgrasp {config.name} text encoder: tokens -> words, padding, sentence"
    )
    onnx.save_model(onnx_model, str(path))
    return onnx_model


def export_frame_graph(model: LGGD, path: Path) -> onnx.ModelProto:
    """Write the per-frame graph to ``path``; returns the checked model."""
    config = model.config
    with torch.no_grad():
        text = model.encode_text(tokenize(list(EXAMPLE_COMMANDS), config.context_length))
    image = torch.zeros((len(EXAMPLE_COMMANDS), 3, config.input_size, config.input_size))
    args = (image, text.words, text.padding, text.sentence)
    onnx_model = _export(FrameGraph(model), args, FRAME_INPUTS, FRAME_OUTPUTS)
    finalize(onnx_model, f"langgrasp {config.name} frame graph: image + text -> mask, grasp maps")
    onnx.save_model(onnx_model, str(path))
    return onnx_model
