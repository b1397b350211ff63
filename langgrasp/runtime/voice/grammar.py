"""The command grammar a recogniser listens for: robot commands, not general English.

Why a grammar: a general English language model spreads its probability over every sentence of
English, so short commands said to a robot come out as the nearest common phrase. On espeak-ng
speech the pocketsphinx wheel's general model heard "pick up the red mug" as "the riddler" and
"next one" as "that's why"; constrained to this grammar it recognised them exactly. The grammar
lists what ``langgrasp.runtime.intents`` understands, so every recognised line parses:

* pick commands: ``[polite] <verb> [article] [colour] <object> [qualifier] [up]``, with the verbs
  of ``intents.PICK_VERBS``, the politeness of ``intents.FILLER_PHRASES`` and qualifiers in the
  wordings of ``datasets.synthetic.TEMPLATES`` ("on the left", "closest to the top", "next to
  the blue box", "by the handle");
* whole-line replies: every phrase of ``intents.PHRASES`` (confirm, next, home, open, status,
  help), and the stop words (``intents.STOP_WORDS``) alone or with a few words after them;
* optional fillers (``intents.FILLER_WORDS``) before and after (politeness after, too: "for
  me"), and the wake words in front.

The object words come from a ``Vocabulary``: ``default_vocabulary()`` takes the colours, kinds,
parts and sides of the synthetic scenes the demo model was trained on; an integrator passes
their own objects. Words the recogniser's pronunciation dictionary lacks cannot be recognised:
command-vocabulary phrases with such words (typed shorthands like "pls") are left out, and
vocabulary words raise an error naming them, so a missing object fails at start, not on the
robot.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgrasp.errors import InputError
from langgrasp.runtime import intents

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6): the same parser, packaged as tomli
    import tomli as tomllib

DEFAULT_WAKE_WORD = "robot"
"""Wake word of wake-word mode; ``intents.FILLER_WORDS`` already drops it from typed lines."""

GENERIC_OBJECT = "object"
"""Noun of the location wordings ("pick up the object closest to the left", TEMPLATES)."""

ARTICLES = ("the", "a", "an", "that", "this")
"""Articles before a target; ``intents.target_phrase`` turns each into "the"."""

SIDE_PREPOSITIONS = ("on", "at")
""""on the left", "at the top": ``datasets.synthetic.SIDE_PHRASES``."""

EXTREMES = ("closest to", "nearest", "nearest to")
""""the object closest to the left" / "nearest the left": TEMPLATES["extreme"]."""

RELATIONS = ("next to", "beside", "near")
""""the box next to the mug" / "beside the mug": TEMPLATES["relation"]."""

PART_LINKS = ("by the", "by its")
""""the mug by the handle" / "by its handle": TEMPLATES["part"]."""

UNSPOKEN_REPLIES = frozenset({"go"})
"""``intents.PHRASES`` left out of the spoken grammar: a lone "go" confirms a motion, and it is
where unrelated speech ends up ("hello world" was decoded as "uh go will you"); "go ahead",
"yes" and "do it" remain."""

STOP_LINES = ("e stop", "hold on", "wait")
"""Lines ``intents.parse_intent`` treats as stop besides ``STOP_WORDS``."""

STOP_TAILS = ("now", "it", "that", "moving", "the robot")
"""Words after a stop word ("stop now", "cancel that"): any line with a stop word is STOP."""

UNSPOKEN_FILLERS = frozenset({"ah", "er", "erm", "mm", "hmm", "uhh", "umm", "now", "just", "pls"})
"""``intents.FILLER_WORDS`` left out of the spoken grammar: one-phone fillers soak up parts of
real words. Without them espeak-ng test speech (3 voices x 22 phrases) was understood in 46
instead of 41 cases, and "robot stop" and "please stop" were no longer heard as "... ah ok"
(a confirmation). "uhh"/"umm" sound like "uh"/"um"; "pls" is typed shorthand."""

_WORD = re.compile(r"^[a-z]+(?:['-][a-z]+)*$")


def _phrases(values: Iterable[str], what: str) -> tuple[str, ...]:
    """Lower-cased, space-normalised, de-duplicated phrases; InputError on other characters."""
    out: list[str] = []
    if isinstance(values, str):
        raise InputError(f"vocabulary {what} must be a list of words, got the string {values!r}")
    for value in values:
        if not isinstance(value, str):
            raise InputError(f"vocabulary {what}: {value!r} is not a string")
        phrase = " ".join(value.lower().split())
        bad = [w for w in phrase.split() if not _WORD.match(w)]
        if not phrase or bad:
            raise InputError(
                f"vocabulary {what}: {value!r} must be words of letters (a-z, inner ' or -), "
                "e.g. 'mug' or 'screw driver'; spell digits out ('two')"
            )
        if phrase not in out:
            out.append(phrase)
    return tuple(out)


@dataclass(frozen=True)
class Vocabulary:
    """The object words a spoken command may use (the grammar's open classes).

    Attributes:
        colours: Colour words ("red").
        objects: Object nouns, one or more words ("mug", "screw driver").
        parts: Part nouns for "by the handle".
        sides: Image sides for "on the left" / "closest to the left".
        wake_words: Words that may open an utterance in wake-word mode ("robot").
        phrases: Extra whole-line commands the integrator's loop understands.
    """

    colours: tuple[str, ...] = ()
    objects: tuple[str, ...] = (GENERIC_OBJECT,)
    parts: tuple[str, ...] = ()
    sides: tuple[str, ...] = ()
    wake_words: tuple[str, ...] = (DEFAULT_WAKE_WORD,)
    phrases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("colours", "objects", "parts", "sides", "wake_words", "phrases"):
            object.__setattr__(self, name, _phrases(getattr(self, name), name))
        if not self.objects:
            raise InputError("vocabulary objects is empty; list the objects the robot picks")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "vocabulary") -> Vocabulary:
        """Build from a mapping (a parsed TOML file); unknown keys are an error.

        Raises:
            InputError: unknown key or a value that is not a list of words.
        """
        known = tuple(cls.__dataclass_fields__)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(
                f"{source}: unknown key {', '.join(map(repr, unknown))}; known keys: "
                f"{', '.join(known)}"
            )
        for key, value in data.items():
            if not isinstance(value, (list, tuple)):
                raise InputError(f"{source}: {key} must be a list of words, got {value!r}")
        return cls(**{key: tuple(value) for key, value in data.items()})

    def words(self) -> set[str]:
        """Every word of every vocabulary phrase."""
        phrases = (
            self.colours + self.objects + self.parts + self.sides + self.wake_words + self.phrases
        )
        return {w for p in phrases for w in p.split()}


def load_vocabulary(path: str | Path) -> Vocabulary:
    """Read a vocabulary TOML file.

    The file holds lists named like the ``Vocabulary`` fields; a missing list is empty (the wake
    word defaults to "robot")::

        objects = ["bottle", "screw driver", "cup"]
        colours = ["red", "green", "blue"]
        parts = ["cap", "handle"]
        sides = ["left", "right"]

    Raises:
        InputError: missing or unparsable file, unknown key, or a bad word.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"{path}: cannot read the vocabulary file ({err})") from err
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML ({err})") from err
    return Vocabulary.from_dict(data, str(path))


def default_vocabulary() -> Vocabulary:
    """The synthetic scenes' words (what the demo model was trained on).

    ``PALETTE`` colours, ``OBJECT_KINDS`` nouns plus "object", their ``phrase_parts`` and the
    ``SIDE_DIRECTIONS`` sides of ``langgrasp.datasets.synthetic``.
    """
    from langgrasp.datasets import synthetic

    parts = {part for kind in synthetic.OBJECT_KINDS.values() for part in kind.phrase_parts}
    return Vocabulary(
        colours=tuple(synthetic.PALETTE),
        objects=(*synthetic.OBJECT_KINDS, GENERIC_OBJECT),
        parts=tuple(sorted(parts)),
        sides=tuple(synthetic.SIDE_DIRECTIONS),
    )


@dataclass(frozen=True)
class Grammar:
    """A JSGF grammar and what was left out of it.

    Attributes:
        jsgf: The grammar text (JSGF V1.0, public rule ``<utterance>``).
        rule: Name of the public rule.
        dropped: Command-vocabulary phrases left out because a word is not pronounceable.
    """

    jsgf: str
    rule: str = "utterance"
    dropped: tuple[str, ...] = field(default=())


def missing_words(vocabulary: Vocabulary, known: Callable[[str], bool]) -> list[str]:
    """Vocabulary words ``known`` rejects (not in the pronunciation dictionary), sorted."""
    return sorted(w for w in vocabulary.words() if not known(w))


def build_grammar(
    vocabulary: Vocabulary | None = None, known: Callable[[str], bool] | None = None
) -> Grammar:
    """The JSGF grammar of spoken commands (see the module docstring).

    Args:
        vocabulary: Object words; None uses ``default_vocabulary()``.
        known: True for words the recogniser can pronounce; None accepts every word.

    Returns:
        The grammar; ``dropped`` lists command phrases left out for unknown words.

    Raises:
        InputError: a vocabulary word ``known`` rejects (the message names them all).
    """
    vocabulary = vocabulary or default_vocabulary()
    known = known or (lambda word: True)
    missing = missing_words(vocabulary, known)
    if missing:
        raise InputError(
            f"the speech dictionary has no pronunciation for {', '.join(map(repr, missing))}; "
            "add them (pronunciations={'word': 'ARPABET PHONES'}, or a dictionary file) or use "
            "other words"
        )
    rules, dropped = _word_rules(vocabulary, known)
    return Grammar(_jsgf(rules, vocabulary), dropped=tuple(dropped))


def _word_rules(
    v: Vocabulary, known: Callable[[str], bool]
) -> tuple[dict[str, Sequence[str]], list[str]]:
    """Rule name -> alternatives, and the command phrases dropped for unknown words."""
    dropped: list[str] = []

    def pronounceable(phrases: Iterable[str]) -> list[str]:
        out = []
        for phrase in dict.fromkeys(phrases):
            if all(_WORD.match(w) and known(w) for w in phrase.split()):
                out.append(phrase)
            else:
                dropped.append(phrase)
        return out

    replies = [p for phrases in intents.PHRASES.values() for p in phrases]
    # only lines that parse as the reply they are ("what can you do" loses "can you" as a filler)
    replies = [p for p in replies if intents.parse_intent(p).kind in intents.PHRASES]
    replies = [p for p in replies if p not in UNSPOKEN_REPLIES]
    fillers = intents.FILLER_WORDS - UNSPOKEN_FILLERS - set(v.wake_words)
    rules: dict[str, Sequence[str]] = {
        "wake": v.wake_words,
        "filler": pronounceable(sorted(fillers)),
        "polite": pronounceable(intents.FILLER_PHRASES),
        "reply": pronounceable(replies) + list(v.phrases),
        "stop": pronounceable(sorted(intents.STOP_WORDS)),
        "stop_tail": pronounceable(STOP_TAILS),
        "stop_line": pronounceable(STOP_LINES),
        "verb": pronounceable(intents.PICK_VERBS),
        "article": ARTICLES,
        "colour": v.colours,
        "object": v.objects,
        "part": v.parts,
        "side": v.sides,
    }
    rules["tail"] = [f"<{name}>" for name in ("filler", "polite") if rules[name]]
    return rules, dropped


def _jsgf(rules: Mapping[str, Sequence[str]], v: Vocabulary) -> str:
    def opt(name: str) -> str:  # an optional reference; nothing when the rule has no words
        return f"[<{name}>] " if rules[name] else ""

    thing = f"{opt('colour')}<object>"
    qualifiers = [f"({' | '.join(RELATIONS)}) [<article>] {thing}"]
    if v.parts:
        qualifiers.append(f"({' | '.join(PART_LINKS)}) <part>")
    if v.sides:
        qualifiers.append(f"({' | '.join(SIDE_PREPOSITIONS)}) the <side>")
        qualifiers.append(f"({' | '.join(EXTREMES)}) [the] <side>")
    commands = ["<reply>", "<pick>", f"<stop> {opt('stop_tail')}".rstrip()]
    commands += ["<stop_line>"] if rules["stop_line"] else []
    utterance = f"{opt('filler')}{opt('wake')}{opt('filler')}<command> {opt('tail')}".rstrip()
    lines = [
        "#JSGF V1.0;",
        "grammar langgrasp;",
        f"public <utterance> = {utterance};",
        f"<command> = {' | '.join(commands)};",
        f"<pick> = {opt('polite')}<verb> <target> [up];",
        f"<target> = [<article>] {thing} [<qualifier>];",
        f"<qualifier> = {' | '.join(f'({q})' for q in qualifiers)};",
    ]
    lines += [f"<{name}> = {' | '.join(words)};" for name, words in rules.items() if words]
    return "\n".join(lines) + "\n"
