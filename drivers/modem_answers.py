"""A cellular module's answers: V.250 / TS 27.007 result codes, the errors they raise, and the
parsing of information text (parameters, numbers, +CEREG). No I/O here: drivers/modem_link.py
reads the lines, drivers/modem.py sends the commands."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mcim_hil.drivers.errors import ModemError

class ModemTimeout(ModemError):
    """The module sent no final result code in time (silence, or text without OK/ERROR)."""


class ModemGarbage(ModemError):
    """The module's answer came as bytes no module sends as text (line noise, wrong baud rate)."""


class ModemReset(ModemError):
    """The module restarted during the command (its boot URC came instead of an answer): the
    command may not have run, and the module's settings and SIM session are gone."""


class MalformedAnswer(ModemError, ValueError):
    """An answer line that does not parse (a field that is not an ASCII number, a missing field).

    Also a ValueError, so callers that parse lines themselves keep catching what they did.
    """


class CmeError(ModemError):
    """``+CME ERROR: <err>`` (TS 27.007 9.2). ``code`` is None when a verbose text is not in 9.2."""

    def __init__(self, device: str, command: str, message: str, result: str | None,
                 code: int | None, text: str) -> None:
        self.code = code
        self.text = text
        super().__init__(device, command, message, result)


class CmsError(ModemError):
    """``+CMS ERROR: <err>`` (TS 27.005 3.2.5), the SMS flavour of +CME ERROR."""

    def __init__(self, device: str, command: str, message: str, result: str | None,
                 code: int | None, text: str) -> None:
        self.code = code
        self.text = text
        super().__init__(device, command, message, result)


class RegistrationDenied(ModemError):
    """The network denied registration (+CEREG stat 3); ``registration`` holds the cause if shown."""

    def __init__(self, device: str, command: str, message: str, registration: Registration) -> None:
        self.registration = registration
        super().__init__(device, command, message, None)



# TS 27.007 9.2.1 (general) and 9.2.2 (GPRS/EPS, 100 + the 24.008 GMM/SM cause) error texts.
CME_ERRORS: dict[int, str] = {
    0: "phone failure",
    1: "no connection to phone",
    2: "phone-adaptor link reserved",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    6: "PH-FSIM PIN required",
    7: "PH-FSIM PUK required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    26: "dial string too long",
    27: "invalid characters in dial string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    40: "network personalization PIN required",
    41: "network personalization PUK required",
    42: "network subset personalization PIN required",
    43: "network subset personalization PUK required",
    44: "service provider personalization PIN required",
    45: "service provider personalization PUK required",
    46: "corporate personalization PIN required",
    47: "corporate personalization PUK required",
    48: "hidden key required",
    49: "EAP method not supported",
    50: "incorrect parameters",
    100: "unknown",
    103: "Illegal MS",
    106: "Illegal ME",
    107: "GPRS services not allowed",
    111: "PLMN not allowed",
    112: "Location area not allowed",
    113: "Roaming not allowed in this location area",
    132: "service option not supported",
    133: "requested service option not subscribed",
    134: "service option temporarily out of order",
    148: "unspecified GPRS error",
    149: "PDP authentication failure",
    150: "invalid mobile class",
}
_CME_BY_TEXT = {_text.lower(): _code for _code, _text in CME_ERRORS.items()}

# V.250 5.7.1 / TS 27.007 9.2: final result codes that end a command.
_FINAL_SUCCESS = ("OK", "CONNECT")
_FINAL_FAILURE = ("ERROR", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")

# What a module sends when it has (re)started: Quectel and SIMCom "RDY", Cinterion "^SYSSTART".
# Then it is back to its stored settings (E1, +CMEE=0 unless saved), unregistered, SIM reset.
RESTART_URCS = ("RDY", "^SYSSTART")
# Sent after a start too (TS 27.007 8.3 +CPIN, 8.2 +CFUN): URCs unless the pending command owns them
BOOT_URC_PREFIXES = ("+CPIN:", "+CFUN:")

# Unsolicited result codes of TS 27.007 (7.2, 10.1.19/20/22, 7.19, 8.x) and 27.005 3.4.1.
KNOWN_URC_PREFIXES = (
    "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", "+CGEV:", "+CRING:", "+CLIP:", "+CCWA:",
    "+CUSD:", "+CIEV:", "+CTZV:", "+CTZE:", "+CTZEU:", "+CSSI:", "+CSSU:",
    "+CMTI:", "+CMT:", "+CDS:", "+CDSI:", "+CBM:", "+CBMI:", *BOOT_URC_PREFIXES,
)
_RING = "RING"  # V.250 6.3.4 result code 2, unsolicited
# What a module sends when it has (re)started: Quectel and SIMCom "RDY", Cinterion "^SYSSTART".

# Network registration commands whose set form answers nothing and whose URCs share the prefix.
_REGISTRATION_PREFIXES = ("+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:")

# ISO 7816-4 / TS 102 221 PIN commands: VERIFY, CHANGE, DISABLE, ENABLE, UNBLOCK. Their data is a PIN.
_PIN_INS = frozenset({0x20, 0x24, 0x26, 0x28, 0x2C})

_EXTENDED = re.compile(r"AT([+^$%#*!@&][A-Z0-9_]+)(=\?|=|\?)?", re.IGNORECASE)
_FOREIGN_PREFIX = re.compile(r"[+^$%#*!@][A-Z0-9_]+:", re.IGNORECASE)
# Bytes that never appear in the text a module sends: C0 controls except TAB/CR/LF, DEL, and
# bytes that cannot occur in UTF-8 at all.
_NOT_TEXT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\xc0\xc1\xf5-\xff]")

_REGISTRATION_POLL_S = 1.0


@dataclass(frozen=True)
class ModemIdentity:
    manufacturer: str
    model: str
    revision: str
    imei: str


@dataclass(frozen=True)
class Registration:
    """``+CEREG`` (TS 27.007 10.1.22). ``n`` is None when parsed from a URC, which omits it."""

    n: int | None
    stat: int           # 0 not registered, 1 home, 2 searching, 3 denied, 4 unknown, 5 roaming
    tac: str | None = None   # 2-byte hex string
    ci: str | None = None    # 4-byte hex string
    act: int | None = None   # 7 = E-UTRAN
    cause_type: int | None = None
    reject_cause: int | None = None

    @property
    def registered(self) -> bool:
        return self.stat in (1, 5)

    @property
    def roaming(self) -> bool:
        return self.stat == 5

    @property
    def denied(self) -> bool:
        return self.stat == 3

    @classmethod
    def from_read(cls, line: str) -> Registration:
        """Parse the read answer ``+CEREG: <n>,<stat>[,[<tac>],[<ci>],[<AcT>][,<cause_type>,<reject_cause>]]``."""
        fields = split_parameters(_after_prefix(line))
        if len(fields) < 2:
            raise MalformedAnswer("(line)", "+CEREG?", f"not a registration read answer: {line!r}")
        return cls._from_fields(_int(fields[0]), fields[1:], line)

    @classmethod
    def from_urc(cls, line: str) -> Registration:
        """Parse the URC ``+CEREG: <stat>[,[<tac>],[<ci>],[<AcT>][,<cause_type>,<reject_cause>]]``."""
        return cls._from_fields(None, split_parameters(_after_prefix(line)), line)

    @classmethod
    def _from_fields(cls, n: int | None, fields: list[str], line: str) -> Registration:
        stat = _int(fields[0]) if fields else None
        if stat is None:
            raise MalformedAnswer("(line)", "+CEREG", f"no <stat> in {line!r}")
        values = [unquote(f) or None for f in fields[1:]] + [None] * 6
        return cls(n=n, stat=stat, tac=values[0], ci=values[1], act=_int(values[2]),
                   cause_type=_int(values[3]), reject_cause=_int(values[4]))


def split_parameters(text: str) -> list[str]:
    """Split an AT parameter list on commas outside double quotes; quotes are kept."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
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


def unquote(field_text: str | None) -> str:
    if field_text is None:
        return ""
    text = field_text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


# An AT numeric parameter: ASCII digits only (str.isdigit() also takes '²', '١'), and short
# enough for int() (Python refuses strings past 4300 digits).
_NUMBER = re.compile(r"[0-9]{1,18}")


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if _NUMBER.fullmatch(text) else None


def _after_prefix(line: str) -> str:
    return line.split(":", 1)[1].strip() if ":" in line else line.strip()


def _strip_own_prefix(line: str, prefix: str) -> str:
    if line.upper().startswith(prefix.upper()):
        line = line[len(prefix):]
    return unquote(line.strip())


def _redacted(cmd: str) -> str:
    """The command name without its parameters, for logs and messages of secret commands."""
    head = re.match(r"\s*(AT[+^$%#*!@&]?[A-Z0-9_]*=?)", cmd, re.IGNORECASE)
    return (head.group(1) if head else "AT") + "<secret>"


def _is_final(text: str) -> bool:
    upper = text.upper()
    return (upper in _FINAL_SUCCESS or upper in _FINAL_FAILURE or upper.startswith("CONNECT ")
            or upper.startswith("+CME ERROR:") or upper.startswith("+CMS ERROR:"))



def _error_detail(final: str, by_code: dict[int, str], by_text: dict[str, int]) -> tuple[int | None, str]:
    detail = final.split(":", 1)[1].strip()
    code = _int(detail)
    if code is not None:
        return code, by_code.get(code, f"error {code}")
    return by_text.get(detail.lower()), detail

