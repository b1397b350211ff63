"""CLIP BPE tokenisation without torch: the same token ids as open_clip's tokenizer.

``ClipTokenizer(vocab_file).encode(commands, context_length)`` returns (B, L) int64 ids equal
to ``langgrasp.detector.model.tokenize`` (training side), which is open_clip 3.3's default
``SimpleTokenizer`` with ``clean="lower"``; ``open_clip.get_tokenizer("RN50")`` builds the same
one, since the RN50 config has no tokenizer options. The steps, as open_clip performs them
(open_clip/tokenizer.py, originally github.com/openai/CLIP, MIT licence):

1. clean: ``ftfy.fix_text``, HTML-unescape twice, collapse whitespace runs to one space,
   strip, lower-case;
2. split into pre-tokens with the CLIP pattern (special tokens, English contractions, letter
   runs, single digits, runs of other non-space characters);
3. map each pre-token's UTF-8 bytes to printable characters (GPT-2 byte-to-unicode table), mark
   the end of the word with ``</w>`` and apply the BPE merges, lowest rank first;
4. wrap in start/end-of-text, truncate to L keeping the end token last, zero-pad to L.

The merges file is open_clip's ``bpe_simple_vocab_16e6.txt.gz``; an exported bundle carries a
copy (``find_vocab_file`` locates it at export time), so the runtime never needs open_clip.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import math
import warnings
import zlib
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from os import PathLike
from pathlib import Path

import ftfy
import numpy as np
import regex

from langgrasp.errors import InputError, TruncationWarning

VOCAB_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
"""Name of the CLIP merges file in the open_clip package and in exported bundles."""

BYTE_COUNT = 256
"""Byte-level BPE: every byte value is a base symbol (and again with the end-of-word mark)."""

MERGE_COUNT = 49152 - BYTE_COUNT - 2
"""Merges CLIP uses: the first 48,894 lines after the header (open_clip ``SimpleTokenizer``)."""

START_TOKEN = "<start_of_text>"
END_TOKEN = "<end_of_text>"
WORD_END = "</w>"
"""Suffix marking the last symbol of a word (pre-token) in the CLIP vocabulary."""

VOCAB_SIZE = 2 * BYTE_COUNT + MERGE_COUNT + 2
"""49,408 ids: bytes, bytes + ``</w>``, merges, then start (49,406) and end (49,407)."""

MIN_CONTEXT_LENGTH = 3
"""Start, at least one token of the command, end (same bound as the training-side tokenize)."""

WORD_CACHE_SIZE = 1 << 16
"""Pre-tokens whose BPE ids are kept (LRU); robot commands repeat a small vocabulary."""

QUOTE_CHARS = 80
"""Longest part of a command quoted in warnings and errors."""

# CLIP's pre-tokeniser (open_clip SimpleTokenizer.pat), after the special tokens.
_PRETOKEN_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def find_vocab_file() -> Path:
    """Path of the merges file shipped inside the installed open_clip package (export time).

    open_clip is located with ``importlib.util.find_spec`` and never imported (its
    ``__init__`` imports torch).

    Raises:
        FileNotFoundError: open_clip is not installed or its package lacks the file.
    """
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):  # a broken install or a half-imported module
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / VOCAB_FILENAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"open_clip's {VOCAB_FILENAME} was not found: install the train extra "
        "(open_clip) to export a model, or give the vocabulary file of an exported bundle"
    )


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) map to themselves; the
    remaining bytes (controls, space, soft hyphen, ...) map to code points 256, 257, ... in byte
    order, so that BPE symbols never contain whitespace or control characters. The dict's
    insertion order (printable bytes, then the others) is the order of the base token ids.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {byte: chr(byte) for byte in printable}
    shifted = [byte for byte in range(BYTE_COUNT) if byte not in table]
    for offset, byte in enumerate(shifted):
        table[byte] = chr(BYTE_COUNT + offset)
    return table  # in this order (printable bytes first): the order of the first 512 ids


def clean_text(text: str) -> str:
    """open_clip's "lower" cleaning: fix mojibake, unescape HTML twice, collapse spaces, lower."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class ClipTokenizer:
    """CLIP byte-level BPE tokenizer (OpenAI CLIP vocabulary), numpy only.

    Args:
        vocab_file: The gzip merges file, ``bpe_simple_vocab_16e6.txt.gz`` (from the model bundle,
            or ``find_vocab_file()`` where open_clip is installed).

    Attributes:
        vocab_size: 49,408.
        start_id: Id of ``<start_of_text>`` (49,406), first in every row.
        end_id: Id of ``<end_of_text>`` (49,407), last token of every command.

    Raises:
        FileNotFoundError: ``vocab_file`` does not exist.
        InputError: the file is not a gzip text file with enough two-symbol merge lines.
    """

    def __init__(self, vocab_file: str | PathLike[str]) -> None:
        self.vocab_file = Path(vocab_file)
        merges = _read_merges(self.vocab_file)
        self._byte_symbols = bytes_to_unicode()
        base = list(self._byte_symbols.values())
        # Id order as in CLIP: bytes, bytes + "</w>", one id per merge result, special tokens.
        vocab = [*base, *(symbol + WORD_END for symbol in base)]
        vocab += ["".join(pair) for pair in merges]
        vocab += [START_TOKEN, END_TOKEN]
        self._ids = {symbol: index for index, symbol in enumerate(vocab)}
        self._ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.vocab_size = len(vocab)
        self.start_id = self._ids[START_TOKEN]
        self.end_id = self._ids[END_TOKEN]
        specials = "|".join(regex.escape(token) for token in (START_TOKEN, END_TOKEN))
        # IGNORECASE as in CLIP: it matters for a few characters that case-fold onto ASCII.
        self._pattern = regex.compile(f"{specials}|{_PRETOKEN_PATTERN}", regex.IGNORECASE)
        self._word_ids = lru_cache(maxsize=WORD_CACHE_SIZE)(self._bpe_ids)

    def __repr__(self) -> str:
        return f"ClipTokenizer({str(self.vocab_file)!r})"

    def token_ids(self, command: str) -> list[int]:
        """BPE ids of one command after cleaning, without start/end tokens (may be empty)."""
        ids: list[int] = []
        for pretoken in self._pattern.findall(clean_text(command)):
            ids.extend(self._word_ids(pretoken))
        return ids

    def encode(self, texts: str | bytes | Sequence[str | bytes], context_length: int) -> np.ndarray:
        """Token ids for one command or a batch, as open_clip's tokenizer gives them.

        Args:
            texts: A command or a sequence of commands; ``bytes`` are decoded as UTF-8.
            context_length: L, the text encoder's sequence length (77 for lggd-rn50).

        Returns:
            (B, L) int64: start id, the command's ids, end id, then zeros. A command longer than
            L - 2 tokens is cut to L tokens with the end id last, and a ``TruncationWarning`` is
            issued naming the command and L.

        Raises:
            InputError: ``context_length`` is not an int >= 3; no command given; a command is
                not str/bytes, is not valid UTF-8, is blank, or has no tokens after cleaning
                (e.g. only ``&nbsp;``).
        """
        length = _check_context_length(context_length)
        commands = _as_commands(texts)
        tokens = np.zeros((len(commands), length), dtype=np.int64)
        for row, command in enumerate(commands):
            ids = self.token_ids(command)
            if not ids:
                raise InputError(
                    f"the command {_quote(command)} has no words once cleaned (HTML entities and "
                    "whitespace removed): say what to grasp, e.g. 'pick the red mug'"
                )
            ids = [self.start_id, *ids, self.end_id]
            if len(ids) > length:
                warnings.warn(
                    f"command {_quote(command)} has {len(ids) - 2} tokens, more than the "
                    f"{length - 2} that fit in context length {length}; it was truncated "
                    "(end-of-text kept)",
                    TruncationWarning,
                    stacklevel=2,
                )
                ids = [*ids[: length - 1], self.end_id]
            tokens[row, : len(ids)] = ids
        return tokens

    def _bpe_ids(self, pretoken: str) -> tuple[int, ...]:
        """Ids of one pre-token: special token, or byte symbols merged by rank (cached)."""
        if pretoken in (START_TOKEN, END_TOKEN):
            return (self._ids[pretoken],)
        chars = [self._byte_symbols[byte] for byte in pretoken.encode("utf-8")]
        symbols = [*chars[:-1], chars[-1] + WORD_END]
        while len(symbols) > 1:
            best = min(pairwise(symbols), key=lambda pair: self._ranks.get(pair, math.inf))
            if best not in self._ranks:
                break
            merged: list[str] = []
            index = 0
            while index < len(symbols):  # merge every occurrence, left to right
                if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == best:
                    merged.append(best[0] + best[1])
                    index += 2
                else:
                    merged.append(symbols[index])
                    index += 1
            symbols = merged
        return tuple(self._ids[symbol] for symbol in symbols)


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """The first ``MERGE_COUNT`` merge pairs of a CLIP merges file (after its header line)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"CLIP vocabulary {path} does not exist: use the {VOCAB_FILENAME} of the exported "
            "model bundle"
        )
    try:
        with gzip.open(path, "rb") as stream:
            lines = stream.read().decode("utf-8").split("\n")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        raise InputError(
            f"{path} is not a CLIP merges file (gzip-compressed UTF-8 text): {error}; "
            f"use the {VOCAB_FILENAME} of the exported model bundle"
        ) from error
    body = lines[1 : 1 + MERGE_COUNT]  # line 0 is a version header
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(body, start=2):
        symbols = line.split()
        if len(symbols) != 2:
            raise InputError(
                f"{path} is not the CLIP merges file: line {number} is {_quote(line)}, expected "
                f"two symbols; use the {VOCAB_FILENAME} of the exported model bundle"
            )
        merges.append((symbols[0], symbols[1]))
    if len(merges) < MERGE_COUNT:
        raise InputError(
            f"{path} is not the CLIP merges file: {len(merges)} merges after the header, expected "
            f"{MERGE_COUNT}; use the {VOCAB_FILENAME} of the exported model bundle"
        )
    return merges


def _check_context_length(context_length: object) -> int:
    if (
        isinstance(context_length, bool)
        or not isinstance(context_length, (int, np.integer))
        or context_length < MIN_CONTEXT_LENGTH
    ):
        raise InputError(
            f"context_length must be an int >= {MIN_CONTEXT_LENGTH} (start, a word, end), got "
            f"{_quote(context_length)}; use the model config's context_length"
        )
    return int(context_length)


def _as_commands(texts: object) -> list[str]:
    """Validated commands as str: bytes decoded as UTF-8, blank ones rejected."""
    if isinstance(texts, (str, bytes)):
        items: list[object] = [texts]
    elif isinstance(texts, Sequence):
        items = list(texts)
    else:
        raise InputError(
            f"commands must be a str or a sequence of str, got {type(texts).__name__}: "
            f"{_quote(texts)}"
        )
    if not items:
        raise InputError("no command given: expected a non-empty string such as 'pick the red mug'")
    return [command_text(item) for item in items]


def command_text(command: object) -> str:
    """One command as validated str: bytes decoded as UTF-8; non-text and blank rejected.

    Raises:
        InputError: Not str/bytes, not valid UTF-8, or empty / whitespace only.
    """
    if isinstance(command, bytes):
        try:
            command = command.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(
                f"the command {_quote(command)} is not valid UTF-8 ({error.reason} at byte "
                f"{error.start}): send the command as UTF-8 text"
            ) from error
    if not isinstance(command, str):
        raise InputError(
            f"a command must be a string, got {type(command).__name__}: {_quote(command)}"
        )
    if not command.strip():
        raise InputError("the command is empty: say what to grasp, e.g. 'pick the red mug'")
    return command


def _quote(value: object) -> str:
    """``repr`` of a command for a message, cut to ``QUOTE_CHARS`` characters."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else f"{text[: QUOTE_CHARS - 3]}..."
