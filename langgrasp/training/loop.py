"""The training loop: setup, then epochs of steps, validation and checkpoints (nanoGPT spirit).

``train(config)`` reads top to bottom: processes and seeds -> run folder (new, or resume from its
latest checkpoint) -> data -> model -> optimizer -> loop. One step is: batch to device, augment,
learning rate from the schedule, forward under autocast, loss, backward, clip, AdamW step. Every
``checkpoint_every`` steps and at each epoch end the full training state is saved
(``langgrasp.training.state``); validation J@1 comes from ``langgrasp.evaluation.evaluate_model``
and the best model is kept in ``best/``. SIGTERM or Ctrl-C, ``stop_after_steps`` and
``time_limit_minutes`` stop cleanly after the current step with a checkpoint; ``--resume``
continues exactly where the run stopped.

Run it with ``langgrasp train`` (``langgrasp.training.commands``), on several GPUs with
``torchrun --nproc_per_node N -m langgrasp.cli train ...``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from langgrasp.datasets.base import GroundingDataset
from langgrasp.detector.losses import lggd_loss
from langgrasp.detector.model import LGGD, build_model
from langgrasp.errors import InputError, LanggraspError
from langgrasp.training import state as ckpt
from langgrasp.training.augment import BatchAugmenter
from langgrasp.training.config import TrainConfig
from langgrasp.training.data import (
    Batch,
    ResumableSampler,
    Skipped,
    TrainingDataset,
    collate,
    open_split,
)
from langgrasp.training.logs import RunLog, plot_curves
from langgrasp.training.processes import (
    Processes,
    autocast_dtype,
    seed_everything,
    setup_processes,
    stop_signals,
    teardown_processes,
)
from langgrasp.training.rundir import open_run_dir, resolve_model_config

VAL_METRIC = "j@1"
"""Key of ``EvalResult.metrics`` that selects the best checkpoint: J@1, the paper's headline."""


@dataclass
class TrainResult:
    """What a call of :func:`train` did.

    Attributes:
        run_dir: The run folder.
        step: Optimizer steps done in total.
        epoch: Epochs completed.
        finished: Whether every epoch is done (False: stopped early, resume to continue).
        stop_reason: ``finished``, ``stop_after_steps``, ``time limit`` or the signal name.
        checkpoint: The latest training checkpoint folder.
        best_metric: Best validation J@1 (None without validation).
        val_metrics: Metrics of the last validation.
        skipped: Samples skipped during this call.
    """

    run_dir: Path
    step: int
    epoch: int
    finished: bool
    stop_reason: str
    checkpoint: Path | None
    best_metric: float | None
    val_metrics: dict[str, float] = field(default_factory=dict)
    skipped: int = 0


@dataclass
class _Run:
    """Everything the loop works with (built once by :func:`train`)."""

    config: TrainConfig
    procs: Processes
    run_dir: Path
    model: LGGD
    net: torch.nn.Module  # the model, wrapped in DDP when there are several processes
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast_dtype: torch.dtype | None
    augmenter: BatchAugmenter
    data: TrainingDataset
    sampler: ResumableSampler
    val_source: GroundingDataset | None
    log: RunLog | None
    progress: ckpt.Progress
    order: torch.Tensor
    steps_per_epoch: int
    total_steps: int
    skipped: list[Skipped] = field(default_factory=list)
    epoch_examples: int = 0
    stop_reason: str = ""
    signal_name: str = ""
    started: float = field(default_factory=time.monotonic)
    last_checkpoint: Path | None = None
    val_metrics: dict[str, float] = field(default_factory=dict)
    skipped_total: int = 0


def learning_rate(step: int, config: TrainConfig, total_steps: int) -> float:
    """Linear warm-up from ``warmup_start_lr`` to ``lr``, then cosine decay to ``min_lr``."""
    if step < config.warmup_steps:
        return config.warmup_start_lr + (config.lr - config.warmup_start_lr) * (
            step / config.warmup_steps
        )
    decay_steps = max(total_steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / decay_steps, 1.0)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    train_data: GroundingDataset | None = None,
    val_data: GroundingDataset | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train a model as ``config`` says; see the module docstring.

    Args:
        config: The run's config (``TrainConfig.out`` is the run folder).
        resume: Continue the run in ``config.out`` from its latest checkpoint.
        train_data: Use this dataset instead of opening ``config.dataset``/``train_split``.
        val_data: Use this validation dataset instead of opening ``val_split``.
        show_progress: Show a tqdm bar on the main process.

    Raises:
        InputError: Bad config, data, run folder or checkpoint (the message says what to do).
    """
    procs = setup_processes(config.device)
    try:
        with stop_signals() as stop:
            return _train(config, procs, resume, train_data, val_data, show_progress, stop)
    finally:
        teardown_processes(procs)


def _train(config, procs, resume, train_data, val_data, show_progress, stop) -> TrainResult:
    # Everything that can be wrong with the config or the data fails before the run folder exists.
    model_config = resolve_model_config(config)
    if config.batch_size % procs.world_size:
        raise InputError(
            f"batch_size {config.batch_size} must be divisible by the {procs.world_size} processes"
        )
    source, val_source = train_data, val_data
    if source is None:
        source = open_split(
            config.dataset, config.data_root, config.train_split, config.dataset_options
        )
    if val_source is None and config.val_split:
        val_source = open_split(
            config.dataset, config.data_root, config.val_split, config.dataset_options
        )
    if len(source) == 0:
        raise InputError(f"the {config.dataset} {config.train_split} split has no samples")
    run_dir = Path(config.out)
    loaded = open_run_dir(run_dir, config, resume, procs)
    seed_everything(config.seed, procs.rank, config.deterministic)
    model = build_model(model_config, config.clip_weights, config.freeze_clip).to(procs.device)
    run = _build_run(config, procs, run_dir, model, source, val_source, loaded)
    try:
        while run.progress.epoch < config.epochs and not run.stop_reason:
            _train_epoch(run, stop, show_progress)
            if run.progress.batch_in_epoch >= run.steps_per_epoch:
                _end_epoch(run)
        if not run.stop_reason:
            run.stop_reason = "finished"
        if procs.is_main:
            plot_curves(run_dir)
    finally:
        if run.log is not None:
            run.log.close()
    return TrainResult(
        run_dir=run_dir,
        step=run.progress.step,
        epoch=run.progress.epoch,
        finished=run.progress.epoch >= config.epochs,
        stop_reason=run.stop_reason,
        checkpoint=run.last_checkpoint or ckpt.find_latest(run_dir),
        best_metric=run.progress.best_metric,
        val_metrics=run.val_metrics,
        skipped=run.skipped_total,
    )


def _build_run(config, procs, run_dir, model, source, val_source, loaded) -> _Run:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    groups.append({"params": no_decay, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
    dtype = autocast_dtype(config.precision, procs.device)
    scaler = torch.amp.GradScaler(procs.device.type, enabled=dtype is torch.float16)
    data = TrainingDataset(source, model.config)
    sampler = ResumableSampler(data, procs.world_size, procs.rank, config.seed)
    steps_per_epoch = math.ceil(sampler.num_samples / (config.batch_size // procs.world_size))
    augmenter = BatchAugmenter(config.augment, model.config, seed=config.seed * 1009 + procs.rank)
    progress, order = ckpt.Progress(), sampler.epoch_order(0)
    if loaded is not None:
        progress, order = _restore(loaded, model, optimizer, scaler)
    net = model
    if procs.distributed:
        ids = [procs.device.index] if procs.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    run = _Run(
        config=config,
        procs=procs,
        run_dir=run_dir,
        model=model,
        net=net,
        optimizer=optimizer,
        scaler=scaler,
        autocast_dtype=dtype,
        augmenter=augmenter,
        data=data,
        sampler=sampler,
        val_source=val_source,
        log=None,
        progress=progress,
        order=order,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * config.epochs,
    )
    if loaded is not None:
        run.skipped = [Skipped(**s) for s in loaded.document.get("epoch_skipped", [])]
        tensors_info = ckpt.load_rng(loaded.folder, procs.rank)
        ckpt.restore_rng(*tensors_info, {"augment": augmenter.generator})
    if procs.is_main:
        run.log = RunLog(run_dir, None if loaded is None else progress.step)
    return run


def _restore(loaded, model, optimizer, scaler) -> tuple[ckpt.Progress, torch.Tensor]:
    """Put the checkpoint's weights and optimizer state in place; returns progress and order."""
    document, progress = loaded.document, loaded.progress
    try:
        model.load_state_dict(loaded.model)
        optimizer.load_state_dict(loaded.optimizer)
    except (RuntimeError, ValueError, KeyError) as err:
        raise InputError(
            f"{loaded.folder} does not fit the model and optimizer of this run ({err}); was the "
            "code or the model config changed since it was written?"
        ) from err
    if document.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(document["scaler"])
    return progress, loaded.order


def _train_epoch(run: _Run, stop: dict[str, str], show_progress: bool) -> None:
    config, procs, progress = run.config, run.procs, run.progress
    run.sampler.start_epoch(
        progress.epoch, run.order, progress.batch_in_epoch * (config.batch_size // procs.world_size)
    )
    loader = DataLoader(
        run.data,
        batch_size=config.batch_size // procs.world_size,
        sampler=run.sampler,
        num_workers=config.num_workers,
        collate_fn=collate,
        pin_memory=procs.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed + progress.epoch),
    )
    bar = tqdm(
        total=run.steps_per_epoch,
        initial=progress.batch_in_epoch,
        desc=f"epoch {progress.epoch + 1}/{config.epochs}",
        disable=not (show_progress and procs.is_main),
        dynamic_ncols=True,
    )
    window: dict[str, float] = {}
    window_start = time.monotonic()
    for batch in loader:
        run.skipped.extend(batch.skipped)
        losses = _step(run, batch)
        progress.batch_in_epoch += 1
        bar.update()
        if losses is not None:
            for key, value in losses.items():
                window[key] = window.get(key, 0.0) + value
            window["n"] = window.get("n", 0) + 1
            window["samples"] = window.get("samples", 0) + len(batch) * procs.world_size
        if losses is not None and progress.step % config.log_every == 0:
            elapsed = time.monotonic() - window_start
            _log_train(run, window, elapsed, bar)
            window, window_start = {}, time.monotonic()
        end_of_epoch = progress.batch_in_epoch >= run.steps_per_epoch
        run.stop_reason = _stop_reason(run, stop)
        due = losses is not None and progress.step % config.checkpoint_every == 0
        if (run.stop_reason or due) and not end_of_epoch:  # epoch ends checkpoint in _end_epoch
            _checkpoint(run)
        if run.stop_reason:
            break
    _log_train(run, window, time.monotonic() - window_start, bar)  # the epoch's last steps
    bar.close()


def _step(run: _Run, batch: Batch) -> dict[str, float] | None:
    """One optimizer step on ``batch``; returns its losses, None if the step was skipped."""
    config, procs, progress = run.config, run.procs, run.progress
    (empty,) = procs.any(len(batch) == 0)
    if empty:  # every sample of some process's batch was broken: all processes skip together
        return None
    batch = run.augmenter(batch.to(procs.device, non_blocking=True))
    lr = learning_rate(progress.step, config, run.total_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    started = time.monotonic()
    autocast = run.autocast_dtype is not None
    with torch.autocast(procs.device.type, run.autocast_dtype, enabled=autocast):
        output = run.net(batch.images, batch.tokens)
    output = dataclasses.replace(output, **{k: v.float() for k, v in vars(output).items()})
    losses = lggd_loss(output, batch.masks, batch.grasp_maps, config.loss)
    run.scaler.scale(losses["total"]).backward()
    run.scaler.unscale_(run.optimizer)
    params = [p for g in run.optimizer.param_groups for p in g["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip or math.inf)
    finite = bool(torch.isfinite(norm))  # the same on every process: gradients are all-reduced
    if run.scaler.is_enabled():
        run.scaler.step(run.optimizer)  # the scaler skips the update if gradients are not finite
        run.scaler.update()
    elif finite:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if not finite:
        progress.bad_steps += 1
        progress.total_bad_steps += 1
        if progress.bad_steps >= config.max_bad_steps:
            raise LanggraspError(
                f"{progress.bad_steps} steps in a row had a non-finite loss or gradient (last at "
                f"step {progress.step}, lr {lr:.3g}); lower --lr or check the data. The last good "
                f"checkpoint is {ckpt.find_latest(run.run_dir)}"
            )
        return None
    progress.bad_steps = 0
    progress.step += 1
    progress.samples += len(batch) * procs.world_size
    progress.train_seconds += time.monotonic() - started
    run.epoch_examples += len(batch)
    values = {k: float(v.detach()) for k, v in losses.items()}
    return {"lr": lr, "grad_norm": float(norm), **values}


def _log_train(run: _Run, window: dict[str, float], elapsed: float, bar: tqdm) -> None:
    if run.log is None or not window.get("n"):
        return
    n = window["n"]
    row = {k: v / n for k, v in window.items() if k not in ("n", "samples")}
    row.update(step=run.progress.step, epoch=run.progress.epoch)
    row["loss"] = row.pop("total")
    row["samples_per_s"] = window["samples"] / max(elapsed, 1e-9)
    run.log.train(row)
    bar.set_postfix(
        loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", sps=f"{row['samples_per_s']:.1f}"
    )


def _stop_reason(run: _Run, stop: dict[str, str]) -> str:
    """Why to stop after this step ("" to go on); every process stops at the same step."""
    config, elapsed = run.config, time.monotonic() - run.started
    limit = config.stop_after_steps
    minutes = config.time_limit_minutes
    signalled, enough_steps, out_of_time = run.procs.any(
        bool(stop.get("signal")),
        limit is not None and run.progress.step >= limit,
        minutes is not None and elapsed >= 60 * minutes,
    )
    if signalled:
        return stop.get("signal") or "signal (on another process)"
    return "stop_after_steps" if enough_steps else "time limit" if out_of_time else ""


def _end_epoch(run: _Run) -> None:
    """Report skipped samples, validate, keep the best model, checkpoint the next epoch's start."""
    procs, progress, config = run.procs, run.progress, run.config
    gathered = procs.gather((run.skipped, run.epoch_examples))
    skipped = _unique([s for records, _ in gathered for s in records])
    examples = sum(n for _, n in gathered)
    if procs.is_main and skipped:
        tqdm.write(_skip_summary(progress.epoch, skipped))
        run.log.skipped(progress.epoch, skipped)
    run.skipped_total += len(skipped)
    if examples == 0 and skipped:
        raise InputError(
            f"every sample of epoch {progress.epoch + 1} was skipped; "
            + _skip_summary(progress.epoch, skipped)
        )
    run.skipped, run.epoch_examples = [], 0
    done = progress.epoch + 1
    if run.val_source is not None and (done % config.val_every == 0 or done == config.epochs):
        _validate(run)
    progress.epoch, progress.batch_in_epoch = done, 0
    run.order = run.sampler.epoch_order(done)
    _checkpoint(run)


def _validate(run: _Run) -> None:
    procs, progress = run.procs, run.progress
    if procs.is_main:
        from langgrasp.evaluation import evaluate_model

        result = evaluate_model(  # runs in eval mode and restores train mode
            run.model,
            run.val_source,
            max_samples=run.config.val_max_samples,
            batch_size=run.config.val_batch_size,
            progress=False,
            device=str(procs.device),
        )
        metrics = {k: float(v) for k, v in result.metrics.items()}
        run.val_metrics = metrics
        run.log.val(progress.step, progress.epoch, metrics)
        score = metrics.get(VAL_METRIC)
        summary = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if "/" not in k)
        tqdm.write(f"validation after epoch {progress.epoch + 1} (step {progress.step}): {summary}")
        if score is not None and (progress.best_metric is None or score > progress.best_metric):
            progress.best_metric, progress.best_step = score, progress.step
            meta = {"step": progress.step, "epoch": progress.epoch + 1, "metrics": metrics}
            meta["dataset"] = run.config.dataset
            ckpt.save_best(run.run_dir, run.model, meta)
    best = procs.gather((progress.best_metric, progress.best_step))[0]
    progress.best_metric, progress.best_step = best
    procs.barrier()


def _checkpoint(run: _Run) -> None:
    procs, progress = run.procs, run.progress
    skipped = _unique([s for part in procs.gather(run.skipped) for s in part])
    if procs.is_main:
        ckpt.prepare_pending(run.run_dir, progress.step)
    procs.barrier()
    ckpt.write_rng(
        ckpt.pending_dir(run.run_dir, progress.step),
        procs.rank,
        {"augment": run.augmenter.generator},
    )
    procs.barrier()
    if procs.is_main:
        state = {
            "progress": ckpt.progress_dict(progress),
            "world_size": procs.world_size,
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else {},
            "schedule": {"kind": "linear-warmup-cosine", "total_steps": run.total_steps},
            "data_order": {
                "seed": run.config.seed,
                "epoch": progress.epoch,
                "size": len(run.order),
            },
            "epoch_skipped": [dataclasses.asdict(s) for s in skipped],
            "train_config": run.config.to_dict(),
        }
        keep = run.config.keep_checkpoints
        run.last_checkpoint = ckpt.commit_checkpoint(
            run.run_dir, run.model, run.optimizer, state, run.order, keep
        )
    procs.barrier()


def _unique(records: list[Skipped]) -> list[Skipped]:
    return list({s.index: s for s in records}.values())


def _skip_summary(epoch: int, skipped: list[Skipped], shown: int = 10) -> str:
    lines = [f"epoch {epoch + 1}: skipped {len(skipped)} broken samples (see skipped.csv):"]
    lines += [f"  {s.sample_id}: {s.reason}" for s in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"  ... and {len(skipped) - shown} more")
    return "\n".join(lines)
