"""Deterministic synthetic table-top RGB-D scenes with instructions, masks and grasps.

This is the project's embedded default data: tests and smoke training run on it without any
download. A camera looks straight down at a table; simple objects (boxes, bars, tools, balls, discs,
mugs) lie on it, drawn as rotated rectangles and circles. Each call of :func:`render_scene` picks a
target object, writes an unambiguous instruction for it and returns its mask and antipodal grasps.

Frames and units: images are ``(H, W)`` with x to the right and y down; grasps follow
:mod:`langgrasp.detector.grasp` (pixels, radians counter-clockwise on screen). Object sizes are
drawn in metres and projected with the pinhole intrinsics at the table depth (an orthographic
footprint; the small perspective growth of tall objects is ignored). Depth is the z distance
along the optical axis in metres, 0 where invalid, like an aligned RealSense depth frame.

To add an object kind, write a builder that returns its parts in the object frame and register an
:class:`ObjectKind` in ``OBJECT_KINDS``; placement, rendering, grasps and instructions are generic.

Held-out splits (``SPLITS``; :func:`split_scene_seed` gives each split its own disjoint seeds):

* ``train``, ``val``, ``test``: one distribution. No object ever has one of the
  ``HELD_OUT_COMBOS`` (colour, kind) pairs and instructions use the ``TEMPLATES`` wordings.
* ``test-unseen-combos``: the target is always a ``HELD_OUT_COMBOS`` pair (one per kind, each
  with a different colour, so every kind and every colour is seen in training, only the pairing
  is new); the wordings are the seen ones.
* ``test-unseen-phrasing``: seen combinations, but every instruction uses a
  ``HELD_OUT_TEMPLATES`` wording (new verbs and sentence shapes for every template).

``render_scene(seed)`` without a split is the unrestricted generator the demo uses: every
(colour, kind) pair, ``TEMPLATES`` wordings (never the held-out ones).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from langgrasp.detector.grasp import Grasp, wrap_angle
from langgrasp.errors import InputError

RGB = tuple[int, int, int]

PALETTE: dict[str, RGB] = {
    "red": (200, 35, 35),
    "green": (40, 150, 60),
    "blue": (35, 75, 200),
    "yellow": (235, 205, 40),
    "orange": (240, 125, 25),
    "purple": (125, 55, 165),
    "white": (238, 238, 232),
    "black": (32, 32, 36),
}
"""Object colours by the word used in instructions (RGB bytes)."""

TABLE_RGB: tuple[RGB, ...] = ((185, 155, 115), (150, 150, 146), (110, 95, 80))
"""Table tops: light wood, grey laminate, dark wood."""

METAL_RGB: RGB = (165, 168, 175)
"""Colour of uncoloured metal parts (a tool's head)."""

TEXTURES = ("plain", "stripes", "noise")
TEMPLATE_FAMILIES = ("name", "attribute", "location", "relation", "part")

TEMPLATES: dict[str, tuple[str, ...]] = {
    "name": ("pick up the {noun}", "grab the {noun}", "get me the {noun}", "hand me the {noun}"),
    "attribute": (
        "grab the {colour} {noun}",
        "pick up the {colour} {noun}",
        "get the {colour} {noun}",
    ),
    "location": ("pick up the {noun} {where}", "grab the {noun} {where}"),
    "extreme": ("pick up the object closest to the {side}", "grab the object nearest the {side}"),
    "relation": ("pick up the {noun} next to the {anchor}", "grab the {noun} beside the {anchor}"),
    "part": ("grab the {target} by its {part}", "pick up the {target} by the {part}"),
}
"""Instruction templates; "extreme" belongs to the "location" family."""

HELD_OUT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "name": ("could you pass me the {noun}", "I need the {noun}"),
    "attribute": ("fetch the {colour} {noun}", "I need the {colour} {noun}"),
    "location": ("take the {noun} that is {where}",),
    "extreme": ("fetch whichever object is closest to the {side}",),
    "relation": ("take the {noun} that sits next to the {anchor}",),
    "part": ("lift the {target} holding it by the {part}",),
}
"""Wordings used only by the ``test-unseen-phrasing`` split (same keys and fields as TEMPLATES)."""

HELD_OUT_COMBOS: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "ball"),
        ("green", "mug"),
        ("blue", "box"),
        ("yellow", "tool"),
        ("orange", "disc"),
        ("purple", "bar"),
    }
)
"""(colour, kind) pairs absent from train/val/test and the targets of ``test-unseen-combos``."""


@dataclass(frozen=True)
class SceneSplit:
    """What a split may show and say.

    Attributes:
        name: Split name, a key of ``SPLITS``.
        excluded_combos: (colour, kind) pairs no object of the split may have.
        target_combos: When set, the target's (colour, kind) is one of these, and one such object
            is placed first so that every scene has one.
        templates: Wordings per template key (``TEMPLATES`` or ``HELD_OUT_TEMPLATES``).
    """

    name: str
    excluded_combos: frozenset[tuple[str, str]]
    target_combos: frozenset[tuple[str, str]] | None
    templates: Mapping[str, tuple[str, ...]]


SPLITS: dict[str, SceneSplit] = {
    s.name: s
    for s in (
        SceneSplit("train", HELD_OUT_COMBOS, None, TEMPLATES),
        SceneSplit("val", HELD_OUT_COMBOS, None, TEMPLATES),
        SceneSplit("test", HELD_OUT_COMBOS, None, TEMPLATES),
        SceneSplit("test-unseen-combos", frozenset(), HELD_OUT_COMBOS, TEMPLATES),
        SceneSplit("test-unseen-phrasing", HELD_OUT_COMBOS, None, HELD_OUT_TEMPLATES),
    )
}
"""The synthetic splits, in the order that :func:`split_scene_seed` numbers them."""

SPLIT_SEED_STRIDE = 10**9
"""Scene seeds per (dataset seed, split) block; a split holds at most this many scenes."""


def split_scene_seed(split: str, seed: int, index: int) -> int:
    """Scene seed of sample ``index`` of ``split`` in the synthetic set drawn with ``seed``.

    Seeds are numbered in blocks of ``SPLIT_SEED_STRIDE``: block ``seed * len(SPLITS) + k`` holds
    the k-th split of ``SPLITS``, so different splits and different dataset seeds never share a
    scene, and ``train`` of seed 0 uses scene seeds 0, 1, 2, ...

    Raises:
        InputError: Unknown split, negative seed, or index outside ``[0, SPLIT_SEED_STRIDE)``.
    """
    if split not in SPLITS:
        raise InputError(f"unknown synthetic split {split!r}; expected one of {', '.join(SPLITS)}")
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InputError(f"expected a non-negative integer {name}, got {value!r}")
    if index >= SPLIT_SEED_STRIDE:
        raise InputError(f"a synthetic split holds at most {SPLIT_SEED_STRIDE} scenes")
    return (int(seed) * len(SPLITS) + list(SPLITS).index(split)) * SPLIT_SEED_STRIDE + int(index)


SUBPIXEL_BITS = 4
"""Fractional bits of OpenCV drawing coordinates (``shift``): parts are drawn at 1/16 px."""

SIDE_DIRECTIONS = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "top": (0.0, -1.0),
    "bottom": (0.0, 1.0),
}
"""Unit (x, y) image directions (y down) of the sides used by location phrases."""

SIDE_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}


@dataclass(frozen=True)
class SceneConfig:
    """Camera, scene and noise parameters (lengths in metres unless the name says px).

    Attributes:
        height: Image height H in pixels.
        width: Image width W in pixels.
        fx: Focal length along x in pixels. Default: RealSense D435 colour stream at 640x480
            (about 615 px from its factory calibration); likewise ``fy``, ``cx``, ``cy``.
        fy: Focal length along y in pixels.
        cx: Principal point x in pixels.
        cy: Principal point y in pixels.
        camera_height_m: Distance from the camera to the table along the optical axis.
        min_objects: Fewest objects to try to place.
        max_objects: Most objects to place.
        max_table_tilt_rad: Largest tilt of the table plane about the camera x and y axes.
        depth_noise_m: Std of depth noise. D435 RMS error = z² · subpixel / (f · baseline)
            (Intel depth tuning guide) ≈ 0.65² · 0.08 / (420 · 0.05) ≈ 1.6 mm at 0.65 m.
        depth_unit_m: Depth quantisation step (RealSense z16 default depth scale 1 mm).
        max_depth_holes: Most invalid (0) blobs in the depth map.
        depth_hole_radius_px: Radius range of invalid blobs.
        rgb_noise: Std of per-pixel brightness noise in uint8 levels (same for R, G, B).
        light_gradient: Largest brightness change from the image centre to its edge (fraction).
        max_light_tilt_rad: Largest angle of the light from vertical; sets the shadow offsets.
        shadow_strength: Darkening of the table under a shadow (fraction).
        shadow_blur_px: Gaussian sigma of the shadow's soft edge.
        table_texture: Relative amplitude of the table's low-frequency blotches.
        blotch_px: Size of those blotches (also used by the "noise" object texture).
        texture_contrast: Relative brightness amplitude of object stripes and noise.
        stripe_period_m: Period of striped textures.
        ambient: Brightness of unlit surfaces relative to lit ones: a ball's rim (Lambert
            shading) and a mug's inside.
        cup_floor_m: Height of a mug's inner floor above the table.
        cup_wall_m: Wall thickness of a mug seen from above.
        object_gap_m: Least free space between two objects.
        border_px: Least distance from objects to the image border.
        placement_attempts: Random positions tried per object before giving up on it.
        gripper_max_opening_m: Largest opening; Robotiq 2F-85 stroke (85 mm).
        grasp_margin_m: Opening beyond the object's extent, split over both sides.
        jaw_ratio: Jaw size as a fraction of the opening (GR-ConvNet uses length / 2).
        grasp_spacing_m: Spacing of grasps along a rectangle's long axis.
        max_grasps_per_part: Most grasps along one rectangle side.
        circle_grasp_angles: Grasp directions through a circle's centre (evenly over π).
        location_margin_px: How much further than the runner-up an object must be towards a side
            for "on the left" / "closest to the top" to be used.
        next_to_max_gap_m: Largest free space between objects that counts as "next to".
        relation_margin_m: How much closer than any same-named object the target must be to the
            anchor for "next to" to be used.
    """

    height: int = 480
    width: int = 640
    fx: float = 615.0
    fy: float = 615.0
    cx: float = 320.0
    cy: float = 240.0
    camera_height_m: float = 0.65
    min_objects: int = 2
    max_objects: int = 5
    max_table_tilt_rad: float = 0.03
    depth_noise_m: float = 0.0015
    depth_unit_m: float = 0.001
    max_depth_holes: int = 4
    depth_hole_radius_px: tuple[int, int] = (3, 12)
    rgb_noise: float = 3.0
    light_gradient: float = 0.15
    max_light_tilt_rad: float = 0.6
    shadow_strength: float = 0.35
    shadow_blur_px: float = 4.0
    table_texture: float = 0.06
    blotch_px: int = 32
    texture_contrast: float = 0.2
    stripe_period_m: float = 0.012
    ambient: float = 0.55
    cup_floor_m: float = 0.008
    cup_wall_m: float = 0.005
    object_gap_m: float = 0.012
    border_px: int = 12
    placement_attempts: int = 40
    gripper_max_opening_m: float = 0.085
    grasp_margin_m: float = 0.01
    jaw_ratio: float = 0.5
    grasp_spacing_m: float = 0.025
    max_grasps_per_part: int = 5
    circle_grasp_angles: int = 6
    location_margin_px: float = 40.0
    next_to_max_gap_m: float = 0.06
    relation_margin_m: float = 0.04

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise InputError(f"scene size must be positive, got {self.height}x{self.width}")
        if not 1 <= self.min_objects <= self.max_objects:
            counts = f"{self.min_objects}, {self.max_objects}"
            raise InputError(f"expected 1 <= min_objects <= max_objects, got {counts}")
        if min(self.fx, self.fy, self.camera_height_m) <= 0:
            raise InputError("focal lengths and camera_height_m must be positive")

    @property
    def pixels_per_metre(self) -> float:
        """Pixels per metre on the table plane (mean focal length / camera height)."""
        return (self.fx + self.fy) / 2.0 / self.camera_height_m

    @property
    def intrinsics(self) -> np.ndarray:
        """``(3, 3)`` float64 pinhole camera matrix K in pixels."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def resized(self, width: int, height: int) -> SceneConfig:
        """The same camera at another image size: intrinsics scaled, field of view kept.

        Objects keep their size relative to the image, so a 160x120 scene looks like a 640x480
        one at a quarter of the resolution (pixel-valued settings such as ``border_px`` stay).
        """
        sx, sy = width / self.width, height / self.height
        return replace(
            self,
            width=width,
            height=height,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=self.cx * sx,
            cy=self.cy * sy,
        )


@dataclass(frozen=True)
class ObjectPart:
    """A rectangle or circle of an object; pixels, in the object frame or the image frame.

    Attributes:
        name: Part name ("body", "handle", "head"); used by part-level instructions.
        shape: "rect" or "circle".
        centre: (x, y) centre in image pixels; in the object frame, the offset (along, across)
            the object's axis from its centre.
        length: Rectangle extent along ``angle`` or circle diameter, pixels.
        width: Rectangle extent across ``angle`` or circle diameter, pixels.
        angle: Rectangle long-axis angle, radians counter-clockwise on screen from +x.
        height_m: Height of the top surface above the table, metres.
        profile: Top surface: "flat", "dome" (a sphere) or "cup" (open top with a low floor).
    """

    name: str
    shape: str
    centre: tuple[float, float]
    length: float
    width: float
    angle: float
    height_m: float
    profile: str = "flat"

    def corners(self) -> np.ndarray:
        """``(4, 2)`` float64 (x, y) corners of a rectangle part, pixels."""
        u, v = _axes(self.angle)
        c, hl, hw = np.asarray(self.centre), self.length / 2, self.width / 2
        return np.stack(
            [c - u * hl - v * hw, c - u * hl + v * hw, c + u * hl + v * hw, c + u * hl - v * hw]
        )

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Bool array: which of the ``(N, 2)`` (x, y) pixel points lie inside the part."""
        d = np.asarray(xy, dtype=np.float64) - np.asarray(self.centre)
        if self.shape == "circle":
            return np.hypot(d[:, 0], d[:, 1]) <= self.length / 2
        u, v = _axes(self.angle)
        return (np.abs(d @ u) <= self.length / 2) & (np.abs(d @ v) <= self.width / 2)


@dataclass(frozen=True)
class ObjectKind:
    """A kind of object: how to size and build it and which part is grasped.

    Attributes:
        name: Noun used in instructions.
        sizes: Named size ranges (lo, hi) in metres; one value of each is drawn per object.
        build: Maps (sizes in metres, pixels per metre) to parts in the object frame.
        grasp_part: Part whose grasps answer name-level instructions.
        phrase_parts: Parts that part-level instructions may name ("by its handle").
        part_colours: Parts with a fixed colour instead of the object's colour.
    """

    name: str
    sizes: Mapping[str, tuple[float, float]]
    build: Callable[[Mapping[str, float], float], tuple[ObjectPart, ...]]
    grasp_part: str = "body"
    phrase_parts: tuple[str, ...] = ()
    part_colours: Mapping[str, RGB] = field(default_factory=dict)


def _axes(angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along and across ``angle`` in (x, y) pixels, y down (as in Grasp.corners)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c, -s]), np.array([s, c])


def _rect(s: Mapping[str, float], ppm: float) -> tuple[ObjectPart, ...]:
    long_m = max(s["long"], s["short"])
    return (
        ObjectPart("body", "rect", (0.0, 0.0), long_m * ppm, s["short"] * ppm, 0.0, s["height"]),
    )


def _ball(s: Mapping[str, float], ppm: float) -> tuple[ObjectPart, ...]:
    d = s["diameter"] * ppm
    return (ObjectPart("body", "circle", (0.0, 0.0), d, d, 0.0, s["diameter"], "dome"),)


def _disc(s: Mapping[str, float], ppm: float) -> tuple[ObjectPart, ...]:
    d = s["diameter"] * ppm
    return (ObjectPart("body", "circle", (0.0, 0.0), d, d, 0.0, s["height"]),)


def _mug(s: Mapping[str, float], ppm: float) -> tuple[ObjectPart, ...]:
    r, reach, tuck = s["diameter"] * ppm / 2, s["handle_reach"] * ppm, s["handle_width"] * ppm / 2
    # The handle starts `tuck` inside the body so no seam shows; it is drawn first, body on top.
    handle = ObjectPart(
        "handle",
        "rect",
        (r + (reach - tuck) / 2, 0.0),
        reach + tuck,
        2 * tuck,
        0.0,
        s["height"] * s["handle_rise"],
    )
    body = ObjectPart("body", "circle", (0.0, 0.0), 2 * r, 2 * r, 0.0, s["height"], "cup")
    return handle, body


def _tool(s: Mapping[str, float], ppm: float) -> tuple[ObjectPart, ...]:
    grip, head = s["grip_length"] * ppm, s["head_thickness"] * ppm
    return (
        ObjectPart(
            "handle", "rect", (-head / 2, 0.0), grip, s["grip_width"] * ppm, 0.0, s["grip_height"]
        ),
        ObjectPart(
            "head", "rect", (grip / 2, 0.0), head, s["head_width"] * ppm, 0.0, s["head_height"]
        ),
    )


# Sizes (metres) keep every grasped extent + grasp_margin_m within the 85 mm gripper opening.
OBJECT_KINDS: dict[str, ObjectKind] = {
    k.name: k
    for k in (
        ObjectKind(
            "box", {"short": (0.04, 0.07), "long": (0.06, 0.14), "height": (0.04, 0.10)}, _rect
        ),
        ObjectKind(
            "bar", {"short": (0.018, 0.032), "long": (0.14, 0.22), "height": (0.015, 0.03)}, _rect
        ),
        ObjectKind("ball", {"diameter": (0.04, 0.07)}, _ball),
        ObjectKind("disc", {"diameter": (0.05, 0.075), "height": (0.008, 0.02)}, _disc),
        ObjectKind(
            "mug",
            {
                "diameter": (0.06, 0.075),
                "height": (0.08, 0.11),
                "handle_reach": (0.025, 0.035),
                "handle_width": (0.01, 0.015),
                "handle_rise": (0.6, 0.8),
            },
            _mug,
            phrase_parts=("handle",),
        ),
        ObjectKind(
            "tool",
            {
                "grip_length": (0.09, 0.13),
                "grip_width": (0.022, 0.032),
                "grip_height": (0.02, 0.03),
                "head_thickness": (0.02, 0.03),
                "head_width": (0.06, 0.09),
                "head_height": (0.025, 0.035),
            },
            _tool,
            grasp_part="handle",
            phrase_parts=("handle",),
            part_colours={"head": METAL_RGB},
        ),
    )
}


@dataclass(frozen=True)
class SceneObject:
    """One placed object.

    Attributes:
        index: Position in the scene's object list (draw order).
        name: Kind noun, a key of ``OBJECT_KINDS``.
        colour: Colour word, a key of ``PALETTE``.
        centre: (x, y) object-frame origin in image pixels.
        angle: In-plane rotation in radians, counter-clockwise on screen.
        parts: Parts in image pixels.
        texture: One of ``TEXTURES``.
        radius: Radius in pixels of a circle around ``centre`` that holds every part.
    """

    index: int
    name: str
    colour: str
    centre: tuple[float, float]
    angle: float
    parts: tuple[ObjectPart, ...]
    texture: str
    radius: float

    def part(self, name: str) -> ObjectPart:
        """The part called ``name``."""
        return next(p for p in self.parts if p.name == name)


@dataclass(frozen=True, eq=False)
class SceneSample:
    """One rendered scene with its instruction and ground truth.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB image.
        depth: ``(H, W)`` float32 depth in metres along the optical axis; 0 = invalid.
        mask: ``(H, W)`` bool mask of what the instruction refers to (the target object, or only
            the named part for part-level instructions).
        grasps: Antipodal grasps on the target in image pixels, quality 1.0.
        text: The instruction.
        target_name: Kind noun of the target object.
        intrinsics: ``(3, 3)`` float64 camera matrix K in pixels.
        seed: Seed the scene was rendered from.
        objects: All objects, in draw order.
        target_index: Index of the target in ``objects``.
        target_part: Part named by a part-level instruction, else None.
        family: Instruction family, one of ``TEMPLATE_FAMILIES``.
        split: Name of the split (a key of ``SPLITS``) whose rules drew the scene, None for the
            unrestricted generator.
        wording: The template the text was formatted from (a value in ``TEMPLATES`` or
            ``HELD_OUT_TEMPLATES``).
    """

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    grasps: list[Grasp]
    text: str
    target_name: str
    intrinsics: np.ndarray
    seed: int
    objects: tuple[SceneObject, ...]
    target_index: int
    target_part: str | None
    family: str
    split: str | None
    wording: str


def _draw_part(
    img: np.ndarray,
    part: ObjectPart,
    value: float,
    origin: tuple[float, float] | np.ndarray = (0.0, 0.0),
    grow: float = 0.0,
) -> None:
    """Fill ``part``, grown by ``grow`` px per side, into ``img`` whose (0, 0) is at ``origin``."""
    shift = SUBPIXEL_BITS
    one = 1 << shift
    if part.shape == "circle":
        c = np.round((np.asarray(part.centre) - origin) * one).astype(int)
        radius = round((part.length / 2 + grow) * one)
        cv2.circle(img, (int(c[0]), int(c[1])), radius, value, cv2.FILLED, cv2.LINE_8, shift)
    else:
        grown = replace(part, length=part.length + 2 * grow, width=part.width + 2 * grow)
        pts = np.round((grown.corners() - origin) * one).astype(np.int32)
        cv2.fillPoly(img, [pts], value, cv2.LINE_8, shift)


def _place_objects(
    rng: np.random.Generator, cfg: SceneConfig, ppm: float, split: SceneSplit | None = None
) -> list[SceneObject]:
    """Rejection-sample non-overlapping objects with distinct (kind, colour) pairs.

    With a ``split``, its excluded pairs are never drawn, and with ``target_combos`` the first
    object is one of those pairs (if it does not fit, the scene has none).
    """
    occupied = np.zeros((cfg.height, cfg.width), np.uint8)
    gap = cfg.object_gap_m * ppm / 2  # each object is grown by half the gap
    objects: list[SceneObject] = []
    kinds, colours = list(OBJECT_KINDS), list(PALETTE)
    excluded = split.excluded_combos if split is not None else frozenset()
    forced = sorted(split.target_combos) if split is not None and split.target_combos else []
    for k in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        if k == 0 and forced:
            colour, kind_name = forced[rng.integers(len(forced))]
            kind = OBJECT_KINDS[kind_name]
        else:
            kind = OBJECT_KINDS[kinds[rng.integers(len(kinds))]]
            taken = {o.colour for o in objects if o.name == kind.name}
            free = [c for c in colours if c not in taken and (c, kind.name) not in excluded]
            if not free:  # every colour of this kind is used or held out
                continue
            colour = str(rng.choice(free))
        local = kind.build({k: float(rng.uniform(*r)) for k, r in kind.sizes.items()}, ppm)
        radius = max(math.hypot(*p.centre) + math.hypot(p.length, p.width) / 2 for p in local)
        texture = str(rng.choice(TEXTURES))
        lo = radius + cfg.border_px
        if 2 * lo >= min(cfg.width, cfg.height):
            continue
        for _ in range(cfg.placement_attempts):
            cx, cy = rng.uniform(lo, cfg.width - lo), rng.uniform(lo, cfg.height - lo)
            angle = float(rng.uniform(-math.pi, math.pi))
            u, v = _axes(angle)
            parts = tuple(
                replace(
                    p,
                    centre=tuple(map(float, (cx, cy) + u * p.centre[0] + v * p.centre[1])),
                    angle=p.angle + angle,
                )
                for p in local
            )
            x0, y0 = int(cx - radius - gap), int(cy - radius - gap)
            box = np.zeros((int(2 * (radius + gap)) + 2,) * 2, np.uint8)
            for p in parts:
                _draw_part(box, p, 1, (x0, y0), gap)
            crop = occupied[max(y0, 0) : y0 + box.shape[0], max(x0, 0) : x0 + box.shape[1]]
            cand = box[max(-y0, 0) :, max(-x0, 0) :][: crop.shape[0], : crop.shape[1]]
            if not np.any(crop & cand):
                crop |= cand
                objects.append(
                    SceneObject(
                        len(objects), kind.name, colour, (cx, cy), angle, parts, texture, radius
                    )
                )
                break
    return objects


def _label_maps(
    objects: list[SceneObject], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise ``(H, W)`` uint8 part labels and object labels.

    Part label k is the k-th part in draw order, object label i + 1 is object i, 0 is the table.
    Later parts cover earlier ones (a mug's body covers its handle's inner end).
    """
    labels, owners = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    k = 0
    for obj in objects:
        for p in obj.parts:
            k += 1
            _draw_part(labels, p, k)
            _draw_part(owners, p, obj.index + 1)
    return labels, owners


@dataclass(frozen=True)
class _PartPixels:
    """One visible part's pixels: (rows, cols) index and x/y offsets from the part centre."""

    obj: SceneObject
    part: ObjectPart
    sel: tuple[np.ndarray, np.ndarray]
    dx: np.ndarray
    dy: np.ndarray


def _part_pixels(objects: list[SceneObject], labels: np.ndarray) -> list[_PartPixels]:
    ys, xs = np.nonzero(labels)
    values = labels[ys, xs]
    out, k = [], 0
    for obj in objects:
        for p in obj.parts:
            k += 1
            sel = values == k
            out.append(
                _PartPixels(
                    obj, p, (ys[sel], xs[sel]), xs[sel] - p.centre[0], ys[sel] - p.centre[1]
                )
            )
    return out


def _noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean float32 noise of standard deviation ``std``.

    Uniform on [-a, a] with a = std * sqrt(3): the std of a normal at a fifth of the cost, which
    matters because noise for two full frames is the largest cost of a scene.
    """
    return (rng.random(shape, dtype=np.float32) * 2 - 1) * np.float32(std * math.sqrt(3.0))


def _render_rgb(
    rng: np.random.Generator,
    cfg: SceneConfig,
    pixels: list[_PartPixels],
    labels: np.ndarray,
    ppm: float,
) -> np.ndarray:
    """Shade table and objects, add soft shadows, a light gradient and sensor noise."""
    h, w = labels.shape
    grid = (h // cfg.blotch_px + 2, w // cfg.blotch_px + 2)
    blotch = cv2.resize(rng.standard_normal(grid).astype(np.float32), (w, h))  # smooth, std ~1
    table_rgb = np.asarray(TABLE_RGB[rng.integers(len(TABLE_RGB))], np.float32)
    phi, g = rng.uniform(-math.pi, math.pi), rng.uniform(-cfg.light_gradient, cfg.light_gradient)
    x, y = np.arange(w) - w / 2, np.arange(h)[:, None] - h / 2
    light = (1.0 + g * (x * math.cos(phi) + y * math.sin(phi)) / (max(h, w) / 2)).astype(np.float32)

    tilt, azimuth = rng.uniform(0, cfg.max_light_tilt_rad), rng.uniform(-math.pi, math.pi)
    light_dir = np.array([math.cos(azimuth), math.sin(azimuth)])
    shadow = np.zeros((h, w), np.float32)
    colours = []
    for px in pixels:
        obj, p = px.obj, px.part
        _draw_part(shadow, p, 1.0, -math.tan(tilt) * p.height_m * ppm * light_dir)
        base = np.asarray(
            OBJECT_KINDS[obj.name].part_colours.get(p.name, PALETTE[obj.colour]), np.float32
        )
        shade = light[px.sel]
        if obj.texture == "stripes":
            u, _ = _axes(obj.angle)
            phase = (px.dx * u[0] + px.dy * u[1]) / (cfg.stripe_period_m * ppm)
            shade *= 1 - cfg.texture_contrast * (np.sin(2 * math.pi * phase) > 0)
        elif obj.texture == "noise":
            shade *= 1 + cfg.texture_contrast * blotch[px.sel]
        rho2 = (px.dx**2 + px.dy**2) / (p.length / 2) ** 2
        if p.profile == "dome":
            shade *= cfg.ambient + (1 - cfg.ambient) * np.sqrt(np.clip(1 - rho2, 0, 1))
        elif p.profile == "cup":
            shade[rho2 < (1 - cfg.cup_wall_m * ppm / (p.length / 2)) ** 2] *= cfg.ambient
        colours.append(base * shade[:, None])

    shadow = cv2.GaussianBlur(shadow, (0, 0), cfg.shadow_blur_px)
    table = light * (1.0 + cfg.table_texture * blotch) * (1.0 - cfg.shadow_strength * shadow)
    img = table[..., None] * table_rgb  # (H, W, 3); objects are pasted over it
    for px, colour in zip(pixels, colours, strict=True):
        img[px.sel] = colour
    img += _noise(rng, (h, w, 1), cfg.rgb_noise)
    return np.clip(img, 0, 255).astype(np.uint8)


def _render_depth(
    rng: np.random.Generator, cfg: SceneConfig, pixels: list[_PartPixels], ppm: float
) -> np.ndarray:
    """Tilted table plane minus object heights, with noise, 1 mm quantisation and holes."""
    h, w = cfg.height, cfg.width
    tx, ty = rng.uniform(-cfg.max_table_tilt_rad, cfg.max_table_tilt_rad, size=2)
    # Plane through (0, 0, camera_height) with normal n; a pixel's ray z * ((u-cx)/fx, (v-cy)/fy, 1)
    # meets it at z = n_z * camera_height / (n · ray direction).
    nx, ny, nz = math.sin(ty), math.sin(tx), math.cos(tx) * math.cos(ty)
    rx = (np.arange(w, dtype=np.float32) - cfg.cx) / cfg.fx
    ry = (np.arange(h, dtype=np.float32)[:, None] - cfg.cy) / cfg.fy
    depth = (nz * cfg.camera_height_m / (nx * rx + ny * ry + nz)).astype(np.float32)
    for px in pixels:
        p = px.part
        if p.profile == "dome":  # a sphere on the table: surface height r + sqrt(r² - ρ²)
            r2 = (p.length / 2) ** 2
            lift = (np.sqrt(r2) + np.sqrt(np.clip(r2 - px.dx**2 - px.dy**2, 0, None))) / ppm
        else:
            lift = np.full(px.dx.shape, p.height_m, np.float32)
            if p.profile == "cup":
                inner = (1 - cfg.cup_wall_m * ppm / (p.length / 2)) ** 2 * (p.length / 2) ** 2
                lift[px.dx**2 + px.dy**2 < inner] = cfg.cup_floor_m
        depth[px.sel] -= lift
    depth += _noise(rng, (h, w), cfg.depth_noise_m)
    depth = np.round(depth / cfg.depth_unit_m).astype(np.float32) * np.float32(cfg.depth_unit_m)
    for _ in range(int(rng.integers(0, cfg.max_depth_holes + 1))):
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        cv2.circle(depth, centre, int(rng.integers(*cfg.depth_hole_radius_px)), 0.0, -1)
    return depth


def _part_grasps(
    obj: SceneObject, part: ObjectPart, cfg: SceneConfig, ppm: float, rng: np.random.Generator
) -> list[Grasp]:
    """Antipodal grasps on ``part``; those whose jaws would land on another part are dropped."""
    margin, max_open = cfg.grasp_margin_m * ppm, cfg.gripper_max_opening_m * ppm
    c = np.asarray(part.centre)
    cands = []  # (centre, opening-axis angle, opening)
    if part.shape == "circle":
        n = cfg.circle_grasp_angles
        phase = rng.uniform(0, math.pi / n)
        cands = [(c, phase + math.pi * i / n, part.length + margin) for i in range(n)]
    else:
        sides = sorted(
            [
                (part.width, part.length, part.angle),
                (part.length, part.width, part.angle + math.pi / 2),
            ]
        )
        for i, (across, along, axis) in enumerate(sides):
            if i > 0 and across + margin > max_open:
                continue
            jaw = cfg.jaw_ratio * (across + margin)
            span = max(along - jaw, 0.0)
            n = min(cfg.max_grasps_per_part, int(span // (cfg.grasp_spacing_m * ppm)) + 1)
            u, _ = _axes(axis)
            cands += [
                (c + u * t, axis + math.pi / 2, across + margin)
                for t in (np.arange(n) - (n - 1) / 2) * (span / max(n - 1, 1))
            ]
    others = [q for q in obj.parts if q is not part]
    grasps = []
    for centre, angle, opening in cands:
        g = Grasp(
            float(centre[0]),
            float(centre[1]),
            float(wrap_angle(angle)),
            opening,
            cfg.jaw_ratio * opening,
        )
        k = g.corners()
        t = np.linspace(0.0, 1.0, int(g.height) + 2)[:, None]  # about one sample per pixel
        jaws = np.concatenate([k[0] + t * (k[1] - k[0]), k[2] + t * (k[3] - k[2])])
        if not any(q.contains(jaws).any() for q in others):
            grasps.append(g)
    return grasps


def _reach(obj: SceneObject, direction: tuple[float, float]) -> float:
    """How far the object's footprint extends along the unit (x, y) ``direction``, in pixels."""
    d = np.asarray(direction)
    return max(
        float(np.dot(p.centre, d)) + p.length / 2
        if p.shape == "circle"
        else float((p.corners() @ d).max())
        for p in obj.parts
    )


def _gaps(objects: list[SceneObject], owners: np.ndarray, limit: float) -> np.ndarray:
    """``(N, N)`` free distance in pixels between objects' footprints; inf where >= ``limit``."""
    n, (h, w) = len(objects), owners.shape
    gaps = np.full((n, n), np.inf)
    for a, anchor in enumerate(objects):
        # Every pixel within `limit` of the anchor lies in its bounding box grown by `limit`.
        reach = anchor.radius + limit + 1
        x0, y0 = max(int(anchor.centre[0] - reach), 0), max(int(anchor.centre[1] - reach), 0)
        x1, y1 = (
            min(int(anchor.centre[0] + reach) + 1, w),
            min(int(anchor.centre[1] + reach) + 1, h),
        )
        crop = owners[y0:y1, x0:x1]
        dt = cv2.distanceTransform(
            (crop != a + 1).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
        )
        for b in range(n):
            near = dt[(crop == b + 1) & (dt < limit)]
            if near.size:
                gaps[a, b] = near.min()
    return gaps


@dataclass(frozen=True)
class _Choice:
    """One unambiguous instruction the scene allows: family, target, template key and fields."""

    family: str
    target: int
    template: str
    fields: dict[str, str]
    part: str | None = None


def _instructions(
    objects: list[SceneObject], owners: np.ndarray, cfg: SceneConfig, ppm: float
) -> list[_Choice]:
    """Every unambiguous instruction for every object (deterministic order)."""
    names = [o.name for o in objects]

    def describe(o: SceneObject) -> str:  # (kind, colour) pairs are unique in a scene
        return o.name if names.count(o.name) == 1 else f"{o.colour} {o.name}"

    out = []
    for o in objects:
        if names.count(o.name) == 1:
            out.append(_Choice("name", o.index, "name", {"noun": o.name}))
        out.append(_Choice("attribute", o.index, "attribute", {"colour": o.colour, "noun": o.name}))
        for part in OBJECT_KINDS[o.name].phrase_parts:
            out.append(
                _Choice("part", o.index, "part", {"target": describe(o), "part": part}, part)
            )

    # Location, by a margin: "the ball on the left" ranks a kind's centres; "the object closest
    # to the left" ranks how far every object's footprint reaches.
    groups = [("extreme", objects)]
    groups += [("location", [o for o in objects if o.name == n]) for n in dict.fromkeys(names)]
    for side, direction in SIDE_DIRECTIONS.items():
        for template, group in groups:
            if len(group) < 2:
                continue
            key = _reach if template == "extreme" else lambda o, d: float(np.dot(o.centre, d))
            (second, _), (best, winner) = sorted((key(o, direction), o.index) for o in group)[-2:]
            if best - second >= cfg.location_margin_px:
                o = objects[winner]
                fields = {"noun": o.name, "side": side, "where": SIDE_PHRASES[side]}
                out.append(_Choice("location", o.index, template, fields))

    # Relation: the target is next to the anchor and clearly closer to it than any same-kind rival.
    if len(objects) > 1:
        gaps = _gaps(objects, owners, (cfg.next_to_max_gap_m + cfg.relation_margin_m) * ppm)
        for a in objects:
            for t in objects:
                g = gaps[a.index, t.index]
                if a is t or g > cfg.next_to_max_gap_m * ppm:
                    continue
                rivals = [q for q in objects if q.name == t.name and q not in (t, a)]
                if all(gaps[a.index, q.index] - g >= cfg.relation_margin_m * ppm for q in rivals):
                    fields = {"noun": t.name, "anchor": describe(a)}
                    out.append(_Choice("relation", t.index, "relation", fields))
    return out


def render_scene(
    seed: int, config: SceneConfig | None = None, split: str | None = None
) -> SceneSample:
    """Render one scene, fully determined by ``seed``, ``config`` and ``split``.

    The instruction family is drawn uniformly among the families the scene allows, then one
    instruction of that family and one template wording, so rarer families are not starved.

    Args:
        seed: Non-negative integer seed of the NumPy random generator.
        config: Scene parameters; defaults to ``SceneConfig()`` (640x480, D435-like camera).
        split: A key of ``SPLITS`` whose rules (held-out combinations and wordings) apply; None
            (default, used by the demo) draws from every combination with ``TEMPLATES``. The
            split only restricts what is drawn; :func:`split_scene_seed` picks its seeds.

    Returns:
        The :class:`SceneSample` (RGB, depth in metres, target mask, grasps in pixels, text).

    Raises:
        InputError: If ``seed`` is not a non-negative integer, ``split`` is unknown, no object
            fits into the image, or a ``test-unseen-combos`` target does not fit.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"expected a non-negative integer seed, got {seed!r}")
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown synthetic split {split!r}; expected one of {', '.join(SPLITS)}")
    rule = SPLITS[split] if split is not None else None
    cfg = config if config is not None else SceneConfig()
    rng = np.random.default_rng(int(seed))
    ppm = cfg.pixels_per_metre
    objects = _place_objects(rng, cfg, ppm, rule)
    if not objects:
        raise InputError(f"no object fits into a {cfg.width}x{cfg.height} image; make it larger")
    labels, owners = _label_maps(objects, (cfg.height, cfg.width))
    pixels = _part_pixels(objects, labels)
    rgb = _render_rgb(rng, cfg, pixels, labels, ppm)
    depth = _render_depth(rng, cfg, pixels, ppm)

    choices = _instructions(objects, owners, cfg, ppm)
    if rule is not None and rule.target_combos is not None:
        allowed = rule.target_combos
        choices = [c for c in choices if _combo(objects[c.target]) in allowed]
        if not choices:
            raise InputError(
                f"scene {seed}: no held-out object fits into a {cfg.width}x{cfg.height} image; "
                "make it larger"
            )
    families = [f for f in TEMPLATE_FAMILIES if any(c.family == f for c in choices)]
    family = families[rng.integers(len(families))]
    pool = [c for c in choices if c.family == family]
    choice = pool[rng.integers(len(pool))]
    wordings = (TEMPLATES if rule is None else rule.templates)[choice.template]
    wording = wordings[rng.integers(len(wordings))]
    text = wording.format(**choice.fields)

    target = objects[choice.target]
    if choice.part is None:
        mask = owners == target.index + 1
        part = target.part(OBJECT_KINDS[target.name].grasp_part)
    else:  # part-level: the mask is the visible part only
        part = target.part(choice.part)
        label = sum(len(o.parts) for o in objects[: target.index]) + target.parts.index(part) + 1
        mask = labels == label
    return SceneSample(
        rgb=rgb,
        depth=depth,
        mask=mask,
        grasps=_part_grasps(target, part, cfg, ppm, rng),
        text=text,
        target_name=target.name,
        intrinsics=cfg.intrinsics,
        seed=int(seed),
        objects=tuple(objects),
        target_index=target.index,
        target_part=choice.part,
        family=family,
        split=split,
        wording=wording,
    )


def _combo(obj: SceneObject) -> tuple[str, str]:
    return obj.colour, obj.name


def instance_map(sample: SceneSample) -> tuple[np.ndarray, int]:
    """An OCID-style instance-id map of the scene and the id of what the text refers to.

    Ids ``1..N`` are the objects in draw order (0 = table). For a part-level instruction the
    referred "instance" is the part: its visible pixels get the extra id ``N + 1``. In both cases
    ``ids == target_id`` equals ``sample.mask`` exactly.

    Returns:
        ``(H, W)`` uint8 instance ids and the target's id.
    """
    _, owners = _label_maps(list(sample.objects), sample.mask.shape)
    if sample.target_part is None:
        target_id = sample.target_index + 1
    else:
        target_id = len(sample.objects) + 1
        owners[sample.mask] = target_id
    return owners, target_id
