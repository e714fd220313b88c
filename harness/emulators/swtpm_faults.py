"""Power lost at a chosen TPM command: a relay between the TCTI and swtpm that cuts the power.

The relay sits on its own port on 127.0.0.1 (what the bench's TCTI then names) and passes
every command to swtpm's server port unchanged, until a command armed with
:meth:`PowerCutRelay.arm` comes by: then the TPM loses its power (swtpm's ctrl channel, no
TPM2_Shutdown) either before the command reaches it or after it ran, the host's connection
is dropped without an answer (what a host sees when the board loses power), and the power
comes back (TPM2_Startup) if asked. So a test can prove what a device is left holding when
the power goes during TPM2_Import, TPM2_EvictControl or TPM2_NV_Write.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass
from typing import Callable

BEFORE, AFTER = "before", "after"
_HEADER = 10  # TPM 2.0 Part 1, 18.2: tag (2), size (4), command code / response code (4)


@dataclass
class _Armed:
    command_code: int
    when: str
    skip: int
    power_back: bool


class PowerCutRelay:
    """Relay on ``port``; ``power_off``/``power_on`` are the emulator's ctrl-channel calls."""

    def __init__(self, host: str, tpm_port: int, power_off: Callable[[], None],
                 power_on: Callable[[], None]) -> None:
        self._host, self._tpm_port = host, tpm_port
        self._power_off, self._power_on = power_off, power_on
        self._armed: list[_Armed] = []
        self._lock = threading.Lock()
        self.cuts: list[tuple[int, str]] = []  # (command code, when) of each cut done
        self.errors: list[str] = []             # a cut that failed (swtpm gone)
        # the swtpm TCTI also talks to the ctrl channel on port + 1: relayed as it is
        self._listener, self._ctrl_listener = _listen_pair(host)
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, name="swtpm-relay", daemon=True).start()
        threading.Thread(target=self._accept_ctrl, name="swtpm-relay-ctrl", daemon=True).start()

    def arm(self, command_code: int, when: str = BEFORE, *, skip: int = 0,
            power_back: bool = True) -> None:
        """Cut the power at the next command ``command_code`` (after letting ``skip`` pass):
        ``before`` it reaches the TPM, or ``after`` it ran (its answer is lost)."""
        if when not in (BEFORE, AFTER):
            raise ValueError(f"when must be {BEFORE!r} or {AFTER!r}")
        with self._lock:
            self._armed.append(_Armed(command_code, when, skip, power_back))

    def disarm(self) -> None:
        with self._lock:
            self._armed.clear()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self._ctrl_listener.close()

    # -- relay ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _accept_ctrl(self) -> None:
        while not self._closed:
            try:
                client, _ = self._ctrl_listener.accept()
            except OSError:
                return
            threading.Thread(target=_pipe_ctrl, args=(client, self._host, self._tpm_port + 1),
                             daemon=True).start()

    def _take(self, command_code: int) -> _Armed | None:
        with self._lock:
            for armed in self._armed:
                if armed.command_code != command_code:
                    continue
                if armed.skip:
                    armed.skip -= 1
                    return None
                self._armed.remove(armed)
                return armed
        return None

    def _serve(self, client: socket.socket) -> None:
        with client:
            cut = self._relay(client)
            if cut is not None:  # swtpm serves one connection at a time: ours is closed now
                self._cut(*cut)
            # closing the host's connection last: it sees no answer, the power is back

    def _relay(self, client: socket.socket) -> tuple[_Armed, int] | None:
        try:
            tpm = socket.create_connection((self._host, self._tpm_port))
        except OSError:
            return None  # swtpm gone: the host sees its connection closed
        with tpm:
            try:
                while True:
                    command = _read_message(client)
                    if command is None:
                        return None
                    code = struct.unpack(">I", command[6:10])[0]
                    armed = self._take(code)
                    if armed is not None and armed.when == BEFORE:
                        return armed, code
                    tpm.sendall(command)
                    response = _read_message(tpm)
                    if response is None:
                        return None
                    if armed is not None:  # AFTER: it ran, its answer never arrives
                        return armed, code
                    client.sendall(response)
            except OSError:
                return None

    def _cut(self, armed: _Armed, code: int) -> None:
        try:
            self._power_off()
            self.cuts.append((code, armed.when))
            if armed.power_back:
                self._power_on()
        except Exception as exc:  # noqa: BLE001 - a relay thread has nobody to raise to
            self.errors.append(f"power cut at 0x{code:x}: {exc}")


def _read_message(sock: socket.socket) -> bytes | None:
    """One TPM command or response (header then body), or None at a clean end."""
    header = _recv(sock, _HEADER)
    if header is None:
        return None
    size = struct.unpack(">I", header[2:6])[0]
    if size < _HEADER:
        return None
    body = _recv(sock, size - _HEADER) if size > _HEADER else b""
    return None if body is None else header + body


def _recv(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _listen_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Listeners on P and P + 1 (the TCTI's convention for server and ctrl ports)."""
    for _ in range(100):
        first = socket.create_server((host, 0))
        port = first.getsockname()[1]
        try:
            return first, socket.create_server((host, port + 1))
        except OSError:
            first.close()
    raise OSError("no free port pair for the swtpm relay")


def _pipe_ctrl(client: socket.socket, host: str, port: int) -> None:
    """Ctrl channel bytes both ways until either side closes."""
    try:
        upstream = socket.create_connection((host, port))
    except OSError:
        client.close()
        return

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(4096):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()
