"""A cellular module on its AT port: V.250 framing and TS 27.007 commands, through pyserial.

Knows AT and nothing of TR 33.812. One reader thread splits what the module sends into
lines and sorts them: the echo of our own command line (dropped), the final result code
that ends a command, the information text of the pending command, and unsolicited result
codes (URCs), which go to subscribers and to :meth:`Modem.wait_urc`, never into a
command's answer.

Secrets: a command sent with ``secret=True`` (and any +CSIM carrying an ISO 7816 PIN
command) is flagged in its CommandEvent and named without its parameters in logs and
exceptions.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import serial

from mcim_hil.drivers.errors import DeviceNotFound, ModemError
from mcim_hil.drivers.hook import CommandEvent, CommandHook

__all__ = [
    "CME_ERRORS",
    "CmeError",
    "MalformedAnswer",
    "CmsError",
    "Modem",
    "ModemError",
    "ModemIdentity",
    "ModemTimeout",
    "Registration",
    "RegistrationDenied",
]

log = logging.getLogger(__name__)

UrcCallback = Callable[[str], None]


class ModemTimeout(ModemError):
    """The module sent no final result code in time (silence, or text without OK/ERROR)."""


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

# Unsolicited result codes of TS 27.007 (7.2, 10.1.19/20/22, 7.19, 8.x) and 27.005 3.4.1.
KNOWN_URC_PREFIXES = (
    "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", "+CGEV:", "+CRING:", "+CLIP:", "+CCWA:",
    "+CUSD:", "+CIEV:", "+CTZV:", "+CTZE:", "+CTZEU:", "+CSSI:", "+CSSU:",
    "+CMTI:", "+CMT:", "+CDS:", "+CDSI:", "+CBM:", "+CBMI:",
)
_RING = "RING"  # V.250 6.3.4 result code 2, unsolicited

# Network registration commands whose set form answers nothing and whose URCs share the prefix.
_REGISTRATION_PREFIXES = ("+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:")

# ISO 7816-4 / TS 102 221 PIN commands: VERIFY, CHANGE, DISABLE, ENABLE, UNBLOCK. Their data is a PIN.
_PIN_INS = frozenset({0x20, 0x24, 0x26, 0x28, 0x2C})

_EXTENDED = re.compile(r"AT([+^$%#*!@&][A-Z0-9_]+)(=\?|=|\?)?", re.IGNORECASE)
_FOREIGN_PREFIX = re.compile(r"[+^$%#*!@][A-Z0-9_]+:", re.IGNORECASE)
# Bytes that never appear in the text a module sends: C0 controls except TAB/CR/LF, DEL, and
# bytes that cannot occur in UTF-8 at all.
_NOT_TEXT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\xc0\xc1\xf5-\xff]")

_READ_POLL_S = 0.1      # reader thread wakes this often to notice close()
_URC_HISTORY = 256
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


@dataclass
class _Exchange:
    """One command in flight: what it asked and what has come back for it."""

    line: str
    prefix: str | None      # "+CEREG:" for AT+CEREG?; None for basic commands (ATI, ATE0)
    form: str               # "exec" | "set" | "read" | "test"
    lines: list[str] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    final: str | None = None
    garbage: bytes | None = None
    echo_seen: bool = False
    failure: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def for_command(cls, line: str) -> _Exchange:
        match = _EXTENDED.match(line)
        if match is None:
            return cls(line=line, prefix=None, form="exec")
        form = {"=?": "test", "=": "set", "?": "read", None: "exec"}[match.group(2)]
        return cls(line=line, prefix=match.group(1).upper() + ":", form=form)

    def owns(self, text: str) -> bool:
        """Whether an information line with this command's own prefix answers it (vs a URC)."""
        if self.prefix is None or not text.upper().startswith(self.prefix):
            return False
        if self.prefix in _REGISTRATION_PREFIXES and self.form != "test":
            if self.form != "read":
                return False    # AT+CEREG=2 answers only OK: any +CEREG: line is a URC
            # The read answer starts <n>,<stat>; a URC starts <stat> and then a quoted <tac> or nothing.
            fields = split_parameters(_after_prefix(text))
            return len(fields) >= 2 and _int(fields[0]) is not None and _int(fields[1]) is not None
        return True


class Modem:
    """The AT port of a cellular module. Open with :meth:`open`; close, or use as a context manager.

    Commands are serialised; URC callbacks run on the reader thread (keep them short, and
    do not send commands from them: use :meth:`wait_urc` in your own thread instead).
    """

    def __init__(self, port: serial.SerialBase, url: str, *, timeout: float = 5.0,
                 hook: CommandHook | None = None) -> None:
        self.port = url
        self.timeout = timeout
        self.hook = hook if hook is not None else CommandHook()
        self._serial = port
        self._lock = threading.Lock()             # guards _pending, URC state, subscribers
        self._command_lock = threading.Lock()     # one command at a time
        self._urc_arrived = threading.Condition(self._lock)
        self._pending: _Exchange | None = None
        self._subscribers: list[tuple[str, UrcCallback]] = []
        self._urcs: deque[tuple[int, str]] = deque(maxlen=_URC_HISTORY)
        self._urc_seq = 0
        self._closing = False
        self._reader_error: BaseException | None = None
        self._last_echo_seen = False              # whether the last command came back as echo
        self._found_echo: bool | None = None      # E and +CMEE as found, restored by close()
        self._found_cmee: int | None = None
        self._quirks = None                        # modem_quirks.Quirks once identified
        self._reader = threading.Thread(target=self._read_loop, name=f"modem-reader {url}", daemon=True)
        self._reader.start()

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, baudrate: int = 115200, timeout: float = 5.0,
             hook: CommandHook | None = None) -> Modem:
        """Open a pyserial URL: /dev/ttyUSB2, a pty path, socket://host:port, rfc2217://host:port?ign_set_control."""
        if not url:
            raise DeviceNotFound("(no port)", "open", "no serial port URL given")
        try:
            # pyserial's rfc2217 client refuses any write_timeout (NotImplementedError); its writes
            # go to a TCP socket, which the RFC 2217 server (ser2net) drains
            limits = {} if url.startswith("rfc2217://") else {"write_timeout": timeout}
            port = serial.serial_for_url(url, baudrate=baudrate, timeout=_READ_POLL_S, **limits)
        except ValueError as exc:
            raise ModemError(url, "open", f"not a usable serial URL: {exc}") from exc
        except serial.SerialException as exc:
            if _means_absent(exc):
                raise DeviceNotFound(url, "open", f"no such serial port ({exc})") from exc
            raise ModemError(url, "open", f"cannot open the serial port ({exc})") from exc
        return cls(port, url, timeout=timeout, hook=hook)

    def close(self) -> None:
        if self._closing:
            return
        self.restore_settings()
        self._closing = True
        cancel = getattr(self._serial, "cancel_read", None)
        if cancel is not None:
            try:
                cancel()
            except Exception:   # best effort: the read loop also polls _closing
                pass
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=2.0)
        try:
            self._serial.close()
        except Exception as exc:
            log.debug("%s: closing: %s", self.port, exc)

    def __enter__(self) -> Modem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Modem({self.port!r})"

    # -- the command exchange -----------------------------------------------------------

    def command(self, cmd: str, timeout: float | None = None, *, secret: bool = False) -> list[str]:
        """Send one command line; return its information text lines; raise on anything but OK.

        ``secret=True`` keeps the parameters out of logs and messages and flags the event.
        """
        wait_s = self.timeout if timeout is None else timeout
        line = cmd.strip()
        shown = _redacted(line) if secret else line
        if threading.current_thread() is self._reader:
            raise ModemError(self.port, shown, "a command was sent from a URC callback; use wait_urc() instead")
        if not line or "\r" in line or "\n" in line:
            raise ModemError(self.port, shown, "a command is one non-empty line")
        try:
            request = line.encode("ascii") + b"\r"   # V.250 5.2.1: S3 (CR) ends the command line
        except UnicodeEncodeError as exc:
            raise ModemError(self.port, shown, "AT commands are ASCII") from exc
        exchange = _Exchange.for_command(line)
        with self._command_lock:
            with self._lock:
                if self._closing or self._reader_error is not None:
                    raise ModemError(self.port, shown, self._gone_reason())
                self._pending = exchange
            started = time.time()
            t0 = time.perf_counter()
            try:
                self._serial.write(request)
                finished = exchange.done.wait(wait_s)
            except (serial.SerialException, OSError) as exc:
                with self._lock:
                    self._pending = None
                raise ModemError(self.port, shown, f"writing to the port failed ({exc})") from exc
            finally:
                duration = time.perf_counter() - t0
            with self._lock:
                self._pending = None
                self._last_echo_seen = exchange.echo_seen
        status = self._status(exchange, finished)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s -> %s (%.1f ms)", self.port, shown, status, duration * 1e3)
        self.hook.emit(CommandEvent(
            device="modem", port=self.port, command=shown, request=request,
            response=b"\r\n".join(exchange.raw), status=status, started=started,
            duration_s=duration, secret=secret))
        return self._outcome(exchange, finished, shown, wait_s)

    def _status(self, exchange: _Exchange, finished: bool) -> str:
        if exchange.failure is not None:
            return "PORT ERROR"
        if exchange.garbage is not None:
            return "GARBAGE"
        if not finished or exchange.final is None:
            return "TIMEOUT"
        return exchange.final

    def _outcome(self, exchange: _Exchange, finished: bool, shown: str, wait_s: float) -> list[str]:
        if exchange.failure is not None:
            raise ModemError(self.port, shown, self._gone_reason()) from exchange.failure
        if exchange.garbage is not None:
            sample = "" if shown != exchange.line else f": {exchange.garbage[:16].hex(' ')}"
            raise ModemError(self.port, shown,
                             "the modem sent non-text bytes (wrong baud rate, or not an AT port?)" + sample)
        if not finished or exchange.final is None:
            got = f" after {len(exchange.lines)} information line(s)" if exchange.lines else ""
            raise ModemTimeout(self.port, shown, f"no final result code within {wait_s:g} s{got}")
        final = exchange.final
        upper = final.upper()
        if upper in _FINAL_SUCCESS or upper.startswith("CONNECT "):
            return exchange.lines
        if upper.startswith("+CME ERROR:"):
            code, text = _error_detail(final, CME_ERRORS, _CME_BY_TEXT)
            raise CmeError(self.port, shown, f"+CME ERROR: {code if code is not None else '?'} ({text})",
                           final, code, text)
        if upper.startswith("+CMS ERROR:"):
            code, text = _error_detail(final, {}, {})
            raise CmsError(self.port, shown, final, final, code, text)
        raise ModemError(self.port, shown, f"the modem answered {final}", final)

    def _gone_reason(self) -> str:
        if self._reader_error is not None:
            return f"the serial port failed ({self._reader_error})"
        return "the modem port is closed"

    # -- the reader thread --------------------------------------------------------------

    def _read_loop(self) -> None:
        buffer = bytearray()
        while not self._closing:
            try:
                chunk = self._serial.read(max(1, self._serial.in_waiting))
            except Exception as exc:   # pyserial raises several types when a port vanishes
                if not self._closing:
                    log.warning("%s: reading failed: %s", self.port, exc)
                    self._fail_reader(exc)
                return
            if not chunk:
                continue
            buffer += chunk
            self._take_lines(buffer)

    def _take_lines(self, buffer: bytearray) -> None:
        while buffer:
            bad = _NOT_TEXT.search(buffer)
            ends = [i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0]
            end = min(ends) if ends else -1
            if bad is not None and (end < 0 or bad.start() < end):
                # Noise: report the bytes up to the next line break, or all of them.
                stop = end if end >= 0 else len(buffer)
                self._on_garbage(bytes(buffer[:stop]))
                del buffer[:stop]
                continue
            if end < 0:
                return
            raw = bytes(buffer[:end])
            del buffer[:end + 1]
            if raw.strip():
                self._on_line(raw)

    def _on_garbage(self, data: bytes) -> None:
        with self._lock:
            exchange = self._pending
            if exchange is not None and not exchange.done.is_set():
                exchange.garbage = data
                exchange.raw.append(data)
                exchange.done.set()
                return
        log.warning("%s: dropped %d non-text bytes received while idle", self.port, len(data))

    def _on_line(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self._on_garbage(raw)
            return
        with self._lock:
            exchange = self._pending
            if exchange is not None and not exchange.done.is_set():
                if not exchange.echo_seen and not exchange.lines and text == exchange.line:
                    exchange.echo_seen = True       # V.250 6.2.4 (E1): our own line comes back
                    exchange.raw.append(raw)
                    return
                if _is_final(text):
                    exchange.final = text
                    exchange.raw.append(raw)
                    exchange.done.set()
                    return
                if not self._is_unsolicited_during(exchange, text):
                    exchange.lines.append(text)
                    exchange.raw.append(raw)
                    return
            elif text.upper().startswith("AT") or (_is_final(text) and text.upper() != "NO CARRIER"):
                # A late echo or the final result of a command that already timed out.
                log.debug("%s: stray line while idle: %s", self.port, _redacted(text) if text[:2].upper() == "AT" else text)
                return
            self._urc_seq += 1
            self._urcs.append((self._urc_seq, text))
            self._urc_arrived.notify_all()
            callbacks = [cb for prefix, cb in self._subscribers if text.startswith(prefix)]
        for callback in callbacks:
            try:
                callback(text)
            except Exception:
                log.exception("%s: URC callback failed on %r", self.port, text)

    def _is_unsolicited_during(self, exchange: _Exchange, text: str) -> bool:
        """Decide whether a non-final line that arrives while ``exchange`` is pending is a URC."""
        if exchange.owns(text):
            return False
        upper = text.upper()
        if exchange.prefix is not None and upper.startswith(exchange.prefix):
            return True         # own prefix, but the registration shape rule says URC
        if upper == _RING or upper.startswith(KNOWN_URC_PREFIXES):
            return True
        if any(prefix and text.startswith(prefix) for prefix, _ in self._subscribers):
            return True
        # An extended command is answered under its own prefix (or with none): a line with
        # another command's prefix is unsolicited.
        return exchange.prefix is not None and _FOREIGN_PREFIX.match(text) is not None

    def _fail_reader(self, exc: BaseException) -> None:
        with self._lock:
            self._reader_error = exc
            exchange = self._pending
            if exchange is not None:
                exchange.failure = exc
                exchange.done.set()
            self._urc_arrived.notify_all()

    # -- unsolicited result codes -------------------------------------------------------

    def subscribe(self, prefix: str, callback: UrcCallback) -> None:
        """Call ``callback(line)`` for each URC starting with ``prefix`` (on the reader thread)."""
        with self._lock:
            self._subscribers.append((prefix, callback))

    def unsubscribe(self, prefix: str, callback: UrcCallback) -> None:
        with self._lock:
            self._subscribers.remove((prefix, callback))

    @property
    def urc_seq(self) -> int:
        """How many URCs have arrived so far; pass it as ``since`` to wait for later ones."""
        with self._lock:
            return self._urc_seq

    def wait_urc(self, prefix: str, timeout: float, predicate: Callable[[str], bool] | None = None,
                 *, since: int | None = None) -> str:
        """The first URC starting with ``prefix`` (and passing ``predicate``) after ``since``.

        ``since`` defaults to now; give a value of :attr:`urc_seq` read before a command to
        catch URCs the module sent while that command was running.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            after = self._urc_seq if since is None else since
            while True:
                for seq, text in self._urcs:
                    if seq > after and text.startswith(prefix) and (predicate is None or predicate(text)):
                        return text
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ModemTimeout(self.port, f"wait for URC {prefix}",
                                       f"no matching URC within {timeout:g} s")
                if self._reader_error is not None or self._closing:
                    raise ModemError(self.port, f"wait for URC {prefix}", self._gone_reason())
                self._urc_arrived.wait(remaining)

    # -- V.250 and TS 27.007 commands ---------------------------------------------------

    def at(self) -> None:
        self.command("AT")

    def echo_off(self) -> None:
        self.command("ATE0")   # V.250 6.2.4
        self._note_found_echo()

    def echo_on(self) -> None:
        self.command("ATE1")
        self._note_found_echo()

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


def _error_detail(final: str, by_code: dict[int, str], by_text: dict[str, int]) -> tuple[int | None, str]:
    detail = final.split(":", 1)[1].strip()
    code = _int(detail)
    if code is not None:
        return code, by_code.get(code, f"error {code}")
    return by_text.get(detail.lower()), detail


def _means_absent(exc: serial.SerialException) -> bool:
    """Whether opening failed because nothing is there (vs permission, busy...)."""
    absent = {errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ECONNREFUSED, errno.EHOSTUNREACH,
              errno.ENETUNREACH}
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror) or getattr(cause, "errno", None) in absent:
            return True
        cause = cause.__cause__ or cause.__context__
    return False
