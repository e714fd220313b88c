"""The virtual card as pySim-read sees a sysmoISIM-SJA2 (osmocom pySim, pySim-read.py @597f1e03).

pySim is not on PyPI, so the reads pySim-read makes are replayed here with pyscard, through
pcscd + vpcd, in its order and with its APDUs (CLA 00, SELECT with FCP, T=0 GET RESPONSE):
every file it reads must be there, readable without a PIN (PIN1 is disabled, as shipped), and
decode as TS 31.102 / 31.103 / 51.011 say. Each file's FCP names its access rule in EF.ARR.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

# the slot tests/conftest.py claims for this module (as for test_modem_emulator.py)
CARD_READER = os.environ.get("MCIM_HIL_MODEM_TEST_READER", "mcim-hil vPCD B 00 00")
CARD_PORT = int(os.environ.get("MCIM_HIL_MODEM_TEST_PORT", "35967"))
ICCID = "8988211000000000033"
IMSI = "001010000000033"
USIM_AID = bytes.fromhex("a0000000871002")
ISIM_AID = bytes.fromhex("a0000000871004")


class Reader:
    """pySim's way through PC/SC: case-4 answers fetched with GET RESPONSE, '6Cxx' resent."""

    def __init__(self, name: str) -> None:
        from smartcard.System import readers
        self.connection = next(r for r in readers() if str(r) == name).createConnection()
        self.connection.connect()

    def apdu(self, hexed: str) -> tuple[bytes, int]:
        apdu = list(bytes.fromhex(hexed))
        data, sw1, sw2 = self.connection.transmit(apdu)
        if sw1 == 0x6C:
            data, sw1, sw2 = self.connection.transmit(apdu[:4] + [sw2])
        while sw1 == 0x61:
            more, sw1, sw2 = self.connection.transmit([0x00, 0xC0, 0x00, 0x00, sw2])
            data += more
        return bytes(data), (sw1 << 8) | sw2

    def select(self, fid: str) -> dict[int, bytes]:
        data, sw = self.apdu(f"00a4000402{fid}")
        assert sw == 0x9000, f"SELECT {fid}: {sw:04X}"
        return fcp(data)

    def select_aid(self, aid: bytes) -> dict[int, bytes]:
        data, sw = self.apdu(f"00a40404{len(aid):02x}{aid.hex()}")
        assert sw == 0x9000, f"SELECT {aid.hex()}: {sw:04X}"
        return fcp(data)

    def read(self, *path: str) -> bytes:
        """SELECT each FID of ``path``; READ BINARY of the whole EF (size from its FCP)."""
        for fid in path[:-1]:
            self.select(fid)
        t = self.select(path[-1])
        assert t[0x82][0] & 0x07 == 0x01, f"{path[-1]} is not transparent"
        assert t[0x8B][:2] in (b"\x2f\x06", b"\x6f\x06"), f"{path[-1]}: no EF.ARR reference"
        size = int.from_bytes(t[0x80], "big")
        data, sw = self.apdu(f"00b00000{size:02x}")
        assert sw == 0x9000, f"READ BINARY {'/'.join(path)}: {sw:04X}"
        return data

    def record(self, *path: str, number: int = 1) -> bytes:
        for fid in path[:-1]:
            self.select(fid)
        t = self.select(path[-1])
        assert t[0x82][0] & 0x07 == 0x02, f"{path[-1]} is not linear fixed"
        length = int.from_bytes(t[0x82][2:4], "big")
        data, sw = self.apdu(f"00b2{number:02x}04{length:02x}")
        assert sw == 0x9000, f"READ RECORD {'/'.join(path)}: {sw:04X}"
        return data


def tlvs(data: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i + 2 <= len(data) and data[i] not in (0x00, 0xFF):
        out.setdefault(data[i], data[i + 2:i + 2 + data[i + 1]])
        i += 2 + data[i + 1]
    return out


def fcp(data: bytes) -> dict[int, bytes]:
    assert data[0] == 0x62
    return tlvs(data[2:])


def swapped(data: bytes) -> str:
    return "".join(f"{b & 0x0F:x}{b >> 4:x}" for b in data).rstrip("f")


def service(table: bytes, n: int) -> bool:
    return bool(table[(n - 1) // 8] & (1 << ((n - 1) % 8)))


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    from mcim_hil.emulators.vuicc import VirtualUicc, create_card_file
    state: Path = tmp_path_factory.mktemp("card") / "uicc.json"
    create_card_file(state, iccid=ICCID, imsi=IMSI, k=bytes(16), opc=bytes(range(16)), adm1=b"88888888")
    with VirtualUicc(state, CARD_PORT, reader=CARD_READER):
        reader = Reader(CARD_READER)
        yield reader
        reader.connection.disconnect()


def test_ef_dir_lists_the_usim_and_the_isim(card: Reader) -> None:
    card.select("3f00")
    apps = []
    for n in (1, 2):
        app = tlvs(card.record("2f00", number=n)[2:])
        apps.append((app[0x4F][:7], app[0x50]))
    assert apps == [(USIM_AID, b"USIM"), (ISIM_AID, b"ISIM")]


def test_the_sim_part_pysim_read_reads(card: Reader) -> None:
    assert swapped(card.read("3f00", "2fe2")) == ICCID
    imsi = card.read("3f00", "7f20", "6f07")
    assert swapped(imsi[1:])[1:] == IMSI
    # EF.SMSP record 1 in DF.TELECOM (pySim-read stopped here with 6A82): the SC address
    smsp = card.record("3f00", "7f10", "6f42")
    sc = smsp[-28 + 13:-28 + 25]
    assert smsp[-28] & 0x02 == 0 and sc[1] == 0x91 and swapped(sc[2:1 + sc[0]]) == "001010000000"
    msisdn = card.record("3f00", "7f10", "6f40")
    assert msisdn[-13] == 0x91 and swapped(msisdn[-12:-12 + msisdn[-14] - 1]).startswith("001")
    spn = card.read("3f00", "7f20", "6f46")
    assert spn[1:].rstrip(b"\xff") == b"mcim-hil"
    for fid in ("6f30", "6f60", "6f61", "6f62", "6f3e", "6f3f"):   # PLMNsel, ...wAcT, GID1/2
        assert card.read("3f00", "7f20", fid)
    hplmn = card.read("3f00", "7f20", "6f62")
    assert hplmn[:3] == bytes.fromhex("00f110")        # MCC 001, MNC 01 (TS 24.008 10.5.1.3)
    acc = card.read("3f00", "7f20", "6f78")
    assert int.from_bytes(acc, "big") == 1 << int(IMSI[-1])
    ad = card.read("3f00", "7f20", "6fad")
    assert ad[0] == 0x00 and ad[3] == 2                # normal operation, 2-digit MNC
    sst = card.read("3f00", "7f20", "6f38")
    assert sst[0] & 0x03 == 0x03 and len(sst) >= 2      # service 1 (CHV1 disable) allocated and activated


def test_the_usim_part_pysim_read_reads(card: Reader) -> None:
    card.select_aid(USIM_AID)
    ust = card.read("6f38")
    on = {n for n in range(1, 8 * len(ust) + 1) if service(ust, n)}
    assert {10, 12, 19, 21, 27, 33, 71, 85} <= on and len(on) > 5   # not only service 27
    assert card.read("6fd9")[:3] == bytes.fromhex("00f110")          # EHPLMN
    assert card.read("6f7b") == b"\xff" * 12                          # FPLMN empty
    assert card.read("6f46")[1:].rstrip(b"\xff") == b"mcim-hil"       # SPN
    ecc = card.record("6fb7")
    assert swapped(ecc[:3]) == "112"
    assert card.read("6f5b") == bytes.fromhex("f00000f00000")          # START-HFN
    assert card.read("6f5c") == b"\xff\xff\xff"                        # THRESHOLD
    assert card.record("6f40")[-13] == 0x91                            # MSISDN, international
    for fid in ("6f07", "6fad", "6f78", "6f05", "6f60", "6f61", "6f62", "6f31", "6f56", "6f43"):
        assert card.read(fid)
    # pySim-read probes ePDGId and ePDGSelection with SELECT: absent on an SJA2, and that is fine
    assert card.apdu("00a40004026ff3")[1] == 0x6A82


def test_the_isim_part_pysim_read_reads(card: Reader) -> None:
    card.select_aid(ISIM_AID)
    domain = tlvs(card.read("6f03"))[0x80].decode()
    assert domain == "ims.mnc001.mcc001.3gppnetwork.org"
    assert tlvs(card.read("6f02"))[0x80].decode() == f"{IMSI}@{domain}"
    assert tlvs(card.record("6f04"))[0x80].decode() == f"sip:{IMSI}@{domain}"
    ist = card.read("6f07")
    assert service(ist, 1) and not service(ist, 7)      # P-CSCF address; no SMSR (no such file)
    assert card.record("6f09") == b"\xff" * 64            # P-CSCF: none provisioned
    assert card.record("6fe7") == b"\xff" * 64            # UICC IARI: none
    assert card.read("6fad")[3] == 2
    # its own EF.ISIM_AUTH_KEY, readable only with ADM1 (as EF.USIM_AUTH_KEY)
    card.select("af20")
    assert card.apdu("00b0000001")[1] == 0x6982


def test_user_data_is_pin_protected_and_operator_data_adm_protected(card: Reader) -> None:
    from mcim_hil.emulators.vuicc_fs import ARR_RULES, ADM1_AC, PIN1_AC
    card.select("3f00")
    assert card.select("7f10")
    assert card.select("6f42")[0x8B][2] == ARR_RULES[(PIN1_AC, PIN1_AC)]     # SMSP: user's
    card.select("3f00")
    card.select("7f20")
    assert card.select("6f38")[0x8B][2] == ARR_RULES[(PIN1_AC, ADM1_AC)]     # SST: operator's


# pySim itself, where a lab has it: MCIM_HIL_PYSIM_READ="/path/venv/bin/python /path/pysim/pySim-read.py"
PYSIM_READ = os.environ.get("MCIM_HIL_PYSIM_READ") or shutil.which("pySim-read.py")


@pytest.mark.skipif(PYSIM_READ is None, reason="pySim-read.py not installed (not on PyPI; set MCIM_HIL_PYSIM_READ)")
def test_pysim_read_itself_completes_on_the_virtual_card(card: Reader) -> None:
    from smartcard.System import readers
    card.connection.disconnect()              # pySim connects exclusively
    try:
        index = [str(r) for r in readers()].index(card.connection.getReader())
        done = subprocess.run(shlex.split(PYSIM_READ or "") + ["-p", str(index)], capture_output=True,
                              text=True, timeout=120)
    finally:
        card.connection.connect()
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "Done !" in out, out[-3000:]
    assert "Traceback" not in out and "Can't read" not in out, out[-3000:]
    assert "Autodetected card type: sysmoISIM-SJA2" in out
    assert f"ICCID: {ICCID}" in out and f"IMSI: {IMSI}" in out


# MCIM_HIL_PYSIM_SHELL="/path/venv/bin/python /path/pysim/pySim-shell.py"
PYSIM_SHELL = os.environ.get("MCIM_HIL_PYSIM_SHELL") or shutil.which("pySim-shell.py")


def _shell(index: int, script: str, tmp_path: Path) -> str:
    path = tmp_path / f"script-{index}.txt"
    path.write_text(script)
    done = subprocess.run(shlex.split(PYSIM_SHELL or "") + ["-p", str(index), "--noprompt", "--script", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


@pytest.mark.skipif(PYSIM_SHELL is None, reason="pySim-shell.py not installed (not on PyPI; set MCIM_HIL_PYSIM_SHELL)")
def test_pysim_shell_export_replays_into_a_fresh_virtual_card(card: Reader, tmp_path: Path) -> None:
    from smartcard.System import readers
    from mcim_hil.emulators.pcscd import claim_free_slot
    from mcim_hil.emulators.vuicc import VirtualUicc, create_card_file
    names = [str(r) for r in readers()]
    card.connection.disconnect()
    try:
        exported = _shell(names.index(card.connection.getReader()), "export\n", tmp_path)
    finally:
        card.connection.connect()
    assert "Detected CardModel: SysmocomSJA2" in exported
    # the replay: ADM first (the export writes operator files), factory data (ICCID) left alone
    lines = [line for line in exported.splitlines() if line.startswith(("select ", "update_"))]
    script = "verify_adm 88888888\n" + "\n".join(lines) + "\nselect MF/ADF.ISIM/EF.IMPI\nread_binary_decoded\n"
    state = tmp_path / "fresh.json"
    create_card_file(state, iccid="8988211000000000074", imsi="001010000000074", k=bytes(16),
                     opc=bytes(range(16)), adm1=b"88888888")
    claim = claim_free_slot()
    try:
        with VirtualUicc(state, claim.slot.port, reader=claim.slot.reader):
            replayed = _shell([str(r) for r in readers()].index(claim.slot.reader), script, tmp_path)
    finally:
        claim.release()
    assert "EXCEPTION" not in replayed and "Traceback" not in replayed, replayed[-3000:]
    assert f"{IMSI}@ims.mnc001.mcc001.3gppnetwork.org" in replayed     # the ISIM's IMPI came across
