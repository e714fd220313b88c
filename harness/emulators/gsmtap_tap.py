"""The emulated module's SIM interface as a SIMtrace2 sniffer shows it: GSMTAP SIM frames over UDP.

A SIMtrace2 between a module and its SIM sends each exchange it sees on the card's contacts as
one UDP datagram (default 127.0.0.1:4729) whose payload is a GSMTAP v2 header of type SIM, then
the command TPDU, the response data and SW1 SW2 (osmocom gsmtap.h; pySim-trace and Wireshark
read it). The emulated modem sends its own SIM exchanges here exactly so, whatever asked for
them (its own attach, or AT+CSIM): the tracer does not know who spoke.

Written apart from the harness's pcap writer on purpose: the listener checks this one.
A tracer never stalls the module: a send that fails is dropped.
"""

from __future__ import annotations

import logging
import socket
import struct

log = logging.getLogger(__name__)

GSMTAP_PORT = 4729            # IANA "gsmtap"
_GSMTAP_VERSION = 2
_GSMTAP_HEADER_WORDS = 4      # 16 bytes
_GSMTAP_TYPE_SIM = 4          # osmocom gsmtap.h GSMTAP_TYPE_SIM
_GSMTAP_SIM_APDU = 0          # osmocom gsmtap.h GSMTAP_SIM_APDU (sub-type)


def gsmtap_sim_frame(tpdu: bytes, response: bytes) -> bytes:
    """One GSMTAP v2 SIM datagram: header, then the command TPDU, response data and SW1 SW2."""
    header = struct.pack(">BBBBHbbIBBBB", _GSMTAP_VERSION, _GSMTAP_HEADER_WORDS, _GSMTAP_TYPE_SIM,
                         0, 0, 0, 0, 0,              # timeslot, ARFCN, signal, SNR, frame number
                         _GSMTAP_SIM_APDU, 0, 0, 0)  # sub-type, antenna, sub-slot, reserved
    return header + tpdu + response


def wire_tpdu(apdu: bytes) -> bytes:
    """What crosses the contacts in T=0 (ISO/IEC 7816-3 12.2): a short case-4 command goes
    without its trailing Le (the card answers 61xx and the data comes with GET RESPONSE)."""
    if len(apdu) > 5 and apdu[4] != 0 and len(apdu) == 5 + apdu[4] + 1:
        return apdu[:-1]
    return apdu


class GsmtapTap:
    """Sends each SIM exchange of the module to ``address`` (host, port) as GSMTAP."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_DGRAM)

    def exchange(self, apdu: bytes, response: bytes) -> None:
        """One command and its answer (data + SW), as seen on the card's contacts."""
        try:
            self._socket.sendto(gsmtap_sim_frame(wire_tpdu(apdu), response), self.address)
        except OSError as exc:
            log.debug("GSMTAP to %s:%d: %s", self.address[0], self.address[1], exc)

    def close(self) -> None:
        self._socket.close()

    def __repr__(self) -> str:
        return f"GsmtapTap({self.address[0]}:{self.address[1]})"
