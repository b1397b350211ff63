"""Device simulators: pymodbus servers on 127.0.0.1 that speak the real devices' registers.

Used by the tests, the demo and ``langgrasp devices sim``; the runtime drives them with the same
backends it uses for real hardware.
"""
