"""Exported model bundles: the folder layout, the manifest and its checks (torch-free).

A bundle is what ``langgrasp export`` writes and what the runtime engine loads::

    <bundle>/manifest.json                 this module's Manifest (format, constants, hashes, ...)
    <bundle>/text_encoder.onnx             tokens (B, L) int64 -> words, padding, sentence
    <bundle>/frame.onnx                    image + text outputs -> mask logits, grasp maps (fp32)
    <bundle>/frame_fp16.onnx               optional: the frame graph in fp16 (GPU providers)
    <bundle>/frame_int8.onnx               optional: static QDQ int8 frame graph (CPU, TensorRT)
    <bundle>/bpe_simple_vocab_16e6.txt.gz  CLIP BPE merges for ``runtime.tokenizer``

Graph inputs and outputs (B is dynamic in both graphs; S = input size, L = context length):

* text graph: ``tokens`` (B, L) int64 -> ``words`` (B, L, Dw) float32, ``padding`` (B, L) bool
  (True after the end-of-text token), ``sentence`` (B, Ds) float32 (L2-normalised).
* frame graph: ``image`` (B, 3, S, S) float32 (letterboxed, normalised with the manifest's
  mean/std, ``langgrasp.detector.preprocess``), ``words``, ``padding``, ``sentence`` ->
  ``mask`` (B, 1, S, S) float32 **logits** and ``grasp`` (B, 4, S, S) float32 regressed maps in
  ``GRASP_CHANNELS`` order (never passed through a sigmoid; width = value * width_scale pixels).

Every file's size and SHA-256 are in the manifest, so a truncated or swapped file is reported by
name instead of failing deep inside onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from langgrasp.detector.grasp import GRASP_CHANNELS, GraspDecoding
from langgrasp.errors import InputError

BUNDLE_FORMAT = "langgrasp-bundle"
BUNDLE_VERSION = 1
"""Bump when a reader of the previous version could misread a new bundle."""

MANIFEST_FILE = "manifest.json"
TEXT_GRAPH_FILE = "text_encoder.onnx"
FRAME_GRAPH_FILES = {"fp32": "frame.onnx", "fp16": "frame_fp16.onnx", "int8": "frame_int8.onnx"}
"""Frame-graph file per precision; fp32 is always present (the reference for parity)."""

PRECISIONS = tuple(FRAME_GRAPH_FILES)

TEXT_INPUTS = ("tokens",)
TEXT_OUTPUTS = ("words", "padding", "sentence")
FRAME_INPUTS = ("image", "words", "padding", "sentence")
FRAME_OUTPUTS = ("mask", "grasp")

OUTPUT_CONVENTIONS = {
    "mask": "logits (B, 1, S, S); probability = sigmoid(logit)",
    "grasp": "regressed maps (B, 4, S, S), channels " + ", ".join(GRASP_CHANNELS) + "; "
    "quality and cos/sin 2θ as they are, width in units of width_scale pixels; no sigmoid",
    "angle": "θ = atan2(sin2, cos2) / 2 radians in [-π/2, π/2), counter-clockwise on screen",
    "pixels": "model-input pixels of the letterboxed square; pixel (row r, col c) at (x=c, y=r)",
}

_HASH_CHUNK = 1 << 20


class BundleError(InputError):
    """A bundle folder that is missing, incomplete, corrupt or of another format version."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    """A file of the bundle with its integrity data.

    Attributes:
        file: Name relative to the bundle folder.
        sha256: Hex SHA-256 of its bytes.
        size_bytes: Its size in bytes.
    """

    file: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class Manifest:
    """Everything the engine needs to run a bundle, plus provenance.

    Attributes:
        model: Registered model config name (e.g. "lggd-rn50").
        config: The full ``LGGDConfig.to_dict()`` the graphs were exported from.
        input_size: Side S of the square model input in pixels.
        context_length: Tokens per command L.
        mean: Per-channel RGB mean of [0, 1] values used by ``normalize``.
        std: Per-channel RGB standard deviation.
        width_scale: Pixels (model input) per normalised width unit of the grasp maps.
        decoding: ``GraspDecoding`` fields the bundle was validated with.
        text_graph: The text-encoder graph.
        frame_graphs: Frame graph per precision ("fp32" always; "fp16", "int8" optional).
        vocab: The CLIP BPE merges file.
        shapes: Shape of every graph input and output by tensor name, ``"batch"`` for the
            dynamic batch axis (e.g. ``"image": ["batch", 3, 224, 224]``).
        opset: ONNX opset of the graphs.
        ir_version: ONNX IR version written into the graphs.
        exported_at: UTC time of export, ISO 8601.
        source: Checkpoint path, weights SHA-256 and meta.
        versions: Library versions at export (langgrasp, torch, onnx, onnxruntime).
        parity: Export-time comparison with PyTorch per graph (max abs differences, top-1).
        metrics: Evaluation metrics of the checkpoint, if its meta had any.
        outputs: Output conventions (human-readable, ``OUTPUT_CONVENTIONS``).
        format: Always ``BUNDLE_FORMAT``.
        format_version: ``BUNDLE_VERSION`` at export.
    """

    model: str
    config: dict[str, Any]
    input_size: int
    context_length: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    width_scale: float
    decoding: dict[str, Any]
    text_graph: FileEntry
    frame_graphs: dict[str, FileEntry]
    vocab: FileEntry
    shapes: dict[str, list[int | str]]
    opset: int
    ir_version: int
    exported_at: str
    source: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    outputs: dict[str, str] = field(default_factory=lambda: dict(OUTPUT_CONVENTIONS))
    format: str = BUNDLE_FORMAT
    format_version: int = BUNDLE_VERSION

    def grasp_decoding(self) -> GraspDecoding:
        """The bundle's ``GraspDecoding`` (width scale included)."""
        return GraspDecoding(**self.decoding)

    def entries(self) -> list[FileEntry]:
        """Every file the manifest lists."""
        return [self.text_graph, *self.frame_graphs.values(), self.vocab]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``format`` and ``format_version`` first."""
        data = asdict(self)
        head = {"format": data.pop("format"), "format_version": data.pop("format_version")}
        return {**head, **data}

    def to_json(self) -> str:
        """Pretty JSON text with a trailing newline."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> Manifest:
        """Parse a manifest dict; a wrong format, version or field is a ``BundleError``."""
        if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
            raise BundleError(
                f"{where} is not a langgrasp bundle manifest (no format {BUNDLE_FORMAT!r}); "
                "export one with `langgrasp export`"
            )
        if data.get("format_version") != BUNDLE_VERSION:
            raise BundleError(
                f"{where} has bundle format version {data.get('format_version')!r}, but this "
                f"langgrasp reads version {BUNDLE_VERSION}: re-export the checkpoint with this "
                "langgrasp, or install the langgrasp version that wrote it"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        required = [
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        ]
        missing = sorted(name for name in required if name not in data)
        if unknown or missing:
            raise BundleError(
                f"{where} does not fit format version {BUNDLE_VERSION}: "
                f"missing fields {missing}, unknown fields {unknown}; the file is corrupt"
            )
        try:
            values = dict(data)
            values["text_graph"] = FileEntry(**data["text_graph"])
            values["frame_graphs"] = {k: FileEntry(**v) for k, v in data["frame_graphs"].items()}
            values["vocab"] = FileEntry(**data["vocab"])
            values["mean"] = tuple(float(v) for v in data["mean"])
            values["std"] = tuple(float(v) for v in data["std"])
            manifest = cls(**values)
            manifest.grasp_decoding()  # its fields must fit GraspDecoding
        except (TypeError, AttributeError, ValueError) as err:
            raise BundleError(
                f"{where} has a malformed field ({err}); the file is corrupt"
            ) from err
        if "fp32" not in manifest.frame_graphs or not set(manifest.frame_graphs) <= set(PRECISIONS):
            raise BundleError(
                f"{where} lists frame graphs {sorted(manifest.frame_graphs)}; expected fp32 and "
                f"optionally {', '.join(PRECISIONS[1:])}"
            )
        return manifest


def read_manifest(bundle: str | os.PathLike[str], verify: bool = True) -> Manifest:
    """Read and check a bundle folder's manifest and files.

    Args:
        bundle: The bundle folder (or its ``manifest.json``).
        verify: Also compare every file's SHA-256 with the manifest (reads all bytes: about a
            second for lggd-rn50). Sizes are always compared.

    Raises:
        BundleError: No such folder, no or unreadable manifest, another format version, a listed
            file missing, truncated or (with ``verify``) altered.
    """
    folder = Path(bundle)
    if folder.is_file() and folder.name == MANIFEST_FILE:
        folder = folder.parent
    if not folder.is_dir():
        raise BundleError(
            f"model bundle {str(bundle)!r} not found: pass the folder written by "
            "`langgrasp export --out FOLDER`"
        )
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(
            f"{folder} has no {MANIFEST_FILE}, so it is not a complete model bundle; export it "
            "again with `langgrasp export`"
        )
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path} is not valid JSON ({err}); the bundle is corrupt") from err
    manifest = Manifest.from_dict(data, where=str(path))
    for entry in manifest.entries():
        check_file(folder, entry, verify)
    return manifest


def check_file(folder: Path, entry: FileEntry, verify: bool) -> Path:
    """Path of a manifest entry after checking it exists, has its size and (optionally) hash.

    Raises:
        BundleError: The file is missing, has another size or another SHA-256.
    """
    path = folder / entry.file
    if Path(entry.file).name != entry.file:
        raise BundleError(f"manifest entry {entry.file!r} is not a plain file name")
    if not path.is_file():
        raise BundleError(f"bundle file {path} is missing; copy the whole bundle folder again")
    size = path.stat().st_size
    if size != entry.size_bytes:
        raise BundleError(
            f"bundle file {path} has {size} bytes, the manifest says {entry.size_bytes}: it is "
            "truncated or from another export; copy the whole bundle folder again"
        )
    if verify and sha256_file(path) != entry.sha256:
        raise BundleError(
            f"bundle file {path} does not match its SHA-256 in the manifest: it is corrupt or "
            "from another export; copy the whole bundle folder again"
        )
    return path


def file_entry(folder: Path, name: str) -> FileEntry:
    """A ``FileEntry`` for ``folder / name`` as it is on disk now."""
    path = folder / name
    return FileEntry(name, sha256_file(path), path.stat().st_size)


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` through a temporary file and a rename; returns its path."""
    path = folder / MANIFEST_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as stream:
        stream.write(manifest.to_json())
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)
    return path
