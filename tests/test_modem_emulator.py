"""The emulated AT modem seen from the wire: exact V.250 bytes over its pty, no driver in between.

The driver (drivers/modem.py) is tested against this emulator in test_modem.py; here a plain
pyserial port checks the framing a real module would produce, so the two check each other.
Slots: the SIM-less cases use `mcim-hil vPCD B 00 01` with no card in it; the card cases
run the virtual UICC on `mcim-hil vPCD B 00 00` (TCP 35967).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Iterator

import pytest
import serial

from mcim_hil.emulators.modem import EmulatedModem, decode_imsi

# Our vpcd slots; overridable so a bench with other free slots can run these too.
EMPTY_READER = os.environ.get("MCIM_HIL_MODEM_TEST_EMPTY_READER", "mcim-hil vPCD B 00 01")  # never given a card
CARD_READER = os.environ.get("MCIM_HIL_MODEM_TEST_READER", "mcim-hil vPCD B 00 00")
CARD_PORT = int(os.environ.get("MCIM_HIL_MODEM_TEST_PORT", "35967"))
ICCID = "8988211000000000017"
IMSI = "001010123456789"

_FINAL = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR: [^\r]*)\r\n$")


def exchange(port: serial.Serial, line: bytes, timeout: float = 5.0) -> bytes:
    """Write one command line and read until a final result code; return every byte received."""
    port.write(line)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received += port.read(max(1, port.in_waiting))
        if _FINAL.search(received):
            return received
    raise AssertionError(f"no final result code for {line!r}; got {received!r}")


@pytest.fixture
def emulator() -> Iterator[EmulatedModem]:
    with EmulatedModem(EMPTY_READER, imei="490154203237518") as emu:
        yield emu


@pytest.fixture
def wire(emulator: EmulatedModem) -> Iterator[serial.Serial]:
    with serial.Serial(emulator.port, 115200, timeout=0.2) as port:
        yield port


def test_echo_is_on_by_default_and_ate0_turns_it_off(wire: serial.Serial) -> None:
    assert exchange(wire, b"AT\r") == b"AT\r\r\nOK\r\n"
    assert exchange(wire, b"ATE0\r") == b"ATE0\r\r\nOK\r\n"
    assert exchange(wire, b"AT\r") == b"\r\nOK\r\n"
    assert exchange(wire, b"ATE1\r") == b"\r\nOK\r\n"
    assert exchange(wire, b"AT\r") == b"AT\r\r\nOK\r\n"


def test_identity_commands_answer_in_v1_framing(wire: serial.Serial) -> None:
    exchange(wire, b"ATE0\r")
    assert exchange(wire, b"AT+CGMI\r") == b"\r\nmcim-hil\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CGMM\r") == b"\r\nEMU-LTE\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CGMR\r") == b"\r\nEMU-LTE_1.0.0\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CGSN\r") == b"\r\n490154203237518\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CGSN=1\r") == b'\r\n+CGSN: "490154203237518"\r\n\r\nOK\r\n'
    assert exchange(wire, b"ATI\r") == b"\r\nmcim-hil\r\n\r\nEMU-LTE\r\n\r\nRevision: EMU-LTE_1.0.0\r\n\r\nOK\r\n"


def test_unknown_command_and_bad_syntax_answer_error(wire: serial.Serial) -> None:
    exchange(wire, b"ATE0\r")
    assert exchange(wire, b"AT+NOSUCH\r") == b"\r\nERROR\r\n"
    assert exchange(wire, b"ATX9\r") == b"\r\nERROR\r\n"
    assert exchange(wire, b"AT+CGMI?\r") == b"\r\nERROR\r\n"


def test_cmee_decides_the_form_of_the_sim_error(wire: serial.Serial) -> None:
    exchange(wire, b"ATE0\r")
    assert exchange(wire, b"AT+CIMI\r") == b"\r\nERROR\r\n"        # +CMEE=0 by default
    exchange(wire, b"AT+CMEE=1\r")
    assert exchange(wire, b"AT+CMEE?\r") == b"\r\n+CMEE: 1\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CIMI\r") == b"\r\n+CME ERROR: 10\r\n"
    exchange(wire, b"AT+CMEE=2\r")
    assert exchange(wire, b'AT+CSIM=14,"00A40004023F00"\r') == b"\r\n+CME ERROR: SIM not inserted\r\n"
    assert exchange(wire, b"AT+CMEE=7\r") == b"\r\n+CME ERROR: incorrect parameters\r\n"


def test_a_reader_that_does_not_exist_is_sim_not_inserted() -> None:
    with EmulatedModem("no such reader 42") as emu, serial.Serial(emu.port, timeout=0.2) as wire:
        exchange(wire, b"AT+CMEE=1\r")
        assert exchange(wire, b"AT+CIMI\r").endswith(b"\r\n+CME ERROR: 10\r\n")


def test_s_registers_and_line_editing(wire: serial.Serial) -> None:
    exchange(wire, b"ATE0\r")
    assert exchange(wire, b"ATS3?\r") == b"\r\n013\r\n\r\nOK\r\n"
    assert exchange(wire, b"ATS4?\r") == b"\r\n010\r\n\r\nOK\r\n"
    # S5 (backspace) removes the typo before the command runs
    assert exchange(wire, b"AT+CGMX\x08I\r") == b"\r\nmcim-hil\r\n\r\nOK\r\n"
    # characters before "AT" are ignored (V.250 5.2.1)
    assert exchange(wire, b"\nAT\r") == b"\r\nOK\r\n"


def test_pdp_contexts_can_be_defined_and_read_back(wire: serial.Serial) -> None:
    exchange(wire, b"ATE0\r")
    assert exchange(wire, b'AT+CGDCONT=2,"IPV4V6","m2m.example"\r') == b"\r\nOK\r\n"
    assert exchange(wire, b"AT+CGDCONT?\r") == (
        b'\r\n+CGDCONT: 1,"IP","","0.0.0.0",0,0\r\n'
        b'\r\n+CGDCONT: 2,"IPV4V6","m2m.example","0.0.0.0",0,0\r\n\r\nOK\r\n')
    assert exchange(wire, b"AT+CGDCONT=2\r") == b"\r\nOK\r\n"
    assert b"m2m.example" not in exchange(wire, b"AT+CGDCONT?\r")
    assert exchange(wire, b"AT+CGPADDR=1\r") == b"\r\n+CGPADDR: 1\r\n\r\nOK\r\n"


def test_registration_reads_not_registered_without_a_network(wire: serial.Serial) -> None:
    exchange(wire, b"ATE0\r")
    assert exchange(wire, b"AT+CEREG?\r") == b"\r\n+CEREG: 0,0\r\n\r\nOK\r\n"
    exchange(wire, b"AT+CEREG=2\r")
    assert exchange(wire, b"AT+CEREG?\r") == b"\r\n+CEREG: 2,0\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CGATT?\r") == b"\r\n+CGATT: 0\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CFUN?\r") == b"\r\n+CFUN: 1\r\n\r\nOK\r\n"


def test_the_port_can_be_closed_and_reopened(emulator: EmulatedModem) -> None:
    for _ in range(3):
        with serial.Serial(emulator.port, timeout=0.2) as wire:
            assert exchange(wire, b"AT\r").endswith(b"\r\nOK\r\n")


def test_two_emulators_run_side_by_side() -> None:
    with EmulatedModem(EMPTY_READER, imei="111111111111116") as one, \
            EmulatedModem(EMPTY_READER, imei="222222222222224") as two:
        assert one.port != two.port
        with serial.Serial(one.port, timeout=0.2) as a, serial.Serial(two.port, timeout=0.2) as b:
            assert b"111111111111116" in exchange(a, b"AT+CGSN\r")
            assert b"222222222222224" in exchange(b, b"AT+CGSN\r")


def iccid_bcd(iccid: str) -> bytes:
    """EF.ICCID content: BCD, nibble-swapped, padded with F (TS 102 221 13.2)."""
    digits = iccid + "F" * (len(iccid) % 2)
    return bytes.fromhex("".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2)))


def test_imsi_decoding_follows_ts_31_102() -> None:
    assert decode_imsi(bytes.fromhex("080910101032547698")) == "001010123456789"
    assert decode_imsi(bytes.fromhex("082982608200002080")) == "228062800000208"
    assert decode_imsi(bytes.fromhex("ffffffffffffffffff")) == ""


# -- with the virtual card ----------------------------------------------------------------


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from mcim_hil.emulators.vuicc import VirtualUicc, create_card_file
    state: Path = tmp_path_factory.mktemp("card") / "uicc.json"
    create_card_file(state, iccid=ICCID, imsi=IMSI, k=bytes(range(16)), opc=bytes(range(16, 32)),
                     adm1=b"88888888")
    with VirtualUicc(state, CARD_PORT, reader=CARD_READER):
        yield CARD_READER


def test_csim_passes_t0_61xx_through_and_get_response_works(card: str) -> None:
    with EmulatedModem(card) as emu, serial.Serial(emu.port, timeout=0.2) as wire:
        exchange(wire, b"ATE0\r")
        answer = exchange(wire, b'AT+CSIM=14,"00A40004023F00"\r')
        match = re.fullmatch(rb'\r\n\+CSIM: 4,"61([0-9A-F]{2})"\r\n\r\nOK\r\n', answer)
        assert match, answer
        answer = exchange(wire, b'AT+CSIM=10,"00C00000' + match.group(1) + b'"\r')
        fcp = re.fullmatch(rb'\r\n\+CSIM: (\d+),"([0-9A-F]+)"\r\n\r\nOK\r\n', answer)
        assert fcp and fcp.group(2).startswith(b"62") and fcp.group(2).endswith(b"9000")
        assert int(fcp.group(1)) == len(fcp.group(2))
        # a length that does not match the hex is refused before reaching the card
        exchange(wire, b"AT+CMEE=1\r")
        assert exchange(wire, b'AT+CSIM=12,"00A40004023F00"\r') == b"\r\n+CME ERROR: 50\r\n"


def test_crsm_reads_files_and_reports_status_words(card: str) -> None:
    with EmulatedModem(card) as emu, serial.Serial(emu.port, timeout=0.2) as wire:
        exchange(wire, b"ATE0\r")
        imsi = exchange(wire, b"AT+CRSM=176,28423,0,0,9\r")
        match = re.fullmatch(rb'\r\n\+CRSM: 144,0,"([0-9A-F]{18})"\r\n\r\nOK\r\n', imsi)
        assert match and decode_imsi(bytes.fromhex(match.group(1).decode())) == IMSI
        iccid = exchange(wire, b'AT+CRSM=176,12258,0,0,10,,"3F00"\r')
        assert iccid == b'\r\n+CRSM: 144,0,"' + iccid_bcd(ICCID).hex().upper().encode() + b'"\r\n\r\nOK\r\n'
        assert exchange(wire, b"AT+CRSM=176,28672,0,0,1\r") == b"\r\n+CRSM: 106,130\r\n\r\nOK\r\n"  # 6A82
        fcp = exchange(wire, b"AT+CRSM=192,28423,0,0,0\r")
        assert re.fullmatch(rb'\r\n\+CRSM: 144,0,"62[0-9A-F]+"\r\n\r\nOK\r\n', fcp)
        assert exchange(wire, b"AT+CIMI\r") == f"\r\n{IMSI}\r\n\r\nOK\r\n".encode()


# -- the commands engineers type (issue 10 §4) ----------------------------------------------


def test_chained_commands_answer_in_order_with_one_final_result(wire: serial.Serial) -> None:
    exchange(wire, b"ATE0\r")
    assert exchange(wire, b"AT+CGMI;+CGMM\r") == b"\r\nmcim-hil\r\n\r\nEMU-LTE\r\n\r\nOK\r\n"
    assert exchange(wire, b"ATE0V1+CGMR\r") == b"\r\nEMU-LTE_1.0.0\r\n\r\nOK\r\n"
    # the first failure ends the line: +CGMM never runs
    assert exchange(wire, b"AT+CGMI;+NOSUCH;+CGMM\r") == b"\r\nmcim-hil\r\n\r\nERROR\r\n"


@pytest.mark.parametrize("line", [b"AT+CMEE=\xb2\r", b"AT+CGSN=\xb9\r", b'AT+CSIM=\xb2,"00"\r',
                                  b"AT+CRSM=176,\xb3\r", b"AT+CGATT=\xb9\r"])
def test_non_ascii_digits_are_incorrect_parameters_not_a_crash(
        wire: serial.Serial, line: bytes, caplog: pytest.LogCaptureFixture) -> None:
    exchange(wire, b"ATE0\r")
    exchange(wire, b"AT+CMEE=1\r")
    assert exchange(wire, line) == b"\r\n+CME ERROR: 50\r\n"
    assert "failed inside the emulator" not in caplog.text


def test_identification_and_status_commands(wire: serial.Serial) -> None:
    exchange(wire, b"ATE0\r")
    assert exchange(wire, b"AT+GMI\r") == b"\r\nmcim-hil\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+GMM\r") == b"\r\nEMU-LTE\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+GMR\r") == b"\r\nEMU-LTE_1.0.0\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+GSN\r") == b"\r\n490154203237518\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+GCAP\r").startswith(b"\r\n+GCAP: +CGSM")
    assert exchange(wire, b"AT+CPAS\r") == b"\r\n+CPAS: 0\r\n\r\nOK\r\n"
    exchange(wire, b"AT+CMEE=2\r")
    profile = exchange(wire, b"AT&V\r")
    assert b"E0 " in profile and b"+CMEE: 2" in profile and profile.endswith(b"\r\nOK\r\n")
    listed = exchange(wire, b"AT+CLAC\r").split(b"\r\n")
    for name in (b"AT+CPIN", b"AT+CSQ", b"AT+CESQ", b"AT+COPS", b"AT+CGREG", b"AT+CEREG", b"AT+C5GREG",
                 b"AT+CGACT", b"AT+CCID", b"AT+ICCID", b"AT+CSIM", b"AT&V"):
        assert name in listed


def test_radio_reads_without_a_network(wire: serial.Serial) -> None:
    exchange(wire, b"ATE0\r")
    assert exchange(wire, b"AT+CSQ\r") == b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CESQ\r") == b"\r\n+CESQ: 99,99,255,255,255,255\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+COPS?\r") == b"\r\n+COPS: 0\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CGREG?\r") == b"\r\n+CGREG: 0,0\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+C5GREG?\r") == b"\r\n+C5GREG: 0,0\r\n\r\nOK\r\n"
    assert exchange(wire, b"AT+CGACT?\r") == b"\r\n+CGACT: 1,0\r\n\r\nOK\r\n"


def test_an_unknown_profile_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="quectel"):
        EmulatedModem(EMPTY_READER, profile="nokia")


class _Network:
    """An AirInterface running a real Milenage AKA on the card (the card's K/OPc), PLMN 00101."""

    plmn = "00101"
    name = "mcim-hil VNO"

    def __init__(self) -> None:
        from mcim_hil.aka.auc import AuC
        self.auc = AuC(bytes(range(16)), bytes(range(16, 32)))

    def attach(self, imsi: str, authenticate):
        from mcim_hil.emulators.modem import AttachResult
        for _ in range(2):
            av = self.auc.generate_av()
            data = authenticate(av.rand, av.autn)[:-2]
            if data[:2] == b"\xdc\x0e":
                self.auc.resync(av.rand, data[2:16])
                continue
            ok = data[:1] == b"\xdb" and data[2:2 + data[1]] == av.xres
            return AttachResult(ok, "10.45.0.9" if ok else None, True, None if ok else 20,
                                tac="00A1", ci="01A2D001")
        return AttachResult(False, None, True, 21)

    def detach(self, imsi: str) -> None:
        pass


def test_sim_and_registration_reads_with_the_card_and_a_network(card: str) -> None:
    with EmulatedModem(card) as emu, serial.Serial(emu.port, timeout=0.2) as wire:
        exchange(wire, b"ATE0\r")
        assert exchange(wire, b"AT+CPIN?\r") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
        assert exchange(wire, b"AT+CCID\r") == f"\r\n+CCID: {ICCID}\r\n\r\nOK\r\n".encode()
        assert exchange(wire, b"AT+ICCID\r") == f"\r\n+ICCID: {ICCID}\r\n\r\nOK\r\n".encode()
        emu.set_network(_Network())
        assert exchange(wire, b"AT+CSQ\r") == b"\r\n+CSQ: 24,99\r\n\r\nOK\r\n"
        assert exchange(wire, b"AT+CGATT=1\r") == b"\r\nOK\r\n"
        assert exchange(wire, b"AT+COPS?\r") == b'\r\n+COPS: 0,2,"00101",7\r\n\r\nOK\r\n'
        exchange(wire, b"AT+COPS=3,0\r")
        assert exchange(wire, b"AT+COPS?\r") == b'\r\n+COPS: 0,0,"mcim-hil VNO",7\r\n\r\nOK\r\n'
        assert exchange(wire, b"AT+CGREG?\r") == b"\r\n+CGREG: 0,1\r\n\r\nOK\r\n"
        exchange(wire, b"AT+CGREG=2\r")
        assert exchange(wire, b"AT+CGREG?\r") == b'\r\n+CGREG: 2,1,"00A1","01A2D001",7\r\n\r\nOK\r\n'
        assert exchange(wire, b"AT+CEREG?\r") == b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"
        assert exchange(wire, b"AT+CGACT?\r") == b"\r\n+CGACT: 1,1\r\n\r\nOK\r\n"
        rsrq_rsrp = exchange(wire, b"AT+CESQ\r").split(b": ")[1].split(b"\r")[0].split(b",")[4:]
        assert all(0 <= int(v) <= 97 for v in rsrq_rsrp)


@pytest.mark.parametrize("profile, command, answer", [
    ("quectel", b"AT+QCCID", b"+QCCID: "), ("u-blox", b"AT+CCID", b"+CCID: "),
    ("simcom", b"AT+CICCID", b"+ICCID: ")])
def test_vendor_profiles_answer_their_iccid_command(card: str, profile: str, command: bytes, answer: bytes) -> None:
    with EmulatedModem(card, profile=profile) as emu, serial.Serial(emu.port, timeout=0.2) as wire:
        exchange(wire, b"ATE0\r")
        assert exchange(wire, command + b"\r") == b"\r\n" + answer + ICCID.encode() + b"\r\n\r\nOK\r\n"


def test_vendor_profiles_identify_and_answer_their_own_commands(card: str) -> None:
    with EmulatedModem(card, profile="quectel") as emu, serial.Serial(emu.port, timeout=0.2) as wire:
        exchange(wire, b"ATE0\r")
        assert exchange(wire, b"AT+CGMI\r") == b"\r\nQuectel\r\n\r\nOK\r\n"
        assert exchange(wire, b"AT+QINISTAT\r") == b"\r\n+QINISTAT: 7\r\n\r\nOK\r\n"
        assert exchange(wire, b'AT+QCFG="nwscanmode"\r') == b'\r\n+QCFG: "nwscanmode",0\r\n\r\nOK\r\n'
        assert exchange(wire, b'AT+QCFG="nwscanmode",3\r') == b"\r\nOK\r\n"
        assert exchange(wire, b'AT+QCFG="nwscanmode"\r') == b'\r\n+QCFG: "nwscanmode",3\r\n\r\nOK\r\n'
        assert exchange(wire, b"AT+UPSV?\r") == b"\r\nERROR\r\n"      # not a Quectel command
    with EmulatedModem(card, profile="u-blox") as emu, serial.Serial(emu.port, timeout=0.2) as wire:
        exchange(wire, b"ATE0\r")
        assert exchange(wire, b"AT+CGMI\r") == b"\r\nu-blox\r\n\r\nOK\r\n"
        assert exchange(wire, b"AT+UPSV=1\r") == b"\r\nOK\r\n"
        assert exchange(wire, b"AT+UPSV?\r") == b"\r\n+UPSV: 1\r\n\r\nOK\r\n"
    with EmulatedModem(card, profile="simcom") as emu, serial.Serial(emu.port, timeout=0.2) as wire:
        exchange(wire, b"ATE0\r")
        assert exchange(wire, b"AT+CPSI?\r") == b"\r\n+CPSI: NO SERVICE,Online\r\n\r\nOK\r\n"
        emu.set_network(_Network())
        exchange(wire, b"AT+CGATT=1\r")
        assert exchange(wire, b"AT+CPSI?\r").startswith(b"\r\n+CPSI: LTE,Online,001-01,0x00A1,")


def _exclusive_connect_works(reader: str) -> bool:
    from smartcard.Exceptions import SmartcardException
    from smartcard.System import readers
    from smartcard.scard import SCARD_LEAVE_CARD, SCARD_SHARE_EXCLUSIVE
    connection = next(r for r in readers() if str(r) == reader).createConnection()
    try:
        connection.connect(mode=SCARD_SHARE_EXCLUSIVE, disposition=SCARD_LEAVE_CARD)
    except SmartcardException:
        return False
    finally:
        try:
            connection.disconnect()
        except SmartcardException:
            pass
        connection.release()
    return True


def test_the_module_leaves_its_reader_when_idle_so_pysim_can_take_it(card: str) -> None:
    with EmulatedModem(card) as emu, serial.Serial(emu.port, timeout=0.2) as wire:
        exchange(wire, b"ATE0\r")
        assert exchange(wire, b"AT+CIMI\r") == f"\r\n{IMSI}\r\n\r\nOK\r\n".encode()
        deadline = time.monotonic() + 10.0
        while not _exclusive_connect_works(card):       # pySim's default: an exclusive connection
            assert time.monotonic() < deadline, "the module still holds the reader while idle"
            time.sleep(0.1)
        # and the module finds its SIM again afterwards
        assert exchange(wire, b"AT+CIMI\r") == f"\r\n{IMSI}\r\n\r\nOK\r\n".encode()


def test_the_bench_file_chooses_the_emulated_modules_vendor(tmp_path: Path) -> None:
    from mcim_hil.bench import BenchFileError, load_bench
    from mcim_hil.emulated import EmulatedBench
    (tmp_path / "adm1").write_text("88888888\n")
    bench_file = tmp_path / "bench.yaml"
    bench_file.write_text("name: q\nuicc:\n  emulator: vuicc\n  secrets: {adm1: {file: adm1}}\n"
                          "modem:\n  emulator: at-pty\n  profile: quectel\n")
    with EmulatedBench(load_bench(bench_file, probe=False)) as endpoints, \
            serial.Serial(endpoints.modem_port, timeout=0.2) as wire:
        exchange(wire, b"ATE0\r")
        assert exchange(wire, b"AT+CGMI;+QINISTAT\r") == b"\r\nQuectel\r\n\r\n+QINISTAT: 7\r\n\r\nOK\r\n"
    bench_file.write_text(bench_file.read_text().replace("quectel", "nokia"))
    with pytest.raises(BenchFileError, match="modem.profile"):
        load_bench(bench_file, probe=False)
