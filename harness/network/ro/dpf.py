"""The RO's DPF: the management server that downloads the M2MSIMMobj (000 steps 17-21; 004 c4 steps 6-13).

The DPF takes an SHO's provisioning authorisation only from the SHO registered for that M2ME
in the DRF's registry, or from the SHO the M2ME itself named when it opened its management
session (the owner's re-provisioning instruction, 004 c4 step 2, comes before the new SHO is
in the registry, step 14). It downloads the whole object in one message (the M2ME checks it
whole, 004 c4 step 7: atomic), and reports the M2ME's status to the authorising SHO.
"""

from __future__ import annotations

import secrets
import time

from mcim_hil.network.bus import Bus, Entity, Refused
from mcim_hil.network.access_credential import AccessCredential, seal_for_tre
from mcim_hil.network.messages import (
    AccessCredentialDelivery,
    AccessCredentialInstalled,
    AccessCredentialReplacementAccept,
    AccessCredentialReplacementOffer,
    AccessCredentialRenewal,
    AccessCredentialRenewalRequest,
    AccessCredentialRenewed,
    BootstrapCheck,
    BootstrapCheckResult,
    DiscardAcknowledgementRelay,
    DiscardConfirmation,
    DiscardConfirmationAck,
    DownloadReceipt,
    DrfProvisioningAuthorisation,
    M2MSIMMobjDownload,
    ManagementSessionAccept,
    ManagementSessionOpen,
    Message,
    ProvisioningAuthorisation,
    ProvisioningAuthorisationAck,
    ProvisioningStatus,
    ProvisioningStatusAck,
    RegistryEntry,
    RegistryQuery,
)
from mcim_hil.network.store import Store

# authorisation states
AUTHORISED = "authorised"
DOWNLOADED = "downloaded"
REFUSED_BY_M2ME = "refused by the M2ME"
REPORTED = "reported"


class Dpf(Entity):
    """Download and provisioning function of the RO."""

    def __init__(self, bus: Bus, store: Store, *, address: str, drf_address: str,
                 ccif_address: str | None = None) -> None:
        super().__init__(bus, address)
        self.drf_address = drf_address
        self.ccif_address = ccif_address   # where renewed initial-access credentials come from
        self._replacements: dict[str, dict] = {}   # network-initiated, in progress (in memory: keys)
        self.db = store.entity("dpf")
        self.db.define("sessions", {"pcid": "TEXT", "session_id": "TEXT", "m2me_address": "TEXT",
                                    "sho_address": "TEXT", "opened_at": "REAL"}, "pcid")
        self.db.define("authorisations", {"pcid": "TEXT", "sho_address": "TEXT", "m2msimmobj": "BLOB",
                                          "state": "TEXT", "updated_at": "REAL"}, "pcid")
        self.db.define("statuses", {"pcid": "TEXT", "success": "INTEGER", "detail": "TEXT",
                                    "reported_to": "TEXT", "received_at": "REAL"}, "pcid")
        self.on(ManagementSessionOpen, self._session_open)
        self.on(ProvisioningAuthorisation, self._authorisation)
        self.on(ProvisioningStatus, self._status)
        self.on(DiscardAcknowledgementRelay, self._discard_relay)
        self.on(DrfProvisioningAuthorisation, self._drf_authorisation)
        self.on(AccessCredentialRenewalRequest, self._access_renewal)

    def session(self, pcid: str) -> dict | None:
        return self.db.get("sessions", pcid=pcid)

    def authorisation_state(self, pcid: str) -> str | None:
        row = self.db.get("authorisations", pcid=pcid)
        return row["state"] if row else None

    def status(self, pcid: str) -> dict | None:
        """The provisioning status the M2ME reported (000 s20), if any."""
        return self.db.get("statuses", pcid=pcid)

    # -- steps -----------------------------------------------------------------------------------
    def download(self, pcid: str) -> DownloadReceipt:
        """000 s18: download the authorised M2MSIMMobj to the M2ME in one message."""
        session = self.db.get("sessions", pcid=pcid)
        auth = self.db.get("authorisations", pcid=pcid)
        if session is None:
            raise Refused(self.address, f"download to {pcid}", "no management session open")
        if auth is None or auth["state"] != AUTHORISED:
            raise Refused(self.address, f"download to {pcid}",
                          "no authorised M2MSIMMobj" if auth is None else f"authorisation is {auth['state']}")
        receipt = self.request(M2MSIMMobjDownload(sender=self.address, recipient=session["m2me_address"],
                                                  pcid=pcid, session_id=session["session_id"],
                                                  m2msimmobj=auth["m2msimmobj"]),
                               DownloadReceipt)
        self.db.update("authorisations", {"pcid": pcid},
                       state=DOWNLOADED if receipt.accepted else REFUSED_BY_M2ME, updated_at=time.time())
        if not receipt.accepted:
            raise Refused(f"M2ME {pcid}", "M2MSIMMobj download", receipt.reason, receipt)
        return receipt

    def report_status(self, pcid: str) -> ProvisioningStatusAck:
        """000 s21: report the M2ME's provisioning status back to the authorising SHO."""
        status = self.db.get("statuses", pcid=pcid)
        auth = self.db.get("authorisations", pcid=pcid)
        if status is None or auth is None:
            raise Refused(self.address, f"status report for {pcid}",
                          "the M2ME reported no status" if status is None else "no SHO authorised it")
        ack = self.request(ProvisioningStatus(sender=self.address, recipient=auth["sho_address"], pcid=pcid,
                                              success=bool(status["success"]), detail=status["detail"]),
                           ProvisioningStatusAck)
        self.db.update("statuses", {"pcid": pcid}, reported_to=auth["sho_address"])
        self.db.update("authorisations", {"pcid": pcid}, state=REPORTED, updated_at=time.time())
        return ack

    # -- handlers ----------------------------------------------------------------------------------
    def _session_open(self, msg: ManagementSessionOpen) -> Message:
        check = self.request(BootstrapCheck(sender=self.address, recipient=self.drf_address, pcid=msg.pcid,
                                            bootstrap_token=msg.bootstrap_token), BootstrapCheckResult)
        if not check.bootstrapped:
            raise Refused(self.address, f"management session for {msg.pcid} from {msg.sender}", check.reason)
        session_id = secrets.token_hex(8)
        self.db.put("sessions", pcid=msg.pcid, session_id=session_id, m2me_address=msg.m2me_address,
                    sho_address=msg.sho_address, opened_at=time.time())
        return ManagementSessionAccept(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                       session_id=session_id)

    def _authorisation(self, msg: ProvisioningAuthorisation) -> Message:
        def answer(accepted: bool, reason: str | None = None) -> Message:
            return ProvisioningAuthorisationAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                                accepted=accepted, reason=reason)

        entry = self.request(RegistryQuery(sender=self.address, recipient=self.drf_address, pcid=msg.pcid),
                             RegistryEntry)
        session = self.db.get("sessions", pcid=msg.pcid)
        registered = entry.found and entry.sho_address == msg.sender
        named_by_m2me = session is not None and session["sho_address"] == msg.sender
        if not (registered or named_by_m2me):
            holder = entry.sho_address if entry.found else "none"
            return answer(False, f"{msg.sender} is not the SHO registered for {msg.pcid} "
                                 f"(registered: {holder})")
        if entry.found and registered and entry.dpf_address != self.address:
            return answer(False, f"{msg.pcid} is served by DPF {entry.dpf_address}")
        if not msg.m2msimmobj:
            return answer(False, "empty M2MSIMMobj")
        self.db.put("authorisations", pcid=msg.pcid, sho_address=msg.sender, m2msimmobj=msg.m2msimmobj,
                    state=AUTHORISED, updated_at=time.time())
        self.db.delete("statuses", pcid=msg.pcid)
        return answer(True)

    def _drf_authorisation(self, msg: DrfProvisioningAuthorisation) -> Message:
        # 004 c4p s12: from this RO's DRF only, on behalf of the SHO it names (the DRF checked it)
        def answer(accepted: bool, reason: str | None = None) -> Message:
            return ProvisioningAuthorisationAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                                accepted=accepted, reason=reason)

        if msg.sender != self.drf_address:
            return answer(False, f"{msg.sender} is not this RO's DRF")
        if not msg.m2msimmobj:
            return answer(False, "empty M2MSIMMobj")
        self.db.put("authorisations", pcid=msg.pcid, sho_address=msg.sho_address, m2msimmobj=msg.m2msimmobj,
                    state=AUTHORISED, updated_at=time.time())
        self.db.delete("statuses", pcid=msg.pcid)
        return answer(True)

    # -- network-initiated replacement of the initial-access credential (5.1.3.8.4.3) -----------------
    def offer_access_replacement(self, pcid: str) -> AccessCredentialReplacementAccept:
        """The network initiates: offer the M2ME of the open session a new initial-access credential."""
        session = self.db.get("sessions", pcid=pcid)
        if session is None:
            raise Refused(self.address, f"access credential replacement for {pcid}", "no management session open")
        reply = self.request(AccessCredentialReplacementOffer(sender=self.address, recipient=session["m2me_address"],
                                                              pcid=pcid), AccessCredentialReplacementAccept)
        if not reply.accepted:
            raise Refused(f"M2ME {pcid}", "access credential replacement", reply.reason, reply)
        self._replacements[pcid] = {"storage_key_public": reply.storage_key_public,
                                    "authority_public": reply.authority_public}
        return reply

    def obtain_access_credential(self, pcid: str) -> float:
        """The CCIF issues the new credential (and updates the ICF); it is wrapped for the TRE.
        Returns the end of its lifetime."""
        offer = self._replacements.get(pcid)
        if offer is None or self.ccif_address is None:
            raise Refused(self.address, f"access credential for {pcid}",
                          "the M2ME accepted no replacement" if offer is None else "this DPF knows no CCIF")
        new = self.request(AccessCredentialRenewal(sender=self.address, recipient=self.ccif_address, pcid=pcid),
                           AccessCredentialRenewed)
        offer["sealed"] = seal_for_tre(AccessCredential(new.pcid, new.k, new.opc, new.amf, new.not_after),
                                       offer["storage_key_public"], offer["authority_public"])
        offer["not_after"] = new.not_after
        return new.not_after

    def deliver_access_credential(self, pcid: str) -> AccessCredentialInstalled:
        """Push the wrapped credential to the M2ME; its answer says whether the TRE installed it."""
        offer = self._replacements.pop(pcid, None)
        session = self.db.get("sessions", pcid=pcid)
        if offer is None or "sealed" not in offer or session is None:
            raise Refused(self.address, f"access credential delivery to {pcid}", "nothing obtained to deliver")
        sealed = offer["sealed"]
        return self.request(AccessCredentialDelivery(sender=self.address, recipient=session["m2me_address"],
                                                     pcid=pcid, public=sealed.public, duplicate=sealed.duplicate,
                                                     seed=sealed.seed, encryption_key=sealed.encryption_key,
                                                     not_after=offer["not_after"]), AccessCredentialInstalled)

    def _access_renewal(self, msg: AccessCredentialRenewalRequest) -> Message:
        # 5.1.3.8.4.3: from the M2ME of an open session; the CCIF issues, the DPF wraps for the TRE
        session = self.db.get("sessions", pcid=msg.pcid)
        if session is None or session["m2me_address"] != msg.sender:
            raise Refused(self.address, f"access credential renewal for {msg.pcid} from {msg.sender}",
                          "no management session with that M2ME")
        if self.ccif_address is None:
            raise Refused(self.address, f"access credential renewal for {msg.pcid}", "this DPF knows no CCIF")
        new = self.request(AccessCredentialRenewal(sender=self.address, recipient=self.ccif_address, pcid=msg.pcid),
                           AccessCredentialRenewed)
        sealed = seal_for_tre(AccessCredential(new.pcid, new.k, new.opc, new.amf, new.not_after),
                              msg.storage_key_public, msg.authority_public)
        return AccessCredentialDelivery(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                        public=sealed.public, duplicate=sealed.duplicate, seed=sealed.seed,
                                        encryption_key=sealed.encryption_key, not_after=new.not_after)

    def authorised_by(self, pcid: str) -> str | None:
        """The SHO the current authorisation is for (the DPF reports the status to it)."""
        row = self.db.get("authorisations", pcid=pcid)
        return row["sho_address"] if row else None

    def _status(self, msg: ProvisioningStatus) -> Message:
        # 000 s20: from the M2ME of an open session only
        session = self.db.get("sessions", pcid=msg.pcid)
        if session is None or session["m2me_address"] != msg.sender:
            raise Refused(self.address, f"provisioning status for {msg.pcid} from {msg.sender}",
                          "no management session with that M2ME")
        self.db.put("statuses", pcid=msg.pcid, success=msg.success, detail=msg.detail, reported_to=None,
                    received_at=time.time())
        return ProvisioningStatusAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid)

    def _discard_relay(self, msg: DiscardAcknowledgementRelay) -> Message:
        # 004 c4 s11: relay to the new SHO, filtering out what names the old SHO (its address, the IMSI)
        auth = self.db.get("authorisations", pcid=msg.pcid)
        if auth is None:
            raise Refused(self.address, f"discard acknowledgement for {msg.pcid}", "no new SHO authorised")
        self.request(DiscardConfirmation(sender=self.address, recipient=auth["sho_address"], pcid=msg.pcid,
                                         old_credentials_discarded=msg.acknowledged),
                     DiscardConfirmationAck)
        return DiscardConfirmationAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid)
