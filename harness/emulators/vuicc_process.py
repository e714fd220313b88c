"""The virtual card as a child process of the harness, plugged into a vpcd slot, with its
fault controls (vuicc_faults). The card itself runs ``python -m mcim_hil.emulators.vuicc``.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from mcim_hil.emulators.vuicc_faults import control_line


class VirtualUiccError(Exception):
    """The virtual card could not be created, started or stopped."""


def reader_for_port(port: int, conf_dir: Path = Path("/etc/reader.conf.d")) -> str | None:
    """The PC/SC reader name pcscd gives the vpcd slot on ``port`` (slot n = CHANNELID + n)."""
    try:
        files = sorted(p for p in conf_dir.iterdir() if p.is_file())
    except OSError:
        return None
    seen: dict[str, int] = {}
    for conf in files:
        try:
            text = conf.read_text(errors="replace")
        except OSError:
            continue
        for block in re.split(r"\n\s*\n", text):
            name = re.search(r"^\s*FRIENDLYNAME\s+\"?([^\"\n]+?)\"?\s*$", block, re.M)
            chan = re.search(r"^\s*CHANNELID\s+(0x[0-9a-fA-F]+|\d+)\s*$", block, re.M)
            lib = re.search(r"^\s*LIBPATH\s+\S*vpcd\S*", block, re.M)
            if not (name and chan and lib):
                continue
            index = seen.get(name.group(1), 0)
            seen[name.group(1)] = index + 1
            base = int(chan.group(1), 0)
            if base <= port <= base + 1:
                return f"{name.group(1)} {index:02X} {port - base:02X}"
    return None


class VirtualUicc:
    """A virtual card in a child process, plugged into the vpcd slot on ``port``.

    ``reader`` is the PC/SC name of that slot (default: worked out from
    /etc/reader.conf.d). ``start()`` returns once pcscd shows the card in that reader;
    ``stop()`` pulls it out and waits until pcscd shows the slot empty, so the next card
    on the slot is not mistaken for this one. A child that dies is reported with the
    tail of its stderr. Started from the main thread, the card also stops when the
    harness process dies.
    """

    def __init__(self, state_file: Path | str | None, port: int, host: str = "127.0.0.1",
                 reader: str | None = None, *, image: bytes | None = None) -> None:
        """``image`` (card_image()) instead of ``state_file``: a card that lives in the child's
        memory only (handed over on its stdin), so its K, OPc and PINs never reach a disk;
        it is gone when the card stops."""
        if (state_file is None) == (image is None):
            raise ValueError("a virtual card needs a state file or an image, not both")
        self.state_file = Path(state_file) if state_file is not None else None
        self._image = image
        self.port = port
        self.host = host
        self.reader = reader if reader is not None else reader_for_port(port)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: tempfile._TemporaryFileWrapper[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"VirtualUicc(port={self.port}, reader={self.reader!r}, {state})"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The card's process (for a test that freezes it with SIGSTOP)."""
        if self._proc is None:
            raise VirtualUiccError(f"virtual UICC on port {self.port}: not started")
        return self._proc.pid

    def stderr_tail(self, lines: int = 20) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, what: str) -> VirtualUiccError:
        tail = self.stderr_tail()
        code = self._proc.poll() if self._proc else None
        return VirtualUiccError(f"virtual UICC on port {self.port}: {what} (exit code {code})"
                                + (f"; stderr tail:\n{tail}" if tail else ""))

    def start(self, timeout: float = 5.0) -> None:
        """Plug the card in: spawn it, let vpcd poll it, wait for pcscd to show it.

        Raises VirtualUiccError (with the child's stderr tail) if that fails in ``timeout``.
        """
        if self.running:
            raise VirtualUiccError(f"virtual UICC on port {self.port}: already started")
        if self.state_file is not None and not self.state_file.is_file():
            raise VirtualUiccError(f"virtual UICC on port {self.port}: no card file {self.state_file}")
        self._stderr = tempfile.NamedTemporaryFile(prefix="vuicc-", suffix=".stderr")
        state_arg = str(self.state_file) if self.state_file is not None else "-"
        cmd = [sys.executable, "-m", "mcim_hil.emulators.vuicc", "--state", state_arg,
               "--port", str(self.port), "--host", self.host,
               "--connect-timeout", str(max(0.5, timeout / 2))]
        cmd.append("--control-stdin")  # the fault controls below
        if threading.current_thread() is threading.main_thread():
            # PR_SET_PDEATHSIG follows the starting thread: only tie the card to a main thread
            cmd += ["--parent-pid", str(os.getpid())]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, close_fds=True)
        deadline = time.monotonic() + timeout
        try:
            if self._image is not None:
                assert self._proc.stdin is not None
                try:
                    self._proc.stdin.write(self._image + b"\n")
                    self._proc.stdin.flush()
                except BrokenPipeError:
                    pass  # the child died: _await_line reports it with its stderr
            self._await_line("atr", deadline)
            if self.reader is not None:
                self._await_card_present(deadline)
        except BaseException:
            self._terminate()
            self._close()  # the error already carries the stderr tail
            raise

    def _await_line(self, wanted: str, deadline: float) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buf = b""
        while True:
            for line in buf.split(b"\n")[:-1]:
                if line.strip() == wanted.encode():
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(
                    "vpcd never polled the card (no ATR request): is this port served by pcscd's "
                    "vpcd driver? (the vpcd driver keeps one connection per slot index per loaded "
                    "library, so several vpcd readers need one library copy each)")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self._proc.wait(timeout=2)
                    raise self._fail("exited during start")
                buf += chunk

    # -- fault controls (vuicc_faults) ----------------------------------------------------

    def fail_command(self, ins: int | None, sw: int, *, times: int = 1, skip: int = 0) -> None:
        """Answer the next ``times`` commands with this INS (None: any) with ``sw`` instead of
        running them, after letting ``skip`` of them through."""
        self._control("fail", ins=ins, sw=sw, times=times, skip=skip)

    def stay_silent(self, ins: int | None, *, times: int = 1, skip: int = 0) -> None:
        """Take the next ``times`` commands with this INS (None: any) and never answer them:
        the host's transmit times out. remove() then insert() brings the card back."""
        self._control("silent", ins=ins, times=times, skip=skip)

    def clear_faults(self) -> None:
        self._control("clear")

    def remove(self, timeout: float = 5.0) -> None:
        """Pull the card out: it leaves vpcd and pcscd reports the reader empty (returns then)."""
        self._control("remove")
        if self.reader is not None:
            self._await_card_absent(time.monotonic() + timeout)

    def insert(self, timeout: float = 5.0) -> None:
        """Put the card back after remove() (powered off: selections and verified PINs gone)."""
        self._control("insert")
        if self.reader is not None:
            self._await_card_present(time.monotonic() + timeout)

    def _control(self, op: str, **fields: object) -> None:
        if not self.running or self._proc is None or self._proc.stdin is None:
            raise VirtualUiccError(f"virtual UICC on port {self.port}: {op}: not running")
        try:
            self._proc.stdin.write(control_line(op, **fields))
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise self._fail(f"{op}: the card process is gone") from None
        self._await_line(f"ack {op}", time.monotonic() + 5.0)

    def _await_card_present(self, deadline: float) -> None:
        from smartcard.scard import (SCARD_S_SUCCESS, SCARD_SCOPE_USER, SCARD_STATE_MUTE,
                                     SCARD_STATE_PRESENT, SCARD_STATE_UNAWARE,
                                     SCardEstablishContext, SCardGetStatusChange,
                                     SCardReleaseContext)
        rc, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
        if rc != SCARD_S_SUCCESS:
            raise self._fail(f"cannot reach pcscd (SCardEstablishContext rc {rc:#x})")
        try:
            # Ask afresh each time (UNAWARE) rather than trusting change events: cheap and robust.
            while True:
                if not self.running:
                    raise self._fail("exited during start")
                rc, states = SCardGetStatusChange(ctx, 0, [(self.reader, SCARD_STATE_UNAWARE)])
                if rc == SCARD_S_SUCCESS and states:
                    _name, event, _atr = states[0]
                    if event & SCARD_STATE_PRESENT and not event & SCARD_STATE_MUTE:
                        return
                if time.monotonic() >= deadline:
                    raise self._fail(f"reader {self.reader!r} shows no card")
                time.sleep(0.05)
        finally:
            SCardReleaseContext(ctx)

    def _await_card_absent(self, deadline: float) -> None:
        # So that a card started next on this slot is not mistaken for this one.
        from smartcard.scard import (SCARD_S_SUCCESS, SCARD_SCOPE_USER, SCARD_STATE_PRESENT,
                                     SCARD_STATE_UNAWARE, SCardEstablishContext,
                                     SCardGetStatusChange, SCardReleaseContext)
        rc, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
        if rc != SCARD_S_SUCCESS:
            return
        try:
            while time.monotonic() < deadline:
                rc, states = SCardGetStatusChange(ctx, 0, [(self.reader, SCARD_STATE_UNAWARE)])
                if rc != SCARD_S_SUCCESS or not states or not states[0][1] & SCARD_STATE_PRESENT:
                    return
                time.sleep(0.05)
        finally:
            SCardReleaseContext(ctx)

    def stop(self, timeout: float = 5.0) -> None:
        """Pull the card out. Raises if the child had crashed (with its stderr tail)."""
        if self._proc is None:
            return
        crashed = self._proc.poll()
        code = self._terminate(timeout)
        if self.reader is not None and crashed is None:
            self._await_card_absent(time.monotonic() + timeout)
        try:
            if crashed is not None and crashed != 0:
                raise self._fail("had crashed")
            if code not in (0, None):
                raise self._fail("did not stop cleanly")
        finally:
            self._close()

    def _terminate(self, timeout: float = 5.0) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def _close(self) -> None:
        self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> VirtualUicc:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
