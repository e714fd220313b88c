"""The whole network end to end, with the M2ME's TRE a real TPM (swtpm through the TPM driver):
seed 000 (initial provisioning, 21 steps), then seed 004's 4th change (re-provisioning from a new
SHO via the old one, integrity from the IVF)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mcim_hil.drivers.tpm import Tpm
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.network.attestation import tpm_public_key
from mcim_hil.network.bus import Refused
from mcim_hil.network.factory import build_network
from mcim_hil.network.messages import (
    CAUSE_IMSI_UNKNOWN,
    ConnectAccept,
    DiscardConfirmationAck,
    ProvisioningStatusAck,
    ReprovisioningAck,
    ReprovisioningInstruction,
    SubscriptionChangeAck,
    SubscriptionChangeRequest,
)
from mcim_hil.network.pva import ek_roots_from
from mcim_hil.network.sho import VIA_IVF, VIA_PVA
from mcim_hil.network.topology import Network, NetworkOptions
from mcim_hil.record import Record
from network_support import PCRS, SoftUsim, TpmM2me, reference_values

PLATFORM = "m2me-traffic-light-0001"
OWNER = "owner.m2me-subscriber.example"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Bench:
    net: Network
    m2me: TpmM2me
    pcid_usim: SoftUsim
    clock: Clock
    record: Record


@pytest.fixture
def bench() -> Iterator[Bench]:
    with Swtpm(shared_identity=True) as swtpm, Tpm.open(swtpm.tcti) as tpm:
        clock = Clock()
        record = Record()
        net = build_network(NetworkOptions(pcr_selection=PCRS), ":memory:", record,
                            ek_roots=ek_roots_from(str(p) for p in swtpm.ek_ca_certificates()), clock=clock)
        net.m2mes.publish_reference_values(reference_values())
        m2me = TpmM2me(net.bus, tpm, PLATFORM)
        made = net.m2mes.personalise(PLATFORM, tpm_public_key(m2me.ak_public))  # the factory
        m2me.pcid, m2me.pfc = made.pcid, made.pfc_der
        net.sho.add_contract(made.pcid, platform_id=PLATFORM)  # the owner's contract with SHO B
        net.sho.register_subscription_at_ro(made.pcid)
        yield Bench(net, m2me, SoftUsim(made.k, made.opc), clock, record)
        net.close()


def initial_provisioning(b: Bench) -> str:
    """Seed 000 steps 1-21; returns the MCIM's IMSI."""
    net, m2me = b.net, b.m2me
    m2me.attach(net.vno, m2me.pcid, b.pcid_usim)                     # s1-s6
    assert isinstance(m2me.connect(net.addresses.icf), ConnectAccept)  # s7
    net.ro.icf.request_bootstrap(m2me.pcid)                           # s8-s9
    net.ro.drf.send_bootstrap(m2me.pcid)                              # s10-s11
    m2me.open_session()                                               # s11: ready for the DPF
    net.ro.drf.register_at_sho(m2me.pcid)                             # s12
    outcome = net.sho.request_validation(m2me.pcid, issue_to_ivf=True)  # s13-s15 (004 c3 s8-s10: to the IVF)
    assert outcome.passed, outcome.result.summary()
    net.sho.build_m2msimmobj(m2me.pcid)                               # s16
    net.sho.authorise_provisioning(m2me.pcid)                         # s17
    net.ro.dpf.download(m2me.pcid)                                    # s18
    mcim = m2me.provision()                                           # s19
    assert isinstance(m2me.report(True), ProvisioningStatusAck)       # s20
    net.ro.dpf.report_status(m2me.pcid)                               # s21
    return mcim.imsi


def test_initial_provisioning_gives_an_mcim_the_sho_authenticates(bench: Bench) -> None:
    net, m2me = bench.net, bench.m2me
    imsi = initial_provisioning(bench)
    assert imsi.startswith(net.sho.plmn) and imsi != m2me.pcid
    assert net.sho.subscriber(imsi)["state"] == "active"
    assert net.sho.contract(m2me.pcid)["state"] == "provisioned"
    validation = net.pva.validations(PLATFORM)[-1]
    assert validation["passed"] and validation["integrity_checked"]
    # the IVF has the integrity result the PVA issued (seed 004, 3rd change, step 10)
    stored = net.ivf.result(PLATFORM)
    assert stored["passed"] and sorted(stored["validated_components"]) == ["agent", "bootloader", "firmware"]
    # the M2ME now attaches with its MCIM: the VNO routes the IMSI to the SHO's AuC
    assert m2me.mcim is not None
    net.vno.detach(m2me.pcid)
    m2me.attach(net.vno, imsi, SoftUsim(m2me.mcim.k, m2me.mcim.opc))
    sources = {(m["kind"], m["recipient"]) for m in bench.record.messages()}
    assert ("AuthDataRequest", net.addresses.sho) in sources
    # the M2ME's messages passed the record with their endpoints, and no key was written
    text = bench.record.to_json()
    for secret in (m2me.mcim.k, m2me.mcim.opc):
        assert secret.hex() not in text and secret.hex().upper() not in text


def test_an_m2me_that_measured_another_firmware_gets_no_mcim(bench: Bench) -> None:
    net, m2me = bench.net, bench.m2me
    net.m2mes.publish_reference_values({"firmware": b"\x00" * 32})  # the supplier expects another build
    m2me.attach(net.vno, m2me.pcid, bench.pcid_usim)
    m2me.connect(net.addresses.icf)
    net.ro.icf.request_bootstrap(m2me.pcid)
    net.ro.drf.send_bootstrap(m2me.pcid)
    net.ro.drf.register_at_sho(m2me.pcid)
    outcome = net.sho.request_validation(m2me.pcid)
    assert not outcome.passed
    assert [c.name for c in outcome.result.failed] == ["reference_values"]
    assert "firmware" in outcome.result.check("reference_values").detail
    with pytest.raises(Refused, match="the validation failed"):
        net.sho.build_m2msimmobj(m2me.pcid)


def change_of_sho(b: Bench, old_imsi: str) -> str:
    """Seed 004, 4th change (5.1.3.8.4.2): re-provisioning from the new SHO via the old SHO's connectivity."""
    net, m2me = b.net, b.m2me
    assert net.nsho is not None and m2me.mcim is not None
    net.vno.detach(m2me.pcid)
    m2me.attach(net.vno, old_imsi, SoftUsim(m2me.mcim.k, m2me.mcim.opc))  # connectivity of the old SHO
    change = net.bus.request(SubscriptionChangeRequest(sender=OWNER, recipient=net.addresses.nsho,
                                                       pcid=m2me.pcid, platform_id=PLATFORM,
                                                       m2me_address=m2me.address,
                                                       old_sho_address=net.addresses.sho))  # s1
    assert isinstance(change, SubscriptionChangeAck) and change.accepted
    told = net.bus.request(ReprovisioningInstruction(sender=OWNER, recipient=m2me.address, pcid=m2me.pcid,
                                                     new_sho_address=net.addresses.nsho,
                                                     new_sho_verify_key=change.sho_verify_key))  # s2
    assert isinstance(told, ReprovisioningAck)
    m2me.open_session()  # names the new SHO to the DPF
    outcome = net.nsho.request_validation(m2me.pcid, via_ivf=True)  # s3-s5
    assert outcome.passed, outcome.result.summary()
    b.record.meta["change_outcome"] = outcome.source
    net.nsho.build_m2msimmobj(m2me.pcid)
    net.nsho.authorise_provisioning(m2me.pcid)  # s6
    net.ro.dpf.download(m2me.pcid)  # s7: the whole object, checked whole
    ack = m2me.discard_at(net.addresses.sho, old_imsi)  # s8-s10
    assert ack.acknowledged
    assert isinstance(m2me.relay_discard(ack), DiscardConfirmationAck)  # s11
    new = m2me.provision()  # s12
    m2me.report(True)
    net.ro.dpf.report_status(m2me.pcid)  # s13
    net.nsho.register_subscription_at_ro(m2me.pcid)  # s14
    return new.imsi


def test_change_of_sho_takes_integrity_from_the_ivf(bench: Bench) -> None:
    net, m2me = bench.net, bench.m2me
    assert net.nsho is not None
    old_imsi = initial_provisioning(bench)
    validations_before = len(net.pva.validations(PLATFORM))
    new_imsi = change_of_sho(bench, old_imsi)
    assert bench.record.meta["change_outcome"] == VIA_IVF
    # the PVA checked authenticity only this time; integrity came from the IVF
    latest = net.pva.validations(PLATFORM)[validations_before:]
    assert [v["integrity_checked"] for v in latest] == [0]
    assert new_imsi.startswith(net.nsho.plmn)
    assert net.nsho.subscriber(new_imsi)["state"] == "active"
    assert net.sho.subscriber(old_imsi)["state"] == "discarded"
    assert net.nsho.old_credentials_discarded(m2me.pcid)
    assert net.ro.drf.registry_entry(m2me.pcid)["sho_address"] == net.addresses.nsho
    # the relay to the new SHO names neither the old SHO nor the old IMSI (privacy filtering, s11)
    relayed = [m for m in bench.record.messages() if m["kind"] == "DiscardConfirmation"][0]
    assert old_imsi not in str(relayed) and net.addresses.sho not in str(relayed)
    # the old MCIM no longer attaches; the new one does, through the new SHO's AuC
    net.vno.detach(old_imsi)
    old_card = SoftUsim(b"\x00" * 16, b"\x00" * 16)
    assert net.vno.attach(old_imsi, old_card.authenticate).reject_cause == CAUSE_IMSI_UNKNOWN
    assert m2me.mcim is not None and m2me.mcim.imsi == new_imsi
    m2me.attach(net.vno, new_imsi, SoftUsim(m2me.mcim.k, m2me.mcim.opc))


def test_expired_ivf_result_means_the_pva_validates_integrity_again(bench: Bench) -> None:
    net = bench.net
    assert net.nsho is not None
    old_imsi = initial_provisioning(bench)
    bench.clock.now += net.options.ivf_lifetime_s + 1
    change_of_sho(bench, old_imsi)
    assert bench.record.meta["change_outcome"] == VIA_PVA
    latest = net.pva.validations(PLATFORM)[-1]
    assert latest["integrity_checked"] and latest["passed"]
    inquiry = [m for m in bench.record.messages() if m["kind"] == "IntegrityInquiryResponse"][-1]
    assert inquiry["fields"]["available"] is False and "expired" in inquiry["fields"]["reason"]


def test_revoked_pfc_fails_validation_at_ocsp(bench: Bench) -> None:
    net, m2me = bench.net, bench.m2me
    net.m2mes.revoke(PLATFORM)
    m2me.attach(net.vno, m2me.pcid, bench.pcid_usim)
    m2me.connect(net.addresses.icf)
    net.ro.icf.request_bootstrap(m2me.pcid)
    net.ro.drf.send_bootstrap(m2me.pcid)
    net.ro.drf.register_at_sho(m2me.pcid)
    outcome = net.sho.request_validation(m2me.pcid)
    assert not outcome.passed
    assert [c.name for c in outcome.result.failed] == ["pfc_status_ocsp"]
    assert "revoked" in outcome.result.check("pfc_status_ocsp").detail
    assert net.sho.contract(m2me.pcid)["state"] == "validation failed"


def test_back_to_pristine_then_the_new_sho(bench: Bench) -> None:
    """Seed 004, 4th change, 5.1.3.8.4.3: the M2ME drops the old MCIM, attaches with its PCID again,
    and the RO's DRF now leads it to the new SHO."""
    net, m2me = bench.net, bench.m2me
    assert net.nsho is not None
    initial_provisioning(bench)
    change = net.bus.request(SubscriptionChangeRequest(sender=OWNER, recipient=net.addresses.nsho, pcid=m2me.pcid,
                                                       platform_id=PLATFORM))  # s1
    assert isinstance(change, SubscriptionChangeAck)
    net.nsho.register_subscription_at_ro(m2me.pcid)  # the new SHO's contract, for the DRF to find (s8)
    m2me.mcim = None  # s3: back to the pristine state
    m2me.attach(net.vno, m2me.pcid, bench.pcid_usim)  # s4-s6
    m2me.connect(net.addresses.icf)  # s7
    net.ro.icf.request_bootstrap(m2me.pcid)
    net.ro.drf.send_bootstrap(m2me.pcid)  # s8: the DRF aids the M2ME to find the new SHO
    assert m2me.sho_address == net.addresses.nsho and m2me.sho_verify_key == net.nsho.verify_key
    m2me.open_session()
    net.ro.drf.register_at_sho(m2me.pcid)
    outcome = net.nsho.request_validation(m2me.pcid, via_ivf=True)  # s9-s11
    assert outcome.passed and outcome.source == VIA_IVF
    net.nsho.build_m2msimmobj(m2me.pcid)
    net.nsho.authorise_provisioning(m2me.pcid)  # s12
    net.ro.dpf.download(m2me.pcid)  # s13
    new = m2me.provision()  # s14
    m2me.report(True)
    net.ro.dpf.report_status(m2me.pcid)  # s15
    assert new.imsi.startswith(net.nsho.plmn)
    assert net.nsho.subscriber(new.imsi)["state"] == "active"
