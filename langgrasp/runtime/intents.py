"""Operator lines, typed or transcribed, to intents: pick, next, confirm, stop, home, open, ...

Typed and spoken input share one normalisation, so "um, pick up the red mug please" and
"pick the red mug" both become ``Intent(PICK, target="the red mug")``:

1. lower case, punctuation to spaces, "the" added to a bare target ("pick red mug");
2. fillers and politeness removed ("um", "please", "could you", "for me", "hey robot", ...);
3. the first words are matched against the command vocabulary; for a pick, the verb
   ("pick up", "pick", "grab", "get", "take", "fetch", "hand me", ...) is removed and the rest is
   the target phrase.

"stop", "halt", "abort" (and "freeze", "cancel", "emergency") anywhere in a line mean STOP,
whatever else the line says: stopping must never depend on phrasing.

The detector receives the target phrase in the wording the model was trained on
(``langgrasp.datasets.synthetic.TEMPLATES``: "pick up the {colour} {noun}", "pick up the {noun}
next to the {anchor}", "pick up the {target} by the {part}", ...): ``DETECTOR_VERB`` + phrase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any


class IntentKind(str, Enum):
    """What the operator asked for."""

    PICK = "pick"
    NEXT = "next"
    CONFIRM = "confirm"
    STOP = "stop"
    HOME = "home"
    OPEN = "open"
    ACTIVATE = "activate"  # gripper activation: the fingers open and close fully
    STATUS = "status"
    HELP = "help"
    EMPTY = "empty"  # nothing left after removing fillers
    UNKNOWN = "unknown"


DETECTOR_VERB = "pick up"
"""Verb the detector sees before the target phrase: the one wording that every instruction family
of ``datasets.synthetic.TEMPLATES`` uses ("pick up the {noun}", "pick up the object closest to
the {side}", "pick up the {target} by the {part}", ...)."""

STOP_WORDS = frozenset({"stop", "halt", "abort", "freeze", "cancel", "emergency", "estop"})
"""Any of these words anywhere in a line means STOP."""

FILLER_PHRASES = (
    "i would like you to",
    "i'd like you to",
    "i want you to",
    "could you please",
    "can you please",
    "would you please",
    "could you",
    "can you",
    "would you",
    "will you",
    "go ahead and",
    "hey robot",
    "ok robot",
    "okay robot",
    "thank you",
    "for me",
    "right now",
)
"""Politeness and address removed wherever they occur (longest first)."""

FILLER_WORDS = frozenset(
    {"um", "umm", "uh", "uhh", "er", "erm", "ah", "hmm", "mm", "please", "pls", "kindly"}
    | {"thanks", "robot", "just", "now"}
)
"""Single words removed wherever they occur."""

PICK_VERBS = (
    "pick up",
    "pick out",
    "pick",
    "grab",
    "grasp",
    "get me",
    "get",
    "take",
    "fetch",
    "hand me",
    "bring me",
    "give me",
    "pass me",
    "lift",
    "i need",
    "i want",
)
"""Pick verbs, matched at the start of the normalised line (longest first per stem)."""

PHRASES: dict[IntentKind, tuple[str, ...]] = {
    IntentKind.CONFIRM: (
        "yes",
        "yeah",
        "yep",
        "yup",
        "confirm",
        "confirmed",
        "go",
        "go ahead",
        "do it",
        "ok",
        "okay",
        "sure",
        "proceed",
        "execute",
        "that one",
        "yes do it",
        "yes go",
        "yes please",
    ),
    IntentKind.NEXT: (
        "next",
        "next one",
        "another",
        "another one",
        "try another",
        "try another one",
        "try the next one",
        "the next one",
        "no",
        "nope",
        "no next",
        "no another one",
        "skip",
        "other one",
        "the other one",
    ),
    IntentKind.HOME: ("home", "go home", "return home", "go to home", "home position", "go back"),
    IntentKind.OPEN: (
        "open",
        "open gripper",
        "open the gripper",
        "open the hand",
        "release",
        "let go",
        "drop it",
    ),
    IntentKind.ACTIVATE: ("activate", "activate gripper", "activate the gripper"),
    IntentKind.STATUS: ("status", "state", "where are you", "what are you doing", "report"),
    IntentKind.HELP: ("help", "commands", "what can i say"),
}
"""Whole-line phrases (after normalisation) for the intents without a target."""

DETERMINERS = ("the", "a", "an", "that", "this", "one", "some")
"""A target phrase is made to start with "the", the article of every training wording."""

HELP_TEXT = (
    "commands: 'pick the red mug' (also grab / get / take / pick up), 'confirm' (yes, go, do "
    "it), 'next' (another one), 'stop' (halt, abort; works at any time), 'home', 'open', "
    "'activate' (gripper activation: the fingers open and close fully; make sure it holds "
    "nothing), 'status', 'help'"
)

_PUNCTUATION = re.compile(r"[^\w\s'-]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Intent:
    """One parsed operator line.

    Attributes:
        kind: What was asked for.
        text: The line as received.
        target: PICK only: the target phrase ("the red mug by the handle"); None otherwise.
    """

    kind: IntentKind
    text: str
    target: str | None = None

    @property
    def detector_command(self) -> str | None:
        """The instruction the detector receives ("pick up the red mug"), PICK only."""
        return None if self.target is None else detector_command(self.target)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind.value,
            "text": self.text,
            "target": self.target,
            "detector_command": self.detector_command,
        }


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, fillers and politeness removed, spaces collapsed."""
    line = _PUNCTUATION.sub(" ", text.lower().replace("\u2019", "'"))
    line = " " + _SPACES.sub(" ", line).strip() + " "
    for phrase in FILLER_PHRASES:
        line = line.replace(f" {phrase} ", " ")
    words = [w.strip("'-") for w in line.split()]
    return " ".join(w for w in words if w and w not in FILLER_WORDS)


def detector_command(target: str) -> str:
    """The detector's instruction for a target phrase: ``DETECTOR_VERB`` + phrase."""
    return f"{DETECTOR_VERB} {target}"


def target_phrase(words: str) -> str | None:
    """The target phrase of what follows a pick verb, starting with "the"; None when empty.

    "red mug" -> "the red mug"; "a red mug up" -> "the red mug"; "it" -> None.
    """
    tokens = words.split()
    if tokens and tokens[-1] == "up":  # "pick the mug up"
        tokens = tokens[:-1]
    if tokens and tokens[0] == "up":  # "pick up" split by a filler: "pick um up the mug"
        tokens = tokens[1:]
    if tokens and tokens[0] in DETERMINERS:
        tokens = tokens[1:]
    if not tokens or tokens in (["it"], ["something"], ["that"], ["this"], ["one"]):
        return None
    return "the " + " ".join(tokens)


def parse_intent(text: str) -> Intent:
    """Parse one operator line (typed or transcribed).

    Returns:
        The intent; ``UNKNOWN`` when nothing matched, ``EMPTY`` for a blank line, ``PICK``
        with ``target`` None when the verb had no object ("pick it up").
    """
    raw = text if isinstance(text, str) else str(text)
    line = normalise(raw)
    if not line:
        return Intent(IntentKind.EMPTY, raw)
    words = line.split()
    if STOP_WORDS.intersection(words) or line in ("e stop", "hold on", "wait"):
        return Intent(IntentKind.STOP, raw)
    for kind, phrases in PHRASES.items():
        if line in phrases:
            return Intent(kind, raw)
    for verb in PICK_VERBS:
        if line == verb or line.startswith(verb + " "):
            return Intent(IntentKind.PICK, raw, target_phrase(line[len(verb) :]))
    return Intent(IntentKind.UNKNOWN, raw)
