"""The emulated module's own SIM access: pyscard on a PC/SC reader, with the module's T=0 handling.

The reader is opened SHARED and left alone when the module is idle (:meth:`ModuleSim.release`,
called by the module after a quiet spell), so a tool such as pySim can take the card
exclusively between the module's uses, as with a module that has parked its SIM.
Secrets (APDU data, which may carry a PIN or ADM key) are never logged.
"""

from __future__ import annotations

import logging

from .modem_at import CmeFailure

__all__ = ["ModuleSim", "SimUnavailable", "decode_imsi", "decode_iccid"]

log = logging.getLogger(__name__)

USIM_AID_PREFIX = bytes.fromhex("A0000000871002")   # TS 31.102 annex A: RID + USIM app code
FID_MF = 0x3F00
FID_EF_DIR = 0x2F00      # TS 102 221 13.1
FID_EF_ICCID = 0x2FE2    # TS 102 221 13.2
FID_EF_IMSI = 0x6F07     # TS 31.102 4.2.2
FID_ADF_CURRENT = 0x7FFF  # TS 102 221 8.4.2: the current application
KEY_PIN1 = 0x01          # TS 102 221 table 9.3


class SimUnavailable(Exception):
    """No reader, no card, or the card went away: +CME ERROR: 10."""


def _release_quietly(connection) -> None:
    """Free a pyscard connection's PC/SC context now, where a failure can be caught: after a
    pcscd restart its context is gone, and pyscard's destructor would raise it unraisably."""
    try:
        connection.release()
    except Exception as exc:
        log.debug("SIM: release: %s", exc)
        connection.hcontext = None  # nothing left to free in a daemon that is gone


class ModuleSim:
    """The module's own SIM access: PC/SC through pyscard, opened lazily, reopened after a reset."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self._connection = None
        self._usim_aid: bytes | None = None
        self.tap = None  # a GsmtapTap: what a SIMtrace2 on the contacts would see

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def close(self) -> None:
        """Leave the reader (card left powered: SCARD_LEAVE_CARD)."""
        connection, self._connection = self._connection, None
        self._usim_aid = None
        if connection is not None:
            try:
                connection.disconnect()
            except Exception as exc:
                log.debug("SIM %s: disconnect: %s", self.reader, exc)
            _release_quietly(connection)

    release = close   # the module is idle: others may take the card exclusively

    def power_cycle(self) -> None:
        """The module restarted: its SIM is reset (pcscd resets the card as the module lets go),
        so PIN and ADM verifications and the current file are gone; the next use reconnects."""
        from smartcard.scard import SCARD_RESET_CARD
        connection = self._connection
        while connection is not None and hasattr(connection, "component"):   # pyscard's decorator
            connection = connection.component
        if connection is not None and hasattr(connection, "disposition"):
            connection.disposition = SCARD_RESET_CARD
        self.close()

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
            raise CmeFailure(13)
        selected = self.select(FID_EF_IMSI)
        if self.sw(selected) != 0x9000:
            raise CmeFailure(13)
        content = self.transmit(bytes([0x00, 0xB0, 0x00, 0x00, 0x09]))
        if self.sw(content) == 0x6982:
            raise CmeFailure(11)       # PIN needed to read EF.IMSI
        if self.sw(content) != 0x9000:
            raise CmeFailure(13)
        imsi = decode_imsi(content[:-2])
        if not imsi:
            raise CmeFailure(13)
        return imsi

    def read_iccid(self) -> str:
        """EF.ICCID (TS 102 221 13.2), readable without a PIN."""
        self.select(FID_MF)
        if self.sw(self.select(FID_EF_ICCID)) != 0x9000:
            raise CmeFailure(13)
        content = self.transmit(bytes([0x00, 0xB0, 0x00, 0x00, 0x0A]))
        iccid = decode_iccid(content[:-2]) if self.sw(content) == 0x9000 else ""
        if not iccid:
            raise CmeFailure(13)
        return iccid

    def pin1_state(self) -> str:
        """+CPIN's <code> (TS 27.007 8.3): READY, SIM PIN or SIM PUK, from the PIN1 status.

        An empty VERIFY (TS 102 221 11.1.9) answers '9000' once verified and '63Cx' otherwise;
        the USIM's FCP PIN status template (TS 102 221 9.5.2) says whether PIN1 is enabled at all."""
        status = self.sw(self.transmit(bytes([0x00, 0x20, 0x00, KEY_PIN1])))
        if status == 0x9000:
            return "READY"
        if status == 0x6983:
            return "SIM PUK"
        fcp = self.select_usim()
        template = _tlvs(fcp[:-2]).get(0x62, b"")
        ps_do = _tlvs(_tlvs(template).get(0xC6, b"")).get(0x90, b"")
        refs = _key_references(template)
        if ps_do and refs and KEY_PIN1 in refs:
            enabled = bool(ps_do[0] & (0x80 >> refs.index(KEY_PIN1)))
            return "SIM PIN" if enabled else "READY"
        return "SIM PIN"

    def verify_pin1(self, pin: str) -> bool:
        """VERIFY PIN1 (TS 102 221 11.1.9), PIN padded with 'FF' to 8 bytes; never retries."""
        block = pin.encode("ascii").ljust(8, b"\xFF")
        return self.sw(self.transmit(bytes([0x00, 0x20, 0x00, KEY_PIN1, 0x08]) + block)) == 0x9000

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


def _key_references(fcp_template: bytes) -> list[int]:
    """The key references (tag 83) of the PIN status template, in PS_DO bit order (TS 102 221 9.5.2)."""
    template = _tlvs(fcp_template).get(0xC6, b"")
    refs, i = [], 0
    while i + 2 <= len(template):
        tag, length = template[i], template[i + 1]
        if tag == 0x83 and length == 1:
            refs.append(template[i + 2])
        i += 2 + length
    return refs


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


def decode_iccid(content: bytes) -> str:
    """EF.ICCID: BCD nibble-swapped, 'F' padded (TS 102 221 13.2)."""
    digits = "".join(f"{b & 0x0F:x}{b >> 4:x}" for b in content).rstrip("f")
    return digits if digits.isdecimal() and digits.isascii() else ""
