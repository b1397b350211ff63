"""Grasp-Anything++ (Vuong et al., CVPR 2024): part-level grasp instructions on generated images.

Two on-disk layouts exist in the wild (shared/research/datasets.md 2.2); ``layout="auto"``
detects which one ``root`` has and logs it:

* ``"guide"``, the layout of the dataset's "Grasp-Anything++ Guide" (and of Fsoft-AIC/LGD's
  ``read_data.py``)::

      {seen,unseen}/image/<sha>.jpg
      {seen,unseen}/grasp_instructions/<sha>_<obj>_<part>.pkl
      {seen,unseen}/grasp_label/<sha>_<obj>_<part>.pt
      {seen,unseen}/part_mask/<sha>_<obj>_<part>.npy        (optional)

* ``"release"``, the Hugging Face release (``airvlab/Grasp-Anything-pp``; GA++ has no images, so
  ``image/`` is the Grasp-Anything base dataset's image folder, linked or copied next to it)::

      image/<sha>.jpg
      grasp_instructions/<sha>_<obj>_<part>.pkl
      grasp_label_positive/<sha>_<obj>_<part>.pt
      part_mask/<sha>_<obj>_<part>.npy
      grasp_label_negative/, mask/, scene_description/<sha>.pkl   (optional)
      split/grasp-anything++/{train,test}/{seen,unseen}.obj       (optional id lists)

One sample is one instruction, i.e. one (image, object, part) triple named
``<sha>_<obj>_<part>``: ``sha`` is the SHA-256 image name, ``obj`` the object index in the scene
and ``part`` the part index, both decimal integers of any length. Every instruction or label file
with such a name is a sample, so a label without its instruction (or the reverse) shows up as a
broken sample rather than disappearing. Files with other names are skipped and counted
(:attr:`GraspAnythingDataset.n_ignored_files`; for example Grasp-Anything base labels
``<sha>_<obj>.pt``).

Splits:

* Guide layout: ``"seen"`` or ``"unseen"`` (that folder) or ``"all"`` (both folders that exist).
  ``meta["group"]`` is the folder.
* Release layout: ``"all"`` is every instruction on disk. The seen/unseen splits come from the
  released ``.obj`` id lists, pickled lists of object ids ``"<sha>_<obj>"`` (datasets.md 2.5),
  found under ``root/split/grasp-anything++/`` or ``root/split/`` as
  ``{train,test}/{seen,unseen}.obj`` (or ``{seen,unseen}.obj`` without a stage folder). Split
  names: ``"train/seen"``, ``"test/seen"``, ``"test/unseen"`` (one list), ``"train"`` or
  ``"test"`` (every list of that stage), ``"seen"`` or ``"unseen"`` (every list of that group).
  ``split_file=PATH`` uses that one list instead; the split name is then recorded as the group
  when it is ``"seen"`` or ``"unseen"``. Lists are matched at object level: a sample belongs to
  the split when ``<sha>_<obj>`` (its name without the last ``_<part>``) is in the list, which
  also works for multi-digit ids (LGD cuts a fixed ``basename[:-5]`` instead). ``meta["group"]``
  is the list's group; for ``"all"`` it is set for objects that appear in exactly one group of
  the lists found. Listed objects without any file on disk are counted
  (:attr:`GraspAnythingDataset.n_missing_objects`).

The evaluator reports seen, unseen and their harmonic mean from ``meta["group"]``.

Samples (:class:`~langgrasp.datasets.base.GroundingSample`): ``rgb`` is the 416 x 416 image as
stored (never resized); ``depth`` is None (the dataset is RGB only); ``mask`` is the part mask
(``part_mask/<stem>.npy``, nonzero = part) or None when that file does not exist; ``text`` is
the instruction; ``grasps`` come from the positive label (negative labels are not read);
``target_name`` is the object phrase from ``scene_description/<sha>.pkl`` (a tuple
``(caption, [object names])`` indexed by ``obj``) when that file exists and is usable, else the
object index as a string (``"3"``); ``meta["target_name_source"]`` says which. ``meta`` also
holds ``sha``, ``object`` and ``part`` (ints), ``layout`` and, when known, ``group``.

Every pickle is read with :mod:`langgrasp.datasets.safe_pickle` (no code runs), ``.npy`` files
with ``allow_pickle=False`` and labels with ``torch.load(weights_only=True)``. torch is imported
only when a label is read, so this module imports without it.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from langgrasp.datasets.base import GroundingDataset, GroundingSample, LayoutError, SampleError
from langgrasp.datasets.safe_pickle import UnsafePickleError, safe_load
from langgrasp.detector.grasp import Grasp, wrap_angle
from langgrasp.errors import InputError

logger = logging.getLogger(__name__)

LAYOUTS = ("guide", "release")
GROUPS = ("seen", "unseen")
STAGES = ("train", "test")
SPLIT_LIST_DIRS = ("split/grasp-anything++", "split")
"""Folders under the root searched, in order, for the ``.obj`` id lists (the first with any)."""

LABEL_COLUMNS = ("quality", "x", "y", "w", "h", "theta_deg")
"""Columns of a label row (datasets.md 2.3)."""

_STEM = re.compile(r"(?P<sha>[0-9A-Za-z]+)_(?P<obj>\d+)_(?P<part>\d+)")
_OBJECT_ID = re.compile(r"[0-9A-Za-z]+_\d+")

GUIDE_TREE = """\
  <root>/{seen,unseen}/image/<sha>.jpg
  <root>/{seen,unseen}/grasp_instructions/<sha>_<obj>_<part>.pkl
  <root>/{seen,unseen}/grasp_label/<sha>_<obj>_<part>.pt
  <root>/{seen,unseen}/part_mask/<sha>_<obj>_<part>.npy   (optional)"""

RELEASE_TREE = """\
  <root>/image/<sha>.jpg   (Grasp-Anything images; GA++ ships none, link that folder here)
  <root>/grasp_instructions/<sha>_<obj>_<part>.pkl
  <root>/grasp_label_positive/<sha>_<obj>_<part>.pt
  <root>/part_mask/<sha>_<obj>_<part>.npy
  <root>/grasp_label_negative/, mask/, scene_description/<sha>.pkl   (optional)
  <root>/split/grasp-anything++/{train,test}/{seen,unseen}.obj   (optional, for seen/unseen)"""

_GUIDE_DIRS = ("image", "grasp_instructions", "grasp_label")
_RELEASE_DIRS = ("image", "grasp_instructions", "grasp_label_positive", "part_mask")


class Reason:
    """Reason kinds of the :class:`SampleError` raised by :meth:`GraspAnythingDataset.load`.

    Each error carries its kind as ``err.reason``; ``langgrasp data check`` counts by it.
    """

    MISSING_IMAGE = "missing image"
    UNREADABLE_IMAGE = "unreadable image"
    MISSING_INSTRUCTION = "missing instruction"
    UNREADABLE_INSTRUCTION = "unreadable instruction"
    REFUSED_PICKLE = "refused pickle"
    INSTRUCTION_NOT_STR = "instruction not a str"
    EMPTY_INSTRUCTION = "empty instruction"
    MISSING_LABEL = "missing label"
    UNREADABLE_LABEL = "unreadable label"
    LABEL_SHAPE = "label not (N, 6)"
    NO_GRASPS = "no grasps"
    NON_FINITE_LABEL = "non-finite label"
    NEGATIVE_SIZE = "negative grasp size"
    UNREADABLE_MASK = "unreadable mask"
    MASK_SHAPE = "mask shape mismatch"


def grasp_from_row(row: Sequence[float]) -> Grasp:
    """Convert one label row ``[q, x, y, w, h, theta_deg]`` into a :class:`Grasp`.

    Grasp-Anything stores theta in degrees in the image's y-down frame (clockwise on screen, the
    ``cv2.boxPoints`` convention); the official GR-ConvNet-derived parsers negate it
    (``angle=-theta*pi/180``, andvg3/Grasp-Anything and Fsoft-AIC/LGD ``grasp.py``;
    shared/research/datasets.md 2.3). Our angle is counter-clockwise on screen, so
    ``angle = wrap(-radians(theta_deg))``. ``w`` is the opening (our ``width``), ``h`` the jaw
    size (our ``height``), ``x, y`` the centre in pixels and ``q`` becomes ``quality`` as is.
    """
    if len(row) != len(LABEL_COLUMNS):
        raise InputError(f"a label row has {len(LABEL_COLUMNS)} values, got {len(row)}: {row!r}")
    q, x, y, w, h, theta_deg = (float(v) for v in row)
    angle = float(wrap_angle(-math.radians(theta_deg)))
    return Grasp(x=x, y=y, angle=angle, width=w, height=h, quality=q)


def read_id_list(path: str | Path) -> list[str]:
    """Read a ``.obj`` split list: a pickled list of ``"<sha>_<obj>"`` strings (datasets.md 2.5).

    Raises:
        LayoutError: The file is unreadable, refused by the safe unpickler, or not a list of
            object ids.
    """
    try:
        value = safe_load(path)
    except (OSError, UnsafePickleError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise LayoutError(f"cannot read the split list {path}: {err}") from err
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise LayoutError(
            f"split list {path} holds a {type(value).__name__}; expected a list of "
            '"<sha>_<obj>" strings'
        )
    ids = list(value)
    for item in ids:
        if not isinstance(item, str) or not _OBJECT_ID.fullmatch(item):
            raise LayoutError(
                f'split list {path} contains {item!r}; expected "<sha>_<obj>" strings such as '
                '"0a1b..._3"'
            )
    return ids


@dataclass(frozen=True)
class _Tree:
    """The folders that hold one group of samples (one per guide group, one for the release)."""

    image: Path
    instructions: Path
    labels: Path
    part_masks: Path
    scene_descriptions: Path
    group: str | None  # the folder's group (guide layout); None when lists decide (release)

    @staticmethod
    def guide(root: Path, group: str) -> _Tree:
        base = root / group
        return _Tree(
            base / "image",
            base / "grasp_instructions",
            base / "grasp_label",
            base / "part_mask",
            base / "scene_description",
            group,
        )

    @staticmethod
    def release(root: Path) -> _Tree:
        return _Tree(
            root / "image",
            root / "grasp_instructions",
            root / "grasp_label_positive",
            root / "part_mask",
            root / "scene_description",
            None,
        )


def _missing(root: Path) -> dict[str, list[str]]:
    """For each layout, the folders (relative to root) that it needs and root lacks."""
    groups = [g for g in GROUPS if (root / g).is_dir()]
    if groups:
        guide = [f"{g}/{d}/" for g in groups for d in _GUIDE_DIRS if not (root / g / d).is_dir()]
    else:
        guide = ["seen/ or unseen/"]
    release = [f"{d}/" for d in _RELEASE_DIRS if not (root / d).is_dir()]
    return {"guide": guide, "release": release}


def _layout_message(root: Path, problem: str, layouts: Iterable[str], missing: dict) -> str:
    trees = {"guide": GUIDE_TREE, "release": RELEASE_TREE}
    lines = [f"{root}: {problem}. Expected one of these Grasp-Anything++ trees:"]
    for name in layouts:
        lines += [f"{name} layout:", trees[name]]
    lines.append(
        "missing: " + "; ".join(f"{name} layout: {', '.join(missing[name])}" for name in layouts)
    )
    return "\n".join(lines)


def _scan(folder: Path, suffix: str) -> tuple[set[str], list[str]]:
    """Stems ``<sha>_<obj>_<part>`` of the ``suffix`` files in ``folder``, and other names."""
    stems: set[str] = set()
    other: list[str] = []
    if not folder.is_dir():
        return stems, other
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(suffix):
                continue
            stem = name[: -len(suffix)]
            if _STEM.fullmatch(stem):
                stems.add(stem)
            else:
                other.append(name)
    return stems, other


def _object_key(stem: str) -> str:
    """``<sha>_<obj>`` of a sample stem ``<sha>_<obj>_<part>`` (any number of digits)."""
    return stem.rsplit("_", 1)[0]


def _sample_error(sample_id: str, reason: str, detail: str) -> SampleError:
    return SampleError(f"{sample_id}: {reason}: {detail}", reason=reason)


class GraspAnythingDataset(GroundingDataset):
    """One split of Grasp-Anything++ (layouts, splits and sample contents: module docstring).

    Attributes:
        root: The dataset root.
        split: The split name.
        layout: ``"guide"`` or ``"release"``, the detected (or requested) layout.
        split_lists: The ``.obj`` files that defined the split (empty for folder splits).
        n_ignored_files: Instruction and label files skipped because their names are not
            ``<sha>_<obj>_<part>``.
        n_missing_objects: Objects in the split lists without any file on disk.
    """

    name = "grasp-anything"

    def __init__(
        self,
        root: str | Path | None,
        split: str = "all",
        layout: str = "auto",
        split_file: str | Path | None = None,
    ) -> None:
        """Find the layout, the split's samples and their groups; read no sample yet.

        Args:
            root: Dataset root folder (see the module docstring for the trees).
            split: Split name (module docstring).
            layout: ``"auto"`` (detect), ``"guide"`` or ``"release"``.
            split_file: A ``.obj`` id list that defines the split instead of the lists under
                the root (release layout only).

        Raises:
            InputError: No root, an unknown split or layout name, or ``split_file`` with the
                guide layout.
            LayoutError: The root has neither layout, the split's lists or folders are missing,
                or the split has no sample.
        """
        if root is None:
            raise InputError(
                "Grasp-Anything++ needs its root folder (--data-root); it is not generated"
            )
        self.root = Path(root)
        self.split = split
        self.layout = self._detect_layout(layout)
        self.split_lists: list[Path] = []
        self.n_ignored_files = 0
        self.n_missing_objects = 0
        self._trees: list[_Tree] = []
        self._stems: list[str] = []
        self._tree_index = array("B")
        self._group_code = array("b")  # index into GROUPS, -1 = unknown
        if self.layout == "guide":
            if split_file is not None:
                raise InputError(
                    "split_file applies to the release layout; the guide layout's splits are "
                    "its seen/ and unseen/ folders (split 'seen', 'unseen' or 'all')"
                )
            self._index_guide()
        else:
            self._index_release(None if split_file is None else Path(split_file))
        groups = sorted({GROUPS[c] for c in self._group_code if c >= 0})
        logger.info(
            "Grasp-Anything++ at %s: %s layout, split %r: %d instructions (groups: %s)",
            self.root,
            self.layout,
            split,
            len(self),
            ", ".join(groups) or "unknown",
        )

    # ----------------------------------------------------------------------------- indexing

    def _detect_layout(self, layout: str) -> str:
        if layout not in ("auto", *LAYOUTS):
            raise InputError(f"unknown layout {layout!r}; expected 'auto', 'guide' or 'release'")
        if not self.root.is_dir():
            missing = {name: ["the root folder itself"] for name in LAYOUTS}
            names = LAYOUTS if layout == "auto" else (layout,)
            raise LayoutError(_layout_message(self.root, "not a folder", names, missing))
        missing = _missing(self.root)
        if layout != "auto":
            if missing[layout]:
                problem = f"not a {layout}-layout folder"
                raise LayoutError(_layout_message(self.root, problem, (layout,), missing))
            return layout
        fits = [name for name in LAYOUTS if not missing[name]]
        if not fits:
            problem = "neither Grasp-Anything++ layout found"
            raise LayoutError(_layout_message(self.root, problem, LAYOUTS, missing))
        if len(fits) > 1:
            raise LayoutError(
                f"{self.root} has both the guide layout (seen/, unseen/) and the release layout "
                "(image/, grasp_label_positive/, ...); pass layout='guide' or layout='release'"
            )
        logger.info("Grasp-Anything++ at %s: detected the %s layout", self.root, fits[0])
        return fits[0]

    def _add(self, tree: _Tree, stems: Iterable[str], group_of: dict[str, str] | None) -> None:
        self._trees.append(tree)
        tree_index = len(self._trees) - 1
        for stem in sorted(stems):
            group = tree.group if group_of is None else group_of.get(_object_key(stem))
            self._stems.append(stem)
            self._tree_index.append(tree_index)
            self._group_code.append(GROUPS.index(group) if group in GROUPS else -1)

    def _scan_tree(self, tree: _Tree) -> set[str]:
        """Stems with an instruction or a label in ``tree``; counts and logs other names."""
        instructions, other_pkl = _scan(tree.instructions, ".pkl")
        labels, other_pt = _scan(tree.labels, ".pt")
        other = other_pkl + other_pt
        if other:
            self.n_ignored_files += len(other)
            logger.warning(
                "skipped %d files in %s and %s whose names are not <sha>_<obj>_<part> "
                "(for example %r)",
                len(other),
                tree.instructions,
                tree.labels,
                other[0],
            )
        return instructions | labels

    def _index_guide(self) -> None:
        if self.split == "all":
            groups = [g for g in GROUPS if (self.root / g).is_dir()]
        elif self.split in GROUPS:
            groups = [self.split]
            if not (self.root / self.split).is_dir():
                raise LayoutError(
                    f"{self.root}: split {self.split!r} needs the folder {self.split}/ with "
                    f"{', '.join(d + '/' for d in _GUIDE_DIRS)} inside; it does not exist. "
                    f"Expected tree (guide layout):\n{GUIDE_TREE}"
                )
        else:
            raise InputError(
                f"unknown split {self.split!r} for the guide layout; expected 'seen', 'unseen' "
                "or 'all'"
            )
        for group in groups:
            tree = _Tree.guide(self.root, group)
            self._add(tree, self._scan_tree(tree), None)
        if not self._stems:
            raise LayoutError(
                f"{self.root}: no instruction (.pkl) or label (.pt) named <sha>_<obj>_<part> in "
                f"{' or '.join(g + '/' for g in groups)}. Expected tree (guide layout):\n"
                f"{GUIDE_TREE}"
            )

    def _find_lists(self) -> dict[tuple[str | None, str], Path]:
        """The ``.obj`` lists under the root: ``{(stage or None, group): path}``."""
        for folder in SPLIT_LIST_DIRS:
            base = self.root / folder
            found: dict[tuple[str | None, str], Path] = {}
            for group in GROUPS:
                for stage in (*STAGES, None):
                    path = base / f"{group}.obj" if stage is None else base / stage / f"{group}.obj"
                    if path.is_file():
                        found[(stage, group)] = path
            if found:
                return found
        return {}

    def _selected_lists(
        self, lists: dict[tuple[str | None, str], Path]
    ) -> list[tuple[Path, str | None]]:
        """``(list file, group)`` pairs that define split ``self.split``."""
        split = self.split
        if split == "all":
            return [(path, group) for (_, group), path in lists.items()]
        if split in GROUPS:
            wanted = [(path, group) for (_, group), path in lists.items() if group == split]
        elif split in STAGES:
            wanted = [(path, group) for (stage, group), path in lists.items() if stage == split]
        elif split.count("/") == 1 and tuple(split.split("/")) in {
            (s, g) for s in STAGES for g in GROUPS
        }:
            stage, group = split.split("/")
            wanted = [(lists[(stage, group)], group)] if (stage, group) in lists else []
        else:
            names = ["all", *GROUPS, *STAGES, *(f"{s}/{g}" for s in STAGES for g in GROUPS)]
            raise InputError(
                f"unknown split {split!r} for the release layout; expected one of "
                f"{', '.join(names)}, or any name together with split_file"
            )
        if not wanted:
            looked = ", ".join(f"{self.root / d}/" for d in SPLIT_LIST_DIRS)
            raise LayoutError(
                f"{self.root}: split {split!r} needs the Grasp-Anything++ id lists "
                f"(<stage>/<group>.obj, e.g. test/unseen.obj from Fsoft-AIC/LGD "
                f"split/grasp-anything++/); none for this split under {looked}. Copy them "
                "there, pass split_file=PATH (--split-file), or use split 'all'"
            )
        return wanted

    def _index_release(self, split_file: Path | None) -> None:
        if split_file is not None:
            group = self.split if self.split in GROUPS else None
            selected: list[tuple[Path, str | None]] = [(split_file, group)]
        else:
            selected = self._selected_lists(self._find_lists())
        self.split_lists = [path for path, _ in selected]
        groups: dict[str, set[str | None]] = {}
        for path, group in selected:
            for object_id in read_id_list(path):
                groups.setdefault(object_id, set()).add(group)
        conflicts = sum(len(g) > 1 for g in groups.values())
        if conflicts:
            logger.warning(
                "%d objects are in both a seen and an unseen list; their group is left unset",
                conflicts,
            )
        group_of = {key: next(iter(g)) for key, g in groups.items() if len(g) == 1}
        tree = _Tree.release(self.root)
        stems = self._scan_tree(tree)
        restrict = self.split != "all" or split_file is not None
        if restrict:
            stems = {stem for stem in stems if _object_key(stem) in groups}
            self.n_missing_objects = len(groups.keys() - {_object_key(s) for s in stems})
            if self.n_missing_objects:
                logger.warning(
                    "%d of the %d objects in split %r have no instruction or label on disk",
                    self.n_missing_objects,
                    len(groups),
                    self.split,
                )
        self._add(tree, stems, group_of)
        if not self._stems:
            where = f"{tree.instructions}/ or {tree.labels}/"
            if restrict:
                lists = ", ".join(str(p) for p in self.split_lists)
                raise LayoutError(
                    f"{self.root}: split {self.split!r} lists {len(groups)} objects ({lists}) "
                    f"but none of them has an instruction or label in {where}"
                )
            raise LayoutError(
                f"{self.root}: no instruction (.pkl) or label (.pt) named <sha>_<obj>_<part> in "
                f"{where}. Expected tree (release layout):\n{RELEASE_TREE}"
            )

    # ------------------------------------------------------------------------------ samples

    def __len__(self) -> int:
        """Number of instructions in the split."""
        return len(self._stems)

    def sample_id(self, index: int) -> str:
        """``<sha>_<obj>_<part>`` (release layout) or ``<group>/<sha>_<obj>_<part>`` (guide)."""
        stem = self._stems[index]
        group = self._trees[self._tree_index[index]].group
        return stem if group is None else f"{group}/{stem}"

    def group(self, index: int) -> str | None:
        """``"seen"``, ``"unseen"`` or None (unknown) for sample ``index``, without loading it."""
        code = self._group_code[index]
        return GROUPS[code] if code >= 0 else None

    def load(self, index: int) -> GroundingSample:
        """Read sample ``index``.

        Raises:
            IndexError: ``index`` is not in ``[0, len(self))``.
            SampleError: The sample is broken; ``err.reason`` is one of :class:`Reason`.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        stem = self._stems[index]
        tree = self._trees[self._tree_index[index]]
        sid = self.sample_id(index)
        match = _STEM.fullmatch(stem)
        assert match is not None  # only matching stems are indexed
        sha, obj, part = match["sha"], int(match["obj"]), int(match["part"])
        rgb = _read_image(sid, tree.image / f"{sha}.jpg")
        text = _read_instruction(sid, tree.instructions / f"{stem}.pkl")
        grasps = _read_label(sid, tree.labels / f"{stem}.pt")
        mask = _read_mask(sid, tree.part_masks / f"{stem}.npy", rgb.shape[:2])
        target_name = _object_phrase(tree.scene_descriptions / f"{sha}.pkl", obj)
        meta: dict[str, Any] = {
            "sha": sha,
            "object": obj,
            "part": part,
            "layout": self.layout,
            "target_name_source": "object index" if target_name is None else "scene_description",
        }
        group = self.group(index)
        if group is not None:
            meta["group"] = group
        return GroundingSample(
            rgb=rgb,
            depth=None,
            mask=mask,
            grasps=grasps,
            text=text,
            target_name=str(obj) if target_name is None else target_name,
            sample_id=sid,
            meta=meta,
        )

    def __repr__(self) -> str:
        return (
            f"GraspAnythingDataset(root={str(self.root)!r}, split={self.split!r}, "
            f"layout={self.layout!r}, samples={len(self)})"
        )


# ---------------------------------------------------------------------------------- readers


def _read_image(sid: str, path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB image at ``path``."""
    if not path.is_file():
        raise _sample_error(sid, Reason.MISSING_IMAGE, f"{path} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise _sample_error(sid, Reason.UNREADABLE_IMAGE, f"OpenCV cannot decode {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_instruction(sid: str, path: Path) -> str:
    """The instruction sentence pickled in ``path`` (a plain ``str``), stripped."""
    if not path.is_file():
        raise _sample_error(sid, Reason.MISSING_INSTRUCTION, f"{path} does not exist")
    try:
        value = safe_load(path)
    except UnsafePickleError as err:
        raise _sample_error(sid, Reason.REFUSED_PICKLE, f"{path}: {err}") from err
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        detail = f"{path} is not a valid pickle ({type(err).__name__}: {err})"
        raise _sample_error(sid, Reason.UNREADABLE_INSTRUCTION, detail) from err
    if not isinstance(value, str):
        detail = f"{path} holds a {type(value).__name__}, expected the instruction as a str"
        raise _sample_error(sid, Reason.INSTRUCTION_NOT_STR, detail)
    text = value.strip()
    if not text:
        raise _sample_error(sid, Reason.EMPTY_INSTRUCTION, f"{path} holds an empty string")
    return text


def _read_label(sid: str, path: Path) -> list[Grasp]:
    """Grasps of the ``(N, 6)`` label tensor in ``path`` (rows: :data:`LABEL_COLUMNS`)."""
    if not path.is_file():
        raise _sample_error(sid, Reason.MISSING_LABEL, f"{path} does not exist")
    import torch  # only here: reading .pt files is the one thing that needs torch

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch reports corrupt files as many types (Runtime, Unpickling...)
        detail = f"torch.load cannot read {path} ({type(err).__name__}: {err})"
        raise _sample_error(sid, Reason.UNREADABLE_LABEL, detail) from err
    if (
        not isinstance(value, torch.Tensor)
        or value.dtype == torch.bool
        or value.is_complex()
        or value.ndim != 2
        or value.shape[1] != len(LABEL_COLUMNS)
    ):
        what = (
            f"a {value.dtype} tensor of shape {tuple(value.shape)}"
            if isinstance(value, torch.Tensor)
            else f"a {type(value).__name__}"
        )
        detail = f"{path} holds {what}; expected a real (N, 6) tensor [q, x, y, w, h, theta]"
        raise _sample_error(sid, Reason.LABEL_SHAPE, detail)
    rows = value.detach().to(torch.float64).numpy()
    if len(rows) == 0:
        raise _sample_error(sid, Reason.NO_GRASPS, f"{path} has zero rows")
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        detail = f"{path} row {int(np.argmax(bad))} is {rows[bad][0].tolist()}"
        raise _sample_error(sid, Reason.NON_FINITE_LABEL, detail)
    negative = (rows[:, 3] < 0) | (rows[:, 4] < 0)
    if negative.any():
        detail = (
            f"{path} row {int(np.argmax(negative))} has w or h < 0: {rows[negative][0].tolist()}"
        )
        raise _sample_error(sid, Reason.NEGATIVE_SIZE, detail)
    return [grasp_from_row(row) for row in rows]


def _read_mask(sid: str, path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """``(H, W)`` bool part mask (nonzero = part), or None when ``path`` does not exist."""
    if not path.is_file():
        return None
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        detail = f"np.load cannot read {path} ({type(err).__name__}: {err})"
        raise _sample_error(sid, Reason.UNREADABLE_MASK, detail) from err
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        what = f"{value.dtype} array" if isinstance(value, np.ndarray) else type(value).__name__
        detail = f"{path} holds a {what}; expected a numeric (H, W) array"
        raise _sample_error(sid, Reason.UNREADABLE_MASK, detail)
    if value.shape != tuple(shape):
        detail = f"{path} has shape {value.shape}, the image is {tuple(shape)}"
        raise _sample_error(sid, Reason.MASK_SHAPE, detail)
    return value > 0


def _object_phrase(path: Path, obj: int) -> str | None:
    """Object ``obj``'s name from a scene description ``(caption, [names])``, if usable."""
    if not path.is_file():
        return None
    try:
        value = safe_load(path)
    except (OSError, UnsafePickleError, pickle.UnpicklingError, EOFError, ValueError) as err:
        logger.debug("ignoring scene description %s: %s", path, err)
        return None
    names = value[1] if isinstance(value, (tuple, list)) and len(value) >= 2 else None
    if not isinstance(names, (list, tuple)) or obj >= len(names):
        logger.debug("scene description %s has no object name %d", path, obj)
        return None
    name = names[obj]
    return name.strip() if isinstance(name, str) and name.strip() else None
