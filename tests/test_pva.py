"""The PVA's two kinds of validation (seed 004 c4 s3-s5), what it keeps between validations and
the rule that keeps each correct, and its counters; the M2ME's TRE is a real TPM (swtpm)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mcim_hil.drivers.tpm import Tpm
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.network.attestation import tpm_public_key
from mcim_hil.network.factory import build_network
from mcim_hil.network.pva import ek_roots_from
from mcim_hil.network.sho import VIA_IVF, VIA_PVA
from mcim_hil.network.topology import Network, NetworkOptions
from mcim_hil.record import Record
from network_support import PCRS, TpmM2me, reference_values

PLATFORM = "m2me-traffic-light-0042"
ADDRESS = "10.45.0.42"


@dataclass
class Lab:
    net: Network
    m2me: TpmM2me
    record: Record

    def kinds(self, since: int = 0) -> list[str]:
        return [m["kind"] for m in self.record.messages()[since:] if m["direction"] == "request"]

    def validate(self, *, via_ivf: bool = False, issue_to_ivf: bool = False, new_sho: bool = False):
        sho = self.net.nsho if new_sho else self.net.sho
        assert sho is not None
        return sho.request_validation(self.m2me.pcid, via_ivf=via_ivf, issue_to_ivf=issue_to_ivf)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Swtpm(shared_identity=True) as swtpm, Tpm.open(swtpm.tcti) as tpm:
        record = Record()
        net = build_network(NetworkOptions(pcr_selection=PCRS), ":memory:", record,
                            ek_roots=ek_roots_from(str(p) for p in swtpm.ek_ca_certificates()))
        net.m2mes.publish_reference_values(reference_values())
        m2me = TpmM2me(net.bus, tpm, PLATFORM)
        made = net.m2mes.personalise(PLATFORM, tpm_public_key(m2me.ak_public))
        m2me.pcid, m2me.pfc, m2me.address = made.pcid, made.pfc_der, ADDRESS
        net.bus.register(ADDRESS, m2me.handle)  # reachable as if attached
        for sho in (net.sho, net.nsho):
            assert sho is not None
            sho.add_contract(made.pcid, platform_id=PLATFORM, m2me_address=ADDRESS)
        yield Lab(net, m2me, record)
        net.close()


def test_seed_000_validation_issues_nothing_to_the_ivf_seed_004_does(lab: Lab) -> None:
    assert lab.validate().passed
    assert "IntegrityResultIssue" not in lab.kinds()
    assert lab.net.ivf.result(PLATFORM) is None
    assert lab.validate(issue_to_ivf=True).passed
    assert lab.kinds().count("IntegrityResultIssue") == 1
    assert lab.net.ivf.result(PLATFORM)["passed"]


def test_with_the_ivf_the_pva_checks_authenticity_only(lab: Lab) -> None:
    lab.validate(issue_to_ivf=True)
    before = lab.net.pva.counters()
    mark = len(lab.record.messages())
    outcome = lab.validate(via_ivf=True, new_sho=True)
    assert outcome.passed and outcome.source == VIA_IVF
    after = lab.net.pva.counters()
    assert after["authenticity_checks"] == before["authenticity_checks"] + 1
    assert after["integrity_validations"] == before["integrity_validations"]
    # no reference values fetched, no OCSP asked again (the response is good until nextUpdate)
    assert "ReferenceValuesRequest" not in lab.kinds(mark) and "OcspRequest" not in lab.kinds(mark)
    names = [c.name for c in outcome.result.checks]
    assert "reference_values" not in names and "quote_signature" in names and "pfc_status_ocsp" in names
    assert outcome.result.check("quote_nonce").passed and outcome.result.check("ak_bound_to_ek").passed
    assert "nextUpdate" in outcome.result.check("pfc_status_ocsp").detail


def test_without_the_ivf_each_validation_checks_integrity(lab: Lab) -> None:
    for _ in range(2):
        assert lab.validate().passed
    counts = lab.net.pva.counters()
    assert counts["authenticity_checks"] == 2 and counts["integrity_validations"] == 2
    # one fetch per model and one OCSP request per PfC, kept afterwards
    assert counts["reference_values_requests"] == 1 and counts["reference_values_cache_hits"] == 1
    assert counts["ocsp_requests"] == 1 and counts["ocsp_cache_hits"] == 1
    assert lab.kinds().count("OcspRequest") == 1 and lab.kinds().count("ReferenceValuesRequest") == 1
    assert counts["cpu_s"] > 0
    assert lab.record.meta["pva"] == counts  # what run.json shows


def test_a_revoked_pfc_is_refused_on_the_next_validation_though_ocsp_was_kept(lab: Lab) -> None:
    assert lab.validate(issue_to_ivf=True).passed  # a good OCSP response is now kept
    lab.net.m2mes.revoke(PLATFORM)
    for via_ivf in (True, False):
        outcome = lab.validate(via_ivf=via_ivf, new_sho=True)
        assert not outcome.passed
        assert "revoked" in outcome.result.check("pfc_status_ocsp").detail
    assert lab.kinds().count("OcspRequest") == 2  # asked again once, then the revoked status is kept


def test_an_ocsp_response_is_asked_again_after_its_next_update(lab: Lab) -> None:
    lab.net.m2mes.ocsp._validity = dt.timedelta(seconds=1)  # responses good for one second only
    assert lab.validate().passed
    time.sleep(1.2)
    assert lab.validate().passed
    assert lab.kinds().count("OcspRequest") == 2


def test_new_reference_values_replace_the_kept_ones(lab: Lab) -> None:
    assert lab.validate().passed
    lab.net.m2mes.publish_reference_values({"firmware": b"\x00" * 32})  # the supplier expects another build
    outcome = lab.validate()
    assert not outcome.passed and [c.name for c in outcome.result.failed] == ["reference_values"]
    assert lab.kinds().count("ReferenceValuesRequest") == 2


def test_a_measurement_that_differs_from_the_ivf_result_is_caught_and_refused(lab: Lab) -> None:
    lab.validate(issue_to_ivf=True)
    lab.m2me.tpm.pcr_extend(PCRS[1], b"\x66" * 32)  # the firmware PCR moves after the IVF's result
    outcome = lab.validate(via_ivf=True, new_sho=True)
    assert outcome.source == VIA_PVA and not outcome.passed
    assert "another PCR state" in (outcome.fallback_reason or "")
    assert not outcome.result.check("event_log_replay").passed
    assert lab.net.pva.counters()["integrity_validations"] == 2


def test_required_components_limit_what_the_result_vouches_for(lab: Lab) -> None:
    lab.net.sho.required_components = ("bootloader",)
    lab.validate(issue_to_ivf=True)
    assert lab.net.ivf.result(PLATFORM)["validated_components"] == ["bootloader"]
    assert lab.net.nsho is not None
    lab.net.nsho.required_components = ("bootloader", "firmware")
    outcome = lab.validate(via_ivf=True, new_sho=True)
    assert outcome.passed and outcome.source == VIA_PVA
    assert outcome.fallback_reason == "components not validated: firmware"
    assert sorted(outcome.result.validated_components) == ["bootloader", "firmware"]


def test_a_kept_ek_chain_is_walked_again_once_the_certificate_expired() -> None:
    """The PVA keeps an EK certificate whose path verified only while it is valid."""
    import datetime as dt

    from mcim_hil.fleet.population import configuration
    from mcim_hil.fleet.simulated import SimulatedTpmMaker, SimulatedTre
    from mcim_hil.network import pki
    from mcim_hil.network.attestation import Evidence, Measurement, PlatformValidator, ReferenceValues
    from cryptography.hazmat.primitives.serialization import Encoding

    class ShortLivedMaker(SimulatedTpmMaker):
        def certify_ek(self, ek_public, serial):  # an EK certificate valid for two more seconds
            return self.ca.issue(ek_public, f"simulated TPM {serial}",
                                 not_after=pki.utc_now() + dt.timedelta(seconds=2))

    maker = ShortLivedMaker.create()
    ca = pki.CertificateAuthority.create("M2MES CA", organization="M2MES")
    model, components = configuration(0)
    validator = PlatformValidator([maker.certificate], ca.certificate, pki.OcspResponder(ca).respond, [23],
                                  ReferenceValues({c.name: c.digest for c in components}, model=model))
    tre = SimulatedTre(maker)
    log = tre.boot(components)
    pfc = pki.issue_platform_credential(ca, tre.keys().ak.public_key, "sim-1", model=model).public_bytes(Encoding.DER)

    def validate():
        ek, keys = tre.endorsement_key(), tre.keys()
        challenge, secret = validator.credential_challenge(ek.public, keys.ak.public.marshal())
        nonce = validator.new_nonce()
        proof = tre.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
        quote, certified = tre.quote(nonce, [tre.pcr]), tre.certify_storage_key(nonce)
        authority = tre.certify_unseal_authority(nonce)
        evidence = Evidence("sim-1", ek.certificate, ek.public, keys.ak.public.marshal(), proof, quote.attest,
                            quote.signature, quote.pcr_values, [Measurement(m.name, m.pcr, m.digest) for m in log],
                            pfc, keys.storage_key.public.marshal(), certified.attest, certified.signature,
                            tre.unseal_authority_public(), authority.attest, authority.signature)
        return validator.validate(evidence, nonce, secret)

    assert validate().passed and validate().passed
    assert validator.certificate_cache_hits >= 2  # the second time, EK chain and PfC were kept
    time.sleep(2.5)
    result = validate()
    assert [c.name for c in result.failed] == ["ek_certificate_chain"]
    assert "expired" in result.check("ek_certificate_chain").detail


# -- the AK's binding to its EK, proven once by ActivateCredential, kept while its PfC holds ------------

def _binding_lab(pfc_lifetime_s: float | None = None):
    from cryptography.hazmat.primitives.serialization import Encoding

    from mcim_hil.fleet.population import configuration
    from mcim_hil.fleet.simulated import SimulatedTpmMaker, SimulatedTre
    from mcim_hil.network import pki
    from mcim_hil.network.attestation import Evidence, Measurement, PlatformValidator, ReferenceValues

    maker = SimulatedTpmMaker.create()
    ca = pki.CertificateAuthority.create("M2MES CA", organization="M2MES")
    responder = pki.OcspResponder(ca)
    model, components = configuration(0)
    validator = PlatformValidator([maker.certificate], ca.certificate, responder.respond, [23],
                                  ReferenceValues({c.name: c.digest for c in components}, model=model))

    def platform(name: str, tre: SimulatedTre | None = None):
        tre = tre or SimulatedTre(maker)
        log = tre.boot(components)
        not_after = pki.utc_now() + dt.timedelta(seconds=pfc_lifetime_s) if pfc_lifetime_s else None
        pfc = pki.issue_platform_credential(ca, tre.keys().ak.public_key, name, model=model, not_after=not_after)
        return tre, log, pfc.public_bytes(Encoding.DER), pfc

    def validate(tre, log, pfc, name, *, challenged: bool, ek_of=None, check_integrity: bool = True):
        ek, keys = (ek_of or tre).endorsement_key(), tre.keys()
        secret, proof = b"", b""
        if challenged:  # what the PVA does when it holds no binding for this EK and AK
            challenge, secret = validator.credential_challenge(ek.public, keys.ak.public.marshal())
            proof = tre.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
        nonce = validator.new_nonce()
        quote, certified = tre.quote(nonce, [tre.pcr]), tre.certify_storage_key(nonce)
        authority = tre.certify_unseal_authority(nonce)
        evidence = Evidence(name, ek.certificate, ek.public, keys.ak.public.marshal(), proof, quote.attest,
                            quote.signature, quote.pcr_values, [Measurement(m.name, m.pcr, m.digest) for m in log],
                            pfc, keys.storage_key.public.marshal(), certified.attest, certified.signature,
                            tre.unseal_authority_public(), authority.attest, authority.signature)
        return validator.validate(evidence, nonce, secret, check_integrity=check_integrity)

    return validator, responder, platform, validate


def test_a_proven_binding_spares_the_credential_challenge_until_the_pfc_is_revoked() -> None:
    validator, responder, platform, validate = _binding_lab()
    tre, log, pfc, cert = platform("sim-bind-1")
    ek, ak = tre.endorsement_key().public, tre.keys().ak.public.marshal()
    # never proven: no challenge means no binding
    first = validate(tre, log, pfc, "sim-bind-1", challenged=False)
    assert not first.check("ak_bound_to_ek").passed and not validator.binding_known(ek, ak)
    assert validate(tre, log, pfc, "sim-bind-1", challenged=True).passed
    assert validator.binding_known(ek, ak)
    # the PfC the validation will present: the one the binding was proven under, or another (an update's)
    assert validator.binding_known(ek, ak, pfc)
    assert not validator.binding_known(ek, ak, pfc[:-1] + bytes([pfc[-1] ^ 1]))
    for integrity in (False, True):  # authenticity only, and the full validation, without a challenge
        result = validate(tre, log, pfc, "sim-bind-1", challenged=False, check_integrity=integrity)
        assert result.passed, result.summary()
        assert "earlier ActivateCredential" in result.check("ak_bound_to_ek").detail
    # the M2MES revokes the PfC and announces it: the cached binding goes with it
    responder.revoke(cert)
    validator.forget_status(cert.serial_number)
    assert not validator.binding_known(ek, ak)
    result = validate(tre, log, pfc, "sim-bind-1", challenged=False, check_integrity=False)
    assert not result.passed
    assert not result.check("ak_bound_to_ek").passed and not result.check("pfc_status_ocsp").passed


def test_a_proven_binding_is_refused_once_its_pfc_expired() -> None:
    validator, _, platform, validate = _binding_lab(pfc_lifetime_s=2.0)
    tre, log, pfc, _ = platform("sim-bind-2")
    assert validate(tre, log, pfc, "sim-bind-2", challenged=True).passed
    assert validate(tre, log, pfc, "sim-bind-2", challenged=False, check_integrity=False).passed
    time.sleep(2.5)
    assert not validator.binding_known(tre.endorsement_key().public, tre.keys().ak.public.marshal())
    result = validate(tre, log, pfc, "sim-bind-2", challenged=False, check_integrity=False)
    assert not result.check("ak_bound_to_ek").passed and not result.check("pfc_signature").passed


def test_another_ak_under_a_bound_ek_is_not_accepted_through_the_cache() -> None:
    validator, _, platform, validate = _binding_lab()
    tre, log, pfc, _ = platform("sim-bind-3")
    assert validate(tre, log, pfc, "sim-bind-3", challenged=True).passed  # EK + AK of tre bound
    # another TPM's AK, properly certified by its own PfC, claimed under tre's (bound) EK
    other, other_log, other_pfc, _ = platform("sim-bind-3")
    assert not validator.binding_known(tre.endorsement_key().public, other.keys().ak.public.marshal())
    result = validate(other, other_log, other_pfc, "sim-bind-3", challenged=False, ek_of=tre, check_integrity=False)
    assert result.check("pfc_signature").passed and result.check("quote_signature").passed
    assert not result.passed
    assert "no earlier ActivateCredential" in result.check("ak_bound_to_ek").detail
    # and the bound AK under another PfC (same AK, new certificate) must be proven again
    _, _, new_pfc, _ = platform("sim-bind-3", tre)
    result = validate(tre, log, new_pfc, "sim-bind-3", challenged=False, check_integrity=False)
    assert "another PfC" in result.check("ak_bound_to_ek").detail


def test_the_pva_sends_no_credential_challenge_once_the_binding_is_proven(lab: Lab) -> None:
    assert lab.validate(issue_to_ivf=True).passed
    assert lab.net.pva.counters()["challenges"] == 1  # ActivateCredential on the real TPM, once
    outcome = lab.validate(via_ivf=True, new_sho=True)
    assert outcome.passed and outcome.source == VIA_IVF
    assert lab.net.pva.counters()["challenges"] == 1
    assert "earlier ActivateCredential" in outcome.result.check("ak_bound_to_ek").detail
    assert outcome.result.check("quote_signature").passed and outcome.result.check("quote_nonce").passed
