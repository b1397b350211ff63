"""Load pickles written by strangers without running their code.

Grasp-Anything(++) ships its instructions (``.pkl``), scene descriptions (``.pkl``) and split
lists (``.obj``) as Python pickles (shared/research/datasets.md 2.2, 2.4, 2.5). A pickle can name
any importable callable and have the loader call it (``os.system`` through ``__reduce__``), so
``pickle.load`` on a downloaded file runs whatever its author wanted. Every path by which a pickle
reaches a callable (the GLOBAL, STACK_GLOBAL, INST, OBJ and EXT opcodes) goes through
``Unpickler.find_class``; :class:`SafeUnpickler` refuses every class there, so only the built-in
data opcodes remain: ``None``, bool, int, float, str, list, tuple and dict in every protocol,
bytes from protocol 3 (Python 3's default is 4 or 5), set / frozenset from protocol 4 and
bytearray from protocol 5. That covers what the files above contain. Persistent ids are refused
too (the base class raises for them).

This module is torch-free and needs only the standard library.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from langgrasp.errors import InputError


class UnsafePickleError(InputError):
    """A pickle asked for a class or function; nothing was imported or called."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that loads only built-in data and refuses every class or function."""

    def find_class(self, module: str, name: str) -> object:
        """Refuse ``module.name``: raise :class:`UnsafePickleError` naming it."""
        raise UnsafePickleError(
            f"refused to load {module}.{name}: this pickle asks for a class or function, and "
            "only plain data (str, bytes, numbers, list, tuple, dict, set) is accepted from "
            "dataset files; re-save the file with plain Python types if you trust it"
        )


def _load(file: io.BufferedIOBase, where: str) -> object:
    """Run :class:`SafeUnpickler` on ``file``; every decoding failure becomes UnpicklingError.

    Corrupt pickles fail in many ways besides ``UnpicklingError`` (an opcode applied to the wrong
    type raises ``TypeError`` or ``AttributeError``, a bogus length ``OverflowError`` or
    ``MemoryError``, ...); callers that skip a bad sample must be able to catch all of them.
    """
    try:
        return SafeUnpickler(file).load()
    except (UnsafePickleError, pickle.UnpicklingError, EOFError):
        raise
    except Exception as err:  # any other failure means corrupt bytes, not a bug of ours
        raise pickle.UnpicklingError(
            f"{where} is not a valid pickle ({type(err).__name__}: {err})"
        ) from err


def safe_loads(data: bytes) -> object:
    """Unpickle ``data`` with :class:`SafeUnpickler`.

    Raises:
        UnsafePickleError: The pickle refers to a class or function (refused, not executed).
        pickle.UnpicklingError, EOFError: The bytes are not a valid pickle.
    """
    return _load(io.BytesIO(data), "the data")


def safe_load(path: str | Path) -> object:
    """Unpickle the file at ``path`` with :class:`SafeUnpickler` (see :func:`safe_loads`).

    Raises:
        OSError: The file cannot be read.
    """
    with open(path, "rb") as f:
        return _load(f, str(path))
