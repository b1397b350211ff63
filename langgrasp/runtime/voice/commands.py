"""``langgrasp listen``: spoken commands for the pick loop (offline recogniser).

Only argparse-level imports at the top; the recogniser, microphone, loop, camera and devices
load inside the handler, so ``langgrasp --help`` stays fast and torch-free.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgrasp.runtime.run_commands import add_loop_arguments

if TYPE_CHECKING:
    from langgrasp.runtime.voice.listener import Heard

EXIT_OK = 0
EXIT_NOT_UNDERSTOOD = 1
"""``--wav``: some file was ignored, not understood, or refused by the loop."""

MODES = ("push-to-talk", "wake-word")


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``listen`` subcommand."""
    parser = sub.add_parser(
        "listen",
        help="spoken commands for the pick loop (offline recogniser, push-to-talk or wake word)",
        description="Listen for spoken commands ('pick up the red mug', yes, next one, stop, "
        "home, open) and run them on the pick loop from robot.toml, exactly as typed ones. "
        "Push-to-talk: Enter starts and ends a recording. Wake word: say 'robot' and the "
        "command; 'stop' works without it. Recognition is offline (pocketsphinx, constrained "
        "to the command grammar). Dry run unless --execute. Without --config, only prints what "
        "was understood (to check a microphone or vocabulary).",
    )
    add_loop_arguments(parser, config_required=False)
    parser.add_argument("--mode", choices=MODES, default=MODES[0], help="default: push-to-talk")
    parser.add_argument("--wake-word", default="robot", help="wake-word mode keyphrase")
    parser.add_argument(
        "--wav",
        nargs="+",
        type=Path,
        default=None,
        metavar="FILE",
        help="hear these WAV files in order, one utterance each, instead of the microphone",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="--wav: do not wait for a motion to end before the next file (so a 'stop' file "
        "interrupts it)",
    )
    parser.add_argument("--backend", default="pocketsphinx", help="transcriber backend")
    parser.add_argument("--model", type=Path, default=None, help="acoustic model folder")
    parser.add_argument("--dictionary", type=Path, default=None, help="pronunciation dictionary")
    parser.add_argument(
        "--vocabulary",
        type=Path,
        default=None,
        help="TOML file with the object words (objects, colours, parts, sides lists); "
        "default: the synthetic scenes' words",
    )
    parser.add_argument(
        "--min-confidence", type=float, default=0.0, help="ignore transcripts below this"
    )
    parser.add_argument("--device", default=None, help="microphone index or name")
    parser.add_argument("--json", action="store_true", help="one JSON object per utterance")
    parser.set_defaults(func=_cmd_listen)


def _cmd_listen(args: argparse.Namespace) -> int:
    from langgrasp.runtime.voice.listener import Listener, ListenerConfig

    transcriber = _transcriber(args)
    listener_config = ListenerConfig(args.mode, args.wake_word, min_confidence=args.min_confidence)
    microphone = None
    if not args.wav:  # open the microphone first: a missing one fails before the robot starts
        from langgrasp.runtime.voice.microphone import Microphone

        device = int(args.device) if args.device and args.device.isdigit() else args.device
        microphone = Microphone(transcriber.sample_rate, device).open()
    with contextlib.ExitStack() as stack:
        if microphone is not None:
            stack.callback(microphone.close)
        loop = _loop(args)
        if loop is not None:
            stack.enter_context(loop)
        listener = Listener(transcriber, loop, listener_config)
        if args.wav:
            from langgrasp.runtime.voice.sessions import run_files

            heard = run_files(
                listener, args.wav, wait_for_motion=not args.no_wait, as_json=args.json
            )
            return EXIT_OK if all(_understood(h) for h in heard) else EXIT_NOT_UNDERSTOOD
        assert microphone is not None
        return _live(listener, microphone, args.json)


def _transcriber(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from langgrasp.runtime.voice.grammar import default_vocabulary, load_vocabulary
    from langgrasp.runtime.voice.transcriber import TranscriberConfig, create_transcriber

    vocabulary = load_vocabulary(args.vocabulary) if args.vocabulary else default_vocabulary()
    wake_words = tuple(dict.fromkeys((*vocabulary.wake_words, args.wake_word.lower())))
    config = TranscriberConfig(
        backend=args.backend,
        model_path=args.model,
        dictionary=args.dictionary,
        vocabulary=replace(vocabulary, wake_words=wake_words),
    )
    return create_transcriber(config)


def _loop(args: argparse.Namespace) -> Any:
    if args.config is None:
        if args.execute or args.auto_confirm:
            from langgrasp.errors import InputError

            raise InputError("--execute and --auto-confirm need --config robot.toml")
        return None
    from langgrasp.runtime.config import load_robot_config
    from langgrasp.runtime.pick import build_loop

    config = load_robot_config(args.config)
    if args.execute:
        print("EXECUTE: commands are sent to the devices; the robot will move", file=sys.stderr)
    return build_loop(config, execute=args.execute, auto_confirm=args.auto_confirm)


def _live(listener: Any, microphone: Any, as_json: bool) -> int:
    from langgrasp.runtime.voice.listener import ListenMode
    from langgrasp.runtime.voice.sessions import run_push_to_talk, run_wake_word

    if listener.config.mode is ListenMode.PUSH_TO_TALK:
        return run_push_to_talk(listener, microphone, as_json=as_json)
    run_wake_word(listener, microphone.blocks(), microphone.rate, as_json=as_json)
    return EXIT_OK


def _understood(heard: Heard) -> bool:
    from langgrasp.runtime.intents import IntentKind

    if heard.ignored is not None or heard.intent is None:
        return False
    if heard.reply is not None:
        return heard.reply.ok
    return heard.intent.kind is not IntentKind.UNKNOWN
