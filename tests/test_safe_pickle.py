import os
import pickle
import shlex

import pytest

from langgrasp.datasets.safe_pickle import UnsafePickleError, safe_load, safe_loads
from langgrasp.errors import InputError

PLAIN = [
    "Grab sunglasses on its eyewear.",
    ["0a1b_0", "0a1b_12", "ffee_3"],
    ("a caption", ["mug", "hairbrush"]),
    {"k": [1, 2.5, None, True]},
    b"\x00\xffbytes",
    -(10**30),
    0.1762,
]


@pytest.mark.parametrize("value", PLAIN, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("protocol", [3, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_plain_data_round_trips(value, protocol):
    assert safe_loads(pickle.dumps(value, protocol=protocol)) == value


def test_protocol_0_str_list_tuple(tmp_path):
    value = ["a", ("b", 1), {"c": 2.0}]
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(value, protocol=0))
    assert safe_load(path) == value


class _System:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Open:
    """Unpickling this calls open(path, "w"), creating the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_os_system_pickle_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_System(f"touch {shlex.quote(str(marker))}"), protocol=protocol)
    # The payload really is harmful: the standard unpickler runs it (in a place we control).
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_System(f"touch {shlex.quote(str(probe))}"), protocol=protocol))
    assert probe.exists()

    with pytest.raises(UnsafePickleError) as info:
        safe_loads(payload)
    assert not marker.exists()
    message = str(info.value)
    assert "refused" in message and "system" in message and os.name in message  # posix.system
    assert isinstance(info.value, InputError)


def test_refused_inside_plain_container_and_from_file(tmp_path):
    marker = tmp_path / "created.txt"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(["fine", {"x": _Open(str(marker))}]))
    with pytest.raises(UnsafePickleError, match=r"io\.open"):
        safe_load(path)
    assert not marker.exists()


def test_handwritten_inst_opcode_is_refused(tmp_path):
    marker = tmp_path / "inst"
    command = f"touch {marker}".encode()
    # Protocol 0: MARK, STRING 'command', INST os system, STOP (calls os.system(command)).
    payload = b"(S'" + command + b"'\nios\nsystem\n."
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        safe_loads(payload)
    assert not marker.exists()


def test_persistent_id_is_refused():
    payload = b"Pfoo\n."  # PERSID opcode
    with pytest.raises(pickle.UnpicklingError):
        safe_loads(payload)


def test_truncated_and_garbage_bytes_raise_unpickling_errors():
    good = pickle.dumps(["a", "b"])
    with pytest.raises((pickle.UnpicklingError, EOFError)):
        safe_loads(good[:-3])
    with pytest.raises((pickle.UnpicklingError, EOFError, ValueError)):
        safe_loads(b"not a pickle at all")


# Corrupt pickles found by mutating valid ones: the C unpickler fails on them with TypeError,
# AttributeError, IndexError or OverflowError, which a loader catching UnpicklingError would miss.
CORRUPT = [
    b"(Va\np0\n(lo1\nVb\np2\naVc\np3\natp4\n.",  # TypeError: 'str' object is not callable
    b"(Va\np0\n(lp1\nNVb\np2\nNVc\np3\natp4\n.",  # AttributeError: None has no append
    b"\x80\x04\x95\x13\x00\x00\x00\x00\x00\x00\x00\x8c\x01a\x94]\x94(\x8c\x01b\x96\x94\x8c\x01c"
    b"\x94e\x86\x94.",  # OverflowError: BYTEARRAY8 length
    b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x90@\x00\x00\x00\x00\x00\x00\x00}"
    b"\x94\x8c\x01k\x94C\x01x\x94se.",  # AttributeError: list has no add
]


@pytest.mark.parametrize("data", CORRUPT)
def test_corrupt_pickle_raises_unpickling_error(tmp_path, data):
    with pytest.raises(pickle.UnpicklingError, match="not a valid pickle"):
        safe_loads(data)
    path = tmp_path / "bad.pkl"
    path.write_bytes(data)
    with pytest.raises(pickle.UnpicklingError, match=r"bad\.pkl"):
        safe_load(path)
