"""OCID-VLG: the loader, and the writer that produces the same on-disk format.

Layout (shared/research/datasets.md 1.2-1.3; the root is the ``OCID_Grasp`` folder of the
download, the one that contains ``refer/``)::

    <root>/refer/<version>/<split>_expressions.json   {"data": [row, ...]}
    <root>/<seq_path>/rgb/<image>.png                  RGB image
    <root>/<seq_path>/depth/<image>.png                uint16 depth in millimetres, 0 = invalid
    <root>/<seq_path>/seg_mask_instances_combi/<image>.png   instance ids (uint8 or uint16)

``version`` is ``multiple``, ``unique``, ``novel-instances`` or ``novel-classes`` for the real
dataset, or any other folder under ``refer/`` (``langgrasp synth`` writes ``synthetic``). A row
holds ``image_filename`` (``"<seq_path>,<image>"``), ``question`` (the referring expression),
``answer`` (the target's instance id in the instance map), ``target`` (instance name such as
``apple_1``), ``box`` (``[x, y, w, h]`` pixels), ``grasps`` (rectangles as 4 corner points
``[[x, y] x 4]`` in pixels), an optional ``program`` and ``question_index`` (a unique int).
Keys beyond these are kept in ``GroundingSample.meta``.

Grasp corners. A rectangle is p1, p2, p3, p4 in order around it; its centre is the midpoint of
p1 and p3. Which edge is the gripper's opening is not agreed upon (datasets.md 1.6):

* ``opening_edge="p1p4"`` (default): CROG and the OCID-VLG API (``GraspTransforms``). The
  opening w = |p4 - p1|, the jaw h = |p2 - p1| and the angle is that of the edge p1 -> p4,
  counter-clockwise on screen (p1 -> p4 along +x is 0, towards the upper right is +45 deg).
  Choose this to compare with CROG's numbers.
* ``opening_edge="p1p2"``: Ainetter's OCID-Grasp loader and GR-ConvNet-style OCID loaders take
  the edge p1 -> p2 as the opening (and p1 -> p4 as the jaw).

Either way the loader returns :class:`~langgrasp.detector.grasp.Grasp` in this project's
convention: radians in [-pi/2, pi/2), counter-clockwise on screen, ``width`` = opening,
``height`` = jaw, quality 1.0. The option is a constructor argument and an ``open_dataset``
option (``open_dataset("ocid-vlg", root, "test", opening_edge="p1p2")``).

The writer half (:func:`write_image_files`, :func:`expression_row`, :func:`write_expressions`,
:func:`write_ocid_vlg_split`) is what ``langgrasp synth`` and the tests use, so synthetic data
reaches training through this loader, the same code path as the real dataset. Torch-free.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from langgrasp.datasets.base import GroundingDataset, GroundingSample, LayoutError, SampleError
from langgrasp.detector.grasp import Grasp, wrap_angle
from langgrasp.errors import InputError
from langgrasp.fileio import atomic_write_bytes

REFER_DIR = "refer"
EXPRESSIONS_SUFFIX = "_expressions.json"
RGB_DIR = "rgb"
DEPTH_DIR = "depth"
INSTANCES_DIR = "seg_mask_instances_combi"

DEPTH_UNIT_M = 0.001
"""Metres per depth PNG step: OCID depth is uint16 millimetres (datasets.md 1.3)."""

OPENING_EDGES = ("p1p4", "p1p2")
"""Which corner edge is the gripper opening; see the module docstring."""

REQUIRED_KEYS = (
    "image_filename",
    "question",
    "answer",
    "target",
    "box",
    "grasps",
    "question_index",
)
"""Keys every expression row must have (``program`` is optional)."""

EXPECTED_TREE = (
    "<root>/refer/<version>/<split>_expressions.json, <root>/<seq_path>/rgb/<image>.png, "
    "<root>/<seq_path>/depth/<image>.png and "
    "<root>/<seq_path>/seg_mask_instances_combi/<image>.png (root = the OCID_Grasp folder)"
)


class Reason:
    """Reason kinds of the :class:`SampleError` raised by :meth:`OCIDVLGDataset.load`.

    Each error carries its kind as ``err.reason``; ``langgrasp data check`` counts by it.
    """

    BAD_ROW = "malformed row"
    MISSING_KEYS = "missing keys"
    MISSING_FILE = "missing {what} file"
    UNREADABLE_FILE = "unreadable {what} file"
    BAD_DEPTH = "depth not 16-bit single-channel"
    BAD_MASK = "instance mask not single-channel"
    SHAPE_MISMATCH = "image sizes differ"
    ID_ABSENT = "mask id absent"
    NO_GRASPS = "no grasps"
    MALFORMED_GRASP = "malformed grasp"


_INSTANCE_SUFFIX = re.compile(r"_\d+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --- corners <-> grasps ----------------------------------------------------------------------


def _check_opening_edge(opening_edge: str) -> None:
    if opening_edge not in OPENING_EDGES:
        raise InputError(
            f"unknown opening_edge {opening_edge!r}; expected one of {', '.join(OPENING_EDGES)} "
            "(p1p4 = CROG/OCID-VLG, p1p2 = Ainetter/GR-ConvNet OCID loaders)"
        )


def grasp_from_corners(corners: Any, opening_edge: str = "p1p4") -> Grasp:
    """Convert one rectangle's 4 corner points to a :class:`Grasp`.

    Args:
        corners: ``(4, 2)`` (x, y) pixels p1..p4 in order around the rectangle.
        opening_edge: ``"p1p4"`` (CROG) or ``"p1p2"``; see the module docstring.

    Returns:
        The grasp (centre = midpoint of p1 and p3, angle in [-pi/2, pi/2), quality 1.0).

    Raises:
        InputError: Not 4 finite (x, y) points, or a zero-length edge.
    """
    _check_opening_edge(opening_edge)
    try:
        p = np.asarray(corners, dtype=np.float64)
    except (TypeError, ValueError):
        p = None
    if p is None or p.shape != (4, 2) or not np.isfinite(p).all():
        raise InputError(f"expected 4 finite (x, y) corner points, got {corners!r}")
    jaw_end, open_end = (1, 3) if opening_edge == "p1p4" else (3, 1)
    opening, jaw = p[open_end] - p[0], p[jaw_end] - p[0]
    width, height = float(np.hypot(*opening)), float(np.hypot(*jaw))
    if width == 0.0 or height == 0.0:
        raise InputError(f"rectangle has a zero-length edge: {p.tolist()}")
    centre = (p[0] + p[2]) / 2
    angle = float(wrap_angle(math.atan2(-opening[1], opening[0])))  # y down: CCW on screen
    return Grasp(float(centre[0]), float(centre[1]), angle, width, height, 1.0)


def corners_from_grasp(grasp: Grasp, opening_edge: str = "p1p4") -> np.ndarray:
    """The ``(4, 2)`` float64 corners p1..p4 of ``grasp``; inverse of :func:`grasp_from_corners`."""
    _check_opening_edge(opening_edge)
    k = grasp.corners()  # k0 -> k3 is the opening, k0 -> k1 the jaw: the p1p4 order
    return k if opening_edge == "p1p4" else k[[0, 3, 2, 1]]


# --- reading -------------------------------------------------------------------------------


def _read_image(path: Path, flags: int, what: str) -> np.ndarray:
    """Decode an image file; raises SampleError naming ``path`` when missing or unreadable."""
    if not path.is_file():
        raise SampleError(f"missing {what} file {path}", Reason.MISSING_FILE.format(what=what))
    unreadable = Reason.UNREADABLE_FILE.format(what=what)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise SampleError(f"cannot read {what} file {path}: {err}", unreadable) from err
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise SampleError(
            f"cannot decode {what} file {path} (not an image or truncated)", unreadable
        )
    return image


def _listing(paths: Iterable[str]) -> str:
    names = sorted(paths)
    return ", ".join(names) if names else "none"


def _layout_hint(root: Path) -> str:
    """Where a ``refer/`` folder is below ``root`` (one or two levels down), if anywhere."""
    found = [p.parent for p in (*root.glob(f"*/{REFER_DIR}"), *root.glob(f"*/*/{REFER_DIR}"))]
    found = [p for p in found if (p / REFER_DIR).is_dir()]
    return f"; did you mean root {found[0]}?" if found else ""


class OCIDVLGDataset(GroundingDataset):
    """One split of one OCID-VLG version (format in the module docstring).

    Args:
        root: The folder that contains ``refer/`` (``OCID_VLG/OCID_Grasp`` in the download).
        split: ``train``, ``val`` or ``test`` (any ``<split>_expressions.json`` in the version
            folder is accepted, e.g. ``test-unseen-combos`` of a synthetic set).
        version: Folder under ``refer/``: ``multiple`` (default), ``unique``,
            ``novel-instances``, ``novel-classes`` or ``synthetic``.
        opening_edge: Which corner edge is the gripper opening: ``p1p4`` (default, CROG) or
            ``p1p2`` (Ainetter / GR-ConvNet OCID loaders).

    Raises:
        LayoutError: The root, ``refer/``, the version folder or the split file is missing, or
            the split file is not ``{"data": [...]}`` JSON.
        InputError: Unknown ``opening_edge`` or a ``split``/``version`` that is not a plain name.
    """

    name = "ocid-vlg"

    def __init__(
        self,
        root: str | os.PathLike | None,
        split: str,
        version: str = "multiple",
        opening_edge: str = "p1p4",
    ) -> None:
        _check_opening_edge(opening_edge)
        for label, value in (("split", split), ("version", version)):
            if not isinstance(value, str) or not _NAME.match(value):
                raise InputError(f"expected a plain {label} name, got {value!r}")
        if root is None:
            raise LayoutError(f"ocid-vlg needs a dataset root; expected {EXPECTED_TREE}")
        self.root = Path(root)
        self.split = split
        self.version = version
        self.opening_edge = opening_edge
        self.expressions_path = self._find_expressions()
        self._rows = self._read_rows(self.expressions_path)

    def _find_expressions(self) -> Path:
        root = self.root
        if not root.is_dir():
            raise LayoutError(f"dataset root {root} is not a folder; expected {EXPECTED_TREE}")
        refer = root / REFER_DIR
        if not refer.is_dir():
            raise LayoutError(
                f"{root} has no {REFER_DIR}/ folder{_layout_hint(root)}; expected {EXPECTED_TREE}"
            )
        versions = [p.name for p in refer.iterdir() if p.is_dir()]
        folder = refer / self.version
        if not folder.is_dir():
            raise LayoutError(
                f"{refer} has no {self.version}/ folder; found versions: {_listing(versions)}"
            )
        path = folder / f"{self.split}{EXPRESSIONS_SUFFIX}"
        if not path.is_file():
            splits = [
                p.name[: -len(EXPRESSIONS_SUFFIX)] for p in folder.glob(f"*{EXPRESSIONS_SUFFIX}")
            ]
            raise LayoutError(
                f"{REFER_DIR}/{self.version}/ has no {path.name} (in {root}); "
                f"found splits: {_listing(splits)}; found versions: {_listing(versions)}"
            )
        return path

    @staticmethod
    def _read_rows(path: Path) -> list[Any]:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise LayoutError(f"cannot read {path} as JSON: {err}") from err
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise LayoutError(
                f'{path} is not an OCID-VLG expressions file: expected {{"data": [...]}}'
            )
        return doc["data"]

    def __len__(self) -> int:
        """Number of expression rows in the split file."""
        return len(self._rows)

    def sample_id(self, index: int) -> str:
        """``str(question_index)`` of the row, or ``row<index>`` for a row without one."""
        row = self._rows[index]
        if isinstance(row, dict) and "question_index" in row:
            return str(row["question_index"])
        return f"row{index}"

    def load(self, index: int) -> GroundingSample:
        """Read row ``index`` and its three images; raises SampleError saying what is wrong."""
        try:
            return self._load(index)
        except SampleError as err:
            where = f"{self.version}/{self.split} sample {self.sample_id(index)} (row {index})"
            raise SampleError(f"{where}: {err}", err.reason) from None

    def _load(self, index: int) -> GroundingSample:
        row = self._rows[index]
        if not isinstance(row, dict):
            raise SampleError(f"row is a {type(row).__name__}, not a JSON object", Reason.BAD_ROW)
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise SampleError(f"row lacks key(s) {', '.join(missing)}", Reason.MISSING_KEYS)
        seq_path, image_name = _split_image_filename(row["image_filename"])
        answer = row["answer"]
        if isinstance(answer, bool) or not isinstance(answer, int):
            raise SampleError(
                f"answer must be an integer instance id, got {answer!r}", Reason.BAD_ROW
            )
        for key in ("question", "target"):
            if not isinstance(row[key], str):
                raise SampleError(f"{key} must be a string, got {row[key]!r}", Reason.BAD_ROW)

        seq = self.root / seq_path
        rgb_path = seq / RGB_DIR / image_name
        bgr = _read_image(rgb_path, cv2.IMREAD_COLOR, "rgb")
        depth_path = seq / DEPTH_DIR / image_name
        depth_png = _read_image(depth_path, cv2.IMREAD_UNCHANGED, "depth")
        if depth_png.ndim != 2 or depth_png.dtype != np.uint16:
            raise SampleError(
                f"depth file {depth_path} must be a single-channel 16-bit PNG (millimetres), "
                f"got {depth_png.dtype} with shape {depth_png.shape}",
                Reason.BAD_DEPTH,
            )
        ids_path = seq / INSTANCES_DIR / image_name
        ids = _read_image(ids_path, cv2.IMREAD_UNCHANGED, "instance mask")
        if ids.ndim != 2:
            raise SampleError(
                f"instance mask {ids_path} must be single-channel, got {ids.shape}", Reason.BAD_MASK
            )
        shapes = {"rgb": bgr.shape[:2], "depth": depth_png.shape, "instance mask": ids.shape}
        if len(set(shapes.values())) != 1:
            sizes = ", ".join(f"{k} {h}x{w}" for k, (h, w) in shapes.items())
            raise SampleError(f"image sizes differ ({sizes}) in {seq}", Reason.SHAPE_MISMATCH)
        mask = ids == answer
        if not mask.any():
            present = ", ".join(map(str, np.unique(ids).tolist()))
            raise SampleError(
                f"instance id {answer} does not occur in {ids_path} (ids present: {present})",
                Reason.ID_ABSENT,
            )
        grasps = self._grasps(row["grasps"])

        meta = {k: v for k, v in row.items() if k not in ("question", "grasps")}
        meta.update(
            version=self.version,
            split=self.split,
            target_class=_INSTANCE_SUFFIX.sub("", row["target"]),
        )
        return GroundingSample(
            rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            depth=depth_png.astype(np.float32) * np.float32(DEPTH_UNIT_M),
            mask=mask,
            grasps=grasps,
            text=row["question"],
            target_name=row["target"],
            sample_id=str(row["question_index"]),
            meta=meta,
        )

    def _grasps(self, rects: Any) -> list[Grasp]:
        if not isinstance(rects, list):
            raise SampleError(
                f"grasps must be a list of rectangles, got {type(rects).__name__}",
                Reason.MALFORMED_GRASP,
            )
        if not rects:
            raise SampleError("no grasps", Reason.NO_GRASPS)
        grasps = []
        for k, rect in enumerate(rects):
            try:
                grasps.append(grasp_from_corners(rect, self.opening_edge))
            except InputError as err:
                raise SampleError(f"malformed grasp {k}: {err}", Reason.MALFORMED_GRASP) from None
        return grasps


def _split_image_filename(value: Any) -> tuple[str, str]:
    """``"<seq_path>,<image>"`` -> (seq_path, image); rejects paths leaving the root."""
    if not isinstance(value, str) or value.count(",") != 1:
        raise SampleError(
            f'image_filename must look like "<seq_path>,<image>", got {value!r}', Reason.BAD_ROW
        )
    seq_path, image_name = (s.strip() for s in value.split(","))
    parts = Path(seq_path).parts
    if (
        not seq_path
        or not image_name
        or Path(seq_path).is_absolute()
        or ".." in parts
        or "/" in image_name
        or "\\" in image_name
    ):
        raise SampleError(
            f"image_filename {value!r} is not a relative <seq_path>,<image> pair", Reason.BAD_ROW
        )
    return seq_path, image_name


# --- writing -------------------------------------------------------------------------------


def _png(image: np.ndarray, path: Path) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise InputError(f"cannot encode {path} as PNG")
    return buf.tobytes()


def write_image_files(
    root: str | os.PathLike,
    image_filename: str,
    rgb: np.ndarray,
    depth: np.ndarray,
    instances: np.ndarray,
) -> None:
    """Write one image's rgb, depth and instance-id PNGs in the OCID layout under ``root``.

    Args:
        root: Dataset root.
        image_filename: ``"<seq_path>,<image>.png"``, as stored in the expression rows.
        rgb: ``(H, W, 3)`` uint8 RGB.
        depth: ``(H, W)`` depth in metres, 0 = invalid; stored as uint16 millimetres (rounded),
            so values must lie in [0, 65.535] m.
        instances: ``(H, W)`` non-negative integer instance ids (uint8 PNG when all ids < 256,
            else uint16).

    Raises:
        InputError: Wrong shapes or dtypes, or depth that uint16 millimetres cannot hold.
    """
    try:
        seq_path, image_name = _split_image_filename(image_filename)
    except SampleError as err:
        raise InputError(str(err)) from None
    rgb, depth, instances = np.asarray(rgb), np.asarray(depth), np.asarray(instances)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"rgb must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    size = rgb.shape[:2]
    if depth.shape != size or instances.shape != size:
        raise InputError(
            f"depth {depth.shape} and instances {instances.shape} must be {size} like the rgb"
        )
    if not np.issubdtype(instances.dtype, np.integer) or instances.min() < 0:
        raise InputError("instances must hold non-negative integer ids")
    if instances.max() > np.iinfo(np.uint16).max:
        raise InputError("instance ids must be below 65536 to fit a 16-bit PNG")
    mm = np.round(np.asarray(depth, np.float64) / DEPTH_UNIT_M)
    if not np.isfinite(mm).all() or mm.min() < 0 or mm.max() > np.iinfo(np.uint16).max:
        raise InputError("depth must be finite metres in [0, 65.535] (0 = invalid)")
    ids = instances.astype(np.uint8 if instances.max() < 256 else np.uint16)
    seq = Path(root) / seq_path
    for folder, image in (
        (RGB_DIR, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)),
        (DEPTH_DIR, mm.astype(np.uint16)),
        (INSTANCES_DIR, ids),
    ):
        path = seq / folder / image_name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, _png(image, path))


def mask_box(mask: np.ndarray) -> list[int]:
    """``[x, y, w, h]`` pixel bounding box of a non-empty ``(H, W)`` bool mask (OCID ``box``)."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise InputError("cannot take the bounding box of an empty mask")
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def expression_row(
    *,
    image_filename: str,
    question: str,
    answer: int,
    target: str,
    box: Sequence[int],
    grasps: Sequence[Grasp],
    question_index: int,
    opening_edge: str = "p1p4",
    **extra: Any,
) -> dict[str, Any]:
    """One ``{"data": [...]}`` row; grasps become corner points in ``opening_edge`` order.

    ``extra`` keys (JSON values) are stored as they are and come back in the loader's ``meta``.
    """
    clash = sorted(set(extra) & {*REQUIRED_KEYS, "program"})
    if clash:
        raise InputError(f"extra keys {clash} would overwrite OCID-VLG fields")
    row = {
        "image_filename": image_filename,
        "question": question,
        "answer": int(answer),
        "target": target,
        "box": [int(v) for v in box],
        "grasps": [corners_from_grasp(g, opening_edge).tolist() for g in grasps],
        "question_index": int(question_index),
    }
    row.update(extra)
    return row


def write_expressions(
    root: str | os.PathLike, version: str, split: str, rows: Sequence[Mapping[str, Any]]
) -> Path:
    """Write ``refer/<version>/<split>_expressions.json`` atomically; returns its path."""
    for label, value in (("split", split), ("version", version)):
        if not _NAME.match(value):
            raise InputError(f"expected a plain {label} name, got {value!r}")
    path = Path(root) / REFER_DIR / version / f"{split}{EXPRESSIONS_SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps({"data": list(rows)}).encode())
    return path


def write_ocid_vlg_split(
    root: str | os.PathLike,
    samples: Iterable[GroundingSample],
    version: str = "multiple",
    split: str = "test",
    seq_path: str = "fixture/seq00",
) -> Path:
    """Write ``samples`` as one OCID-VLG split (a small fixture folder); returns the JSON path.

    Each sample gets its own image ``<seq_path>/<rgb|depth|seg_mask_instances_combi>/<i>.png``
    whose instance map has id 1 on the sample's mask (0 elsewhere), ``answer`` = 1, corners in
    the ``p1p4`` order, ``target`` = ``target_name`` and ``question_index`` = the row number.
    JSON-ready ``meta`` entries that are not OCID-VLG fields are stored as extra keys.
    """
    rows = []
    for i, s in enumerate(samples):
        if s.depth is None or s.mask is None:
            raise InputError(f"sample {s.sample_id}: OCID-VLG needs depth and a mask")
        image_filename = f"{seq_path},{i:06d}.png"
        write_image_files(root, image_filename, s.rgb, s.depth, s.mask.astype(np.uint8))
        extra = {k: v for k, v in s.meta.items() if k not in {*REQUIRED_KEYS, "program", "version"}}
        rows.append(
            expression_row(
                image_filename=image_filename,
                question=s.text,
                answer=1,
                target=s.target_name,
                box=mask_box(s.mask),
                grasps=s.grasps,
                question_index=i,
                **extra,
            )
        )
    return write_expressions(root, version, split, rows)
