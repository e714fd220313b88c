"""Listens for GSMTAP SIM frames (a SIMtrace2 on the module's card interface) during a run.

A SIMtrace2 sniffer sends every exchange between a module and its SIM as a UDP datagram
(default 127.0.0.1:4729): a GSMTAP v2 header of type SIM, then the command TPDU, the response
data and SW1 SW2 (osmocom gsmtap.h). The listener splits each frame into command and answer,
names the command, and hands it to the record, which redacts and places it in the step running
(``Record.sniffed``). Frames of other GSMTAP types, and datagrams that are no GSMTAP, are counted
and dropped.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable

from mcim_hil.record import Record

from . import LabError

GSMTAP_PORT = 4729                 # IANA "gsmtap"
DEFAULT_LISTEN = ("127.0.0.1", GSMTAP_PORT)   # where SIMtrace2 and pySim-trace send by default
_GSMTAP_VERSION = 2
_GSMTAP_TYPE_SIM = 4               # osmocom gsmtap.h GSMTAP_TYPE_SIM
_GSMTAP_SIM_APDU = 0               # osmocom gsmtap.h sub-type: an APDU (not ATR, PPS)
_POLL_S = 0.2

# Instructions whose command TPDU carries P3 data bytes to the card (case 3/4, ISO/IEC 7816-3
# 12.2.2); any other instruction's P3 is the length the card answers (case 2).
_DATA_TO_CARD = frozenset({0x04, 0x10, 0x14, 0x20, 0x24, 0x26, 0x28, 0x2C, 0x32, 0x44, 0x73, 0x88,
                           0x89, 0xA2, 0xA4, 0xC2, 0xD4, 0xD6, 0xDB, 0xDC, 0xE0, 0xE4})
# TS 102 221 10.1.2 and TS 31.102 7.1: the names Wireshark shows
INS_NAMES = {
    0xA4: "SELECT", 0xF2: "STATUS", 0xB0: "READ BINARY", 0xD6: "UPDATE BINARY", 0xB2: "READ RECORD",
    0xDC: "UPDATE RECORD", 0xA2: "SEARCH RECORD", 0x32: "INCREASE", 0xCB: "RETRIEVE DATA", 0xDB: "SET DATA",
    0x20: "VERIFY", 0x24: "CHANGE PIN", 0x26: "DISABLE PIN", 0x28: "ENABLE PIN", 0x2C: "UNBLOCK PIN",
    0x04: "DEACTIVATE FILE", 0x44: "ACTIVATE FILE", 0x88: "AUTHENTICATE", 0x89: "AUTHENTICATE",
    0x84: "GET CHALLENGE", 0xAA: "TERMINAL CAPABILITY", 0x10: "TERMINAL PROFILE", 0xC2: "ENVELOPE",
    0x12: "FETCH", 0x14: "TERMINAL RESPONSE", 0x70: "MANAGE CHANNEL", 0x73: "MANAGE SECURE CHANNEL",
    0x75: "TRANSACT DATA", 0xC0: "GET RESPONSE", 0xE0: "CREATE FILE", 0xE4: "DELETE FILE", 0xD4: "RESIZE FILE",
}


@dataclass(frozen=True)
class SniffedExchange:
    """One exchange seen on the card interface."""

    started: float        # time.time() when the frame arrived
    source: str           # the tracer's address, "host:port"
    command: str
    request: bytes        # command TPDU
    response: bytes       # response data + SW1 SW2


def parse_address(text: str, where: str = "gsmtap") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) as a socket address; a bad one is one clear line."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise LabError(f"{where}: {text!r} is not HOST:PORT")
    return host, int(port)


def split_frame(datagram: bytes) -> tuple[bytes, bytes] | None:
    """The command TPDU and the answer (data + SW) of a GSMTAP SIM APDU frame, else None."""
    if len(datagram) < 4 or datagram[0] != _GSMTAP_VERSION:
        return None
    header_len = datagram[1] * 4
    if datagram[2] != _GSMTAP_TYPE_SIM or header_len < 16 or len(datagram) < header_len:
        return None
    if datagram[12] != _GSMTAP_SIM_APDU:
        return None                # ATR, PPS: not an exchange
    payload = datagram[header_len:]
    if len(payload) < 7:           # a 5-byte header and SW1 SW2 at least
        return None
    p3 = payload[4]
    if payload[1] in _DATA_TO_CARD and len(payload) >= 5 + p3 + 2:
        cut = 5 + p3
    else:
        cut = 5
    return payload[:cut], payload[cut:]


class GsmtapListener:
    """Receives GSMTAP on a UDP address in a thread and hands each SIM exchange to ``deliver``."""

    def __init__(self, address: tuple[str, int], deliver: Callable[[SniffedExchange], None],
                 where: str = "gsmtap") -> None:
        self.requested = address
        self.where = where
        self.deliver = deliver
        self.frames = 0
        self.ignored = 0
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port the system chose when asked for port 0)."""
        assert self._socket is not None, "not started"
        host, port = self._socket.getsockname()[:2]
        return host, port

    def start(self) -> tuple[str, int]:
        host, port = self.requested
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            why = "in use by another listener (pySim-trace, Wireshark's udp listener, another run?)" \
                if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise LabError(f"{self.where}: cannot listen on {host}:{port}: {why}") from None
        sock.setblocking(False)
        self._socket = sock
        self._thread = threading.Thread(target=self._serve, name=f"gsmtap {host}:{self.address[1]}",
                                        daemon=True)
        self._thread.start()
        return self.address

    def _serve(self) -> None:
        assert self._socket is not None
        while not self._stopping.is_set():
            ready, _, _ = select.select([self._socket], [], [], _POLL_S)
            if ready:
                self._drain()

    def _drain(self) -> None:
        assert self._socket is not None
        while True:
            try:
                datagram, peer = self._socket.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._take(datagram, peer, time.time())

    def _take(self, datagram: bytes, peer: tuple, at: float) -> None:
        parts = split_frame(datagram)
        if parts is None:
            self.ignored += 1
            return
        request, response = parts
        self.frames += 1
        command = INS_NAMES.get(request[1], f"INS {request[1]:02X}")
        self.deliver(SniffedExchange(at, f"{peer[0]}:{peer[1]}", command, request, response))

    def stop(self) -> None:
        """Take what already arrived, then stop listening."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout=5.0)
        self._thread = None
        self._drain()
        assert self._socket is not None
        self._socket.close()

    def __enter__(self) -> GsmtapListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sniff_into(record: Record, address: tuple[str, int], where: str = "gsmtap") -> GsmtapListener:
    """A started listener whose frames go into ``record`` as sniffed exchanges."""
    def deliver(x: SniffedExchange) -> None:
        record.sniffed(x.started, x.source, x.command, x.request, x.response)
    listener = GsmtapListener(address, deliver, where)
    listener.start()
    return listener


OFF = "off"


def start_sniffing(record: Record, setting: str | None, emulated_modem: object | None = None,
                   where: str = "gsmtap") -> GsmtapListener | None:
    """Listen for a run as the bench (or the command line) says, and record where in run.json.

    ``setting``: ``HOST:PORT`` (a SIMtrace2 sending there: failing to listen is an error),
    ``off``, or None: with the emulated modem, a free port on loopback that it is pointed at;
    with a real module, 127.0.0.1:4729 if free (a tracer's default), else no sniffing, said in
    run.json. The caller stops the listener (and un-points the modem) after the run.
    """
    if setting == OFF:
        record.meta["sniffer"] = {"listen": OFF}
        return None
    if setting is not None:
        listener = sniff_into(record, parse_address(setting, where), where)
    elif emulated_modem is not None:
        listener = sniff_into(record, ("127.0.0.1", 0))
    else:
        try:
            listener = sniff_into(record, DEFAULT_LISTEN)
        except LabError as exc:
            record.meta["sniffer"] = {"listen": None, "why": str(exc)}
            return None
    host, port = listener.address
    record.meta["sniffer"] = {"listen": f"{host}:{port}", "tracer": "emulated modem" if emulated_modem else None}
    if emulated_modem is not None:
        emulated_modem.trace_sim_to((host, port))  # type: ignore[attr-defined]
    return listener


def stop_sniffing(record: Record, listener: GsmtapListener | None, emulated_modem: object | None = None) -> None:
    """Un-point the emulated modem, take the frames still in flight, count them in run.json."""
    if emulated_modem is not None and listener is not None:
        emulated_modem.trace_sim_to(None)  # type: ignore[attr-defined]
    if listener is None:
        return
    listener.stop()
    record.meta.setdefault("sniffer", {}).update(frames=listener.frames, ignored=listener.ignored)
