"""The FastAPI app: JSON endpoints over the pick loop, the console page, events and pictures.

Endpoints (all JSON unless noted; errors are ``{"error", "detail"}``, see ``errors``):

* ``POST /api/command`` ``{"text": "pick the red mug"}``: any operator line, as in the typed
  console (pick, next, confirm, stop, home, open, status, help). 200 with the loop's reply
  ``{"ok", "message", "state", "data"}`` (``ok`` false: the loop answered but did not do it,
  the message says why); 409 when it needs the robot and the robot is busy.
* ``POST /api/confirm``, ``/api/next``, ``/api/home``, ``/api/open``: the same as those words.
* ``POST /api/stop``: arm stop and gripper stop at once. It runs on a thread of its own, never
  queued behind other requests or worker threads, and is never refused (when a token is set,
  the token is still needed). Commands sent before it that have not run yet get 409.
* ``GET /api/state``: loop state, camera/gripper/arm states, the last detection (grasps, mask
  summary, 3D poses, timings), the candidates and the last pick report, plus ``detection_id``.
* ``GET /api/overlay?format=jpeg|png``: the last detection's frame with the mask and ranked
  grasps drawn (image); ``GET /api/live``: a new camera frame with them drawn (image);
  ``GET /api/stream.mjpg``: the live view as an MJPEG stream.
* ``GET /api/events``: server-sent events: ``hello``, ``state`` (each ``StateChange``),
  ``detection`` (a new detection, with its ``detection_id``).
* ``GET /api/audit?n=30&event=state``: the audit log's last records.
* ``GET /api/openapi.json``: the OpenAPI schema. ``GET /``: the console page.

No endpoint takes a file path. Authentication and limits: ``security.GuardMiddleware``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio.to_thread
from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from langgrasp import __version__
from langgrasp.runtime.intents import IntentKind, parse_intent
from langgrasp.runtime.web.bridge import LoopBridge
from langgrasp.runtime.web.errors import OPENAPI_PATH, ApiError, install_error_handlers
from langgrasp.runtime.web.events import RETRY_MS, EventHub, format_event
from langgrasp.runtime.web.overlay import media_type
from langgrasp.runtime.web.security import GuardMiddleware
from langgrasp.runtime.web.settings import MAX_COMMAND_CHARS, WebSettings

if TYPE_CHECKING:
    from langgrasp.runtime.pick import PickLoop

log = logging.getLogger(__name__)

API = "/api"
STATIC_DIR = Path(__file__).resolve().parent / "static"
CONSOLE_PAGE = STATIC_DIR / "console.html"
AUDIT_TAIL_DEFAULT = 30
AUDIT_TAIL_MAX = 500
"""Most audit records one request returns (each can be a few kilobytes)."""
EVENT_NAME_PATTERN = r"^[a-z_]{1,32}$"
"""Audit event kinds are short snake_case words (``runtime.audit``)."""
MJPEG_BOUNDARY = "frame"

ImageFormat = Literal["jpeg", "png"]
CommandText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_COMMAND_CHARS)
]


class CommandRequest(BaseModel):
    """One operator line, typed or transcribed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: CommandText = Field(
        description=f"What the operator said, 1-{MAX_COMMAND_CHARS} characters: 'pick the red "
        "mug', 'next', 'confirm', 'stop', 'home', 'open', 'activate', 'status', 'help'.",
        examples=["pick the red mug"],
    )


class ReplyModel(BaseModel):
    """The loop's answer to one command."""

    ok: bool = Field(description="The command was accepted and did what it said.")
    message: str = Field(description="One or two sentences for the operator.")
    state: str = Field(description="Loop state after the command.")
    data: dict[str, Any] = Field(description="Details: candidates, status.")


class ErrorModel(BaseModel):
    """Every error response."""

    error: str = Field(description="Short kind, e.g. busy, validation_error, unauthorized.")
    detail: str = Field(description="What was wrong and what to do.")


class StateModel(BaseModel):
    """The loop's status (``PickLoop.status``) plus the detection number and server settings."""

    model_config = ConfigDict(extra="allow")

    state: str
    message: str
    busy: bool
    dry_run: bool
    camera: dict[str, Any]
    gripper: dict[str, Any]
    arm: dict[str, Any]
    calibration: dict[str, Any]
    detection: dict[str, Any] | None
    candidates: list[dict[str, Any]]
    offered: int | None
    report: dict[str, Any] | None
    detection_id: int = Field(description="0 before the first detection, +1 per detection.")
    web: dict[str, Any]


class AuditModel(BaseModel):
    """Audit log records, oldest first."""

    records: list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorModel} for code in (401, 403, 413, 422, 500)
}
BUSY = {
    **ERRORS,
    409: {"model": ErrorModel, "description": "The robot is busy, or a stop came after it."},
}
IMAGE = {
    **ERRORS,
    200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "An image."},
    404: {"model": ErrorModel},
    503: {"model": ErrorModel},
}


def create_app(loop: PickLoop, settings: WebSettings | None = None) -> FastAPI:
    """The web app over ``loop`` (see the module docstring for the endpoints).

    Args:
        loop: A ready pick loop; the caller closes it after the server stopped.
        settings: Token, limits and rates; default ``WebSettings()`` (loopback, no token).

    Returns:
        The FastAPI app; ``app.state.bridge`` and ``app.state.events`` are its ``LoopBridge``
        and ``EventHub`` (``server.WebServer`` closes the hub when stopping).
    """
    settings = settings or WebSettings()
    hub = EventHub(settings.sse_queue_size, settings.sse_heartbeat_s)
    bridge = LoopBridge(loop, settings, hub)
    bridge.attach()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        bridge.attach()
        try:
            yield
        finally:
            hub.close()
            bridge.detach()

    app = FastAPI(
        title="langgrasp",
        version=__version__,
        summary="Language-guided grasping: drive the pick loop, watch what the robot sees.",
        openapi_url=OPENAPI_PATH,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.bridge = bridge
    app.state.events = hub
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, settings=settings)
    _add_commands(app, bridge)
    _add_views(app, bridge, settings, hub)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _add_commands(app: FastAPI, bridge: LoopBridge) -> None:
    @app.post(f"{API}/stop", response_model=ReplyModel, responses=ERRORS, tags=["commands"])
    async def stop() -> dict[str, Any]:
        """Stop the arm and the gripper at once.

        Runs on a thread of its own that nothing else uses: never queued behind other requests
        or worker threads, never refused while the robot moves, and the server keeps answering
        while the devices are told to stop. A command sent before the stop that has not
        started yet is refused afterwards (409 ``stopped_after``).
        """
        return (await bridge.stop_async()).to_dict()

    @app.post(f"{API}/command", response_model=ReplyModel, responses=BUSY, tags=["commands"])
    async def command(body: CommandRequest) -> dict[str, Any]:
        """Run one operator line ('pick the red mug', 'next', 'confirm', 'stop', ...).

        A pick answers once the grasps are found (the reply lists the candidates) and waits
        for confirm; 'stop' in any wording is handled like POST /api/stop.
        """
        if parse_intent(body.text).kind is IntentKind.STOP:
            return (await bridge.stop_async(body.text)).to_dict()
        stops = bridge.stops  # read on arrival, before waiting for a worker thread
        reply = await run_in_threadpool(bridge.command, body.text, stops)
        return reply.to_dict()

    def word(text: str, summary: str) -> None:
        async def run() -> dict[str, Any]:
            stops = bridge.stops  # read on arrival, before waiting for a worker thread
            return (await run_in_threadpool(bridge.command, text, stops)).to_dict()

        run.__name__ = text
        app.post(
            f"{API}/{text}",
            response_model=ReplyModel,
            responses=BUSY,
            tags=["commands"],
            summary=summary,
            description=f"The same as the command {text!r}.",
        )(run)

    word("confirm", "Execute the offered grasp")
    word("next", "Offer the next-ranked grasp")
    word("home", "Send the arm home")
    word("open", "Open the gripper")
    word("activate", "Activate the gripper: the fingers open and close fully")


def _add_views(app: FastAPI, bridge: LoopBridge, settings: WebSettings, hub: EventHub) -> None:
    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(CONSOLE_PAGE, media_type="text/html")

    @app.get(f"{API}/state", response_model=StateModel, responses=ERRORS, tags=["state"])
    def state(
        refresh: Annotated[
            bool, Query(description="Read the gripper and arm now (skipped while moving).")
        ] = False,
    ) -> dict[str, Any]:
        """Loop, camera, gripper and arm states; the last detection, candidates and report."""
        return bridge.state(refresh)

    @app.get(f"{API}/audit", response_model=AuditModel, responses=ERRORS, tags=["state"])
    def audit(
        n: Annotated[int, Query(ge=1, le=AUDIT_TAIL_MAX, description="Records.")] = (
            AUDIT_TAIL_DEFAULT
        ),
        event: Annotated[
            str | None, Query(pattern=EVENT_NAME_PATTERN, description="Only this kind.")
        ] = None,
    ) -> dict[str, Any]:
        """The audit log's last records (commands, states, detections, device writes)."""
        return {"records": bridge.audit(n, event)}

    @app.get(f"{API}/overlay", response_class=Response, responses=IMAGE, tags=["pictures"])
    def overlay(fmt: Annotated[ImageFormat, Query(alias="format")] = "jpeg") -> Response:
        """The last detection's frame with the target mask and ranked grasps (1 = best)."""
        data, ident = bridge.overlay(fmt)
        headers = {"Cache-Control": "no-store", "X-Detection-Id": str(ident)}
        return Response(data, media_type=media_type(fmt), headers=headers)

    @app.get(f"{API}/live", response_class=Response, responses=IMAGE, tags=["pictures"])
    def live(fmt: Annotated[ImageFormat, Query(alias="format")] = "jpeg") -> Response:
        """A new camera frame with the last detection's mask and grasps drawn on it."""
        data = bridge.live(fmt)
        return Response(data, media_type=media_type(fmt), headers={"Cache-Control": "no-store"})

    @app.get(f"{API}/stream.mjpg", response_class=StreamingResponse, tags=["pictures"])
    async def stream() -> StreamingResponse:
        """The live view as MJPEG (multipart/x-mixed-replace), ``live_fps`` frames a second."""
        first = await run_in_threadpool(bridge.live, "jpeg")  # errors as JSON, before streaming
        return StreamingResponse(
            _mjpeg(bridge, settings, hub, first),
            media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

    @app.get(f"{API}/events", response_class=StreamingResponse, tags=["state"])
    async def events() -> StreamingResponse:
        """Server-sent events: ``hello``, then ``state`` and ``detection`` as they happen."""
        return StreamingResponse(
            _events(bridge, hub),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


async def _events(bridge: LoopBridge, hub: EventHub) -> AsyncIterator[str]:
    async with hub.subscribe() as events:  # registered before hello: no event is missed
        hello = {"state": bridge.loop.state.value, "detection_id": bridge.detection_id()}
        yield f"retry: {RETRY_MS}\n\n" + format_event(hub.make_event("hello", hello))
        async for item in events:
            yield format_event(item)


async def _mjpeg(
    bridge: LoopBridge, settings: WebSettings, hub: EventHub, first: bytes
) -> AsyncIterator[bytes]:
    data = first
    while not hub.closed:
        head = f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}"
        yield head.encode() + b"\r\n\r\n" + data + b"\r\n"
        await asyncio.sleep(1.0 / settings.live_fps)
        try:
            data = await run_in_threadpool(bridge.live, "jpeg")
        except ApiError as err:  # the camera stopped: end the stream, the client may retry
            log.warning("live stream ended: %s", err.detail)
            return
