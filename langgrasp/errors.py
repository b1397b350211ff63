"""Errors that carry a message a user can act on.

The CLI prints these as one ``error:`` line instead of a stack trace; anything else is a bug.
"""


class LanggraspError(Exception):
    """Base class of errors caused by bad input (files, commands, frames, names)."""


class UnknownModelError(LanggraspError, KeyError):
    """A model config name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputError(LanggraspError, ValueError):
    """An image, tensor or command that has the wrong type, shape, dtype or content."""


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` if it is an int (not a bool) >= ``minimum``; else an :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class TruncationWarning(UserWarning):
    """A command had more tokens than the context length and was truncated (end-of-text kept).

    Issued by both tokenizers, ``langgrasp.detector.model.tokenize`` (training side, torch) and
    ``langgrasp.runtime.tokenizer.ClipTokenizer`` (torch-free), so one filter covers both.
    """
