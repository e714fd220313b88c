"""The modem driver's family quirks and its manners: it gives the module back as it found it.

Through the real stacks: the emulated module on a pty, its SIM the virtual card behind
pcscd + vpcd on a slot claimed for this module of tests.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Iterator

import pytest
import serial

from mcim_hil.drivers.modem import Modem
from mcim_hil.drivers.modem_quirks import quirks_for
from mcim_hil.emulators.modem import EmulatedModem

# the slot tests/conftest.py claims for this module (as for test_modem_emulator.py)
CARD_READER = os.environ.get("MCIM_HIL_MODEM_TEST_READER", "mcim-hil vPCD B 00 00")
CARD_PORT = int(os.environ.get("MCIM_HIL_MODEM_TEST_PORT", "35967"))
ICCID = "8988211000000000025"


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from mcim_hil.emulators.vuicc import VirtualUicc, create_card_file
    state: Path = tmp_path_factory.mktemp("card") / "uicc.json"
    create_card_file(state, iccid=ICCID, imsi="001010000000025", k=bytes(16), opc=bytes(range(16)),
                     adm1=b"88888888")
    with VirtualUicc(state, CARD_PORT, reader=CARD_READER):
        yield CARD_READER


def raw(port: serial.Serial, line: bytes) -> bytes:
    port.write(line)
    received, deadline = b"", time.monotonic() + 5.0
    while time.monotonic() < deadline and not re.search(rb"\r\n(OK|ERROR|\+CME ERROR: [^\r]*)\r\n$", received):
        received += port.read(max(1, port.in_waiting))
    return received


@pytest.mark.parametrize("manufacturer, model, family", [
    ("Quectel", "EG25", "quectel"), ("", "BG96", "quectel"),
    ("u-blox", "SARA-R410M-02B", "u-blox"), ("", "LARA-R6", "u-blox"),
    ("SIMCOM INCORPORATED", "SIMCOM_SIM7600G-H", "simcom"), ("SIMCOM_Ltd", "SIM7000E", "simcom"),
    ("Telit", "LE910C1-EU", "generic"), ("mcim-hil", "EMU-LTE", "generic")])
def test_the_family_comes_from_cgmi_and_cgmm(manufacturer: str, model: str, family: str) -> None:
    assert quirks_for(manufacturer, model).family == family


@pytest.mark.parametrize("profile, family", [
    (None, "generic"), ("quectel", "quectel"), ("u-blox", "u-blox"), ("simcom", "simcom")])
def test_the_driver_reads_the_iccid_with_its_familys_command(card: str, profile: str | None, family: str) -> None:
    with EmulatedModem(card, profile=profile) as emu, Modem.open(emu.port) as modem:
        assert modem.quirks().family == family
        assert modem.iccid() == ICCID


def test_a_closed_driver_leaves_echo_and_cmee_as_it_found_them(card: str) -> None:
    with EmulatedModem(card) as emu:
        with serial.Serial(emu.port, timeout=0.2) as wire:
            assert raw(wire, b"AT+CMEE=1\r").endswith(b"\r\nOK\r\n")
        with Modem.open(emu.port) as modem:       # what a run does first (harness/devices.py)
            modem.echo_off()
            modem.set_error_mode(2)
            modem.imsi()
        with serial.Serial(emu.port, timeout=0.2) as wire:
            # echo on again, +CMEE back to 1, as pySim-shell's --modem-device expects
            assert raw(wire, b"AT+CMEE?\r") == b"AT+CMEE?\r\r\n+CMEE: 1\r\n\r\nOK\r\n"


def test_a_module_found_with_echo_off_is_left_with_echo_off(card: str) -> None:
    with EmulatedModem(card) as emu:
        with serial.Serial(emu.port, timeout=0.2) as wire:
            raw(wire, b"ATE0\r")
        with Modem.open(emu.port) as modem:
            modem.echo_off()
            modem.set_error_mode(2)
        with serial.Serial(emu.port, timeout=0.2) as wire:
            assert raw(wire, b"AT+CMEE?\r") == b"\r\n+CMEE: 0\r\n\r\nOK\r\n"


def test_cpin_asks_for_the_pin_once_pin1_is_enabled_and_takes_it(card: str) -> None:
    from smartcard.System import readers
    from smartcard.scard import SCARD_RESET_CARD, SCARD_SHARE_EXCLUSIVE
    pin_block = "31323334ffffffff"                      # "1234", the card's PIN1 (TS 102 221 9.5.1)
    connection = next(r for r in readers() if str(r) == card).createConnection()
    connection.connect(mode=SCARD_SHARE_EXCLUSIVE, disposition=SCARD_RESET_CARD)
    try:
        _, sw1, sw2 = connection.transmit(list(bytes.fromhex("0028000108" + pin_block)))   # ENABLE PIN
        assert (sw1, sw2) == (0x90, 0x00)
    finally:
        connection.disconnect()                              # the reset forgets the verification
        connection.release()
    try:
        with EmulatedModem(card) as emu, serial.Serial(emu.port, timeout=0.2) as wire:
            raw(wire, b"ATE0\r")
            raw(wire, b"AT+CMEE=1\r")
            assert raw(wire, b"AT+CPIN?\r") == b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
            assert raw(wire, b"AT+CIMI\r") == b"\r\n+CME ERROR: 11\r\n"        # SIM PIN required
            assert raw(wire, b'AT+CPIN="1234"\r') == b"\r\nOK\r\n"
            assert raw(wire, b"AT+CPIN?\r") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
            assert raw(wire, b"AT+CIMI\r") == b"\r\n001010000000025\r\n\r\nOK\r\n"
    finally:
        with EmulatedModem(card) as emu, serial.Serial(emu.port, timeout=0.2) as wire:
            disabled = raw(wire, b'AT+CSIM=26,"0026000108' + pin_block.upper().encode() + b'"\r')
            assert b'"9000"' in disabled                                  # DISABLE PIN: as shipped again
