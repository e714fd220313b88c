"""The RO's ICF: AVs for a PCID (000 steps 2-4) and the M2ME's first IP contact with the RO (steps 7-8).

The ICF keeps each PCID's temporary-access credential with its AuC SQN state; a PCID it does
not hold yet it obtains from the CCIF (000 step 3 NOTE).
"""

from __future__ import annotations

import time

from mcim_hil.aka.auc import AuC
from mcim_hil.network import av_source
from mcim_hil.network.bus import Bus, Entity, Refused
from mcim_hil.network.messages import (
    AccessCredentialRenewed,
    AccessCredentialUpdateAck,
    AuthDataRequest,
    AuthDataResponse,
    BootstrapRequest,
    BootstrapRequestAck,
    ConnectAccept,
    ConnectReject,
    ConnectRequest,
    CredentialRequest,
    CredentialResponse,
    Message,
    ResyncRequest,
)
from mcim_hil.network.store import Store
from mcim_hil.network.subscription import PCID_APN, UpdateLocationAnswer, UpdateLocationRequest

class Icf(Entity):
    """Initial connectivity function of the RO."""

    def __init__(self, bus: Bus, store: Store, *, address: str, ccif_address: str,
                 drf_address: str, dpf_address: str | None = None, apn: str = PCID_APN) -> None:
        super().__init__(bus, address)
        self.ccif_address = ccif_address
        self.drf_address = drf_address
        # the PCID's subscription data: one APN, reaching the RO's functions only (5.1.3.8.4.3 s6)
        self.apn = apn
        self.reachable = tuple(a for a in (address, drf_address, dpf_address) if a)
        self.db = store.entity("icf")
        self.db.define("credentials", {"pcid": "TEXT", "k": "SECRET", "opc": "SECRET", "amf": "BLOB",
                                       "auc": "JSON", "obtained_at": "REAL"}, "pcid")
        self.db.define("connections", {"pcid": "TEXT", "ip_address": "TEXT", "connected_at": "REAL",
                                       "bootstrap": "TEXT"}, "pcid")
        self.on(AuthDataRequest, self._auth_data)
        self.on(ResyncRequest, self._auth_data)
        self.on(ConnectRequest, self._connect)
        self.on(UpdateLocationRequest, self._update_location)
        self.on(AccessCredentialRenewed, self._credential_renewed)
        self.clock = time.time              # tests move it (the credential's lifetime)
        self.not_after: dict[str, float] = {}   # PCID -> end of its credential's lifetime

    # -- step 8 --------------------------------------------------------------------------
    def request_bootstrap(self, pcid: str) -> BootstrapRequestAck:
        """000 s8: forward the PCID and the M2ME's IP address to the DRF."""
        connection = self.db.get("connections", pcid=pcid)
        if connection is None:
            raise Refused(self.address, f"bootstrap of {pcid}", "the M2ME has not connected to the RO")
        ack = self.request(BootstrapRequest(sender=self.address, recipient=self.drf_address, pcid=pcid,
                                            ip_address=connection["ip_address"]),
                           BootstrapRequestAck)
        self.db.update("connections", {"pcid": pcid}, bootstrap="accepted" if ack.accepted else "refused")
        if not ack.accepted:
            raise Refused(self.drf_address, f"bootstrap of {pcid}", ack.reason, ack)
        return ack

    def connection(self, pcid: str) -> dict | None:
        """The M2ME's connection to the RO (IP address, bootstrap state), if any."""
        return self.db.get("connections", pcid=pcid)

    # -- handlers ------------------------------------------------------------------------
    def _auth_data(self, msg: AuthDataRequest | ResyncRequest) -> Message:
        """000 s3-s4 (and a resync from the VNO, TS 33.102 6.3.5)."""
        auc = self._auc(msg.imsi)
        expiry = self.not_after.get(msg.imsi)
        if auc is not None and expiry is not None and self.clock() > expiry:
            stamp = time.strftime("%Y-%m-%d", time.gmtime(expiry))
            return av_source.answer(self.address, msg, None, f"the PCID's initial-access credential expired on {stamp}")
        reply = av_source.answer(self.address, msg, auc, "no temporary-access credential for this PCID")
        if isinstance(reply, AuthDataResponse):
            self.db.update("credentials", {"pcid": msg.imsi}, auc=auc.to_dict())
        return reply

    def _update_location(self, msg: UpdateLocationRequest) -> Message:
        """The VNO's ULR for a PCID: its APN and the RO's addresses, the only ones it reaches."""
        return UpdateLocationAnswer(sender=self.address, recipient=msg.sender, imsi=msg.imsi,
                                    apns=(self.apn,), reachable=self.reachable)

    def _connect(self, msg: ConnectRequest) -> Message:
        if self.db.get("credentials", pcid=msg.pcid) is None:
            return ConnectReject(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                 reason="unknown PCID")
        self.db.put("connections", pcid=msg.pcid, ip_address=msg.ip_address,
                    connected_at=time.time(), bootstrap="pending")
        return ConnectAccept(sender=self.address, recipient=msg.sender, pcid=msg.pcid)

    def _credential_renewed(self, msg: AccessCredentialRenewed) -> Message:
        """5.1.3.8.4.3: the CCIF renewed a PCID's credential: the next AVs come from the new one."""
        if msg.sender != self.ccif_address:
            raise Refused(self.address, f"credential update for {msg.pcid}", f"{msg.sender} is not the CCIF")
        self.db.put("credentials", pcid=msg.pcid, k=msg.k, opc=msg.opc, amf=msg.amf,
                    auc=AuC(msg.k, msg.opc, amf=msg.amf).to_dict(), obtained_at=time.time())
        self.not_after[msg.pcid] = msg.not_after
        return AccessCredentialUpdateAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid)

    # -- credentials -----------------------------------------------------------------------
    def _auc(self, pcid: str) -> AuC | None:
        """The PCID's AuC, fetching the credential from the CCIF the first time (000 s3 NOTE)."""
        row = self.db.get("credentials", pcid=pcid)
        if row is None:
            reply = self.request(CredentialRequest(sender=self.address, recipient=self.ccif_address,
                                                   pcid=pcid), CredentialResponse)
            if not reply.found or reply.k is None or reply.opc is None:
                return None
            auc = AuC(reply.k, reply.opc, amf=reply.amf)
            if reply.not_after is not None:
                self.not_after[pcid] = reply.not_after
            self.db.put("credentials", pcid=pcid, k=reply.k, opc=reply.opc, amf=reply.amf,
                        auc=auc.to_dict(), obtained_at=time.time())
            return auc
        return AuC.from_dict(row["auc"], k=row["k"], opc=row["opc"])
