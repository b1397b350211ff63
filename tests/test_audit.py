"""AuditLog: JSONL records, in-memory tail, device I/O hook."""

from __future__ import annotations

import json
import threading

import numpy as np

from langgrasp.runtime.audit import AuditLog


def test_records_are_appended_as_json_lines(tmp_path):
    path = tmp_path / "logs" / "audit.jsonl"
    with AuditLog(path) as log:
        log.record("command", text="pick the red mug")
        log.record("detection", pose=np.eye(4), quality=np.float32(0.5))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in lines] == ["command", "detection"]
    assert lines[0]["text"] == "pick the red mug"
    assert lines[1]["pose"][0] == [1.0, 0.0, 0.0, 0.0]
    assert abs(lines[1]["quality"] - 0.5) < 1e-6
    assert lines[0]["t"].endswith("+00:00") and lines[0]["mono_s"] <= lines[1]["mono_s"]
    # A second log on the same file appends, losing nothing.
    with AuditLog(path) as log:
        log.record("state", state="idle")
    assert len(path.read_text().splitlines()) == 3


def test_tail_and_device_io_hook():
    log = AuditLog(None, tail_size=5)
    for i in range(8):
        log.record("state", i=i)
    log.device_io({"device": "gripper", "op": "write", "address": 1000, "values": [256, 0, 0]})
    assert [r["i"] for r in log.tail(3, event="state")] == [5, 6, 7]
    write = log.tail(1)[0]
    assert write["event"] == "device_write" and write["values"] == [256, 0, 0]
    assert log.tail(0) == []


def test_concurrent_records_stay_whole_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)

    def worker(k: int) -> None:
        for i in range(50):
            log.record("device_write", worker=k, i=i, values=list(range(20)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["values"] == list(range(20)) for line in lines)
