import json
import subprocess
import sys

import cv2
import pytest

from langgrasp.cli import main

SUBCOMMANDS = [
    "info",
    "demo",
    "synth",
    "data",
    "train",
    "eval",
    "export",
    "detect",
    "calibrate",
    "devices",
    "run",
]


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help_for_every_subcommand(sub, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"] if sub is None else [sub, "--help"])
    assert exit_info.value.code == 0
    assert "usage: langgrasp" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["lggd-rn50", "lggd-tiny"])
def test_info_prints_one_json_line(name, capsys):
    assert main(["info", "--model", name]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    info = json.loads(lines[0])
    assert {"params_total", "params_trainable", "gflops", "input_size"} <= set(info)
    assert info["model"] == name


def test_unknown_model_is_a_one_line_error(capsys):
    assert main(["info", "--model", "resnet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'resnet'") and "lggd-tiny" in err
    assert "Traceback" not in err


def test_demo_picks_with_the_shipped_bundle_against_simulators(tmp_path, capsys):
    out = tmp_path / "demo.png"
    audit = tmp_path / "audit.jsonl"
    assert main(["demo", "--out", str(out), "--audit", str(audit), "--sim-speed", "10"]) == 0
    text = capsys.readouterr().out
    assert "outcome: placed" in text and str(out) in text
    assert "gripper @1000" in text and "arm @128" in text  # the register writes are reported
    picture = cv2.imread(str(out))
    assert picture is not None and picture.std() > 0
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
    assert "device_write" in events and "detection" in events


def test_demo_json_and_bad_command(tmp_path, capsys):
    args = ["demo", "--json", "--out", str(tmp_path / "d.png"), "--sim-speed", "10"]
    assert main([*args, "--command", "pick the purple unicorn"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["command"] == "pick the purple unicorn"
    assert result["outcome"] in ("not_found", "refused", "placed", "missed")
    assert main(["demo", "--command", "   ", "--out", str(tmp_path / "e.png")]) == 2
    assert "command is empty" in capsys.readouterr().err


def test_console_script_entry_point_runs_without_torch_for_help():
    code = "\n".join(
        [
            "import sys",
            "from langgrasp.cli import main",
            "try:",
            "    main(['--help'])",
            "except SystemExit:",
            "    pass",
            "print('torch' in sys.modules)",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().endswith("False")


def test_unwritable_output_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["demo", "--command", "pick the purple unicorn", "--sim-speed", "10"]
    assert main([*args, "--out", str(blocker / "sub" / "demo.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
