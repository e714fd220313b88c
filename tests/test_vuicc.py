"""The virtual UICC through the real stack: pcscd + vpcd + pyscard, raw APDUs.

Slot: `Virtual PCD 00 00` (port 35963) by default. VUICC_TEST_PORT and VUICC_TEST_READER
choose another vpcd slot (for a machine where that one is not served).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from smartcard.Exceptions import CardConnectionException
from smartcard.scard import SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1
from smartcard.System import readers

from mcim_hil.aka.auc import AuC
from mcim_hil.aka.milenage import Milenage, c2_sres, c3_kc
from mcim_hil.emulators.vuicc import (
    SJA2_ATR,
    VirtualUicc,
    VirtualUiccError,
    create_card_file,
    reader_for_port,
)

PORT = int(os.environ.get("VUICC_TEST_PORT", "35963"))
READER = os.environ.get("VUICC_TEST_READER") or reader_for_port(PORT) or "Virtual PCD 00 00"

ICCID = "8988211000000123456"
IMSI = "001010123456789"
K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
ADM1 = b"53046284"
PIN1 = b"1234"
USIM_AID = bytes.fromhex("a0000000871002ffffffff8907090000")


def pin_block(pin: bytes) -> bytes:
    return pin.ljust(8, b"\xff")


class Card:
    """A raw pyscard connection with the T=0 chores done the way a terminal does them."""

    def __init__(self, protocol: int = SCARD_PROTOCOL_T0) -> None:
        match = [r for r in readers() if str(r) == READER]
        assert match, f"reader {READER!r} not listed by pcscd"
        self.conn = match[0].createConnection()
        self.conn.connect(protocol)

    def raw(self, apdu: str | bytes) -> tuple[bytes, int]:
        data = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
        resp, sw1, sw2 = self.conn.transmit(list(data))
        return bytes(resp), (sw1 << 8) | sw2

    def send(self, apdu: str | bytes) -> tuple[bytes, int]:
        """Send, then follow '61xx' with GET RESPONSE (TS 102 221 7.3.1.1.4)."""
        data, sw = self.raw(apdu)
        if sw >> 8 == 0x61:
            data, sw = self.raw(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
        return data, sw

    def select(self, fid: str, p1: int = 0x00, p2: int = 0x04) -> tuple[bytes, int]:
        body = bytes.fromhex(fid)
        return self.send(bytes([0x00, 0xA4, p1, p2, len(body)]) + body)

    def select_usim(self) -> None:
        assert self.select(USIM_AID.hex(), p1=0x04, p2=0x0C)[1] == 0x9000

    def verify(self, ref: int, pin: bytes | None) -> int:
        if pin is None:
            return self.raw(bytes([0x00, 0x20, 0x00, ref]))[1]
        return self.raw(bytes([0x00, 0x20, 0x00, ref, 0x08]) + pin_block(pin))[1]

    def read_binary(self, length: int, p1: int = 0, p2: int = 0) -> tuple[bytes, int]:
        return self.raw(bytes([0x00, 0xB0, p1, p2, length]))

    def authenticate(self, rand: bytes, autn: bytes) -> tuple[bytes, int]:
        return self.send(bytes([0x00, 0x88, 0x00, 0x81, 0x22, 0x10]) + rand + b"\x10" + autn)

    def close(self) -> None:
        self.conn.disconnect()


def tlvs(data: bytes) -> dict[int, bytes]:
    """One level of simple TLVs (1-byte tags and lengths), as in an FCP."""
    out, i = {}, 0
    while i < len(data):
        tag, ln = data[i], data[i + 1]
        out[tag] = data[i + 2:i + 2 + ln]
        i += 2 + ln
    return out


def fcp(data: bytes) -> dict[int, bytes]:
    assert data[0] == 0x62 and data[1] == len(data) - 2
    return tlvs(data[2:])


@pytest.fixture
def card_file(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    create_card_file(path, iccid=ICCID, imsi=IMSI, k=K, opc=OPC, adm1=ADM1, pin1=PIN1)
    return path


@pytest.fixture
def vuicc(card_file: Path) -> Iterator[VirtualUicc]:
    with VirtualUicc(card_file, PORT, reader=READER) as card:
        yield card


@pytest.fixture
def card(vuicc: VirtualUicc) -> Iterator[Card]:
    c = Card()
    yield c
    c.close()


# --- ATR and transmission ----------------------------------------------------------


def test_atr_is_sja2_and_t0(card: Card) -> None:
    assert bytes(card.conn.getATR()) == SJA2_ATR
    assert card.conn.getProtocol() == SCARD_PROTOCOL_T0


def test_t1_refused_by_t0_only_card(vuicc: VirtualUicc) -> None:
    with pytest.raises(CardConnectionException):
        Card(SCARD_PROTOCOL_T1)


def test_t0_get_response_flow(card: Card) -> None:
    data, sw = card.raw("00a40004023f00")
    assert data == b"" and sw >> 8 == 0x61
    n = sw & 0xFF
    assert card.raw(bytes([0, 0xC0, 0, 0, n + 1]))[1] == 0x6C00 | n  # wrong Le: '6Cxx'
    first, sw = card.raw(bytes([0, 0xC0, 0, 0, 4]))  # partial read: the rest stays pending
    assert len(first) == 4 and sw == 0x6100 | (n - 4)
    rest, sw = card.raw(bytes([0, 0xC0, 0, 0, n - 4]))
    assert sw == 0x9000 and fcp(first + rest)[0x83] == b"\x3f\x00"
    assert card.raw("00c0000010")[1] == 0x6985  # nothing pending any more


def test_t1_card_answers_directly(tmp_path: Path) -> None:
    path = tmp_path / "t1.json"
    t1_atr = bytes.fromhex("3b800181")  # TD1 = T=1 only, TCK
    create_card_file(path, iccid=ICCID, imsi=IMSI, k=K, opc=OPC, adm1=ADM1, atr=t1_atr)
    with VirtualUicc(path, PORT, reader=READER):
        c = Card(SCARD_PROTOCOL_T1)
        try:
            assert c.conn.getProtocol() == SCARD_PROTOCOL_T1
            data, sw = c.raw("00a40004023f0000")
            assert sw == 0x9000 and fcp(data)[0x83] == b"\x3f\x00"
            assert c.raw("00a4000c022fe2")[1] == 0x9000
            data, sw = c.raw("00b0000010")  # 16 asked, 10 there
            assert sw == 0x6282 and len(data) == 10
        finally:
            c.close()


# --- SELECT and FCP ----------------------------------------------------------------


def test_select_mf_fcp(card: Card) -> None:
    data, sw = card.select("3f00")
    assert sw == 0x9000
    t = fcp(data)
    assert t[0x82] == b"\x78\x21" and t[0x83] == b"\x3f\x00" and t[0x8A] == b"\x05"
    pin_status = tlvs(t[0xC6])
    assert pin_status[0x90] == b"\x40"  # PIN1 disabled, ADM1 enabled
    assert card.select("2fe2", p2=0x0C) == (b"", 0x9000)


def test_select_ef_fcp(card: Card) -> None:
    data, sw = card.select("2fe2")
    assert sw == 0x9000
    t = fcp(data)
    assert t[0x82] == b"\x41\x21" and t[0x83] == b"\x2f\xe2"
    assert t[0x80] == b"\x00\x0a" and t[0x88] == bytes([0x02 << 3])
    assert t[0x8B][:2] == b"\x2f\x06"
    data, sw = card.select("2f00")
    assert fcp(data)[0x82] == b"\x42\x21\x00\x20\x03"  # linear fixed, 3 records of 32 (USIM, ISIM, free)


def test_select_by_aid_partial_and_path(card: Card) -> None:
    assert card.select("7fff6f07", p1=0x08)[1] == 0x6A82  # no application active yet
    data, sw = card.select("a0000000871002", p1=0x04)
    assert sw == 0x9000
    t = fcp(data)
    assert t[0x84] == USIM_AID and t[0x82] == b"\x78\x21"
    data, sw = card.select("7fff6f07", p1=0x08)
    t = fcp(data)
    assert sw == 0x9000 and t[0x83] == b"\x6f\x07" and t[0x80] == b"\x00\x09"
    assert t[0x88] == bytes([0x07 << 3])
    assert card.select("7f206f07", p1=0x08)[1] == 0x9000  # DF.GSM keeps its own EF.IMSI
    assert card.select("6f07", p1=0x09)[1] == 0x9000  # path from the current DF (DF.GSM)
    assert card.select("6f5b", p1=0x09)[1] == 0x6A82  # EF.START-HFN is in ADF.USIM, not DF.GSM
    assert card.select("3f00")[1] == 0x9000
    assert card.select("7f20", p1=0x01)[1] == 0x9000
    data, sw = card.send("00a4030400")  # parent of DF.GSM is the MF
    assert sw == 0x9000 and fcp(data)[0x83] == b"\x3f\x00"
    assert card.select("a000000087100999", p1=0x04)[1] == 0x6A82


def test_select_errors(card: Card) -> None:
    assert card.select("6f99")[1] == 0x6A82
    assert card.raw("00a40004013f")[1] == 0x6700
    assert card.raw("00a40504023f00")[1] == 0x6A86
    assert card.raw("a0a40000023f00")[1] == 0x6E00  # GSM SIM class
    assert card.raw("00ee000000")[1] == 0x6D00
    assert card.raw("00f2000000")[1] == 0x6E00  # STATUS needs CLA 80


def test_status(card: Card) -> None:
    card.select_usim()
    data, sw = card.raw("80f2000000")
    assert sw >> 8 == 0x6C
    data, sw = card.raw(bytes.fromhex("80f20000") + bytes([sw & 0xFF]))
    assert sw == 0x9000 and fcp(data)[0x84] == USIM_AID
    assert card.raw("80f2000c00") == (b"", 0x9000)


# --- reading --------------------------------------------------------------------------


def test_read_iccid_and_imsi(card: Card) -> None:
    card.select("2fe2", p2=0x0C)
    data, sw = card.read_binary(10)
    assert sw == 0x9000 and data == bytes.fromhex("988812010000103254f6")
    card.select_usim()
    data, sw = card.read_binary(9, p1=0x80 | 0x07)  # by SFI
    assert sw == 0x9000 and data == bytes.fromhex("080910101032547698")
    data, sw = card.read_binary(4, p1=0x80 | 0x03)  # EF.AD: MNC length 2
    assert data == bytes.fromhex("00000002")
    assert card.read_binary(0x20, p1=0x80 | 0x07)[1] == 0x6C09  # wrong Le
    data, sw = card.read_binary(3, p2=6)  # offset 6
    assert data == bytes.fromhex("547698")
    assert card.read_binary(1, p2=9)[1] == 0x6B00  # beyond the end


def test_read_record_ef_dir(card: Card) -> None:
    card.select("2f00", p2=0x0C)
    data, sw = card.raw("00b2010420")
    assert sw == 0x9000 and data[0] == 0x61
    app = tlvs(data[2:2 + data[1]])
    assert app[0x4F] == USIM_AID and app[0x50] == b"USIM"
    assert card.raw("00b2040420")[1] == 0x6A83   # records: USIM, ISIM, a free one
    assert card.raw("00b2010410")[1] == 0x6C20
    assert card.read_binary(4)[1] == 0x6981  # linear fixed file: no READ BINARY
    card.select("2fe2", p2=0x0C)
    assert card.raw("00b2010410")[1] == 0x6981


def test_no_ef_selected(card: Card) -> None:
    card.select("3f00", p2=0x0C)
    assert card.read_binary(4)[1] == 0x6986


# --- PINs and access ----------------------------------------------------------------


def test_verify_pin1_counts_down(card: Card) -> None:
    assert card.verify(0x01, None) == 0x63C3
    assert card.verify(0x01, b"0000") == 0x63C2
    assert card.verify(0x01, b"9999") == 0x63C1
    assert card.verify(0x01, None) == 0x63C1
    assert card.verify(0x01, PIN1) == 0x9000
    assert card.verify(0x01, None) == 0x9000  # verified
    assert card.verify(0x01, b"0000") == 0x63C2  # counter back to 3, then one down
    assert card.raw(bytes([0, 0x20, 0, 1, 4]) + b"1234")[1] == 0x6700
    assert card.verify(0x05, PIN1) == 0x6A88


def test_pin1_blocks_at_zero(card: Card) -> None:
    for left in (2, 1, 0):
        assert card.verify(0x01, b"0000") == 0x63C0 | left
    assert card.verify(0x01, PIN1) == 0x6983
    assert card.verify(0x01, None) == 0x6983


def test_enabled_pin1_guards_imsi(card: Card) -> None:
    assert card.raw(bytes([0, 0x28, 0, 1, 8]) + pin_block(PIN1))[1] == 0x9000  # ENABLE
    card.conn.reconnect(SCARD_PROTOCOL_T0)  # warm reset: the verification is gone
    data, sw = card.select("3f00")
    assert tlvs(fcp(data)[0xC6])[0x90] == b"\xc0"  # PIN1 now enabled
    card.select_usim()
    assert card.read_binary(9, p1=0x87)[1] == 0x6982
    assert card.verify(0x01, PIN1) == 0x9000
    assert card.read_binary(9, p1=0x87) == (bytes.fromhex("080910101032547698"), 0x9000)
    assert card.raw(bytes([0, 0x26, 0, 1, 8]) + pin_block(PIN1))[1] == 0x9000  # DISABLE


def test_adm1_and_update_imsi(card: Card) -> None:
    new_imsi = bytes.fromhex("082982608200002080")  # 228062800000208
    card.select_usim()
    card.select("6f07", p2=0x0C)
    assert card.raw(b"\x00\xd6\x00\x00\x09" + new_imsi)[1] == 0x6982
    assert card.verify(0x0A, b"00000000") == 0x63C2
    assert card.verify(0x0A, ADM1) == 0x9000
    assert card.verify(0x0A, None) == 0x9000
    assert card.raw(b"\x00\xd6\x00\x00\x09" + new_imsi)[1] == 0x9000
    assert card.read_binary(9) == (new_imsi, 0x9000)
    assert card.raw(b"\x00\xd6\x00\x08\x02\x00\x00")[1] == 0x6700  # past the end
    card.select("3f00", p2=0x0C)
    card.select("2fe2", p2=0x0C)
    assert card.raw(b"\x00\xd6\x00\x00\x01\x00")[1] == 0x6982  # ICCID is factory data


def test_key_files_need_adm1(card: Card) -> None:
    card.select_usim()
    card.select("af20", p2=0x0C)
    assert card.read_binary(33)[1] == 0x6982
    assert card.verify(0x0A, ADM1) == 0x9000
    data, sw = card.read_binary(33)
    assert sw == 0x9000 and data == b"\x14" + K + OPC  # cfg 0x14: Milenage with OPc


# --- AUTHENTICATE ------------------------------------------------------------------


def parse_auth_ok(data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    assert data[0] == 0xDB
    i, parts = 1, []
    while i < len(data):
        parts.append(data[i + 1:i + 1 + data[i]])
        i += 1 + data[i]
    res, ck, ik, kc = parts
    return res, ck, ik, kc


def test_authenticate_matches_auc(card: Card) -> None:
    card.select_usim()
    auc = AuC(K, OPC)
    av = auc.generate_av()
    data, sw = card.authenticate(av.rand, av.autn)
    assert sw == 0x9000 and len(data) == 53
    res, ck, ik, kc = parse_auth_ok(data)
    assert (res, ck, ik, kc) == (av.xres, av.ck, av.ik, av.kc)


def test_wrap_protection_refuses_far_sqn(card: Card) -> None:
    # TS 35.208 set 1 carries SQN ff9bb4d0b607: far beyond delta from a fresh card's
    # SQN_MS 0 (TS 33.102 C.2.1), so the card asks for a resync instead of accepting.
    card.select_usim()
    rand = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
    autn = bytes.fromhex("55f328b43577b9b94a9ffac354dfafb3")
    data, sw = card.authenticate(rand, autn)
    assert sw == 0x9000 and data[:2] == b"\xdc\x0e"


def test_mac_failure(card: Card) -> None:
    card.select_usim()
    av = AuC(K, OPC).generate_av()
    bad = bytearray(av.autn)
    bad[-1] ^= 0x01
    assert card.authenticate(av.rand, bytes(bad)) == (b"", 0x9862)
    assert card.authenticate(av.rand, av.autn)[1] == 0x9000  # the card state did not move


def test_replay_gives_auts_that_resyncs_auc(card: Card) -> None:
    card.select_usim()
    auc = AuC(K, OPC)
    av = auc.generate_av()
    assert card.authenticate(av.rand, av.autn)[1] == 0x9000
    data, sw = card.raw(bytes([0, 0x88, 0, 0x81, 0x22, 0x10]) + av.rand + b"\x10" + av.autn)
    assert sw == 0x6110  # T=0: 16 bytes waiting
    data, sw = card.raw("00c0000010")
    assert sw == 0x9000 and data[:2] == b"\xdc\x0e"
    auc.resync(av.rand, data[2:])  # MAC-S good: no exception
    # A fresh AuC that knows nothing of the card's SQN is brought up to it
    behind = AuC(K, OPC)
    av0 = behind.generate_av()
    data, sw = card.authenticate(av0.rand, av0.autn)
    assert data[:2] == b"\xdc\x0e"
    behind.resync(av0.rand, data[2:])
    av1 = behind.generate_av()
    assert card.authenticate(av1.rand, av1.autn)[1] == 0x9000


def test_authenticate_gsm_context(card: Card) -> None:
    card.select_usim()
    rand = bytes(range(16))
    data, sw = card.send(b"\x00\x88\x00\x80\x11\x10" + rand)
    res, ck, ik, _ak = Milenage(K, OPC).f2345(rand)
    assert sw == 0x9000 and data == b"\x04" + c2_sres(res) + b"\x08" + c3_kc(ck, ik)


def test_authenticate_needs_usim(card: Card) -> None:
    av = AuC(K, OPC).generate_av()
    assert card.authenticate(av.rand, av.autn)[1] == 0x6985  # MF, no application
    card.select_usim()
    assert card.send(b"\x00\x88\x00\x81\x11\x10" + av.rand)[1] == 0x6700  # RAND only
    assert card.send(b"\x00\x88\x00\x82\x22\x10" + av.rand + b"\x10" + av.autn)[1] == 0x6A86


# --- persistence and life cycle --------------------------------------------------------


def test_state_survives_restart(card_file: Path) -> None:
    new_imsi = bytes.fromhex("082982608200002080")
    auc = AuC(K, OPC)
    av = auc.generate_av()
    with VirtualUicc(card_file, PORT, reader=READER):
        c = Card()
        c.select_usim()
        assert c.authenticate(av.rand, av.autn)[1] == 0x9000
        assert c.verify(0x01, b"0000") == 0x63C2
        assert c.verify(0x0A, ADM1) == 0x9000
        c.select("6f07", p2=0x0C)
        assert c.raw(b"\x00\xd6\x00\x00\x09" + new_imsi)[1] == 0x9000
        c.close()
    with VirtualUicc(card_file, PORT, reader=READER):
        c = Card()
        c.select_usim()
        assert c.read_binary(9, p1=0x87) == (new_imsi, 0x9000)
        assert c.verify(0x01, None) == 0x63C2  # counter kept
        assert c.verify(0x0A, None) == 0x63C3  # ADM1 verified state did not survive
        data, sw = c.authenticate(av.rand, av.autn)  # SQN array kept: replay refused
        assert data[:2] == b"\xdc\x0e"
        c.close()
    state = json.loads(card_file.read_text())
    assert state["pins"]["01"]["tries"] == 2
    assert oct(card_file.stat().st_mode & 0o777) == "0o600"


def test_stop_is_clean_and_quiet(card_file: Path) -> None:
    v = VirtualUicc(card_file, PORT, reader=READER)
    v.start()
    c = Card()
    c.select_usim()
    c.verify(0x0A, ADM1)
    av = AuC(K, OPC).generate_av()
    assert c.authenticate(av.rand, av.autn)[1] == 0x9000
    c.close()
    assert v.stderr_tail() == ""  # the card logs nothing, least of all keys or PINs
    proc = v._proc
    v.stop()
    assert proc is not None and proc.returncode == 0
    assert not v.running
    v.stop()  # idempotent


def test_crash_is_reported_with_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "mcim-hil-vuicc/1", "atr": "3b00", "k": "' + K.hex() + '"')
    v = VirtualUicc(bad, PORT, reader=READER)
    with pytest.raises(VirtualUiccError) as err:
        v.start()
    text = str(err.value)
    assert "malformed" in text and "exit code 2" in text
    assert K.hex() not in text


def test_killed_child_reported_on_stop(card_file: Path) -> None:
    v = VirtualUicc(card_file, PORT, reader=READER)
    v.start()
    assert v._proc is not None
    v._proc.send_signal(signal.SIGKILL)
    v._proc.wait()
    with pytest.raises(VirtualUiccError, match="crashed"):
        v.stop()


def test_card_file_checks_inputs(tmp_path: Path) -> None:
    with pytest.raises(VirtualUiccError):
        create_card_file(tmp_path / "x.json", iccid="12", imsi=IMSI, k=K, opc=OPC, adm1=ADM1)
    with pytest.raises(VirtualUiccError) as err:
        create_card_file(tmp_path / "x.json", iccid=ICCID, imsi=IMSI, k=K[:8], opc=OPC, adm1=ADM1)
    assert K[:8].hex() not in str(err.value)
    assert not (tmp_path / "x.json").exists()


def test_card_dies_with_its_harness(card_file: Path) -> None:
    # A harness that dies without stop() must not leave a card holding the slot.
    import subprocess
    import sys
    import time

    script = (
        "import os, sys\n"
        "from mcim_hil.emulators.vuicc import VirtualUicc\n"
        f"v = VirtualUicc({str(card_file)!r}, {PORT}, reader={READER!r})\n"
        "v.start()\n"
        "print(v._proc.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    card_pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(card_pid, 0)
        except ProcessLookupError:
            break
        try:
            with open(f"/proc/{card_pid}/stat") as fh:  # a zombie waits for init to reap it
                if fh.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"card process {card_pid} outlived its harness")


def test_update_record_needs_adm(card: Card) -> None:
    card.select("2f00", p2=0x0C)
    record = bytes.fromhex("61124f10") + USIM_AID + b"\xff" * 12
    assert card.raw(b"\x00\xdc\x01\x04\x20" + record)[1] == 0x6982
    assert card.verify(0x0A, ADM1) == 0x9000
    assert card.raw(b"\x00\xdc\x01\x04\x1f" + record[:31])[1] == 0x6700
    assert card.raw(b"\x00\xdc\x01\x04\x20" + record)[1] == 0x9000
    assert card.raw("00b2010420") == (record, 0x9000)


def test_operator_milenage_constants(card: Card) -> None:
    # EF.MILENAGE_CFG (DF.SYSTEM/6F21) holds r1..r5 and c1..c5: the card must use them.
    r = (0x40, 0x08, 0x20, 0x40, 0x60)
    c = tuple(bytes(15) + bytes([n]) for n in (0x10, 0x11, 0x12, 0x14, 0x18))
    assert card.verify(0x0A, ADM1) == 0x9000
    card.select("a515", p2=0x0C)
    card.select("6f21", p2=0x0C)
    cfg = bytes(r) + b"".join(c)
    assert card.raw(bytes([0x00, 0xD6, 0x00, 0x00, len(cfg)]) + cfg)[1] == 0x9000
    card.select_usim()
    standard = AuC(K, OPC).generate_av()
    assert card.authenticate(standard.rand, standard.autn)[1] == 0x9862
    av = AuC(K, OPC, r=r, c=c).generate_av()
    data, sw = card.authenticate(av.rand, av.autn)
    assert sw == 0x9000 and parse_auth_ok(data)[:3] == (av.xres, av.ck, av.ik)


def _within(seconds: float, call):  # noqa: ANN001, ANN202 - a test helper
    """call() in a thread; pytest.fail if it has not returned in time (a wedged reader)."""
    import threading
    result: list = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"no answer within {seconds} s: the reader is wedged")
    return result[0]


@pytest.mark.parametrize("byte", [0xA0, 0x00, 0x01, 0x02, 0x03])
def test_a_one_byte_apdu_is_answered_wrong_length(vuicc: VirtualUicc, byte: int) -> None:
    # vpcd frames a 1-byte APDU like one of its control bytes; the card must still answer it
    card = Card()
    try:
        assert _within(10, lambda: card.raw(bytes([byte]))) == (b"", 0x6700)
        data, sw = _within(10, lambda: card.select("3F00"))
        assert sw == 0x9000 and fcp(data)[0x83] == bytes.fromhex("3F00")
    finally:
        card.close()
    # a later connection (what `bench check` opens) works too
    again = Card()
    try:
        assert _within(10, lambda: again.select("3F00"))[1] == 0x9000
    finally:
        again.close()
