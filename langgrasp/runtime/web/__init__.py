"""The HTTP API and web console over the pick loop (``langgrasp serve``).

Modules:

* ``app``: ``create_app(loop, settings)``, the FastAPI app: JSON endpoints that drive the same
  ``PickLoop`` the typed console drives (command, confirm, next, stop, home, open, state), the
  overlay picture of the last detection, the live camera view, server-sent events, the audit
  log tail, the OpenAPI schema, and the operator's page (``static/console.html``).
* ``bridge``: what the endpoints do with the loop (busy rule, detection numbering, pictures).
* ``security``: the guard in front of every request (token, host, origin, body size).
* ``settings``: ``WebSettings`` (address, token, limits) and the rule that a non-loopback
  address needs a token.
* ``events``, ``overlay``, ``errors``: event fan-out, pictures, JSON errors.
* ``server``: ``WebServer`` (uvicorn in a background thread, for tests and benchmarks) and
  ``serve`` (foreground, Ctrl-C stops the robot); ``commands``: the ``langgrasp serve`` CLI.

Nothing is imported here: ``commands`` must stay importable without FastAPI.
"""

__all__: list[str] = []
