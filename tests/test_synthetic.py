import math
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from langgrasp.datasets.synthetic import (
    HELD_OUT_COMBOS,
    HELD_OUT_TEMPLATES,
    OBJECT_KINDS,
    PALETTE,
    SPLIT_SEED_STRIDE,
    SPLITS,
    TEMPLATE_FAMILIES,
    TEMPLATES,
    SceneConfig,
    instance_map,
    render_scene,
    split_scene_seed,
)
from langgrasp.errors import InputError

N_SEEDS = 200
ROOT = str(Path(__file__).resolve().parents[1])  # for subprocesses
CFG = SceneConfig()
PPM = CFG.pixels_per_metre


@pytest.fixture(scope="module")
def scenes():
    """Instruction-level facts of many scenes (images dropped to keep memory low)."""
    out = []
    for seed in range(N_SEEDS):
        s = render_scene(seed)
        out.append((s.family, s.text, s.target_index, s.target_part, s.objects, s.mask, s.grasps))
    return out


def test_same_seed_same_scene_and_different_seed_differs():
    a, b, c = render_scene(7), render_scene(7), render_scene(8)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert (a.text, a.grasps, a.objects) == (b.text, b.grasps, b.objects)
    assert not np.array_equal(a.rgb, c.rgb)
    assert not np.array_equal(a.depth, c.depth)


def test_deterministic_across_processes_with_different_hash_seeds():
    code = (
        "from langgrasp.datasets.synthetic import render_scene\n"
        "print([(s.text, len(s.grasps)) for s in map(render_scene, range(25))])"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": ROOT}
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        outputs.add(res.stdout)
    assert len(outputs) == 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_shapes_dtypes_and_ranges(seed):
    s = render_scene(seed)
    assert s.rgb.shape == (480, 640, 3) and s.rgb.dtype == np.uint8
    assert s.depth.shape == (480, 640) and s.depth.dtype == np.float32
    assert s.mask.shape == (480, 640) and s.mask.dtype == bool and s.mask.any()
    valid = s.depth[s.depth > 0]
    assert valid.size > 0.95 * s.depth.size
    assert valid.min() > 0.4 and valid.max() < CFG.camera_height_m + 0.05
    np.testing.assert_allclose(s.intrinsics, [[615, 0, 320], [0, 615, 240], [0, 0, 1]])
    assert CFG.min_objects <= len(s.objects) <= CFG.max_objects
    assert s.grasps and all(g.quality == 1.0 for g in s.grasps)
    assert all(-math.pi / 2 <= g.angle < math.pi / 2 for g in s.grasps)
    assert s.family in TEMPLATE_FAMILIES and s.text and s.seed == seed
    assert s.target_name == s.objects[s.target_index].name


def _extent_along(mask, x, y, angle):
    """Pixels the mask spans along the opening axis through (x, y)."""
    u = np.array([math.cos(angle), -math.sin(angle)])
    ends = []
    for sign in (1, -1):
        t = 0.0
        while True:
            px, py = np.round(np.array([x, y]) + sign * (t + 0.5) * u).astype(int)
            if not (0 <= py < mask.shape[0] and 0 <= px < mask.shape[1]) or not mask[py, px]:
                break
            t += 0.5
        ends.append(t)
    return sum(ends)


def test_grasps_lie_on_target_and_span_it(scenes):
    margin_px = CFG.grasp_margin_m * PPM
    for _, _, _, _, _, mask, grasps in scenes[:60]:
        assert grasps
        for g in grasps:
            assert mask[round(g.y), round(g.x)], "grasp centre off the target mask"
            extent = _extent_along(mask, g.x, g.y, g.angle)
            # The opening covers what the mask spans along the axis, plus the margin.
            assert extent - 2 <= g.width <= extent + margin_px + 3
            assert g.width <= CFG.gripper_max_opening_m * PPM + 1e-6
            assert g.height == pytest.approx(CFG.jaw_ratio * g.width)
            for k in (g.corners()[[0, 1]].mean(0), g.corners()[[2, 3]].mean(0)):
                kx, ky = np.round(k).astype(int)
                assert not mask[ky, kx], "jaw lands on the object"


def test_depth_on_target_is_nearer_than_the_table_around_it():
    ring_px = 5  # narrower than the gap between objects, so the ring is table only
    kernel = np.ones((2 * ring_px + 1,) * 2, np.uint8)
    for seed in range(15):
        s = render_scene(seed)
        if s.target_part is not None:  # a handle's ring includes the mug's body
            continue
        valid = s.depth > 0
        ring = cv2.dilate(s.mask.astype(np.uint8), kernel).astype(bool) & ~s.mask & valid
        table = np.median(s.depth[ring])
        top = np.percentile(s.depth[s.mask & valid], 25)  # a mug's inside is lower than its rim
        thinnest = min(OBJECT_KINDS["disc"].sizes["height"])
        assert top < table - thinnest / 2
        assert abs(table - CFG.camera_height_m) < 0.03  # tilt is small


def test_every_template_family_appears(scenes):
    counts = Counter(f for f, *_ in scenes)
    assert set(counts) == set(TEMPLATE_FAMILIES)
    texts = {f: [t for ff, t, *_ in scenes if ff == f] for f in TEMPLATE_FAMILIES}
    assert any("closest to the" in t or "nearest the" in t for t in texts["location"])
    assert any(" on the " in t or " at the " in t for t in texts["location"])
    assert all(" next to " in t or " beside " in t for t in texts["relation"])
    assert all(" by " in t and "handle" in t for t in texts["part"])


def _outline(obj):
    """Points on every part's outline (rectangle corners, 64 points per circle)."""
    for p in obj.parts:
        if p.shape == "rect":
            yield from p.corners()
        else:
            t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
            yield from np.stack([np.cos(t), np.sin(t)], 1) * p.length / 2 + p.centre


def test_instructions_are_unambiguous(scenes):
    for family, text, target, part, objects, mask, _ in scenes:
        obj = objects[target]
        same_kind = [o for o in objects if o.name == obj.name]
        assert len({(o.name, o.colour) for o in objects}) == len(objects)
        if family == "name":
            assert len(same_kind) == 1 and obj.name in text
        elif family == "attribute":
            assert f"{obj.colour} {obj.name}" in text and obj.colour in PALETTE
        elif family == "location":
            side = next(s for s in ("left", "right", "top", "bottom") if s in text)
            axis, sign = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}[side]
            if "object" in text:  # "closest to the left": the footprint reaching furthest
                best = min(objects, key=lambda o: min(sign * v[axis] for v in _outline(o)))
            else:  # "the ball on the left": the leftmost centre of its kind
                best = min(same_kind, key=lambda o: sign * o.centre[axis])
            assert best.index == target
        elif family == "part":
            assert part in OBJECT_KINDS[obj.name].phrase_parts
            # The mask is the visible part only: it lies within the part's shape (rasterising
            # tolerance 1.5 px) and covers its centre.
            shape = obj.part(part)
            grown = replace(shape, length=shape.length + 3, width=shape.width + 3)
            ys, xs = np.nonzero(mask)
            assert grown.contains(np.stack([xs, ys], 1).astype(float)).all()
            assert mask[round(shape.centre[1]), round(shape.centre[0])]
        else:
            assert obj.name in text


def test_custom_config_size():
    cfg = SceneConfig(height=240, width=320, fx=307.5, fy=307.5, cx=160.0, cy=120.0)
    s = render_scene(3, cfg)
    assert s.rgb.shape == (240, 320, 3) and s.depth.shape == (240, 320)
    assert s.mask.any() and s.grasps


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_seed_raises(seed):
    with pytest.raises(InputError, match="non-negative integer seed"):
        render_scene(seed)


def test_bad_config_raises():
    with pytest.raises(InputError, match="min_objects"):
        SceneConfig(min_objects=4, max_objects=2)
    with pytest.raises(InputError, match="positive"):
        SceneConfig(height=0)


# --- held-out splits ---------------------------------------------------------------------------

SMALL = SceneConfig().resized(160, 120)
N_SPLIT_SCENES = 40


def _pattern(wording):
    """Regex matching any text formatted from ``wording``."""
    return re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(wording)) + "$")


@pytest.fixture(scope="module")
def split_scenes():
    return {
        split: [
            render_scene(split_scene_seed(split, 0, i), SMALL, split) for i in range(N_SPLIT_SCENES)
        ]
        for split in SPLITS
    }


def test_held_out_lists_keep_every_kind_colour_and_template_seen():
    seen = {(c, k) for c in PALETTE for k in OBJECT_KINDS} - HELD_OUT_COMBOS
    assert {(c, k) for c in PALETTE for k in OBJECT_KINDS} > HELD_OUT_COMBOS
    assert {k for _, k in seen} == set(OBJECT_KINDS) and {c for c, _ in seen} == set(PALETTE)
    assert set(HELD_OUT_TEMPLATES) == set(TEMPLATES)
    for key, held in HELD_OUT_TEMPLATES.items():
        fields = {tuple(sorted(re.findall(r"\{(\w+)\}", w))) for w in (*held, *TEMPLATES[key])}
        assert len(fields) == 1, key  # same placeholders, so any instruction can use either
        for w in held:  # no held-out wording can produce a seen text, or the reverse
            assert w not in TEMPLATES[key]
            assert not any(
                _pattern(w).match(s.replace("{", "").replace("}", "")) for s in TEMPLATES[key]
            )


def test_seen_splits_never_show_held_out_combos(split_scenes):
    for split in ("train", "val", "test", "test-unseen-phrasing"):
        for s in split_scenes[split]:
            assert not {(o.colour, o.name) for o in s.objects} & HELD_OUT_COMBOS, split
            assert s.split == split


def test_unseen_combo_targets_are_held_out_pairs(split_scenes):
    targets = set()
    for s in split_scenes["test-unseen-combos"]:
        target = s.objects[s.target_index]
        targets.add((target.colour, target.name))
        assert s.wording in TEMPLATES[_key(s.wording)]
    assert targets <= HELD_OUT_COMBOS and len(targets) > 1


def _key(wording):
    return next(k for k, v in TEMPLATES.items() if wording in v)


def test_wordings_per_split(split_scenes):
    seen = [w for ws in TEMPLATES.values() for w in ws]
    held = [w for ws in HELD_OUT_TEMPLATES.values() for w in ws]
    for split, scenes in split_scenes.items():
        pool = held if split == "test-unseen-phrasing" else seen
        for s in scenes:
            assert s.wording in pool and _pattern(s.wording).match(s.text), (split, s.text)
    families = {s.family for s in split_scenes["test-unseen-phrasing"]}
    assert len(families) >= 3


def test_unrestricted_scenes_use_every_combo_and_seen_wordings(scenes):
    combos = {(o.colour, o.name) for *_, objects, _, _ in scenes for o in objects}
    assert combos & HELD_OUT_COMBOS
    seen = [w for ws in TEMPLATES.values() for w in ws]
    assert all(any(_pattern(w).match(text) for w in seen) for _, text, *_ in scenes)


def test_split_scene_seed_blocks():
    assert split_scene_seed("train", 0, 5) == 5
    assert split_scene_seed("val", 0, 0) == SPLIT_SEED_STRIDE
    assert split_scene_seed("train", 1, 0) == len(SPLITS) * SPLIT_SEED_STRIDE
    for args in [("dev", 0, 0), ("train", -1, 0), ("train", 0, SPLIT_SEED_STRIDE), ("val", 0, 1.0)]:
        with pytest.raises(InputError):
            split_scene_seed(*args)
    with pytest.raises(InputError, match="unknown synthetic split"):
        render_scene(0, split="dev")


def test_instance_map_reproduces_the_mask(split_scenes):
    kinds = set()
    for s in (s for scenes in split_scenes.values() for s in scenes[:10]):
        ids, target = instance_map(s)
        np.testing.assert_array_equal(ids == target, s.mask)
        if s.target_part is None:
            assert target == s.target_index + 1
        else:
            assert target == len(s.objects) + 1
        kinds.add(s.target_part is None)
        assert set(np.unique(ids)) <= set(range(len(s.objects) + 2))
    assert kinds == {True, False}


def test_resized_config_keeps_the_field_of_view():
    small = CFG.resized(320, 240)
    np.testing.assert_allclose(small.intrinsics, [[307.5, 0, 160], [0, 307.5, 120], [0, 0, 1]])
    assert small.pixels_per_metre == pytest.approx(PPM / 2)
