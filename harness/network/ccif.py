"""The CCIF: issues the temporary-access credentials (PCID, K, OPc) of pristine M2MEs.

The M2MES asks it for one when it personalises a pristine M2ME; the RO's ICF asks it for the
credential of a PCID it does not hold yet (TR 33.812 5.1.3.7.1 step 3 NOTE).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from mcim_hil.network.bus import Bus, Entity
from mcim_hil.network.messages import (
    AccessCredentialRenewal,
    AccessCredentialRenewed,
    AccessCredentialUpdateAck,
    CredentialIssued,
    CredentialIssueRequest,
    CredentialRequest,
    CredentialResponse,
    Message,
)
from mcim_hil.network.store import Store

ACCESS_LIFETIME_S = 2 * 365 * 86400.0  # how long a PCID credential serves (5.1.3.8.4.3, last paragraph)
IMSI_DIGITS = 15  # TS 23.003 2.2: MCC + MNC + MSIN, at most 15 digits
AMF_DEFAULT = b"\x80\x00"


class CcifError(Exception):
    """The CCIF could not issue a credential."""


class Ccif(Entity):
    """Connectivity credential issuing function."""

    def __init__(self, bus: Bus, store: Store, *, address: str, pcid_plmn: str,
                 icf_addresses: Iterable[str] = (), m2mes_addresses: Iterable[str] = (),
                 dpf_addresses: Iterable[str] = (),
                 lifetime_s: float = ACCESS_LIFETIME_S, clock: Callable[[], float] = time.time) -> None:
        super().__init__(bus, address)
        if not (pcid_plmn.isdigit() and len(pcid_plmn) in (5, 6)):
            raise CcifError(f"{address}: PCID PLMN {pcid_plmn!r} is not MCC+MNC (5 or 6 digits)")
        self.pcid_plmn = pcid_plmn
        self.icf_addresses = set(icf_addresses)
        self.m2mes_addresses = set(m2mes_addresses)
        self.dpf_addresses = set(dpf_addresses)
        self.lifetime_s = lifetime_s
        self.clock = clock               # tests control it
        self.db = store.entity("ccif")
        self.db.define("credentials", {"pcid": "TEXT", "platform_id": "TEXT", "k": "SECRET",
                                       "opc": "SECRET", "amf": "BLOB", "issued_at": "REAL"}, "pcid")
        self.db.index("credentials", "platform_id")
        self.on(CredentialIssueRequest, self._issue)
        self.on(CredentialRequest, self._lookup)
        self.on(AccessCredentialRenewal, self._renew)

    def enrol(self, pcid: str, k: bytes, opc: bytes, *, platform_id: str = "",
              amf: bytes = AMF_DEFAULT) -> None:
        """Take over a credential already on a card (a bench whose UICC keeps its PCID keys)."""
        if not pcid.startswith(self.pcid_plmn) or not pcid.isdigit() or len(pcid) > IMSI_DIGITS:
            raise CcifError(f"{self.address}: PCID {pcid!r} is not an IMSI of PLMN {self.pcid_plmn}")
        if len(k) != 16 or len(opc) != 16:
            raise CcifError(f"{self.address}: PCID {pcid}: K and OPc must be 16 bytes each")
        self.db.put("credentials", pcid=pcid, platform_id=platform_id, k=bytes(k), opc=bytes(opc),
                    amf=bytes(amf), issued_at=self.clock())

    def issued(self) -> list[str]:
        """The PCIDs issued so far."""
        return sorted(row["pcid"] for row in self.db.select("credentials"))

    def _issue(self, msg: CredentialIssueRequest) -> Message:
        if msg.sender not in self.m2mes_addresses:
            raise CcifError(f"{self.address}: CredentialIssueRequest from {msg.sender}, "
                            f"not an equipment supplier of this CCIF")
        existing = self.db.select("credentials", platform_id=msg.platform_id)
        if existing:  # a platform keeps its one PCID: personalising twice gives the same
            row = existing[0]
        else:
            row = {"pcid": self._next_pcid(), "platform_id": msg.platform_id, "k": os.urandom(16),
                   "opc": os.urandom(16), "amf": AMF_DEFAULT, "issued_at": self.clock()}
            self.db.put("credentials", **row)
        return CredentialIssued(sender=self.address, recipient=msg.sender, platform_id=msg.platform_id,
                                pcid=row["pcid"], k=row["k"], opc=row["opc"], amf=row["amf"],
                                not_after=row["issued_at"] + self.lifetime_s)

    def _lookup(self, msg: CredentialRequest) -> Message:
        row = self.db.get("credentials", pcid=msg.pcid)
        if msg.sender not in self.icf_addresses or row is None:
            return CredentialResponse(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                      found=False)
        return CredentialResponse(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                  found=True, k=row["k"], opc=row["opc"], amf=row["amf"],
                                  not_after=row["issued_at"] + self.lifetime_s)

    def _renew(self, msg: AccessCredentialRenewal) -> Message:
        """5.1.3.8.4.3: a new K/OPc and lifetime for a PCID, asked by the RO's DPF; the RO's ICFs
        get it too, so the next PCID attach authenticates with it."""
        row = self.db.get("credentials", pcid=msg.pcid)
        if msg.sender not in self.dpf_addresses or row is None:
            raise CcifError(f"{self.address}: renewal of {msg.pcid} from {msg.sender}: "
                            + ("not a DPF of this CCIF" if row is not None else "unknown PCID"))
        issued_at = self.clock()
        row.update(k=os.urandom(16), opc=os.urandom(16), issued_at=issued_at)
        self.db.put("credentials", **row)
        renewed = dict(pcid=msg.pcid, k=row["k"], opc=row["opc"], amf=row["amf"],
                       not_after=issued_at + self.lifetime_s)
        for icf in sorted(self.icf_addresses):
            self.request(AccessCredentialRenewed(sender=self.address, recipient=icf, **renewed),
                         AccessCredentialUpdateAck)
        return AccessCredentialRenewed(sender=self.address, recipient=msg.sender, **renewed)

    def _next_pcid(self) -> str:
        msin_digits = IMSI_DIGITS - len(self.pcid_plmn)
        msin = (self.db.max_number("credentials", "pcid", after=len(self.pcid_plmn)) or 0) + 1
        if msin >= 10 ** msin_digits:
            raise CcifError(f"{self.address}: PCID range of {self.pcid_plmn} exhausted")
        return f"{self.pcid_plmn}{msin:0{msin_digits}d}"
