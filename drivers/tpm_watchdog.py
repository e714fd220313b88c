"""A bound on every TPM driver operation over a socket TCTI (swtpm, mssim)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

def _shut_sockets_to(ports: set[int]) -> int:
    """Shut down this process's TCP connections to ``ports``; returns how many.

    The swtpm/mssim TCTIs connect for each command and keep no handle we could reach, so
    the connection is found by its peer port (/proc/self/fd)."""
    shut = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with sock:
            try:
                if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.getpeername()[1] in ports:
                    sock.shutdown(socket.SHUT_RDWR)  # the blocked read sees EOF at once
                    shut += 1
            except OSError:
                pass
    return shut


class _Watchdog:
    """Bounds each driver operation on a socket TCTI (swtpm, mssim), whose receive blocks
    for good (libtss2 ignores ESYS timeouts there, measured): an operation past its time
    gets the TCTI's connection shut down, so the blocked receive fails at once."""

    def __init__(self, ports: set[int], timeout: float) -> None:
        self._ports = ports
        self.timeout = timeout
        self.fired = False
        self._deadline: float | None = None
        self._closed = False
        self._cond = threading.Condition()
        threading.Thread(target=self._run, name="tpm-watchdog", daemon=True).start()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self.fired, self._deadline = True, None
                _shut_sockets_to(self._ports)

    @contextmanager
    def armed(self) -> Iterator[None]:
        with self._cond:
            self._deadline = time.monotonic() + self.timeout
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._deadline = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
