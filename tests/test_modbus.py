"""ModbusLink against a real pymodbus server on 127.0.0.1 (runtime.sim.server.SimServer)."""

from __future__ import annotations

import threading

import pytest
from pymodbus.simulator import DataType, SimData, SimDevice

from langgrasp.errors import InputError
from langgrasp.runtime.devices import DeviceDisconnectedError, DeviceError, DeviceTimeoutError
from langgrasp.runtime.modbus import ModbusConfig, ModbusLink, from_signed16, to_signed16
from langgrasp.runtime.sim.server import SimServer, free_port

DEVICE_ID = 7


def _device() -> SimDevice:
    return SimDevice(
        id=DEVICE_ID, simdata=[SimData(100, count=10, values=0, datatype=DataType.REGISTERS)]
    )


@pytest.fixture(params=["tcp", "rtu-over-tcp"])
def served(request):
    framer = "socket" if request.param == "tcp" else "rtu"
    with SimServer(_device(), framer=framer, name="test") as server:
        yield request.param, server


def _link(transport: str, port: int, io=None) -> ModbusLink:
    config = ModbusConfig(transport=transport, port=port, device_id=DEVICE_ID, timeout_s=0.5)
    return ModbusLink(config, name="dev", on_io=io)


def test_write_then_read_round_trip_and_writes_are_reported(served):
    transport, server = served
    records = []
    link = _link(transport, server.port, records.append)
    link.connect()
    link.write(102, [1, 0xFFFF, 300])
    assert link.read(100, 6) == [0, 0, 1, 0xFFFF, 300, 0]
    assert records == [
        {"device": "dev", "op": "write", "address": 102, "values": [1, 0xFFFF, 300], "ok": True}
    ]
    link.close()
    assert not link.connected


def test_exception_response_names_the_code(served):
    transport, server = served
    link = _link(transport, server.port)
    link.connect()
    with pytest.raises(DeviceError, match=r"exception 2 \(illegal data address"):
        link.read(500, 2)
    assert link.connected  # an exception answer is not a lost connection


def test_bad_values_are_refused_before_sending(served):
    transport, server = served
    records = []
    link = _link(transport, server.port, records.append)
    link.connect()
    with pytest.raises(InputError, match="0-65535"):
        link.write(100, [70000])
    with pytest.raises(InputError):
        link.read(100, 0)
    assert records == []


def test_server_death_is_a_disconnect_and_reconnect_recovers():
    server = SimServer(_device(), name="test").start()
    link = _link("tcp", server.port)
    link.connect()
    server.stop()
    # pymodbus reports a peer that closed the socket as either a connection error or a missing
    # answer, depending on the framer; both mark the link lost.
    with pytest.raises((DeviceDisconnectedError, DeviceTimeoutError)):
        link.read(100, 1)
    assert not link.connected
    with pytest.raises(DeviceDisconnectedError, match="not connected"):
        link.read(100, 1)
    pauses = []
    with pytest.raises(DeviceDisconnectedError, match="after 3 attempts"):
        link.reconnect(attempts=3, sleep=pauses.append)
    assert pauses == [0.1, 0.2]  # exponential backoff from reconnect_first_s
    server.start()
    try:
        link.reconnect(attempts=3, sleep=pauses.append)
        assert link.read(100, 1) == [0]
    finally:
        server.stop()


def test_connect_to_nothing_names_the_address():
    port = free_port()
    link = _link("tcp", port)
    with pytest.raises(DeviceDisconnectedError, match=f"127.0.0.1:{port}"):
        link.connect()


def test_requests_from_many_threads_are_serialised(served):
    transport, server = served
    link = _link(transport, server.port)
    link.connect()
    errors = []

    def worker(offset: int) -> None:
        try:
            for i in range(20):
                link.write(100 + offset, [i])
                assert link.read(100 + offset, 1) == [i]
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_config_validation():
    with pytest.raises(InputError, match="transport"):
        ModbusConfig(transport="udp")
    with pytest.raises(InputError, match="device_id"):
        ModbusConfig(device_id=300)
    for bad in (0, 248, True):  # 0 is broadcast: nobody would answer
        with pytest.raises(InputError, match="1-247"):
            ModbusConfig(device_id=bad)
    assert ModbusConfig(transport="tcp", device_id=255).device_id == 255  # TCP direct unit
    with pytest.raises(InputError, match="device_id"):
        ModbusConfig(transport="rtu-over-tcp", device_id=255)
    assert "54321" in ModbusConfig(transport="rtu-over-tcp", port=54321).describe()
    assert "ttyUSB0" in ModbusConfig(transport="rtu").describe()


def test_signed16_round_trip():
    for value in (-32768, -1, 0, 1, 32767):
        assert to_signed16(from_signed16(value)) == value
    assert from_signed16(-1) == 0xFFFF
    with pytest.raises(InputError):
        from_signed16(40000)


def test_write_is_sent_before_it_is_recorded_and_a_failing_audit_never_blocks_it(served):
    transport, server = served
    observer = _link(transport, server.port)
    observer.connect()
    seen = []

    def full_disk(record):
        seen.append(observer.read(record["address"], 1))  # already on the device
        raise OSError(28, "No space left on device")

    link = _link(transport, server.port, full_disk)
    link.connect()
    link.write(103, [42])  # the audit failure is only logged
    assert seen == [[42]]
    assert link.read(103, 1) == [42] and link.connected


def test_failed_write_is_recorded_as_failed():
    records = []
    server = SimServer(_device(), name="test").start()
    link = _link("tcp", server.port, records.append)
    link.connect()
    server.stop()
    with pytest.raises(DeviceError):
        link.write(100, [1])
    assert records and records[-1]["ok"] is False and records[-1]["error"]


class _Wrapped:
    """The real pymodbus client with one method replaced (a fault no real server produces)."""

    def __init__(self, client, **overrides):
        self._client, self._overrides = client, overrides

    def __getattr__(self, name):
        return self._overrides.get(name) or getattr(self._client, name)


def test_short_answer_is_a_device_error(served):
    from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

    transport, server = served
    link = _link(transport, server.port)
    link.connect()

    def short(address, count, device_id):
        return ReadHoldingRegistersResponse(registers=[0] * (count - 1), dev_id=device_id)

    link._client = _Wrapped(link._client, read_holding_registers=short)
    with pytest.raises(DeviceError, match=r"answered 2 register.* read of 3"):
        link.read(100, 3)


def test_any_pymodbus_error_is_a_device_error_and_the_link_reconnects(served):
    from pymodbus.exceptions import ModbusException

    transport, server = served
    link = _link(transport, server.port)
    link.connect()

    def garbled(*args, **kwargs):
        raise ModbusException("unpack error")

    link._client = _Wrapped(link._client, read_holding_registers=garbled)
    with pytest.raises(DeviceError, match=r"bad answer.*unpack error"):
        link.read(100, 1)
    assert not link.connected
    link.connect()
    assert link.read(100, 1) == [0]
