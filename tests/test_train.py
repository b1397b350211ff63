import csv
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from langgrasp.cli import main
from langgrasp.datasets.base import open_dataset
from langgrasp.datasets.synthetic import SceneConfig
from langgrasp.datasets.synthetic_set import SyntheticDataset, write_synthetic_set
from langgrasp.detector.checkpoint import load_checkpoint
from langgrasp.errors import LanggraspError
from langgrasp.training import loop, state
from langgrasp.training.config import AugmentConfig, default_config
from langgrasp.training.logs import truncate_csv

SCENE = SceneConfig().resized(80, 60)
ROOT = Path(__file__).resolve().parents[1]
# Small and fast: 64 px model input, no worker processes, a row and a checkpoint every 2 steps.
FAST = [
    "--batch-size", "2", "--no-progress",
    "--set", "model_options.input_size=64", "--set", "num_workers=0",
    "--set", "log_every=1", "--set", "checkpoint_every=2", "--set", "val_max_samples=2",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the 2-core test machine is shared, and oversubscription is 50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_config(out, **changes):
    base = {
        "out": str(out),
        "epochs": 2,
        "batch_size": 2,
        "num_workers": 0,
        "model_options": {"input_size": 64},
        "log_every": 1,
        "checkpoint_every": 2,
        "val_split": "",
        "augment": AugmentConfig(vflip=0.5, blur_p=0.5, noise_p=0.5),
    }
    return default_config("lggd-tiny", **{**base, **changes})


def synthetic(n, split="train"):
    return SyntheticDataset(split, n=n, scene_config=SCENE)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """A small synthetic set in the OCID-VLG layout (4 train and 2 val scenes of 80x60)."""
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_set(root, n=4, splits=["train", "val"], scene_config=SCENE, progress=False)
    return root


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def steps_logged(run):
    return [int(r["step"]) for r in read_rows(run / "train.csv")]


def test_learning_rate_warms_up_then_decays():
    config = default_config("lggd-rn50", warmup_steps=10, min_lr=1e-6)
    lrs = [loop.learning_rate(s, config, total_steps=100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[10] == pytest.approx(1e-4)
    assert all(a < b for a, b in itertools.pairwise(lrs[:11]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[100] == pytest.approx(1e-6) and lrs[55] == pytest.approx((1e-4 + 1e-6) / 2)


def test_cli_run_on_synthetic_writes_the_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--dataset", "synthetic", "--dataset-option", "n=4", "--epochs", "1"]
    assert main([*argv, "--out", str(run), *FAST]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {run}" in out and "best J@1" in out
    stored = json.loads((run / "config.json").read_text())
    assert stored["train"]["model"] == "lggd-tiny" and stored["model"]["input_size"] == 64
    assert stored["train"]["dataset_options"] == {"n": 4}
    assert steps_logged(run) == [1, 2]
    val = read_rows(run / "val.csv")
    assert len(val) == 1 and 0.0 <= float(val[0]["j@1"]) <= 1.0
    assert (run / "curves.png").stat().st_size > 0
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest == {"checkpoint": "step-00000002", "step": 2}
    model, meta = load_checkpoint(run / "best")
    assert model.config.input_size == 64 and "j@1" in meta["metrics"]
    document = json.loads((run / "checkpoints" / "step-00000002" / "train_state.json").read_text())
    assert document["progress"]["epoch"] == 1 and document["progress"]["batch_in_epoch"] == 0


def test_ocid_folder_with_broken_samples_finishes_and_reports_them(tmp_path, synth_root, capsys):
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    images = sorted((root / "synthetic" / "train" / "rgb").glob("*.png"))
    images[0].unlink()
    images[2].write_bytes(b"\x89PNG truncated")
    dataset = open_dataset("ocid-vlg", root, "train", version="synthetic")
    broken = {dataset.sample_id(0), dataset.sample_id(2)}
    run = tmp_path / "run"
    argv = ["train", "--dataset", "ocid-vlg", "--data-root", str(root), "--epochs", "1"]
    argv += ["--dataset-option", "version=synthetic", "--out", str(run), *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "skipped 2 broken samples" in out
    rows = read_rows(run / "skipped.csv")
    assert {r["sample_id"] for r in rows} == broken
    assert all(r["reason"] and r["epoch"] == "0" for r in rows)
    assert (run / "best" / "model.safetensors").is_file()


def test_sigkill_then_resume_finishes_and_repeats_at_most_one_interval(tmp_path, synth_root):
    run = tmp_path / "run"
    argv = ["train", "--dataset", "ocid-vlg", "--data-root", str(synth_root), "--epochs", "4"]
    argv += ["--dataset-option", "version=synthetic", "--out", str(run), *FAST]
    argv += ["--set", "val_split="]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "langgrasp.cli", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    pointer = run / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 120
    while not pointer.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate()
    assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]
    saved = json.loads(pointer.read_text())["step"]
    reached = max(steps_logged(run))
    assert saved < 8  # killed partway through the 8 steps
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    assert steps_logged(run) == list(range(1, 9))  # every step once, none lost
    repeated = reached - saved
    assert 0 <= repeated <= 2  # at most the checkpoint interval is trained twice
    assert json.loads(pointer.read_text())["step"] == 8


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    data = synthetic(6)
    whole = loop.train(small_config(tmp_path / "a"), train_data=data, show_progress=False)
    assert whole.finished and whole.step == 6
    first = loop.train(
        small_config(tmp_path / "b", stop_after_steps=2), train_data=data, show_progress=False
    )
    assert not first.finished and first.stop_reason == "stop_after_steps" and first.step == 2
    second = loop.train(
        small_config(tmp_path / "b", stop_after_steps=4),
        resume=True,
        train_data=data,
        show_progress=False,
    )
    assert (second.step, second.epoch) == (4, 1)  # stopped mid-way through the second epoch
    last = loop.train(
        small_config(tmp_path / "b"), resume=True, train_data=data, show_progress=False
    )
    assert last.finished and last.step == 6
    for name in ("model.safetensors", "train_state.safetensors"):
        a = load_file(whole.checkpoint / name)
        b = load_file(last.checkpoint / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert steps_logged(tmp_path / "b") == list(range(1, 7))
    history = json.loads((tmp_path / "b" / "config.json").read_text())["history"]
    assert [h["resumed_from"] for h in history] == [None, "step-00000002", "step-00000004"]


def test_ddp_two_cpu_processes_with_gloo(tmp_path, synth_root):
    run = tmp_path / "run"
    argv = ["train", "--dataset", "ocid-vlg", "--data-root", str(synth_root), "--epochs", "1"]
    argv += ["--dataset-option", "version=synthetic", "--out", str(run), *FAST]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += ["--nproc_per_node", "2", "-m", "langgrasp.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*launcher, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run folder:") == 1  # only the main process reports
    checkpoint = run / "checkpoints" / "step-00000002"  # 4 samples / (2 processes x 1) = 2 steps
    document = json.loads((checkpoint / "train_state.json").read_text())
    assert document["world_size"] == 2 and document["progress"]["samples"] == 4
    assert (checkpoint / "rng-rank0.json").is_file() and (checkpoint / "rng-rank1.json").is_file()
    assert steps_logged(run) == [1, 2]


def fake_run(folder, **changes):
    """A run folder with a stored config and one (empty) checkpoint, enough for CLI checks."""
    config = default_config("lggd-tiny", dataset="synthetic", out=str(folder), **changes)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": config.to_dict()}))
    checkpoint = folder / "checkpoints" / "step-00000001"
    checkpoint.mkdir(parents=True)
    (checkpoint / "train_state.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train"], "--dataset is required"),
        (["train", "--resume"], "--resume needs --out"),
        (["train", "--resume", "--out", "{tmp}/none"], "cannot resume"),
        (["train", "--dataset", "ocid-vlg"], "Google Drive"),
        (["train", "--dataset", "grasp-anything"], "--data-root PATH"),
        (["train", "--dataset", "ocid-vlg", "--data-root", "{tmp}/none"], "is not a folder"),
        (["train", "--dataset", "synthetic", "--set", "lr=fast"], "cannot read lr='fast'"),
        (["train", "--dataset", "synthetic", "--set", "nope=1"], "unknown setting 'nope'"),
        (["train", "--dataset", "synthetic", "--epochs", "0"], "epochs must be an integer >= 1"),
        (["train", "--dataset", "synthetic", "--model", "lggd-huge"], "unknown model"),
        (["train", "--dataset", "synthetic", "--device", "cuda:0"], "no CUDA GPU"),
        (["train", "--dataset", "synthetic", "--set", "model_options.depth=3"], "LGGDConfig"),
        (["train", "--dataset", "synthetic", "--out", "{run}"], "continue it with --resume"),
        (["train", "--resume", "--out", "{run}", "--lr", "1"], "these differ: lr"),
    ],
)
def test_bad_command_lines_give_one_clear_error(argv, message, tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available() and "cuda:0" in argv:
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)  # where a default run folder (runs/...) would appear
    run = fake_run(tmp_path / "run")
    argv = [a.format(tmp=tmp_path, run=run) for a in argv]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "runs").exists()


def test_non_finite_steps_are_skipped_then_abort(tmp_path, monkeypatch):
    def nan_loss(output, mask, grasp_maps, config=None):
        return {"total": output.mask.sum() * math.nan}

    monkeypatch.setattr(loop, "lggd_loss", nan_loss)
    config = small_config(tmp_path / "run", max_bad_steps=2, epochs=1)
    with pytest.raises(LanggraspError, match="2 steps in a row had a non-finite loss"):
        loop.train(config, train_data=synthetic(6), show_progress=False)


class SignalOnLoad(SyntheticDataset):
    """Sends this process SIGTERM while loading sample ``trigger`` (like a cluster preemption)."""

    trigger = 0

    def load(self, index):
        if index == self.trigger:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().load(index)


def test_sigterm_stops_cleanly_with_a_checkpoint(tmp_path):
    data = SignalOnLoad("train", n=6, scene_config=SCENE)
    result = loop.train(small_config(tmp_path / "run", epochs=3), train_data=data,
                        show_progress=False)  # fmt: skip
    assert result.stop_reason == "SIGTERM" and not result.finished
    assert result.step < 9 and state.find_latest(result.run_dir).name == f"step-{result.step:08d}"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed again


def test_optimizer_and_rng_states_round_trip():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    tensors, structure = state.flatten_optimizer(optimizer.state_dict())
    again = state.unflatten_optimizer(tensors, json.loads(json.dumps(structure)))
    fresh = torch.optim.AdamW(model.parameters(), lr=1.0)
    fresh.load_state_dict(again)
    assert fresh.param_groups[0]["betas"] == (0.8, 0.9) and fresh.param_groups[0]["lr"] == 1e-3
    for a, b in zip(fresh.state.values(), optimizer.state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in b)
    generator = torch.Generator().manual_seed(1)
    rng_tensors, info = state.capture_rng({"g": generator})
    expected = (torch.rand(3), torch.rand(2, generator=generator), __import__("random").random())
    state.restore_rng(rng_tensors, json.loads(json.dumps(info)), {"g": generator})
    got = (torch.rand(3), torch.rand(2, generator=generator), __import__("random").random())
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert got[2] == expected[2]


def test_find_latest_survives_a_broken_pointer_and_leftovers(tmp_path):
    for step in (2, 4):
        folder = tmp_path / "checkpoints" / state.checkpoint_name(step)
        folder.mkdir(parents=True)
        (folder / state.STATE_JSON).write_text("{}")
        (folder / "model.safetensors").write_bytes(b"")
    (tmp_path / "checkpoints" / ".step-00000006.tmp").mkdir()  # a crash while writing step 6
    pointer = tmp_path / "checkpoints" / state.LATEST_FILE
    pointer.write_text('{"checkpoint": "step-00000002", "step": 2}')
    assert state.find_latest(tmp_path).name == "step-00000002"
    pointer.write_text("{trunc")
    assert state.find_latest(tmp_path).name == "step-00000004"
    assert state.find_latest(tmp_path / "elsewhere") is None


def test_best_model_is_swapped_in_and_recovered(tmp_path, tiny_config):
    from langgrasp.detector.model import build_model

    model = build_model(replace(tiny_config, input_size=64))
    state.save_best(tmp_path, model, {"step": 1})
    state.save_best(tmp_path, model, {"step": 2})
    assert load_checkpoint(tmp_path / "best")[1]["step"] == 2
    (tmp_path / "best").rename(tmp_path / ".best.old")  # crash between the two renames
    state.recover_best(tmp_path)
    assert load_checkpoint(tmp_path / "best")[1]["step"] == 2


def test_resume_drops_log_rows_written_after_the_checkpoint(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("step,epoch,loss\n1,0,0.5\n2,0,0.4\n3,0,0.3\n4,0,0.")
    truncate_csv(path, 2)
    assert [r["step"] for r in read_rows(path)] == ["1", "2"]
    path.write_text("step,epoch,loss\n1,0,0.5\n2,0,0.4\nx,")  # a row cut short by a crash
    truncate_csv(path, 5)
    assert [r["step"] for r in read_rows(path)] == ["1", "2"]


@pytest.fixture
def small_model(tiny_config):
    from langgrasp.detector.model import build_model

    return build_model(replace(tiny_config, input_size=64))


def test_same_step_checkpoint_survives_a_crash_between_its_renames(
    tmp_path, monkeypatch, small_model
):
    model = small_model
    optimizer = torch.optim.AdamW(model.parameters())
    order = torch.arange(4)

    def commit(step, keep=1):
        progress = state.progress_dict(state.Progress(step=step))
        (state.prepare_pending(tmp_path, step) / "rng-rank0.json").write_text("{}")
        return state.commit_checkpoint(
            tmp_path, model, optimizer, {"progress": progress}, order, keep
        )

    first = commit(3)
    assert state.find_latest(tmp_path) == first
    again = commit(3)  # the same step saved again: one folder, nothing left aside
    assert again == first and state.find_latest(tmp_path) == first
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest.json",
        "step-00000003",
    ]
    # A crash after the old copy was moved aside and before the new one was renamed in: with
    # keep_checkpoints=1 the moved copy is the only checkpoint left, and resuming must find it.
    real_rename = Path.rename

    def crash(self, target):
        if self.name.endswith(".tmp"):
            raise KeyboardInterrupt("killed")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        commit(3)
    monkeypatch.undo()
    found = state.find_latest(tmp_path)
    assert found is not None and found.name == ".step-00000003.old"
    assert state.load_state(found).progress.step == 3
    commit(5)  # the next checkpoint cleans up
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest.json",
        "step-00000005",
    ]


def test_commit_keeps_the_new_checkpoint_and_drops_stale_newer_ones(tmp_path, small_model):
    # A crash between a checkpoint's rename and the pointer update leaves a newer folder that
    # latest.json does not name; the resumed run goes on from the older one.
    model = small_model
    optimizer = torch.optim.AdamW(model.parameters())

    def commit(step):
        progress = state.progress_dict(state.Progress(step=step))
        state.prepare_pending(tmp_path, step)
        return state.commit_checkpoint(
            tmp_path, model, optimizer, {"progress": progress}, torch.arange(4), 1
        )

    commit(4)
    orphan = commit(8)
    (tmp_path / "checkpoints" / "latest.json").write_text('{"checkpoint": "step-00000004"}')
    new = commit(6)  # resumed from step 4, saved at step 6 (e.g. an epoch end)
    assert new.is_dir() and not orphan.exists()
    assert state.find_latest(tmp_path) == new
