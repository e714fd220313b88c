"""The AT link to a cellular module: V.250 framing over pyserial, one command in flight, and
the reader thread that sorts what the module sends into lines: the echo of our own command line
(dropped), the final result code that ends a command, the information text of the pending
command, and unsolicited result codes (URCs), which go to subscribers and to
:meth:`AtLink.wait_urc`, never into a command's answer. Knows no command beyond the line
grammar (drivers/modem.py holds TS 27.007)."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import serial

from mcim_hil.drivers.errors import DeviceNotFound, ModemError
from mcim_hil.drivers.hook import CommandEvent, CommandHook
from mcim_hil.drivers.modem_answers import (
    _CME_BY_TEXT,
    _EXTENDED,
    _FINAL_SUCCESS,
    _FOREIGN_PREFIX,
    _NOT_TEXT,
    _REGISTRATION_PREFIXES,
    _RING,
    CME_ERRORS,
    KNOWN_URC_PREFIXES,
    CmeError,
    CmsError,
    ModemGarbage,
    ModemReset,
    ModemTimeout,
    RESTART_URCS,
    _after_prefix,
    _error_detail,
    _int,
    _is_final,
    _redacted,
    split_parameters,
)

log = logging.getLogger("mcim_hil.drivers.modem")   # one logger for the whole modem driver

# A command whose answer was lost (silence, noise, a restart, a transient +CME ERROR) and that
# is safe to send twice is sent at most this many times, with backoff 0.1 s, 0.2 s
COMMAND_ATTEMPTS = 3
RETRY_BACKOFF_S = 0.1
TRANSIENT_CME = frozenset({14})   # TS 27.007 9.2.1: SIM busy

UrcCallback = Callable[[str], None]
_L = TypeVar("_L", bound="AtLink")

_READ_POLL_S = 0.1      # reader thread wakes this often to notice close()
_URC_HISTORY = 256


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
    restarted: str | None = None     # the module's restart URC came instead of an answer
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



class AtLink:
    """The AT port of a cellular module, as a line link. Open with :meth:`open`; close, or use as
    a context manager. Commands are serialised; URC callbacks run on the reader thread (keep them
    short, and do not send commands from them: use :meth:`wait_urc` in your own thread instead).
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
        self._restarts = 0                        # restart URCs seen
        self.attempts = COMMAND_ATTEMPTS          # bounded sending again (command()), its backoff
        self.retry_backoff_s = RETRY_BACKOFF_S
        self._settled = 0                         # restarts after which the settings were put back
        self._reader = threading.Thread(target=self._read_loop, name=f"modem-reader {url}", daemon=True)
        self._reader.start()

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def open(cls: type[_L], url: str, *, baudrate: int = 115200, timeout: float = 5.0,
             hook: CommandHook | None = None) -> _L:
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

    def __enter__(self: _L) -> _L:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Modem({self.port!r})"

    # -- the command exchange -----------------------------------------------------------

    def command(self, cmd: str, timeout: float | None = None, *, secret: bool = False) -> list[str]:
        """Send one command line; return its information text lines; raise on anything but OK.

        ``secret=True`` keeps the parameters out of logs and messages and flags the event.
        What a real driver retries is retried, bounded (COMMAND_ATTEMPTS, backoff): silence, line
        noise, a restart of the module, a transient +CME ERROR; only for a command that is safe
        to send twice (:meth:`may_retry`). After the module restarted, the driver's settings
        are put back (:meth:`after_restart`) before the next command.
        """
        attempts = max(1, self.attempts) if self.may_retry(cmd.strip()) else 1
        for attempt in range(1, attempts + 1):
            self._settle_restart()
            try:
                return self._command_once(cmd, timeout, secret=secret)
            except (ModemTimeout, ModemGarbage, ModemReset, CmeError) as exc:
                transient = not isinstance(exc, CmeError) or exc.code in TRANSIENT_CME
                if attempt == attempts or not transient or self._closing or self._reader_error is not None:
                    raise
                log.info("%s: %s (attempt %d of %d), again", self.port, exc.message, attempt, attempts)
            time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def may_retry(self, line: str) -> bool:
        """Whether ``line`` is safe to send again when its answer was lost (drivers/modem.py)."""
        return False

    def after_restart(self) -> None:
        """Put back what the driver had set, after the module restarted (drivers/modem.py)."""

    def _settle_restart(self) -> None:
        with self._lock:
            pending = self._restarts != self._settled
            self._settled = self._restarts
        if pending:
            self.after_restart()

    @property
    def restarts(self) -> int:
        """How many times the module announced a restart (RESTART_URCS) since the port opened."""
        with self._lock:
            return self._restarts

    def _command_once(self, cmd: str, timeout: float | None, *, secret: bool) -> list[str]:
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
        if exchange.restarted is not None:
            return "RESTARTED"
        if exchange.garbage is not None:
            return "GARBAGE"
        if not finished or exchange.final is None:
            return "TIMEOUT"
        return exchange.final

    def _outcome(self, exchange: _Exchange, finished: bool, shown: str, wait_s: float) -> list[str]:
        if exchange.failure is not None:
            raise ModemError(self.port, shown, self._gone_reason()) from exchange.failure
        if exchange.restarted is not None:
            raise ModemReset(self.port, shown, f"the module restarted during the command ({exchange.restarted} "
                             f"instead of an answer): it may not have run; settings and SIM session are lost")
        if exchange.garbage is not None:
            sample = "" if shown != exchange.line else f": {exchange.garbage[:16].hex(' ')}"
            raise ModemGarbage(self.port, shown,
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
            if text.upper() in RESTART_URCS:
                self._restarts += 1
                if exchange is not None and not exchange.done.is_set():
                    exchange.restarted = text
                    exchange.raw.append(raw)
                    exchange.done.set()
                exchange = None     # and it is a URC, for wait_urc and subscribers
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

    def restore_settings(self) -> list[str]:
        """What close() gives back before the port goes (drivers/modem.py: E and +CMEE)."""
        return []


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
