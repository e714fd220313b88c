"""An emulated cellular module: V.250 / TS 27.007 AT commands on a pty, its SIM behind a PC/SC reader.

It shares no code with drivers/ (each checks the other). Split by job:

- modem.py (here): the pty, command lines (echo, S3/S4/S5, chaining), basic commands;
- modem_at.py: the command-line grammar and parameter parsing, +CME ERROR texts;
- modem_commands.py: the TS 27.007 extended commands and the radio;
- modem_sim.py: the module's own SIM over pyscard, with its T=0 handling;
- modem_profiles/: vendor identities and commands (Quectel, u-blox, SIMCom).

+CSIM passes APDUs through unchanged ('61xx' included), as real modules do. Its radio is
an :class:`AirInterface`: ``AT+CGATT=1`` asks the network to attach the SIM's IMSI, and
the network runs the AKA on the card through the ``authenticate`` callable the module
hands it. The module leaves its reader when idle (``sim_idle_s``), so pySim can take the
card exclusively between the module's uses.

Secrets (APDUs of +CSIM, which may carry a PIN or ADM key; key material) are never logged.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import socket
import threading
import time
import tty

from .modem_at import CmeFailure, SyntaxFailure, CME_TEXT, split_line
from .modem_commands import (STANDARD_COMMANDS, STAT_NOT_SEARCHING, AirInterface, AttachResult,
                             Handler, Ts27007Commands)
from .modem_faults import (BOOT_URCS, CME, GARBAGE, NO_CARRIER, NOISE, RESET, SILENT, ModemFaultError,
                           ModemFaultPlan, control_line)
from .modem_profiles import Profile, profile as profile_named
from .modem_sim import ModuleSim, SimUnavailable, decode_iccid, decode_imsi

__all__ = ["AirInterface", "AttachResult", "EmulatedModem", "SimUnavailable", "decode_imsi", "decode_iccid"]

log = logging.getLogger(__name__)

_EXTENDED = re.compile(r"(\+[A-Z0-9]+)(=\?|=|\?)?(.*)", re.IGNORECASE | re.DOTALL | re.ASCII)
# The module leaves its reader after this long without using the SIM. pcscd then powers the
# card down, so the next command finds it reset (current file, PIN/ADM verification gone):
# long enough that one operation's APDUs (VERIFY ADM, then its UPDATEs) never straddle it.
SIM_IDLE_S = 2.0


class EmulatedModem(Ts27007Commands):
    """An AT modem on a pty whose SIM is the PC/SC reader ``sim_reader``.

    ``start()`` returns the pty path a driver opens; several instances run side by side.
    ``profile`` chooses the vendor ("quectel", "u-blox", "simcom"; default generic).
    """

    def __init__(self, sim_reader: str, *, imei: str = "356938035643809", profile: str | None = None,
                 manufacturer: str | None = None, model: str | None = None, revision: str | None = None,
                 sim_idle_s: float = SIM_IDLE_S) -> None:
        chosen: Profile = profile_named(profile)
        self.profile = chosen.name
        self.sim_reader = sim_reader
        self.imei = imei
        self.manufacturer = manufacturer or chosen.manufacturer
        self.model = model or chosen.model
        self.revision = revision or chosen.revision
        self.port: str | None = None
        self.vendor_settings: dict[str, object] = {}
        self._commands: dict[str, Handler] = {**STANDARD_COMMANDS, **chosen.commands}
        self._sim = ModuleSim(sim_reader)
        self._sim_idle_s = sim_idle_s
        self._network: AirInterface | None = None
        self._master = self._slave = -1
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._write_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._faults = ModemFaultPlan()
        self._control_host: socket.socket | None = None   # the harness's end of the control channel
        self._control_own: socket.socket | None = None    # the module's end, read by its serving thread
        self._control_lock = threading.Lock()
        self.restarts = 0
        self._reset_settings()
        # Network side state
        self._fun = 1
        self._stat = STAT_NOT_SEARCHING
        self._cell: tuple[str, str] | None = None
        self._reject_cause: int | None = None
        self._attached_imsi: str | None = None
        self._ip: str | None = None
        self._contexts: dict[int, tuple[str, str]] = {1: ("IP", "")}   # cid 1: the LTE default bearer
        self._cops_mode = 0         # TS 27.007 7.3: automatic
        self._cops_format = 2       # numeric, so +COPS? names the PLMN

    def _reset_settings(self) -> None:
        self._echo = True      # V.250 6.2.4: E1 by default, as real modules
        self._cmee = 0
        self._s3 = 13          # V.250 6.2.1 command line termination (CR)
        self._s4 = 10          # V.250 6.2.2 response formatting (LF)
        self._s5 = 8           # V.250 6.2.3 command line editing (BS)
        self._cereg_n = 0
        self._creg_n = 0
        self._cgreg_n = 0
        self._c5greg_n = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> str:
        if self._thread is not None:
            raise RuntimeError("the emulated modem is already running")
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)        # no line discipline between driver and module
        os.set_blocking(self._master, False)
        self._wake_r, self._wake_w = os.pipe()
        self.port = os.ttyname(self._slave)
        self._control_host, self._control_own = socket.socketpair()
        self._control_host.settimeout(5.0)
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
        for end in (self._control_host, self._control_own):
            if end is not None:
                end.close()
        self._control_host = self._control_own = None
        with self._state_lock:
            self._sim.close()
        self.trace_sim_to(None)

    def __enter__(self) -> EmulatedModem:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatedModem(port={self.port!r}, sim_reader={self.sim_reader!r}, profile={self.profile!r})"

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

    def lose_coverage(self) -> None:
        """The network is gone (a run that served it ended): the module is no longer registered
        and has no bearer, without detach signalling to a network that no longer exists."""
        with self._state_lock:
            self._network = None
            self._attached_imsi = self._ip = self._cell = self._reject_cause = None
            self._set_stat(STAT_NOT_SEARCHING)

    # -- the pty ------------------------------------------------------------------------

    def _serve(self) -> None:
        line = bytearray()
        control = bytearray()
        last_use = time.monotonic()
        while not self._stopping:
            timeout = None
            if self._sim.connected:
                timeout = max(0.0, last_use + self._sim_idle_s - time.monotonic())
            watched = [self._master, self._wake_r] + ([self._control_own] if self._control_own else [])
            try:
                ready, _, _ = select.select(watched, [], [], timeout)
            except OSError:
                return
            if not ready:
                self._release_idle_sim()
                continue
            if self._wake_r in ready:
                return
            if self._control_own is not None and self._control_own in ready:
                self._take_control(control)
            if self._master not in ready:
                continue
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
                    last_use = time.monotonic()
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

    def _release_idle_sim(self) -> None:
        with self._state_lock:
            if self._sim.connected:
                self._sim.release()

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
        fault, code = self._faults.on_command(body)
        if fault == SILENT:
            return
        if fault == RESET:
            self._restart()
            return
        if fault in (NO_CARRIER, CME):
            self._write(self._frame("NO CARRIER" if fault == NO_CARRIER else self._cme_result(code)))
            return
        lines: list[str] = []
        try:
            with self._state_lock:
                # V.250 5.4: the commands of one line run in order; the first failure ends the line
                for command in split_line(body):
                    lines += self._dispatch(command)
        except CmeFailure as failure:
            final = self._cme_result(failure.code)
        except SyntaxFailure:
            final = "ERROR"
        except Exception:
            log.exception("%s: command failed inside the emulator", self.port)
            final = "ERROR"
        else:
            final = "OK"
        if fault == GARBAGE:    # it ran; its answer is lost in line noise
            self._write(bytes([self._s3, self._s4]) + NOISE + bytes([self._s3, self._s4]))
            return
        self._write(b"".join(self._frame(line) for line in lines) + self._frame(final))

    # -- faults (modem_faults.py), over the control channel ------------------------------

    def control(self, op: str, **fields: object) -> str:
        """Send one control line (modem_faults) to the serving thread; its answer ("ack N")."""
        if self._control_host is None:
            raise RuntimeError("the emulated modem is not running")
        with self._control_lock:
            self._control_host.sendall(control_line(op, **fields))
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = self._control_host.recv(256)
                if not chunk:
                    raise RuntimeError("the emulated modem closed its control channel")
                answer += chunk
        text = answer.decode().strip()
        if not text.startswith("ack"):
            raise ModemFaultError(text)
        return text

    def arm_fault(self, fault: str, command: str | None = None, *, ins: int | None = None, code: int = 100,
                  skip: int = 0, times: int = 1) -> str:
        """The next ``times`` command lines starting with ``command`` (after ``skip``) suffer ``fault``."""
        return self.control(fault, command=command, ins=ins, code=code, skip=skip, times=times)

    def clear_faults(self) -> str:
        return self.control("clear")

    def _take_control(self, pending: bytearray) -> None:
        assert self._control_own is not None
        try:
            chunk = self._control_own.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            self._control_own.close()
            self._control_own = None
            return
        pending += chunk
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            try:
                with self._state_lock:
                    op = self._faults.apply(line)
                answer = f"ack {op}\n"
            except ModemFaultError as exc:
                answer = f"error {exc}\n"
            self._control_own.sendall(answer.encode())

    def _restart(self) -> None:
        """The module restarts: settings to their defaults, no registration or bearer (no detach
        signalling), its SIM powered down and up; then it tells the host it is back."""
        with self._state_lock:
            self.restarts += 1
            self._reset_settings()
            self._fun = 1
            self._attached_imsi = self._ip = self._cell = self._reject_cause = None
            self._contexts = {1: ("IP", "")}
            self._stat = STAT_NOT_SEARCHING
            self._sim.power_cycle()
        time.sleep(0.05)    # a real module takes seconds; the host must not take the URCs for an answer
        for urc in BOOT_URCS:
            self._send_urc(urc)

    def _cme_result(self, code: int) -> str:
        if self._cmee == 0:
            return "ERROR"
        if self._cmee == 1:
            return f"+CME ERROR: {code}"
        return f"+CME ERROR: {CME_TEXT.get(code, 'unknown')}"

    def _dispatch(self, command: str) -> list[str]:
        if command.startswith("+"):
            match = _EXTENDED.fullmatch(command)
            if match is None:
                raise SyntaxFailure()
            name, form, args = match.group(1).upper(), match.group(2) or "", match.group(3)
            if form != "=" and args.strip():
                raise SyntaxFailure()
            handler = self._commands.get(name)
            if handler is None:
                raise SyntaxFailure()
            return handler(self, form, args)
        return self._basic(command)

    def _basic(self, upper: str) -> list[str]:
        if upper in ("E", "E0", "E1"):
            self._echo = upper == "E1"
            return []
        if upper in ("I", "I0"):
            return [self.manufacturer, self.model, f"Revision: {self.revision}"]
        if upper in ("Z", "Z0", "&F", "&F0"):
            self._reset_settings()
            return []
        if upper in ("V1", "Q0", "&C1", "&D2"):
            return []
        if upper in ("&V", "&V0"):
            return self._profile_dump()
        register = re.fullmatch(r"S([345])(\?|=([0-9]{1,3}))", upper, re.ASCII)
        if register:
            name = f"_s{register.group(1)}"
            if register.group(2) == "?":
                return [f"{getattr(self, name):03d}"]      # V.250 5.3.2: S-parameter read in 3 digits
            value = int(register.group(3))
            if value > 127:
                raise SyntaxFailure()
            setattr(self, name, value)
            return []
        raise SyntaxFailure()

    def _profile_dump(self) -> list[str]:
        """AT&V: the active settings, in the layout most modules use."""
        return ["ACTIVE PROFILE:",
                f"E{int(self._echo)} Q0 V1 X4 &C1 &D2 &F0",
                f"S0: 000 S3: {self._s3:03d} S4: {self._s4:03d} S5: {self._s5:03d}",
                f"+CMEE: {self._cmee}",
                f"+CEREG: {self._cereg_n}"]
