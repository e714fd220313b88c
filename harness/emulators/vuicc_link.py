"""The virtual card's end of vpcd, and its control channel from the harness.

vpcd's protocol (facts/pcsc.md): every message both ways is a 2-byte big-endian length then
the payload; a 1-byte payload from vpcd is a control byte, anything longer a command APDU.
"""

from __future__ import annotations

import os
import select
import socket
import time
from types import FrameType

from mcim_hil.emulators.vuicc_process import VirtualUiccError

# vpcd control bytes (facts/pcsc.md)
VPCD_POWER_OFF, VPCD_POWER_ON, VPCD_RESET, VPCD_GET_ATR = 0, 1, 2, 4
# vpcd frames a 1-byte APDU exactly as a control byte. A real power off/on/reset is followed
# at once by a GET ATR (ifd-vpcd's IFDHPowerICC asks the ATR; pcscd polls presence after a
# power off); a 1-byte APDU is followed by nothing, vpcd waits for its answer. So a 00/01/02
# with no frame after it within this time was an APDU.
CONTROL_FOLLOW_S = 2.0


class _Stop(Exception):
    """SIGTERM or SIGINT: leave the vpcd loop and close the socket."""


class _Lifecycle:
    """Lets SIGTERM interrupt a wait on vpcd but never a command half done (and half saved)."""

    busy = False
    stop_requested = False


_life = _Lifecycle()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _life.busy:
        _life.stop_requested = True
        return
    raise _Stop()


class _VpcdLink:
    """The card's end of the vpcd socket: length-prefixed frames both ways."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _fill(self) -> bool:
        # vpcd's writes meet delayed ACK: QUICKACK must be re-armed before every recv.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def frame_within(self, timeout: float) -> bool:
        """True when a whole frame is (or arrives within ``timeout``) to be received."""
        deadline = time.monotonic() + timeout
        while not self.has_frame():
            left = deadline - time.monotonic()
            try:
                if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                    return False
                if not self._fill():
                    return True  # closed: receive() says so
            except OSError:
                return True  # likewise
        return True

    def has_frame(self) -> bool:
        return len(self.buf) >= 2 and len(self.buf) >= 2 + int.from_bytes(self.buf[:2], "big")

    def receive(self) -> bytes | None:
        """The next frame's payload, or None when vpcd closed the connection."""
        while len(self.buf) < 2:
            if not self._fill():
                return None
        size = int.from_bytes(self.buf[:2], "big")
        while len(self.buf) < 2 + size:
            if not self._fill():
                return None
        payload = bytes(self.buf[2:2 + size])
        del self.buf[:2 + size]
        return payload

    def send(self, payload: bytes) -> None:
        self.sock.sendall(len(payload).to_bytes(2, "big") + payload)


class _ControlChannel:
    """The harness's fault controls, one line each, on a pipe (vuicc_faults)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.closed = False

    def _fill(self) -> None:
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.closed = True
        self.buf += chunk

    def first_line(self) -> bytes:
        """Blocks for one whole line (the card image)."""
        while b"\n" not in self.buf and not self.closed:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def lines(self) -> list[bytes]:
        """The lines readable now (call when select says the fd is readable)."""
        self._fill()
        *whole, self.buf = self.buf.split(b"\n")
        return [line for line in whole if line.strip()]


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((host, port), timeout=2.0)
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise VirtualUiccError(
                    f"virtual UICC: cannot connect to vpcd at {host}:{port} ({exc.strerror or exc}); "
                    "is pcscd running with the vpcd reader?") from exc
            time.sleep(0.1)
