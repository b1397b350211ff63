"""robot.toml: the example loads, every table parses, and errors name file, table and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from langgrasp.runtime.config import (
    TABLES,
    RobotConfigError,
    load_robot_config,
    robot_config_from_dict,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "robot.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "robot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_and_points_at_the_simulators():
    config = load_robot_config(EXAMPLE)
    assert config.source == EXAMPLE
    assert config.camera.kind == "synthetic"
    assert config.gripper.modbus.port == 5020 and config.gripper.modbus.transport == "rtu-over-tcp"
    assert config.arm.modbus.port == 5021
    assert config.calibration.path == EXAMPLE.parent / "synthetic_calibration.json"
    assert config.bundle.threads is None  # "off"
    assert config.safety.auto_confirm_quality is None
    assert config.motion.capture_position_m is None
    assert config.place.position_m == (0.45, 0.35, 0.0)
    assert config.camera.width == 320 and config.camera.height == 240
    assert config.audit.path == EXAMPLE.parent / "../runs/audit.jsonl"


def test_example_documents_every_key():
    """Every field of every table of ours appears in the example (commented or set)."""
    import dataclasses

    from langgrasp.runtime import config as module

    text = EXAMPLE.read_text(encoding="utf-8")
    for cls in (
        module.BundleConfig,
        module.MotionConfig,
        module.SafetyConfig,
        module.PlaceConfig,
        module.LoopConfig,
        module.AuditConfig,
        module.GraspGeometryConfig,
    ):
        for f in dataclasses.fields(cls):
            assert f"{f.name} =" in text, f"{cls.__name__}.{f.name} missing from the example"
    for table in TABLES:
        assert f"[{table}]" in text


def test_minimal_config_uses_defaults_and_resolves_relative_paths(tmp_path):
    path = write(
        tmp_path,
        '[camera]\nkind = "synthetic"\n[calibration]\npath = "cal/calibration.json"\n'
        '[bundle]\npath = "/abs/bundle"\nproviders = "cuda, cpu"\n',
    )
    config = load_robot_config(path)
    assert config.calibration.path == tmp_path / "cal" / "calibration.json"
    assert config.bundle.path == Path("/abs/bundle")
    assert config.bundle.providers == ("cuda", "cpu")
    assert config.gripper is None and config.arm is None and config.place is None
    assert config.safety.min_quality == 0.3 and config.audit.path is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[camera]\nkind = "synthetic"\n[safty]\nx = 1\n', "unknown table 'safty'; known tables:"),
        (
            '[camera]\nkind = "synthetic"\n[safety]\nmax_openning_m = 0.1\n',
            "[safety]: unknown key 'max_openning_m'; known keys: workspace_min_m",
        ),
        (
            '[camera]\nkind = "synthetic"\n[safety]\nmin_quality = "high"\n',
            "[safety] min_quality must be a number",
        ),
        (
            '[camera]\nkind = "synthetic"\n[safety]\nworkspace_min_m = [0, 0]\n',
            "[safety] workspace_min_m must have 3 values",
        ),
        (
            '[camera]\nkind = "synthetic"\n[safety]\nworkspace_min_m = [0, 0, 1]\n'
            "workspace_max_m = [1, 1, 0.5]\n",
            "[safety]: workspace_min_m [0.0, 0.0, 1.0] must be below workspace_max_m",
        ),
        (
            '[camera]\nkind = "synthetic"\n[place]\nyaw_rad = 0.1\n',
            "[place]: missing key 'position_m'",
        ),
        (
            '[camera]\nkind = "synthetic"\n[motion]\nhome_after = 1\n',
            "[motion] home_after must be true or false",
        ),
        (
            '[camera]\nkind = "synthetic"\n[motion]\ntravel_speed = 2.0\n',
            "travel_speed must be within (0, 1]",
        ),
        (
            '[camera]\nkind = "synthetic"\n[loop]\nmax_candidates = 1.5\n',
            "[loop] max_candidates must be an integer",
        ),
        (
            '[camera]\nkind = "synthetic"\n[bundle]\npath = "b"\nprecision = "fp8"\n',
            "[bundle]: precision must be auto, fp32",
        ),
        ('[camera]\nkind = "webcam"\n', "[camera]"),
        ('[camera]\nkind = "synthetic"\nexposure = 3\n', "[camera]: unknown key(s) exposure"),
        ('[camera]\nkind = "synthetic"\n[gripper]\nmodel = "3f"\n', "[gripper]"),
        ('[camera]\nkind = "synthetic"\n[gripper]\nspeed = 3\n', "known keys"),
        (
            '[camera]\nkind = "synthetic"\n[arm]\nprofile = "kuka"\n',
            "[arm]: unknown register profile",
        ),
        ('[camera]\nkind = "synthetic"\n[arm.modbus]\nport = "x"\n', "[arm]"),
        ('[camera]\nkind = "synthetic"\n[gripper]\nopen_width_m = inf\n', "[gripper] open_width_m"),
        (
            '[camera]\nkind = "synthetic"\n[gripper.modbus]\ntimeout_s = nan\n',
            "[gripper] modbus.timeout_s must be a finite number",
        ),
        (
            '[camera]\nkind = "synthetic"\n[arm]\nack_timeout_s = nan\n',
            "[arm] ack_timeout_s must be a finite number",
        ),
        (
            '[camera]\nkind = "synthetic"\n[arm.modbus]\ntimeout_s = -inf\n',
            "[arm] modbus.timeout_s must be a finite number",
        ),
        (
            '[camera]\nkind = "synthetic"\n[geometry]\ngrasp_depth_offset_m = nan\n',
            "[geometry] grasp_depth_offset_m must be a finite number",
        ),
        (
            '[camera]\nkind = "synthetic"\n[geometry]\npregrasp_height_m = -0.1\n',
            "[geometry]: pregrasp_height_m must be >= 0",
        ),
        (
            '[camera]\nkind = "synthetic"\n[motion]\ntravel_speed = 0.8\n'
            "[safety]\nmax_speed = 0.5\n",
            "[motion] travel_speed (0.8) is above [safety] max_speed (0.5)",
        ),
        (
            '[camera]\nkind = "synthetic"\n[motion]\napproach_speed = 0.6\n',
            "[motion] approach_speed (0.6) is above [safety] max_speed (0.5)",
        ),
        ('[bundle]\npath = "b"\n', "missing the [camera] table"),
        ("[camera\n", "is not valid TOML"),
        ("camera = 3\n", "camera must be a table"),
    ],
)
def test_errors_name_the_file_the_table_and_the_key(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(RobotConfigError) as info:
        load_robot_config(path)
    message = str(info.value)
    assert needle in message
    assert str(path) in message


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(RobotConfigError, match=r"examples/robot\.toml"):
        load_robot_config(tmp_path / "nope.toml")


def test_from_dict_without_a_file():
    config = robot_config_from_dict(
        {"camera": {"kind": "synthetic"}, "safety": {"auto_confirm_quality": 0.9}}
    )
    assert config.source is None and config.safety.auto_confirm_quality == 0.9
    with pytest.raises(RobotConfigError, match="robot config \\[motion\\]"):
        robot_config_from_dict({"camera": {"kind": "synthetic"}, "motion": {"nope": 1}})


def test_motion_speeds_up_to_the_safety_limit_are_accepted():
    config = robot_config_from_dict(
        {
            "camera": {"kind": "synthetic"},
            "motion": {"travel_speed": 0.8, "approach_speed": 0.8},
            "safety": {"max_speed": 0.8},
        }
    )
    assert config.motion.travel_speed == config.safety.max_speed == 0.8
