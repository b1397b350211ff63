"""What the HTTP endpoints do with the pick loop, without HTTP: commands, state, pictures.

``LoopBridge`` wraps one ``PickLoop`` for the web app:

* it listens to the loop's state changes and publishes them (and each new detection) on the
  ``EventHub``;
* it numbers detections (``detection_id``: 0 before the first, +1 for each new one), so clients
  know when the overlay picture changed;
* commands that would be refused while the robot moves (pick, confirm, home, open) run one at a
  time: a second one while the first runs, or while the loop is busy, is ``ApiError`` 409;
* ``stop`` is never refused and never waits for those; it runs ``loop.stop`` on a thread of
  its own (``stop_async``), so the event loop never waits on a device and a stop never queues
  behind the shared worker threads;
* stops are counted (``stops``): a request reads the count when it arrives (on the event loop)
  and ``command`` refuses it with 409 when a stop arrived after it, so a command sent before a
  stop never runs after it.

Blocking methods (``command``, ``overlay``, ``live``, ``state``) are meant for worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
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

EXCLUSIVE = frozenset(
    {IntentKind.PICK, IntentKind.CONFIRM, IntentKind.HOME, IntentKind.OPEN, IntentKind.ACTIVATE}
)
"""Intents the loop refuses while busy; the API answers them with 409 instead."""

GUARDED = EXCLUSIVE | {IntentKind.NEXT}
"""Intents refused when a stop arrived after their request (they start or change a motion)."""

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
        self._stops = 0
        self._stop_pool: ThreadPoolExecutor | None = None

    # -- events ------------------------------------------------------------------------------

    def attach(self) -> None:
        """Start publishing the loop's state changes (idempotent)."""
        if not self._attached:
            self.loop.add_listener(self.on_change)
            self._attached = True

    def detach(self) -> None:
        """Stop publishing and let the stop thread end (idempotent)."""
        if self._attached:
            self.loop.remove_listener(self.on_change)
            self._attached = False
        with self._lock:
            pool, self._stop_pool = self._stop_pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def on_change(self, change: StateChange) -> None:
        """Loop listener: publish the change, then the detection if a new one was made.

        Only this listener advances ``detection_id`` (readers never do), so the ``detection``
        event is published exactly once per new detection.
        """
        self.hub.publish("state", change.to_dict())
        with self._lock:
            detection = self.loop.last_detection
            changed = detection is not self._seen
            if changed:
                self._seen = detection
                self._detection_id += 1
                self._pictures.clear()
            ident = self._detection_id
        if changed:
            self.hub.publish(
                "detection",
                {
                    "detection_id": ident,
                    "command": None if detection is None else detection.command,
                    "grasps": 0 if detection is None else len(detection.grasps),
                    "reason": None if detection is None else detection.reason,
                },
            )

    def detection_id(self) -> int:
        """The number of the last detection the listener saw (0 before the first)."""
        with self._lock:
            return self._detection_id

    # -- commands ----------------------------------------------------------------------------

    @property
    def stops(self) -> int:
        """Stops received so far; read it when a request arrives and pass it to ``command``."""
        with self._lock:
            return self._stops

    def command(self, text: str, stops_at_arrival: int | None = None) -> Reply:
        """Run one operator line (blocking: a pick detects in this thread).

        Args:
            text: The operator's words.
            stops_at_arrival: ``stops`` when the request arrived; None skips the check.

        Raises:
            ApiError: 409 when the line needs the robot and it is busy, or when a stop arrived
                after this request (it is not run).
        """
        kind = parse_intent(text).kind
        if kind is IntentKind.STOP:
            return self.stop_command(text)
        self.loop.audit.record("http_command", text=text, source="http")
        if kind not in GUARDED:
            return self.loop.command(text)
        if not self._exclusive.acquire(blocking=False):
            raise self._busy("another command is still being handled")
        try:
            self._refuse_if_stopped(stops_at_arrival)
            if self.loop.busy:
                raise self._busy("the robot is busy")
            reply = self.loop.command(text)
            # A stop in the instant between the check and the start of a motion: stop again.
            if stops_at_arrival is not None and self.stops != stops_at_arrival:
                self.loop.stop()
            return reply
        finally:
            self._exclusive.release()

    def _refuse_if_stopped(self, stops_at_arrival: int | None) -> None:
        if stops_at_arrival is None or self.stops == stops_at_arrival:
            return
        state = self.loop.state.value
        raise ApiError(
            409,
            "stopped_after",
            f"a stop arrived after this command, so it was not run ({state}); send it again "
            "if it is still wanted",
            state=state,
        )

    def note_stop(self) -> None:
        """Count a stop now (call it on the event loop when the stop request arrives)."""
        with self._lock:
            self._stops += 1

    def stop_command(self, text: str = "stop") -> Reply:
        """Stop at once (no queue, no exclusive lock), then log the operator's words."""
        self.note_stop()
        reply = self.loop.stop()
        intent = parse_intent(text[:MAX_COMMAND_CHARS])
        self.loop.audit.record("command", text=text, intent=intent.to_dict(), source="http")
        return reply

    async def stop_async(self, text: str = "stop") -> Reply:
        """``stop_command`` on this bridge's own stop thread (used by nothing else), awaited.

        Counts the stop before it awaits, so requests that arrive later see it.
        """
        self.note_stop()
        with self._lock:
            if self._stop_pool is None:
                self._stop_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-stop")
            pool = self._stop_pool
        return await asyncio.get_running_loop().run_in_executor(pool, self.stop_command, text)

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
        status["detection_id"] = self.detection_id()
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
        with self._lock:
            ident, detection = self._detection_id, self._seen
            cached = self._pictures.get(fmt)
        if cached is not None:
            return cached, ident
        frame = self.loop.last_frame
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
