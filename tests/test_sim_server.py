"""SimServer: start on a free port, serve, stop, restart; a taken port is a clear error."""

from __future__ import annotations

import socket

import pytest
from pymodbus.simulator import DataType, SimData, SimDevice

from langgrasp.errors import LanggraspError
from langgrasp.runtime.modbus import ModbusConfig, ModbusLink
from langgrasp.runtime.sim.server import SimServer


def _device(seen: list) -> SimDevice:
    async def action(fc, start_address, address, count, registers, set_values):
        seen.append((fc, address, set_values))
        if set_values is None and address == 10:  # register 10 counts the accesses so far
            registers[0] = len(seen)

    return SimDevice(
        id=1, simdata=[SimData(10, count=4, values=0, datatype=DataType.REGISTERS)], action=action
    )


def test_serves_the_action_hook_and_restarts():
    seen = []
    server = SimServer(_device(seen), name="counter")
    with server:
        assert server.running
        link = ModbusLink(ModbusConfig(port=server.port, device_id=1))
        link.connect()
        link.write(11, [5])
        assert link.read(10, 1) == [2]
        assert seen[0] == (16, 11, [5])
    assert not server.running
    server.start()
    try:
        link.reconnect(attempts=3)
        # A new server starts from the SimData values; device models keep state in Python.
        assert link.read(11, 1) == [0]
        assert link.read(10, 1) == [len(seen)]
    finally:
        server.stop()
    server.stop()  # twice is fine


def test_taken_port_is_a_clear_error():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(LanggraspError, match=f"could not listen on 127.0.0.1:{port}"):
            SimServer(_device([]), port=port, name="busy").start()


def test_unknown_framer():
    with pytest.raises(LanggraspError, match="framer"):
        SimServer(_device([]), framer="ascii")
