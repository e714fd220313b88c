"""The RO's and the SHO's authorisation rules, each pinned by the reason it gives.

Each test sends one message that breaks exactly one rule straight to the entity (DPF, DRF, SHO)
on a bus, and checks the refusal names that rule. Removing the rule's check makes its test fail
(scripts/mutate.sh checks this for every comparison in these handlers).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mcim_hil.network.bus import Bus, Entity, Refused
from mcim_hil.network.messages import (
    BootstrapRequest,
    DiscardAcknowledgementRelay,
    DiscardConfirmation,
    DiscardConfirmationAck,
    DownloadReceipt,
    M2MSIMMobjDownload,
    ManagementSessionOpen,
    Message,
    ProvisioningAuthorisation,
    ProvisioningAuthorisationAck,
    ProvisioningStatus,
    ProvisioningStatusAck,
    RegistrationRequest,
    RegistryQuery,
    SubscriberRegistration,
)
from mcim_hil.network.ro.dpf import AUTHORISED, DOWNLOADED, REFUSED_BY_M2ME, REPORTED, Dpf
from mcim_hil.network.ro.drf import Drf
from mcim_hil.network.sho import Sho
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

    def open_session(self, sho: str = SHO) -> None:
        self.send(ManagementSessionOpen(sender=M2ME, recipient=DPF, pcid=PCID, m2me_address=M2ME, sho_address=sho))

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


def test_the_sho_the_m2me_named_is_taken_while_the_registry_still_points_elsewhere(ro: Ro) -> None:
    """004 c4: the old SHO is still registered (with its own DPF) until the new one registers
    at step 14; the DPF check applies to the registered SHO, not to the one the M2ME named."""
    ro.register(sho=SHO, dpf="dpf.old-ro.example")
    ro.drf.trust_sho(OTHER_SHO)
    ro.open_session(sho=OTHER_SHO)
    assert ro.authorise(sho=OTHER_SHO).accepted
    assert ro.authorise(sho=SHO).reason == f"{PCID} is served by DPF dpf.old-ro.example"


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
        "accepted": accepted, "reason": None if accepted else "integrity check failed"})})


def sho_peer(ro: Ro) -> Scripted:
    return Scripted(ro.bus, SHO, {ProvisioningStatus: (ProvisioningStatusAck, {}),
                                  DiscardConfirmation: (DiscardConfirmationAck, {})})


def test_dpf_downloads_the_authorised_object_once(ro: Ro) -> None:
    device = m2me(ro)
    ro.register()
    ro.open_session()
    ro.authorise()
    assert ro.dpf.download(PCID).accepted
    assert [m.m2msimmobj for m in device.received] == [OBJECT]
    assert ro.dpf.authorisation_state(PCID) == DOWNLOADED
    with pytest.raises(Refused) as again:  # a second download needs a new authorisation
        ro.dpf.download(PCID)
    assert again.value.reason == f"authorisation is {DOWNLOADED}"
    assert len(device.received) == 1


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


# --- SHO: who may register an M2ME and report its status ------------------------------------------

@pytest.fixture
def sho() -> Sho:
    return Sho(Bus(), Store(), name="SHO B", address=SHO, plmn="00103", drf_address=DRF, dpf_address=DPF,
               pva_address="pva.sho-b.example")


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
