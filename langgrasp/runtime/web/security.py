"""The ASGI guard in front of every endpoint: who may call, from where, and how much they send.

In order, for each HTTP request:

1. Host check (DNS rebinding): a server without a token (loopback only) answers only requests
   whose ``Host`` names the loopback interface, so a web page from elsewhere cannot reach it
   through a domain that resolves to 127.0.0.1.
2. Cross-site check: a state-changing request (anything but GET/HEAD/OPTIONS) without a valid
   token whose ``Origin`` is not this server (scheme, host and port) is refused, so a page the
   operator happens to have open elsewhere cannot send commands (browsers send ``Origin`` on
   cross-origin requests, Fetch standard). A valid token proves the client is not such a page
   (the token travels in a header, which a page from elsewhere cannot know or set). The
   pictures and streams (``NO_EMBED_PATHS``) refuse ``Sec-Fetch-Site: cross-site`` and
   ``same-site`` (Fetch Metadata), so another page cannot embed what the camera sees.
3. Token: when a token is configured, every request outside ``PUBLIC_PATHS`` (the console's
   own page, script and style, which carry no data) needs ``Authorization: Bearer <token>`` or
   ``X-Langgrasp-Token: <token>`` (401 without, 403 with a wrong one; compared in constant time).
4. Body size: a ``Content-Length`` above the limit gets 413 before the endpoint runs; a body
   without a length (chunked) is read up to the limit first and refused as soon as it exceeds it.

Every response gets ``SECURITY_HEADERS`` (no sniffing, no framing, a same-origin content
security policy: the console loads nothing from anywhere else; a same-origin resource policy:
no other site may load a response). WebSocket connections are refused (the API has none).
Errors are JSON ``{"error": ..., "detail": ...}`` like every other error of the API.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from langgrasp.runtime.web.settings import WebSettings, is_loopback

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Refusal = tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]
"""HTTP status, JSON body and extra headers of a refused request."""

PUBLIC_PATHS = ("/", "/static/")
"""Paths served without a token: the console page (exact) and its static files (prefix)."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing (RFC 9110 section 9.2.1)."""

TOKEN_HEADER = b"x-langgrasp-token"

NO_EMBED_PATHS = ("/api/overlay", "/api/live", "/api/stream.mjpg", "/api/events")
"""Pictures and streams: refused when another site's page asks for them (Fetch Metadata)."""

FOREIGN_FETCH_SITES = frozenset({b"cross-site", b"same-site"})
"""``Sec-Fetch-Site`` values of a request started by another site's page (Fetch Metadata
Request Headers, W3C); ``same-site`` includes other ports of the same host."""

DEFAULT_PORTS = {"http": 80, "https": 443}
"""Port of a URL without one (RFC 9110 sections 4.2.1 and 4.2.2)."""

WS_POLICY_VIOLATION = 1008
"""WebSocket close code for a refused connection (RFC 6455 section 7.4.1)."""

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        b"style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    ),
]
"""Added to every response (OWASP secure-headers project's recommended set, trimmed)."""


def error_body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": error, "detail": detail, **extra}


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete JSON response (before the app has started one)."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class GuardMiddleware:
    """Pure ASGI middleware applying the checks of the module docstring.

    Args:
        app: The wrapped ASGI app.
        settings: Token and body limit.
    """

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings
        self._token = None if settings.token is None else settings.token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request, then pass it on (or answer it with a JSON error)."""
        if scope["type"] == "websocket":  # no endpoint uses one: refuse before anything runs
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = (
            self._host_refusal(headers)
            or self._token_refusal(scope, headers)
            or self._origin_refusal(scope, headers)
            or self._embed_refusal(scope, headers)
        )
        if refusal is not None:
            status, body, extra = refusal
            await send_json(send, status, body, extra)
            return
        receive_body = await self._limit_body(scope, headers, receive, send)
        if receive_body is None:
            return
        await self.app(scope, receive_body, _with_headers(send))

    def _host_refusal(self, headers: dict[bytes, bytes]) -> Refusal | None:
        host = _hostname(headers.get(b"host", b"").decode("latin-1"))
        if self._token is not None or is_loopback(host):
            return None
        detail = (
            f"this server answers only requests addressed to the loopback interface (Host "
            f"{host or 'missing'!r}); open {self.settings.url} instead"
        )
        return 403, error_body("forbidden_host", detail), []

    def _origin_refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> Refusal | None:
        """Refuse a cross-origin state change; the token check has already run."""
        origin = headers.get(b"origin")
        if scope["method"] in SAFE_METHODS or origin is None or self._token is not None:
            return None  # with a token configured, a request that got here presented it
        if _same_origin(origin.decode("latin-1"), scope, headers):
            return None
        detail = (
            f"requests from another site ({origin.decode('latin-1')}) may not control the "
            "robot; use the console this server serves, or a client that sends no Origin header"
        )
        return 403, error_body("cross_origin", detail), []

    def _embed_refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> Refusal | None:
        site = headers.get(b"sec-fetch-site", b"").lower()
        if site not in FOREIGN_FETCH_SITES or not scope["path"].startswith(NO_EMBED_PATHS):
            return None
        detail = (
            f"a page from another site ({site.decode('latin-1')}) may not load the camera "
            "pictures or streams; open them from the console this server serves"
        )
        return 403, error_body("cross_site", detail), []

    def _token_refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> Refusal | None:
        if self._token is None or _public(scope["path"]):
            return None
        supplied = _supplied_token(headers)
        if supplied is None:
            detail = (
                "this server needs its access token: send 'Authorization: Bearer <token>' or "
                "'X-Langgrasp-Token: <token>' (console: open the page with #token=<token> at "
                "the end of the URL)"
            )
            challenge = [(b"www-authenticate", b'Bearer realm="langgrasp"')]
            return 401, error_body("unauthorized", detail), challenge
        if not hmac.compare_digest(supplied, self._token):
            client = scope.get("client") or ("?", 0)
            log.warning("wrong access token from %s", client[0])
            detail = "wrong access token; ask the integrator for this robot's token"
            return 403, error_body("forbidden", detail), []
        return None

    async def _limit_body(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> Receive | None:
        """A ``receive`` for the app, or None when a 413/400 was sent instead."""
        limit = self.settings.max_body_bytes
        too_large = error_body(
            "too_large",
            f"the request body is larger than {limit} bytes; commands are short sentences "
            '(send e.g. {"text": "pick the red mug"})',
            limit_bytes=limit,
        )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                detail = "Content-Length is not a whole number of bytes; send the body's length"
                await send_json(send, 400, error_body("bad_request", detail))
                return None
            if declared > limit:
                await send_json(send, 413, too_large)
                return None
            return receive
        if scope["method"] in SAFE_METHODS:
            return receive
        # No length (chunked): read the body up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return _replay([message], receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_json(send, 413, too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return _replay([body], receive)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """Request headers by lower-case name (the last one wins for repeated names)."""
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _public(path: str) -> bool:
    return path == PUBLIC_PATHS[0] or any(path.startswith(p) for p in PUBLIC_PATHS[1:])


def _supplied_token(headers: dict[bytes, bytes]) -> bytes | None:
    auth = headers.get(b"authorization")
    if auth is not None:
        scheme, _, value = auth.partition(b" ")
        if scheme.lower() == b"bearer" and value.strip():
            return value.strip()
    token = headers.get(TOKEN_HEADER)
    return token.strip() if token else None


def _same_origin(origin: str, scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """Whether ``origin`` has this server's scheme, host and port (``Host`` header)."""
    scheme = str(scope.get("scheme", "http"))
    try:
        parts = urlsplit(origin)
        theirs = (parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme))
        mine = urlsplit(f"{scheme}://{headers.get(b'host', b'').decode('latin-1')}")
        ours = (scheme, mine.hostname, mine.port or DEFAULT_PORTS.get(scheme))
    except ValueError:  # a malformed port or host
        return False
    return theirs[1] is not None and theirs == ours


def _hostname(host_header: str) -> str:
    """The host name of a ``Host`` header value (port and IPv6 brackets removed)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``messages`` first, then whatever the client sends next (its disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return wrapped
