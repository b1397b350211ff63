"""Run the web app with uvicorn: in a background thread (tests, benchmarks) or in the foreground.

``WebServer(loop, settings).start()`` binds the socket itself (so ``port=0`` gives a free port,
known at once), serves in a daemon thread with its own event loop, and returns once uvicorn has
started; ``stop()`` ends the event streams and shuts the server down. ``serve(loop, settings)``
runs in the foreground until Ctrl-C (or SIGTERM): the first signal stops the arm and the gripper
at once, then the server shuts down; the caller closes the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import uvicorn

from langgrasp.errors import LanggraspError
from langgrasp.runtime.web.app import create_app
from langgrasp.runtime.web.settings import WebSettings

if TYPE_CHECKING:
    from types import FrameType

    from fastapi import FastAPI

    from langgrasp.runtime.pick import PickLoop

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
"""Longest wait for uvicorn to start (it imports nothing new; a second is plenty)."""

POLL_S = 0.01
LISTEN_BACKLOG = 64


def warn_if_exposed(settings: WebSettings) -> None:
    """Log a warning when the server is reachable from the network (non-loopback bind)."""
    if not settings.loopback:
        log.warning(
            "listening on %s: reachable from the network; every request needs the access "
            "token. Keep it secret and prefer a firewall or 127.0.0.1 with an SSH tunnel",
            settings.host,
        )


def bind_socket(settings: WebSettings) -> socket.socket:
    """A listening TCP socket on ``settings.host:port`` (port 0: a free one).

    Raises:
        LanggraspError: the address is taken or cannot be bound; the message says which.
    """
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP (asyncio.base_events._set_nodelay); without it every response after the first
    # on a connection waits ~40 ms for the client's delayed ACK (Nagle's algorithm).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host.strip("[]"), settings.port))
    except OSError as err:
        sock.close()
        raise LanggraspError(
            f"cannot listen on {settings.host}:{settings.port} ({err.strerror or err}); choose "
            "another --port or stop the program using it"
        ) from err
    sock.listen(LISTEN_BACKLOG)
    # Not inheritable (Python's default): uvicorn serves it in this process; only its reload and
    # multi-worker modes, which langgrasp does not use, hand the socket to child processes.
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, with a hook that runs first when a signal asks it to exit."""

    def __init__(self, config: uvicorn.Config, on_exit: Any = None) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.on_exit is not None and not self.should_exit:
            self.on_exit()
        super().handle_exit(sig, frame)


def _config(app: FastAPI, settings: WebSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        lifespan="on",
    )


class WebServer:
    """The web app over ``loop`` served by uvicorn in a background thread.

    Args:
        loop: The pick loop (the caller closes it after ``stop``).
        settings: Address, token and limits; ``port=0`` picks a free port.
        app: An app made by ``create_app`` (default: one is made for ``loop``).
    """

    def __init__(
        self, loop: PickLoop, settings: WebSettings | None = None, app: FastAPI | None = None
    ) -> None:
        self.loop = loop
        self.settings = settings or WebSettings()
        self.app = app if app is not None else create_app(loop, self.settings)
        self.port = self.settings.port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080/`` (the bound port when ``port=0``)."""
        return replace(self.settings, port=self.port).url

    def start(self) -> WebServer:
        """Bind, start serving, and return once uvicorn accepts requests.

        Raises:
            LanggraspError: the port cannot be bound or the server did not start.
        """
        warn_if_exposed(self.settings)
        sock = bind_socket(self.settings)
        self.port = int(sock.getsockname()[1])
        self._server = _Server(_config(self.app, self.settings))
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="web-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LanggraspError(f"the web server did not start: {self._error!r}")
            time.sleep(POLL_S)
        return self

    def _run(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            asyncio.run(self._server.serve(sockets=[sock]))
        except BaseException as err:  # reported by start()
            self._error = err
        finally:
            sock.close()

    def stop(self, timeout_s: float | None = None) -> None:
        """End the event streams and shut the server down (safe to call twice)."""
        self.app.state.events.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s or START_TIMEOUT_S + self.settings.shutdown_grace_s)

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(loop: PickLoop, settings: WebSettings, announce: Any = print) -> None:
    """Serve the console and API in the foreground until Ctrl-C or SIGTERM.

    The first signal stops the arm and gripper at once (in a thread of its own, so the signal
    handler never waits on a device), ends the event streams and shuts the server down.

    Args:
        loop: The pick loop; the caller closes it afterwards.
        settings: Address, token and limits.
        announce: Called with one line (the URL) once the socket is bound.

    Raises:
        LanggraspError: the address cannot be bound.
    """
    app = create_app(loop, settings)
    warn_if_exposed(settings)
    sock = bind_socket(settings)
    url = replace(settings, port=int(sock.getsockname()[1])).url
    hint = " (open it with #token=<token> at the end, or enter the token when asked)"
    announce(f"langgrasp console on {url}{hint if settings.token else ''}; Ctrl-C stops")

    def on_exit() -> None:
        threading.Thread(target=_stop_quietly, args=(loop,), name="web-stop").start()
        app.state.events.close()

    server = _Server(_config(app, settings), on_exit=on_exit)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the signal it handled after shutting down
        pass
    finally:
        sock.close()


def _stop_quietly(loop: PickLoop) -> None:
    try:
        loop.stop()
    except Exception as err:  # a failed stop is in the audit log; keep shutting down
        log.warning("stop at exit failed: %s", err)
