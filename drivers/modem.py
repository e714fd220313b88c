"""A cellular module on its AT port: TS 27.007 commands and the V.250 settings the driver
changes and gives back. Knows AT and nothing of TR 33.812. Split by job:

- modem_link.py: the AT link (pyserial, one command in flight, the reader thread that sorts
  echo, information text, final result codes and URCs; subscribe / wait_urc);
- modem_answers.py: result codes, the errors they raise, parsing of answers (+CEREG, numbers);
- modem.py (here): the commands; modem_quirks.py: what a module family does its own way.

Secrets: a command sent with ``secret=True`` (and any +CSIM carrying an ISO 7816 PIN
command) is flagged in its CommandEvent and named without its parameters in logs and
exceptions.
"""

from __future__ import annotations

import re
import time

from mcim_hil.drivers.errors import ModemError
from mcim_hil.drivers.modem_answers import (
    _PIN_INS,
    _REGISTRATION_POLL_S,
    CME_ERRORS,
    CmeError,
    CmsError,
    MalformedAnswer,
    ModemGarbage,
    ModemIdentity,
    ModemReset,
    ModemTimeout,
    Registration,
    RegistrationDenied,
    _after_prefix,
    _int,
    _redacted,
    _strip_own_prefix,
    split_parameters,
    unquote,
)
from mcim_hil.drivers.modem_link import AtLink, UrcCallback, log

# Never sent twice (may_retry): dial, answer, SMS send, functionality (restart), PIN and
# password commands (TS 27.007 8.3 +CPIN, 7.5 +CPWD, 7.4 +CLCK), logical channels, USSD
_NOT_AGAIN = ("ATD", "ATA", "AT+CMGS", "AT+CMSS", "AT+CFUN=", "AT+CPIN=", "AT+CPWD", "AT+CLCK=", "AT+CCHO",
              "AT+CCHC", "AT+CGLA", "AT+CUSD")
# ISO 7816-4 / TS 102 221 instructions that do the same when sent twice: SELECT, READ BINARY,
# READ RECORD, GET RESPONSE, STATUS, UPDATE BINARY, UPDATE RECORD (absolute/current modes)
_IDEMPOTENT_INS = frozenset({0xA4, 0xB0, 0xB2, 0xC0, 0xF2, 0xD6, 0xDC})
_CSIM_APDU = re.compile(r"AT\+CSIM=[0-9]+,\"([0-9A-F]{4})", re.ASCII)

__all__ = [
    "CME_ERRORS",
    "CmeError",
    "MalformedAnswer",
    "CmsError",
    "Modem",
    "ModemError",
    "ModemIdentity",
    "ModemGarbage",
    "ModemReset",
    "ModemTimeout",
    "Registration",
    "RegistrationDenied",
    "UrcCallback",
]


class Modem(AtLink):
    """A cellular module: the V.250 settings it is left with and the TS 27.007 commands, over
    its AT link (drivers/modem_link.py). Open with :meth:`open`; close, or use as a context manager.
    """

    def __init__(self, *args, **kwargs) -> None:
        self._found_echo: bool | None = None      # E and +CMEE as found, restored by close()
        self._found_cmee: int | None = None
        self._echo_set: bool | None = None        # E and +CMEE as this driver set them: put back
        self._cmee_set: int | None = None         # after the module restarts
        self._quirks = None                        # modem_quirks.Quirks once identified
        super().__init__(*args, **kwargs)

    # -- V.250 and TS 27.007 commands ---------------------------------------------------

    def at(self) -> None:
        self.command("AT")

    def echo_off(self) -> None:
        self.command("ATE0")   # V.250 6.2.4
        self._note_found_echo()
        self._echo_set = False

    def echo_on(self) -> None:
        self.command("ATE1")
        self._note_found_echo()
        self._echo_set = True

    def may_retry(self, line: str) -> bool:
        """Safe to send again when its answer was lost: not a PIN or password (a try would be
        spent twice), not a dial, an SMS or a restart, and through +CSIM only an APDU that
        reads, selects or writes the same bytes again (never VERIFY, AUTHENTICATE, INCREASE)."""
        upper = line.upper()
        if upper.startswith(_NOT_AGAIN):
            return False
        if upper.startswith("AT+CSIM="):
            apdu = _CSIM_APDU.match(upper)
            return apdu is not None and bytes.fromhex(apdu.group(1))[1] in _IDEMPOTENT_INS
        return True

    def after_restart(self) -> None:
        """The module restarted (RDY): echo and +CMEE back to what this driver had set."""
        log.info("%s: the module restarted; putting back E and +CMEE", self.port)
        if self._echo_set is not None:
            self.command("ATE1" if self._echo_set else "ATE0")
        if self._cmee_set is not None:
            self.command(f"AT+CMEE={self._cmee_set}")

    def _note_found_echo(self) -> None:
        # the ATE line itself is echoed (or not) under the setting it replaces
        if self._found_echo is None:
            self._found_echo = self._last_echo_seen

    def set_error_mode(self, n: int = 2) -> None:
        """+CMEE (TS 27.007 9.1): 0 plain ERROR, 1 numeric, 2 verbose +CME ERROR."""
        if n not in (0, 1, 2):
            raise ValueError(f"+CMEE takes 0, 1 or 2, not {n}")
        if self._found_cmee is None:
            self._found_cmee = self._read_cmee()
        self.command(f"AT+CMEE={n}")
        self._cmee_set = n

    def _read_cmee(self) -> int | None:
        try:
            value = self._value("AT+CMEE?", "+CMEE:")
        except ModemError:
            return None
        return int(value) if re.fullmatch(r"[0-2]", value.strip()) else None

    def restore_settings(self) -> list[str]:
        """Give back the echo (E) and +CMEE the module had before this driver changed them, so
        the next tool (pySim-shell's --modem-device, a terminal) finds the module as it was.
        Best effort, as close() calls it; returns the commands sent."""
        sent: list[str] = []
        if self._closing or self._reader_error is not None:
            return sent
        wanted = []
        if self._found_cmee is not None:
            wanted.append(f"AT+CMEE={self._found_cmee}")
        if self._found_echo is not None:
            wanted.append("ATE1" if self._found_echo else "ATE0")   # echo last: its own answer is clean
        for cmd in wanted:
            try:
                self.command(cmd, timeout=min(self.timeout, 2.0))
                sent.append(cmd)
            except ModemError as exc:
                log.debug("%s: restoring %s: %s", self.port, cmd, exc)
        self._found_cmee = self._found_echo = None
        return sent

    def quirks(self):
        """The module family's quirks (drivers/modem_quirks.py), from +CGMI/+CGMM, asked once."""
        if self._quirks is None:
            from mcim_hil.drivers.modem_quirks import quirks_for
            self._quirks = quirks_for(self._value("AT+CGMI", "+CGMI:"), self._value("AT+CGMM", "+CGMM:"))
        return self._quirks

    def iccid(self) -> str:
        """The SIM's ICCID through the family's own command, else +CRSM READ BINARY of EF.ICCID."""
        for cmd, prefix in self.quirks().iccid_commands:
            try:
                value = self._value(cmd, prefix)
            except ModemError:
                continue
            value = value.strip().strip('"').rstrip("Ff")
            if re.fullmatch(r"[0-9]{18,20}", value, re.ASCII):
                return value
        sw1, sw2, data = self.crsm(176, 0x2FE2, 0, 0, 10, pathid="3F00")  # TS 102 221 13.2
        digits = "".join(f"{b & 0x0F:x}{b >> 4:x}" for b in data).rstrip("f")
        if (sw1, sw2) != (0x90, 0x00) or not re.fullmatch(r"[0-9]{18,20}", digits, re.ASCII):
            raise ModemError(self.port, "ICCID", "the module answered no ICCID")
        return digits

    def identity(self) -> ModemIdentity:
        """+CGMI/+CGMM/+CGMR/+CGSN (TS 27.007 5.1-5.4)."""
        return ModemIdentity(
            manufacturer=self._value("AT+CGMI", "+CGMI:"),
            model=self._value("AT+CGMM", "+CGMM:"),
            revision=self._value("AT+CGMR", "+CGMR:"),
            imei=self._value("AT+CGSN", "+CGSN:"),
        )

    def imsi(self) -> str:
        """+CIMI (TS 27.007 5.6): the IMSI the module reads from its SIM."""
        value = self._value("AT+CIMI", "+CIMI:")
        if not re.fullmatch(r"[0-9]{6,15}", value):
            raise ModemError(self.port, "AT+CIMI", f"the answer is not an IMSI ({len(value)} characters)")
        return value

    def _value(self, cmd: str, prefix: str) -> str:
        # Some modules prefix the answer ("+CGMI: Quectel"), most do not.
        for line in self.command(cmd):
            value = _strip_own_prefix(line, prefix)
            if value:
                return value
        raise ModemError(self.port, cmd, "the answer carried no information text")

    def csim(self, apdu: bytes, *, secret: bool = False) -> bytes:
        """+CSIM (TS 27.007 8.17): one APDU to the SIM, its response data + SW1 SW2, unchanged.

        The module may pass T=0 '61xx' through; the caller does GET RESPONSE. An ISO 7816
        PIN command (VERIFY, CHANGE, ... with data) is always treated as secret.
        """
        apdu = bytes(apdu)
        if len(apdu) < 4:
            raise ModemError(self.port, "AT+CSIM", f"an APDU has at least 4 bytes, got {len(apdu)}")
        secret = secret or (apdu[1] in _PIN_INS and len(apdu) > 5)
        hexed = apdu.hex().upper()
        cmd = f'AT+CSIM={len(hexed)},"{hexed}"'   # <length> counts hex characters
        shown = _redacted(cmd) if secret else cmd
        for line in self.command(cmd, secret=secret):
            if line.upper().startswith("+CSIM:"):
                fields = split_parameters(_after_prefix(line))
                hex_response = unquote(fields[-1])
                try:
                    response = bytes.fromhex(hex_response)
                except ValueError as exc:
                    raise ModemError(self.port, shown, "the +CSIM response is not hex") from exc
                if len(fields) >= 2 and _int(fields[0]) != len(hex_response):
                    raise ModemError(self.port, shown, f"+CSIM length {fields[0]} does not match "
                                     f"{len(hex_response)} hex characters")
                if len(response) < 2:
                    raise ModemError(self.port, shown, "the +CSIM response has no status word")
                return response
        raise ModemError(self.port, shown, "no +CSIM: line in the answer")

    def crsm(self, command: int, fileid: int | None = None, p1: int | None = None, p2: int | None = None,
             p3: int | None = None, data: bytes | None = None, pathid: bytes | str | None = None,
             *, secret: bool = False) -> tuple[int, int, bytes]:
        """+CRSM (TS 27.007 8.18): restricted SIM access; returns (sw1, sw2, response data).

        ``command``: 176 READ BINARY, 178 READ RECORD, 192 GET RESPONSE, 214 UPDATE BINARY,
        220 UPDATE RECORD, 242 STATUS. ``pathid`` as bytes or hex text ("3F007FFF").
        """
        params = [str(command)]
        p123 = (p1, p2, p3)
        if any(p is not None for p in p123) and any(p is None for p in p123):
            raise ValueError("+CRSM takes P1, P2 and P3 together")
        if (data is not None or pathid is not None) and p1 is None:
            raise ValueError("+CRSM needs P1, P2, P3 before <data> or <pathid>")
        if fileid is not None or p1 is not None:
            if fileid is None:
                raise ValueError("+CRSM needs <fileid> before P1, P2, P3")
            params.append(str(fileid))
        if p1 is not None:
            params += [str(p1), str(p2), str(p3)]
        if data is not None or pathid is not None:
            params.append(f'"{bytes(data).hex().upper()}"' if data is not None else "")
        if pathid is not None:
            path_hex = pathid.hex() if isinstance(pathid, (bytes, bytearray)) else pathid
            params.append(f'"{path_hex.upper()}"')
        cmd = "AT+CRSM=" + ",".join(params)
        shown = _redacted(cmd) if secret else cmd
        for line in self.command(cmd, secret=secret):
            if line.upper().startswith("+CRSM:"):
                fields = split_parameters(_after_prefix(line))
                sw1, sw2 = _int(fields[0]), _int(fields[1]) if len(fields) > 1 else None
                if sw1 is None or sw2 is None or sw1 > 0xFF or sw2 > 0xFF:
                    raise ModemError(self.port, shown, f"no SW1, SW2 in the answer {line!r}")
                try:
                    response = bytes.fromhex(unquote(fields[2])) if len(fields) > 2 else b""
                except ValueError as exc:
                    raise ModemError(self.port, shown, "the +CRSM response is not hex") from exc
                return sw1, sw2, response
        raise ModemError(self.port, shown, "no +CRSM: line in the answer")

    # -- packet domain (TS 27.007 10.1) -------------------------------------------------

    def define_pdp_context(self, cid: int, pdp_type: str = "IP", apn: str = "") -> None:
        """+CGDCONT (TS 27.007 10.1.1)."""
        if '"' in pdp_type or '"' in apn:
            raise ValueError("PDP type and APN cannot contain double quotes")
        self.command(f'AT+CGDCONT={cid},"{pdp_type}","{apn}"')

    def attach(self, timeout: float = 180.0) -> None:
        """+CGATT=1 (TS 27.007 10.1.9); an attach on a real network can take minutes."""
        self.command("AT+CGATT=1", timeout)

    def detach(self, timeout: float = 60.0) -> None:
        self.command("AT+CGATT=0", timeout)

    def attached(self) -> bool:
        for line in self.command("AT+CGATT?"):
            if line.upper().startswith("+CGATT:"):
                state = _int(_after_prefix(line))
                if state not in (0, 1):     # TS 27.007 10.1.9: <state> 0 detached, 1 attached
                    raise MalformedAnswer(self.port, "AT+CGATT?", f"<state> is not 0 or 1 in {line!r}")
                return state == 1
        raise ModemError(self.port, "AT+CGATT?", "no +CGATT: line in the answer")

    def set_registration_reporting(self, n: int) -> None:
        """+CEREG=<n> (TS 27.007 10.1.22): 0 off, 1 stat URCs, 2 with location, 3 with reject cause."""
        self.command(f"AT+CEREG={n}")

    def registration(self) -> Registration:
        for line in self.command("AT+CEREG?"):
            if line.upper().startswith("+CEREG:"):
                try:
                    return Registration.from_read(line)
                except MalformedAnswer as exc:
                    raise MalformedAnswer(self.port, "AT+CEREG?", exc.message) from exc
        raise ModemError(self.port, "AT+CEREG?", "no +CEREG: line in the answer")

    def pdp_address(self, cid: int) -> str | None:
        """+CGPADDR=<cid> (TS 27.007 10.1.14): the context's address, None when it has none."""
        cmd = f"AT+CGPADDR={cid}"
        for line in self.command(cmd):
            if not line.upper().startswith("+CGPADDR:"):
                continue
            fields = split_parameters(_after_prefix(line))
            got = _int(fields[0])
            if got is None:
                raise MalformedAnswer(self.port, cmd, f"<cid> is not a number in {line!r}")
            if got != cid:
                continue
            address = unquote(fields[1]) if len(fields) > 1 else ""
            return address if address and address not in ("0.0.0.0", "0:0:0:0:0:0:0:0") else None
        return None

    def wait_registered(self, timeout: float) -> Registration:
        """Block until +CEREG shows home or roaming registration (by URC, else by polling)."""
        deadline = time.monotonic() + timeout
        while True:
            mark = self.urc_seq
            reg = self.registration()
            if reg.registered:
                return reg
            if reg.denied:
                cause = f", reject cause {reg.reject_cause}" if reg.reject_cause is not None else ""
                raise RegistrationDenied(self.port, "AT+CEREG?", f"registration denied (stat 3{cause})", reg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModemTimeout(self.port, "AT+CEREG?",
                                   f"not registered within {timeout:g} s (last stat {reg.stat})")
            try:
                self.wait_urc("+CEREG:", min(remaining, _REGISTRATION_POLL_S), since=mark)
            except ModemTimeout:
                pass
