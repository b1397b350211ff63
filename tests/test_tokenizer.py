"""The torch-free CLIP tokenizer gives the training side's (open_clip's) token ids exactly."""

from __future__ import annotations

import gzip
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from langgrasp.errors import InputError, TruncationWarning
from langgrasp.runtime.tokenizer import (
    MERGE_COUNT,
    VOCAB_FILENAME,
    VOCAB_SIZE,
    ClipTokenizer,
    find_vocab_file,
)

ROOT = Path(__file__).resolve().parents[1]
CONTEXT_LENGTHS = (77, 32)  # lggd-rn50 and lggd-tiny
PROMPT_COUNT = 1200
SEED = 20240611

WORDS = [
    "pick",
    "the",
    "grab",
    "mug",
    "red",
    "blue",
    "box",
    "handle",
    "left",
    "of",
    "bottle",
    "apple",
    "near",
    "cup",
    "small",
    "green",
    "banana",
    "on",
    "table",
    "please",
    "and",
]
CAPITALISED = ["Pick", "THE", "Red", "MUG", "GrAb", "Coca-Cola", "iPhone", "McDonald's", "OK"]
PUNCTUATION = [
    ",",
    ".",
    "!",
    "?",
    "!!!",
    "...",
    ";",
    ":",
    "-",
    "--",
    "(",
    ")",
    '"',
    "'",
    "/",
    "#",
    "@",
    "$",
    "%",
    "*",
    "_",
    "[x]",
    "{}",
    "<>",
    "~",
    "`",
    "\\",
    "|",
    "+",
    "=",
]
CONTRACTIONS = ["it's", "don't", "IT'S", "we'll", "you're", "i'm", "they've", "he'd", "can't"]
ACCENTED = [
    "café",
    "crème",
    "naïve",
    "Ångström",
    "Straße",
    "Ærø",
    "jalapeño",
    "façade",
    "İstanbul",
    "ΣΊΣΥΦΟΣ",
    "Москва",
    "Łódź",
    "e\u0301",
    "ﬁsh",
    "ＲＥＤ",
]
CJK = ["红色的杯子", "コップ", "컵을 집어", "把瓶子拿起来", "りんご", "漢字"]
EMOJI = ["🍎", "☕", "👍🏽", "🇩🇪", "👨\u200d👩\u200d👧", "❤️", "🤖", "✂"]
NUMBERS = ["3", "12.5cm", "1/2", "1,000", "2nd", "42", "3.14159", "²", "٣", "Ⅻ", "0x1F", "-7"]
HTML = [
    "&amp;",
    "&lt;b&gt;",
    "&#39;",
    "&nbsp;",
    "&amp;amp;",
    "&quot;mug&quot;",
    "&#x27;",
    "&eacute;",
    "&lt;end_of_text&gt;",
    "&copy;",
]
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\u3000", "\xa0", "   \t  "]
SPECIAL = ["<end_of_text>", "<start_of_text>", "<ſtart_of_text>", "'S", "'ſ", "\u200b", "\x00"]


def _mojibake(word: str) -> str:
    """UTF-8 bytes read as Windows-1252 (or Latin-1 where 1252 has holes), as ftfy repairs."""
    data = word.encode("utf-8")
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


FRAGMENTS = [
    WORDS,
    CAPITALISED,
    PUNCTUATION,
    CONTRACTIONS,
    ACCENTED,
    CJK,
    EMOJI,
    NUMBERS,
    HTML,
    SPECIAL,
    [_mojibake(word) for word in [*ACCENTED, *CJK, *EMOJI, "“quoted”", "naïve café"]],
]


def make_prompts(count: int, seed: int) -> list[str]:
    """Deterministic commands mixing every kind of fragment; about 1 in 8 is over-long."""
    rng = random.Random(seed)
    prompts = []
    for index in range(count):
        size = rng.randint(30, 90) if index % 8 == 0 else rng.randint(1, 12)
        parts = [rng.choice(WORDS)]  # at least one real word, so the command is never empty
        for _ in range(size):
            parts.append(rng.choice(rng.choice(FRAGMENTS)))
        rng.shuffle(parts)
        glue = [rng.choice(WHITESPACE) if rng.random() < 0.3 else " " for _ in parts]
        text = "".join(part + sep for part, sep in zip(parts, glue, strict=True))
        prompts.append(rng.choice(WHITESPACE) + text if rng.random() < 0.2 else text)
    return prompts


PROMPTS = make_prompts(PROMPT_COUNT, SEED)


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer(find_vocab_file())


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    open_clip = pytest.importorskip("open_clip")
    return open_clip.get_tokenizer("RN50")


def _record(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [w for w in caught if issubclass(w.category, TruncationWarning)]


def test_prompts_cover_truncation_and_fixups(open_clip_tokenizer):
    lengths = [len(open_clip_tokenizer.encode(p)) + 2 for p in PROMPTS]
    assert sum(n > 77 for n in lengths) >= 20 and sum(n <= 32 for n in lengths) >= 500
    assert any("Ã" in p for p in PROMPTS) and any("&amp;" in p for p in PROMPTS)
    assert len(set(PROMPTS)) > 0.95 * len(PROMPTS)


@pytest.mark.parametrize("context_length", CONTEXT_LENGTHS)
def test_same_ids_as_training_tokenize(tokenizer, open_clip_tokenizer, context_length):
    training = pytest.importorskip("langgrasp.detector.model")
    expected, _ = _record(lambda: training.tokenize(PROMPTS, context_length))
    ours, our_warnings = _record(lambda: tokenizer.encode(PROMPTS, context_length))
    assert ours.dtype == np.int64 and ours.shape == (PROMPT_COUNT, context_length)
    np.testing.assert_array_equal(ours, expected.numpy())
    # One warning per command that open_clip really truncates. (The training side counts
    # tokens after a whitespace collapse that can split mojibake, so its warnings may differ.)
    lengths = [len(open_clip_tokenizer.encode(p)) + 2 for p in PROMPTS]
    assert len(our_warnings) == sum(n > context_length for n in lengths) > 0


@pytest.mark.parametrize("context_length", CONTEXT_LENGTHS)
def test_same_ids_as_open_clip(tokenizer, open_clip_tokenizer, context_length):
    expected = open_clip_tokenizer(PROMPTS, context_length=context_length).numpy()
    ours, _ = _record(lambda: tokenizer.encode(PROMPTS, context_length))
    np.testing.assert_array_equal(ours, expected)
    assert tokenizer.vocab_size == VOCAB_SIZE == open_clip_tokenizer.vocab_size
    assert (tokenizer.start_id, tokenizer.end_id) == (
        open_clip_tokenizer.sot_token_id,
        open_clip_tokenizer.eot_token_id,
    )


def test_truncation_warns_per_command_and_keeps_end_token(tokenizer, open_clip_tokenizer):
    length = 32
    for prompt in PROMPTS[:400]:
        tokens, caught = _record(lambda p=prompt: tokenizer.encode(p, length))
        too_long = len(open_clip_tokenizer.encode(prompt)) + 2 > length
        assert len(caught) == int(too_long), prompt
        if too_long:
            message = str(caught[0].message)
            assert f"context length {length}" in message
            assert repr(prompt)[:20] in message
            assert tokens[0, -1] == tokenizer.end_id and np.all(tokens[0] != 0)
            assert caught[0].filename == __file__  # points at the caller


def test_single_command_bytes_and_batch_agree(tokenizer):
    command = "Pick the café mug &amp; the 🍎"
    single = tokenizer.encode(command, 77)
    assert single.shape == (1, 77)
    np.testing.assert_array_equal(tokenizer.encode(command.encode("utf-8"), 77), single)
    batch = tokenizer.encode(("ball", command), 77)
    np.testing.assert_array_equal(batch[1:], single)
    np.testing.assert_array_equal(tokenizer.encode([command], np.int64(77)), single)


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        (None, "str or a sequence"),
        (42, "str or a sequence"),
        ([], "no command"),
        (["mug", None], "must be a string"),
        ([b"\xff\xfe mug"], "not valid UTF-8"),
        (b"caf\xe9", "not valid UTF-8"),
        ("   \t\n", "empty"),
        ("&nbsp;&nbsp;", "no words once cleaned"),
    ],
)
def test_bad_commands_are_rejected(tokenizer, texts, match):
    with pytest.raises(InputError, match=match):
        tokenizer.encode(texts, 77)


@pytest.mark.parametrize("context_length", [2, 0, True, 77.0, "77", None])
def test_bad_context_length_is_rejected(tokenizer, context_length):
    with pytest.raises(InputError, match="context_length"):
        tokenizer.encode("pick the mug", context_length)


def test_warning_class_is_shared_with_training_side():
    assert issubclass(TruncationWarning, UserWarning)
    training = pytest.importorskip("langgrasp.detector.model")
    assert training.TruncationWarning is TruncationWarning


def test_vocab_file_is_open_clips_and_works_when_copied(tmp_path, tokenizer):
    open_clip_tokenizer = pytest.importorskip("open_clip.tokenizer")
    found = find_vocab_file()
    assert found.name == VOCAB_FILENAME
    assert found.samefile(open_clip_tokenizer.default_bpe())
    bundled = shutil.copy(found, tmp_path / VOCAB_FILENAME)  # as an exported bundle carries it
    copy = ClipTokenizer(str(bundled))
    ours, _ = _record(lambda: copy.encode(PROMPTS[:50], 77))
    np.testing.assert_array_equal(ours, _record(lambda: tokenizer.encode(PROMPTS[:50], 77))[0])


def test_bad_vocab_files_are_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClipTokenizer(tmp_path / "missing.txt.gz")
    plain = tmp_path / "plain.txt.gz"
    plain.write_text("#version: 0.2\ni n\n")
    with pytest.raises(InputError, match="gzip"):
        ClipTokenizer(plain)
    short = tmp_path / "short.txt.gz"
    short.write_bytes(gzip.compress(b"#version: 0.2\ni n\nt h"))
    with pytest.raises(InputError, match=f"expected {MERGE_COUNT}"):
        ClipTokenizer(short)
    malformed = tmp_path / "malformed.txt.gz"
    malformed.write_bytes(gzip.compress(b"#version: 0.2\ni n\nthree symbols here\n"))
    with pytest.raises(InputError, match="line 3"):
        ClipTokenizer(malformed)


def test_fresh_interpreter_loads_neither_torch_nor_open_clip():
    code = "\n".join(
        [
            "import sys",
            "from langgrasp.runtime.tokenizer import ClipTokenizer, find_vocab_file",
            "tokens = ClipTokenizer(find_vocab_file()).encode(['pick the red mug', 'ball'], 32)",
            "assert tokens.shape == (2, 32), tokens.shape",
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'open_clip')))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
