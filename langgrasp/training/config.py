"""Training configuration: one typed dataclass, the per-model recipes and ``key=value`` overrides.

``TrainConfig()`` is the paper's recipe for lggd-rn50 (Section V.C: AdamW, lr 1e-4, weight decay
0.06, linear warm-up from 1e-5 over 2,000 iterations, cosine decay, 50 epochs, batch 72).
:func:`default_config` picks the recipe of a model (a lighter one for lggd-tiny); every field can
then be overridden from the command line (``--set lr=3e-4 --set augment.vflip=0.5``) and the
resolved config is written to the run folder's ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from langgrasp.detector.losses import LossConfig
from langgrasp.errors import InputError, check_int

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""``auto``: bf16 autocast on CUDA devices that support it, else fp16 with loss scaling; fp32 on
CPU (CPU autocast is slower than fp32 for these convolutions and not worth the risk)."""

TEXT_POLICIES = ("swap", "no-flip")
"""What a flip does to spatial words (see ``AugmentConfig.text_policy``)."""


def _check_range(name: str, value: object, low: float, high: float, open_low: bool = False) -> None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if open_low else value >= low)
        and value <= high
    )
    if not ok:
        bracket = "(" if open_low else "["
        raise InputError(f"{name} must be a number in {bracket}{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Batch augmentation (``langgrasp.training.augment``); probabilities are per sample.

    Geometry is applied identically to image, target mask and grasp maps, and the grasp angle
    channels are rotated with it. Photometric changes touch the image only.

    Attributes:
        enabled: Master switch; False trains on the letterboxed images as they are.
        hflip: Probability of a horizontal (left-right) flip.
        vflip: Probability of a vertical (top-bottom) flip. Off by default: OCID-VLG and most
            real cameras look at the table obliquely, so an upside-down view is not a plausible
            image; turn it on for top-down data such as the synthetic scenes.
        rotation_deg: Rotations are uniform in [-rotation_deg, +rotation_deg] degrees about the
            image centre. Kept small so "the object on the left" stays on the left.
        text_policy: ``"swap"`` rewrites the instruction of a flipped sample (left <-> right for
            horizontal flips; top <-> bottom, above <-> below, upper <-> lower for vertical ones)
            so it stays true; ``"no-flip"`` leaves samples whose instruction has such words
            unflipped along that axis.
        brightness: Additive brightness shift, uniform in [-b, b] on [0, 1] RGB values.
        contrast: Contrast factor uniform in [1 - c, 1 + c].
        saturation: Saturation factor uniform in [1 - s, 1 + s].
        hue: Hue shift uniform in [-h, h] radians.
        blur_p: Probability of a Gaussian blur.
        blur_sigma: Maximum blur standard deviation in model-input pixels (uniform in
            [0.1, blur_sigma]).
        noise_p: Probability of additive Gaussian noise.
        noise_std: Noise standard deviation on [0, 1] RGB values.
    """

    enabled: bool = True
    hflip: float = 0.5
    vflip: float = 0.0
    rotation_deg: float = 15.0
    text_policy: str = "swap"
    brightness: float = 0.15
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05
    blur_p: float = 0.2
    blur_sigma: float = 1.0
    noise_p: float = 0.2
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip", "blur_p", "noise_p"):
            _check_range(f"augment.{name}", getattr(self, name), 0.0, 1.0)
        _check_range("augment.rotation_deg", self.rotation_deg, 0.0, 180.0)
        for name in ("brightness", "contrast", "saturation"):
            _check_range(f"augment.{name}", getattr(self, name), 0.0, 1.0)
        _check_range("augment.hue", self.hue, 0.0, math.pi)
        _check_range("augment.blur_sigma", self.blur_sigma, 0.1, 10.0)
        _check_range("augment.noise_std", self.noise_std, 0.0, 1.0)
        if self.text_policy not in TEXT_POLICIES:
            raise InputError(
                f"augment.text_policy must be one of {', '.join(TEXT_POLICIES)}, "
                f"got {self.text_policy!r}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; the defaults are the paper's lggd-rn50 recipe.

    Attributes:
        dataset: Registered dataset name (``langgrasp.datasets.base.list_datasets``).
        data_root: Dataset root folder; None for ``synthetic`` (scenes generated on the fly).
        dataset_options: Extra loader options, e.g. ``{"version": "multiple"}`` for OCID-VLG.
        train_split: Split to train on.
        val_split: Split for validation J@1 and the best checkpoint; "" disables validation.
        model: Registered model name (``langgrasp.detector.config.list_models``).
        model_options: LGGDConfig fields to replace, e.g. ``{"fusion": "concat"}``.
        clip_weights: Local pretrained CLIP checkpoint (None: ``$LANGGRASP_CLIP_WEIGHTS`` or the
            open_clip cache; random encoders if there are none).
        freeze_clip: True/False forces it; None freezes CLIP exactly when pretrained weights
            were loaded (the paper trains with frozen pretrained CLIP).
        epochs: Passes over the training split.
        batch_size: Global batch size (split evenly over DDP processes).
        lr: Peak learning rate after warm-up.
        weight_decay: AdamW weight decay (on weights with >= 2 dims; biases and norm parameters
            are not decayed, as in nanoGPT).
        betas: AdamW betas (PyTorch defaults; the paper does not state them).
        warmup_steps: Optimizer steps of linear warm-up.
        warmup_start_lr: Learning rate at step 0 of the warm-up.
        min_lr: Learning rate at the end of the cosine decay.
        grad_clip: Global gradient-norm clip (ours, nanoGPT's value; not in the paper);
            0 disables.
        loss: Loss weights (paper eq. 32-40).
        augment: Batch augmentation.
        precision: One of ``PRECISIONS``.
        device: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``. Under
            torchrun each process uses ``cuda:LOCAL_RANK``.
        num_workers: DataLoader worker processes per training process.
        seed: Seeds weights, data order and augmentation.
        deterministic: Deterministic algorithms (bit-exact resume on GPU; slower).
        out: Run folder (config, logs, checkpoints, curves).
        log_every: Optimizer steps between CSV/TensorBoard rows.
        checkpoint_every: Optimizer steps between training checkpoints (also at each epoch end).
        keep_checkpoints: Training checkpoints kept on disk (oldest deleted first).
        val_every: Epochs between validations.
        val_max_samples: Validation samples per validation (None: the whole split).
        val_batch_size: Validation batch size.
        max_bad_steps: Consecutive steps with a non-finite loss that abort the run (each such
            step is skipped without an update).
        stop_after_steps: Stop (with a checkpoint) once this many optimizer steps are done, e.g.
            to fit a job's time slot; resume later with ``--resume``. None: run all epochs.
        time_limit_minutes: Stop (with a checkpoint) after this much training time in this
            invocation. None: no limit.
    """

    dataset: str = "synthetic"
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    model: str = "lggd-rn50"
    model_options: dict[str, Any] = field(default_factory=dict)
    clip_weights: str | None = None
    freeze_clip: bool | None = None
    # Optimisation: paper Section V.C.
    epochs: int = 50
    batch_size: int = 72
    lr: float = 1e-4
    weight_decay: float = 0.06
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 2000
    warmup_start_lr: float = 1e-5
    min_lr: float = 0.0
    grad_clip: float = 1.0
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Runtime.
    precision: str = "auto"
    device: str = "auto"
    num_workers: int = 4
    seed: int = 0
    deterministic: bool = False
    # Run folder, logging and checkpoints.
    out: str = "runs/train"
    log_every: int = 20
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    val_every: int = 1
    val_max_samples: int | None = 2000
    val_batch_size: int = 16
    max_bad_steps: int = 20
    stop_after_steps: int | None = None
    time_limit_minutes: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
            check_int(name, getattr(self, name), 1)
        for name in ("val_every", "val_batch_size", "max_bad_steps"):
            check_int(name, getattr(self, name), 1)
        for name in ("warmup_steps", "num_workers", "seed"):
            check_int(name, getattr(self, name), 0)
        for name in ("val_max_samples", "stop_after_steps"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        _check_range("lr", self.lr, 0.0, 1.0, open_low=True)
        _check_range("warmup_start_lr", self.warmup_start_lr, 0.0, 1.0)
        _check_range("min_lr", self.min_lr, 0.0, self.lr)
        _check_range("weight_decay", self.weight_decay, 0.0, 10.0)
        _check_range("grad_clip", self.grad_clip, 0.0, math.inf)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise InputError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.time_limit_minutes is not None:
            _check_range("time_limit_minutes", self.time_limit_minutes, 0.0, math.inf, True)
        if self.precision not in PRECISIONS:
            raise InputError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if not self.out:
            raise InputError("out must name a run folder, e.g. runs/my-run")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); ``from_dict`` reads it back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from ``to_dict`` output; unknown keys are an error that names them."""
        return _from_dict(cls, data, "")


MODEL_RECIPES: dict[str, dict[str, Any]] = {
    # The paper's recipe is TrainConfig's own defaults.
    "lggd-rn50": {},
    # lggd-tiny trains its CLIP from scratch (no published weights) on a CPU or a small GPU: a
    # smaller batch, a higher peak rate with a short warm-up, and fewer epochs. Ours, not the
    # paper's. benchmarks/bench_synthetic.py's Recipe goes further for a 15-minute CPU run
    # (lr 3e-3, loss.foreground_beta=4, outputs at 1/2 resolution); see its docstring.
    "lggd-tiny": {
        "epochs": 20,
        "batch_size": 16,
        "lr": 1e-3,
        "warmup_steps": 100,
        "num_workers": 2,
        "log_every": 10,
        "checkpoint_every": 200,
        "val_max_samples": 200,
        "augment": AugmentConfig(rotation_deg=10.0),
    },
}


def default_config(model: str = "lggd-rn50", **changes: Any) -> TrainConfig:
    """The recipe for ``model`` (TrainConfig's defaults for unknown names), with ``changes``.

    Args:
        model: Registered model name.
        **changes: TrainConfig fields to set on top of the recipe.
    """
    recipe = {**MODEL_RECIPES.get(model, {}), "model": model, **changes}
    return replace_fields(TrainConfig(), recipe)


def replace_fields(config: Any, changes: dict[str, Any]) -> Any:
    """``dataclasses.replace`` whose error for an unknown field lists the known ones."""
    try:
        return dataclasses.replace(config, **changes)
    except TypeError as err:  # an unknown field name
        raise InputError(f"{err}; known fields: {', '.join(_field_names(type(config)))}") from err


def apply_overrides(config: TrainConfig, items: list[str]) -> TrainConfig:
    """Apply ``key=value`` overrides; nested keys use dots (``augment.hflip=0``).

    Values are parsed by the field's type: ints, floats, booleans (true/false/1/0/yes/no),
    ``none`` for optional fields, comma-separated lists for tuples. ``dataset_options.KEY`` and
    ``model_options.KEY`` take JSON values (numbers, true/false, lists) or plain strings.

    Raises:
        InputError: An item without ``=``, an unknown key (the message lists the known ones) or a
            value that does not parse as the field's type.
    """
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--set expects KEY=VALUE (e.g. lr=3e-4), got {item!r}")
        config = _set_path(config, key.split("."), raw.strip(), key)
    return config


def _set_path(obj: Any, path: list[str], raw: str, full: str) -> Any:
    name, rest = path[0], path[1:]
    hints = typing.get_type_hints(type(obj))
    if name not in hints:
        known = ", ".join(_field_names(type(obj)))
        raise InputError(f"unknown setting {full!r}; known keys here: {known}")
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if not rest:
            raise InputError(f"{full!r} is a group; set one of its keys, e.g. {full}.KEY=VALUE")
        value = _set_path(current, rest, raw, full)
    elif isinstance(current, dict):
        if len(rest) != 1:
            raise InputError(f"set one entry of {name}, e.g. {name}.KEY=VALUE (got {full!r})")
        value = {**current, rest[0]: _parse_json_or_str(raw)}
    else:
        if rest:
            raise InputError(f"{name!r} has no sub-keys (got {full!r})")
        value = parse_value(raw, hints[name], full)
    return replace_fields(obj, {name: value})


def _parse_json_or_str(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("none", "null", "")


def parse_value(raw: str, kind: Any, name: str) -> Any:
    """Parse the text ``raw`` as a value of the type hint ``kind`` (messages name ``name``)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if raw.lower() in _NONE and type(None) in args:
            return None
        (kind,) = [a for a in args if a is not type(None)]
        args = typing.get_args(kind)
    try:
        if kind is bool:
            if raw.lower() not in _TRUE + _FALSE:
                raise ValueError("expected true or false")
            return raw.lower() in _TRUE
        if kind in (int, float, str):
            return kind(raw)
        if typing.get_origin(kind) is tuple:
            parts = json.loads(raw) if raw.startswith("[") else raw.split(",")
            return tuple(args[0](p) for p in parts)
    except (ValueError, TypeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read {name}={raw!r} as {_type_name(kind)}: {err}") from None
    raise InputError(f"{name} cannot be set from the command line")


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object for {prefix or cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise InputError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(hints)}")
    values = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            value = _from_dict(kind, value, f"{prefix}{name}.")
        elif typing.get_origin(kind) is tuple:
            value = tuple(value)
        values[name] = value
    return cls(**values)
