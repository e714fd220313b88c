"""An emulated cellular module: V.250 / TS 27.007 AT commands on a pty, its SIM behind a PC/SC reader.

It shares no code with drivers/ (each checks the other). The module's SIM is reached with
pyscard directly, with the module's own small T=0 handling; +CSIM passes APDUs through
unchanged ('61xx' included), as real modules do. Its radio is an :class:`AirInterface`:
``AT+CGATT=1`` asks the network to attach the SIM's IMSI, and the network runs the AKA
on the card through the ``authenticate`` callable the module hands it.

Secrets (APDUs of +CSIM, which may carry a PIN or ADM key; key material) are never logged.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import threading
import tty
from dataclasses import dataclass
from typing import Callable, Protocol

__all__ = ["AirInterface", "AttachResult", "EmulatedModem", "SimUnavailable"]

log = logging.getLogger(__name__)

Authenticate = Callable[[bytes, bytes], bytes]


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
    """The network side of the radio, as the emulated module sees it."""

    def attach(self, imsi: str, authenticate: Authenticate) -> AttachResult: ...

    def detach(self, imsi: str) -> None: ...


class SimUnavailable(Exception):
    """No reader, no card, or the card went away: +CME ERROR: 10."""


# -- the module's SIM -------------------------------------------------------------------

USIM_AID_PREFIX = bytes.fromhex("A0000000871002")   # TS 31.102 annex A: RID + USIM app code
FID_MF = 0x3F00
FID_EF_DIR = 0x2F00      # TS 102 221 13.1
FID_EF_IMSI = 0x6F07     # TS 31.102 4.2.2
FID_ADF_CURRENT = 0x7FFF  # TS 102 221 8.4.2: the current application


def _release_quietly(connection) -> None:
    """Free a pyscard connection's PC/SC context now, where a failure can be caught: after a
    pcscd restart its context is gone, and pyscard's destructor would raise it unraisably."""
    try:
        connection.release()
    except Exception as exc:
        log.debug("SIM: release: %s", exc)
        connection.hcontext = None  # nothing left to free in a daemon that is gone


class _Sim:
    """The module's own SIM access: PC/SC through pyscard, opened lazily, reopened after a reset."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self._connection = None
        self._usim_aid: bytes | None = None
        self.tap = None  # a GsmtapTap: what a SIMtrace2 on the contacts would see

    def close(self) -> None:
        connection, self._connection = self._connection, None
        self._usim_aid = None
        if connection is not None:
            try:
                connection.disconnect()
            except Exception as exc:
                log.debug("SIM %s: disconnect: %s", self.reader, exc)
            _release_quietly(connection)

    def _connect(self):
        from smartcard.Exceptions import SmartcardException
        from smartcard.System import readers
        from smartcard.scard import SCARD_LEAVE_CARD, SCARD_SHARE_SHARED
        try:
            found = [r for r in readers() if str(r) == self.reader]
        except SmartcardException as exc:
            raise SimUnavailable(f"PC/SC is not answering ({exc})") from exc
        if not found:
            raise SimUnavailable(f"no reader {self.reader!r}")
        connection = found[0].createConnection()
        try:
            # a module shares its SIM with whatever else holds the reader: reconnecting must
            # not power the card off under them (pyscard's default disposition does)
            connection.connect(mode=SCARD_SHARE_SHARED, disposition=SCARD_LEAVE_CARD)
        except SmartcardException as exc:
            _release_quietly(connection)
            raise SimUnavailable(f"no card in {self.reader!r} ({exc})") from exc
        self._usim_aid = None
        return connection

    def transmit_raw(self, apdu: bytes) -> bytes:
        """One APDU as it is; response data + SW1 SW2. Reconnects once after a reset or removal."""
        from smartcard.Exceptions import SmartcardException
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = self._connect()
            try:
                data, sw1, sw2 = self._connection.transmit(list(apdu))
                if self.tap is not None:
                    self.tap.exchange(apdu, bytes(data) + bytes([sw1, sw2]))
                return bytes(data) + bytes([sw1, sw2])
            except SmartcardException as exc:
                # "Card was reset" / "Card was removed": reopen and try once more.
                self.close()
                if attempt == 2:
                    raise SimUnavailable(f"the card in {self.reader!r} does not answer ({exc})") from exc
        raise AssertionError("unreachable")

    def transmit(self, apdu: bytes) -> bytes:
        """One APDU with the module's T=0 handling (TS 102 221 7.3.1.1.4): 6Cxx resend, 61xx GET RESPONSE."""
        response = self.transmit_raw(apdu)
        if response[-2] == 0x6C and len(apdu) == 5:
            response = self.transmit_raw(apdu[:4] + response[-1:])
        data = response[:-2]
        while response[-2] in (0x61, 0x9F):
            get_response = bytes([apdu[0] & 0x03, 0xC0, 0x00, 0x00, response[-1]])
            response = self.transmit_raw(get_response)
            data += response[:-2]
        return data + response[-2:]

    @staticmethod
    def sw(response: bytes) -> int:
        return int.from_bytes(response[-2:], "big")

    def select(self, fid: int) -> bytes:
        """SELECT by FID, FCP returned (TS 102 221 11.1.1, P2 '04')."""
        return self.transmit(bytes([0x00, 0xA4, 0x00, 0x04, 0x02]) + fid.to_bytes(2, "big"))

    def select_aid(self, aid: bytes) -> bytes:
        return self.transmit(bytes([0x00, 0xA4, 0x04, 0x04, len(aid)]) + aid)

    def usim_aid(self) -> bytes:
        """The USIM's AID from EF.DIR (TS 102 221 13.1), cached while the card stays connected."""
        if self._usim_aid is not None:
            return self._usim_aid
        self.select(FID_MF)
        fcp = self.select(FID_EF_DIR)
        if self.sw(fcp) != 0x9000:
            raise SimUnavailable(f"no EF.DIR on the card ({self.sw(fcp):04X})")
        record_length, records = _record_geometry(fcp[:-2])
        for number in range(1, records + 1):
            record = self.transmit(bytes([0x00, 0xB2, number, 0x04, record_length]))
            if self.sw(record) != 0x9000:
                break
            aid = _aid_of_dir_record(record[:-2])
            if aid is not None and aid.startswith(USIM_AID_PREFIX):
                self._usim_aid = aid
                return aid
        raise SimUnavailable("EF.DIR lists no USIM application")

    def select_usim(self) -> bytes:
        return self.select_aid(self.usim_aid())

    def read_imsi(self) -> str:
        """EF.IMSI of the USIM (TS 31.102 4.2.2), decoded."""
        selected = self.select_usim()
        if self.sw(selected) != 0x9000:
            raise _CmeFailure(13)
        selected = self.select(FID_EF_IMSI)
        if self.sw(selected) != 0x9000:
            raise _CmeFailure(13)
        content = self.transmit(bytes([0x00, 0xB0, 0x00, 0x00, 0x09]))
        if self.sw(content) == 0x6982:
            raise _CmeFailure(11)       # PIN needed to read EF.IMSI
        if self.sw(content) != 0x9000:
            raise _CmeFailure(13)
        imsi = decode_imsi(content[:-2])
        if not imsi:
            raise _CmeFailure(13)
        return imsi

    def authenticate(self, rand: bytes, autn: bytes) -> bytes:
        """USIM AUTHENTICATE in 3G context (TS 31.102 7.1.2): response data + SW, GET RESPONSE done here."""
        if len(rand) != 16 or len(autn) != 16:
            raise ValueError("RAND and AUTN are 16 bytes each")
        self.select_usim()
        body = bytes([0x10]) + rand + bytes([0x10]) + autn
        return self.transmit(bytes([0x00, 0x88, 0x00, 0x81, len(body)]) + body)


def _tlvs(data: bytes) -> dict[int, bytes]:
    """One level of simple BER-TLV with one-byte tags (enough for FCP and EF.DIR records)."""
    found: dict[int, bytes] = {}
    i = 0
    while i + 2 <= len(data):
        tag, length = data[i], data[i + 1]
        if tag in (0x00, 0xFF):
            break
        if length == 0x81 and i + 3 <= len(data):
            length, i = data[i + 2], i + 1
        found.setdefault(tag, data[i + 2:i + 2 + length])
        i += 2 + length
    return found


def _record_geometry(fcp: bytes) -> tuple[int, int]:
    """(record length, number of records) from a linear fixed EF's FCP (TS 102 221 11.1.1.4.3)."""
    template = _tlvs(fcp).get(0x62, fcp)
    descriptor = _tlvs(template).get(0x82, b"")
    if len(descriptor) < 5:
        raise SimUnavailable("EF.DIR has no record geometry in its FCP")
    return int.from_bytes(descriptor[2:4], "big"), descriptor[4]


def _aid_of_dir_record(record: bytes) -> bytes | None:
    template = _tlvs(record).get(0x61)
    return None if template is None else _tlvs(template).get(0x4F)


def decode_imsi(content: bytes) -> str:
    """EF.IMSI: length byte, then digit 1 over the parity nibble, then BCD nibble-swapped (TS 31.102 4.2.2)."""
    if not content or not 1 <= content[0] <= 8 or len(content) < 1 + content[0]:
        return ""
    nibbles = []
    for byte in content[1:1 + content[0]]:
        nibbles += [byte & 0x0F, byte >> 4]
    digits = [d for d in nibbles[1:] if d != 0xF]
    if any(d > 9 for d in digits):
        return ""
    return "".join(str(d) for d in digits)


# -- AT ---------------------------------------------------------------------------------

# TS 27.007 9.2.1 / 9.2.2: the texts this module uses with AT+CMEE=2.
_CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    13: "SIM failure",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    50: "incorrect parameters",
    100: "unknown",
    103: "Illegal MS",
    106: "Illegal ME",
    107: "GPRS services not allowed",
    111: "PLMN not allowed",
    112: "Location area not allowed",
    113: "Roaming not allowed in this location area",
}
# TS 27.007 9.2.2: EMM/GMM reject causes with their own +CME ERROR code.
_REJECT_CAUSE_CME = {3: 103, 6: 106, 7: 107, 11: 111, 12: 112, 13: 113}
_DENIED_DEFAULT_CME = 32

ACT_EUTRAN = 7   # TS 27.007 7.3 <AcT>

# CEREG/CREG <stat> (TS 27.007 10.1.22, 7.2)
STAT_NOT_SEARCHING, STAT_HOME, STAT_SEARCHING, STAT_DENIED, STAT_ROAMING = 0, 1, 2, 3, 5

# +CRSM commands (TS 27.007 8.18) and their INS (TS 102 221 10.1.2)
_CRSM_INS = {176: 0xB0, 178: 0xB2, 192: 0xC0, 214: 0xD6, 220: 0xDC, 242: 0xF2}

_EXTENDED = re.compile(r"(\+[A-Z0-9]+)(=\?|=|\?)?(.*)", re.IGNORECASE | re.DOTALL)


class _CmeFailure(Exception):
    """Ends a command with +CME ERROR: <code> (or ERROR under +CMEE=0)."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(code)


class _SyntaxFailure(Exception):
    """Ends a command with plain ERROR (V.250: unknown command, bad syntax)."""


def _params(text: str) -> list[str]:
    fields, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    fields.append("".join(current).strip())
    return fields


def _number(text: str, low: int, high: int) -> int:
    text = text.strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise _CmeFailure(50)
    return int(text)


def _string(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    if '"' in text:
        raise _CmeFailure(50)
    return text


class EmulatedModem:
    """An AT modem on a pty whose SIM is the PC/SC reader ``sim_reader``.

    ``start()`` returns the pty path a driver opens; several instances run side by side.
    """

    def __init__(self, sim_reader: str, *, imei: str = "356938035643809", manufacturer: str = "mcim-hil",
                 model: str = "EMU-LTE", revision: str = "EMU-LTE_1.0.0") -> None:
        self.sim_reader = sim_reader
        self.imei = imei
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision
        self.port: str | None = None
        self._sim = _Sim(sim_reader)
        self._network: AirInterface | None = None
        self._master = self._slave = -1
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._write_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._reset_settings()
        # Network side state
        self._fun = 1
        self._stat = STAT_NOT_SEARCHING
        self._cell: tuple[str, str] | None = None
        self._reject_cause: int | None = None
        self._attached_imsi: str | None = None
        self._ip: str | None = None
        self._contexts: dict[int, tuple[str, str]] = {1: ("IP", "")}   # cid 1: the LTE default bearer

    def _reset_settings(self) -> None:
        self._echo = True      # V.250 6.2.4: E1 by default, as real modules
        self._cmee = 0
        self._s3 = 13          # V.250 6.2.1 command line termination (CR)
        self._s4 = 10          # V.250 6.2.2 response formatting (LF)
        self._s5 = 8           # V.250 6.2.3 command line editing (BS)
        self._cereg_n = 0
        self._creg_n = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> str:
        if self._thread is not None:
            raise RuntimeError("the emulated modem is already running")
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)        # no line discipline between driver and module
        os.set_blocking(self._master, False)
        self._wake_r, self._wake_w = os.pipe()
        self.port = os.ttyname(self._slave)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name=f"emulated-modem {self.port}", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5.0)
        self._thread = None
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = self._wake_r = self._wake_w = -1
        self._sim.close()
        self.trace_sim_to(None)

    def __enter__(self) -> EmulatedModem:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatedModem(port={self.port!r}, sim_reader={self.sim_reader!r})"

    def trace_sim_to(self, address: tuple[str, int] | None) -> None:
        """Send the module's SIM exchanges as GSMTAP to ``address``, as a SIMtrace2 does; None stops."""
        from .gsmtap_tap import GsmtapTap
        old, self._sim.tap = self._sim.tap, (GsmtapTap(address) if address is not None else None)
        if old is not None:
            old.close()

    def set_network(self, network: AirInterface | None) -> None:
        """The network the radio reaches; None takes the module out of coverage (no detach signalling)."""
        with self._state_lock:
            self._network = network

    # -- the pty ------------------------------------------------------------------------

    def _serve(self) -> None:
        line = bytearray()
        while not self._stopping:
            try:
                ready, _, _ = select.select([self._master, self._wake_r], [], [])
            except OSError:
                return
            if self._wake_r in ready:
                return
            try:
                chunk = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:     # no slave open (cannot happen while we hold ours)
                    continue
                return
            echo = bytearray()
            for byte in chunk:
                if byte == self._s3:
                    echo.append(byte)
                    self._flush_echo(echo)
                    self._execute(bytes(line))
                    line.clear()
                elif byte == self._s5:
                    echo.append(byte)
                    if line:
                        line.pop()
                else:
                    echo.append(byte)
                    line.append(byte)
            self._flush_echo(echo)
            if len(line) > 1024:      # nobody types that: drop it rather than grow forever
                line.clear()

    def _flush_echo(self, echo: bytearray) -> None:
        if echo and self._echo:
            self._write(bytes(echo))
        echo.clear()

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._master, view)
                    view = view[written:]
                except BlockingIOError:
                    # Nobody is reading the pty: wait a little, then drop rather than hang the module.
                    _, ready, _ = select.select([], [self._master], [], 0.5)
                    if not ready:
                        log.debug("%s: pty full, dropped %d bytes", self.port, len(view))
                        return
                except OSError:
                    return

    def _frame(self, text: str) -> bytes:
        eol = bytes([self._s3, self._s4])
        return eol + text.encode("ascii", "replace") + eol      # V.250 5.7.1, V1 format

    def _send_urc(self, text: str) -> None:
        self._write(self._frame(text))

    # -- command lines ------------------------------------------------------------------

    def _execute(self, raw: bytes) -> None:
        text = raw.decode("latin-1").strip()
        start = text.upper().find("AT")
        if start < 0:
            return          # V.250 5.2.1: characters before "AT" are ignored; no AT, no command
        body = text[start + 2:].strip()
        try:
            with self._state_lock:
                lines = self._dispatch(body)
        except _CmeFailure as failure:
            self._write(self._frame(self._cme_result(failure.code)))
            return
        except _SyntaxFailure:
            self._write(self._frame("ERROR"))
            return
        except Exception:
            log.exception("%s: command failed inside the emulator", self.port)
            self._write(self._frame("ERROR"))
            return
        out = b"".join(self._frame(line) for line in lines)
        self._write(out + self._frame("OK"))

    def _cme_result(self, code: int) -> str:
        if self._cmee == 0:
            return "ERROR"
        if self._cmee == 1:
            return f"+CME ERROR: {code}"
        return f"+CME ERROR: {_CME_TEXT.get(code, 'unknown')}"

    def _dispatch(self, body: str) -> list[str]:
        upper = body.upper()
        if upper == "":
            return []
        if upper.startswith("+"):
            match = _EXTENDED.fullmatch(body)
            if match is None:
                raise _SyntaxFailure()
            name, form, args = match.group(1).upper(), match.group(2) or "", match.group(3)
            if form != "=" and args.strip():
                raise _SyntaxFailure()
            handler = self._extended.get(name)
            if handler is None:
                raise _SyntaxFailure()
            return handler(self, form, args)
        return self._basic(upper)

    def _basic(self, upper: str) -> list[str]:
        if upper in ("E", "E0", "E1"):
            self._echo = upper == "E1"
            return []
        if upper in ("I", "I0"):
            return [self.manufacturer, self.model, f"Revision: {self.revision}"]
        if upper in ("Z", "Z0", "&F", "&F0"):
            self._reset_settings()
            return []
        if upper in ("V1", "Q0"):
            return []
        register = re.fullmatch(r"S([345])(\?|=(\d{1,3}))", upper)
        if register:
            name = f"_s{register.group(1)}"
            if register.group(2) == "?":
                return [f"{getattr(self, name):03d}"]      # V.250 5.3.2: S-parameter read in 3 digits
            value = int(register.group(3))
            if value > 127:
                raise _SyntaxFailure()
            setattr(self, name, value)
            return []
        raise _SyntaxFailure()

    # -- extended commands (TS 27.007) ----------------------------------------------------

    def _cmd_cmee(self, form: str, args: str) -> list[str]:
        if form == "?":
            return [f"+CMEE: {self._cmee}"]
        if form == "=?":
            return ["+CMEE: (0-2)"]
        if form == "=":
            self._cmee = _number(args or "0", 0, 2)
            return []
        raise _SyntaxFailure()

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
        raise _SyntaxFailure()

    def _cmd_cgsn(self, form: str, args: str) -> list[str]:
        # TS 27.007 5.4: <snt> 0 serial number (bare), 1 IMEI, 2 IMEISV, 3 SVN.
        if form == "=?":
            return ["+CGSN: (0-3)"]
        if form == "":
            return [self.imei]
        if form != "=":
            raise _SyntaxFailure()
        snt = _number(args or "0", 0, 3)
        svn = "01"
        if snt == 0:
            return [self.imei]
        value = {1: self.imei, 2: self.imei[:14] + svn, 3: svn}[snt]
        return [f'+CGSN: "{value}"']

    def _cmd_cimi(self, form: str, args: str) -> list[str]:
        if form == "=?":
            return []
        if form != "":
            raise _SyntaxFailure()
        return [self._sim_call(self._sim.read_imsi)]

    def _sim_call(self, operation: Callable[..., object], *args: object):
        try:
            return operation(*args)
        except SimUnavailable as exc:
            log.debug("%s: SIM unavailable: %s", self.port, exc)
            raise _CmeFailure(10) from exc

    def _cmd_csim(self, form: str, args: str) -> list[str]:
        # TS 27.007 8.17: AT+CSIM=<length>,"<command>"; <length> counts hex characters.
        if form == "=?":
            return []
        if form != "=":
            raise _SyntaxFailure()
        fields = _params(args)
        if len(fields) != 2:
            raise _CmeFailure(50)
        length, hexed = fields[0], _string(fields[1])
        if not length.isdigit() or int(length) != len(hexed) or len(hexed) < 8 or len(hexed) % 2:
            raise _CmeFailure(50)
        try:
            apdu = bytes.fromhex(hexed)
        except ValueError as exc:
            raise _CmeFailure(50) from exc
        response = self._sim_call(self._sim.transmit_raw, apdu).hex().upper()
        return [f'+CSIM: {len(response)},"{response}"']

    def _cmd_crsm(self, form: str, args: str) -> list[str]:
        # TS 27.007 8.18: +CRSM=<command>[,<fileid>[,<P1>,<P2>,<P3>[,<data>[,<pathid>]]]]
        if form == "=?":
            return []
        if form != "=":
            raise _SyntaxFailure()
        fields = _params(args) + [""] * 7
        command = _number(fields[0], 0, 255)
        if command not in _CRSM_INS:
            raise _CmeFailure(4)
        fileid = _number(fields[1], 0, 0xFFFF) if fields[1] else None
        p1, p2, p3 = (_number(f, 0, 255) if f else 0 for f in fields[2:5])
        try:
            data = bytes.fromhex(_string(fields[5]))
            path = bytes.fromhex(_string(fields[6]))
        except ValueError as exc:
            raise _CmeFailure(50) from exc
        if command != 242 and fileid is None:
            raise _CmeFailure(50)
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
            raise _SyntaxFailure()
        fields = _params(args)
        fun = _number(fields[0], 0, 4)
        if fun not in (0, 1, 4):
            raise _CmeFailure(50)
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
            raise _SyntaxFailure()
        fields = _params(args)
        cid = _number(fields[0], 1, 15)
        if len(fields) == 1:
            self._contexts.pop(cid, None)       # undefine the context
            return []
        pdp_type = _string(fields[1]).upper()
        if pdp_type not in ("IP", "IPV6", "IPV4V6"):
            raise _CmeFailure(50)
        apn = _string(fields[2]) if len(fields) > 2 else ""
        self._contexts[cid] = (pdp_type, apn)
        return []

    def _cmd_cgatt(self, form: str, args: str) -> list[str]:
        # TS 27.007 10.1.9
        if form == "?":
            return [f"+CGATT: {1 if self._attached_imsi else 0}"]
        if form == "=?":
            return ["+CGATT: (0,1)"]
        if form != "=":
            raise _SyntaxFailure()
        if _number(args, 0, 1) == 1:
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
            raise _SyntaxFailure()
        self._cereg_n = _number(args or "0", 0, 3)
        return []

    def _cmd_creg(self, form: str, args: str) -> list[str]:
        # TS 27.007 7.2, minimal: the same registration as seen by +CEREG (LTE-only module)
        if form == "?":
            return [f"+CREG: {self._creg_n},{self._registration_fields(self._creg_n)}"]
        if form == "=?":
            return ["+CREG: (0-2)"]
        if form != "=":
            raise _SyntaxFailure()
        self._creg_n = _number(args or "0", 0, 2)
        return []

    def _cmd_cgpaddr(self, form: str, args: str) -> list[str]:
        # TS 27.007 10.1.14: +CGPADDR: <cid>[,<PDP_addr>]
        if form == "=?":
            return ["+CGPADDR: (" + ",".join(str(c) for c in sorted(self._contexts)) + ")"]
        if form == "":
            cids = sorted(self._contexts)
        elif form == "=":
            cids = [_number(f, 1, 15) for f in _params(args)] if args.strip() else sorted(self._contexts)
        else:
            raise _SyntaxFailure()
        lines = []
        for cid in cids:
            address = self._address_of(cid)
            lines.append(f'+CGPADDR: {cid},"{address}"' if address else f"+CGPADDR: {cid}")
        return lines

    _extended: dict[str, Callable[[EmulatedModem, str, str], list[str]]] = {
        "+CMEE": _cmd_cmee, "+CGMI": _cmd_cgmi, "+CGMM": _cmd_cgmm, "+CGMR": _cmd_cgmr,
        "+CGSN": _cmd_cgsn, "+CIMI": _cmd_cimi, "+CSIM": _cmd_csim, "+CRSM": _cmd_crsm,
        "+CFUN": _cmd_cfun, "+CGDCONT": _cmd_cgdcont, "+CGATT": _cmd_cgatt, "+CEREG": _cmd_cereg,
        "+CREG": _cmd_creg, "+CGPADDR": _cmd_cgpaddr,
    }

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

    def _attach(self) -> None:
        if self._attached_imsi is not None:
            return
        if self._fun != 1:
            raise _CmeFailure(30)
        imsi = self._sim_call(self._sim.read_imsi)
        network = self._network
        if network is None:
            raise _CmeFailure(30)           # no coverage: stat stays 0
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
            raise _CmeFailure(10) from exc
        except Exception:
            log.exception("%s: the network failed during attach", self.port)
            self._set_stat(STAT_NOT_SEARCHING)
            raise _CmeFailure(100) from None
        self._cell = (result.tac, result.ci)
        if result.accepted:
            self._attached_imsi = imsi
            self._ip = result.ip_address
            self._set_stat(STAT_HOME if result.home else STAT_ROAMING)
            return
        self._reject_cause = result.reject_cause
        self._set_stat(STAT_DENIED)
        raise _CmeFailure(_REJECT_CAUSE_CME.get(result.reject_cause or -1, _DENIED_DEFAULT_CME))

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
