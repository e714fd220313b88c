"""The TS 27.007 commands of the emulated module, and its radio (attach, registration).

A mixin of :class:`~mcim_hil.emulators.modem.EmulatedModem`, which owns the pty and the
command-line parsing; vendor commands are in modem_profiles/. Each handler takes the
command's form ("", "?", "=?", "=") and its argument text and returns the information
text lines, or raises CmeFailure / SyntaxFailure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .modem_at import CmeFailure, SyntaxFailure, is_number, number, params, string
from .modem_sim import FID_ADF_CURRENT, FID_MF, ModuleSim, SimUnavailable

__all__ = ["AirInterface", "AttachResult", "Ts27007Commands", "STANDARD_COMMANDS"]

log = logging.getLogger("mcim_hil.emulators.modem")

Authenticate = Callable[[bytes, bytes], bytes]
Handler = Callable[[Any, str, str], list[str]]


@dataclass(frozen=True)
class AttachResult:
    """What the network answers an attach (TS 24.301 5.5.1: ATTACH ACCEPT / ATTACH REJECT)."""

    accepted: bool
    ip_address: str | None
    home: bool
    reject_cause: int | None   # EMM cause, TS 24.301 9.9.3.9
    tac: str = "0001"          # 2-byte hex
    ci: str = "00000001"       # 4-byte hex


class AirInterface(Protocol):
    """The network side of the radio, as the emulated module sees it (an optional ``plmn`` attribute names it in +COPS)."""

    def attach(self, imsi: str, authenticate: Authenticate) -> AttachResult: ...

    def detach(self, imsi: str) -> None: ...


# TS 27.007 9.2.2: EMM/GMM reject causes with their own +CME ERROR code.
_REJECT_CAUSE_CME = {3: 103, 6: 106, 7: 107, 11: 111, 12: 112, 13: 113}
_DENIED_DEFAULT_CME = 32

ACT_EUTRAN = 7   # TS 27.007 7.3 <AcT>

# CEREG/CREG <stat> (TS 27.007 10.1.22, 7.2)
STAT_NOT_SEARCHING, STAT_HOME, STAT_SEARCHING, STAT_DENIED, STAT_ROAMING = 0, 1, 2, 3, 5

# +CRSM commands (TS 27.007 8.18) and their INS (TS 102 221 10.1.2)
_CRSM_INS = {176: 0xB0, 178: 0xB2, 192: 0xC0, 214: 0xD6, 220: 0xDC, 242: 0xF2}

# Plausible radio figures of a module in good LTE coverage.
CSQ_IN_COVERAGE = (24, 99)          # TS 27.007 8.5: rssi 24 = -65 dBm, ber 99 unknown
CSQ_NO_SIGNAL = (99, 99)
CESQ_IN_COVERAGE = (99, 99, 255, 255, 20, 50)   # TS 27.007 8.69: rsrq 20 = -10 dB, rsrp 50 = -91 dBm
CESQ_NO_SIGNAL = (99, 99, 255, 255, 255, 255)
COPS_FORMATS = (0, 1, 2)            # TS 27.007 7.3: long, short alphanumeric, numeric


class Ts27007Commands:
    """TS 27.007 / V.250 extended commands; state lives on the EmulatedModem."""

    _sim: ModuleSim
    _network: AirInterface | None
    port: str | None


    def _cmd_cmee(self, form: str, args: str) -> list[str]:
        if form == "?":
            return [f"+CMEE: {self._cmee}"]
        if form == "=?":
            return ["+CMEE: (0-2)"]
        if form == "=":
            self._cmee = number(args or "0", 0, 2)
            return []
        raise SyntaxFailure()

    def _cmd_cgmi(self, form: str, args: str) -> list[str]:
        return self._exec_only(form, [self.manufacturer])

    def _cmd_cgmm(self, form: str, args: str) -> list[str]:
        return self._exec_only(form, [self.model])

    def _cmd_cgmr(self, form: str, args: str) -> list[str]:
        return self._exec_only(form, [self.revision])

    @staticmethod
    def _exec_only(form: str, answer: list[str]) -> list[str]:
        if form == "":
            return answer
        if form == "=?":
            return []
        raise SyntaxFailure()

    def _cmd_cgsn(self, form: str, args: str) -> list[str]:
        # TS 27.007 5.4: <snt> 0 serial number (bare), 1 IMEI, 2 IMEISV, 3 SVN.
        if form == "=?":
            return ["+CGSN: (0-3)"]
        if form == "":
            return [self.imei]
        if form != "=":
            raise SyntaxFailure()
        snt = number(args or "0", 0, 3)
        svn = "01"
        if snt == 0:
            return [self.imei]
        value = {1: self.imei, 2: self.imei[:14] + svn, 3: svn}[snt]
        return [f'+CGSN: "{value}"']

    def _cmd_cimi(self, form: str, args: str) -> list[str]:
        if form == "=?":
            return []
        if form != "":
            raise SyntaxFailure()
        return [self._sim_call(self._sim.read_imsi)]

    def _sim_call(self, operation: Callable[..., object], *args: object):
        try:
            return operation(*args)
        except SimUnavailable as exc:
            log.debug("%s: SIM unavailable: %s", self.port, exc)
            raise CmeFailure(10) from exc

    def _cmd_csim(self, form: str, args: str) -> list[str]:
        # TS 27.007 8.17: AT+CSIM=<length>,"<command>"; <length> counts hex characters.
        if form == "=?":
            return []
        if form != "=":
            raise SyntaxFailure()
        fields = params(args)
        if len(fields) != 2:
            raise CmeFailure(50)
        length, hexed = fields[0], string(fields[1])
        if not is_number(length) or int(length) != len(hexed) or len(hexed) < 8 or len(hexed) % 2:
            raise CmeFailure(50)
        try:
            apdu = bytes.fromhex(hexed)
        except ValueError as exc:
            raise CmeFailure(50) from exc
        response = self._sim_call(self._sim.transmit_raw, apdu).hex().upper()
        return [f'+CSIM: {len(response)},"{response}"']

    def _cmd_crsm(self, form: str, args: str) -> list[str]:
        # TS 27.007 8.18: +CRSM=<command>[,<fileid>[,<P1>,<P2>,<P3>[,<data>[,<pathid>]]]]
        if form == "=?":
            return []
        if form != "=":
            raise SyntaxFailure()
        fields = params(args) + [""] * 7
        command = number(fields[0], 0, 255)
        if command not in _CRSM_INS:
            raise CmeFailure(4)
        fileid = number(fields[1], 0, 0xFFFF) if fields[1] else None
        p1, p2, p3 = (number(f, 0, 255) if f else 0 for f in fields[2:5])
        try:
            data = bytes.fromhex(string(fields[5]))
            path = bytes.fromhex(string(fields[6]))
        except ValueError as exc:
            raise CmeFailure(50) from exc
        if command != 242 and fileid is None:
            raise CmeFailure(50)
        response = self._sim_call(self._restricted_access, command, fileid, p1, p2, p3, data, path)
        sw1, sw2 = response[-2], response[-1]
        if len(response) > 2:
            return [f'+CRSM: {sw1},{sw2},"{response[:-2].hex().upper()}"']
        return [f"+CRSM: {sw1},{sw2}"]

    def _restricted_access(self, command: int, fileid: int | None, p1: int, p2: int, p3: int,
                           data: bytes, path: bytes) -> bytes:
        sim = self._sim
        if command == 242:      # STATUS (TS 102 221 11.1.2) needs no selection
            return sim.transmit(bytes([0x80, 0xF2, p1, p2, p3]))
        assert fileid is not None
        selected = self._select_for_crsm(fileid, path)
        if sim.sw(selected) != 0x9000 or command == 192:
            return selected     # a failed SELECT's status, or GET RESPONSE: the file's FCP
        header = bytes([0x00, _CRSM_INS[command], p1, p2])
        if command in (214, 220):
            return sim.transmit(header + bytes([len(data)]) + data)
        return sim.transmit(header + bytes([p3]))

    def _select_for_crsm(self, fileid: int, path: bytes) -> bytes:
        sim = self._sim
        if path:
            fids = [int.from_bytes(path[i:i + 2], "big") for i in range(0, len(path) - 1, 2)]
            for fid in fids:
                response = sim.select_usim() if fid == FID_ADF_CURRENT else sim.select(fid)
                if sim.sw(response) != 0x9000:
                    return response
            return sim.select(fileid)
        # No path: MF-level files from the MF, application files from the USIM, then the MF.
        if fileid == FID_MF or fileid >> 8 in (0x2F, 0x7F):
            sim.select(FID_MF)
            return sim.select(fileid)
        sim.select_usim()
        response = sim.select(fileid)
        if sim.sw(response) == 0x6A82:
            sim.select(FID_MF)
            response = sim.select(fileid)
        return response

    def _cmd_cfun(self, form: str, args: str) -> list[str]:
        if form == "?":
            return [f"+CFUN: {self._fun}"]
        if form == "=?":
            return ["+CFUN: (0,1,4),(0)"]
        if form != "=":
            raise SyntaxFailure()
        fields = params(args)
        fun = number(fields[0], 0, 4)
        if fun not in (0, 1, 4):
            raise CmeFailure(50)
        if fun != 1:
            self._leave_network()
        self._fun = fun
        return []

    def _cmd_cgdcont(self, form: str, args: str) -> list[str]:
        # TS 27.007 10.1.1
        if form == "?":
            return [f'+CGDCONT: {cid},"{pdp_type}","{apn}","{self._address_of(cid) or "0.0.0.0"}",0,0'
                    for cid, (pdp_type, apn) in sorted(self._contexts.items())]
        if form == "=?":
            return ['+CGDCONT: (1-15),"IP",,,(0),(0)', '+CGDCONT: (1-15),"IPV6",,,(0),(0)',
                    '+CGDCONT: (1-15),"IPV4V6",,,(0),(0)']
        if form != "=":
            raise SyntaxFailure()
        fields = params(args)
        cid = number(fields[0], 1, 15)
        if len(fields) == 1:
            self._contexts.pop(cid, None)       # undefine the context
            return []
        pdp_type = string(fields[1]).upper()
        if pdp_type not in ("IP", "IPV6", "IPV4V6"):
            raise CmeFailure(50)
        apn = string(fields[2]) if len(fields) > 2 else ""
        self._contexts[cid] = (pdp_type, apn)
        return []

    def _cmd_cgatt(self, form: str, args: str) -> list[str]:
        # TS 27.007 10.1.9
        if form == "?":
            return [f"+CGATT: {1 if self._attached_imsi else 0}"]
        if form == "=?":
            return ["+CGATT: (0,1)"]
        if form != "=":
            raise SyntaxFailure()
        if number(args, 0, 1) == 1:
            self._attach()
        else:
            self._leave_network()
        return []

    def _cmd_cereg(self, form: str, args: str) -> list[str]:
        # TS 27.007 10.1.22 (n 0..3: 3 adds the reject cause)
        if form == "?":
            return [f"+CEREG: {self._cereg_n},{self._registration_fields(self._cereg_n)}"]
        if form == "=?":
            return ["+CEREG: (0-3)"]
        if form != "=":
            raise SyntaxFailure()
        self._cereg_n = number(args or "0", 0, 3)
        return []

    def _cmd_creg(self, form: str, args: str) -> list[str]:
        # TS 27.007 7.2, minimal: the same registration as seen by +CEREG (LTE-only module)
        if form == "?":
            return [f"+CREG: {self._creg_n},{self._registration_fields(self._creg_n)}"]
        if form == "=?":
            return ["+CREG: (0-2)"]
        if form != "=":
            raise SyntaxFailure()
        self._creg_n = number(args or "0", 0, 2)
        return []

    def _cmd_cgpaddr(self, form: str, args: str) -> list[str]:
        # TS 27.007 10.1.14: +CGPADDR: <cid>[,<PDP_addr>]
        if form == "=?":
            return ["+CGPADDR: (" + ",".join(str(c) for c in sorted(self._contexts)) + ")"]
        if form == "":
            cids = sorted(self._contexts)
        elif form == "=":
            cids = [number(f, 1, 15) for f in params(args)] if args.strip() else sorted(self._contexts)
        else:
            raise SyntaxFailure()
        lines = []
        for cid in cids:
            address = self._address_of(cid)
            lines.append(f'+CGPADDR: {cid},"{address}"' if address else f"+CGPADDR: {cid}")
        return lines


    # -- identification (TS 27.007 5, V.250 6.1) ------------------------------------------

    def _cmd_gcap(self, form: str, args: str) -> list[str]:
        return self._exec_only(form, ["+GCAP: +CGSM,+CLTE,+DS"])   # V.250 6.1.9

    def _cmd_clac(self, form: str, args: str) -> list[str]:
        # TS 27.007 8.37: one line per command the MT supports
        basics = ["AT&F", "AT&V", "ATE", "ATI", "ATQ", "ATS3", "ATS4", "ATS5", "ATV", "ATZ"]
        return self._exec_only(form, basics + ["AT" + name for name in sorted(self._commands)])

    def _cmd_cpas(self, form: str, args: str) -> list[str]:
        if form == "=?":
            return ["+CPAS: (0-5)"]
        if form != "":
            raise SyntaxFailure()
        return ["+CPAS: 0"]     # TS 27.007 8.1: 0 ready

    # -- the SIM ------------------------------------------------------------------------

    def _cmd_cpin(self, form: str, args: str) -> list[str]:
        # TS 27.007 8.3: +CPIN? -> +CPIN: READY | SIM PIN | SIM PUK; +CPIN=<pin>
        if form == "=?":
            return []
        if form == "?":
            return [f"+CPIN: {self.sim_state()}"]
        if form != "=":
            raise SyntaxFailure()
        pin = string(params(args)[0])
        if not 4 <= len(pin) <= 8 or not is_number(pin):
            raise CmeFailure(50)
        state = self.sim_state()
        if state == "READY":
            raise CmeFailure(3)     # nothing to enter
        if state != "SIM PIN":
            raise CmeFailure(12)
        if not self._sim_call(self._sim.verify_pin1, pin):
            raise CmeFailure(16)
        return []

    def sim_state(self) -> str:
        """+CPIN's answer: READY, SIM PIN or SIM PUK."""
        return self._sim_call(self._sim.pin1_state)

    def serving_cell(self) -> tuple[str, str] | None:
        """(TAC, cell id) hex strings of the serving cell, when registered."""
        return self._cell if self.plmn() is not None else None

    def iccid(self) -> str:
        """The SIM's ICCID, for the vendor commands that report it."""
        return self._sim_call(self._sim.read_iccid)

    def _iccid_lines(self, form: str, prefix: str) -> list[str]:
        if form == "=?":
            return []
        if form != "":
            raise SyntaxFailure()
        return [f"{prefix}: {self.iccid()}"]

    def _cmd_ccid(self, form: str, args: str) -> list[str]:
        return self._iccid_lines(form, "+CCID")

    def _cmd_iccid(self, form: str, args: str) -> list[str]:
        return self._iccid_lines(form, "+ICCID")

    # -- radio status -------------------------------------------------------------------

    def in_coverage(self) -> bool:
        return self._network is not None and self._fun == 1

    def _cmd_csq(self, form: str, args: str) -> list[str]:
        if form == "=?":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        if form != "":
            raise SyntaxFailure()
        rssi, ber = CSQ_IN_COVERAGE if self.in_coverage() else CSQ_NO_SIGNAL
        return [f"+CSQ: {rssi},{ber}"]

    def _cmd_cesq(self, form: str, args: str) -> list[str]:
        if form == "=?":
            return ["+CESQ: (0-63,99),(0-7,99),(0-96,255),(0-49,255),(0-34,255),(0-97,255)"]
        if form != "":
            raise SyntaxFailure()
        figures = CESQ_IN_COVERAGE if self.in_coverage() else CESQ_NO_SIGNAL
        return ["+CESQ: " + ",".join(str(f) for f in figures)]

    def plmn(self) -> str | None:
        """The serving network's PLMN (MCC+MNC digits), when registered."""
        if self._stat not in (STAT_HOME, STAT_ROAMING) or self._network is None:
            return None
        return getattr(self._network, "plmn", None)

    def _cmd_cops(self, form: str, args: str) -> list[str]:
        # TS 27.007 7.3: +COPS: <mode>[,<format>,<oper>[,<AcT>]]
        if form == "?":
            plmn = self.plmn()
            if plmn is None:
                return [f"+COPS: {self._cops_mode}"]
            name = getattr(self._network, "name", None) or plmn
            oper = plmn if self._cops_format == 2 else name
            return [f'+COPS: {self._cops_mode},{self._cops_format},"{oper}",{ACT_EUTRAN}']
        if form == "=?":
            plmn = getattr(self._network, "plmn", None) if self.in_coverage() else None
            found = f'({1 if self.plmn() is None else 2},"{plmn}","{plmn}","{plmn}",{ACT_EUTRAN}),' if plmn else ""
            return [f"+COPS: {found},(0-4),(0-2)"]
        if form != "=":
            raise SyntaxFailure()
        fields = params(args)
        mode = number(fields[0], 0, 4)
        if len(fields) > 1 and fields[1]:
            self._cops_format = number(fields[1], 0, 2)
        if mode == 2:
            self._leave_network()
        if mode in (0, 2):
            self._cops_mode = mode
        return []

    def _cmd_cgreg(self, form: str, args: str) -> list[str]:
        # TS 27.007 10.1.20: the EPS registration seen from the packet domain (LTE module)
        return self._registration_command("+CGREG", "_cgreg_n", 2, form, args)

    def _cmd_c5greg(self, form: str, args: str) -> list[str]:
        # TS 27.007 10.1.33: an LTE-only module never registers in 5GS
        if form == "?":
            return [f"+C5GREG: {self._c5greg_n},{STAT_NOT_SEARCHING}"]
        if form == "=?":
            return ["+C5GREG: (0-2)"]
        if form != "=":
            raise SyntaxFailure()
        self._c5greg_n = number(args or "0", 0, 2)
        return []

    def _registration_command(self, name: str, attribute: str, highest: int, form: str, args: str) -> list[str]:
        if form == "?":
            n = getattr(self, attribute)
            return [f"{name}: {n},{self._registration_fields(n)}"]
        if form == "=?":
            return [f"{name}: (0-{highest})"]
        if form != "=":
            raise SyntaxFailure()
        setattr(self, attribute, number(args or "0", 0, highest))
        return []

    def _cmd_cgact(self, form: str, args: str) -> list[str]:
        # TS 27.007 10.1.10: +CGACT: <cid>,<state>; on LTE the default bearer comes with the attach
        if form == "?":
            return [f"+CGACT: {cid},{1 if self._address_of(cid) else 0}" for cid in sorted(self._contexts)]
        if form == "=?":
            return ["+CGACT: (0,1)"]
        if form != "=":
            raise SyntaxFailure()
        fields = params(args)
        state = number(fields[0], 0, 1)
        cids = [number(f, 1, 15) for f in fields[1:] if f] or sorted(self._contexts)
        if any(cid not in self._contexts for cid in cids):
            raise CmeFailure(50)
        if state == 1:
            self._attach()
        return []

    # -- the radio ----------------------------------------------------------------------

    def _address_of(self, cid: int) -> str | None:
        # The network's address goes to the default bearer: the lowest defined context.
        if self._attached_imsi is None or not self._contexts or cid != min(self._contexts):
            return None
        return self._ip

    def _registration_fields(self, n: int) -> str:
        """<stat>[,<tac>,<ci>,<AcT>[,<cause_type>,<reject_cause>]] for reporting level n."""
        fields = [str(self._stat)]
        if n >= 2 and self._cell is not None:
            fields += [f'"{self._cell[0]}"', f'"{self._cell[1]}"', str(ACT_EUTRAN)]
        if n >= 3 and self._reject_cause is not None:
            if self._cell is None:
                fields += ["", "", ""]
            fields += ["0", str(self._reject_cause)]      # cause_type 0: EMM cause (TS 24.301 9.9.3.9)
        return ",".join(fields)

    def _set_stat(self, stat: int) -> None:
        changed = stat != self._stat
        self._stat = stat
        if not changed:
            return
        if self._cereg_n:
            self._send_urc(f"+CEREG: {self._registration_fields(self._cereg_n)}")
        if self._creg_n:
            self._send_urc(f"+CREG: {self._registration_fields(self._creg_n)}")
        if self._cgreg_n:
            self._send_urc(f"+CGREG: {self._registration_fields(self._cgreg_n)}")

    def _attach(self) -> None:
        if self._attached_imsi is not None:
            return
        if self._fun != 1:
            raise CmeFailure(30)
        imsi = self._sim_call(self._sim.read_imsi)
        network = self._network
        if network is None:
            raise CmeFailure(30)           # no coverage: stat stays 0
        self._reject_cause = None
        self._cell = None
        self._set_stat(STAT_SEARCHING)
        try:
            # the default bearer's APN goes with the attach (TS 24.301 5.5.1.2.2: PDN CONNECTIVITY REQUEST)
            apn = self._contexts[min(self._contexts)][1] if self._contexts else ""
            result = network.attach(imsi, self._authenticate, **({"apn": apn} if apn else {}))
        except SimUnavailable as exc:
            log.debug("%s: SIM lost during attach: %s", self.port, exc)
            self._set_stat(STAT_NOT_SEARCHING)
            raise CmeFailure(10) from exc
        except Exception:
            log.exception("%s: the network failed during attach", self.port)
            self._set_stat(STAT_NOT_SEARCHING)
            raise CmeFailure(100) from None
        self._cell = (result.tac, result.ci)
        if result.accepted:
            self._attached_imsi = imsi
            self._ip = result.ip_address
            self._set_stat(STAT_HOME if result.home else STAT_ROAMING)
            return
        self._reject_cause = result.reject_cause
        self._set_stat(STAT_DENIED)
        raise CmeFailure(_REJECT_CAUSE_CME.get(result.reject_cause or -1, _DENIED_DEFAULT_CME))

    def _authenticate(self, rand: bytes, autn: bytes) -> bytes:
        """Handed to the network: the module's own AUTHENTICATE on its SIM."""
        return self._sim.authenticate(rand, autn)

    def _leave_network(self) -> None:
        imsi, network = self._attached_imsi, self._network
        self._attached_imsi = None
        self._ip = None
        self._cell = None
        self._reject_cause = None
        if imsi is not None and network is not None:
            try:
                network.detach(imsi)
            except Exception:
                log.exception("%s: the network failed during detach", self.port)
        self._set_stat(STAT_NOT_SEARCHING)


STANDARD_COMMANDS: dict[str, Handler] = {
    "+CMEE": Ts27007Commands._cmd_cmee, "+CGMI": Ts27007Commands._cmd_cgmi,
    "+CGMM": Ts27007Commands._cmd_cgmm, "+CGMR": Ts27007Commands._cmd_cgmr,
    "+CGSN": Ts27007Commands._cmd_cgsn, "+GMI": Ts27007Commands._cmd_cgmi,   # V.250 6.1.4-6.1.7
    "+GMM": Ts27007Commands._cmd_cgmm, "+GMR": Ts27007Commands._cmd_cgmr,
    "+GSN": Ts27007Commands._cmd_cgsn, "+GCAP": Ts27007Commands._cmd_gcap,
    "+CLAC": Ts27007Commands._cmd_clac, "+CPAS": Ts27007Commands._cmd_cpas,
    "+CIMI": Ts27007Commands._cmd_cimi, "+CPIN": Ts27007Commands._cmd_cpin,
    "+CCID": Ts27007Commands._cmd_ccid, "+ICCID": Ts27007Commands._cmd_iccid,
    "+CSIM": Ts27007Commands._cmd_csim, "+CRSM": Ts27007Commands._cmd_crsm,
    "+CFUN": Ts27007Commands._cmd_cfun, "+CSQ": Ts27007Commands._cmd_csq,
    "+CESQ": Ts27007Commands._cmd_cesq, "+COPS": Ts27007Commands._cmd_cops,
    "+CGDCONT": Ts27007Commands._cmd_cgdcont, "+CGATT": Ts27007Commands._cmd_cgatt,
    "+CGACT": Ts27007Commands._cmd_cgact, "+CEREG": Ts27007Commands._cmd_cereg,
    "+CREG": Ts27007Commands._cmd_creg, "+CGREG": Ts27007Commands._cmd_cgreg,
    "+C5GREG": Ts27007Commands._cmd_c5greg, "+CGPADDR": Ts27007Commands._cmd_cgpaddr,
}
