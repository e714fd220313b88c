"""The RO's and the SHO's authorisation rules, each pinned by the reason it gives.

Each test sends one message that breaks exactly one rule straight to the entity (DPF, DRF, SHO)
on a bus, and checks the refusal names that rule. Removing the rule's check makes its test fail
(scripts/mutate.sh checks this for every comparison in these handlers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from mcim_hil.network.bus import Bus, Entity, Refused
from mcim_hil.network.messages import (
    AuthDataReject,
    AuthDataRequest,
    BootstrapAck,
    BootstrapMessage,
    BootstrapRequest,
    CredentialsDiscarded,
    DiscardAcknowledgement,
    DiscardAcknowledgementRelay,
    DiscardConfirmation,
    DiscardConfirmationAck,
    DownloadReceipt,
    DrfAuthorisationRequest,
    M2MSIMMobjDownload,
    ManagementSessionOpen,
    Message,
    ProvisioningAuthorisation,
    ProvisioningAuthorisationAck,
    ProvisioningStatus,
    ProvisioningStatusAck,
    RegistrationAck,
    RegistrationRequest,
    RegistryQuery,
    SubscriberRegistration,
)
from mcim_hil.network.ro.dpf import AUTHORISED, DOWNLOADED, REFUSED_BY_M2ME, REPORTED, Dpf
from mcim_hil.network.ro.drf import Drf
from mcim_hil.aka.auc import AuC
from mcim_hil.network.sho import ACTIVE, DISCARDED, PENDING, Sho
from mcim_hil.network.store import Store

PCID = "001020000000001"
SHO = "sho.sho-b.example"
OTHER_SHO = "sho.sho-c.example"
DPF = "dpf.ro.example"
DRF = "drf.ro.example"
ICF = "icf.ro.example"
M2ME = "10.0.0.7"
OBJECT = b"<MgmtTree>sealed MCIM</MgmtTree>"


@dataclass
class Ro:
    bus: Bus
    drf: Drf
    dpf: Dpf

    def send(self, message: Message) -> Message:
        return self.bus.request(message)

    def register(self, sho: str = SHO, dpf: str = DPF) -> None:
        ack = self.send(SubscriberRegistration(sender=sho, recipient=DRF, pcid=PCID, sho_address=sho,
                                               sho_plmn="00103", dpf_address=dpf, sho_verify_key=b"k" * 65))
        assert ack.accepted, ack.reason

    def bootstrap(self) -> bytes:
        """000 s8-s11 through the DRF's own handlers; the token the DPF will ask the DRF about."""
        if self.drf.registry_entry(PCID) is None:
            self.register()      # the DRF bootstraps only an M2ME some SHO has a contract for
        assert self.send(BootstrapRequest(sender=ICF, recipient=DRF, pcid=PCID, ip_address=M2ME)).accepted
        if self.bus.is_registered(M2ME):        # a scripted M2ME of the test answers it
            self.drf.send_bootstrap(PCID)
        else:
            self.bus.register(M2ME, lambda msg: BootstrapAck(sender=M2ME, recipient=msg.sender, pcid=PCID,
                                                             accepted=True))
            try:
                self.drf.send_bootstrap(PCID)
            finally:
                self.bus.unregister(M2ME)
        return self.drf.bootstrap_state(PCID)["token"]

    def open_session(self, sho: str = SHO) -> None:
        token = self.bootstrap()   # 004 c4 s2 / issue 7 §6: only for the M2ME the DRF bootstrapped
        self.send(ManagementSessionOpen(sender=M2ME, recipient=DPF, pcid=PCID, m2me_address=M2ME, sho_address=sho,
                                        bootstrap_token=token))

    def authorise(self, sho: str = SHO, m2msimmobj: bytes = OBJECT) -> ProvisioningAuthorisationAck:
        reply = self.send(ProvisioningAuthorisation(sender=sho, recipient=DPF, pcid=PCID, m2msimmobj=m2msimmobj))
        assert isinstance(reply, ProvisioningAuthorisationAck)
        return reply


@pytest.fixture
def ro() -> Ro:
    bus, store = Bus(), Store()
    return Ro(bus, Drf(bus, store, address=DRF, icf_address=ICF, trusted_shos=[SHO]),
              Dpf(bus, store, address=DPF, drf_address=DRF))


# --- DPF: who may authorise a download --------------------------------------------------------

def test_dpf_takes_the_authorisation_of_the_registered_sho(ro: Ro) -> None:
    ro.register()
    ack = ro.authorise()
    assert (ack.accepted, ack.reason) == (True, None)
    assert ro.dpf.authorisation_state(PCID) == AUTHORISED


def test_dpf_takes_the_authorisation_of_the_sho_the_m2me_named(ro: Ro) -> None:
    ro.open_session(sho=OTHER_SHO)  # 004 c4 s2: the new SHO is not in the registry yet
    assert ro.authorise(sho=OTHER_SHO).accepted


def test_dpf_refuses_an_sho_neither_registered_nor_named(ro: Ro) -> None:
    ro.register()
    ro.open_session()
    ack = ro.authorise(sho=OTHER_SHO)
    assert not ack.accepted
    assert ack.reason == f"{OTHER_SHO} is not the SHO registered for {PCID} (registered: {SHO})"
    assert ro.dpf.authorisation_state(PCID) is None


def test_dpf_refuses_an_sho_when_nobody_is_registered(ro: Ro) -> None:
    ack = ro.authorise()
    assert not ack.accepted and ack.reason.endswith("(registered: none)")


def test_dpf_refuses_an_authorisation_for_an_m2me_another_dpf_serves(ro: Ro) -> None:
    ro.register(dpf="dpf.other-ro.example")
    ack = ro.authorise()
    assert not ack.accepted
    assert ack.reason == f"{PCID} is served by DPF dpf.other-ro.example"
    assert ro.dpf.authorisation_state(PCID) is None


def test_a_session_is_refused_while_the_registry_names_another_dpf(ro: Ro) -> None:
    """Issue 7 §6: the DPF opens a management session only for an M2ME whose registry entry
    names this DPF; the registered SHO's authorisation is refused for the same reason."""
    ro.register(sho=SHO, dpf="dpf.old-ro.example")
    ro.drf.trust_sho(OTHER_SHO)
    with pytest.raises(Refused) as refused:
        ro.open_session(sho=OTHER_SHO)
    assert refused.value.reason == f"{DPF} is not the DPF registered for {PCID}"
    assert ro.authorise(sho=SHO).reason == f"{PCID} is served by DPF dpf.old-ro.example"


def test_the_sho_the_m2me_named_stands_on_its_session_whatever_dpf_the_registry_names_later(ro: Ro) -> None:
    """The DPF-in-the-registry rule is the registered SHO's: an SHO the M2ME named (004 c4 s2) is
    taken on the session, which the DRF confirmed for this DPF when it opened."""
    ro.register()
    ro.open_session(sho=OTHER_SHO)
    ro.register(dpf="dpf.other-ro.example")     # the registered SHO points the M2ME elsewhere since
    assert ro.authorise(sho=SHO).reason == f"{PCID} is served by DPF dpf.other-ro.example"
    ack = ro.authorise(sho=OTHER_SHO)
    assert (ack.accepted, ack.reason) == (True, None)
    assert ro.dpf.authorisation_state(PCID) == AUTHORISED


def test_dpf_refuses_an_empty_m2msimmobj(ro: Ro) -> None:
    ro.register()
    ack = ro.authorise(m2msimmobj=b"")
    assert (ack.accepted, ack.reason) == (False, "empty M2MSIMMobj")
    assert ro.dpf.authorisation_state(PCID) is None


# --- DPF: who may report a provisioning status ------------------------------------------------

def test_dpf_takes_the_status_from_the_m2me_of_the_session(ro: Ro) -> None:
    ro.open_session()
    reply = ro.send(ProvisioningStatus(sender=M2ME, recipient=DPF, pcid=PCID, success=True))
    assert isinstance(reply, ProvisioningStatusAck)
    assert ro.dpf.status(PCID)["success"] == 1


@pytest.mark.parametrize("session", [True, False], ids=["other sender", "no session"])
def test_dpf_refuses_a_status_from_outside_the_session(ro: Ro, session: bool) -> None:
    if session:
        ro.open_session()
    with pytest.raises(Refused) as refused:
        ro.send(ProvisioningStatus(sender="10.6.6.6", recipient=DPF, pcid=PCID, success=True))
    assert refused.value.reason == "no management session with that M2ME"
    assert ro.dpf.status(PCID) is None


def test_dpf_downloads_nothing_without_a_session_or_an_authorisation(ro: Ro) -> None:
    ro.register()
    ro.authorise()
    with pytest.raises(Refused, match="no management session open"):
        ro.dpf.download(PCID)
    ro.dpf.db.delete("authorisations", pcid=PCID)
    ro.open_session()
    with pytest.raises(Refused, match="no authorised M2MSIMMobj"):
        ro.dpf.download(PCID)


class Scripted(Entity):
    """A peer that answers each message kind with a canned reply and keeps what it received."""

    def __init__(self, bus: Bus, address: str, answers: dict[type, dict]) -> None:
        super().__init__(bus, address)
        self.received: list[Message] = []
        for kind, (reply, fields) in answers.items():
            self.on(kind, self._answer(reply, fields))

    def _answer(self, reply: type, fields: dict):
        def handle(msg: Message) -> Message:
            self.received.append(msg)
            return reply(sender=self.address, recipient=msg.sender, pcid=msg.pcid, **fields)
        return handle


def m2me(ro: Ro, *, accepted: bool = True) -> Scripted:
    return Scripted(ro.bus, M2ME, {M2MSIMMobjDownload: (DownloadReceipt, {
        "accepted": accepted, "reason": None if accepted else "integrity check failed"}),
        BootstrapMessage: (BootstrapAck, {"accepted": True})})


def sho_peer(ro: Ro) -> Scripted:
    return Scripted(ro.bus, SHO, {ProvisioningStatus: (ProvisioningStatusAck, {}),
                                  DiscardConfirmation: (DiscardConfirmationAck, {})})


def test_dpf_downloads_the_authorised_object_once(ro: Ro) -> None:
    device = m2me(ro)
    ro.register()
    ro.open_session()
    ro.authorise()
    assert ro.dpf.download(PCID).accepted
    downloads = [m for m in device.received if isinstance(m, M2MSIMMobjDownload)]
    assert [m.m2msimmobj for m in downloads] == [OBJECT]
    assert ro.dpf.authorisation_state(PCID) == DOWNLOADED
    with pytest.raises(Refused) as again:  # a second download needs a new authorisation
        ro.dpf.download(PCID)
    assert again.value.reason == f"authorisation is {DOWNLOADED}"
    assert len([m for m in device.received if isinstance(m, M2MSIMMobjDownload)]) == 1


def test_dpf_records_an_m2me_refusal_and_raises_its_reason(ro: Ro) -> None:
    m2me(ro, accepted=False)
    ro.register()
    ro.open_session()
    ro.authorise()
    with pytest.raises(Refused) as refused:
        ro.dpf.download(PCID)
    assert (refused.value.entity, refused.value.reason) == (f"M2ME {PCID}", "integrity check failed")
    assert ro.dpf.authorisation_state(PCID) == REFUSED_BY_M2ME


def test_dpf_reports_the_status_to_the_authorising_sho_only_once_both_exist(ro: Ro) -> None:
    sho = sho_peer(ro)
    ro.register()
    ro.open_session()
    with pytest.raises(Refused) as refused:
        ro.dpf.report_status(PCID)
    assert refused.value.reason == "the M2ME reported no status"
    ro.send(ProvisioningStatus(sender=M2ME, recipient=DPF, pcid=PCID, success=True, detail="installed"))
    with pytest.raises(Refused) as refused:
        ro.dpf.report_status(PCID)
    assert refused.value.reason == "no SHO authorised it"
    assert sho.received == []
    ro.authorise()
    ro.send(ProvisioningStatus(sender=M2ME, recipient=DPF, pcid=PCID, success=True, detail="installed"))
    ro.dpf.report_status(PCID)
    (report,) = sho.received
    assert (report.sender, report.success, report.detail) == (DPF, True, "installed")
    assert ro.dpf.status(PCID)["reported_to"] == SHO
    assert ro.dpf.authorisation_state(PCID) == REPORTED


def test_a_new_authorisation_forgets_the_previous_status(ro: Ro) -> None:
    ro.register()
    ro.open_session()
    ro.authorise()
    ro.send(ProvisioningStatus(sender=M2ME, recipient=DPF, pcid=PCID, success=False, detail="import failed"))
    ro.authorise()  # the SHO tries again: the old failure must not be reported for the new object
    assert ro.dpf.status(PCID) is None
    with pytest.raises(Refused, match="the M2ME reported no status"):
        ro.dpf.report_status(PCID)


def test_dpf_relays_a_discard_acknowledgement_to_the_new_sho_only(ro: Ro) -> None:
    sho = sho_peer(ro)
    relay = DiscardAcknowledgementRelay(sender=M2ME, recipient=DPF, pcid=PCID, imsi="001010000000009",
                                        acknowledged=True, old_sho_address=OTHER_SHO)
    with pytest.raises(Refused) as refused:
        ro.send(relay)
    assert refused.value.reason == "no new SHO authorised"
    ro.register()
    ro.authorise()
    assert isinstance(ro.send(relay), DiscardConfirmationAck)
    (confirmation,) = sho.received
    assert confirmation.old_credentials_discarded is True
    assert "001010000000009" not in repr(confirmation) and OTHER_SHO not in repr(confirmation)


# --- DRF: who may register and bootstrap --------------------------------------------------------

def test_drf_refuses_a_registration_on_behalf_of_another_sho(ro: Ro) -> None:
    ack = ro.send(SubscriberRegistration(sender=OTHER_SHO, recipient=DRF, pcid=PCID, sho_address=SHO,
                                         sho_plmn="00103", dpf_address=DPF, sho_verify_key=b"k"))
    assert (ack.accepted, ack.reason) == (False, f"{OTHER_SHO} cannot register a subscription for {SHO}")
    assert ro.drf.registry_entry(PCID) is None


def test_drf_refuses_an_sho_without_an_agreement(ro: Ro) -> None:
    ack = ro.send(SubscriberRegistration(sender=OTHER_SHO, recipient=DRF, pcid=PCID, sho_address=OTHER_SHO,
                                         sho_plmn="00104", dpf_address=DPF, sho_verify_key=b"k"))
    assert (ack.accepted, ack.reason) == (False, f"no agreement with SHO {OTHER_SHO}")
    assert ro.drf.registry_entry(PCID) is None
    ro.drf.trust_sho(OTHER_SHO)
    ro.register(sho=OTHER_SHO)
    assert ro.drf.registry_entry(PCID)["sho_address"] == OTHER_SHO


def test_drf_without_an_agreement_list_takes_any_sho_registering_itself() -> None:
    bus = Bus()
    drf = Drf(bus, Store(), address=DRF, icf_address=ICF)  # trusted_shos None: any SHO
    ack = bus.request(SubscriberRegistration(sender=OTHER_SHO, recipient=DRF, pcid=PCID, sho_address=OTHER_SHO,
                                             sho_plmn="00104", dpf_address=DPF, sho_verify_key=b"k"))
    assert (ack.accepted, ack.reason) == (True, None)
    assert drf.registry_entry(PCID)["sho_address"] == OTHER_SHO


def test_drf_takes_bootstrap_requests_from_its_own_icf_only(ro: Ro) -> None:
    ro.register()
    ack = ro.send(BootstrapRequest(sender="icf.other-ro.example", recipient=DRF, pcid=PCID, ip_address=M2ME))
    assert (ack.accepted, ack.reason) == (False, "icf.other-ro.example is not this RO's ICF")
    assert ro.drf.bootstrap_state(PCID) is None
    assert ro.send(BootstrapRequest(sender=ICF, recipient=DRF, pcid=PCID, ip_address=M2ME)).accepted


def test_drf_registry_answers_the_registered_dpf(ro: Ro) -> None:
    ro.register(dpf="dpf.x.example")
    entry = ro.send(RegistryQuery(sender=DPF, recipient=DRF, pcid=PCID))
    assert (entry.found, entry.sho_address, entry.dpf_address) == (True, SHO, "dpf.x.example")


def bootstrapped(ro: Ro) -> None:
    ro.register()
    ack = ro.send(BootstrapRequest(sender=ICF, recipient=DRF, pcid=PCID, ip_address=M2ME))
    assert (ack.accepted, ack.reason) == (True, None)


def test_drf_keeps_the_m2me_address_of_an_accepted_bootstrap_request(ro: Ro) -> None:
    bootstrapped(ro)
    state = ro.drf.bootstrap_state(PCID)
    assert (state["ip_address"], state["state"]) == (M2ME, "pending")


def test_drf_builds_no_bootstrap_message_without_registry_entry_and_bootstrap_request(ro: Ro) -> None:
    with pytest.raises(Refused) as refused:
        ro.drf.bootstrap_message(PCID)
    assert refused.value.reason == "no SHO registered"
    ro.register()
    with pytest.raises(Refused) as refused:
        ro.drf.bootstrap_message(PCID)
    assert refused.value.reason == "no bootstrap request from the ICF"
    bootstrapped(ro)
    message = ro.drf.bootstrap_message(PCID)
    assert (message.recipient, message.dpf_address, message.sho_address) == (M2ME, DPF, SHO)


@pytest.mark.parametrize("accepted", [True, False])
def test_drf_records_whether_the_m2me_took_its_bootstrap(ro: Ro, accepted: bool) -> None:
    Scripted(ro.bus, M2ME, {BootstrapMessage: (BootstrapAck, {"accepted": accepted,
                                                              "reason": None if accepted else "busy"})})
    bootstrapped(ro)
    if accepted:
        assert ro.drf.send_bootstrap(PCID).accepted
    else:
        with pytest.raises(Refused) as refused:
            ro.drf.send_bootstrap(PCID)
        assert (refused.value.entity, refused.value.reason) == (f"M2ME {PCID}", "busy")
    assert ro.drf.bootstrap_state(PCID)["state"] == ("bootstrapped" if accepted else "refused")


def test_drf_registers_at_the_sho_only_a_registered_and_bootstrapped_m2me(ro: Ro) -> None:
    with pytest.raises(Refused) as refused:
        ro.drf.register_at_sho(PCID)
    assert refused.value.reason == "no SHO registered"
    ro.register()
    with pytest.raises(Refused) as refused:
        ro.drf.register_at_sho(PCID)
    assert refused.value.reason == "the M2ME has not bootstrapped"


@pytest.mark.parametrize("accepted", [True, False])
def test_drf_records_the_sho_answer_to_a_registration(ro: Ro, accepted: bool) -> None:
    sho = Scripted(ro.bus, SHO, {RegistrationRequest: (RegistrationAck, {
        "accepted": accepted, "reason": None if accepted else "no contract for this M2ME"})})
    bootstrapped(ro)
    if accepted:
        assert ro.drf.register_at_sho(PCID).accepted
    else:
        with pytest.raises(Refused) as refused:
            ro.drf.register_at_sho(PCID)
        assert (refused.value.entity, refused.value.reason) == (SHO, "no contract for this M2ME")
    assert [m.m2me_address for m in sho.received] == [M2ME]
    assert ro.drf.bootstrap_state(PCID)["state"] == ("registered" if accepted else "registration refused")


# --- SHO: who may register an M2ME and report its status ------------------------------------------

NOW = 1_800_000_000.0


@pytest.fixture
def sho() -> Sho:
    return Sho(Bus(), Store(), name="SHO B", address=SHO, plmn="00103", drf_address=DRF, dpf_address=DPF,
               pva_address="pva.sho-b.example", clock=lambda: NOW)


def test_sho_takes_registrations_from_its_ro_drf_only(sho: Sho) -> None:
    sho.add_contract(PCID)
    ack = sho.bus.request(RegistrationRequest(sender="drf.other.example", recipient=SHO, pcid=PCID,
                                              m2me_address=M2ME))
    assert (ack.accepted, ack.reason) == (False, "drf.other.example is not the DRF of this SHO's RO")
    assert sho.contract(PCID)["m2me_address"] is None
    assert sho.bus.request(RegistrationRequest(sender=DRF, recipient=SHO, pcid=PCID, m2me_address=M2ME)).accepted
    assert sho.contract(PCID)["m2me_address"] == M2ME


def test_sho_refuses_a_registration_without_a_contract(sho: Sho) -> None:
    ack = sho.bus.request(RegistrationRequest(sender=DRF, recipient=SHO, pcid=PCID, m2me_address=M2ME))
    assert (ack.accepted, ack.reason) == (False, "no contract for this M2ME")


def test_sho_takes_the_provisioning_status_from_its_dpf_only(sho: Sho) -> None:
    sho.add_contract(PCID)
    before = sho.contract(PCID)["state"]
    with pytest.raises(Refused) as refused:
        sho.bus.request(ProvisioningStatus(sender="dpf.other.example", recipient=SHO, pcid=PCID, success=True))
    assert refused.value.reason == "not this SHO's DPF"
    assert sho.contract(PCID)["state"] == before


IMSI = "001030000000001"


def subscriber(sho: Sho, *, pcid: str = PCID, not_after: float = NOW + 3600, state: str = ACTIVE) -> None:
    k, opc = bytes(range(16)), bytes(range(16, 32))
    sho.db.put("subscribers", imsi=IMSI, pcid=pcid, k=k, opc=opc, auc=AuC(k, opc).to_dict(), state=state,
               not_after=not_after, m2msimmobj=OBJECT, updated_at=0.0)


@pytest.mark.parametrize("case", ["unknown IMSI", "IMSI of another M2ME"])
def test_sho_acknowledges_a_discard_only_for_its_imsi_of_that_m2me(sho: Sho, case: str) -> None:
    subscriber(sho, pcid=PCID if case == "unknown IMSI" else "001020000000999")
    imsi = "001039999999999" if case == "unknown IMSI" else IMSI
    ack = sho.bus.request(CredentialsDiscarded(sender=M2ME, recipient=SHO, pcid=PCID, imsi=imsi))
    assert isinstance(ack, DiscardAcknowledgement)
    assert (ack.acknowledged, ack.reason) == (False, "not an IMSI of this SHO for that M2ME")
    assert sho.subscriber(IMSI)["state"] == ACTIVE


def test_sho_stops_serving_a_discarded_imsi(sho: Sho) -> None:
    subscriber(sho)
    ack = sho.bus.request(CredentialsDiscarded(sender=M2ME, recipient=SHO, pcid=PCID, imsi=IMSI))
    assert (ack.acknowledged, ack.reason) == (True, None)
    assert sho.subscriber(IMSI)["state"] == DISCARDED
    reply = sho.bus.request(AuthDataRequest(sender="vno.example", recipient=SHO, imsi=IMSI))
    assert isinstance(reply, AuthDataReject) and reply.reason == "no active subscription for this IMSI"


@pytest.mark.parametrize("case", ["unknown", "expired"])
def test_sho_gives_no_vectors_for_an_unknown_or_expired_imsi(sho: Sho, case: str) -> None:
    if case == "expired":
        subscriber(sho, not_after=NOW - 0.5)
    reply = sho.bus.request(AuthDataRequest(sender="vno.example", recipient=SHO, imsi=IMSI))
    assert isinstance(reply, AuthDataReject) and reply.reason == "no active subscription for this IMSI"


def test_sho_gives_vectors_for_an_active_imsi_until_its_end_of_validity(sho: Sho) -> None:
    subscriber(sho, not_after=NOW)  # valid up to and including not_after
    reply = sho.bus.request(AuthDataRequest(sender="vno.example", recipient=SHO, imsi=IMSI))
    assert reply.kind == "AuthDataResponse" and len(reply.avs) == 1


def test_sho_contacts_only_an_m2me_it_has_a_contract_with_and_a_registered_address(sho: Sho) -> None:
    with pytest.raises(Refused) as refused:
        sho.retrieve_platform_credential(PCID)
    assert refused.value.reason == "no contract"
    sho.add_contract(PCID)
    with pytest.raises(Refused) as refused:
        sho.retrieve_platform_credential(PCID)
    assert refused.value.reason == "the M2ME is not registered yet"


@pytest.mark.parametrize("state", [None, ACTIVE])
def test_sho_authorises_only_a_pending_m2msimmobj(sho: Sho, state: str | None) -> None:
    sho.add_contract(PCID)
    if state is not None:
        subscriber(sho, state=state)  # already provisioned: nothing waits
    with pytest.raises(Refused) as refused:
        sho.authorise_provisioning(PCID)
    assert refused.value.reason == "no M2MSIMMobj waiting for this M2ME"


def test_sho_sends_the_pending_m2msimmobj_to_its_dpf(sho: Sho) -> None:
    dpf = Scripted(sho.bus, DPF, {ProvisioningAuthorisation: (ProvisioningAuthorisationAck, {"accepted": True})})
    sho.add_contract(PCID)
    subscriber(sho, state=PENDING)
    assert sho.authorise_provisioning(PCID).accepted
    assert [m.m2msimmobj for m in dpf.received] == [OBJECT]
    assert sho.contract(PCID)["state"] == "authorised"


def test_sho_keeps_its_state_when_the_dpf_refuses_the_authorisation(sho: Sho) -> None:
    Scripted(sho.bus, DPF, {ProvisioningAuthorisation: (ProvisioningAuthorisationAck, {
        "accepted": False, "reason": "empty M2MSIMMobj"})})
    sho.add_contract(PCID)
    subscriber(sho, state=PENDING)
    with pytest.raises(Refused) as refused:
        sho.authorise_provisioning(PCID)
    assert (refused.value.entity, refused.value.reason) == (DPF, "empty M2MSIMMobj")
    assert sho.contract(PCID)["state"] == "contracted"


@pytest.mark.parametrize("accepted", [True, False])
def test_sho_authorising_via_the_drf_asks_the_drf_and_never_the_dpf(sho: Sho, accepted: bool) -> None:
    """004 c4p s12: the SHO authorises the RO's DRF (which authorises its DPF); the DPF hears
    nothing from the SHO itself, and a refusal names the DRF."""
    drf = Scripted(sho.bus, DRF, {DrfAuthorisationRequest: (ProvisioningAuthorisationAck, {
        "accepted": accepted, "reason": None if accepted else "not the SHO registered"})})
    dpf = Scripted(sho.bus, DPF, {ProvisioningAuthorisation: (ProvisioningAuthorisationAck, {"accepted": True})})
    sho.add_contract(PCID)
    subscriber(sho, state=PENDING)
    if accepted:
        assert sho.authorise_provisioning(PCID, via_drf=True).accepted
    else:
        with pytest.raises(Refused) as refused:
            sho.authorise_provisioning(PCID, via_drf=True)
        assert (refused.value.entity, refused.value.reason) == (DRF, "not the SHO registered")
    assert [(type(m), m.m2msimmobj) for m in drf.received] == [(DrfAuthorisationRequest, OBJECT)]
    assert dpf.received == []
    assert sho.contract(PCID)["state"] == ("authorised" if accepted else "contracted")


def test_an_ivf_result_is_not_second_guessed_when_authenticity_already_failed() -> None:
    """A failed validation is a failure either way: no integrity round for a platform the PVA
    did not authenticate (sho._ivf_mismatch)."""
    from mcim_hil.network.attestation import Evidence, ValidationResult
    from mcim_hil.network.messages import IntegrityInquiryResponse
    from mcim_hil.network.sho import _ivf_mismatch

    inquiry = IntegrityInquiryResponse(sender="ivf", recipient=SHO, platform_id="p", available=True, passed=True,
                                       pcr_digest=bytes(32))
    evidence = Evidence(platform_id="p", ek_certificate=b"", ek_public=b"", ak_public=b"", activation_proof=b"",
                        quote_attest=b"", quote_signature=b"", pcr_values={}, measurements=[], pfc=b"",
                        storage_key_public=b"", certify_attest=b"", certify_signature=b"")
    failed = ValidationResult(passed=False, checks=[], validated_components=[], platform_id="p", pcr_digest=None,
                              storage_key_public=None, integrity_checked=False)
    assert _ivf_mismatch(inquiry, evidence, failed) is None
    passed = dataclasses.replace(failed, passed=True)
    assert _ivf_mismatch(inquiry, evidence, passed) == "no PCR digest to compare with the IVF's result"


def _ivf_case(inquiry_digest: bytes | None, result_digest: bytes | None, reported: dict[int, bytes]) -> str | None:
    from mcim_hil.network.attestation import Evidence, ValidationResult
    from mcim_hil.network.messages import IntegrityInquiryResponse
    from mcim_hil.network.sho import _ivf_mismatch

    inquiry = IntegrityInquiryResponse(sender="ivf", recipient=SHO, platform_id="p", available=True, passed=True,
                                       pcr_digest=inquiry_digest)
    evidence = Evidence(platform_id="p", ek_certificate=b"", ek_public=b"", ak_public=b"", activation_proof=b"",
                        quote_attest=b"", quote_signature=b"", pcr_values=reported, measurements=[], pfc=b"",
                        storage_key_public=b"", certify_attest=b"", certify_signature=b"")
    result = ValidationResult(passed=True, checks=[], validated_components=[], platform_id="p",
                              pcr_digest=result_digest, storage_key_public=None, integrity_checked=False)
    return _ivf_mismatch(inquiry, evidence, result)


def test_an_ivf_result_stands_only_for_the_pcr_state_the_tpm_quotes_now() -> None:
    import hashlib
    pcrs = {9: b"\x09" * 32, 8: b"\x08" * 32}
    quoted = hashlib.sha256(pcrs[8] + pcrs[9]).digest()  # in PCR order
    assert _ivf_case(quoted, quoted, pcrs) is None
    assert _ivf_case(None, quoted, pcrs) == "no PCR digest to compare with the IVF's result"
    assert _ivf_case(quoted, None, pcrs) == "no PCR digest to compare with the IVF's result"
    assert _ivf_case(bytes(32), quoted, pcrs) == (
        "the TPM quotes another PCR state than the one the IVF's result is about")
    assert _ivf_case(quoted, quoted, {8: pcrs[8], 9: bytes(32)}) == "the reported PCR values are not the quoted ones"
