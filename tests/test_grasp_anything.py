"""Grasp-Anything++ loader on small fixtures written in both real layouts.

The builders below are also used by tests/test_data_check.py.
"""

import hashlib
import logging
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from langgrasp.datasets.base import LayoutError, SampleError, open_dataset
from langgrasp.datasets.grasp_anything import (
    GUIDE_TREE,
    RELEASE_TREE,
    GraspAnythingDataset,
    Reason,
    grasp_from_row,
    read_id_list,
)
from langgrasp.errors import InputError

ROOT = str(Path(__file__).resolve().parents[1])
SIZE = 64  # fixture images; one test uses the real 416
# Real positive label rows printed in nhatchung14/Grasp-Anything-PG data-understanding.ipynb
# (shared/research/datasets.md 2.3), instruction "Grab sunglasses on its eyewear.".
REAL_ROWS = [
    [0.1762, 348.05, 177.32, 165.32, 37.64, 173.00],
    [0.1284, 345.24, 154.11, 118.94, 54.14, 7.61],
    [0.1280, 366.27, 179.09, 136.98, 43.57, 177.49],
    [0.1037, 348.45, 179.62, 151.67, 36.59, 10.97],
]
REAL_TEXT = "Grab sunglasses on its eyewear."
SMALL_ROWS = [[0.5, 32.0, 30.0, 20.0, 8.0, 173.0], [0.4, 30.0, 33.0, 16.0, 6.0, 7.61]]
RELEASE_DIRS = ("image", "grasp_instructions", "grasp_label_positive", "part_mask")
GUIDE_DIRS = ("image", "grasp_instructions", "grasp_label")


def sha(name: str) -> str:
    """A SHA-256 hex name like the real image names."""
    return hashlib.sha256(name.encode()).hexdigest()


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def make_release(root: Path) -> Path:
    for d in RELEASE_DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


def make_guide(root: Path, groups=("seen", "unseen")) -> Path:
    for g in groups:
        for d in GUIDE_DIRS:
            (root / g / d).mkdir(parents=True, exist_ok=True)
    return root


def write_sample(
    base: Path,
    stem: str,
    *,
    label_dir: str = "grasp_label_positive",
    text=REAL_TEXT,
    rows=SMALL_ROWS,
    mask=True,
    image=True,
    size: int = SIZE,
    bgr=(200, 80, 40),
) -> None:
    """Write one sample's files under ``base`` (a release root or a guide group folder).

    ``text``/``rows``/``mask``/``image``: None or False to omit the file, raw ``bytes`` to write
    a corrupt file, or the content (a str or any picklable for the instruction; a list, an
    array or a tensor for the label; an array or True for the mask).
    """
    image_sha = stem.split("_")[0]
    jpg = base / "image" / f"{image_sha}.jpg"
    if isinstance(image, bytes):
        jpg.write_bytes(image)
    elif image and not jpg.exists():
        picture = np.zeros((size, size, 3), np.uint8)
        picture[:] = bgr
        assert cv2.imwrite(str(jpg), picture)
    if text is not None:
        data = text if isinstance(text, bytes) else pickle.dumps(text)
        (base / "grasp_instructions" / f"{stem}.pkl").write_bytes(data)
    if rows is not None:
        path = base / label_dir / f"{stem}.pt"
        if isinstance(rows, bytes):
            path.write_bytes(rows)
        else:
            tensor = rows if isinstance(rows, torch.Tensor) else torch.tensor(rows)
            torch.save(tensor.to(torch.float32) if tensor.is_floating_point() else tensor, path)
    if mask is True:
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4 : size // 2, size // 4 : size // 2] = 1
    if isinstance(mask, (bytes, np.ndarray)):
        (base / "part_mask").mkdir(exist_ok=True)  # optional in the guide layout
    if isinstance(mask, bytes):
        (base / "part_mask" / f"{stem}.npy").write_bytes(mask)
    elif isinstance(mask, np.ndarray):
        np.save(base / "part_mask" / f"{stem}.npy", mask, allow_pickle=True)


def write_split_lists(root: Path, lists: dict[str, list[str]], folder="split/grasp-anything++"):
    """``lists``: {"test/seen": [ids], ...}; pickled like the released .obj files."""
    for name, ids in lists.items():
        path = root / folder / f"{name}.obj"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(ids))


def broken_release_samples(root: Path, marker: Path) -> dict[str, str]:
    """Write one broken sample per SampleError reason into a release root; {stem: reason}."""
    nan_rows = [[0.5, 32.0, 30.0, float("nan"), 8.0, 10.0]]
    cases = {
        Reason.MISSING_IMAGE: {"image": False},
        Reason.UNREADABLE_IMAGE: {"image": b"\xff\xd8 this is not a jpeg"},
        Reason.MISSING_INSTRUCTION: {"text": None},
        Reason.UNREADABLE_INSTRUCTION: {"text": b"garbage, not a pickle"},
        Reason.REFUSED_PICKLE: {"text": pickle.dumps(_System(f"touch {marker}"))},
        Reason.INSTRUCTION_NOT_STR: {"text": ["Grab the mug."]},
        Reason.EMPTY_INSTRUCTION: {"text": "   "},
        Reason.MISSING_LABEL: {"rows": None},
        Reason.UNREADABLE_LABEL: {"rows": b"PK\x03\x04 truncated zip"},
        Reason.LABEL_SHAPE: {"rows": torch.zeros(3, 5)},
        Reason.NO_GRASPS: {"rows": torch.zeros(0, 6)},
        Reason.NON_FINITE_LABEL: {"rows": nan_rows},
        Reason.NEGATIVE_SIZE: {"rows": [[0.5, 32.0, 30.0, 20.0, -1.0, 10.0]]},
        Reason.UNREADABLE_MASK: {"mask": np.array([{"evil": 1}], dtype=object)},
        Reason.MASK_SHAPE: {"mask": np.ones((SIZE // 2, SIZE), np.uint8)},
    }
    stems = {}
    for i, (reason, kwargs) in enumerate(cases.items()):
        stem = f"{sha('broken' + reason)}_{i}_0"
        write_sample(root, stem, **kwargs)
        stems[stem] = reason
    return stems


# ---------------------------------------------------------------------------- conversions


def test_real_rows_convert_to_ccw_angles_and_match_cv2_box_points():
    expected_deg = [7.0, -7.61, 2.51, -10.97]  # -theta wrapped into [-90, 90)
    for row, deg in zip(REAL_ROWS, expected_deg, strict=True):
        g = grasp_from_row(row)
        q, x, y, w, h, theta = row
        assert (g.x, g.y, g.width, g.height, g.quality) == (x, y, w, h, q)
        assert math.degrees(g.angle) == pytest.approx(deg, abs=1e-9)
        assert -math.pi / 2 <= g.angle < math.pi / 2
        # GraspMAS draws GA labels with cv2.boxPoints(((x, y), (w, h), theta)) (datasets.md 2.3):
        # the same rectangle, so the same four corners in some order.
        box = cv2.boxPoints(((x, y), (w, h), theta)).astype(np.float64)
        ours = g.corners()
        distance = np.linalg.norm(ours[:, None, :] - box[None, :, :], axis=2)
        assert np.allclose(distance.min(axis=1), 0, atol=1e-3)
        assert np.allclose(distance.min(axis=0), 0, atol=1e-3)
        # The opening axis (first two corners -> last two) is along w, tilted by theta clockwise
        # on screen (y down): for theta = 7.61 deg it goes down to the right.
        axis = ours[2] - ours[1]
        assert np.linalg.norm(axis) == pytest.approx(w)
        assert math.degrees(math.atan2(axis[1], axis[0])) % 180 == pytest.approx(theta % 180)


def test_grasp_from_row_rejects_wrong_length():
    with pytest.raises(InputError, match="6 values"):
        grasp_from_row([1.0, 2.0, 3.0])


# ------------------------------------------------------------------------ release layout


def test_real_size_sample_loads_with_real_rows(tmp_path):
    root = make_release(tmp_path)
    (root / "scene_description").mkdir()
    stem = f"{sha('sunglasses')}_3_1"
    write_sample(root, stem, rows=REAL_ROWS, size=416, bgr=(30, 40, 220))  # red in BGR
    names = ["a table", "a lamp", "a book", "sunglasses"]
    (root / "scene_description" / f"{stem.split('_')[0]}.pkl").write_bytes(
        pickle.dumps(("sunglasses on a table with a lamp", names))
    )
    ds = GraspAnythingDataset(root, "all")
    assert ds.layout == "release" and len(ds) == 1 and ds.sample_id(0) == stem
    s = ds[0]
    assert s.rgb.shape == (416, 416, 3) and s.rgb.dtype == np.uint8
    assert s.rgb[..., 0].mean() > 200 and s.rgb[..., 2].mean() < 60  # RGB, not BGR
    assert s.depth is None
    assert s.mask.shape == (416, 416) and s.mask.dtype == bool and s.mask.sum() == 104 * 104
    assert s.text == REAL_TEXT and s.target_name == "sunglasses"
    assert [g.x for g in s.grasps] == pytest.approx([r[1] for r in REAL_ROWS], abs=1e-4)
    assert [g.width for g in s.grasps] == pytest.approx([r[3] for r in REAL_ROWS], abs=1e-4)
    assert math.degrees(s.grasps[0].angle) == pytest.approx(7.0, abs=1e-4)
    assert s.meta == {
        "sha": stem.split("_")[0],
        "object": 3,
        "part": 1,
        "layout": "release",
        "target_name_source": "scene_description",
    }


def test_target_name_falls_back_to_object_index_and_mask_to_none(tmp_path):
    root = make_release(tmp_path)
    (root / "scene_description").mkdir()
    a, b = f"{sha('a')}_12_0", f"{sha('b')}_2_0"
    write_sample(root, a, mask=None)
    write_sample(root, b)
    # b's description has only 2 names: index 2 is out of range -> fall back too.
    (root / "scene_description" / f"{sha('b')}.pkl").write_bytes(pickle.dumps(("c", ["x", "y"])))
    ds = GraspAnythingDataset(root, "all")
    by_id = {ds.sample_id(i): ds[i] for i in range(len(ds))}
    assert by_id[a].target_name == "12" and by_id[a].mask is None
    assert by_id[a].meta["target_name_source"] == "object index"
    assert by_id[b].target_name == "2" and by_id[b].mask is not None


@pytest.fixture
def split_root(tmp_path):
    """Release root with multi-digit object and part ids and LGD-style .obj lists."""
    root = make_release(tmp_path)
    s1, s2 = sha("scene1"), sha("scene2")
    stems = [f"{s1}_1_0", f"{s1}_1_12", f"{s1}_12_0", f"{s1}_2_3", f"{s2}_0_0", f"{s2}_10_1"]
    for stem in stems:
        write_sample(root, stem)
    write_split_lists(
        root,
        {
            "train/seen": [f"{s1}_2"],
            "test/seen": [f"{s1}_1", f"{sha('absent')}_4"],
            "test/unseen": [f"{s1}_12", f"{s2}_10"],
        },
    )
    return root, s1, s2


def test_release_splits_match_objects_with_multi_digit_ids(split_root):
    root, s1, s2 = split_root

    def ids(split, **kw):
        ds = GraspAnythingDataset(root, split, **kw)
        return {ds.sample_id(i): ds.group(i) for i in range(len(ds))}

    assert ids("test/seen") == {f"{s1}_1_0": "seen", f"{s1}_1_12": "seen"}
    assert ids("test/unseen") == {f"{s1}_12_0": "unseen", f"{s2}_10_1": "unseen"}
    assert ids("train/seen") == ids("train") == {f"{s1}_2_3": "seen"}
    assert ids("test") == {**ids("test/seen"), **ids("test/unseen")}
    assert ids("seen") == {**ids("train/seen"), **ids("test/seen")}
    assert ids("unseen") == ids("test/unseen")
    every = ids("all")
    assert len(every) == 6 and every[f"{s2}_0_0"] is None  # in no list: group unknown
    assert GraspAnythingDataset(root, "test/seen").n_missing_objects == 1  # the absent object


def test_release_meta_group_and_explicit_split_file(split_root, tmp_path):
    root, _, s2 = split_root
    ds = GraspAnythingDataset(root, "test")
    assert {ds[i].meta["group"] for i in range(len(ds))} == {"seen", "unseen"}
    custom = tmp_path / "mine.obj"
    custom.write_bytes(pickle.dumps([f"{s2}_0"]))
    ds = GraspAnythingDataset(root, "unseen", split_file=custom)
    assert [ds.sample_id(i) for i in range(len(ds))] == [f"{s2}_0_0"]
    assert ds[0].meta["group"] == "unseen" and ds.split_lists == [custom]
    ds = GraspAnythingDataset(root, "val", split_file=custom)
    assert "group" not in ds[0].meta


def test_release_split_errors(tmp_path, split_root):
    root, s1, _ = split_root
    with pytest.raises(InputError, match="unknown split 'validation'"):
        GraspAnythingDataset(root, "validation")
    bare = make_release(tmp_path / "bare")
    write_sample(bare, f"{s1}_0_0")
    with pytest.raises(LayoutError, match=r"split 'test/unseen' needs .* id lists"):
        GraspAnythingDataset(bare, "test/unseen")
    write_split_lists(bare, {"seen": [f"{sha('nothing')}_0"]}, folder="split")
    with pytest.raises(LayoutError, match=r"lists 1 objects .* none of them"):
        GraspAnythingDataset(bare, "seen")
    bad = tmp_path / "bad.obj"
    bad.write_bytes(pickle.dumps([f"{s1}_0_0"]))  # part-level id, not "<sha>_<obj>"
    with pytest.raises(LayoutError, match='expected "<sha>_<obj>" strings'):
        GraspAnythingDataset(bare, "seen", split_file=bad)
    evil = tmp_path / "evil.obj"
    evil.write_bytes(pickle.dumps(_System(f"touch {tmp_path / 'pwned'}")))
    with pytest.raises(LayoutError, match="refused"):
        GraspAnythingDataset(bare, "seen", split_file=evil)
    assert not (tmp_path / "pwned").exists()


def test_read_id_list_reads_released_format(tmp_path):
    path = tmp_path / "seen.obj"
    ids = [f"{sha(str(i))}_{i}" for i in range(30)]
    path.write_bytes(pickle.dumps(ids))
    assert read_id_list(path) == ids


def test_ignored_files_are_counted(tmp_path, caplog):
    root = make_release(tmp_path)
    write_sample(root, f"{sha('x')}_0_0")
    torch.save(torch.zeros(1, 6), root / "grasp_label_positive" / f"{sha('base')}_0.pt")
    (root / "grasp_instructions" / "notes.pkl").write_bytes(pickle.dumps("hi"))
    with caplog.at_level(logging.WARNING):
        ds = GraspAnythingDataset(root, "all")
    assert len(ds) == 1 and ds.n_ignored_files == 2
    assert "skipped 2 files" in caplog.text


# -------------------------------------------------------------------------- guide layout


def test_guide_layout_detected_with_folder_splits(tmp_path, caplog):
    root = make_guide(tmp_path)
    seen = [f"{sha('s1')}_0_0", f"{sha('s1')}_0_1", f"{sha('s2')}_5_2"]
    unseen = [f"{sha('u1')}_11_0"]
    for stem in seen:
        write_sample(root / "seen", stem, label_dir="grasp_label", mask=stem == seen[1])
    for stem in unseen:
        write_sample(root / "unseen", stem, label_dir="grasp_label", mask=None)
    with caplog.at_level(logging.INFO, logger="langgrasp.datasets.grasp_anything"):
        ds = GraspAnythingDataset(root, "all")
    assert "detected the guide layout" in caplog.text
    assert ds.layout == "guide" and len(ds) == 4
    assert [ds.sample_id(i) for i in range(4)] == [f"seen/{s}" for s in sorted(seen)] + [
        f"unseen/{unseen[0]}"
    ]
    s = ds[3]
    assert s.meta["group"] == "unseen" and s.meta["object"] == 11 and s.meta["layout"] == "guide"
    assert s.mask is None and len(s.grasps) == len(SMALL_ROWS)
    index = {ds.sample_id(i): i for i in range(len(ds))}
    assert ds[index[f"seen/{seen[1]}"]].mask.any() and ds[index[f"seen/{seen[0]}"]].mask is None
    assert len(GraspAnythingDataset(root, "seen")) == 3
    assert {ds.group(i) for i in range(len(ds))} == {"seen", "unseen"}
    only_unseen = open_dataset("grasp-anything", root, "unseen")
    assert isinstance(only_unseen, GraspAnythingDataset) and len(only_unseen) == 1
    with pytest.raises(InputError, match="split_file applies to the release layout"):
        GraspAnythingDataset(root, "seen", split_file=tmp_path / "x.obj")
    with pytest.raises(InputError, match="unknown split 'test'"):
        GraspAnythingDataset(root, "test")


def test_guide_split_folder_missing(tmp_path):
    root = make_guide(tmp_path, groups=("seen",))
    write_sample(root / "seen", f"{sha('s')}_0_0", label_dir="grasp_label")
    assert len(GraspAnythingDataset(root, "all")) == 1
    with pytest.raises(LayoutError, match="split 'unseen' needs the folder unseen/"):
        GraspAnythingDataset(root, "unseen")


# ------------------------------------------------------------------------ layout errors


def test_neither_layout_names_both_trees_and_what_is_missing(tmp_path):
    (tmp_path / "image").mkdir()
    (tmp_path / "grasp_instructions").mkdir()
    with pytest.raises(LayoutError) as info:
        GraspAnythingDataset(tmp_path, "all")
    message = str(info.value)
    assert GUIDE_TREE in message and RELEASE_TREE in message
    assert "guide layout: seen/ or unseen/" in message
    assert "release layout: grasp_label_positive/, part_mask/" in message
    assert "missing:" in message


def test_incomplete_guide_and_forced_layout_and_ambiguity(tmp_path):
    root = tmp_path / "g"
    (root / "seen" / "image").mkdir(parents=True)
    with pytest.raises(LayoutError, match="seen/grasp_instructions/, seen/grasp_label/"):
        GraspAnythingDataset(root, "seen")
    release = make_release(tmp_path / "r")
    write_sample(release, f"{sha('x')}_0_0")
    with pytest.raises(LayoutError, match="not a guide-layout folder") as info:
        GraspAnythingDataset(release, "all", layout="guide")
    assert RELEASE_TREE not in str(info.value) and GUIDE_TREE in str(info.value)
    assert GraspAnythingDataset(release, "all", layout="release").layout == "release"
    make_guide(release)
    with pytest.raises(LayoutError, match="pass layout='guide' or layout='release'"):
        GraspAnythingDataset(release, "all")
    assert len(GraspAnythingDataset(release, "all", layout="release")) == 1


def test_bad_root_and_options(tmp_path):
    with pytest.raises(InputError, match="--data-root"):
        GraspAnythingDataset(None, "all")
    with pytest.raises(LayoutError, match="not a folder"):
        GraspAnythingDataset(tmp_path / "nope", "all")
    with pytest.raises(InputError, match="unknown layout"):
        GraspAnythingDataset(tmp_path, "all", layout="hf")
    make_release(tmp_path)
    with pytest.raises(LayoutError, match="no instruction"):
        GraspAnythingDataset(tmp_path, "all")


# ------------------------------------------------------------------------- broken samples


def test_every_sample_error_reason(tmp_path):
    root = make_release(tmp_path / "ga")
    marker = tmp_path / "pwned"
    broken = broken_release_samples(root, marker)
    good = f"{sha('good')}_0_0"
    write_sample(root, good)
    ds = GraspAnythingDataset(root, "all")
    assert len(ds) == len(broken) + 1
    seen_reasons = set()
    for i in range(len(ds)):
        sid = ds.sample_id(i)
        if sid == good:
            assert ds.load(i).text == REAL_TEXT
            continue
        with pytest.raises(SampleError) as info:
            ds.load(i)
        assert info.value.reason == broken[sid], str(info.value)
        assert str(info.value).startswith(f"{sid}: {broken[sid]}: ")
        seen_reasons.add(info.value.reason)
    reasons = {v for k, v in vars(Reason).items() if k.isupper()}
    assert seen_reasons == reasons
    assert not marker.exists()  # the refused pickle ran nothing


def test_load_index_out_of_range(tmp_path):
    root = make_release(tmp_path)
    write_sample(root, f"{sha('x')}_0_0")
    ds = GraspAnythingDataset(root, "all")
    with pytest.raises(IndexError):
        ds.load(1)
    assert ds[-1].sample_id == ds.sample_id(0)


def test_module_imports_without_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "import langgrasp.datasets.grasp_anything, langgrasp.datasets.safe_pickle\n"
        "import langgrasp.datasets.check\n"
        "print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
