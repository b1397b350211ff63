"""``langgrasp data check``: load every sample of a dataset split and report what is broken.

:func:`check_dataset` works on any :class:`~langgrasp.datasets.base.GroundingDataset`: it loads
each sample, collects every :class:`~langgrasp.datasets.base.SampleError` with the sample's id,
and counts failures by reason kind (the error's ``reason`` attribute when the loader sets one,
else the first clause of its message with paths and numbers blanked). ``langgrasp data check``
prints that report; a root with the wrong layout prints the loader's
:class:`~langgrasp.datasets.base.LayoutError` (the expected tree and what is missing). The exit
status is 0 when every checked sample loads and 1 otherwise.

``data`` is a subcommand group: :func:`data_subparsers` returns its subparsers so that other
modules can add ``langgrasp data <name>`` commands. Only argparse-level imports at the top (the
CLI rule); the datasets are imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgrasp.datasets.base import GroundingDataset, SampleError

DATASETS = ("ocid-vlg", "grasp-anything", "synthetic")
"""Names accepted by ``--dataset`` (the registry of :mod:`langgrasp.datasets.base`)."""

DEFAULT_SPLITS = {"ocid-vlg": "test", "grasp-anything": "all", "synthetic": "test"}
"""Split checked when ``--split`` is not given."""

MAX_LISTED = 20
"""Failing samples printed by default; ``--json`` lists them all."""

EXIT_OK = 0
EXIT_BROKEN = 1

MAX_KIND_CHARS = 80
"""Longest reason kind derived from a message (see :func:`reason_kind`)."""

_PATH = re.compile(r"\S*/\S*")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+(\.\d+)?")


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        dataset: The dataset's registry name.
        n_total: Samples in the split.
        n_checked: Samples loaded (``n_total`` unless limited).
        n_ok: Samples that loaded.
        failures: ``(sample_id, reason)`` of every sample that did not load, in index order;
            ``reason`` is the error message without the leading sample id.
        counts: Number of failures per reason kind, most frequent first.
        n_grasps: Ground-truth grasps in the samples that loaded.
        n_masks: Samples that loaded with a target mask.
    """

    dataset: str
    n_total: int
    n_checked: int
    n_ok: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    n_grasps: int = 0
    n_masks: int = 0

    @property
    def ok(self) -> bool:
        """True when at least one sample was checked and every checked sample loaded."""
        return self.n_checked > 0 and not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field plus ``ok``."""
        return {**asdict(self), "failures": [list(f) for f in self.failures], "ok": self.ok}


def reason_kind(err: SampleError, sample_id: str) -> str:
    """The kind of failure ``err`` is, for counting.

    ``err.reason`` when the loader sets it. Otherwise the message's first ``": "``-separated
    clause that does not name the sample, with paths and quoted values removed and numbers
    replaced by ``<n>``: ``"test sample 7 (row 7): missing rgb file /d/rgb/7.png"`` counts as
    ``"missing rgb file"``.
    """
    reason = getattr(err, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    names_sample = re.compile(rf"(?<![\w./-]){re.escape(sample_id)}(?![\w/-]|\.\w)")
    clauses = str(err).split(": ")
    while len(clauses) > 1 and names_sample.search(clauses[0]):
        clauses.pop(0)
    kind = _QUOTED.sub("", _PATH.sub("", clauses[0]))
    kind = " ".join(_NUMBER.sub("<n>", kind).split()).strip(" ,;")
    return kind[:MAX_KIND_CHARS] or type(err).__name__


def _without_id(message: str, sample_id: str) -> str:
    prefix = f"{sample_id}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def check_dataset(
    dataset: GroundingDataset, progress: bool = True, limit: int | None = None
) -> CheckReport:
    """Load samples ``0 .. min(limit, len(dataset)) - 1`` and collect the broken ones.

    Args:
        dataset: Any grounding dataset.
        progress: Show a tqdm progress bar on stderr (skipped when tqdm is not installed).
        limit: Check only the first ``limit`` samples (None: all).

    Returns:
        The report. Only :class:`SampleError` counts as a broken sample; any other exception
        is a loader bug and propagates.
    """
    from langgrasp.datasets.base import SampleError

    n_total = len(dataset)
    n = n_total if limit is None else max(0, min(limit, n_total))
    report = CheckReport(dataset=dataset.name, n_total=n_total, n_checked=n)
    counts: Counter[str] = Counter()
    bar = _progress_bar(n, f"checking {dataset.name}") if progress else None
    try:
        for i in range(n):
            try:
                sample = dataset.load(i)
            except SampleError as err:
                sample_id = dataset.sample_id(i)
                report.failures.append((sample_id, _without_id(str(err), sample_id)))
                counts[reason_kind(err, sample_id)] += 1
            else:
                report.n_ok += 1
                report.n_grasps += len(sample.grasps)
                report.n_masks += sample.mask is not None
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    report.counts = dict(counts.most_common())
    return report


def _progress_bar(total: int, description: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the training extra; the check works without it
        return None
    return tqdm(total=total, desc=description, unit="sample", file=sys.stderr, dynamic_ncols=True)


# ------------------------------------------------------------------------------------- CLI


def data_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The subparsers of the ``langgrasp data`` group, created on first use."""
    if "data" not in sub.choices:
        parser = sub.add_parser("data", help="dataset tools (check)", description="Dataset tools.")
        parser.subcommands = parser.add_subparsers(  # type: ignore[attr-defined]
            dest="data_command", metavar="DATA_COMMAND", required=True
        )
    return sub.choices["data"].subcommands


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add ``langgrasp data check``."""
    check = data_subparsers(sub).add_parser(
        "check",
        help="load every sample of a dataset split and list the broken ones",
        description="Load every sample of a dataset split and report the ones that fail, with "
        "the reason. Exit status 0 when all load, 1 when any fails or the folder layout is "
        "wrong.",
    )
    check.add_argument("--dataset", required=True, choices=DATASETS, help="dataset name")
    check.add_argument("--data-root", type=Path, default=None, help="dataset root folder")
    check.add_argument(
        "--split",
        default=None,
        help="split to check (default: "
        + ", ".join(f"{name}: {split}" for name, split in DEFAULT_SPLITS.items())
        + ")",
    )
    check.add_argument("--version", default=None, help="OCID-VLG version (ocid-vlg only)")
    check.add_argument(
        "--layout",
        choices=("auto", "guide", "release"),
        default=None,
        help="Grasp-Anything++ folder layout (grasp-anything only; default: auto)",
    )
    check.add_argument(
        "--split-file",
        type=Path,
        default=None,
        help="Grasp-Anything++ .obj id list defining the split (grasp-anything only)",
    )
    check.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other loader option (repeatable), e.g. opening_edge=p1p2 for ocid-vlg",
    )
    check.add_argument("--limit", type=_positive_int, default=None, help="check the first N only")
    check.add_argument(
        "--max-listed",
        type=_positive_int,
        default=MAX_LISTED,
        help="failing samples to print (default: %(default)s)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=_cmd_check)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Loader options from the dataset-specific flags; a flag for another dataset is an error."""
    from langgrasp.datasets.base import parse_options
    from langgrasp.errors import InputError

    owners = {"version": "ocid-vlg", "layout": "grasp-anything", "split_file": "grasp-anything"}
    options = parse_options(args.dataset_option)
    for option, owner in owners.items():
        value = getattr(args, option)
        if value is None:
            continue
        if args.dataset != owner:
            flag = "--" + option.replace("_", "-")
            raise InputError(f"{flag} applies to --dataset {owner}, not {args.dataset}")
        options[option] = value
    return options


def _cmd_check(args: argparse.Namespace) -> int:
    from langgrasp.datasets.base import LayoutError, open_dataset

    split = DEFAULT_SPLITS[args.dataset] if args.split is None else args.split
    options = _options(args)
    head = {"dataset": args.dataset, "split": split, "data_root": _str(args.data_root)}
    try:
        dataset = open_dataset(args.dataset, args.data_root, split, **options)
    except LayoutError as err:
        if args.json:
            print(json.dumps({**head, "ok": False, "layout_error": str(err)}))
        else:
            print(f"{args.dataset} split {split!r}: wrong folder layout\n{err}")
        return EXIT_BROKEN
    report = check_dataset(dataset, progress=True, limit=args.limit)
    layout = getattr(dataset, "layout", None)
    if args.json:
        print(json.dumps({**head, "layout": layout, **report.to_dict()}))
    else:
        name = args.dataset
        if report.dataset != name:  # e.g. a written synthetic set is read by the OCID-VLG loader
            name += f" (read by the {report.dataset} loader)"
        _print_report(report, name, split, layout, args.max_listed)
    return EXIT_OK if report.ok else EXIT_BROKEN


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _print_report(
    report: CheckReport, name: str, split: str, layout: str | None, max_listed: int
) -> None:
    where = f"{name} split {split!r}" + (f" ({layout} layout)" if layout else "")
    limited = f", checked the first {report.n_checked}" if report.n_checked < report.n_total else ""
    print(f"{where}: {report.n_total} samples{limited}")
    if report.n_checked == 0:
        print("no samples to check")
        return
    n_failed = len(report.failures)
    print(
        f"{report.n_ok} of {report.n_checked} load ({report.n_grasps} grasps, "
        f"{report.n_masks} with a target mask); {n_failed} fail"
    )
    if not n_failed:
        return
    print("failures by reason:")
    for kind, count in report.counts.items():
        print(f"  {count:>6}  {kind}")
    print("failing samples:")
    for sample_id, reason in report.failures[:max_listed]:
        print(f"  {sample_id}: {reason}")
    if n_failed > max_listed:
        print(f"  ... and {n_failed - max_listed} more (--json lists them all)")
