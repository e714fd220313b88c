"""The M2ME's air interface to a VNO, two ways; either way the AKA runs on the UICC.

- ``ModuleAttach``: the module attaches by itself on AT+CGATT=1 (the emulated modem, whose
  network is the VNO) and the harness reads the result over AT (+CEREG, +CGPADDR).
- ``RelayedAttach``: for a real module that cannot reach this network over the air, the
  harness relays the VNO's RAND/AUTN to the card (PC/SC reader, or AT+CSIM through the module)
  and hands the card's answer back to the VNO.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Protocol

from mcim_hil.drivers.uicc import AuthMacFailure, Uicc

# TS 31.102 7.1.2: AUTHENTICATE, 3G context (P2 '81'), data L RAND L AUTN
AUTHENTICATE_3G = bytes.fromhex("00880081")
SW_OK = b"\x90\x00"
SW_MAC_FAILURE = b"\x98\x62"  # TS 31.102 7.3


@dataclass(frozen=True)
class Attachment:
    accepted: bool
    ip_address: str | None
    reject_cause: int | None
    how: str               # "module" or "relayed"


class AirInterface(Protocol):
    def attach(self, imsi: str) -> Attachment: ...
    def detach(self, imsi: str) -> None: ...


class RelayedAttach:
    """The harness carries the AKA between the VNO and the card."""

    def __init__(self, vno: Any, uicc: Uicc, *, apn: str | None = None) -> None:
        self.vno = vno
        self.uicc = uicc
        self.apn = apn     # None: the subscription's default APN

    def authenticate(self, rand: bytes, autn: bytes) -> bytes:
        """The card's answer to AUTHENTICATE as the VNO reads it: response data + SW."""
        apdu = AUTHENTICATE_3G + struct.pack("B", 2 + len(rand) + len(autn)) + \
            bytes([len(rand)]) + rand + bytes([len(autn)]) + autn
        self.uicc.select_adf_usim()
        try:
            return self.uicc.send_apdu(apdu, name="AUTHENTICATE") + SW_OK
        except AuthMacFailure:
            return SW_MAC_FAILURE

    def attach(self, imsi: str) -> Attachment:
        result = self.vno.attach(imsi, self.authenticate, self.apn)
        return Attachment(result.accepted, result.ip_address, result.reject_cause, "relayed")

    def detach(self, imsi: str) -> None:
        self.vno.detach(imsi)


class ModuleAttach:
    """The module attaches by itself: AT+CGATT=1, then its registration and address over AT."""

    def __init__(self, modem: Any, emulated_modem: Any, vno: Any, *, cid: int = 1, apn: str = "m2m.provisioning",
                 timeout: float = 30.0) -> None:
        self.modem = modem
        self.emulated_modem = emulated_modem
        self.vno = vno
        self.cid = cid
        self.apn = apn
        self.timeout = timeout

    def attach(self, imsi: str) -> Attachment:
        from mcim_hil.drivers.errors import ModemError
        self.emulated_modem.set_network(self.vno)  # the emulated module's radio reaches this VNO
        self.modem.set_registration_reporting(3)   # TS 27.007 10.1.22: stat and reject cause
        self.modem.define_pdp_context(self.cid, "IP", self.apn)
        try:
            self.modem.attach()
        except ModemError:
            reg = self.modem.registration()
            return Attachment(False, None, getattr(reg, "reject_cause", None), "module")
        reg = self.modem.wait_registered(self.timeout)
        return Attachment(reg.stat in (1, 5), self.modem.pdp_address(self.cid), None, "module")

    def detach(self, imsi: str) -> None:
        self.modem.detach()
