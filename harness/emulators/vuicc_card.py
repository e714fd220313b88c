"""The virtual UICC's command dispatch: SELECT, STATUS, READ/UPDATE BINARY and RECORD, the PIN
commands, AUTHENTICATE (Milenage), GET RESPONSE over the card's file system (vuicc_fs), as a T=0
or T=1 card per its ATR. Serving it on vpcd is vuicc.py's job."""

from __future__ import annotations

import hmac
from typing import Callable

from mcim_hil.aka.auc import AkaVerdict, usim_check
from mcim_hil.aka.milenage import Milenage, c2_sres, c3_kc, opc_from_op
from mcim_hil.emulators.vuicc_apdu import (
    _Status,
    _sw,
    _tlv,
    atr_protocols,
    AUTH_CONTEXT_3G,
    AUTH_CONTEXT_GSM,
    Command,
    INS_AUTHENTICATE,
    INS_CHANGE_PIN,
    INS_CLA_00,
    INS_CLA_80,
    INS_DISABLE_PIN,
    INS_ENABLE_PIN,
    INS_GET_RESPONSE,
    INS_MANAGE_CHANNEL,
    INS_OUTGOING,
    INS_READ_BINARY,
    INS_READ_RECORD,
    INS_SELECT,
    INS_STATUS,
    INS_TERMINAL_PROFILE,
    INS_UPDATE_BINARY,
    INS_UPDATE_RECORD,
    INS_VERIFY,
    parse_command,
    SW_AUTH_MAC,
    SW_BAD_CLA,
    SW_BAD_INS,
    SW_BAD_P1P2,
    SW_BLOCKED,
    SW_CHANNEL_NOT_SUPPORTED,
    SW_CONDITIONS,
    SW_EOF,
    SW_MEMORY_PROBLEM,
    SW_NO_EF,
    SW_NOT_FOUND,
    SW_OK,
    SW_RECORD_NOT_FOUND,
    SW_REF_NOT_FOUND,
    SW_SECURITY,
    SW_TECHNICAL,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    SW_WRONG_STRUCTURE,
    TAG_AUTH_OK,
    TAG_SYNC_FAILURE,
    USIM_AID_PREFIX,
)
from mcim_hil.emulators.vuicc_fs import (
    ADM1,
    ADM1_AC,
    ALWAYS,
    ARR_RULES,
    AUTH_ALGO_MASK,
    AUTH_CFG_MILENAGE,
    AUTH_CFG_OPC,
    AUTH_CFG_RES4,
    FID_ARR,
    FID_CURRENT_ADF,
    FID_MF,
    NEVER,
    PIN1,
    PIN1_AC,
    PIN_FILES,
    PIN_LEN,
    UST_GSM_ACCESS,
    CardFile,
    CardState,
    CardStateError,
    DedicatedFile,
    ElementaryFile,
    milenage_params,
    sqn_file_update,
    sqn_state_from_file,
    ust_has,
)

__all__ = ["UiccCard"]


class UiccCard:
    """The card's logic: turns command APDUs into responses, keeps its state file current.

    ``save`` is called after every change of persistent content (UPDATE, PIN counters,
    SQN array). The session (selection, verified PINs, pending response) is lost on
    power off and reset, as on a real card.
    """

    def __init__(self, state: CardState, save: Callable[[CardState], None]) -> None:
        self.state = state
        self._save = save
        self.t0 = 0 in atr_protocols(state.atr)
        self._handlers = self._handler_table()
        self.reset()

    def __repr__(self) -> str:
        return f"UiccCard({self.state!r})"

    @property
    def atr(self) -> bytes:
        return self.state.atr

    def reset(self) -> None:
        """Power on / warm reset: MF selected, no PIN verified, no application active."""
        self.current_df: DedicatedFile = self.state.mf
        self.current_ef: ElementaryFile | None = None
        self.current_adf: DedicatedFile | None = None
        self.record: int = 0
        self.verified: set[int] = set()
        self.pending = b""

    def _persist(self) -> None:
        try:
            self._save(self.state)
        except OSError as exc:
            raise _Status(SW_MEMORY_PROBLEM) from exc

    # --- transmission (T=0 rules) ---------------------------------------------------

    def process(self, raw: bytes) -> bytes:
        """One command APDU in, response data + SW1 SW2 out."""
        try:
            cmd = parse_command(raw)
            self._check_class(cmd)
            if cmd.ins == INS_GET_RESPONSE:
                return self._get_response(cmd)
            self.pending = b""
            data, sw = self._dispatch(cmd)
        except _Status as st:
            return _sw(st.sw)
        return self._deliver(cmd, data, sw)

    def _deliver(self, cmd: Command, data: bytes, sw: int) -> bytes:
        if not data:
            return _sw(sw)
        if not self.t0:  # T=1: the response travels with the command
            return data[: cmd.le or 256] + _sw(sw)
        if cmd.ins in INS_OUTGOING and not cmd.data:
            le = cmd.le or 256
            if le != len(data):
                return _sw(0x6C00 | (len(data) & 0xFF))  # ISO 7816-3 10.3.3: wrong Le
            return data + _sw(sw)
        self.pending = data  # case 4 under T=0: '61xx', then GET RESPONSE
        return _sw(0x6100 | (len(data) & 0xFF))

    def _get_response(self, cmd: Command) -> bytes:
        if cmd.p1 or cmd.p2:
            raise _Status(SW_WRONG_P1P2)
        if not self.pending:
            raise _Status(SW_CONDITIONS)
        le = cmd.le or 256
        avail = len(self.pending)
        if le > avail:
            return _sw(0x6C00 | (avail & 0xFF))
        out, self.pending = self.pending[:le], self.pending[le:]
        if self.pending:
            return out + _sw(0x6100 | (len(self.pending) & 0xFF))
        return out + _sw(SW_OK)

    def _check_class(self, cmd: Command) -> None:
        if cmd.cla & 0x03 or cmd.cla & 0x40:
            raise _Status(SW_CHANNEL_NOT_SUPPORTED)  # only the basic channel
        if cmd.cla not in (0x00, 0x80):
            raise _Status(SW_BAD_CLA)
        if cmd.ins == INS_GET_RESPONSE:
            return
        if cmd.ins in INS_CLA_80:
            if cmd.cla != 0x80:
                raise _Status(SW_BAD_CLA)
        elif cmd.ins in INS_CLA_00:
            if cmd.cla != 0x00:
                raise _Status(SW_BAD_CLA)
        else:
            raise _Status(SW_BAD_INS)

    def _dispatch(self, cmd: Command) -> tuple[bytes, int]:
        return self._handlers[cmd.ins](cmd)

    def _handler_table(self) -> dict[int, Callable[[Command], tuple[bytes, int]]]:
        return {
            INS_SELECT: self._select,
            INS_STATUS: self._status,
            INS_READ_BINARY: self._read_binary,
            INS_UPDATE_BINARY: self._update_binary,
            INS_READ_RECORD: self._read_record,
            INS_UPDATE_RECORD: self._update_record,
            INS_VERIFY: self._verify,
            INS_CHANGE_PIN: self._change_pin,
            INS_DISABLE_PIN: self._disable_pin,
            INS_ENABLE_PIN: self._enable_pin,
            INS_AUTHENTICATE: self._authenticate,
            INS_TERMINAL_PROFILE: self._terminal_profile,
            INS_MANAGE_CHANNEL: self._manage_channel,
        }

    # --- access conditions ----------------------------------------------------------

    def _granted(self, level: str) -> bool:
        if level == ALWAYS:
            return True
        if level == PIN1_AC:
            return not self.state.pins[PIN1].enabled or PIN1 in self.verified
        if level == ADM1_AC:
            return ADM1 in self.verified
        return False  # NEVER

    def _require(self, level: str) -> None:
        if not self._granted(level):
            raise _Status(SW_SECURITY)

    # --- SELECT (TS 102 221 11.1.1) -------------------------------------------------

    def _select(self, cmd: Command) -> tuple[bytes, int]:
        answer = cmd.p2 & 0x1C
        if answer not in (0x00, 0x04, 0x0C):  # FCI (taken as FCP), FCP, no data
            raise _Status(SW_BAD_P1P2)
        session, occurrence = cmd.p2 & 0x60, cmd.p2 & 0x03
        if (session or occurrence) and cmd.p1 != 0x04:
            raise _Status(SW_BAD_P1P2)
        if cmd.p1 == 0x00:
            target = self._by_fid(self._fid(cmd.data))
        elif cmd.p1 == 0x01:
            target = self._child_df(self._fid(cmd.data))
        elif cmd.p1 == 0x03:
            if cmd.data:
                raise _Status(SW_WRONG_LENGTH)
            target = self.current_df.parent
            if target is None:
                raise _Status(SW_NOT_FOUND)
        elif cmd.p1 == 0x04:
            if session == 0x40:  # termination of the application session
                self._terminate(cmd.data)
                return b"", SW_OK
            if session or occurrence:
                raise _Status(SW_NOT_FOUND if occurrence else SW_BAD_P1P2)
            target = self._by_aid(cmd.data)
        elif cmd.p1 in (0x08, 0x09):
            target = self._by_path(cmd.data, from_mf=cmd.p1 == 0x08)
        else:
            raise _Status(SW_BAD_P1P2)
        self._make_current(target)
        if answer == 0x0C:
            return b"", SW_OK
        return self._fcp(target), SW_OK

    @staticmethod
    def _fid(data: bytes) -> int:
        if len(data) != 2:
            raise _Status(SW_WRONG_LENGTH)
        return int.from_bytes(data, "big")

    def _by_fid(self, fid: int) -> CardFile:
        # TS 102 221 8.4.1: MF, current DF, its children, its parent, the parent's DFs, '7FFF'
        if fid == FID_MF:
            return self.state.mf
        if fid == FID_CURRENT_ADF:
            if self.current_adf is None:
                raise _Status(SW_NOT_FOUND)
            return self.current_adf
        df = self.current_df
        if df.fid == fid:
            return df
        child = self._plain_child(df, fid)
        if child is not None:
            return child
        parent = df.parent
        if parent is not None:
            if parent.fid == fid:
                return parent
            sibling = self._plain_child(parent, fid)
            if isinstance(sibling, DedicatedFile):
                return sibling
        raise _Status(SW_NOT_FOUND)

    @staticmethod
    def _plain_child(df: DedicatedFile, fid: int) -> CardFile | None:
        # ADFs are reached by AID (or '7FFF' once active), not by a plain FID
        child = df.child(fid)
        if isinstance(child, DedicatedFile) and child.aid:
            return None
        return child

    def _child_df(self, fid: int) -> DedicatedFile:
        child = self._plain_child(self.current_df, fid)
        if not isinstance(child, DedicatedFile):
            raise _Status(SW_NOT_FOUND)
        return child

    def _by_aid(self, aid: bytes) -> DedicatedFile:
        if not 1 <= len(aid) <= 16:
            raise _Status(SW_WRONG_LENGTH)
        for adf in self.state.adfs():
            assert adf.aid is not None
            if adf.aid.startswith(aid):  # a partial (right-truncated) AID selects too
                return adf
        raise _Status(SW_NOT_FOUND)

    def _terminate(self, aid: bytes) -> None:
        adf = self.current_adf
        if adf is None or adf.aid is None or (aid and not adf.aid.startswith(aid)):
            raise _Status(SW_NOT_FOUND)
        self.current_adf = None
        self._make_current(self.state.mf)

    def _by_path(self, data: bytes, *, from_mf: bool) -> CardFile:
        if not data or len(data) % 2:
            raise _Status(SW_WRONG_LENGTH)
        fids = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
        node: CardFile = self.state.mf if from_mf else self.current_df
        if from_mf and fids[0] == FID_MF:  # tolerate a path that names the MF
            fids = fids[1:]
        for fid in fids:
            if not isinstance(node, DedicatedFile):
                raise _Status(SW_NOT_FOUND)
            if fid == FID_CURRENT_ADF:
                if self.current_adf is None:
                    raise _Status(SW_NOT_FOUND)
                node = self.current_adf
                continue
            child = self._plain_child(node, fid)
            if child is None:
                raise _Status(SW_NOT_FOUND)
            node = child
        return node

    def _make_current(self, target: CardFile) -> None:
        if isinstance(target, DedicatedFile):
            self.current_df, self.current_ef = target, None
            if target.aid:
                self.current_adf = target
        else:
            assert isinstance(target, ElementaryFile) and target.parent is not None
            self.current_df, self.current_ef = target.parent, target
        self.record = 0

    # --- FCP (TS 102 221 11.1.1.3) --------------------------------------------------

    def _fcp(self, f: CardFile) -> bytes:
        if isinstance(f, DedicatedFile):
            body = _tlv(0x82, b"\x78\x21")  # DF, shareable
            body += _tlv(0x83, f.fid.to_bytes(2, "big"))
            if f.aid:
                body += _tlv(0x84, f.aid)
            body += _tlv(0x8A, b"\x05")  # operational state: activated
            body += _tlv(0x8B, FID_ARR.to_bytes(2, "big") + bytes([ARR_RULES[(ALWAYS, ADM1_AC)]]))
            body += self._pin_status_template()
        else:
            assert isinstance(f, ElementaryFile)
            if f.structure == "transparent":
                body = _tlv(0x82, b"\x41\x21")  # shareable working EF, transparent
            else:
                body = _tlv(0x82, b"\x42\x21" + f.record_len.to_bytes(2, "big")
                            + bytes([len(f.records)]))  # linear fixed
            body += _tlv(0x83, f.fid.to_bytes(2, "big"))
            body += _tlv(0x8A, b"\x05")
            rule = ARR_RULES.get((f.read, f.update), ARR_RULES[(NEVER, ADM1_AC)])
            body += _tlv(0x8B, FID_ARR.to_bytes(2, "big") + bytes([rule]))
            body += _tlv(0x80, f.size.to_bytes(2, "big"))
            body += _tlv(0x88, bytes([f.sfi << 3]) if f.sfi is not None else b"")
        return _tlv(0x62, body)

    def _pin_status_template(self) -> bytes:
        # TS 102 221 9.5.2: PS_DO bitmap (b8 = first key reference enabled), then the references
        ps = 0
        refs = b""
        for bit, ref in zip((0x80, 0x40), (PIN1, ADM1)):
            if self.state.pins[ref].enabled:
                ps |= bit
            refs += _tlv(0x83, bytes([ref]))
        return _tlv(0xC6, _tlv(0x90, bytes([ps])) + refs)

    # --- STATUS (TS 102 221 11.1.2) --------------------------------------------------

    def _status(self, cmd: Command) -> tuple[bytes, int]:
        if cmd.p1 not in (0x00, 0x01, 0x02):
            raise _Status(SW_BAD_P1P2)
        if cmd.p2 == 0x0C:
            return b"", SW_OK
        if cmd.p2 == 0x00:
            return self._fcp(self.current_df), SW_OK
        if cmd.p2 == 0x01:
            if self.current_adf is None:
                return b"", SW_OK
            assert self.current_adf.aid is not None
            return _tlv(0x84, self.current_adf.aid), SW_OK
        raise _Status(SW_BAD_P1P2)

    # --- transparent EFs (TS 102 221 11.1.3, 11.1.4) ----------------------------------

    def _transparent(self, cmd: Command) -> tuple[ElementaryFile, int]:
        if cmd.p1 & 0x80:  # b8=1: SFI in b5..b1, offset in P2
            if cmd.p1 & 0x60:
                raise _Status(SW_BAD_P1P2)
            ef = self._ef_by_sfi(cmd.p1 & 0x1F)
            offset = cmd.p2
        else:
            ef = self._current_ef()
            offset = (cmd.p1 << 8) | cmd.p2
        if ef.structure != "transparent":
            raise _Status(SW_WRONG_STRUCTURE)
        return ef, offset

    def _current_ef(self) -> ElementaryFile:
        if self.current_ef is None:
            raise _Status(SW_NO_EF)
        return self.current_ef

    def _ef_by_sfi(self, sfi: int) -> ElementaryFile:
        if sfi == 0:
            return self._current_ef()
        ef = self.current_df.child_by_sfi(sfi)
        if ef is None:
            raise _Status(SW_NOT_FOUND)
        self._make_current(ef)
        return ef

    def _read_binary(self, cmd: Command) -> tuple[bytes, int]:
        ef, offset = self._transparent(cmd)
        self._require(ef.read)
        if offset >= len(ef.data):
            raise _Status(SW_WRONG_P1P2)
        data = bytes(ef.data[offset: offset + (cmd.le or 256)])
        if not self.t0 and cmd.le is not None and cmd.le != 256 and len(data) < cmd.le:
            return data, SW_EOF  # T=1: the short data comes with a warning (T=0 says '6Cxx')
        return data, SW_OK

    def _update_binary(self, cmd: Command) -> tuple[bytes, int]:
        ef, offset = self._transparent(cmd)
        self._require(ef.update)
        if not cmd.data:
            raise _Status(SW_WRONG_LENGTH)
        if offset > len(ef.data):
            raise _Status(SW_WRONG_P1P2)
        if offset + len(cmd.data) > len(ef.data):
            raise _Status(SW_WRONG_LENGTH)
        ef.data[offset: offset + len(cmd.data)] = cmd.data
        self._after_update(ef)
        self._persist()
        return b"", SW_OK

    def _after_update(self, ef: ElementaryFile) -> None:
        # A new PIN written by the issuer (ADM) gives that PIN its full counter back.
        for ref, (df_fid, ef_fid) in PIN_FILES.items():
            if ef.fid == int(ef_fid, 16) and ef.parent is not None and ef.parent.fid == int(df_fid, 16):
                pin = self.state.pins[ref]
                pin.tries = pin.max_tries
                self.verified.discard(ref)

    # --- linear fixed EFs (TS 102 221 11.1.5, 11.1.6) -----------------------------------

    def _record_target(self, cmd: Command) -> tuple[ElementaryFile, int]:
        sfi, mode = cmd.p2 >> 3, cmd.p2 & 0x07
        ef = self._ef_by_sfi(sfi) if sfi else self._current_ef()
        if ef.structure != "linear_fixed":
            raise _Status(SW_WRONG_STRUCTURE)
        n = len(ef.records)
        if mode == 0x04:  # absolute, or current when P1 = 0
            rec = cmd.p1 or self.record
        elif mode in (0x02, 0x03):  # next, previous
            if cmd.p1:
                raise _Status(SW_BAD_P1P2)
            if mode == 0x02:
                rec = self.record + 1 if self.record else 1
            else:
                rec = self.record - 1 if self.record else n
        else:
            raise _Status(SW_BAD_P1P2)
        if not 1 <= rec <= n:
            raise _Status(SW_RECORD_NOT_FOUND)
        return ef, rec

    def _read_record(self, cmd: Command) -> tuple[bytes, int]:
        ef, rec = self._record_target(cmd)
        self._require(ef.read)
        self.record = rec
        return bytes(ef.records[rec - 1]), SW_OK

    def _update_record(self, cmd: Command) -> tuple[bytes, int]:
        ef, rec = self._record_target(cmd)
        self._require(ef.update)
        if len(cmd.data) != ef.record_len:
            raise _Status(SW_WRONG_LENGTH)
        ef.records[rec - 1][:] = cmd.data
        self.record = rec
        self._persist()
        return b"", SW_OK

    # --- PINs (TS 102 221 11.1.9 .. 11.1.11) -----------------------------------------

    def _pin_ref(self, cmd: Command) -> int:
        if cmd.p1 != 0x00:
            raise _Status(SW_BAD_P1P2)
        if cmd.p2 not in self.state.pins:
            raise _Status(SW_REF_NOT_FOUND)
        return cmd.p2

    def _check_pin(self, ref: int, value: bytes) -> None:
        """Compare a PIN block, moving the counter; raises the failure status word."""
        pin = self.state.pins[ref]
        if pin.tries == 0:
            raise _Status(SW_BLOCKED)
        if hmac.compare_digest(value, self.state.pin_value(ref)):
            self.verified.add(ref)
            if pin.tries != pin.max_tries:
                pin.tries = pin.max_tries
                self._persist()
            return
        self.verified.discard(ref)
        pin.tries -= 1
        self._persist()
        raise _Status(0x63C0 | pin.tries)  # '63C0' on the try that blocks, '6983' afterwards

    def _verify(self, cmd: Command) -> tuple[bytes, int]:
        ref = self._pin_ref(cmd)
        pin = self.state.pins[ref]
        if not cmd.data:  # retry counter query
            if pin.tries == 0:
                raise _Status(SW_BLOCKED)
            if ref in self.verified:
                return b"", SW_OK
            raise _Status(0x63C0 | pin.tries)
        if len(cmd.data) != PIN_LEN:
            raise _Status(SW_WRONG_LENGTH)
        self._check_pin(ref, cmd.data)
        return b"", SW_OK

    def _change_pin(self, cmd: Command) -> tuple[bytes, int]:
        ref = self._pin_ref(cmd)
        if len(cmd.data) != 2 * PIN_LEN:
            raise _Status(SW_WRONG_LENGTH)
        if ref == PIN1 and not self.state.pins[PIN1].enabled:
            raise _Status(SW_CONDITIONS)
        self._check_pin(ref, cmd.data[:PIN_LEN])
        self.state.find_ef(*PIN_FILES[ref]).data[:] = cmd.data[PIN_LEN:]
        self._persist()
        return b"", SW_OK

    def _disable_pin(self, cmd: Command) -> tuple[bytes, int]:
        return self._set_pin_enabled(cmd, False)

    def _enable_pin(self, cmd: Command) -> tuple[bytes, int]:
        return self._set_pin_enabled(cmd, True)

    def _set_pin_enabled(self, cmd: Command, enabled: bool) -> tuple[bytes, int]:
        ref = self._pin_ref(cmd)
        if ref != PIN1:  # ADM keys cannot be switched off
            raise _Status(SW_REF_NOT_FOUND)
        if len(cmd.data) != PIN_LEN:
            raise _Status(SW_WRONG_LENGTH)
        pin = self.state.pins[ref]
        if pin.enabled == enabled:
            raise _Status(SW_CONDITIONS)
        self._check_pin(ref, cmd.data)
        pin.enabled = enabled
        self._persist()
        return b"", SW_OK

    # --- AUTHENTICATE (TS 31.102 7.1.2) ----------------------------------------------

    def _authenticate(self, cmd: Command) -> tuple[bytes, int]:
        if cmd.p1 != 0x00 or cmd.p2 not in (AUTH_CONTEXT_GSM, AUTH_CONTEXT_3G):
            raise _Status(SW_BAD_P1P2)
        adf = self.current_adf
        if adf is None or adf.aid is None or not adf.aid.startswith(USIM_AID_PREFIX):
            raise _Status(SW_CONDITIONS)
        self._require(PIN1_AC)
        rand = self._lv(cmd.data, 0)
        if cmd.p2 == AUTH_CONTEXT_GSM:
            if len(cmd.data) != 17:
                raise _Status(SW_WRONG_LENGTH)
            milenage, _res4 = self._milenage(adf)
            res, ck, ik, _ak = milenage.f2345(rand)
            sres, kc = c2_sres(res), c3_kc(ck, ik)
            return bytes([len(sres)]) + sres + bytes([len(kc)]) + kc, SW_OK  # '04' SRES '08' Kc
        if len(cmd.data) != 34:
            raise _Status(SW_WRONG_LENGTH)
        autn = self._lv(cmd.data, 17)
        milenage, res4 = self._milenage(adf)
        sqn_ef = self._adf_ef(adf, 0xAF30)
        sqn_state = sqn_state_from_file(bytes(sqn_ef.data))
        outcome = usim_check(milenage, rand, autn, sqn_state)
        if outcome.verdict is AkaVerdict.MAC_FAILURE:
            raise _Status(SW_AUTH_MAC)
        if outcome.verdict is AkaVerdict.SYNC_FAILURE:
            return _tlv(TAG_SYNC_FAILURE, outcome.auts), SW_OK
        sqn_ef.data[:] = sqn_file_update(bytes(sqn_ef.data), sqn_state)
        self._persist()
        res = outcome.res[:4] if res4 else outcome.res
        # 'DB' L RES L CK L IK [L Kc]: length-value pairs after the tag
        out = bytes([TAG_AUTH_OK, len(res)]) + res
        out += bytes([len(outcome.ck)]) + outcome.ck + bytes([len(outcome.ik)]) + outcome.ik
        if ust_has(bytes(self._adf_ef(adf, 0x6F38).data), UST_GSM_ACCESS):
            out += bytes([0x08]) + c3_kc(outcome.ck, outcome.ik)
        return out, SW_OK

    @staticmethod
    def _lv(data: bytes, at: int) -> bytes:
        if len(data) < at + 17 or data[at] != 0x10:
            raise _Status(SW_WRONG_DATA)
        return data[at + 1: at + 17]

    @staticmethod
    def _adf_ef(adf: DedicatedFile, fid: int) -> ElementaryFile:
        ef = adf.child(fid)
        if not isinstance(ef, ElementaryFile):
            raise _Status(SW_TECHNICAL)
        return ef

    def _milenage(self, adf: DedicatedFile) -> tuple[Milenage, bool]:
        """Milenage from EF.USIM_AUTH_KEY and EF.MILENAGE_CFG (sysmoISIM-SJA2 layout)."""
        key = bytes(self._adf_ef(adf, 0xAF20).data)
        if len(key) < 33 or key[0] & AUTH_ALGO_MASK != AUTH_CFG_MILENAGE:
            raise _Status(SW_CONDITIONS)  # only Milenage is implemented
        k, op_or_opc = key[1:17], key[17:33]
        opc = op_or_opc if key[0] & AUTH_CFG_OPC else opc_from_op(k, op_or_opc)
        try:
            cfg = bytes(self.state.find_ef("A515", "6F21").data)
            r, c = milenage_params(cfg)
            milenage = Milenage(k, opc, r, c)
        except (CardStateError, ValueError):
            raise _Status(SW_TECHNICAL) from None
        return milenage, bool(key[0] & AUTH_CFG_RES4)

    # --- odds and ends -----------------------------------------------------------------

    def _terminal_profile(self, cmd: Command) -> tuple[bytes, int]:
        return b"", SW_OK  # no proactive UICC here: accept and ignore

    def _manage_channel(self, cmd: Command) -> tuple[bytes, int]:
        raise _Status(SW_CHANNEL_NOT_SUPPORTED)


# --- creating a card ----------------------------------------------------------------
