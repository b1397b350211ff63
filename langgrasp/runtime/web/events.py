"""Server-sent events: the pick loop's state changes and new detections, fanned out to clients.

``EventHub.publish`` may be called from any thread (the loop calls its listeners from the thread
that changed the state: the HTTP request's, the motion worker's, the watchdog's); each client
(``subscribe``) reads from its own bounded ``asyncio.Queue`` in the server's event loop.
``format_event`` writes one event in the ``text/event-stream`` format (WHATWG HTML, "Server-sent
events": ``event:``, ``id:`` and ``data:`` lines, a blank line after each event).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

RETRY_MS = 1000
"""``retry:`` sent first: how long an ``EventSource`` waits before reconnecting (milliseconds)."""


@dataclass(frozen=True)
class ServerEvent:
    """One event for the clients.

    Attributes:
        id: Increasing number (per hub).
        event: Kind: ``"state"`` (a ``StateChange``), ``"detection"`` (a new detection),
            ``"hello"`` (sent first to each client).
        data: JSON-ready payload.
    """

    id: int
    event: str
    data: dict[str, Any]


def format_event(item: ServerEvent | None) -> str:
    """``item`` as ``text/event-stream`` text; None gives a keep-alive comment."""
    if item is None:
        return ": keep-alive\n\n"
    data = json.dumps(item.data, separators=(",", ":"), default=str)
    return f"id: {item.id}\nevent: {item.event}\ndata: {data}\n\n"


class Subscription:
    """One client's view of the hub: ``async with hub.subscribe() as events: async for ...``.

    Registered on entry (events published from then on are kept), removed on exit. Iterating
    yields events as they come, None after ``heartbeat_s`` idle seconds, and ends when the hub
    closes.
    """

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue: asyncio.Queue[ServerEvent | None] = asyncio.Queue(maxsize=hub.queue_size)

    async def __aenter__(self) -> Subscription:
        self.loop = asyncio.get_running_loop()
        self.hub._add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.hub._remove(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ServerEvent | None:
        if self.hub.closed:
            raise StopAsyncIteration
        try:
            item = await asyncio.wait_for(self.queue.get(), self.hub.heartbeat_s)
        except asyncio.TimeoutError:
            return None
        if item is None:  # the closing sentinel
            raise StopAsyncIteration
        return item

    def put(self, item: ServerEvent | None) -> None:
        """Enqueue (in the event loop's thread); a full queue drops its oldest event."""
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(item)


class EventHub:
    """Fan-out of ``ServerEvent``s to every connected event-stream client.

    Args:
        queue_size: Events buffered per client before the oldest is dropped.
        heartbeat_s: Idle seconds after which a subscription yields None (a keep-alive).
    """

    def __init__(self, queue_size: int, heartbeat_s: float) -> None:
        self.queue_size = queue_size
        self.heartbeat_s = heartbeat_s
        self._ids = itertools.count(1)
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        """True once ``close`` was called (the server is stopping)."""
        return self._closed.is_set()

    @property
    def clients(self) -> int:
        """Connected event-stream clients."""
        with self._lock:
            return len(self._subscribers)

    def make_event(self, event: str, data: dict[str, Any]) -> ServerEvent:
        """A new ``ServerEvent`` with the next id."""
        with self._lock:
            return ServerEvent(next(self._ids), event, data)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Send one event to every client; thread-safe, never blocks, never raises."""
        self._broadcast(self.make_event(event, data))

    def close(self) -> None:
        """End every event stream (thread-safe); later subscriptions end at once."""
        self._closed.set()
        self._broadcast(None)

    def subscribe(self) -> Subscription:
        """A subscription to use with ``async with`` in the server's event loop."""
        return Subscription(self)

    def _add(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.add(subscription)

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    def _broadcast(self, item: ServerEvent | None) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            assert subscriber.loop is not None
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.put, item)
            except RuntimeError:  # its event loop is closed: the server is gone
                self._remove(subscriber)
            except Exception:  # a listener must never break the pick loop
                log.exception("event fan-out failed")
