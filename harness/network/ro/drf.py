"""The RO's DRF: discovery and registration (000 steps 8-12; 004 c4 step 14).

The DRF keeps the registry PCID -> (DPF, SHO) that SHOs fill with ``SubscriberRegistration``
(the contract before the first attach, the new SHO after a change, 004 c4 step 14). From it
the DRF builds the bootstrap message (000 steps 9-10) and registers the M2ME at its SHO (step 12).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Iterable

from mcim_hil.network.bus import Bus, Entity, Refused
from mcim_hil.network.messages import (
    BootstrapAck,
    BootstrapCheck,
    BootstrapCheckResult,
    BootstrapMessage,
    BootstrapRequest,
    BootstrapRequestAck,
    DrfAuthorisationRequest,
    DrfProvisioningAuthorisation,
    Message,
    ProvisioningAuthorisationAck,
    RegistrationAck,
    RegistrationRequest,
    RegistryEntry,
    RegistryQuery,
    SubscriberRegistration,
    SubscriberRegistrationAck,
)
from mcim_hil.network.store import Store

# The MCIM application provisioning context the DRF hands out (000 s10): how the M2ME reaches
# the management server and what it will receive there.
MCIM_PROTOCOL = "OMA-DM 1.2"
MCIM_OBJECT = "M2MSIMMobj"
MCIM_OBJECT_FORMAT = "TNDS"  # OMA-TS-DM_TNDS: the management object serialised as XML


class Drf(Entity):
    """Discovery and registration function of the RO."""

    def __init__(self, bus: Bus, store: Store, *, address: str, icf_address: str,
                 trusted_shos: Iterable[str] | None = None) -> None:
        super().__init__(bus, address)
        self.icf_address = icf_address  # bootstrap requests come from the RO's own ICF only
        # the SHOs the RO has agreements with; None: any SHO registering itself
        self.trusted_shos = set(trusted_shos) if trusted_shos is not None else None
        self.db = store.entity("drf")
        self.db.define("registry", {"pcid": "TEXT", "sho_address": "TEXT", "sho_plmn": "TEXT",
                                    "dpf_address": "TEXT", "sho_verify_key": "BLOB",
                                    "m2m_application_context": "JSON", "registered_at": "REAL"},
                       "pcid")
        self.db.define("bootstraps", {"pcid": "TEXT", "ip_address": "TEXT", "state": "TEXT",
                                      "token": "SECRET", "updated_at": "REAL"}, "pcid")
        self.on(SubscriberRegistration, self._subscriber_registration)
        self.on(BootstrapRequest, self._bootstrap_request)
        self.on(RegistryQuery, self._registry_query)
        self.on(DrfAuthorisationRequest, self._authorisation_request)
        self.on(BootstrapCheck, self._bootstrap_check)

    def trust_sho(self, address: str) -> None:
        if self.trusted_shos is not None:
            self.trusted_shos.add(address)

    def registry_entry(self, pcid: str) -> dict | None:
        return self.db.get("registry", pcid=pcid)

    def bootstrap_state(self, pcid: str) -> dict | None:
        return self.db.get("bootstraps", pcid=pcid)

    # -- steps 10-12 ---------------------------------------------------------------------------
    def bootstrap_message(self, pcid: str) -> BootstrapMessage:
        """000 s9: the bootstrap message for the M2ME, from the registry."""
        entry = self.db.get("registry", pcid=pcid)
        boot = self.db.get("bootstraps", pcid=pcid)
        if entry is None or boot is None:
            raise Refused(self.address, f"bootstrap of {pcid}",
                          "no SHO registered" if entry is None else "no bootstrap request from the ICF")
        context = {
            "management_server": entry["dpf_address"],
            "protocol": MCIM_PROTOCOL,
            "management_object": MCIM_OBJECT,
            "object_format": MCIM_OBJECT_FORMAT,
            "sho_plmn": entry["sho_plmn"],
        }
        token = secrets.token_bytes(16)   # the DPF opens a session only for the holder of this
        self.db.update("bootstraps", {"pcid": pcid}, token=token)
        return BootstrapMessage(sender=self.address, recipient=boot["ip_address"], pcid=pcid,
                                dpf_address=entry["dpf_address"], sho_address=entry["sho_address"],
                                mcim_provisioning_context=context,
                                m2m_application_context=dict(entry["m2m_application_context"] or {}),
                                sho_verify_key=entry["sho_verify_key"], bootstrap_token=token)

    def send_bootstrap(self, pcid: str) -> BootstrapAck:
        """000 s10: send the bootstrap message to the M2ME at its IP address; it bootstraps (s11)."""
        ack = self.request(self.bootstrap_message(pcid), BootstrapAck)
        self.db.update("bootstraps", {"pcid": pcid}, state="bootstrapped" if ack.accepted else "refused",
                       updated_at=time.time())
        if not ack.accepted:
            raise Refused(f"M2ME {pcid}", "bootstrap", ack.reason, ack)
        return ack

    def register_at_sho(self, pcid: str) -> RegistrationAck:
        """000 s12: register the M2ME for connection to its SHO's network."""
        entry = self.db.get("registry", pcid=pcid)
        boot = self.db.get("bootstraps", pcid=pcid)
        if entry is None or boot is None:
            raise Refused(self.address, f"registration of {pcid}",
                          "no SHO registered" if entry is None else "the M2ME has not bootstrapped")
        ack = self.request(RegistrationRequest(sender=self.address, recipient=entry["sho_address"],
                                               pcid=pcid, m2me_address=boot["ip_address"]),
                           RegistrationAck)
        self.db.update("bootstraps", {"pcid": pcid},
                       state="registered" if ack.accepted else "registration refused",
                       updated_at=time.time())
        if not ack.accepted:
            raise Refused(entry["sho_address"], f"registration of {pcid}", ack.reason, ack)
        return ack

    # -- handlers --------------------------------------------------------------------------------
    def _subscriber_registration(self, msg: SubscriberRegistration) -> Message:
        def answer(accepted: bool, reason: str | None = None) -> Message:
            return SubscriberRegistrationAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                             accepted=accepted, reason=reason)

        if msg.sender != msg.sho_address:
            return answer(False, f"{msg.sender} cannot register a subscription for {msg.sho_address}")
        if self.trusted_shos is not None and msg.sender not in self.trusted_shos:
            return answer(False, f"no agreement with SHO {msg.sender}")
        self.db.put("registry", pcid=msg.pcid, sho_address=msg.sho_address, sho_plmn=msg.sho_plmn,
                    dpf_address=msg.dpf_address, sho_verify_key=msg.sho_verify_key,
                    m2m_application_context=dict(msg.m2m_application_context), registered_at=time.time())
        return answer(True)

    def _bootstrap_request(self, msg: BootstrapRequest) -> Message:
        # 000 s9: look up the DPF and SHO that have a contract with the M2ME
        if msg.sender != self.icf_address:
            return BootstrapRequestAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                       accepted=False, reason=f"{msg.sender} is not this RO's ICF")
        entry = self.db.get("registry", pcid=msg.pcid)
        accepted = entry is not None
        if accepted:
            self.db.put("bootstraps", pcid=msg.pcid, ip_address=msg.ip_address, state="pending",
                        updated_at=time.time())
        return BootstrapRequestAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                   accepted=accepted,
                                   reason=None if accepted else "no SHO has a contract for this PCID")

    def _authorisation_request(self, msg: DrfAuthorisationRequest) -> Message:
        # 004 c4p s12: the SHO registered for the M2ME authorises the DRF to authorise its DPF
        def answer(accepted: bool, reason: str | None = None) -> Message:
            return ProvisioningAuthorisationAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                                accepted=accepted, reason=reason)

        entry = self.db.get("registry", pcid=msg.pcid)
        if entry is None or entry["sho_address"] != msg.sender:
            holder = entry["sho_address"] if entry else "none"
            return answer(False, f"{msg.sender} is not the SHO registered for {msg.pcid} (registered: {holder})")
        ack = self.request(DrfProvisioningAuthorisation(sender=self.address, recipient=entry["dpf_address"],
                                                        pcid=msg.pcid, sho_address=msg.sender,
                                                        m2msimmobj=msg.m2msimmobj),
                           ProvisioningAuthorisationAck)
        return answer(ack.accepted, ack.reason)

    def _bootstrap_check(self, msg: BootstrapCheck) -> Message:
        # the DPF asks before it opens a management session: only for the M2ME this DRF bootstrapped
        def answer(ok: bool, reason: str | None = None) -> Message:
            return BootstrapCheckResult(sender=self.address, recipient=msg.sender, pcid=msg.pcid, bootstrapped=ok,
                                        reason=reason)

        entry = self.db.get("registry", pcid=msg.pcid)
        boot = self.db.get("bootstraps", pcid=msg.pcid)
        if entry is None or entry["dpf_address"] != msg.sender:
            return answer(False, f"{msg.sender} is not the DPF registered for {msg.pcid}")
        if boot is None or boot["state"] not in ("bootstrapped", "registered") or not boot["token"]:
            return answer(False, f"the DRF has not bootstrapped {msg.pcid}")
        if not hmac.compare_digest(boot["token"], msg.bootstrap_token):
            return answer(False, "not the bootstrap token the DRF gave that M2ME")
        return answer(True)

    def _registry_query(self, msg: RegistryQuery) -> Message:
        entry = self.db.get("registry", pcid=msg.pcid)
        if entry is None:
            return RegistryEntry(sender=self.address, recipient=msg.sender, pcid=msg.pcid, found=False)
        return RegistryEntry(sender=self.address, recipient=msg.sender, pcid=msg.pcid, found=True,
                             sho_address=entry["sho_address"], dpf_address=entry["dpf_address"])
