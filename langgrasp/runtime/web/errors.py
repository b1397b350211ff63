"""Every error of the HTTP API as JSON ``{"error": ..., "detail": ...}`` a person can act on.

``error`` is a short machine-readable kind (``validation_error``, ``malformed_json``,
``not_found``, ``busy``, ``too_large``, ...); ``detail`` says what was wrong and what to do.
Validation errors add ``fields`` (``loc``, ``msg``, ``type`` of each problem, without echoing the
input). The guard middleware (``security``) answers 401/403/413 in the same shape.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from langgrasp.runtime.web.security import error_body
from langgrasp.runtime.web.settings import MAX_COMMAND_CHARS

log = logging.getLogger(__name__)

COMMAND_EXAMPLE = '{"text": "pick the red mug"}'
"""The body shown in messages about a bad command request."""

OPENAPI_PATH = "/api/openapi.json"


class ApiError(Exception):
    """An endpoint's refusal with its HTTP status.

    Args:
        status: HTTP status code.
        error: Short kind, e.g. ``"busy"``.
        detail: What was wrong and what to do.
        extra: More JSON fields for the body.
    """

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        where = parts[0]
        return ".".join(parts[1:]) or where
    return ".".join(parts)


def _describe(error: dict[str, Any], max_chars: int | None) -> str:
    """One validation problem in words."""
    kind, where = error.get("type", ""), _location(error.get("loc", ()))
    if kind == "extra_forbidden":
        return f"unknown field {where!r}"
    if kind == "missing" and where == "body":
        return f"the request needs a JSON body like {COMMAND_EXAMPLE}"
    if kind == "missing":
        return f"{where}: required field missing"
    if kind == "string_too_short" and where == "text":
        return "text: the command is empty; say what to do, e.g. 'pick the red mug'"
    if kind == "string_too_long" and where == "text":
        return f"text: the command is longer than {max_chars} characters; say it shorter"
    if kind in ("model_attributes_type", "dict_type", "model_type") and where == "body":
        return f"the body must be a JSON object like {COMMAND_EXAMPLE}"
    return f"{where}: {error.get('msg', kind)}"


def validation_response(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 (or 415 for a body that is not JSON) with every problem described."""
    errors = list(exc.errors())
    fields = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]
    invalid = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if invalid is not None:
        reason = (invalid.get("ctx") or {}).get("error", "invalid JSON")
        position = invalid.get("loc", ("body", "?"))[-1]
        detail = (
            f"the request body is not valid JSON ({reason} at character {position}); send a "
            f"JSON object like {COMMAND_EXAMPLE}"
        )
        return _json(422, error_body("malformed_json", detail, fields=fields))
    content_type = request.headers.get("content-type", "")
    body_problem = any(_location(e.get("loc", ())) == "body" for e in errors)
    if body_problem and content_type and "json" not in content_type.lower():
        detail = (
            f"the body was sent as {content_type!r}; send JSON with 'Content-Type: "
            f"application/json', e.g. {COMMAND_EXAMPLE}"
        )
        return _json(415, error_body("unsupported_media_type", detail, fields=fields))
    detail = "; ".join(_describe(e, MAX_COMMAND_CHARS) for e in errors)
    hint = f" (the schema is at {OPENAPI_PATH})"
    return _json(422, error_body("validation_error", detail + hint, fields=fields))


def http_error_response(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """404, 405 and other HTTP errors raised by routing."""
    method, path = request.method, request.url.path
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        body = error_body(
            "not_found", f"no such endpoint or file: {method} {path}; see {OPENAPI_PATH}"
        )
    elif exc.status_code == 405:
        allowed = headers.get("allow") or headers.get("Allow") or "another method"
        body = error_body("method_not_allowed", f"{method} is not allowed on {path}; use {allowed}")
    elif exc.status_code == 400:  # Starlette could not parse the body (e.g. not UTF-8)
        detail = f"{exc.detail}; send a UTF-8 JSON object like {COMMAND_EXAMPLE}"
        body = error_body("bad_request", detail)
    else:
        try:  # not ``code in HTTPStatus``: that raises TypeError before Python 3.12
            phrase = HTTPStatus(exc.status_code).phrase
        except ValueError:
            phrase = "error"
        body = error_body(phrase.lower().replace(" ", "_"), str(exc.detail))
    return _json(exc.status_code, body, headers)


def api_error_response(request: Request, exc: ApiError) -> JSONResponse:
    """An endpoint's ``ApiError``."""
    return _json(exc.status, error_body(exc.error, exc.detail, **exc.extra))


def internal_error_response(request: Request, exc: Exception) -> JSONResponse:
    """500 for a bug; the server log has the traceback."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    detail = (  # the exception's text stays in the log: it can show paths, devices, settings
        f"internal error while handling {request.method} {request.url.path}; the server log "
        "has the details. If the robot is moving, press stop"
    )
    return _json(500, error_body("internal_error", detail))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(RequestValidationError, validation_response)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error_response)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, api_error_response)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, internal_error_response)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)
