"""Discovery and registration (seed 000 steps 7-12) and the DPF's authorisation rule (steps 17-21),
with the M2ME as a scripted endpoint on the bus (expected messages in, canned answers out)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mcim_hil.network.bus import Refused
from mcim_hil.network.factory import build_network
from mcim_hil.network.messages import (
    BootstrapAck,
    BootstrapMessage,
    ConnectAccept,
    ConnectRequest,
    DownloadReceipt,
    M2MSIMMobjDownload,
    ManagementSessionAccept,
    ManagementSessionOpen,
    Message,
    ProvisioningAuthorisation,
    ProvisioningAuthorisationAck,
    ProvisioningStatus,
    ProvisioningStatusAck,
)
from mcim_hil.network.pki import CertificateAuthority
from mcim_hil.network.topology import Network, NetworkOptions
from mcim_hil.record import Record
from network_support import SoftUsim


class ScriptedM2me:
    """Answers exactly the messages a test expects, in order; anything else fails the test."""

    def __init__(self, net: Network, address: str, pcid: str) -> None:
        self.address = address
        self.pcid = pcid
        self.expected: list[type[Message]] = []
        self.received: list[Message] = []
        net.bus.register(address, self.handle)

    def expect(self, *kinds: type[Message]) -> None:
        self.expected.extend(kinds)

    def handle(self, msg: Message) -> Message:
        assert self.expected, f"unexpected {msg.kind}"
        kind = self.expected.pop(0)
        assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg.kind}"
        self.received.append(msg)
        if isinstance(msg, BootstrapMessage):
            return BootstrapAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=True)
        if isinstance(msg, M2MSIMMobjDownload):
            return DownloadReceipt(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=True)
        raise AssertionError(f"no canned answer for {msg.kind}")


@pytest.fixture
def net() -> Iterator[Network]:
    ek_ca = CertificateAuthority.create("test EK CA")
    network = build_network(NetworkOptions(), ":memory:", Record(), ek_roots=[ek_ca.certificate])
    yield network
    network.close()


def attached_m2me(net: Network, platform_id: str = "platform-1", *, contract: bool = True) -> ScriptedM2me:
    made = net.m2mes.personalise(platform_id, ec.generate_private_key(ec.SECP256R1()).public_key())
    if contract:
        net.sho.add_contract(made.pcid, platform_id=platform_id)
        net.sho.register_subscription_at_ro(made.pcid)
    result = net.vno.attach(made.pcid, SoftUsim(made.k, made.opc).authenticate)
    assert result.accepted and result.ip_address
    m2me = ScriptedM2me(net, result.ip_address, made.pcid)
    reply = net.bus.request(ConnectRequest(sender=m2me.address, recipient=net.addresses.icf, pcid=made.pcid,
                                           ip_address=m2me.address))  # 000 s7
    assert isinstance(reply, ConnectAccept)
    return m2me


def bootstrapped(net: Network, m2me: ScriptedM2me) -> bytes:
    """000 s8-s11; the token the DPF asks for when the M2ME opens its session."""
    net.ro.icf.request_bootstrap(m2me.pcid)
    m2me.expect(BootstrapMessage)
    net.ro.drf.send_bootstrap(m2me.pcid)
    return m2me.received[-1].bootstrap_token


def test_bootstrap_message_names_dpf_sho_and_contexts(net: Network) -> None:
    m2me = attached_m2me(net)
    net.ro.icf.request_bootstrap(m2me.pcid)  # 000 s8 (and s9 at the DRF)
    m2me.expect(BootstrapMessage)
    net.ro.drf.send_bootstrap(m2me.pcid)  # 000 s10, the M2ME bootstraps (s11)
    boot = m2me.received[0]
    assert isinstance(boot, BootstrapMessage)
    assert boot.sender == net.addresses.drf and boot.recipient == m2me.address
    assert boot.dpf_address == net.addresses.dpf
    assert boot.sho_address == net.addresses.sho
    assert boot.sho_verify_key == net.sho.verify_key
    assert boot.mcim_provisioning_context["management_server"] == net.addresses.dpf
    assert boot.mcim_provisioning_context["management_object"] == "M2MSIMMobj"
    assert boot.mcim_provisioning_context["sho_plmn"] == net.options.sho_plmn
    assert boot.m2m_application_context == {"m2m_operator": "SHO B"}
    assert net.ro.drf.bootstrap_state(m2me.pcid)["state"] == "bootstrapped"


def test_drf_registers_the_m2me_at_its_sho(net: Network) -> None:
    m2me = attached_m2me(net)
    net.ro.icf.request_bootstrap(m2me.pcid)
    m2me.expect(BootstrapMessage)
    net.ro.drf.send_bootstrap(m2me.pcid)
    ack = net.ro.drf.register_at_sho(m2me.pcid)  # 000 s12
    assert ack.accepted and ack.sender == net.addresses.sho
    contract = net.sho.contract(m2me.pcid)
    assert contract["state"] == "registered" and contract["m2me_address"] == m2me.address
    kinds = [(m["kind"], m["sender"], m["recipient"]) for m in net.record.messages()]
    assert ("RegistrationRequest", net.addresses.drf, net.addresses.sho) in kinds


def test_no_contract_no_bootstrap(net: Network) -> None:
    m2me = attached_m2me(net, contract=False)
    with pytest.raises(Refused, match="no SHO has a contract"):
        net.ro.icf.request_bootstrap(m2me.pcid)
    with pytest.raises(Refused, match="no SHO registered"):
        net.ro.drf.send_bootstrap(m2me.pcid)


def test_sho_without_agreement_cannot_register_subscriptions(net: Network) -> None:
    net.ro.drf.trusted_shos = {net.addresses.sho}
    assert net.nsho is not None
    net.nsho.add_contract("001020000000042")
    with pytest.raises(Refused, match="no agreement"):
        net.nsho.register_subscription_at_ro("001020000000042")


def authorise(net: Network, sender: str, pcid: str, document: bytes = b"<MgmtTree/>") -> ProvisioningAuthorisationAck:
    reply = net.bus.request(ProvisioningAuthorisation(sender=sender, recipient=net.addresses.dpf, pcid=pcid,
                                                      m2msimmobj=document))
    assert isinstance(reply, ProvisioningAuthorisationAck)
    return reply


def test_dpf_refuses_an_authorisation_not_from_the_registered_sho(net: Network) -> None:
    m2me = attached_m2me(net)
    token = bootstrapped(net, m2me)
    refused = authorise(net, net.addresses.nsho, m2me.pcid)
    assert not refused.accepted
    assert "not the SHO registered" in (refused.reason or "")
    assert net.ro.dpf.authorisation_state(m2me.pcid) is None
    # the registered SHO's authorisation is taken, and only its object is downloaded
    assert authorise(net, net.addresses.sho, m2me.pcid, b"<MgmtTree>sho-b</MgmtTree>").accepted
    session = net.bus.request(ManagementSessionOpen(sender=m2me.address, recipient=net.addresses.dpf,
                                                    pcid=m2me.pcid, m2me_address=m2me.address,
                                                    sho_address=net.addresses.sho, bootstrap_token=token))
    assert isinstance(session, ManagementSessionAccept)
    m2me.expect(M2MSIMMobjDownload)
    net.ro.dpf.download(m2me.pcid)  # 000 s18
    download = m2me.received[-1]
    assert isinstance(download, M2MSIMMobjDownload)
    assert download.m2msimmobj == b"<MgmtTree>sho-b</MgmtTree>" and download.session_id == session.session_id


def test_dpf_takes_the_new_sho_the_m2me_names_in_its_session(net: Network) -> None:
    # 004 c4 s2: the owner told the M2ME to re-provision from the new SHO, which is not yet in the registry
    m2me = attached_m2me(net)
    token = bootstrapped(net, m2me)
    net.bus.request(ManagementSessionOpen(sender=m2me.address, recipient=net.addresses.dpf, pcid=m2me.pcid,
                                          m2me_address=m2me.address, sho_address=net.addresses.nsho, bootstrap_token=token))
    assert authorise(net, net.addresses.nsho, m2me.pcid).accepted
    assert not authorise(net, "sho.rogue.example", m2me.pcid).accepted


def test_dpf_needs_a_session_and_relays_the_status_to_the_authorising_sho(net: Network) -> None:
    m2me = attached_m2me(net)
    token = bootstrapped(net, m2me)
    assert authorise(net, net.addresses.sho, m2me.pcid).accepted
    with pytest.raises(Refused, match="no management session"):
        net.ro.dpf.download(m2me.pcid)
    net.bus.request(ManagementSessionOpen(sender=m2me.address, recipient=net.addresses.dpf, pcid=m2me.pcid,
                                          m2me_address=m2me.address, sho_address=net.addresses.sho, bootstrap_token=token))
    m2me.expect(M2MSIMMobjDownload)
    net.ro.dpf.download(m2me.pcid)
    with pytest.raises(Refused, match="authorisation is downloaded"):
        net.ro.dpf.download(m2me.pcid)  # one download per authorisation
    reply = net.bus.request(ProvisioningStatus(sender=m2me.address, recipient=net.addresses.dpf, pcid=m2me.pcid,
                                               success=False, detail="TPM2_Import failed"))  # 000 s20
    assert isinstance(reply, ProvisioningStatusAck)
    ack = net.ro.dpf.report_status(m2me.pcid)  # 000 s21
    assert ack.sender == net.addresses.sho
    assert net.sho.contract(m2me.pcid)["state"] == "provisioning failed"
    relayed = [m for m in net.record.messages() if m["kind"] == "ProvisioningStatus"][-1]
    assert relayed["sender"] == net.addresses.dpf and relayed["recipient"] == net.addresses.sho
    assert relayed["fields"] == {"pcid": m2me.pcid, "success": False, "detail": "TPM2_Import failed"}
