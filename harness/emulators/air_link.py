"""The emulated module's radio, reached from another process: how `mcim-hil run` on a bench
that `mcim-hil bench up` keeps running gives the module its network (air mode "module").

The bench process serves a Unix socket (:class:`AirLinkServer`); while a run is connected
(:class:`AirLinkClient`), the module's radio reaches that run's VNO: AT+CGATT=1 becomes an
``attach`` request to the run, whose VNO sends the AKA challenge back for the module's own
AUTHENTICATE on its SIM, and answers with the attach result. One JSON object a line.

The socket carries RAND/AUTN and the card's RES/CK/IK: it is created 0600 in the bench's
private work directory and nothing here logs a message's content. Every read has a timeout.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .modem_commands import AttachResult

__all__ = ["AirLinkServer", "AirLinkClient", "AirLinkError"]

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0


class AirLinkError(ConnectionError):
    """The other end went away or broke the protocol."""


class _Lines:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(TIMEOUT_S)
        self.buffer = b""
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except (OSError, socket.timeout) as exc:
                raise AirLinkError(f"the air link failed ({exc})") from exc
            if not chunk:
                raise AirLinkError("the other end closed the air link")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise AirLinkError("the air link sent something that is not JSON") from exc
        if not isinstance(message, dict):
            raise AirLinkError("the air link sent something that is not a message")
        return message


class _RemoteNetwork:
    """The AirInterface the module sees while a run is connected."""

    def __init__(self, lines: _Lines, plmn: str | None, name: str | None) -> None:
        self.lines = lines
        self.plmn = plmn
        self.name = name

    def attach(self, imsi: str, authenticate: Callable[[bytes, bytes], bytes], apn: str | None = None) -> AttachResult:
        # the default bearer's APN goes with the attach, as the module gives it to a network in-process
        self.lines.send({"op": "attach", "imsi": imsi, **({"apn": apn} if apn else {})})
        while True:
            message = self.lines.receive()
            if message.get("op") == "authenticate":
                response = authenticate(bytes.fromhex(message["rand"]), bytes.fromhex(message["autn"]))
                self.lines.send({"op": "response", "data": response.hex()})
            elif message.get("op") == "result":
                fields = {k: message[k] for k in ("accepted", "ip_address", "home", "reject_cause", "tac", "ci")}
                return AttachResult(**fields)
            else:
                raise AirLinkError(f"unexpected {message.get('op')!r} during an attach")

    def detach(self, imsi: str) -> None:
        self.lines.send({"op": "detach", "imsi": imsi})
        if self.lines.receive().get("op") != "done":
            raise AirLinkError("unexpected answer to a detach")


class AirLinkServer:
    """Serves ``modem`` (an EmulatedModem) on a Unix socket at ``path``, one run at a time."""

    def __init__(self, modem: Any, path: Path) -> None:
        self.modem = modem
        self.path = Path(path)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> Path:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)           # 0600: the link carries AKA responses
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old)
        listener.listen(1)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name=f"air-link {self.path}", daemon=True)
        self._thread.start()
        return self.path

    def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                self._one_run(conn)

    def _one_run(self, conn: socket.socket) -> None:
        lines = _Lines(conn)
        try:
            hello = lines.receive()
            if hello.get("op") != "hello":
                return
            remote = _RemoteNetwork(lines, hello.get("plmn"), hello.get("name"))
            lines.sock.settimeout(TIMEOUT_S)
            self.modem.set_network(remote)
            lines.send({"op": "ready"})
            # the connection stays open while the run uses the network; its close is the run's end
            while not self._stopping:
                ready, _, _ = select.select([conn], [], [], 0.5)
                if not ready:
                    continue
                try:
                    if not conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                        break
                except BlockingIOError:
                    continue
                except OSError:
                    break
                time.sleep(0.02)   # a message for the module's attach: its thread reads it
        except AirLinkError as exc:
            log.debug("air link: %s", exc)
        finally:
            self.modem.lose_coverage()   # the run and its network are gone


class AirLinkClient:
    """What a run hands its module-mode attach in place of the emulated modem (``set_network``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._lines: _Lines | None = None
        self._thread: threading.Thread | None = None
        self._network: Any = None

    def set_network(self, network: Any) -> None:
        if network is None:
            self.close()
            return
        self._network = network
        if self._lines is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(TIMEOUT_S)
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise AirLinkError(f"{self.path}: the running bench's air link does not answer ({exc.strerror or exc})") from exc
        self._lines = _Lines(sock)
        self._lines.send({"op": "hello", "plmn": getattr(network, "plmn", None), "name": getattr(network, "name", None)})
        if self._lines.receive().get("op") != "ready":
            raise AirLinkError(f"{self.path}: the running bench refused the air link")
        self._thread = threading.Thread(target=self._serve, name=f"air-link client {self.path}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        lines, self._lines = self._lines, None
        if lines is not None:
            try:
                lines.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            lines.sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _serve(self) -> None:
        lines = self._lines
        assert lines is not None
        lines.sock.settimeout(None)     # the module attaches when the run says so
        while True:
            try:
                message = lines.receive()
            except AirLinkError:
                return
            try:
                if message.get("op") == "attach":
                    apn = {"apn": message["apn"]} if message.get("apn") else {}
                    result = self._network.attach(message["imsi"], lambda rand, autn: self._authenticate(lines, rand, autn),
                                                  **apn)
                    lines.send({"op": "result", "accepted": result.accepted, "ip_address": result.ip_address,
                                "home": result.home, "reject_cause": result.reject_cause,
                                "tac": result.tac, "ci": result.ci})
                elif message.get("op") == "detach":
                    self._network.detach(message["imsi"])
                    lines.send({"op": "done"})
            except Exception:   # the module sees the attach fail; the run's record has the cause
                log.exception("air link: the network failed")
                try:
                    lines.send({"op": "result", "accepted": False, "ip_address": None, "home": False,
                                "reject_cause": None, "tac": "0001", "ci": "00000001"})
                except OSError:
                    return

    @staticmethod
    def _authenticate(lines: _Lines, rand: bytes, autn: bytes) -> bytes:
        lines.sock.settimeout(TIMEOUT_S)
        lines.send({"op": "authenticate", "rand": rand.hex(), "autn": autn.hex()})
        answer = lines.receive()
        lines.sock.settimeout(None)
        if answer.get("op") != "response":
            raise AirLinkError("unexpected answer to an AUTHENTICATE")
        return bytes.fromhex(answer["data"])
