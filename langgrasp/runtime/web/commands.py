"""``langgrasp serve``: the pick loop from robot.toml behind the HTTP API and the web console.

Only argparse-level imports at the top; FastAPI, uvicorn, the loop and the devices load inside
the handler, so ``langgrasp --help`` stays fast on any install.
"""

from __future__ import annotations

import argparse
import os
import sys

from langgrasp.runtime.run_commands import add_loop_arguments
from langgrasp.runtime.web.settings import DEFAULT_HOST, DEFAULT_PORT, LIVE_FPS, TOKEN_HINT


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    parser = sub.add_parser(
        "serve",
        help="serve the pick loop from robot.toml as an HTTP API and a web console",
        description="Open everything robot.toml names (as `langgrasp run` does) and serve the "
        "operator's web console and the JSON API (OpenAPI schema at /api/openapi.json) over "
        "the same pick loop. Dry run unless --execute. Listens on 127.0.0.1 unless --host "
        "says otherwise; any other address needs an access token (--token-env). Ctrl-C "
        "stops the arm and the gripper and exits.",
    )
    add_loop_arguments(parser)
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on (default: %(default)s, this machine only; another address "
        "needs --token-env)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s)"
    )
    parser.add_argument(
        "--token-env",
        metavar="NAME",
        default=None,
        help="environment variable holding the access token; every request must then send "
        "'Authorization: Bearer <token>' (console: open the URL with #token=<token>). Make "
        f"one with {TOKEN_HINT}",
    )
    parser.add_argument(
        "--live-fps",
        type=float,
        default=LIVE_FPS,
        help="live camera view rate, frames per second; 0 turns it off (use 0 for a recording "
        "played once: the live view would use up its frames) (default: %(default)s)",
    )
    parser.set_defaults(func=_cmd_serve)


def _token(name: str | None) -> str | None:
    from langgrasp.errors import InputError

    if name is None:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise InputError(
            f"--token-env {name}: the environment variable {name} is not set or empty; "
            f"export {name}=$({TOKEN_HINT})"
        )
    return value


def _cmd_serve(args: argparse.Namespace) -> int:
    from langgrasp.runtime.config import load_robot_config
    from langgrasp.runtime.pick import build_loop
    from langgrasp.runtime.web.server import serve
    from langgrasp.runtime.web.settings import WebSettings

    # Settings first: a refused address must not open the camera or the devices.
    settings = WebSettings(
        host=args.host, port=args.port, token=_token(args.token_env), live_fps=args.live_fps
    )
    config = load_robot_config(args.config)
    if args.execute:
        print("EXECUTE: commands are sent to the devices; the robot will move", file=sys.stderr)
    loop = build_loop(config, execute=args.execute, auto_confirm=args.auto_confirm)
    with loop:
        serve(loop, settings, announce=lambda line: print(line, flush=True))
    return 0
