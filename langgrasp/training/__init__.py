"""Training: data pipeline, batch augmentation, the training loop and its checkpoints.

Modules (import them directly; this package imports nothing heavy so ``langgrasp --help`` stays
fast):

* ``config``: :class:`~langgrasp.training.config.TrainConfig` (the paper's recipe for lggd-rn50,
  a lighter one for lggd-tiny) and ``--set key=value`` overrides.
* ``data``: a torch ``Dataset`` over any ``GroundingDataset`` (letterbox, CLIP normalisation,
  tokens, target maps via the shared ``encode_grasps``); broken samples are skipped and counted.
* ``augment``: kornia augmentation on the batch (rotation and flips that keep grasp angles and
  the instruction's left/right consistent, colour jitter, blur, noise).
* ``state``: atomic, pickle-free training checkpoints (safetensors + JSON) and resume.
* ``loop``: :func:`~langgrasp.training.loop.train`, single process or DDP under ``torchrun``.
* ``processes``: DDP process group, devices, seeds, mixed precision, stop signals.
* ``rundir``: the run folder's ``config.json`` and the checks before a run starts or resumes.
* ``logs``: CSV, TensorBoard and the curves PNG of a run folder.
* ``commands``: the ``langgrasp train`` command.
"""
