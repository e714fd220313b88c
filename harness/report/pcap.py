"""apdu.pcap: every UICC command of a run as GSMTAP, so Wireshark and tshark decode it.

The encapsulation is osmocom's (SIMtrace, pySim-trace), so a trace of the harness and one
sniffed on a real card interface read alike: a classic pcap file, link type raw IPv4, each
command one IPv4/UDP datagram to the GSMTAP port whose payload is a GSMTAP v2 header of type
SIM followed by the command APDU, the response data and SW1 SW2.

Secrets never reach the file: a secret exchange is written from the record's outline of it
(header, lengths, SW), its data bytes replaced by the filler below; an exchange the driver did
not flag but whose bytes hold a registered secret is treated the same way.

Exchanges sniffed on the module's card interface (a SIMtrace2, or the emulated modem acting as
one: ``Record.sniffed``) are merged in by time, each from the tracer's own address and port to
the GSMTAP port: the harness's own come from port 4729, so ``udp.srcport != 4729`` shows the
sniffed ones. Their data withheld by the record is written as the same filler.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from itertools import cycle, islice
from pathlib import Path
from typing import Any, Iterator

from mcim_hil.record import REDACTED, SNIFFED, Record, apdu_outline

from .logs import groups

PCAP_MAGIC = 0xA1B2C3D4          # classic pcap, microsecond timestamps
PCAP_VERSION = (2, 4)
PCAP_SNAPLEN = 65535
LINKTYPE_IPV4 = 228              # tcpdump.org link-layer header types: raw IPv4
GSMTAP_UDP_PORT = 4729           # IANA "gsmtap"
GSMTAP_VERSION = 2
GSMTAP_HEADER_WORDS = 4          # 16 bytes
GSMTAP_TYPE_SIM = 4              # osmocom gsmtap.h GSMTAP_TYPE_SIM
_IPPROTO_UDP = 17
_LOOPBACK = bytes([127, 0, 0, 1])

# A secret's data bytes become this text, repeated to the same length: the APDU keeps its Lc
# and length so tshark decodes it as the command it was, a reader sees at once in the hex pane
# that the bytes were withheld (zeros or 'FF' would pass for a real value: an erased file, an
# empty PIN), and a command without data gets nothing added.
REDACTED_FILLER = b"REDACTED"


@dataclass(frozen=True)
class Exchange:
    """One UICC command as traced: when, on which reader, and the GSMTAP payload."""

    started: float
    port: str
    command: str
    payload: bytes     # command APDU + response data + SW1 SW2
    redacted: bool
    source: tuple[bytes, int] | None = None   # sniffed: the tracer's IPv4 address and UDP port


def uicc_exchanges(record: Record) -> list[Exchange]:
    """The run's UICC commands in order, secrets replaced by the filler."""
    run = record.to_dict()
    out = []
    for group in groups(run):
        for event in group.of_type("device"):
            if event["device"] != "uicc":
                continue
            exchange = _exchange(event, record)
            if exchange is not None:
                out.append(exchange)
    return out


def sniffed_exchanges(record: Record) -> list[Exchange]:
    """The exchanges tracers sent during the run, as the record kept them (redacted)."""
    run = record.to_dict()
    out = []
    for group in groups(run):
        for event in group.of_type(SNIFFED):
            exchange = _sniffed_exchange(event)
            if exchange is not None:
                out.append(exchange)
    return out


def _sniffed_exchange(event: dict[str, Any]) -> Exchange | None:
    try:
        if event["request"] != REDACTED:
            request = bytes.fromhex(event["request"])
        else:
            header = bytes.fromhex(event["request_header"])
            request = header + _filler(event["request_length"] - len(header))
        if event["response"] != REDACTED:
            response = bytes.fromhex(event["response"])
        else:
            sw = bytes.fromhex(event["sw"]) if event.get("sw") else b""
            response = _filler(event["response_length"]) + sw if sw else b""
    except (KeyError, ValueError):
        return None         # not as the record writes it: nothing safe to show
    host, _, port = str(event.get("source", "")).rpartition(":")
    try:
        source = (socket.inet_aton(host), int(port))
    except (OSError, ValueError):
        source = (_LOOPBACK, 0)   # an IPv6 tracer: shown from loopback
    return Exchange(event["started"], event.get("source", ""), event["command"], request + response,
                    bool(event.get("secret")), source)


def _exchange(event: dict[str, Any], record: Record) -> Exchange | None:
    outline = event if "request_header" in event else None
    if not event.get("secret") and outline is None:
        try:
            request, response = bytes.fromhex(event["request"]), bytes.fromhex(event["response"])
        except ValueError:
            return None     # not bytes as recorded: nothing to trace
        if not _holds_secret(record, request, response):
            return Exchange(event["started"], event["port"], event["command"],
                            _tpdu(request) + response, False)
        outline = apdu_outline(request, response)  # a driver forgot to flag it: second line of defence
    if outline is None:
        return None         # a secret event recorded without its outline: nothing safe to show
    header = bytes.fromhex(outline["request_header"])
    request = header + _filler(outline["request_length"] - len(header))
    if outline is event and event.get("request") not in (None, REDACTED):   # only the answer withheld
        shown = bytes.fromhex(event["request"])                               # (AUTHENTICATE: RAND, AUTN)
        if not _holds_secret(record, shown):
            request = shown
    sw = bytes.fromhex(outline["sw"]) if outline.get("sw") else b""
    response = _filler(outline["response_length"]) + sw if sw else b""
    return Exchange(event["started"], event["port"], event["command"], _tpdu(request) + response, True)


def _holds_secret(record: Record, *parts: bytes) -> bool:
    return any(record.scrub(part.hex()) != part.hex() for part in parts if part)


def _filler(length: int) -> bytes:
    return bytes(islice(cycle(REDACTED_FILLER), max(length, 0)))


def _tpdu(apdu: bytes) -> bytes:
    """The command as a T=0 TPDU (what SIMtrace sees on the wire and tshark's gsm_sim parses):
    a short case-4 APDU loses its trailing Le, which tshark would read as response data."""
    if len(apdu) > 5 and apdu[4] != 0 and len(apdu) == 5 + apdu[4] + 1:
        return apdu[:-1]
    return apdu


# -- encapsulation --------------------------------------------------------------------------------

def gsmtap_sim(payload: bytes) -> bytes:
    """GSMTAP v2 header, type SIM (osmocom gsmtap.h), then the payload."""
    header = struct.pack(">BBBBHbbIBBBB", GSMTAP_VERSION, GSMTAP_HEADER_WORDS, GSMTAP_TYPE_SIM,
                         0,   # timeslot
                         0,   # ARFCN
                         0,   # signal level, dBm
                         0,   # SNR, dB
                         0,   # GSM frame number
                         0, 0, 0, 0)  # sub-type, antenna, sub-slot, reserved
    return header + payload


def ipv4_checksum(header: bytes) -> int:
    """RFC 791 header checksum: ones' complement of the ones'-complement sum of 16-bit words."""
    if len(header) % 2:
        header += b"\x00"
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_ipv4_datagram(payload: bytes, ident: int, src: bytes = _LOOPBACK, dst: bytes = _LOOPBACK,
                      sport: int = GSMTAP_UDP_PORT, dport: int = GSMTAP_UDP_PORT) -> bytes:
    """An IPv4 packet (no options) carrying one UDP datagram, both checksums filled in."""
    udp_length = 8 + len(payload)
    pseudo = src + dst + struct.pack(">BBH", 0, _IPPROTO_UDP, udp_length)   # RFC 768
    udp_sum = ipv4_checksum(pseudo + struct.pack(">HHHH", sport, dport, udp_length, 0) + payload) or 0xFFFF
    udp = struct.pack(">HHHH", sport, dport, udp_length, udp_sum) + payload
    total_length = 20 + len(udp)
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total_length, ident & 0xFFFF, 0x4000,  # DF
                         64, _IPPROTO_UDP, 0, src, dst)
    header = header[:10] + struct.pack(">H", ipv4_checksum(header)) + header[12:]
    return header + udp


def _datagram(x: Exchange, ident: int) -> bytes:
    if x.source is None:
        return udp_ipv4_datagram(gsmtap_sim(x.payload), ident)
    address, port = x.source
    return udp_ipv4_datagram(gsmtap_sim(x.payload), ident, src=address, sport=port or GSMTAP_UDP_PORT)


def pcap_file(packets: Iterator[tuple[float, bytes]] | list[tuple[float, bytes]]) -> bytes:
    """A classic pcap file (big-endian, so it starts with a1 b2 c3 d4) of raw IPv4 packets."""
    out = [struct.pack(">IHHiIII", PCAP_MAGIC, *PCAP_VERSION, 0, 0, PCAP_SNAPLEN, LINKTYPE_IPV4)]
    for t, packet in packets:
        seconds = int(t)
        micros = min(int(round((t - seconds) * 1_000_000)), 999_999)
        out.append(struct.pack(">IIII", seconds, micros, len(packet), len(packet)) + packet)
    return b"".join(out)


def write_pcap(record: Record, path: Path) -> Path:
    """Write the run's UICC commands, and those sniffed, to ``path`` as GSMTAP-over-UDP pcap."""
    exchanges = sorted(uicc_exchanges(record) + sniffed_exchanges(record), key=lambda x: x.started)
    packets = [(x.started, _datagram(x, n)) for n, x in enumerate(exchanges, start=1)]
    path.write_bytes(pcap_file(packets))
    return path
