"""Run a pymodbus server in a background thread (its own asyncio loop), stoppable at any time.

A simulated device is a ``pymodbus.simulator.SimDevice`` whose async ``action`` hook sees every
register access (shared/research/runtime.md 2.4): the device models in this package update their
registers from elapsed time when they are read, so no ticking thread is needed.

``SimServer(device).start()`` binds 127.0.0.1 (a free port unless one is given) and returns once
the server accepts connections; ``stop()`` shuts it down, which is also how tests make a device
"die" mid-pick.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

from langgrasp.errors import LanggraspError

log = logging.getLogger(__name__)

FRAMERS = ("socket", "rtu")
"""``socket``: Modbus TCP; ``rtu``: RTU frames over TCP (like the UR RS485 URCap tunnel)."""

START_TIMEOUT_S = 5.0
CLOSE_GRACE_S = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class SimServer:
    """One Modbus TCP server on ``host:port`` serving ``devices`` (SimDevice or a list)."""

    def __init__(
        self,
        devices: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        framer: str = "socket",
        name: str = "sim",
    ) -> None:
        if framer not in FRAMERS:
            raise LanggraspError(f"unknown framer {framer!r}; use one of {', '.join(FRAMERS)}")
        self.devices = devices
        self.host = host
        self.port = port or free_port(host)
        self.framer = framer
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stopping = threading.Lock()

    @property
    def running(self) -> bool:
        """True while the server thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SimServer:
        """Start serving; returns once the port accepts connections.

        Raises:
            LanggraspError: the port is taken or the server failed to start.
        """
        if self.running:
            return self
        ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"sim-{self.name}", daemon=True
        )
        self._thread.start()
        ready.wait(START_TIMEOUT_S)
        deadline = time.monotonic() + START_TIMEOUT_S
        while self._error is None and time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        if self._error is not None:  # the thread ends on its own after a failed start
            self._thread.join(START_TIMEOUT_S)
            self._server = self._loop = self._thread = None
        else:
            self.stop()
        raise LanggraspError(
            f"simulated {self.name} could not listen on {self.host}:{self.port}: "
            f"{self._error or 'timed out'} (is the port in use?)"
        )

    def stop(self) -> None:
        """Shut the server down and join its thread; safe to call twice, from any thread."""
        with self._stopping:
            self._stop()

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            if self._server is not None:
                future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                try:
                    future.result(START_TIMEOUT_S)
                except Exception as exc:  # shutting down a half-started server
                    log.debug("%s shutdown: %s", self.name, exc)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(START_TIMEOUT_S)
        self._server = None
        self._thread = None
        self._loop = None

    async def _shutdown(self) -> None:
        await self._server.shutdown()
        # Let the transports' close callbacks run, so clients see the connection drop at once
        # (as when a real device dies) instead of waiting for their timeout.
        await asyncio.sleep(CLOSE_GRACE_S)

    def _run(self, ready: threading.Event) -> None:
        from pymodbus import FramerType
        from pymodbus.server import ModbusTcpServer

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        framer = FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET

        async def serve() -> None:
            self._server = ModbusTcpServer(
                self.devices, address=(self.host, self.port), framer=framer
            )
            await self._server.serve_forever(background=True)

        try:
            loop.run_until_complete(serve())
            ready.set()
            loop.run_forever()
        except BaseException as exc:  # reported by start()
            self._error = exc
            ready.set()
        finally:
            loop.close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
