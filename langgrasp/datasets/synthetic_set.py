"""Synthetic splits as datasets: generated on the fly, or written to disk in the OCID-VLG format.

Two ways to get the same samples:

* :class:`SyntheticDataset` renders scene ``split_scene_seed(split, seed, i)`` under the split's
  rules (:data:`langgrasp.datasets.synthetic.SPLITS`) when sample ``i`` is loaded.
* ``langgrasp synth --out DIR`` (:func:`write_synthetic_set`) renders the same scenes once and
  writes them in the OCID-VLG layout (:mod:`langgrasp.datasets.ocid_vlg`) as version
  ``synthetic``; :func:`open_synthetic` reads such a folder back with
  :class:`~langgrasp.datasets.ocid_vlg.OCIDVLGDataset`, so training on it runs the real loader.

Written folder::

    DIR/synth.json                                   manifest: n, seed, splits, scene config, ...
    DIR/refer/synthetic/<split>_expressions.json     one row per scene
    DIR/synthetic/<split>/{rgb,depth,seg_mask_instances_combi}/<i>.png

Instance maps hold the objects as ids ``1..N``; for a part-level instruction the named part is
its own instance ``N + 1`` (:func:`~langgrasp.datasets.synthetic.instance_map`), so
``ids == answer`` is exactly the scene's mask. Grasps are corners in the ``p1p4`` (CROG) order,
``question_index`` is the scene seed, ``target`` the kind noun; the rows also carry the keys of
:func:`scene_meta`, which the loader returns in ``meta``.

This module imports NumPy and OpenCV (core dependencies) but never torch, so registering the
``synth`` command keeps ``langgrasp --help`` working on a runtime-only install.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langgrasp.datasets import ocid_vlg
from langgrasp.datasets.base import GroundingDataset, GroundingSample, LayoutError, SampleError
from langgrasp.datasets.synthetic import (
    HELD_OUT_COMBOS,
    HELD_OUT_TEMPLATES,
    SPLITS,
    SceneConfig,
    SceneSample,
    instance_map,
    render_scene,
    split_scene_seed,
)
from langgrasp.errors import InputError
from langgrasp.fileio import atomic_write_json

SYNTH_VERSION = "synthetic"
"""Folder under ``refer/`` of a written set, and the top folder of its images."""

MANIFEST = "synth.json"
GENERATOR = "langgrasp synth"
"""Manifest ``generator`` value that marks a folder as written by :func:`write_synthetic_set`."""

DEFAULT_N = 1000
"""Samples per split of an on-the-fly dataset when ``n`` is not given."""

UNRENDERABLE = "unrenderable scene"
"""``SampleError.reason`` of a scene that cannot be drawn with the scene config (too small)."""

DEFAULT_SPLITS = tuple(SPLITS)
"""Splits ``langgrasp synth`` writes by default: all of them, held-out tests included."""


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"expected an integer {name} >= {minimum}, got {value!r}")
    return value


def _check_split(split: Any) -> str:
    if split not in SPLITS:
        raise InputError(f"unknown synthetic split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def as_scene_config(value: SceneConfig | Mapping[str, Any] | None) -> SceneConfig:
    """A :class:`SceneConfig` from itself, a mapping of its fields (a JSON config), or None.

    Raises:
        InputError: Not a SceneConfig or mapping, or a mapping with unknown field names.
    """
    if value is None:
        return SceneConfig()
    if isinstance(value, SceneConfig):
        return value
    if not isinstance(value, Mapping):
        raise InputError(
            f"scene_config must be a SceneConfig or a dict of its fields, got {value!r}"
        )
    names = {f.name for f in dataclasses.fields(SceneConfig)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise InputError(f"unknown SceneConfig fields {unknown}; expected some of {sorted(names)}")
    return SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})


def scene_meta(scene: SceneSample) -> dict[str, Any]:
    """The JSON ``meta`` of a scene, shared by both ways of reading it.

    Keys: ``seed`` (scene seed), ``split``, ``family``, ``target_part`` (None for object-level
    text), ``wording`` (the template) and ``intrinsics`` (3x3 K as nested lists, pixels).
    """
    return {
        "seed": scene.seed,
        "split": scene.split,
        "family": scene.family,
        "target_part": scene.target_part,
        "wording": scene.wording,
        "intrinsics": scene.intrinsics.tolist(),
    }


class SyntheticDataset(GroundingDataset):
    """Split ``split`` of the synthetic scenes, rendered when loaded.

    Args:
        split: A key of ``SPLITS``: ``train``, ``val``, ``test``, ``test-unseen-combos`` or
            ``test-unseen-phrasing``.
        n: Number of samples.
        seed: Dataset seed; sample ``i`` is scene ``split_scene_seed(split, seed, i)``.
        scene_config: Scene parameters, or a dict of SceneConfig fields (default
            ``SceneConfig()``, 640x480).

    ``sample_id`` is the scene seed as a string, equal to the ``question_index`` of the same
    sample written by ``langgrasp synth``.
    """

    name = "synthetic"

    def __init__(
        self,
        split: str,
        n: int = DEFAULT_N,
        seed: int = 0,
        scene_config: SceneConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.split = _check_split(split)
        self.n = _check_int("n", n, 0)
        self.seed = _check_int("seed", seed, 0)
        split_scene_seed(split, seed, 0)  # rejects a seed too large for the seed blocks
        self.scene_config = as_scene_config(scene_config)

    def __len__(self) -> int:
        """Number of samples ``n``."""
        return self.n

    def scene_seed(self, index: int) -> int:
        """Seed of the scene behind sample ``index``."""
        if not 0 <= index < self.n:
            raise IndexError(f"sample index {index} out of range for {self.n} samples")
        return split_scene_seed(self.split, self.seed, index)

    def sample_id(self, index: int) -> str:
        """The scene seed, as a string."""
        return str(self.scene_seed(index))

    def render(self, index: int) -> SceneSample:
        """The full scene of sample ``index`` (objects, family, ... beyond the sample)."""
        seed = self.scene_seed(index)
        try:
            return render_scene(seed, self.scene_config, self.split)
        except InputError as err:
            message = f"synthetic {self.split} scene {seed}: {err}"
            raise SampleError(message, UNRENDERABLE) from None

    def load(self, index: int) -> GroundingSample:
        """Render sample ``index`` (meta: :func:`scene_meta`)."""
        scene = self.render(index)
        return GroundingSample(
            rgb=scene.rgb,
            depth=scene.depth,
            mask=scene.mask,
            grasps=list(scene.grasps),
            text=scene.text,
            target_name=scene.target_name,
            sample_id=str(scene.seed),
            meta=scene_meta(scene),
        )


def read_manifest(root: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a ``langgrasp synth`` folder, or None when ``root`` is not one."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        return None
    return manifest


def open_synthetic(root: Path | None, split: str, **options: Any) -> GroundingDataset:
    """The ``synthetic`` registry entry: on the fly without a root, else a written set.

    Args:
        root: None for :class:`SyntheticDataset`; a folder written by ``langgrasp synth`` to
            read it with :class:`~langgrasp.datasets.ocid_vlg.OCIDVLGDataset`.
        split: A key of ``SPLITS`` (for a written set, one that it holds).
        **options: Without a root: ``n`` (default ``DEFAULT_N``), ``seed`` (default 0),
            ``scene_config``. With a root: none (the manifest fixes them).

    Raises:
        InputError: Unknown options or split.
        LayoutError: ``root`` is not a complete ``langgrasp synth`` folder or lacks ``split``.
    """
    if root is None:
        unknown = sorted(set(options) - {"n", "seed", "scene_config"})
        if unknown:
            raise InputError(f"unknown synthetic options {unknown}; expected n, seed, scene_config")
        return SyntheticDataset(split, **options)
    if options:
        raise InputError(
            f"options {sorted(options)} do not apply to a written synthetic set ({root}): its "
            f"{MANIFEST} fixes n, seed and the scene config"
        )
    manifest = read_manifest(root)
    if manifest is None:
        raise LayoutError(
            f"{root} is not a `langgrasp synth` output (no valid {MANIFEST}); write one with "
            f"`langgrasp synth --out {root}`"
        )
    if not manifest.get("complete"):
        raise LayoutError(
            f"{root} holds an incomplete `langgrasp synth` output (the writer stopped early); "
            "run `langgrasp synth` again"
        )
    if split not in manifest.get("splits", []):
        raise LayoutError(
            f"{root} has no {split!r} split; it holds {', '.join(manifest.get('splits', []))}"
        )
    return ocid_vlg.OCIDVLGDataset(root, split, version=SYNTH_VERSION)


def _prepare_out(out: Path) -> None:
    """Make ``out`` an empty folder or clear a previous synth output in it; refuse otherwise."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if read_manifest(out) is None:
            raise InputError(
                f"{out} is not empty and is not a previous `langgrasp synth` output (no "
                f"{MANIFEST}); refusing to write into it: choose a new or empty folder"
            )
        # Remove only what a previous run wrote.
        shutil.rmtree(out / ocid_vlg.REFER_DIR / SYNTH_VERSION, ignore_errors=True)
        shutil.rmtree(out / SYNTH_VERSION, ignore_errors=True)
        refer = out / ocid_vlg.REFER_DIR
        if refer.is_dir() and not any(refer.iterdir()):
            refer.rmdir()
    out.mkdir(parents=True, exist_ok=True)


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    atomic_write_json(out / MANIFEST, manifest)


def scene_row(scene: SceneSample, image_filename: str, answer: int) -> dict[str, Any]:
    """The OCID-VLG expression row of ``scene``; ``answer`` is its target id in the instance map."""
    return ocid_vlg.expression_row(
        image_filename=image_filename,
        question=scene.text,
        answer=answer,
        target=scene.target_name,
        box=ocid_vlg.mask_box(scene.mask),
        grasps=scene.grasps,
        question_index=scene.seed,
        **scene_meta(scene),
    )


def write_synthetic_set(
    out: str | os.PathLike,
    n: int,
    seed: int = 0,
    splits: Sequence[str] = DEFAULT_SPLITS,
    scene_config: SceneConfig | Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Render ``n`` scenes per split and write them in the OCID-VLG layout under ``out``.

    The manifest is written first with ``"complete": false`` and rewritten at the end; each
    split's expressions file appears atomically once all its images are written. A crash thus
    leaves a folder that :func:`open_synthetic` refuses and that a new run may overwrite.

    Args:
        out: Output folder: new, empty, or a previous output of this function (cleared first).
        n: Scenes per split.
        seed: Dataset seed (:func:`~langgrasp.datasets.synthetic.split_scene_seed`).
        splits: Keys of ``SPLITS`` to write.
        scene_config: Scene parameters or a dict of SceneConfig fields (default
            ``SceneConfig()``, 640x480).
        progress: Show a tqdm progress bar.

    Returns:
        The manifest (also in ``out/synth.json``).

    Raises:
        InputError: Bad n, seed or splits; ``out`` is a file or a non-empty foreign folder; a
            scene that cannot be rendered with ``scene_config``.
    """
    from langgrasp import __version__

    out = Path(out)
    _check_int("n", n, 1)
    _check_int("seed", seed, 0)
    if isinstance(splits, str) or not splits:
        raise InputError(f"expected a non-empty list of split names, got {splits!r}")
    splits = [_check_split(s) for s in splits]
    if len(set(splits)) != len(splits):
        raise InputError(f"split names repeat in {splits}")
    split_scene_seed(splits[0], seed, n - 1)  # rejects n or seed beyond the seed blocks
    cfg = as_scene_config(scene_config)

    _prepare_out(out)
    manifest = {
        "generator": GENERATOR,
        "format": "ocid-vlg",
        "version": SYNTH_VERSION,
        "langgrasp_version": __version__,
        "n": n,
        "seed": seed,
        "splits": splits,
        "complete": False,
        "scene_config": dataclasses.asdict(cfg),
        "held_out_combos": sorted(map(list, HELD_OUT_COMBOS)),
        "held_out_wordings": {k: list(v) for k, v in HELD_OUT_TEMPLATES.items()},
    }
    _write_manifest(out, manifest)

    from tqdm import tqdm

    with tqdm(total=n * len(splits), desc="synth", unit="scene", disable=not progress) as bar:
        for split in splits:
            rows = []
            for i in range(n):
                scene = render_scene(split_scene_seed(split, seed, i), cfg, split)
                image_filename = f"{SYNTH_VERSION}/{split},{i:06d}.png"
                ids, answer = instance_map(scene)
                ocid_vlg.write_image_files(out, image_filename, scene.rgb, scene.depth, ids)
                rows.append(scene_row(scene, image_filename, answer))
                bar.update()
            ocid_vlg.write_expressions(out, SYNTH_VERSION, split, rows)
    manifest["complete"] = True
    _write_manifest(out, manifest)
    return manifest


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT such as 640x480, got {text!r}"
        ) from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return width, height


def _cmd_synth(args: argparse.Namespace) -> int:
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    cfg = SceneConfig().resized(*args.size)
    manifest = write_synthetic_set(args.out, args.n, args.seed, splits, cfg)
    width, height = args.size
    print(
        f"wrote {args.n} scenes x {len(splits)} splits ({', '.join(splits)}), {width}x{height}, "
        f"seed {args.seed}, to {args.out} (OCID-VLG layout, version {SYNTH_VERSION!r}; "
        f"manifest {Path(args.out) / MANIFEST}, langgrasp {manifest['langgrasp_version']})"
    )
    print(f"read it with: open_dataset('synthetic', {str(args.out)!r}, '{splits[0]}')")
    return 0


def register_cli(sub: Any) -> None:
    """Add ``langgrasp synth`` to the CLI's subparsers."""
    parser = sub.add_parser(
        "synth",
        help="write synthetic scenes to disk in the OCID-VLG format",
        description="Render synthetic table-top scenes (train/val/test plus the held-out "
        "test-unseen-combos and test-unseen-phrasing splits) and write them as an OCID-VLG "
        "folder, version 'synthetic', readable by the OCID-VLG loader.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    parser.add_argument(
        "--n", type=int, default=200, help="scenes per split (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: %(default)s)")
    parser.add_argument(
        "--splits",
        default=",".join(DEFAULT_SPLITS),
        help="comma-separated splits (default: %(default)s)",
    )
    parser.add_argument(
        "--size",
        type=_parse_size,
        default=(640, 480),
        metavar="WxH",
        help="image size; intrinsics scale with it (default: 640x480)",
    )
    parser.set_defaults(func=_cmd_synth)
