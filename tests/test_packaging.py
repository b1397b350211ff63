"""The boundaries that keep the edge install small and Python 3.10 compatible."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EDGE_PACKAGES = ("langgrasp.runtime", "langgrasp.calibration")
# Every module of the edge packages, found on disk so that a new module is checked too.
EDGE_MODULES = [
    info.name
    for package in EDGE_PACKAGES
    for info in pkgutil.walk_packages([str(ROOT / package.replace(".", "/"))], prefix=f"{package}.")
]
# Modules the torch-free runtime and the dataset tools use besides runtime/ and calibration/.
TORCH_FREE = [
    *EDGE_PACKAGES,
    *EDGE_MODULES,
    "langgrasp.errors",
    "langgrasp.detector.grasp",
    "langgrasp.detector.postprocess",
    "langgrasp.detector.metrics",
    "langgrasp.detector.preprocess",
    "langgrasp.detector.visualize",
    "langgrasp.detector.config",
    "langgrasp.datasets.synthetic",
    "langgrasp.datasets.base",
    "langgrasp.datasets.ocid_vlg",
    "langgrasp.datasets.synthetic_set",
    "langgrasp.datasets.grasp_anything",
    "langgrasp.datasets.safe_pickle",
    "langgrasp.datasets.check",
]


def test_torch_free_modules_do_not_import_torch():
    code = "\n".join(
        [
            "import sys",
            f"for m in {TORCH_FREE!r}:",
            "    __import__(m)",
            "print(sorted(k for k in ('torch', 'open_clip') if k in sys.modules))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_edge_code_is_python_3_10_compatible():
    pytest.importorskip("vermin")  # dev extra
    vermin = Path(sys.executable).with_name("vermin")  # the console script of this environment
    paths = [p.replace(".", "/") for p in EDGE_PACKAGES]
    paths += [m.replace(".", "/") + ".py" for m in TORCH_FREE if not m.startswith(EDGE_PACKAGES)]
    result = subprocess.run(
        [str(vermin), "-t=3.10-", "--no-tips", "--violations", "--eval-annotations", *paths],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_extra_does_not_pull_torch():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(
        project["optional-dependencies"]["runtime"] + project["dependencies"]
    ).lower()
    assert "torch" not in runtime and "open-clip" not in runtime
