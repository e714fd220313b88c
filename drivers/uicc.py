"""The UICC driver: ISO 7816-4 / TS 102 221 / TS 31.102 commands over a transport.

One method per card operation a lab engineer knows (select, read_binary, verify_adm,
authenticate...). T=0 procedure bytes are handled here (TS 102 221 7.3.1.1.4), status
words become named CardError subclasses, and every command emits one CommandEvent.

Safety: ``verify_adm`` and ``verify_pin`` read the retry counter first and refuse
(SafetyRefused, nothing sent) when a wrong key would leave fewer than one try; EF.ICCID
and other factory files are never written. Keys and PINs never reach a message or repr.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from mcim_hil.drivers.errors import CardError, CardRemoved, CardTimeout, DeviceError, SafetyRefused
from mcim_hil.drivers.hook import CommandEvent, CommandHook
from mcim_hil.drivers.uicc_files import (
    ADF_USIM, DF_PATHS, EF_AD, EF_DIR, EF_ICCID, EF_IMSI, AdminData, EfDecl, Fcp, decode_dir_record,
    decode_fcp,
)
from mcim_hil.drivers.uicc_transport import Transport

T = TypeVar("T")

# --------------------------------------------------------------------------- status words

class FileNotFound(CardError):
    """6A82: file or application not found."""


class SecurityStatusNotSatisfied(CardError):
    """6982: the access condition (PIN, ADM) is not met."""


class WrongPin(CardError):
    """63Cx: verification failed; ``tries_left`` = x."""

    def __init__(self, device: str, command: str, message: str, sw: int | None = None,
                 tries_left: int = 0) -> None:
        self.tries_left = tries_left
        super().__init__(device, command, message, sw)


class AuthMethodBlocked(CardError):
    """6983: the PIN/ADM is blocked (no tries left)."""


class AuthMacFailure(CardError):
    """9862: AUTHENTICATE found a wrong MAC in AUTN (TS 31.102 7.3)."""


class RecordNotFound(CardError):
    """6A83."""


class WrongLength(CardError):
    """6700."""


class ConditionsNotSatisfied(CardError):
    """6985."""


class IncorrectParameters(CardError):
    """6A86 or 6B00: wrong P1/P2."""


class InsNotSupported(CardError):
    """6D00."""


class ClassNotSupported(CardError):
    """6E00."""


class NoEfSelected(CardError):
    """6986."""


class IncompatibleFileStructure(CardError):
    """6981."""


# TS 102 221 10.2.1, TS 31.102 7.3
_SW_MEANINGS: Final[dict[int, str]] = {
    0x9000: "normal ending",
    0x6281: "returned data may be corrupted",
    0x6282: "end of file reached before reading Le bytes",
    0x6283: "selected file invalidated",
    0x6581: "memory problem",
    0x6700: "wrong length",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication/PIN method blocked",
    0x6984: "referenced data invalidated",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no EF selected)",
    0x6A80: "incorrect parameters in the data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space",
    0x6A86: "incorrect parameters P1 to P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "technical problem, no precise diagnosis",
    0x9862: "authentication error, incorrect MAC",
    0x9864: "authentication error, security context not supported",
    0x9865: "key freshness failure",
    0x9866: "authentication error, no memory space available",
    0x9867: "authentication error, no memory space available in EF.MUK",
}

_SW_ERRORS: Final[dict[int, type[CardError]]] = {
    0x6A82: FileNotFound,
    0x6982: SecurityStatusNotSatisfied,
    0x6983: AuthMethodBlocked,
    0x9862: AuthMacFailure,
    0x6A83: RecordNotFound,
    0x6700: WrongLength,
    0x6985: ConditionsNotSatisfied,
    0x6A86: IncorrectParameters,
    0x6B00: IncorrectParameters,
    0x6D00: InsNotSupported,
    0x6E00: ClassNotSupported,
    0x6986: NoEfSelected,
    0x6981: IncompatibleFileStructure,
}


def sw_meaning(sw: int) -> str:
    if sw & 0xFFF0 == 0x63C0:
        return f"verification failed, {sw & 0x0F} tries left"
    if sw >> 8 == 0x91:
        return f"normal ending, proactive command pending ({sw & 0xFF} bytes)"
    return _SW_MEANINGS.get(sw, "unknown status word")


def _is_success(sw: int) -> bool:
    # 9000, 91xx (proactive command pending, TS 102 221 10.2.1.1), 6282 (short read: data is valid)
    return sw == 0x9000 or sw >> 8 == 0x91 or sw == 0x6282


def card_error(device: str, command: str, sw: int) -> CardError:
    """The named CardError for a status word; its message says the SW and what it means."""
    message = f"SW {sw:04X} ({sw_meaning(sw)})"
    if sw & 0xFFF0 == 0x63C0:
        return WrongPin(device, command, message, sw, tries_left=sw & 0x0F)
    return _SW_ERRORS.get(sw, CardError)(device, command, message, sw)


# --------------------------------------------------------------------------- commands

_INS_NAMES: Final[dict[int, str]] = {
    0xA4: "SELECT", 0xB0: "READ BINARY", 0xD6: "UPDATE BINARY", 0xB2: "READ RECORD", 0xDC: "UPDATE RECORD",
    0x20: "VERIFY", 0x24: "CHANGE PIN", 0x26: "DISABLE PIN", 0x28: "ENABLE PIN", 0x2C: "UNBLOCK PIN",
    0x88: "AUTHENTICATE", 0xF2: "STATUS", 0xC0: "GET RESPONSE", 0x70: "MANAGE CHANNEL",
}
_PIN_INS: Final = frozenset({0x20, 0x24, 0x26, 0x28, 0x2C})  # their data is a PIN or key: always secret

# TS 102 221 7.3.1.1.4: T=0 procedure bytes
_SW1_MORE_DATA = 0x61   # '61xx': GET RESPONSE with Le = xx
_SW1_WRONG_LE = 0x6C    # '6Cxx': resend with P3 = xx
_MAX_GET_RESPONSE = 64

INS_SELECT = 0xA4
INS_VERIFY = 0x20
SELECT_RETURN_FCP = 0x04            # TS 102 221 11.1.1.2: P2 '04' return FCP template
SELECT_BY_FID = 0x00
SELECT_BY_AID = 0x04
SELECT_PATH_FROM_MF = 0x08
SELECT_PATH_FROM_DF = 0x09
MF_FID = "3F00"
CURRENT_ADF = "7FFF"                # TS 102 221 8.4.2: the current application's ADF
READ_RECORD_ABSOLUTE = 0x04         # TS 102 221 11.1.5: P2 '04' absolute/current
AUTH_CONTEXT_3G = 0x81              # TS 31.102 7.1.2: P2 '81' 3G/EPS security context
AUTH_TAG_SUCCESS = 0xDB             # TS 31.102 7.1.2.1
AUTH_TAG_SYNC_FAILURE = 0xDC
PIN1 = 0x01                         # TS 102 221 Table 9.3
ADM1 = 0x0A                         # TS 102 221 Table 9.3 (sysmocom ADM1)
PIN_LENGTH = 8                      # TS 102 221 9.5.1: PIN padded with 'FF' to 8 bytes
MIN_ADM_TRIES = 2                   # HACKING.md: never spend the last ADM try


def key_ref_name(ref: int) -> str:
    """TS 102 221 Table 9.3 names: PIN1..PIN8, ADM1..ADM10, universal PIN, second PINs."""
    if 0x01 <= ref <= 0x08:
        return f"PIN{ref}"
    if 0x0A <= ref <= 0x0E:
        return f"ADM{ref - 0x09}"
    if ref == 0x11:
        return "universal PIN"
    if 0x81 <= ref <= 0x88:
        return f"second PIN{ref - 0x80}"
    if 0x8A <= ref <= 0x8E:
        return f"ADM{ref - 0x84}"
    return f"key {ref:02X}"


def pin_block(pin: bytes) -> bytes:
    """A PIN as VERIFY sends it: 4-8 ASCII digits padded with 'FF' to 8 bytes (TS 102 221 9.5.1)."""
    if not 4 <= len(pin) <= PIN_LENGTH:
        raise ValueError(f"a PIN has 4 to {PIN_LENGTH} characters, got {len(pin)}")
    return pin.ljust(PIN_LENGTH, b"\xff")


def adm_key(text: str) -> bytes:
    """An ADM key as written on a card's data sheet: 8 digits (sent as ASCII) or 16 hex digits."""
    text = text.strip()
    if len(text) == 8 and text.isdigit():
        return text.encode("ascii")
    if len(text) == 16:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    raise ValueError("an ADM key is 8 decimal digits or 16 hex digits")


@dataclass(frozen=True)
class AuthSuccess:
    """AUTHENTICATE succeeded (TS 31.102 7.1.2.1 'DB'). Session keys are kept out of repr."""

    res: bytes
    ck: bytes = field(repr=False)
    ik: bytes = field(repr=False)
    kc: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AuthSyncFailure:
    """AUTHENTICATE found the SQN out of range ('DC'): hand AUTS to the AuC for resync."""

    auts: bytes


def parse_authenticate_response(data: bytes) -> AuthSuccess | AuthSyncFailure:
    """TS 31.102 7.1.2.1: 'DB' L RES L CK L IK [L Kc], or 'DC' L AUTS."""
    if not data:
        raise ValueError("AUTHENTICATE returned no data")
    tag, rest = data[0], data[1:]
    fields: list[bytes] = []
    while rest:
        length = rest[0]
        if length + 1 > len(rest):
            raise ValueError("AUTHENTICATE response: a length runs past the data")
        fields.append(bytes(rest[1:1 + length]))
        rest = rest[1 + length:]
    if tag == AUTH_TAG_SUCCESS and len(fields) in (3, 4):
        return AuthSuccess(fields[0], fields[1], fields[2], fields[3] if len(fields) == 4 else None)
    if tag == AUTH_TAG_SYNC_FAILURE and len(fields) == 1 and len(fields[0]) == 14:
        return AuthSyncFailure(fields[0])
    raise ValueError(f"AUTHENTICATE response tag {tag:02X} with {len(fields)} fields is not TS 31.102 7.1.2.1")


def _fid_bytes(fid: str) -> bytes:
    if len(fid) != 4:
        raise ValueError(f"a FID is 4 hex digits, got {fid!r}")
    try:
        return bytes.fromhex(fid)
    except ValueError:
        raise ValueError(f"a FID is 4 hex digits, got {fid!r}") from None


class Uicc:
    """A UICC behind a transport (PC/SC reader or AT+CSIM)."""

    def __init__(self, transport: Transport, hook: CommandHook | None = None) -> None:
        self.transport = transport
        self.hook = hook if hook is not None else CommandHook()
        self._current: Fcp | None = None
        self._current_label = "no file"
        self._usim_aid: bytes | None = None

    def __repr__(self) -> str:
        return f"<Uicc {self.transport.name!r}>"

    @property
    def name(self) -> str:
        return self.transport.name

    @property
    def atr(self) -> bytes:
        return self.transport.atr

    @property
    def current(self) -> Fcp | None:
        """The FCP of the last file selected (None after a reset)."""
        return self._current

    def reconnect(self) -> None:
        """Reset the card session: selection and verified PINs are gone."""
        self.transport.reconnect()
        self._current = None
        self._current_label = "no file"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Uicc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- APDU level

    def send_apdu(self, apdu: bytes, *, secret: bool = False, name: str | None = None) -> bytes:
        """Send one command, follow T=0 procedure bytes, return the response data.

        Raises the CardError subclass of the status word. Emits one CommandEvent, with the
        original request and the final data + SW. Commands carrying a PIN are always secret.
        """
        if len(apdu) < 4:
            raise ValueError("an APDU has at least CLA INS P1 P2")
        secret = secret or apdu[1] in _PIN_INS
        command = name or _INS_NAMES.get(apdu[1], f"INS {apdu[1]:02X}")
        started, t0 = time.time(), time.perf_counter()
        try:
            with self.transport.transaction():
                data, sw = self._exchange_t0(apdu, command, secret)
        except DeviceError as exc:
            self._emit(command, apdu, b"", type(exc).__name__, started, t0, secret)
            if isinstance(exc, CardError) and exc.command == command:
                raise  # already names this command (raised by the T=0 logic below)
            if isinstance(exc, (CardTimeout, CardRemoved)):  # the condition stays visible
                raise type(exc)(self.name, command, f"{exc.command}: {exc.message}") from exc
            raise CardError(self.name, command, f"transport failed: {exc.message}") from exc
        self._emit(command, apdu, data + sw.to_bytes(2, "big"), f"{sw:04X}", started, t0, secret)
        if not _is_success(sw):
            raise card_error(self.name, command, sw)
        return data

    def _exchange_t0(self, apdu: bytes, command: str, secret: bool) -> tuple[bytes, int]:
        data, sw = self.transport.transmit(apdu, secret=secret)
        if sw >> 8 == _SW1_WRONG_LE:
            apdu = self._with_le(apdu, sw & 0xFF, command)
            data, sw = self.transport.transmit(apdu, secret=secret)
        collected = data
        for _ in range(_MAX_GET_RESPONSE):
            if sw >> 8 != _SW1_MORE_DATA:
                return collected, sw
            get_response = bytes([apdu[0], 0xC0, 0x00, 0x00, sw & 0xFF])
            data, sw = self.transport.transmit(get_response, secret=secret)  # the data may be the secret
            if sw >> 8 == _SW1_WRONG_LE:
                data, sw = self.transport.transmit(get_response[:4] + bytes([sw & 0xFF]), secret=secret)
            collected += data
        raise CardError(self.name, command, f"card kept answering 61xx after {_MAX_GET_RESPONSE} GET RESPONSEs")

    def _with_le(self, apdu: bytes, le: int, command: str) -> bytes:
        """The same command with Le (P3 for a case-2 TPDU) set as the card asked in '6Cxx'."""
        if len(apdu) == 5:
            return apdu[:4] + bytes([le])
        if len(apdu) > 5 and len(apdu) == 6 + apdu[4]:
            return apdu[:-1] + bytes([le])
        raise CardError(self.name, command, f"card asked for Le={le:02X} ('6C') on a command without Le")

    def _emit(self, command: str, request: bytes, response: bytes, status: str, started: float,
              t0: float, secret: bool) -> None:
        self.hook.emit(CommandEvent("uicc", self.name, command, bytes(request), bytes(response), status,
                                    started, time.perf_counter() - t0, secret))

    def _case4(self, header: bytes, data: bytes) -> bytes:
        """A command with data in and data out. Under T=0 it goes without Le (the card answers
        '61xx'); under T=1 it carries Le '00'."""
        apdu = header + bytes([len(data)]) + data
        return apdu + b"\x00" if self.transport.protocol == "T=1" else apdu

    # ----------------------------------------------------------------------- SELECT / STATUS

    def select(self, target: str | bytes | None = None, *, aid: bytes | None = None) -> Fcp:
        """Select a file and return its FCP.

        ``target``: a FID ("6F07" or b"\\x6f\\x07"), or a path "3F00/7F20/6F07" (from the MF),
        "7F20/6F07" (from the current DF), "7FFF/6F07" (in the current ADF, TS 102 221 8.4.2).
        ``aid``: select an application by its AID (a prefix is enough for cards that match
        partially).
        """
        if aid is not None:
            if target is not None:
                raise ValueError("give a FID/path or an AID, not both")
            fcp = self._select(SELECT_BY_AID, bytes(aid), f"SELECT AID {aid.hex().upper()}")
            return fcp
        if target is None:
            raise ValueError("select() needs a FID, a path or an AID")
        if isinstance(target, (bytes, bytearray)):
            if len(target) != 2:
                raise ValueError("a FID is 2 bytes")
            target = target.hex().upper()
        parts = [p.upper() for p in target.strip().strip("/").split("/")]
        for part in parts:
            _fid_bytes(part)
        if parts[0] == MF_FID and len(parts) > 1 and parts[1] == CURRENT_ADF:
            parts = parts[1:]
        if parts[0] == CURRENT_ADF:
            fcp = self._select_current_adf()
            if len(parts) == 1:
                return fcp
            rest = parts[1:]
            if len(rest) == 1:
                return self._select(SELECT_BY_FID, _fid_bytes(rest[0]), f"SELECT {'/'.join(parts)}")
            return self._select(SELECT_PATH_FROM_DF, b"".join(map(_fid_bytes, rest)), f"SELECT {'/'.join(parts)}")
        if len(parts) == 1:
            return self._select(SELECT_BY_FID, _fid_bytes(parts[0]), f"SELECT {parts[0]}")
        if parts[0] == MF_FID:
            return self._select(SELECT_PATH_FROM_MF, b"".join(map(_fid_bytes, parts[1:])), f"SELECT {'/'.join(parts)}")
        return self._select(SELECT_PATH_FROM_DF, b"".join(map(_fid_bytes, parts)), f"SELECT {'/'.join(parts)}")

    def _select(self, p1: int, data: bytes, command: str) -> Fcp:
        response = self.send_apdu(self._case4(bytes([0x00, INS_SELECT, p1, SELECT_RETURN_FCP]), data), name=command)
        try:
            fcp = decode_fcp(response)
        except ValueError as exc:
            raise CardError(self.name, command, f"the card's FCP does not parse: {exc}") from exc
        self._current = fcp
        self._current_label = command.removeprefix("SELECT ")
        return fcp

    def _select_current_adf(self) -> Fcp:
        if self._usim_aid is None:
            return self.select_adf_usim()
        return self.select(aid=self._usim_aid)

    def select_adf_usim(self) -> Fcp:
        """Select ADF.USIM by the AID of the first USIM record in EF.DIR (TS 102 221 13.1)."""
        if self._usim_aid is None:
            self._usim_aid = self._find_usim_aid()
        return self.select(aid=self._usim_aid)

    def _find_usim_aid(self) -> bytes:
        fcp = self.select(f"{MF_FID}/{EF_DIR.fid}")
        for n in range(1, (fcp.record_count or 0) + 1):
            try:
                record = decode_dir_record(self.read_record(n))
            except ValueError:
                continue
            if record is not None and record.is_usim:
                return record.aid
        raise FileNotFound(self.name, "SELECT ADF.USIM", "no USIM application (A000000087 1002) in EF.DIR")

    def status(self) -> Fcp:
        """STATUS (TS 102 221 11.1.2): the FCP of the current DF/ADF; the selection stays."""
        response = self.send_apdu(bytes([0x80, 0xF2, 0x00, 0x00, 0x00]), name="STATUS")
        try:
            return decode_fcp(response)
        except ValueError as exc:
            raise CardError(self.name, "STATUS", f"the card's FCP does not parse: {exc}") from exc

    # ----------------------------------------------------------------------- READ / UPDATE

    def read_binary(self, length: int | None = None, offset: int = 0, *, secret: bool = False) -> bytes:
        """READ BINARY of the current EF; ``length=None`` reads to the end (size from its FCP)."""
        if length is None:
            size = self._current.size if self._current is not None and not self._current.is_df else None
            if size is None:
                return self._read_binary_chunk(offset, 0, secret)  # Le '00': the card says the size ('6Cxx')
            length = size - offset
        out = b""
        while len(out) < length:
            chunk = self._read_binary_chunk(offset + len(out), min(256, length - len(out)), secret)
            if not chunk:
                break
            out += chunk
        return out

    def _read_binary_chunk(self, offset: int, le: int, secret: bool) -> bytes:
        if not 0 <= offset <= 0x7FFF:
            raise ValueError(f"READ BINARY offset {offset} out of 0..32767")
        apdu = bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, le & 0xFF])
        return self.send_apdu(apdu, secret=secret, name=f"READ BINARY {self._current_label}")

    def update_binary(self, data: bytes, offset: int = 0, *, secret: bool = False) -> None:
        """UPDATE BINARY of the current EF, in chunks of up to 255 bytes."""
        done = 0
        while done < len(data):
            chunk = data[done:done + 255]
            at = offset + done
            if not 0 <= at <= 0x7FFF:
                raise ValueError(f"UPDATE BINARY offset {at} out of 0..32767")
            apdu = bytes([0x00, 0xD6, at >> 8, at & 0xFF, len(chunk)]) + chunk
            self.send_apdu(apdu, secret=secret, name=f"UPDATE BINARY {self._current_label}")
            done += len(chunk)

    def read_record(self, n: int, length: int | None = None, *, secret: bool = False) -> bytes:
        """READ RECORD n (absolute) of the current EF; length from its FCP unless given."""
        if not 1 <= n <= 254:
            raise ValueError(f"record number {n} out of 1..254")
        if length is None and self._current is not None:
            length = self._current.record_length
        apdu = bytes([0x00, 0xB2, n, READ_RECORD_ABSOLUTE, (length or 0) & 0xFF])
        return self.send_apdu(apdu, secret=secret, name=f"READ RECORD {self._current_label} #{n}")

    def update_record(self, n: int, data: bytes, *, secret: bool = False) -> None:
        """UPDATE RECORD n (absolute) of the current EF."""
        if not 1 <= n <= 254:
            raise ValueError(f"record number {n} out of 1..254")
        if not 1 <= len(data) <= 255:
            raise ValueError("a record holds 1 to 255 bytes")
        apdu = bytes([0x00, 0xDC, n, READ_RECORD_ABSOLUTE, len(data)]) + data
        self.send_apdu(apdu, secret=secret, name=f"UPDATE RECORD {self._current_label} #{n}")

    # ----------------------------------------------------------------------- declared files

    def select_ef(self, ef: EfDecl[Any]) -> Fcp:
        """Select a declared file (uicc_files) from wherever the card is."""
        if ef.parent == ADF_USIM:
            self.select_adf_usim()
            fcp = self._select(SELECT_BY_FID, _fid_bytes(ef.fid), f"SELECT {ef.where}")
        else:
            path = b"".join(_fid_bytes(p) for p in DF_PATHS[ef.parent].split("/")[1:]) + _fid_bytes(ef.fid)
            fcp = self._select(SELECT_PATH_FROM_MF, path, f"SELECT {ef.where}")
        return fcp

    def read_ef_raw(self, ef: EfDecl[Any]) -> bytes:
        self.select_ef(ef)
        return self.read_binary(secret=ef.secret)

    def read_ef(self, ef: EfDecl[T]) -> T:
        """Read and decode a declared transparent file."""
        raw = self.read_ef_raw(ef)
        try:
            return ef.decode(raw)
        except ValueError as exc:
            # the message names the file only: its content may be key material
            raise CardError(self.name, f"READ BINARY {ef.where}", f"content does not decode: "
                            f"{'(secret file)' if ef.secret else exc}") from (None if ef.secret else exc)

    def update_ef_raw(self, ef: EfDecl[Any], data: bytes) -> None:
        if ef.factory:
            raise SafetyRefused(self.name, f"UPDATE BINARY {ef.where}", "factory data is never rewritten")
        self.select_ef(ef)
        self.update_binary(data, secret=ef.secret)

    def update_ef(self, ef: EfDecl[T], value: T) -> None:
        """Encode and write a declared transparent file (never a factory file)."""
        self.update_ef_raw(ef, ef.encode(value))

    def read_iccid(self) -> str:
        return self.read_ef(EF_ICCID)

    def read_imsi(self) -> str:
        return self.read_ef(EF_IMSI)

    def read_ad(self) -> AdminData:
        return self.read_ef(EF_AD)

    # ----------------------------------------------------------------------- PIN / ADM

    def pin_tries_left(self, ref: int = PIN1) -> int | None:
        """VERIFY with no data (TS 102 221 11.1.9): the tries left, 0 if blocked, or None when
        the card answers 9000 (already verified in this session, or the PIN is disabled)."""
        header = bytes([0x00, INS_VERIFY, 0x00, ref])
        apdu = header + b"\x00" if self.transport.protocol == "T=0" else header  # case 1: P3 '00' under T=0
        try:
            self.send_apdu(apdu, name=f"VERIFY {key_ref_name(ref)} (tries left)")
        except WrongPin as exc:
            return exc.tries_left
        except AuthMethodBlocked:
            return 0
        return None

    def verify_pin(self, pin: bytes, ref: int = PIN1, *, min_tries: int = 2) -> None:
        """VERIFY PIN; refuses (nothing sent) when fewer than ``min_tries`` remain.

        ``min_tries=1`` allows spending the last try (a PUK can still unblock a PIN).
        """
        if min_tries < 1:
            raise ValueError("min_tries must be at least 1")
        self._guard(ref, min_tries)
        self._verify(ref, pin_block(pin))

    def verify_adm(self, key: bytes, ref: int = ADM1, min_tries: int = MIN_ADM_TRIES) -> None:
        """VERIFY an ADM key (8 bytes); refuses with SafetyRefused, sending nothing, when
        fewer than ``min_tries`` (at least 2) remain: a blocked ADM cannot be recovered.
        If the card says the ADM is already verified in this session, nothing is sent."""
        if min_tries < MIN_ADM_TRIES:
            raise ValueError(f"the ADM guard needs min_tries >= {MIN_ADM_TRIES}")
        if len(key) != PIN_LENGTH:
            raise ValueError(f"an ADM key is {PIN_LENGTH} bytes, got {len(key)}")
        if self._guard(ref, min_tries) is None:
            return
        self._verify(ref, bytes(key))

    def _guard(self, ref: int, min_tries: int) -> int | None:
        tries = self.pin_tries_left(ref)
        if tries is not None and tries < min_tries:
            what = key_ref_name(ref)
            consequence = "a wrong key would block it for good" if tries <= 1 else "too few tries to risk"
            if tries == 0:
                consequence = "it is blocked"
            raise SafetyRefused(self.name, f"VERIFY {what}",
                                f"refused: {tries} tries left, the harness needs at least {min_tries} ({consequence})")
        return tries

    def _verify(self, ref: int, block: bytes) -> None:
        apdu = bytes([0x00, INS_VERIFY, 0x00, ref, len(block)]) + block
        self.send_apdu(apdu, secret=True, name=f"VERIFY {key_ref_name(ref)}")

    # ----------------------------------------------------------------------- AUTHENTICATE

    def authenticate(self, rand: bytes, autn: bytes) -> AuthSuccess | AuthSyncFailure:
        """AUTHENTICATE in the 3G context (TS 31.102 7.1.2, P2 '81') in the current ADF.USIM.

        A MAC failure raises AuthMacFailure (SW 9862); a sync failure returns AUTS.
        """
        if len(rand) != 16 or len(autn) != 16:
            raise ValueError("RAND and AUTN are 16 bytes each")
        body = bytes([16]) + rand + bytes([16]) + autn
        apdu = self._case4(bytes([0x00, 0x88, 0x00, AUTH_CONTEXT_3G]), body)
        response = self.send_apdu(apdu, name="AUTHENTICATE")
        try:
            return parse_authenticate_response(response)
        except ValueError as exc:
            raise CardError(self.name, "AUTHENTICATE", str(exc)) from exc
