"""What the HTTP endpoints do with the pick loop, without HTTP: commands, state, pictures.

``LoopBridge`` wraps one ``PickLoop`` for the web app:

* it listens to the loop's state changes and publishes them (and each new detection) on the
  ``EventHub``;
* it numbers detections (``detection_id``: 0 before the first, +1 for each new one), so clients
  know when the overlay picture changed;
* commands that would be refused while the robot moves (pick, confirm, home, open) run one at a
  time: a second one while the first runs, or while the loop is busy, is ``ApiError`` 409;
* ``stop`` is never refused and never waits for those.

Blocking methods (``command``, ``overlay``, ``live``, ``state``) are meant for worker threads;
``stop_command`` and ``loop.stop`` are quick and run on the server's event loop.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from langgrasp.runtime.camera import CameraError
from langgrasp.runtime.intents import IntentKind, parse_intent
from langgrasp.runtime.web.errors import ApiError
from langgrasp.runtime.web.events import EventHub
from langgrasp.runtime.web.overlay import detection_picture, encode_image
from langgrasp.runtime.web.settings import MAX_COMMAND_CHARS, WebSettings

if TYPE_CHECKING:
    from langgrasp.runtime.engine import Detection
    from langgrasp.runtime.pick import PickLoop, Reply, StateChange

log = logging.getLogger(__name__)

EXCLUSIVE = frozenset({IntentKind.PICK, IntentKind.CONFIRM, IntentKind.HOME, IntentKind.OPEN})
"""Intents the loop refuses while busy; the API answers them with 409 instead."""

LIVE_TITLE = "live"


class LoopBridge:
    """The web app's view of one ``PickLoop`` (see the module docstring).

    Args:
        loop: The pick loop (the caller owns and closes it).
        settings: Image quality and live-view rate.
        hub: Where state changes and detections are published.
    """

    def __init__(self, loop: PickLoop, settings: WebSettings, hub: EventHub) -> None:
        self.loop = loop
        self.settings = settings
        self.hub = hub
        self._lock = threading.Lock()
        self._exclusive = threading.Lock()
        self._seen: Detection | None = None
        self._detection_id = 0
        self._pictures: dict[str, bytes] = {}
        self._attached = False

    # -- events ------------------------------------------------------------------------------

    def attach(self) -> None:
        """Start publishing the loop's state changes (idempotent)."""
        if not self._attached:
            self.loop.add_listener(self.on_change)
            self._attached = True

    def detach(self) -> None:
        """Stop publishing (idempotent)."""
        if self._attached:
            self.loop.remove_listener(self.on_change)
            self._attached = False

    def on_change(self, change: StateChange) -> None:
        """Loop listener: publish the change, then the detection if a new one was made."""
        self.hub.publish("state", change.to_dict())
        ident, changed = self.detection_id()
        if changed:
            detection = self.loop.last_detection
            self.hub.publish(
                "detection",
                {
                    "detection_id": ident,
                    "command": None if detection is None else detection.command,
                    "grasps": 0 if detection is None else len(detection.grasps),
                    "reason": None if detection is None else detection.reason,
                },
            )

    def detection_id(self) -> tuple[int, bool]:
        """``(id, changed)``: the number of the loop's last detection and whether it is new."""
        with self._lock:
            detection = self.loop.last_detection
            changed = detection is not self._seen
            if changed:
                self._seen = detection
                self._detection_id += 1
                self._pictures.clear()
            return self._detection_id, changed

    # -- commands ----------------------------------------------------------------------------

    def command(self, text: str) -> Reply:
        """Run one operator line (blocking: a pick detects in this thread).

        Raises:
            ApiError: 409 when the line needs the robot and it is busy.
        """
        kind = parse_intent(text).kind
        if kind is IntentKind.STOP:
            return self.stop_command(text)
        if kind not in EXCLUSIVE:
            return self.loop.command(text)
        if not self._exclusive.acquire(blocking=False):
            raise self._busy("another command is still being handled")
        try:
            if self.loop.busy:
                raise self._busy("the robot is busy")
            return self.loop.command(text)
        finally:
            self._exclusive.release()

    def stop_command(self, text: str = "stop") -> Reply:
        """Stop at once (no queue, no lock of this bridge), then log the operator's words."""
        reply = self.loop.stop()
        intent = parse_intent(text[:MAX_COMMAND_CHARS])
        self.loop.audit.record("command", text=text, intent=intent.to_dict(), source="http")
        return reply

    def _busy(self, why: str) -> ApiError:
        state = self.loop.state.value
        return ApiError(
            409,
            "busy",
            f"{why} ({state}); wait until it is done (watch /api/events) or send stop first",
            state=state,
        )

    # -- state -------------------------------------------------------------------------------

    def state(self, refresh: bool = False) -> dict[str, Any]:
        """``loop.status()`` plus ``detection_id`` and the server's ``web`` settings.

        Args:
            refresh: Read the gripper and arm now (one Modbus round trip each; skipped while
                the loop moves, when its own readings are fresh).
        """
        status = self.loop.status(refresh=refresh)
        ident, _ = self.detection_id()
        status["detection_id"] = ident
        status["web"] = {
            "auth": self.settings.token is not None,
            "live_fps": self.settings.live_fps,
            "max_command_chars": MAX_COMMAND_CHARS,
        }
        return status

    def audit(self, n: int, event: str | None) -> list[dict[str, Any]]:
        """The last ``n`` audit records (of one event kind), oldest first."""
        return self.loop.audit.tail(n, event)

    # -- pictures ----------------------------------------------------------------------------

    def overlay(self, fmt: str) -> tuple[bytes, int]:
        """``(image bytes, detection_id)``: the last detection drawn on its frame.

        Before the first detection: a live frame (id 0), or 404 when the live view is off.

        Raises:
            ApiError: 404 nothing to show yet, 503 the camera gives no frame.
        """
        ident, _ = self.detection_id()
        with self._lock:
            cached = self._pictures.get(fmt)
        if cached is not None:
            return cached, ident
        frame, detection = self.loop.last_frame, self.loop.last_detection
        if frame is None or detection is None:
            if self.settings.live_fps <= 0:
                raise ApiError(
                    404,
                    "no_detection",
                    "nothing detected yet; send a command such as 'pick the red mug'",
                )
            return self.live(fmt), 0
        picture = detection_picture(frame.rgb, detection, detection.command)
        data = encode_image(picture, fmt, self.settings.jpeg_quality)
        with self._lock:
            if self._detection_id == ident:
                self._pictures[fmt] = data
        return data, ident

    def live(self, fmt: str) -> bytes:
        """A new camera frame with the last detection's mask and grasps drawn on it.

        Raises:
            ApiError: 404 the live view is off, 503 the camera gives no frame.
        """
        if self.settings.live_fps <= 0:
            raise ApiError(
                404,
                "live_off",
                "the live view is off on this server (langgrasp serve --live-fps 0); use "
                "/api/overlay for the last detection",
            )
        try:
            frame = self.loop.grab_frame()
        except CameraError as err:
            raise ApiError(
                503, "camera_unavailable", f"no camera frame: {err}; check the camera"
            ) from err
        picture = detection_picture(frame.rgb, self.loop.last_detection, LIVE_TITLE)
        return encode_image(picture, fmt, self.settings.jpeg_quality)
