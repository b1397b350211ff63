"""The audit log: every command, detection and device write, one JSON object per line.

``AuditLog(path)`` appends to a JSONL file (flushed and fsynced per record, so a crash loses
nothing already logged) and keeps the last records in memory for status displays. Each record has
``t`` (UTC ISO-8601 time with milliseconds), ``mono_s`` (``time.monotonic()``) and ``event``
(e.g. ``"command"``, ``"detection"``, ``"device_write"``, ``"state"``, ``"safety"``,
``"fault"``) plus the event's fields. ``AuditLog(None)`` keeps records in memory only (tests,
dry runs without a log folder). Thread-safe.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

TAIL_SIZE = 200
"""Records kept in memory for ``tail``."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    return str(value)


class AuditLog:
    """Append-only JSONL audit log (see the module docstring)."""

    def __init__(self, path: Path | str | None, tail_size: int = TAIL_SIZE) -> None:
        self.path = None if path is None else Path(path)
        self._tail: deque[dict[str, Any]] = deque(maxlen=tail_size)
        self._lock = threading.Lock()
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one record and return it."""
        now = time.time()
        entry = {
            "t": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
            "mono_s": round(time.monotonic(), 6),
            "event": event,
            **fields,
        }
        line = json.dumps(entry, default=_jsonable, separators=(",", ":"))
        with self._lock:
            self._tail.append(json.loads(line))
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())
        return entry

    def device_io(self, io: dict[str, Any]) -> None:
        """``ModbusLink.on_io`` hook: records ``device_write`` / ``device_read`` events."""
        self.record(f"device_{io.get('op', 'io')}", **{k: v for k, v in io.items() if k != "op"})

    def tail(self, n: int = 20, event: str | None = None) -> list[dict[str, Any]]:
        """The last ``n`` records (optionally only one event kind), oldest first."""
        with self._lock:
            records = [r for r in self._tail if event is None or r["event"] == event]
        return records[-n:] if n > 0 else []

    def close(self) -> None:
        """Close the file; later records stay in memory only."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
