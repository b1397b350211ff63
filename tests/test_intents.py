"""Operator lines (typed or transcribed) to intents; one normalisation for both."""

from __future__ import annotations

import pytest

from langgrasp.datasets.synthetic import TEMPLATES
from langgrasp.runtime.intents import (
    DETECTOR_VERB,
    HELP_TEXT,
    IntentKind,
    detector_command,
    normalise,
    parse_intent,
    target_phrase,
)


@pytest.mark.parametrize(
    "line",
    [
        "pick the red mug",
        "um, pick up the red mug please",
        "Pick up the red mug.",
        "grab the red mug",
        "could you please grab the red mug for me?",
        "hey robot, get me the red mug",
        "uh take the red mug",
        "pick up a red mug",
        "pick red mug",
        "pick the red mug up",
        "I'd like you to fetch the red mug, thanks",
        "PICK   THE  RED   MUG!!!",
    ],
)
def test_pick_wordings_reach_the_same_target_phrase(line):
    intent = parse_intent(line)
    assert intent.kind is IntentKind.PICK
    assert intent.target == "the red mug"
    assert intent.detector_command == "pick up the red mug"
    assert intent.text == line


def test_detector_command_uses_a_training_wording():
    # Every instruction family has a "pick up the ..." wording; the detector sees that one.
    assert DETECTOR_VERB == "pick up"
    for family, wordings in TEMPLATES.items():
        assert any(w.startswith(DETECTOR_VERB + " the ") for w in wordings), family
    assert detector_command("the mug next to the box") == "pick up the mug next to the box"


@pytest.mark.parametrize(
    ("line", "target"),
    [
        ("pick up the mug by the handle", "the mug by the handle"),
        ("grab the object closest to the left", "the object closest to the left"),
        ("get the blue box next to the ball please", "the blue box next to the ball"),
        ("take the tool on the right", "the tool on the right"),
    ],
)
def test_structured_targets_are_kept(line, target):
    intent = parse_intent(line)
    assert intent.kind is IntentKind.PICK
    assert intent.target == target


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("yes", IntentKind.CONFIRM),
        ("go", IntentKind.CONFIRM),
        ("do it", IntentKind.CONFIRM),
        ("Yes, please.", IntentKind.CONFIRM),
        ("confirm", IntentKind.CONFIRM),
        ("next", IntentKind.NEXT),
        ("next one", IntentKind.NEXT),
        ("another", IntentKind.NEXT),
        ("um, another one please", IntentKind.NEXT),
        ("stop", IntentKind.STOP),
        ("halt", IntentKind.STOP),
        ("abort", IntentKind.STOP),
        ("STOP!", IntentKind.STOP),
        ("no no stop it", IntentKind.STOP),
        ("home", IntentKind.HOME),
        ("go home", IntentKind.HOME),
        ("open", IntentKind.OPEN),
        ("open the gripper", IntentKind.OPEN),
        ("activate", IntentKind.ACTIVATE),
        ("activate gripper", IntentKind.ACTIVATE),
        ("Please activate the gripper.", IntentKind.ACTIVATE),
        ("status", IntentKind.STATUS),
        ("help", IntentKind.HELP),
        ("", IntentKind.EMPTY),
        ("um uh", IntentKind.EMPTY),
        ("sing a song", IntentKind.UNKNOWN),
    ],
)
def test_short_commands(line, kind):
    assert parse_intent(line).kind is kind


def test_stop_wins_over_anything_else_in_the_line():
    assert parse_intent("pick the red mug, no, stop").kind is IntentKind.STOP
    assert parse_intent("abort the pick").kind is IntentKind.STOP


def test_pick_without_an_object_has_no_target():
    for line in ("pick it up", "grab", "pick up"):
        intent = parse_intent(line)
        assert intent.kind is IntentKind.PICK
        assert intent.target is None
        assert intent.detector_command is None


def test_normalise_removes_fillers_and_punctuation():
    assert normalise("Um,  could you PLEASE pick up the red mug?") == "pick up the red mug"
    assert normalise("the mug's handle") == "the mug's handle"


def test_target_phrase_adds_the_article():
    assert target_phrase(" red mug") == "the red mug"
    assert target_phrase("a ball") == "the ball"
    assert target_phrase("it") is None


def test_intent_to_dict_is_json_ready():
    import json

    data = parse_intent("grab the green ball").to_dict()
    assert json.loads(json.dumps(data)) == {
        "kind": "pick",
        "text": "grab the green ball",
        "target": "the green ball",
        "detector_command": "pick up the green ball",
    }


def test_help_text_names_the_activate_command():
    assert "'activate'" in HELP_TEXT and "open and close fully" in HELP_TEXT
