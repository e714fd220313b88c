"""The PVA's platform validation over evidence from a real TPM (swtpm through the TPM driver):
good evidence passes every check, and each forgery flips exactly the check meant to catch it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from attestation_support import COMPONENTS, MODEL, PCRS, M2meAgent, M2mes, der, ek_roots_of
from mcim_hil.drivers.tpm import Tpm
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.network import attestation, pki
from mcim_hil.network.attestation import (
    CHECKS,
    INTEGRITY_CHECKS,
    AttestationError,
    CredentialChallenge,
    Evidence,
    Measurement,
    PlatformValidator,
    ReferenceValues,
    ValidationResult,
)

PLATFORM = "m2me-0001"


def failed(result: ValidationResult) -> list[str]:
    return [c.name for c in result.checks if not c.passed]


# --- fixtures: one TPM identity, a fresh TPM per test ----------------------------------------

@pytest.fixture()
def swtpm() -> Iterator[Swtpm]:
    """A fresh copy of one manufactured identity per test: PCRs at their reset values and an
    orderly clock (Swtpm.power_cycle pulls the plug, after which clockInfo.safe is 0)."""
    with Swtpm(shared_identity=True) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def foreign_swtpm() -> Iterator[Swtpm]:
    """A TPM manufactured with its own local CA, which the PVA does not pin."""
    with Swtpm() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def m2mes() -> M2mes:
    return M2mes.create()


@pytest.fixture()
def tpm(swtpm: Swtpm) -> Iterator[Tpm]:
    with Tpm.open(swtpm.tcti) as device:
        yield device


def boot(tpm: Tpm, m2mes: M2mes, components: tuple[tuple[str, int, bytes], ...] = COMPONENTS) -> M2meAgent:
    agent = M2meAgent.boot(tpm, PLATFORM, components)
    agent.pfc = der(m2mes.platform_credential(agent.ak_public, PLATFORM))
    return agent


@pytest.fixture()
def agent(tpm: Tpm, m2mes: M2mes) -> M2meAgent:
    return boot(tpm, m2mes)


@pytest.fixture()
def validator(swtpm: Swtpm, m2mes: M2mes) -> PlatformValidator:
    return m2mes.validator(ek_roots_of(swtpm))


def attest(agent: M2meAgent, validator: PlatformValidator) -> tuple[Evidence, bytes, bytes]:
    """What the SHO/PVA and the M2ME exchange: challenge + nonce out, evidence back."""
    challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
    nonce = validator.new_nonce()
    challenge = CredentialChallenge.from_bytes(challenge.to_bytes())  # as it travels in EvidenceRequest
    return agent.evidence(challenge, nonce), nonce, secret


# --- the good case ---------------------------------------------------------------------------

def test_evidence_from_swtpm_passes_every_check(agent: M2meAgent, validator: PlatformValidator) -> None:
    evidence, nonce, secret = attest(agent, validator)
    result = validator.validate(evidence, nonce, secret)
    assert [c.name for c in result.checks] == list(CHECKS)
    assert result.passed, result.summary()
    assert result.validated_components == [name for name, _, _ in COMPONENTS]
    assert result.platform_id == PLATFORM and result.model == MODEL
    assert result.storage_key_public == agent.storage_key.public.marshal()
    assert sorted(result.pcr_values) == list(PCRS)
    assert result.pcr_digest is not None and len(result.pcr_digest) == 32
    assert "this EK and AK name" in result.check("ak_bound_to_ek").detail


def test_evidence_and_result_travel_as_json(agent: M2meAgent, validator: PlatformValidator) -> None:
    evidence, nonce, secret = attest(agent, validator)
    evidence = Evidence.from_dict(json.loads(json.dumps(evidence.to_dict())))
    result = validator.validate(evidence, nonce, secret)
    assert result.passed, result.summary()
    again = ValidationResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result


# --- each forgery flips exactly its check ----------------------------------------------------

def test_component_measured_differently_fails_reference_values_only(
        tpm: Tpm, m2mes: M2mes, validator: PlatformValidator) -> None:
    patched = COMPONENTS[:2] + (("m2me-agent", 10, b"mcim-hil provisioning agent 0.3 + implant"),)
    agent = boot(tpm, m2mes, patched)
    evidence, nonce, secret = attest(agent, validator)
    result = validator.validate(evidence, nonce, secret)
    assert failed(result) == ["reference_values"]
    assert "'m2me-agent'" in result.check("reference_values").detail
    assert result.validated_components == []
    assert not result.passed


def test_replayed_evidence_fails_nonce_fresh_only(agent: M2meAgent, validator: PlatformValidator) -> None:
    evidence, nonce, secret = attest(agent, validator)
    assert validator.validate(evidence, nonce, secret).passed
    replay = validator.validate(evidence, nonce, secret)
    assert failed(replay) == ["nonce_fresh"]
    assert "already used" in replay.check("nonce_fresh").detail


def test_quote_over_an_old_nonce_fails_quote_nonce_only(agent: M2meAgent, validator: PlatformValidator) -> None:
    evidence, old_nonce, secret = attest(agent, validator)
    assert validator.validate(evidence, old_nonce, secret).passed
    nonce = validator.new_nonce()
    stale = agent.requote(evidence, old_nonce, certify_nonce=nonce)
    result = validator.validate(stale, nonce, secret)
    assert failed(result) == ["quote_nonce"]


def test_unknown_nonce_fails_nonce_fresh_only(agent: M2meAgent, validator: PlatformValidator) -> None:
    challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
    nonce = os.urandom(32)  # never issued by this PVA
    result = validator.validate(agent.evidence(challenge, nonce), nonce, secret)
    assert failed(result) == ["nonce_fresh"]
    assert "not issued" in result.check("nonce_fresh").detail


def test_revoked_pfc_fails_ocsp_only(agent: M2meAgent, validator: PlatformValidator, m2mes: M2mes) -> None:
    m2mes.responder.revoke(x509.load_der_x509_certificate(agent.pfc), x509.ReasonFlags.key_compromise)
    evidence, nonce, secret = attest(agent, validator)
    result = validator.validate(evidence, nonce, secret)
    assert failed(result) == ["pfc_status_ocsp"]
    assert "revoked" in result.check("pfc_status_ocsp").detail
    assert "key_compromise" in result.check("pfc_status_ocsp").detail


def test_ek_certificate_from_unknown_ca_fails_chain_only(
        foreign_swtpm: Swtpm, m2mes: M2mes, validator: PlatformValidator) -> None:
    with Tpm.open(foreign_swtpm.tcti) as tpm:
        agent = boot(tpm, m2mes)
        evidence, nonce, secret = attest(agent, validator)
    result = validator.validate(evidence, nonce, secret)
    assert failed(result) == ["ek_certificate_chain"]
    assert "signature does not verify" in result.check("ek_certificate_chain").detail


def test_wrong_activation_secret_fails_ak_bound_to_ek_only(agent: M2meAgent, validator: PlatformValidator) -> None:
    evidence, nonce, _ = attest(agent, validator)
    result = validator.validate(evidence, nonce, os.urandom(32))
    assert failed(result) == ["ak_bound_to_ek"]


def test_pfc_over_another_key_fails_pfc_binds_ak_only(agent: M2meAgent, validator: PlatformValidator,
                                                      m2mes: M2mes) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    agent.pfc = der(pki.issue_platform_credential(m2mes.ca, other_key, PLATFORM, model=MODEL))
    evidence, nonce, secret = attest(agent, validator)
    assert failed(validator.validate(evidence, nonce, secret)) == ["pfc_binds_ak"]


def test_pfc_from_another_ca_fails_pfc_signature(agent: M2meAgent, validator: PlatformValidator) -> None:
    impostor = pki.CertificateAuthority.create("mcim-hil M2MES CA", organization="mcim-hil M2MES")
    agent.pfc = der(pki.issue_platform_credential(impostor, attestation.tpm_public_key(agent.ak_public),
                                                  PLATFORM, model=MODEL))
    evidence, nonce, secret = attest(agent, validator)
    result = validator.validate(evidence, nonce, secret)
    assert "pfc_signature" in failed(result)
    assert set(failed(result)) <= {"pfc_signature", "pfc_status_ocsp"}


def test_clock_going_back_fails_clock_only(agent: M2meAgent, swtpm: Swtpm, m2mes: M2mes) -> None:
    validator = m2mes.validator(ek_roots_of(swtpm), clock_history={PLATFORM: (10**6, 0)})
    evidence, nonce, secret = attest(agent, validator)
    result = validator.validate(evidence, nonce, secret)
    assert failed(result) == ["clock"]
    assert "went back" in result.check("clock").detail


def test_clock_history_follows_the_tpm(agent: M2meAgent, swtpm: Swtpm, m2mes: M2mes) -> None:
    history: dict[str, tuple[int, int]] = {}
    validator = m2mes.validator(ek_roots_of(swtpm), clock_history=history)
    evidence, nonce, secret = attest(agent, validator)
    assert validator.validate(evidence, nonce, secret).passed
    reset_count, _ = history[PLATFORM]
    assert reset_count >= 1


def test_certifying_another_object_fails_storage_key_certified_only(
        agent: M2meAgent, validator: PlatformValidator) -> None:
    evidence, nonce, secret = attest(agent, validator)
    nonce = validator.new_nonce()
    evidence = agent.requote(evidence, nonce)
    wrong = agent.tpm.certify(agent.ak, agent.ak, nonce)  # the AK certifies itself, not the storage key
    evidence = dataclasses.replace(evidence, certify_attest=wrong.attest, certify_signature=wrong.signature)
    result = validator.validate(evidence, nonce, secret)
    assert failed(result) == ["storage_key_certified"]
    assert result.storage_key_public is None


def test_quote_of_other_pcrs_fails_the_pcr_checks(agent: M2meAgent, validator: PlatformValidator) -> None:
    challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
    nonce = validator.new_nonce()
    result = validator.validate(agent.evidence(challenge, nonce, pcrs=(8, 9)), nonce, secret)
    assert set(failed(result)) == {"pcr_selection", "pcr_digest", "event_log_replay"}
    assert "sha256:8,9" in result.check("pcr_selection").detail


def test_authenticity_only_skips_integrity_checks(tpm: Tpm, m2mes: M2mes, validator: PlatformValidator) -> None:
    patched = COMPONENTS[:2] + (("m2me-agent", 10, b"something else"),)
    agent = boot(tpm, m2mes, patched)
    evidence, nonce, secret = attest(agent, validator)
    result = validator.validate(evidence, nonce, secret, check_integrity=False)
    assert result.passed, result.summary()
    assert not INTEGRITY_CHECKS & {c.name for c in result.checks}
    assert result.validated_components == [] and not result.integrity_checked


# --- pure software: parsing, inputs, robustness ---------------------------------------------

def junk_evidence() -> Evidence:
    return Evidence(platform_id="junk", ek_certificate=b"\x30\x03\x02\x01\x00", ek_public=b"\x00\x01",
                    ak_public=b"", activation_proof=b"x" * 32, quote_attest=b"\xff\x54", quote_signature=b"",
                    pcr_values={8: b"\0" * 32}, measurements=[Measurement("x", 8, b"\0" * 32)], pfc=b"not der",
                    storage_key_public=b"", certify_attest=b"", certify_signature=b"")


def test_junk_evidence_fails_every_check_without_raising(m2mes: M2mes) -> None:
    root = pki.CertificateAuthority.create("some TPM CA")
    validator = attestation.PlatformValidator([root.certificate], m2mes.ca.certificate, m2mes.responder.respond,
                                              PCRS, m2mes.reference)
    nonce = validator.new_nonce()
    result = validator.validate(junk_evidence(), nonce, b"y" * 32)
    assert not result.passed
    assert result.check("nonce_fresh").passed  # the only thing junk evidence cannot spoil
    assert set(failed(result)) == set(CHECKS) - {"nonce_fresh"}
    assert "does not parse" in result.check("ak_attributes").detail


def test_expired_and_short_nonces_are_refused(m2mes: M2mes) -> None:
    root = pki.CertificateAuthority.create("some TPM CA")
    validator = attestation.PlatformValidator([root.certificate], m2mes.ca.certificate, m2mes.responder.respond,
                                              PCRS, m2mes.reference, nonce_lifetime=-1.0)
    nonce = validator.new_nonce()
    assert len(nonce) == 32 and nonce != validator.new_nonce()
    assert "expired" in validator.validate(junk_evidence(), nonce, b"").check("nonce_fresh").detail
    assert "fewer than 16" in validator.validate(junk_evidence(), b"short", b"").check("nonce_fresh").detail


def test_reference_values_signed_by_someone_else_are_refused(m2mes: M2mes) -> None:
    root = pki.CertificateAuthority.create("some TPM CA")
    forged = ReferenceValues(dict(m2mes.reference.components), MODEL).sign(root)
    with pytest.raises(AttestationError, match="signature does not verify"):
        attestation.PlatformValidator([root.certificate], m2mes.ca.certificate, m2mes.responder.respond,
                                      PCRS, forged)
    with pytest.raises(AttestationError, match="unsigned"):
        attestation.PlatformValidator([root.certificate], m2mes.ca.certificate, m2mes.responder.respond,
                                      PCRS, {"x": b"\0" * 32}, require_signed_reference_values=True)


def test_reference_values_travel_as_json(m2mes: M2mes) -> None:
    again = ReferenceValues.from_dict(json.loads(json.dumps(m2mes.reference.to_dict())))
    assert again == m2mes.reference
    again.verify(m2mes.ca.certificate.public_key())


def test_pcr_selection_encoding_roundtrips() -> None:
    encoded = attestation.pcr_selection_bytes([0, 7, 8, 23])
    assert encoded == bytes.fromhex("00000001" "000b" "03" "810180")
    reader = attestation._Reader(encoded, "selection")
    assert attestation.parse_pcr_selection(reader) == {attestation.TPM_ALG_SHA256: frozenset({0, 7, 8, 23})}
    with pytest.raises(AttestationError):
        attestation.pcr_selection_bytes([24])


def test_tpm_public_parse_is_strict(agent: M2meAgent) -> None:
    ak_public = agent.ak_public
    area = attestation.parse_public(ak_public)
    assert area.name == agent.ak.name  # our own name computation agrees with the driver's
    assert pki.same_public_key(area.public_key(), agent.ak.public_key)
    with pytest.raises(attestation.TpmStructureError, match="trailing"):
        attestation.parse_public(ak_public + b"\0")
    with pytest.raises(attestation.TpmStructureError, match="truncated"):
        attestation.parse_public(ak_public[:-1])


def test_evidence_that_does_not_decode_is_refused() -> None:
    data = junk_evidence().to_dict()
    del data["quote_attest"]
    with pytest.raises(AttestationError, match="does not decode"):
        Evidence.from_dict(data)


def test_evidence_repr_is_short() -> None:
    assert repr(junk_evidence()) == "Evidence(platform_id='junk', pcrs=[8], measurements=1)"
