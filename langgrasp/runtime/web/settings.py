"""Settings of the web server and its security rule (no FastAPI import, so the CLI can use it).

The rule: the server binds to 127.0.0.1 by default; any other address is reachable from the
network, so it needs an access token (``WebSettings`` refuses to exist without one, and the
server logs a warning at start). With a token, every API request must carry it as
``Authorization: Bearer <token>`` or ``X-Langgrasp-Token: <token>``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from langgrasp.errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})
"""Host names that resolve to the loopback interface on Linux (/etc/hosts on Debian/Ubuntu)."""

MIN_TOKEN_CHARS = 16
"""Shortest accepted token: 16 random URL-safe characters carry 96 bits, above the 64 bits
OWASP's session-management cheat sheet asks of a session identifier."""

TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
"""How to make a token (printed in error messages)."""

MAX_COMMAND_CHARS = 500
"""Longest operator command (characters). The detector's CLIP text tower reads 77 tokens
(``runtime.tokenizer``), a sentence or two; 500 characters leave room for fillers and
politeness that ``runtime.intents`` removes."""

MAX_BODY_BYTES = 16 * 1024
"""Largest request body: the biggest valid one is a command of ``MAX_COMMAND_CHARS``
characters (at most 4 bytes each in UTF-8, 6 when JSON-escaped) plus punctuation, under 4 KiB;
16 KiB leaves room without letting a client make the server buffer much."""

JPEG_QUALITY = 85
"""OpenCV JPEG quality (0-100) of overlay and live images: small files, no visible artefacts on
the thin grasp lines at 320x240-640x480."""

LIVE_FPS = 5.0
"""Live view / MJPEG rate: enough to watch the arm, cheap on a 2-core robot PC."""

SSE_HEARTBEAT_S = 15.0
"""Comment line sent on an idle event stream, so proxies and browsers keep it open (the
WHATWG HTML spec's server-sent events section suggests one about every 15 seconds)."""

SSE_QUEUE_SIZE = 256
"""Events buffered per event-stream client; a client that falls further behind loses the
oldest ones (the console re-reads the state on every event, so it catches up)."""

WORKER_THREADS = 16
"""Threads that run the blocking endpoints (detection, overlay drawing, state); ``stop`` never
uses them."""

SHUTDOWN_GRACE_S = 2
"""Seconds uvicorn waits for open responses (event streams, MJPEG) when stopping."""


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address or a host name) is only reachable from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # another host name: may resolve to anything
        return False


@dataclass(frozen=True)
class WebSettings:
    """How ``langgrasp serve`` listens and what it accepts.

    Attributes:
        host: Address to bind; non-loopback addresses need ``token``.
        port: TCP port (0 = any free port, for tests).
        token: Access token, or None (allowed on loopback only). Never shown in ``repr``.
        max_body_bytes: Requests with a larger body get 413 before the endpoint runs.
        jpeg_quality: JPEG quality of overlay and live images (0-100).
        live_fps: Live view and MJPEG frame rate; 0 turns the live camera view off (use it for
            finite sources such as a recording played once, whose frames the pick loop needs).
        sse_heartbeat_s: Idle time after which an event stream sends a keep-alive comment.
        sse_queue_size: Events buffered per event-stream client.
        worker_threads: Threads for the blocking endpoints.
        shutdown_grace_s: Seconds to wait for open responses when stopping.

    Raises:
        InputError: a non-loopback host without a token, a token that is too short, or a
            limit out of range; the message says what to change.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = field(default=None, repr=False)
    max_body_bytes: int = MAX_BODY_BYTES
    jpeg_quality: int = JPEG_QUALITY
    live_fps: float = LIVE_FPS
    sse_heartbeat_s: float = SSE_HEARTBEAT_S
    sse_queue_size: int = SSE_QUEUE_SIZE
    worker_threads: int = WORKER_THREADS
    shutdown_grace_s: int = SHUTDOWN_GRACE_S

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise InputError(
                f"the access token has {len(self.token)} characters, at least "
                f"{MIN_TOKEN_CHARS} are needed; make one with {TOKEN_HINT}"
            )
        if self.token is not None and not self.token.isascii():
            raise InputError("the access token must be ASCII (HTTP headers carry it)")
        if not self.loopback and self.token is None:
            raise InputError(
                f"refusing to listen on {self.host}: that address is reachable from the "
                "network and anyone who reaches it could move the robot; set an access token "
                f"(langgrasp serve --token-env NAME, NAME holding e.g. the output of "
                f"{TOKEN_HINT}) or listen on {DEFAULT_HOST}"
            )
        if not 0 <= self.port <= 65535:
            raise InputError(f"port must be 0-65535, got {self.port}")
        if self.max_body_bytes < 1:
            raise InputError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if not 0 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality must be 0-100, got {self.jpeg_quality}")
        if self.live_fps < 0:
            raise InputError(f"live_fps must be >= 0 (0 = off), got {self.live_fps}")
        for name in ("sse_heartbeat_s", "sse_queue_size", "worker_threads"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the server."""
        return is_loopback(self.host)

    @property
    def url(self) -> str:
        """Base URL of the console (``http://host:port/``)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}/"
