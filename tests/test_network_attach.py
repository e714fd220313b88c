"""Initial attach (seed 000 steps 1-6): AKA through VNO + ICF + CCIF, with the card side in software."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mcim_hil.network.bus import Bus
from mcim_hil.network.ccif import Ccif
from mcim_hil.network.m2mes import M2mes
from mcim_hil.network.messages import (
    CAUSE_ILLEGAL_MS,
    CAUSE_IMSI_UNKNOWN,
    CAUSE_MAC_FAILURE,
    CAUSE_SYNCH_FAILURE,
)
from mcim_hil.network.ro.icf import Icf
from mcim_hil.network.store import Store
from mcim_hil.network.vno import CAUSE_CONGESTION, CAUSE_PLMN_NOT_ALLOWED, Vno
from mcim_hil.record import Record
from network_support import SoftUsim

RO_PLMN = "00102"


class Net:
    def __init__(self, ip_pool: str = "10.45.0.0/24") -> None:
        self.record = Record()
        self.bus = Bus(self.record)
        self.store = Store(":memory:")
        self.ccif = Ccif(self.bus, self.store, address="ccif.supplier-m.example", pcid_plmn=RO_PLMN,
                         icf_addresses=["icf.ro-r.example"], m2mes_addresses=["m2mes.supplier-m.example"])
        self.m2mes = M2mes(self.bus, self.store, address="m2mes.supplier-m.example",
                           ccif_address="ccif.supplier-m.example")
        self.icf = Icf(self.bus, self.store, address="icf.ro-r.example", ccif_address="ccif.supplier-m.example",
                       drf_address="drf.ro-r.example")
        self.vno = Vno(self.bus, self.store, name="VNO A", address="vno.vno-a.example", plmn="00101",
                       ip_pool=ip_pool, routes={RO_PLMN: "icf.ro-r.example"})

    def pristine_m2me(self, platform_id: str, **usim_options: object) -> tuple[str, SoftUsim]:
        ak = ec.generate_private_key(ec.SECP256R1()).public_key()
        made = self.m2mes.personalise(platform_id, ak)
        return made.pcid, SoftUsim(made.k, made.opc, **usim_options)

    def kinds(self) -> list[str]:
        return [m["kind"] for m in self.record.messages()]


@pytest.fixture
def net() -> Net:
    return Net()


def test_attach_runs_aka_on_the_card_and_leases_an_address(net: Net) -> None:
    pcid, usim = net.pristine_m2me("platform-1")
    result = net.vno.attach(pcid, usim.authenticate)
    assert result.accepted and result.reject_cause is None
    assert result.ip_address == "10.45.0.2"  # .1 is the gateway
    assert result.home is False  # the PCID's PLMN is the RO's, not the VNO's
    assert usim.calls == 1
    assert net.vno.lease(pcid) == "10.45.0.2"
    # the ICF had no credential for the PCID and got it from the CCIF (000 s3 NOTE)
    assert net.kinds()[-11:] == ["AttachRequest", "AuthDataRequest", "CredentialRequest", "CredentialResponse",
                                 "AuthDataResponse", "AuthenticationRequest", "AuthenticationResponse",
                                 "UpdateLocationRequest", "UpdateLocationAnswer", "PdnConnectivityRequest",
                                 "AttachAccept"]


def test_second_attach_uses_the_stored_credential_and_a_fresh_sqn(net: Net) -> None:
    pcid, usim = net.pristine_m2me("platform-1")
    assert net.vno.attach(pcid, usim.authenticate).accepted
    first_sqn = usim.sqn_ms
    net.vno.detach(pcid)
    assert net.vno.lease(pcid) is None
    assert net.vno.attach(pcid, usim.authenticate).accepted
    assert usim.sqn_ms > first_sqn
    assert net.kinds().count("CredentialRequest") == 1


def test_wrong_res_is_rejected_as_illegal_ms(net: Net) -> None:
    pcid, usim = net.pristine_m2me("platform-1", wrong_res=True)
    result = net.vno.attach(pcid, usim.authenticate)
    assert not result.accepted
    assert result.reject_cause == CAUSE_ILLEGAL_MS
    assert result.ip_address is None and net.vno.lease(pcid) is None
    assert net.kinds()[-3:] == ["AuthenticationResponse", "AuthenticationReject", "AttachReject"]


def test_card_with_another_key_reports_mac_failure(net: Net) -> None:
    pcid, _ = net.pristine_m2me("platform-1")
    stranger = SoftUsim(bytes(16), bytes(16))
    result = net.vno.attach(pcid, stranger.authenticate)
    assert not result.accepted and result.reject_cause == CAUSE_MAC_FAILURE
    failure = [m for m in net.record.messages() if m["kind"] == "AuthenticationFailure"]
    assert failure[0]["fields"]["cause"] == CAUSE_MAC_FAILURE
    assert failure[0]["fields"]["status_word"] == "9862"


def test_synch_failure_is_resynchronised_and_the_attach_retried(net: Net) -> None:
    pcid, usim = net.pristine_m2me("platform-1", sqn_ms=10_000)
    result = net.vno.attach(pcid, usim.authenticate)
    assert result.accepted
    assert usim.calls == 2 and usim.sqn_ms > 10_000
    kinds = net.kinds()
    assert kinds[kinds.index("AuthenticationFailure"):] == [
        "AuthenticationFailure", "ResyncRequest", "AuthDataResponse", "AuthenticationRequest",
        "AuthenticationResponse", "UpdateLocationRequest", "UpdateLocationAnswer", "PdnConnectivityRequest",
        "AttachAccept"]


def test_tampered_auts_is_refused_and_the_attach_rejected(net: Net) -> None:
    pcid, usim = net.pristine_m2me("platform-1", sqn_ms=10_000)

    def tampering_card(rand: bytes, autn: bytes) -> bytes:
        answer = usim.authenticate(rand, autn)
        return answer[:-3] + bytes([answer[-3] ^ 0xFF]) + answer[-2:]  # flip the last MAC-S byte

    result = net.vno.attach(pcid, tampering_card)
    assert not result.accepted and result.reject_cause == CAUSE_SYNCH_FAILURE
    reject = [m for m in net.record.messages() if m["kind"] == "AuthDataReject"]
    assert "MAC-S" in reject[0]["fields"]["reason"]


def test_unknown_pcid_and_unknown_plmn_are_rejected(net: Net) -> None:
    usim = SoftUsim(bytes(16), bytes(16))
    assert net.vno.attach(RO_PLMN + "0000000099", usim.authenticate).reject_cause == CAUSE_IMSI_UNKNOWN
    assert net.vno.attach("99999" + "0000000001", usim.authenticate).reject_cause == CAUSE_PLMN_NOT_ALLOWED
    assert usim.calls == 0


def test_addresses_come_from_the_pool_and_return_to_it() -> None:
    net = Net(ip_pool="10.45.0.0/29")  # hosts .1-.6, .1 is the gateway: 5 leases
    m2mes = [net.pristine_m2me(f"platform-{i}") for i in range(6)]
    results = [net.vno.attach(pcid, usim.authenticate) for pcid, usim in m2mes]
    assert [r.ip_address for r in results[:5]] == [f"10.45.0.{i}" for i in range(2, 7)]
    assert not results[5].accepted and results[5].reject_cause == CAUSE_CONGESTION
    # re-attaching keeps the address; a detach gives it back to the next M2ME
    pcid0, usim0 = m2mes[0]
    assert net.vno.attach(pcid0, usim0.authenticate).ip_address == "10.45.0.2"
    net.vno.detach(pcid0)
    pcid5, usim5 = m2mes[5]
    assert net.vno.attach(pcid5, usim5.authenticate).ip_address == "10.45.0.2"


def test_routing_prefers_the_longest_prefix(net: Net) -> None:
    net.vno.add_route("0010299", "auc.special.example")
    assert net.vno.route("001029900000001") == "auc.special.example"
    assert net.vno.route("001020000000001") == "icf.ro-r.example"
    assert net.vno.route("001030000000001") is None
