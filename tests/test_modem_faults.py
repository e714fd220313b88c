"""Modem faults (harness/emulators/modem_faults.py) armed over the emulated module's control
channel, seen on the wire and through the driver: silence, line noise, a restart with its boot
URCs, NO CARRIER, +CME ERROR. The driver sends again what a real one would (bounded) and fails
cleanly otherwise. SIM-less: the module's reader `mcim-hil vPCD B 00 01` is never given a card."""

from __future__ import annotations

import os
import time
from typing import Iterator

import pytest
import serial

from mcim_hil.drivers.errors import ModemError
from mcim_hil.drivers.modem import CmeError, Modem, ModemTimeout
from mcim_hil.emulators.modem import EmulatedModem
from mcim_hil.emulators.modem_faults import ModemFaultError, ModemFaultPlan, control_line

EMPTY_READER = os.environ.get("MCIM_HIL_MODEM_TEST_EMPTY_READER", "mcim-hil vPCD B 00 01")


@pytest.fixture
def emulator() -> Iterator[EmulatedModem]:
    with EmulatedModem(EMPTY_READER, imei="490154203237518") as emu:
        yield emu


@pytest.fixture
def wire(emulator: EmulatedModem) -> Iterator[serial.Serial]:
    with serial.Serial(emulator.port, 115200, timeout=0.2) as port:
        yield port


@pytest.fixture
def driver(emulator: EmulatedModem) -> Iterator[Modem]:
    with Modem.open(emulator.port, timeout=0.5) as modem:
        modem.echo_off()
        modem.set_error_mode(2)
        yield modem


def read_for(port: serial.Serial, seconds: float) -> bytes:
    got, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += port.read(max(1, port.in_waiting))
    return got


def test_a_silent_module_answers_nothing_then_answers_the_next_line(emulator: EmulatedModem,
                                                                    wire: serial.Serial) -> None:
    emulator.arm_fault("silent", "+CGMI")
    wire.write(b"ATE0\r")
    assert read_for(wire, 0.3).endswith(b"OK\r\n")
    wire.write(b"AT+CGMI\r")
    assert read_for(wire, 0.5) == b""
    wire.write(b"AT+CGMI\r")
    assert read_for(wire, 0.3) == b"\r\nmcim-hil\r\n\r\nOK\r\n"


def test_garbage_no_carrier_and_cme_error_on_the_wire(emulator: EmulatedModem, wire: serial.Serial) -> None:
    wire.write(b"ATE0\r")
    read_for(wire, 0.3)
    wire.write(b"AT+CMEE=1\r")
    read_for(wire, 0.3)
    emulator.arm_fault("garbage", "+CGMM")
    emulator.arm_fault("no-carrier", "+CGATT")
    emulator.arm_fault("cme", "+CIMI", code=14)
    wire.write(b"AT+CGMM\r")
    noise = read_for(wire, 0.3)
    assert b"OK" not in noise and any(b >= 0x80 or b < 0x09 for b in noise)
    wire.write(b"AT+CGATT=1\r")
    assert read_for(wire, 0.3) == b"\r\nNO CARRIER\r\n"
    wire.write(b"AT+CIMI\r")
    assert read_for(wire, 0.3) == b"\r\n+CME ERROR: 14\r\n"


def test_a_restart_sends_the_boot_urcs_and_forgets_the_settings(emulator: EmulatedModem,
                                                                wire: serial.Serial) -> None:
    wire.write(b"ATE0\r")
    read_for(wire, 0.3)
    emulator.arm_fault("reset", "+CGMI")
    wire.write(b"AT+CGMI\r")
    assert read_for(wire, 0.4) == b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n"
    assert emulator.restarts == 1
    wire.write(b"AT\r")
    assert read_for(wire, 0.3) == b"AT\r\r\nOK\r\n"     # echo is on again (E1, the default)


def test_a_rule_matches_the_command_and_for_csim_the_apdus_ins() -> None:
    plan = ModemFaultPlan()
    plan.apply(control_line("silent", command="+csim", ins=0xD6, skip=1))
    assert plan.on_command('+CSIM=10,"00B0000009"')[0] == "answer"      # READ BINARY: not its INS
    assert plan.on_command('+CSIM=12,"00D6000001FF"')[0] == "answer"    # skipped once
    assert plan.on_command("+CGMI")[0] == "answer"
    assert plan.on_command('+CSIM=12,"00D6000001FF"')[0] == "silent"
    assert plan.on_command('+CSIM=12,"00D6000001FF"')[0] == "answer"    # times=1: used up


@pytest.mark.parametrize("line", [b"not json", b'{"op": "explode"}', b'{"op": "cme", "ins": 300}', b"[]",
                                  b'{"op": "cme", "code": 1e400}'])   # JSON's 1e400 is inf: int() overflows
def test_a_control_line_the_module_does_not_understand_is_refused(line: bytes) -> None:
    with pytest.raises(ModemFaultError):
        ModemFaultPlan().apply(line)


def test_a_bad_control_line_over_the_channel_is_refused_and_the_module_goes_on(emulator: EmulatedModem,
                                                                               driver: Modem) -> None:
    with pytest.raises(ModemFaultError, match="unknown op"):
        emulator.control("explode")
    assert driver.identity().manufacturer == "mcim-hil"


# -- through the driver ------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["silent", "garbage"])
def test_the_driver_asks_again_after_silence_or_noise(emulator: EmulatedModem, driver: Modem, fault: str) -> None:
    emulator.arm_fault(fault, "+CGMI")
    assert driver.identity().manufacturer == "mcim-hil"


def test_the_driver_gives_up_on_a_module_that_stays_silent_naming_the_command(emulator: EmulatedModem,
                                                                             driver: Modem) -> None:
    emulator.arm_fault("silent", "+CGMI", times=3)
    with pytest.raises(ModemTimeout, match="AT\\+CGMI: no final result code within 0.5 s"):
        driver.identity()
    assert driver.identity().manufacturer == "mcim-hil"   # the module is fine again afterwards


def test_after_a_restart_the_driver_puts_its_settings_back_and_asks_again(emulator: EmulatedModem,
                                                                         driver: Modem) -> None:
    emulator.arm_fault("reset", "+CGMI")
    assert driver.identity().manufacturer == "mcim-hil"
    assert driver.restarts == 1 and emulator.restarts == 1
    # +CMEE=2 is back: an error is verbose again, as the driver had set it
    with pytest.raises(CmeError, match="incorrect parameters"):
        driver.command("AT+CGATT=7")


def test_sim_busy_is_waited_out(emulator: EmulatedModem, driver: Modem) -> None:
    emulator.arm_fault("cme", "+CGMI", code=14)
    assert driver.identity().manufacturer == "mcim-hil"


def test_no_carrier_and_a_lasting_cme_error_fail_cleanly(emulator: EmulatedModem, driver: Modem) -> None:
    emulator.arm_fault("no-carrier", "+CGATT")
    with pytest.raises(ModemError, match="AT\\+CGATT=1: the modem answered NO CARRIER"):
        driver.attach(timeout=2.0)
    emulator.arm_fault("cme", "+CGMI", code=13)
    with pytest.raises(CmeError, match="SIM failure"):
        driver.identity()
