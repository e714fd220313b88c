"""The UICC driver and the SJA2 profile through pcscd + vpcd + the virtual UICC, on this
helper's slots "mcim-hil vPCD A 00 00" (TCP 35965) and "A 00 01" (35966, kept empty).
The scripted T=0 / AT+CSIM tests are in test_uicc_t0.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest

from mcim_hil.aka import auc as auc_mod
from mcim_hil.drivers.errors import CardError, DeviceNotFound, SafetyRefused
from mcim_hil.drivers.hook import CommandEvent, CommandHook
from mcim_hil.drivers.sja2 import ProvisioningFailed, Sja2
from mcim_hil.drivers.uicc import (
    AuthMacFailure, AuthSuccess, AuthSyncFailure, FileNotFound, RecordNotFound, SecurityStatusNotSatisfied,
    Uicc, WrongPin,
)
from mcim_hil.drivers.uicc_files import EF_ICCID, EF_IMSI, EF_USIM_AUTH_KEY, MILENAGE_OPC, AuthKey, MilenageConfig
from mcim_hil.drivers.uicc_transport import CsimTransport, PcscTransport, Transport, list_readers
from mcim_hil.emulators import vuicc

H = bytes.fromhex

# Defaults: this helper's slots; tests/conftest.py sets the variables to slots it has claimed.
READER = os.environ.get("MCIM_HIL_UICC_TEST_READER", "mcim-hil vPCD A 00 00")
PORT = int(os.environ.get("MCIM_HIL_UICC_TEST_PORT", "35965"))
EMPTY_READER = os.environ.get("MCIM_HIL_UICC_TEST_EMPTY_READER", "mcim-hil vPCD A 00 01")  # never given a card here
SJA2_ATR = H("3b9f96801f878031e073fe211b674a4c753034054ba9")
USIM_AID = H("a0000000871002ffffffff8907090000")
ICCID = "8949440000001155314"
IMSI = "001010123456789"
K = H("465b5ce8b199b49faa5f0a2ee238a6bc")      # TS 35.208 set 1
OPC = H("cd63cb71954a9f4e48a5994e37a02baf")
ADM1 = b"53253116"
PIN = b"1234"


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "card.json"
    vuicc.create_card_file(state, iccid=ICCID, imsi=IMSI, k=K, opc=OPC, adm1=ADM1, pin1=PIN)
    with vuicc.VirtualUicc(state, PORT, reader=READER):
        yield state


@pytest.fixture
def events() -> list[CommandEvent]:
    return []


@pytest.fixture
def uicc(card: Path, events: list[CommandEvent]) -> Iterator[Uicc]:
    hook = CommandHook()
    hook.subscribe(events.append)
    with Uicc(PcscTransport.open(READER), hook) as u:
        yield u


def _card_in(reader: str) -> bool:
    from smartcard import scard
    _, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    try:
        _, states = scard.SCardGetStatusChange(context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        return bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(context)


def _adm_tries(uicc: Uicc) -> int | None:
    return uicc.pin_tries_left(0x0A)


# ---- opening readers

def test_open_by_name_regex_and_index(card: Path) -> None:
    for spec in (READER, f"re:{re.escape(READER[-10:])}$", re.compile(re.escape(READER)),
                 list_readers().index(READER)):
        with PcscTransport.open(spec) as t:
            assert t.name == READER
            assert t.atr == SJA2_ATR and t.protocol == "T=0" and t.share_mode == "shared"


def test_exclusive_open_keeps_others_out(card: Path) -> None:
    with PcscTransport.open(READER, shared=False) as t:
        assert t.share_mode == "exclusive"
        with pytest.raises(CardError, match=f"{READER}: SCardConnect: card held by another application"):
            PcscTransport.open(READER)


def test_unknown_reader_lists_the_readers_present() -> None:
    with pytest.raises(DeviceNotFound) as exc:
        PcscTransport.open("no such reader")
    assert "no reader named 'no such reader'" in str(exc.value)
    assert repr(READER) in str(exc.value) and repr(EMPTY_READER) in str(exc.value)
    with pytest.raises(DeviceNotFound, match=re.escape("no reader matches /^nothing/")):
        PcscTransport.open(re.compile("^nothing"))
    with pytest.raises(DeviceNotFound, match="no reader at index 999"):
        PcscTransport.open(999)


def test_t1_only_is_refused_by_a_t0_card(card: Path) -> None:
    with pytest.raises(CardError, match=f"{READER}: SCardConnect: .*asked for T=1"):
        PcscTransport.open(READER, protocol="T1")


def test_empty_reader_says_no_card() -> None:
    if _card_in(EMPTY_READER):
        pytest.skip(f"{EMPTY_READER!r} holds a card that is not ours: cannot show the empty-reader error")
    with pytest.raises(DeviceNotFound, match=f"{EMPTY_READER}: SCardConnect: no card in the reader"):
        PcscTransport.open(EMPTY_READER)


# ---- files

def test_select_mf_path_aid_and_status(uicc: Uicc) -> None:
    mf = uicc.select("3F00")
    assert mf.is_df and mf.fid == "3F00"
    iccid = uicc.select("3F00/2FE2")
    assert (iccid.fid, iccid.structure, iccid.size) == ("2FE2", "transparent", 10)
    adf = uicc.select_adf_usim()
    assert adf.is_df and adf.df_name == USIM_AID
    imsi = uicc.select("6F07")
    assert (imsi.fid, imsi.size, imsi.sfi) == ("6F07", 9, 7)
    assert uicc.status().df_name == USIM_AID  # STATUS: the current application
    assert uicc.select("7FFF/6FAD").fid == "6FAD"
    assert uicc.select(aid=USIM_AID[:7]).df_name == USIM_AID  # partial AID
    assert uicc.select("3F00/7F20/6F07").fid == "6F07"


def test_read_iccid_imsi_ad(uicc: Uicc) -> None:
    assert uicc.read_iccid() == ICCID
    assert uicc.read_imsi() == IMSI
    assert uicc.read_ad().mnc_len == 2
    assert uicc.atr == SJA2_ATR


def test_read_binary_offset_and_record(uicc: Uicc) -> None:
    uicc.select("3F00/2FE2")
    assert uicc.read_binary(4, offset=2) == H("989444000000115513f4")[2:6]
    fcp = uicc.select("3F00/2F00")
    record = uicc.read_record(1)
    assert len(record) == fcp.record_length and record[0] == 0x61  # application template
    with pytest.raises(RecordNotFound, match="READ RECORD 3F00/2F00 #9: SW 6A83"):
        uicc.read_record(9)


def test_file_not_found_names_reader_command_and_sw(uicc: Uicc, events: list[CommandEvent]) -> None:
    with pytest.raises(FileNotFound) as exc:
        uicc.select("3F00/6F99")
    assert str(exc.value) == f"{READER}: SELECT 3F00/6F99: SW 6A82 (file or application not found)"
    assert exc.value.sw == 0x6A82
    assert events[-1].status == "6A82" and events[-1].command == "SELECT 3F00/6F99"


def test_update_needs_adm_then_works(uicc: Uicc) -> None:
    uicc.select_ef(EF_IMSI)
    with pytest.raises(SecurityStatusNotSatisfied, match="UPDATE BINARY ADF.USIM/EF.IMSI: SW 6982"):
        uicc.update_binary(EF_IMSI.encode("001019999999999"))
    uicc.verify_adm(ADM1)
    uicc.update_ef(EF_IMSI, "001019999999999")
    assert uicc.read_imsi() == "001019999999999"
    with pytest.raises(SafetyRefused, match="factory data"):
        uicc.update_ef(EF_ICCID, "8949440000001155322")
    assert uicc.read_iccid() == ICCID


def test_update_record_with_adm(uicc: Uicc) -> None:
    uicc.verify_adm(ADM1)
    uicc.select("3F00/2F00")
    original = uicc.read_record(1)
    changed = original[:-1] + b"\x00"
    uicc.update_record(1, changed)
    assert uicc.read_record(1) == changed
    uicc.update_record(1, original)
    assert uicc.read_record(1) == original


def test_reconnect_drops_the_verified_adm(uicc: Uicc) -> None:
    uicc.verify_adm(ADM1)
    assert _adm_tries(uicc) is None
    uicc.reconnect()
    assert uicc.current is None
    assert _adm_tries(uicc) == 3
    assert uicc.read_imsi() == IMSI


# ---- PIN and ADM

def test_wrong_pin_counts_down_and_guard_keeps_the_last_try(uicc: Uicc) -> None:
    assert uicc.pin_tries_left(0x01) == 3
    with pytest.raises(WrongPin) as first:
        uicc.verify_pin(b"0000")
    assert first.value.tries_left == 2 and "SW 63C2" in str(first.value)
    with pytest.raises(WrongPin) as second:
        uicc.verify_pin(b"0000")
    assert second.value.tries_left == 1 and "SW 63C1" in str(second.value)
    assert uicc.pin_tries_left(0x01) == 1
    with pytest.raises(SafetyRefused, match="1 tries left"):
        uicc.verify_pin(b"0000")
    assert uicc.pin_tries_left(0x01) == 1
    uicc.verify_pin(PIN, min_tries=1)  # the right PIN, spending no try
    assert uicc.pin_tries_left(0x01) is None  # verified


def test_adm_guard_refuses_at_one_try_and_sends_no_verify(uicc: Uicc, events: list[CommandEvent]) -> None:
    wrong = b"00000000"
    with pytest.raises(WrongPin):
        uicc.verify_adm(wrong)
    with pytest.raises(WrongPin) as exc:
        uicc.verify_adm(wrong)
    assert exc.value.tries_left == 1
    events.clear()
    with pytest.raises(SafetyRefused) as refused:
        uicc.verify_adm(ADM1)
    message = str(refused.value)
    assert message.startswith(f"{READER}: VERIFY ADM1: refused: 1 tries left")
    assert "block" in message and ADM1.decode() not in message and ADM1.hex() not in message
    # only the counter query went out, no VERIFY with data
    assert [(e.command, e.request) for e in events] == [("VERIFY ADM1 (tries left)", H("0020000a00"))]
    assert _adm_tries(uicc) == 1


def test_adm_verified_and_secret_events(uicc: Uicc, events: list[CommandEvent]) -> None:
    uicc.verify_adm(ADM1)
    verify = [e for e in events if e.command == "VERIFY ADM1"]
    assert len(verify) == 1 and verify[0].secret and verify[0].status == "9000"
    assert _adm_tries(uicc) is None  # already verified: the next verify_adm sends nothing
    uicc.verify_adm(ADM1)
    assert len([e for e in events if e.command == "VERIFY ADM1"]) == 1
    key = uicc.read_ef(EF_USIM_AUTH_KEY)
    assert key == AuthKey(MILENAGE_OPC, K, OPC)
    reads = [e for e in events if e.command.startswith("READ BINARY ADF.USIM/EF.USIM_AUTH_KEY")]
    assert reads and all(e.secret for e in reads)


# ---- AUTHENTICATE

def test_authenticate_matches_the_auc(uicc: Uicc) -> None:
    auc = auc_mod.AuC(K, OPC)
    av = auc.generate_av()
    uicc.select_adf_usim()
    result = uicc.authenticate(av.rand, av.autn)
    assert isinstance(result, AuthSuccess)
    assert (result.res, result.ck, result.ik) == (av.xres, av.ck, av.ik)
    assert result.kc == av.kc  # UST service 27 on: Kc comes too


def test_replayed_vector_gives_auts_the_auc_accepts(uicc: Uicc) -> None:
    auc = auc_mod.AuC(K, OPC)
    av = auc.generate_av()
    uicc.select_adf_usim()
    assert isinstance(uicc.authenticate(av.rand, av.autn), AuthSuccess)
    replay = uicc.authenticate(av.rand, av.autn)
    assert isinstance(replay, AuthSyncFailure) and len(replay.auts) == 14
    auc.resync(av.rand, replay.auts)
    fresh = auc.generate_av()
    assert isinstance(uicc.authenticate(fresh.rand, fresh.autn), AuthSuccess)


def test_wrong_mac_raises_auth_mac_failure(uicc: Uicc) -> None:
    av = auc_mod.AuC(K, OPC).generate_av()
    uicc.select_adf_usim()
    tampered = av.autn[:-1] + bytes([av.autn[-1] ^ 0x01])
    with pytest.raises(AuthMacFailure) as exc:
        uicc.authenticate(av.rand, tampered)
    assert exc.value.sw == 0x9862 and "AUTHENTICATE: SW 9862" in str(exc.value)


# ---- SJA2 profile

NEW_IMSI = "228062800000208"
NEW_K = H("0396eb317b6d1c36f19c1c84cd6ffd16")
NEW_OPC = H("53c15671c60a4b731c55b4a441c0bde2")


def test_sja2_matches_its_atrs(uicc: Uicc) -> None:
    assert Sja2.matches(uicc.atr)
    assert not Sja2.matches(H("3b9f96801f878031e073fe211b674a4c753034054baa"))


def test_sja2_program_read_back_and_authenticate_with_new_k(uicc: Uicc, events: list[CommandEvent]) -> None:
    sja2 = Sja2(uicc)
    sja2.program(NEW_IMSI, NEW_K, NEW_OPC, adm1=ADM1, mnc_len=3, reset_sqn=True)
    profile = sja2.read_back()
    assert (profile.iccid, profile.imsi, profile.imsi_gsm, profile.mnc_len) == (ICCID, NEW_IMSI, NEW_IMSI, 3)
    assert profile.usim_auth == MILENAGE_OPC and profile.sim_auth == MILENAGE_OPC
    assert NEW_K.hex() not in repr(profile)
    keys = sja2.read_keys()
    assert (keys.usim.k, keys.usim.op_opc) == (NEW_K, NEW_OPC) and keys.sim is not None and keys.sim.k == NEW_K
    assert NEW_K.hex() not in repr(keys)
    assert not any("2FE2" in e.command and e.command.startswith("UPDATE") for e in events)  # ICCID untouched
    writes = [e for e in events if "AUTH_KEY" in e.command and e.command.startswith("UPDATE")]
    assert len(writes) == 2 and all(e.secret for e in writes)

    auc = auc_mod.AuC(NEW_K, NEW_OPC)
    av = auc.generate_av()
    uicc.select_adf_usim()
    result = uicc.authenticate(av.rand, av.autn)
    assert isinstance(result, AuthSuccess) and result.res == av.xres
    old = auc_mod.AuC(K, OPC).generate_av()
    with pytest.raises(AuthMacFailure):  # the old key is gone
        uicc.authenticate(old.rand, old.autn)


def test_sja2_program_milenage_constants(uicc: Uicc) -> None:
    r = (32, 64, 96, 0, 16)
    c = tuple(bytes(15) + bytes([b]) for b in (0x10, 0x11, 0x12, 0x14, 0x18))
    Sja2(uicc).program(NEW_IMSI, NEW_K, NEW_OPC, adm1=ADM1, milenage_r=r, milenage_c=c)
    assert Sja2(uicc).read_back().milenage == MilenageConfig(r, c)
    av = auc_mod.AuC(NEW_K, NEW_OPC, r=r, c=c).generate_av()
    uicc.select_adf_usim()
    result = uicc.authenticate(av.rand, av.autn)
    assert isinstance(result, AuthSuccess) and result.res == av.xres


def test_sja2_program_refused_by_adm_guard_writes_nothing(uicc: Uicc, events: list[CommandEvent]) -> None:
    for _ in range(2):
        with pytest.raises(WrongPin):
            uicc.verify_adm(b"99999999")
    events.clear()
    with pytest.raises(SafetyRefused):
        Sja2(uicc).program(NEW_IMSI, NEW_K, NEW_OPC, adm1=ADM1)
    assert [e.command for e in events] == ["VERIFY ADM1 (tries left)"]
    assert uicc.read_imsi() == IMSI


def test_sja2_program_rejects_bad_input_before_touching_the_card(uicc: Uicc, events: list[CommandEvent]) -> None:
    with pytest.raises(ValueError):
        Sja2(uicc).program(NEW_IMSI, NEW_K[:15], NEW_OPC, adm1=ADM1)
    with pytest.raises(ValueError):
        Sja2(uicc).program("12a", NEW_K, NEW_OPC, adm1=ADM1)
    assert events == []


class FailingUpdate(Transport):
    """The real card, except that the n-th UPDATE BINARY is answered '6581' (memory problem)
    without reaching it: a write failing half-way cannot be asked of the card on demand."""

    def __init__(self, inner: PcscTransport, fail_at: int) -> None:
        self.inner, self.fail_at, self.updates = inner, fail_at, 0
        self.name, self.atr, self.protocol = inner.name, inner.atr, inner.protocol

    def transmit(self, apdu: bytes, *, secret: bool = False) -> tuple[bytes, int]:
        if apdu[1] == 0xD6:
            self.updates += 1
            if self.updates == self.fail_at:
                return b"", 0x6581
        return self.inner.transmit(apdu, secret=secret)

    def close(self) -> None:
        self.inner.close()


def test_sja2_failed_program_restores_the_old_contents(card: Path) -> None:
    with Uicc(PcscTransport.open(READER)) as plain:
        before = Sja2(plain).snapshot(adm1=ADM1)
    with Uicc(FailingUpdate(PcscTransport.open(READER), fail_at=4)) as faulty:
        with pytest.raises(ProvisioningFailed) as exc:
            Sja2(faulty).program(NEW_IMSI, NEW_K, NEW_OPC, adm1=ADM1, mnc_len=3)
    failure = exc.value
    assert failure.sw == 0x6581 and failure.not_restored == ()
    assert "the card is back as it was" in str(failure) and NEW_K.hex() not in str(failure)
    # the fourth write (DF.GSM/EF.IMSI) failed; it and the three before it got their old contents back
    assert failure.restored == ("DF.GSM/EF.IMSI", "ADF.USIM/EF.IMSI", "DF.SYSTEM/EF.SIM_AUTH_KEY",
                                "ADF.USIM/EF.USIM_AUTH_KEY")
    with Uicc(PcscTransport.open(READER)) as check:
        after = Sja2(check).snapshot(adm1=ADM1)
        assert after.contents == before.contents
        assert check.read_imsi() == IMSI


def test_sja2_snapshot_restore_round_trip(uicc: Uicc) -> None:
    sja2 = Sja2(uicc)
    before = sja2.snapshot(adm1=ADM1)
    assert "ADF.USIM/EF.USIM_AUTH_KEY" in before.files and K.hex() not in repr(before)
    sja2.program(NEW_IMSI, NEW_K, NEW_OPC, adm1=ADM1)
    assert uicc.read_imsi() == NEW_IMSI
    sja2.restore(before)
    assert sja2.snapshot().contents == before.contents
    assert sja2.read_keys().usim.k == K


def test_read_back_without_adm_hides_the_config(uicc: Uicc) -> None:
    profile = Sja2(uicc).read_back()
    assert profile.imsi == IMSI and profile.usim_auth is None and profile.milenage is None


# ---- the same driver through a module's AT+CSIM (emulated modem on a pty, its SIM = our slot)

def test_uicc_over_at_csim_of_the_emulated_modem(card: Path) -> None:
    from mcim_hil.drivers.modem import Modem
    from mcim_hil.emulators.modem import EmulatedModem

    with EmulatedModem(READER) as module, Modem.open(module.port) as modem:
        uicc = Uicc(CsimTransport(modem))
        assert uicc.name == f"AT+CSIM via {module.port}"
        assert uicc.read_iccid() == ICCID and uicc.read_imsi() == IMSI
        av = auc_mod.AuC(K, OPC).generate_av()
        uicc.select_adf_usim()
        result = uicc.authenticate(av.rand, av.autn)
        assert isinstance(result, AuthSuccess) and result.res == av.xres
        with pytest.raises(FileNotFound, match=f"AT\\+CSIM via {module.port}: SELECT 3F00/6F99: SW 6A82"):
            uicc.select("3F00/6F99")
