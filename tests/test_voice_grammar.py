"""The command grammar: built from intents.py and the vocabulary, words checked, JSGF valid."""

from __future__ import annotations

import re

import pytest

from langgrasp.datasets.synthetic import OBJECT_KINDS, PALETTE
from langgrasp.errors import InputError
from langgrasp.runtime import intents
from langgrasp.runtime.voice.grammar import (
    Vocabulary,
    build_grammar,
    default_vocabulary,
    load_vocabulary,
    missing_words,
)


def rule(jsgf: str, name: str) -> list[str]:
    """Alternatives of a word-list rule."""
    match = re.search(rf"^<{name}> = (.*);$", jsgf, re.MULTILINE)
    assert match, f"no <{name}> rule in\n{jsgf}"
    return [alt.strip() for alt in match.group(1).split("|")]


def test_default_vocabulary_is_the_synthetic_scenes_words():
    v = default_vocabulary()
    assert v.colours == tuple(PALETTE)
    assert set(OBJECT_KINDS) < set(v.objects) and "object" in v.objects
    assert v.parts == ("handle",) and set(v.sides) == {"left", "right", "top", "bottom"}
    assert v.wake_words == ("robot",)


def test_grammar_lists_the_commands_intents_understands():
    jsgf = build_grammar().jsgf
    assert jsgf.startswith("#JSGF V1.0;") and "public <utterance>" in jsgf
    replies = rule(jsgf, "reply")
    for phrase in ("yes", "confirm", "next one", "home", "open", "go home"):
        assert phrase in replies
    stops = rule(jsgf, "stop")
    assert {"stop", "halt", "abort"} <= set(stops)
    for phrase in stops:  # alone or followed by a tail ("stop now"), a stop line is STOP
        for tail in ["", *rule(jsgf, "stop_tail")]:
            kind = intents.parse_intent(f"{phrase} {tail}").kind
            assert kind is intents.IntentKind.STOP, (phrase, tail)
    for phrase in rule(jsgf, "stop_line"):
        assert intents.parse_intent(phrase).kind is intents.IntentKind.STOP, phrase
    assert set(rule(jsgf, "verb")) == set(intents.PICK_VERBS)
    assert {"um", "uh", "please"} <= set(rule(jsgf, "filler"))
    assert "robot" not in rule(jsgf, "filler")  # the wake word has its own rule
    assert "ah" not in rule(jsgf, "filler")  # one-phone fillers soak up real words
    assert rule(jsgf, "colour") == list(PALETTE)
    # every reply phrase parses to its intent, so a recognised reply is always understood
    for phrase in replies:
        assert intents.parse_intent(phrase).kind not in (
            intents.IntentKind.UNKNOWN,
            intents.IntentKind.PICK,
        ), phrase


def test_unknown_words_drop_command_phrases_but_fail_for_the_vocabulary():
    dictionary = {"pick", "up", "the", "red", "mug", "yes", "stop", "robot", "um", "object"}
    vocabulary = Vocabulary(colours=("red",), objects=("mug", "object"))
    grammar = build_grammar(vocabulary, dictionary.__contains__)
    assert rule(grammar.jsgf, "reply") == ["yes"] and rule(grammar.jsgf, "stop") == ["stop"]
    assert rule(grammar.jsgf, "stop_tail") == ["the robot"] and "<stop_line>" not in grammar.jsgf
    assert rule(grammar.jsgf, "verb") == ["pick up", "pick"]
    assert "next one" in grammar.dropped and "grab" in grammar.dropped
    assert "<part>" not in grammar.jsgf and "<side>" not in grammar.jsgf
    assert "<polite>" not in grammar.jsgf  # no politeness phrase was pronounceable
    with pytest.raises(InputError, match=r"no pronunciation for 'flask'.*pronunciations="):
        build_grammar(Vocabulary(objects=("mug", "flask")), dictionary.__contains__)
    assert missing_words(Vocabulary(objects=("flask", "mug")), dictionary.__contains__) == ["flask"]


def test_integrator_vocabulary_and_phrases():
    v = Vocabulary(
        colours=("Red", "dark  blue"),
        objects=("screw driver", "cup"),
        parts=("cap",),
        wake_words=("hey jarvis",),
        phrases=("calibrate",),
    )
    assert v.colours == ("red", "dark blue")
    jsgf = build_grammar(v).jsgf
    assert rule(jsgf, "object") == ["screw driver", "cup"]
    assert rule(jsgf, "wake") == ["hey jarvis"]
    assert "calibrate" in rule(jsgf, "reply")
    assert "(by the | by its) <part>" in jsgf


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("objects", ["mug", "cup3"], "words of letters"),
        ("objects", "mug", "list of words"),
        ("objects", [], "objects is empty"),
        ("colours", [7], "not a string"),
    ],
)
def test_bad_vocabulary_words_are_refused(field, value, message):
    with pytest.raises(InputError, match=message):
        Vocabulary(**{field: value})


def test_vocabulary_file(tmp_path):
    path = tmp_path / "words.toml"
    path.write_text('objects = ["bottle", "cup"]\ncolours = ["red"]\n')
    v = load_vocabulary(path)
    assert v.objects == ("bottle", "cup") and v.colours == ("red",) and v.sides == ()
    path.write_text('objects = ["cup"]\nshapes = ["round"]\n')
    with pytest.raises(InputError, match="unknown key 'shapes'; known keys: colours"):
        load_vocabulary(path)
    path.write_text("objects = 3\n")
    with pytest.raises(InputError, match="objects must be a list of words"):
        load_vocabulary(path)
    path.write_text("objects = [\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_vocabulary(path)
    with pytest.raises(InputError, match="cannot read"):
        load_vocabulary(tmp_path / "missing.toml")
