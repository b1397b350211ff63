"""A small, thread-safe Modbus client link shared by the gripper and arm backends.

Three transports, one code path (shared/research/runtime.md 2.4, 3.1):

* ``tcp``: Modbus TCP (MBAP framing), e.g. a UR controller on port 502 or a Modbus TCP gateway.
* ``rtu-over-tcp``: RTU frames on a TCP socket, e.g. the UR tool RS-485 tunnel (RS485 URCap,
  port 54321) in front of a Robotiq gripper; also what the simulators speak for grippers.
* ``rtu``: Modbus RTU on a serial port (USB-RS485 adapter), needs pyserial.

pymodbus is pinned to one minor release (its minor releases change the API); every call uses
keyword arguments after the address and ``device_id=`` (pymodbus >= 3.10).

Errors: a lost connection or a missing answer raises ``DeviceDisconnectedError`` or
``DeviceTimeoutError`` (the link is then marked disconnected; ``reconnect`` retries with
exponential backoff); a Modbus exception response, any other pymodbus error and a short answer
raise ``DeviceError`` naming what was wrong. Every write, and optionally every read, is reported to
``on_io`` for the audit log *after* it was sent (with ``ok`` and ``error``), so a slow or failing
audit log never delays or blocks a write such as a stop command.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langgrasp.errors import InputError
from langgrasp.runtime.devices import (
    DeviceDisconnectedError,
    DeviceError,
    DeviceTimeoutError,
    retry_with_backoff,
)

log = logging.getLogger(__name__)

# pymodbus logs every refused connection and exception frame at ERROR with hex dumps; this module
# turns those conditions into DeviceError messages of its own, so keep pymodbus quiet unless the
# user set its level explicitly (`langgrasp -v` sets the root logger, not this one).
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

TRANSPORTS = ("tcp", "rtu-over-tcp", "rtu")

MODBUS_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
"""Modbus exception codes (Modbus Application Protocol Specification V1.1b3, section 7)."""

MAX_REGISTERS_PER_READ = 125  # Modbus spec: FC03/FC04 quantity 1-125
MAX_REGISTERS_PER_WRITE = 123  # Modbus spec: FC16 quantity 1-123
DEVICE_ID_MIN, DEVICE_ID_MAX = 1, 247
"""Valid unit addresses (Modbus over Serial Line V1.02, 2.2); 0 is broadcast: nobody answers."""
TCP_DIRECT_UNIT_ID = 255
"""Unit id 0xFF addresses the TCP server itself (Modbus Messaging on TCP/IP Implementation Guide
V1.0b, 4.4.2); common for UR controllers, valid on ``tcp`` only."""

IoHook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ModbusConfig:
    """Where a Modbus device is and how to talk to it.

    Attributes:
        transport: One of ``TRANSPORTS``.
        host: IP address or host name (``tcp`` and ``rtu-over-tcp``).
        port: TCP port: 502 for Modbus TCP, 54321 for the UR RS485 URCap tunnel.
        serial_port: Serial device (``rtu``), e.g. ``/dev/ttyUSB0``.
        baudrate: Serial speed (``rtu``); Robotiq grippers use 115200 8N1.
        device_id: Modbus unit / device id, 1-247 (Robotiq: 9; UR controller: any; 255 is also
            accepted on ``tcp``). 0 is broadcast and is refused: nothing would answer.
        timeout_s: Seconds to wait for one answer.
        retries: Extra attempts of a request that got no answer, before giving up.
        reconnect_first_s: First pause between reconnection attempts; doubles each attempt.
        reconnect_max_s: Longest pause between reconnection attempts.
    """

    transport: str = "tcp"
    host: str = "127.0.0.1"
    port: int = 502
    serial_port: str = "/dev/ttyUSB0"
    baudrate: int = 115200
    device_id: int = 1
    timeout_s: float = 0.5
    retries: int = 1
    reconnect_first_s: float = 0.1
    reconnect_max_s: float = 2.0

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise InputError(
                f"unknown Modbus transport {self.transport!r}; use one of {', '.join(TRANSPORTS)}"
            )
        if not 0 < self.port < 65536:
            raise InputError(f"Modbus port must be 1-65535, got {self.port}")
        tcp_direct = self.transport == "tcp" and self.device_id == TCP_DIRECT_UNIT_ID
        if (
            isinstance(self.device_id, bool)
            or not isinstance(self.device_id, int)
            or not (DEVICE_ID_MIN <= self.device_id <= DEVICE_ID_MAX or tcp_direct)
        ):
            raise InputError(
                f"Modbus device_id must be {DEVICE_ID_MIN}-{DEVICE_ID_MAX} (255 also on tcp), got "
                f"{self.device_id!r}; 0 is broadcast and never answers (Robotiq: 9, UR: 1)"
            )
        if self.timeout_s <= 0 or self.retries < 0:
            raise InputError("Modbus timeout_s must be > 0 and retries >= 0")
        if not 0 < self.reconnect_first_s <= self.reconnect_max_s:
            raise InputError("need 0 < reconnect_first_s <= reconnect_max_s")

    def describe(self) -> str:
        """Where the device is, for messages: ``"modbus tcp 10.0.0.2:502 id 1"``."""
        where = (
            f"{self.serial_port} @ {self.baudrate} baud"
            if self.transport == "rtu"
            else f"{self.host}:{self.port}"
        )
        return f"modbus {self.transport} {where} id {self.device_id}"


class ModbusLink:
    """A connection to one Modbus device (one unit id), safe to share between threads.

    Requests are serialised by a lock, so a ``stop`` sent from another thread waits at most one
    round trip. ``name`` labels audit records.
    """

    def __init__(self, config: ModbusConfig, name: str = "device", on_io: IoHook | None = None):
        self.config = config
        self.name = name
        self.on_io = on_io
        self.audit_reads = False
        self._client: Any = None
        self._lock = threading.RLock()
        self._connected = False

    @property
    def connected(self) -> bool:
        """True after a successful ``connect`` until a failure or ``close``."""
        return self._connected

    def connect(self) -> None:
        """Open the connection.

        Raises:
            DeviceDisconnectedError: nothing answers at the configured address.
        """
        with self._lock:
            self._close_client()
            self._client = self._make_client()
            try:
                ok = self._client.connect()
            except Exception as exc:  # pyserial and socket errors differ by platform
                ok = False
                log.debug("connect to %s failed: %s", self.config.describe(), exc)
            if not ok:
                self._close_client()
                raise DeviceDisconnectedError(
                    f"{self.name}: cannot connect to {self.config.describe()}; check the address, "
                    "the cable and that the device (or `langgrasp devices sim`) is running"
                )
            self._connected = True

    def reconnect(self, attempts: int = 5, sleep: Callable[[float], None] = time.sleep) -> None:
        """Try ``connect`` up to ``attempts`` times with exponential backoff.

        Raises:
            DeviceDisconnectedError: every attempt failed (the message counts them).
        """
        c = self.config
        attempt, error = retry_with_backoff(
            self.connect, attempts, c.reconnect_first_s, c.reconnect_max_s, sleep
        )
        if error is not None:
            raise DeviceDisconnectedError(
                f"{self.name}: {c.describe()} still unreachable after {attempts} attempts"
            )
        log.info("%s: reconnected on attempt %d", self.name, attempt)

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        with self._lock:
            self._close_client()

    def read(self, address: int, count: int) -> list[int]:
        """Read ``count`` holding registers (FC03) from ``address``; values 0-65535."""
        if not 1 <= count <= MAX_REGISTERS_PER_READ:
            raise InputError(f"can read 1-{MAX_REGISTERS_PER_READ} registers, asked {count}")
        response = self._request(
            "read", address, lambda c: c.read_holding_registers(address, count=count, **self._id())
        )
        registers = list(getattr(response, "registers", None) or [])
        if len(registers) < count:
            raise DeviceError(
                f"{self.name}: {self.config.describe()} answered {len(registers)} register(s) "
                f"to a read of {count} at register {address}; check the register map and unit id"
            )
        registers = registers[:count]
        if self.audit_reads:
            self._report("read", address, registers)
        return registers

    def write(self, address: int, values: Sequence[int]) -> None:
        """Write holding registers (FC16) from ``address``; values must be 0-65535.

        The write is sent first and reported to ``on_io`` afterwards (``ok`` and, on failure,
        ``error``): a stop command never waits on the audit log, and a failing audit log (full
        disk) only logs a warning.
        """
        values = [int(v) for v in values]
        if not 1 <= len(values) <= MAX_REGISTERS_PER_WRITE:
            raise InputError(f"can write 1-{MAX_REGISTERS_PER_WRITE} registers, got {len(values)}")
        bad = [v for v in values if not 0 <= v <= 0xFFFF]
        if bad:
            raise InputError(f"register values must be 0-65535, got {bad[:3]}")
        try:
            self._request(
                "write", address, lambda c: c.write_registers(address, values, **self._id())
            )
        except Exception as err:
            self._report("write", address, values, ok=False, error=str(err))
            raise
        self._report("write", address, values, ok=True)

    def _id(self) -> dict[str, int]:
        return {"device_id": self.config.device_id}

    def _report(self, op: str, address: int, values: list[int], **extra: Any) -> None:
        """Tell ``on_io``; its failure (e.g. a full disk under the audit log) is only logged."""
        if self.on_io is None:
            return
        try:
            self.on_io(
                {"device": self.name, "op": op, "address": address, "values": values, **extra}
            )
        except Exception as err:  # the audit must never prevent or fail a device write
            log.warning(
                "%s: could not record the %s at register %d: %s", self.name, op, address, err
            )

    def _request(self, op: str, address: int, call: Callable[[Any], Any]) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        with self._lock:
            if not self._connected or self._client is None:
                raise DeviceDisconnectedError(
                    f"{self.name}: not connected to {self.config.describe()} "
                    f"({op} at register {address})"
                )
            try:
                response = call(self._client)
            except ModbusIOException as exc:
                self._mark_lost()
                raise DeviceTimeoutError(
                    f"{self.name}: no answer from {self.config.describe()} within "
                    f"{self.config.timeout_s} s ({op} at register {address}): {exc}"
                ) from exc
            except (ConnectionException, OSError) as exc:
                self._mark_lost()
                raise DeviceDisconnectedError(
                    f"{self.name}: connection to {self.config.describe()} lost "
                    f"({op} at register {address})"
                ) from exc
            except ModbusException as exc:  # any other pymodbus error: a garbled or odd answer
                self._mark_lost()  # the stream may be out of step; start on a fresh connection
                raise DeviceError(
                    f"{self.name}: bad answer from {self.config.describe()} ({op} at register "
                    f"{address}): {exc}; the link will reconnect; check the transport and unit id"
                ) from exc
        if response is None or not hasattr(response, "isError"):
            raise DeviceError(
                f"{self.name}: no usable answer from {self.config.describe()} ({op} at register "
                f"{address}); check the transport and unit id"
            )
        if response.isError():
            code = getattr(response, "exception_code", 0)
            meaning = MODBUS_EXCEPTIONS.get(code, "unknown exception")
            raise DeviceError(
                f"{self.name}: {self.config.describe()} refused {op} at register {address}: "
                f"Modbus exception {code} ({meaning}); check the register map and unit id"
            )
        return response

    def _mark_lost(self) -> None:
        self._connected = False
        self._close_client()

    def _close_client(self) -> None:
        self._connected = False
        if self._client is not None:
            try:
                self._client.close()
            except Exception as exc:  # closing a dead socket may fail; nothing to do
                log.debug("closing %s: %s", self.config.describe(), exc)
            self._client = None

    def _make_client(self) -> Any:
        from pymodbus import FramerType
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient

        c = self.config
        common = {"timeout": c.timeout_s, "retries": c.retries}
        if c.transport == "rtu":
            return ModbusSerialClient(
                c.serial_port, baudrate=c.baudrate, bytesize=8, parity="N", stopbits=1, **common
            )
        framer = FramerType.RTU if c.transport == "rtu-over-tcp" else FramerType.SOCKET
        return ModbusTcpClient(c.host, port=c.port, framer=framer, **common)


def to_signed16(value: int) -> int:
    """Register value 0-65535 as a two's-complement int16."""
    return value - 0x10000 if value >= 0x8000 else value


def from_signed16(value: int) -> int:
    """An int in [-32768, 32767] as its two's-complement register value (0-65535)."""
    if not -0x8000 <= value <= 0x7FFF:
        raise InputError(f"{value} does not fit a signed 16-bit register")
    return value & 0xFFFF
