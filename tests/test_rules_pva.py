"""The PVA's storage-key certification rules over evidence from a real TPM (swtpm), each
forgery failing exactly ``storage_key_certified`` with the reason of the rule it breaks.

test_attestation.py replays both nonces together; here the certification alone reuses an old
nonce (the quote is fresh), so only the certify-nonce comparison can catch it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPMA_OBJECT
from tpm2_pytss.types import (
    TPM2B_PUBLIC, TPM2B_SENSITIVE, TPM2B_SENSITIVE_CREATE, TPMT_SYM_DEF_OBJECT, TPMU_SYM_KEY_BITS, TPMU_SYM_MODE,
)
from tpm2_pytss.utils import wrap

from attestation_support import COMPONENTS, MODEL, M2meAgent, M2mes, der, ek_roots_of
from mcim_hil.drivers.tpm import Tpm
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.network import pki
from mcim_hil.network.attestation import (
    AttestationError, CredentialChallenge, Evidence, Measurement, PlatformValidator, ReferenceValues, ValidationResult,
    tpm_public_key,
)

PLATFORM = "m2me-rules-0001"


@dataclasses.dataclass
class Attested:
    agent: M2meAgent
    validator: PlatformValidator
    evidence: Evidence
    nonce: bytes
    secret: bytes
    swtpm: Swtpm

    def fresh(self) -> tuple[Evidence, bytes, bytes]:
        """New evidence under a new challenge (single use) and nonce: (evidence, nonce, secret)."""
        challenge, secret = self.validator.credential_challenge(self.agent.ek_public, self.agent.ak_public)
        nonce = self.validator.new_nonce()
        return self.agent.evidence(challenge, nonce), nonce, secret

    def check(self, evidence: Evidence, nonce: bytes, secret: bytes, name: str) -> tuple[bool, str]:
        """(passed, detail) of one check over ``evidence``."""
        check = self.validator.validate(evidence, nonce, secret).check(name)
        return check.passed, check.detail

    def refused_by(self, evidence: Evidence, nonce: bytes) -> str:
        """Validate ``evidence``; it must fail storage_key_certified only. Returns that check's detail."""
        result: ValidationResult = self.validator.validate(evidence, nonce, self.secret)
        assert [c.name for c in result.checks if not c.passed] == ["storage_key_certified"], result.summary()
        return result.check("storage_key_certified").detail


@pytest.fixture(scope="module")
def m2mes() -> M2mes:
    return M2mes.create()


@pytest.fixture
def attested(m2mes: M2mes) -> Iterator[Attested]:
    with Swtpm(shared_identity=True) as swtpm, Tpm.open(swtpm.tcti) as tpm:
        agent = M2meAgent.boot(tpm, PLATFORM)
        agent.pfc = der(m2mes.platform_credential(agent.ak_public, PLATFORM))
        validator = m2mes.validator(ek_roots_of(swtpm))
        challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
        nonce = validator.new_nonce()
        evidence = agent.evidence(CredentialChallenge.from_bytes(challenge.to_bytes()), nonce)
        assert validator.validate(evidence, nonce, secret).passed
        yield Attested(agent, validator, evidence, nonce, secret, swtpm)


def test_certification_over_an_old_nonce_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    stale = a.agent.requote(a.evidence, nonce, certify_nonce=a.nonce,  # fresh quote, old certification
                            authority_nonce=nonce)
    assert a.refused_by(stale, nonce) == "certification extraData is not the nonce of this validation"


def test_certification_of_another_object_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    of_the_ak = a.agent.tpm.certify(a.agent.ak, a.agent.ak, nonce)  # the AK certifies itself
    forged = dataclasses.replace(fresh, certify_attest=of_the_ak.attest, certify_signature=of_the_ak.signature)
    assert a.refused_by(forged, nonce) == "certification is about another object than the storage key"


def test_a_certified_signing_key_is_not_a_storage_key(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    of_the_ak = a.agent.tpm.certify(a.agent.ak, a.agent.ak, nonce)
    forged = dataclasses.replace(fresh, storage_key_public=a.agent.ak_public, certify_attest=of_the_ak.attest,
                                 certify_signature=of_the_ak.signature)
    assert a.refused_by(forged, nonce).startswith("storage key is not a fixedTPM restricted decryption key")


def test_certification_with_a_broken_signature_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    signature = bytearray(fresh.certify_signature)
    signature[-1] ^= 1
    forged = dataclasses.replace(fresh, certify_signature=bytes(signature))
    assert a.refused_by(forged, nonce) == "certification signature does not verify with the AK"


def test_a_quote_passed_off_as_a_certification_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    forged = dataclasses.replace(fresh, certify_attest=fresh.quote_attest, certify_signature=fresh.quote_signature)
    assert a.refused_by(forged, nonce) == "certification is not a TPM-generated TPM2_Certify attestation"


# --- the TRE's unseal authority (issue 9): the object the MCIM's PolicySecret names ------------

def _authority_refused(a: Attested, evidence: Evidence, nonce: bytes, secret: bytes | None = None) -> str:
    """Validate ``evidence``; it must fail unseal_authority_certified only. Returns that check's detail."""
    result = a.validator.validate(evidence, nonce, a.secret if secret is None else secret)
    assert [c.name for c in result.checks if not c.passed] == ["unseal_authority_certified"], result.summary()
    assert result.unseal_authority_name is None
    return result.check("unseal_authority_certified").detail


def test_the_validated_authority_is_named_in_the_result(attested: Attested) -> None:
    a = attested
    evidence, nonce, secret = a.fresh()
    result = a.validator.validate(evidence, nonce, secret)
    assert result.passed and result.unseal_authority_name == pki_name(evidence.authority_public)
    assert result.check("unseal_authority_certified").detail.startswith("AK certified the TRE's unseal authority")


def pki_name(public: bytes) -> bytes:
    from mcim_hil.network.attestation import tpm_name
    return tpm_name(public)


def test_evidence_without_an_unseal_authority_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    forged = dataclasses.replace(a.agent.requote(a.evidence, nonce), authority_public=b"",
                                 authority_certify_attest=b"", authority_certify_signature=b"")
    assert _authority_refused(a, forged, nonce).startswith("no unseal authority")


def test_an_authority_certification_over_an_old_nonce_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    old = a.agent.tpm.certify(a.agent.authority, a.agent.ak, a.nonce)
    forged = dataclasses.replace(a.agent.requote(a.evidence, nonce), authority_certify_attest=old.attest,
                                 authority_certify_signature=old.signature)
    assert _authority_refused(a, forged, nonce) == "authority certification extraData is not the nonce of this validation"


def test_an_authority_certification_of_another_object_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    forged = dataclasses.replace(fresh, authority_certify_attest=fresh.certify_attest,
                                 authority_certify_signature=fresh.certify_signature)   # the storage key's
    assert _authority_refused(a, forged, nonce) == \
        "authority certification is about another object than the unseal authority"


def test_an_authority_certification_with_a_broken_signature_or_a_quote_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    signature = bytearray(fresh.authority_certify_signature)
    signature[-1] ^= 1
    forged = dataclasses.replace(fresh, authority_certify_signature=bytes(signature))
    assert _authority_refused(a, forged, nonce) == "authority certification signature does not verify with the AK"
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    forged = dataclasses.replace(fresh, authority_certify_attest=fresh.quote_attest,
                                 authority_certify_signature=fresh.quote_signature)
    assert _authority_refused(a, forged, nonce) == \
        "authority certification is not a TPM-generated TPM2_Certify attestation"
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    forged = dataclasses.replace(fresh, authority_certify_attest=b"\x00\x00\x00\x00" + fresh.authority_certify_attest[4:])
    assert _authority_refused(a, forged, nonce) == \
        "authority certification is not a TPM-generated TPM2_Certify attestation"


def test_a_primary_as_the_authority_is_refused(attested: Attested) -> None:
    """A primary's name depends on its template only: anyone can create it again with an authValue
    of their own and satisfy PolicySecret. The storage key (a primary, userWithAuth, fixedTPM...)
    passed off as the authority is no child of the storage key: its qualified name says so."""
    a = attested
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    forged = dataclasses.replace(fresh, authority_public=fresh.storage_key_public,
                                 authority_certify_attest=fresh.certify_attest,
                                 authority_certify_signature=fresh.certify_signature)
    assert _authority_refused(a, forged, nonce) == "the unseal authority is not a child of the certified storage key"


def test_an_authority_not_used_by_its_auth_value_is_refused(attested: Attested) -> None:
    """A child of the storage key, but a sealed data object (no userWithAuth, data from outside)."""
    a = attested
    tpm = a.agent.tpm
    tpm.flush(a.agent.ek)   # three object slots: the storage key, the AK, the object certified
    private, public = tpm.create_sealed(a.agent.storage_key, b"not an authority", bytes(32))
    loaded = tpm.load(a.agent.storage_key, private, public)
    try:
        nonce = a.validator.new_nonce()
        certification = tpm.certify(loaded, a.agent.ak, nonce)
    finally:
        tpm.flush(loaded)
    forged = dataclasses.replace(a.agent.requote(a.evidence, nonce), authority_public=public,
                                 authority_certify_attest=certification.attest,
                                 authority_certify_signature=certification.signature)
    assert _authority_refused(a, forged, nonce).startswith(
        "unseal authority is not a TPM-made fixedTPM object used by its authValue")


def test_an_authority_left_uncertified_stands_only_if_this_ak_certified_it_before(attested: Attested) -> None:
    a = attested   # the fixture's validation proved the binding and certified this authority
    nonce = a.validator.new_nonce()
    bare = dataclasses.replace(a.agent.requote(a.evidence, nonce), authority_certify_attest=b"",
                               authority_certify_signature=b"", certify_attest=b"", certify_signature=b"")
    result = a.validator.validate(bare, nonce, b"")   # no challenge: the binding is known
    assert result.passed, result.summary()
    assert result.check("unseal_authority_certified").detail == \
        "AK certified this unseal authority before (its binding still holds)"
    # another object, never certified, cannot ride on that record
    nonce = a.validator.new_nonce()
    other = dataclasses.replace(bare, authority_public=a.agent.storage_key.public.marshal())
    detail = a.validator.validate(other, nonce, b"").check("unseal_authority_certified").detail
    assert detail == "no certification of the unseal authority, and none by this AK is on record"


def test_a_half_stripped_authority_certification_is_checked_not_replaced_by_the_record(attested: Attested) -> None:
    a = attested   # the fixture's validation put this AK's certification of the authority on record
    for stripped in ({"authority_certify_signature": b""}, {"authority_certify_attest": b""}):
        nonce = a.validator.new_nonce()
        forged = dataclasses.replace(a.agent.requote(a.evidence, nonce), **stripped)
        detail = _authority_refused(a, forged, nonce)
        assert detail != "AK certified this unseal authority before (its binding still holds)", stripped


def test_the_authority_record_stands_in_only_while_the_aks_binding_holds(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    bare = dataclasses.replace(a.agent.requote(a.evidence, nonce), authority_certify_attest=b"",
                               authority_certify_signature=b"")
    result = a.validator.validate(bare, nonce, b"not the credential's secret")   # the binding fails now
    assert not result.check("ak_bound_to_ek").passed
    assert result.check("unseal_authority_certified").detail == \
        "no certification of the unseal authority, and none by this AK is on record"


def test_an_authority_is_put_on_record_only_by_a_validation_that_proved_the_aks_binding(attested: Attested) -> None:
    from mcim_hil.m2me.tre import UNSEAL_AUTHORITY_HANDLE, create_unseal_authority
    a = attested
    tpm = a.agent.tpm
    tpm.flush(a.agent.ek)   # three object slots: the storage key, the AK, the new object
    other = create_unseal_authority(tpm, a.agent.storage_key, handle=UNSEAL_AUTHORITY_HANDLE - 1)
    try:
        public = tpm.read_public(other.handle).marshal()
        nonce = a.validator.new_nonce()
        certification = tpm.certify(other, a.agent.ak, nonce)
        certified = dataclasses.replace(a.agent.requote(a.evidence, nonce), authority_public=public,
                                        authority_certify_attest=certification.attest,
                                        authority_certify_signature=certification.signature)
        result = a.validator.validate(certified, nonce, b"not the credential's secret")
        assert not result.check("ak_bound_to_ek").passed and result.check("unseal_authority_certified").passed
        nonce = a.validator.new_nonce()
        bare = dataclasses.replace(a.agent.requote(a.evidence, nonce), authority_public=public,
                                   authority_certify_attest=b"", authority_certify_signature=b"")
        assert _authority_refused(a, bare, nonce, b"") == \
            "no certification of the unseal authority, and none by this AK is on record"
    finally:
        tpm.evict(other.handle)


def test_the_platforms_boot_pcrs_are_bound_as_quoted_and_other_pcrs_must_replay(m2mes: M2mes) -> None:
    """tpm.seal_pcrs on a hardware TPM: PCRs 0-7 hold the firmware's boot measurements, which the
    M2ME's log does not hold. They are quoted and sealed to as they are; PCR 11, outside the boot
    range and named by no event, must still replay to its initial value."""
    from mcim_hil.network.attestation import PlatformValidator
    with Swtpm(shared_identity=True) as swtpm, Tpm.open(swtpm.tcti) as tpm:
        tpm.pcr_extend(0, hashlib.sha256(b"platform firmware").digest())   # what a BIOS measured
        agent = M2meAgent.boot(tpm, PLATFORM)
        agent.pfc = der(m2mes.platform_credential(agent.ak_public, PLATFORM))
        for selection in ((0, 8, 9, 10), (8, 9, 10, 11), (0, 8, 9, 10, 11)):
            validator = PlatformValidator(ek_roots_of(swtpm), m2mes.ca.certificate, m2mes.responder.respond,
                                          selection, m2mes.reference)
            challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
            nonce = validator.new_nonce()
            result = validator.validate(agent.evidence(challenge, nonce, pcrs=selection), nonce, secret)
            replay = result.check("event_log_replay")
            assert replay.passed and result.passed, result.summary()
            if 0 in selection:
                assert replay.detail.endswith("boot PCRs 0 bound as quoted")
                assert result.pcr_values[0] == tpm.pcr_read([0])[0]   # what the SHO seals to
        tpm.pcr_extend(11, hashlib.sha256(b"an unlogged component").digest())
        validator = PlatformValidator(ek_roots_of(swtpm), m2mes.ca.certificate, m2mes.responder.respond,
                                      (0, 8, 9, 10, 11), m2mes.reference)
        challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
        nonce = validator.new_nonce()
        replay = validator.validate(agent.evidence(challenge, nonce, pcrs=(0, 8, 9, 10, 11)), nonce,
                                    secret).check("event_log_replay")
        assert (replay.passed, replay.detail) == (False, "replaying the event log does not give the reported PCR 11")
        # a boot PCR the M2ME's own log names is replayed like any other: an event claimed for PCR 0
        # that the quoted value does not come from is refused, not passed as "bound as quoted"
        from mcim_hil.network.evidence import Measurement
        validator = PlatformValidator(ek_roots_of(swtpm), m2mes.ca.certificate, m2mes.responder.respond,
                                      (0, 8, 9, 10), m2mes.reference)
        challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
        nonce = validator.new_nonce()
        evidence = agent.evidence(challenge, nonce, pcrs=(0, 8, 9, 10))
        claimed = dataclasses.replace(evidence, measurements=[
            *evidence.measurements, Measurement("boot loader", 0, hashlib.sha256(b"not what ran").digest())])
        replay = validator.validate(claimed, nonce, secret).check("event_log_replay")
        assert (replay.passed, replay.detail) == (False, "replaying the event log does not give the reported PCR 0")


# --- the EK and AK public areas (what the TPM says the keys are) ------------------------------

def public_with(tpm2b_public: bytes, *, set_bits: int = 0, clear_bits: int = 0, other_key: bool = False) -> bytes:
    """The same marshalled TPM2B_PUBLIC with attributes changed, or another key in it."""
    public, _ = TPM2B_PUBLIC.unmarshal(tpm2b_public)
    area = public.publicArea
    area.objectAttributes = (int(area.objectAttributes) | set_bits) & ~clear_bits
    if other_key:
        if area.type == 0x0023:  # TPM_ALG_ECC: flip a bit of x
            x = bytearray(bytes(area.unique.ecc.x))
            x[-1] ^= 1
            area.unique.ecc.x = bytes(x)
        else:
            n = bytearray(bytes(area.unique.rsa))
            n[-1] ^= 2
            area.unique.rsa = bytes(n)
    return public.marshal()


@pytest.mark.parametrize("change", [{"set_bits": TPMA_OBJECT.SIGN_ENCRYPT}, {"clear_bits": TPMA_OBJECT.RESTRICTED}],
                         ids=["can sign", "not restricted"])
def test_an_ek_public_area_with_other_attributes_is_refused(attested: Attested, change: dict) -> None:
    evidence, nonce, secret = attested.fresh()
    forged = dataclasses.replace(evidence, ek_public=public_with(evidence.ek_public, **change))
    passed, detail = attested.check(forged, nonce, secret, "ek_public_matches_certificate")
    assert not passed and detail.startswith("EK attributes [") and detail.endswith(
        "are not those of an endorsement key")


def test_an_ek_public_area_with_another_key_than_the_certificate_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    forged = dataclasses.replace(evidence, ek_public=public_with(evidence.ek_public, other_key=True))
    assert attested.check(forged, nonce, secret, "ek_public_matches_certificate") == (
        False, "EK public area holds a different key than the EK certificate")


def test_evidence_naming_another_ek_than_the_challenged_one_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    forged = dataclasses.replace(evidence, ek_public=public_with(evidence.ek_public, other_key=True))
    assert attested.check(forged, nonce, secret, "ak_bound_to_ek") == (
        False, "evidence names another EK than the one challenged")


def test_evidence_naming_another_ak_than_the_challenged_one_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    forged = dataclasses.replace(evidence, ak_public=public_with(evidence.ak_public, other_key=True))
    assert attested.check(forged, nonce, secret, "ak_bound_to_ek") == (
        False, "evidence names another AK than the one challenged")


def test_an_ak_that_can_also_decrypt_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    forged = dataclasses.replace(evidence, ak_public=public_with(evidence.ak_public, set_bits=TPMA_OBJECT.DECRYPT))
    assert attested.check(forged, nonce, secret, "ak_attributes") == (False, "AK is also a decryption key")


def test_an_ak_not_fixed_to_the_tpm_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    forged = dataclasses.replace(evidence, ak_public=public_with(evidence.ak_public, clear_bits=TPMA_OBJECT.FIXEDTPM))
    assert attested.check(forged, nonce, secret, "ak_attributes") == (False, "AK lacks fixedTPM")


AK_ATTRIBUTES = (TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
                 | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT)


def test_an_ak_that_is_no_asymmetric_key_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    hmac_key = TPM2B_PUBLIC.parse("hmac", objectAttributes=AK_ATTRIBUTES).marshal()
    forged = dataclasses.replace(evidence, ak_public=hmac_key)
    assert attested.check(forged, nonce, secret, "ak_attributes") == (False, "AK type 0x0008 is not ECC or RSA")


def test_an_rsa_ak_with_the_right_attributes_passes_the_attribute_check(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    rsa_ak = TPM2B_PUBLIC.parse("rsa2048:rsassa-sha256", objectAttributes=AK_ATTRIBUTES).marshal()
    passed, detail = attested.check(dataclasses.replace(evidence, ak_public=rsa_ak), nonce, secret, "ak_attributes")
    assert passed and detail.startswith("restricted signing key: fixedTPM")


# --- the quote's own header ---------------------------------------------------------------------

def test_a_quote_without_the_tpm_generated_magic_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    forged = dataclasses.replace(evidence, quote_attest=b"\x00\x00\x00\x00" + evidence.quote_attest[4:])
    assert attested.check(forged, nonce, secret, "quote_signature") == (
        False, "quote magic 0x00000000 is not TPM_GENERATED_VALUE")


def test_a_certification_passed_off_as_a_quote_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    forged = dataclasses.replace(evidence, quote_attest=evidence.certify_attest,
                                 quote_signature=evidence.certify_signature)
    assert attested.check(forged, nonce, secret, "quote_signature") == (
        False, "attestation type 0x8017 is not a quote")


# --- PCR values and the event log ---------------------------------------------------------------

def test_a_reported_pcr_value_of_the_wrong_size_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    pcrs = dict(evidence.pcr_values)
    pcrs[min(pcrs)] = pcrs[min(pcrs)][:20]
    assert attested.check(dataclasses.replace(evidence, pcr_values=pcrs), nonce, secret, "pcr_digest") == (
        False, "a reported PCR value is not 32 bytes")


def test_reported_pcr_values_other_than_the_quoted_ones_are_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    pcrs = {pcr: bytes(32) for pcr in evidence.pcr_values}
    assert attested.check(dataclasses.replace(evidence, pcr_values=pcrs), nonce, secret, "pcr_digest") == (
        False, "quote pcrDigest differs from the digest of the reported PCR values")


def test_an_event_in_a_pcr_the_quote_does_not_cover_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    events = [*evidence.measurements, Measurement("debugger", 16, bytes(32))]
    assert attested.check(dataclasses.replace(evidence, measurements=events), nonce, secret, "event_log_replay") == (
        False, "'debugger' measured into PCR 16, which the quote does not cover")


def test_an_event_that_is_not_sha256_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    first = evidence.measurements[0]
    events = [Measurement(first.component, first.pcr, first.digest[:20]), *evidence.measurements[1:]]
    assert attested.check(dataclasses.replace(evidence, measurements=events), nonce, secret, "event_log_replay") == (
        False, f"{first.component!r} digest is not SHA-256")


# --- reference values ---------------------------------------------------------------------------

def reference(*, model: str | None = MODEL, extra: dict[str, bytes] | None = None) -> ReferenceValues:
    digests = {name: hashlib.sha256(data).digest() for name, _, data in COMPONENTS}
    return ReferenceValues({**digests, **(extra or {})}, model=model)


def test_reference_values_without_a_model_apply_to_any_model(attested: Attested) -> None:
    attested.validator.update_reference_values(reference(model=None))
    evidence, nonce, secret = attested.fresh()
    passed, detail = attested.check(evidence, nonce, secret, "reference_values")
    assert passed and detail.startswith("components match: ")


def test_reference_values_for_another_model_are_refused(attested: Attested) -> None:
    attested.validator.update_reference_values(reference(model="mk2"))
    evidence, nonce, secret = attested.fresh()
    assert attested.check(evidence, nonce, secret, "reference_values") == (
        False, f"PfC model {MODEL!r} has no reference values (have 'mk2')")


def test_a_component_without_a_reference_value_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    renamed = [dataclasses.replace(m, component="rootkit") if i == 0 else m
               for i, m in enumerate(evidence.measurements)]
    assert attested.check(dataclasses.replace(evidence, measurements=renamed), nonce, secret, "reference_values") == (
        False, "component 'rootkit' has no reference value")


def test_a_reference_component_that_was_not_measured_is_refused(attested: Attested) -> None:
    attested.validator.update_reference_values(reference(extra={"radio-firmware": bytes(32)}))
    evidence, nonce, secret = attested.fresh()
    assert attested.check(evidence, nonce, secret, "reference_values") == (
        False, "components not measured: radio-firmware")


# --- the PfC ------------------------------------------------------------------------------------

def test_evidence_claiming_another_platform_than_the_pfc_is_refused(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    forged = dataclasses.replace(evidence, platform_id="m2me-someone-else")
    assert attested.check(forged, nonce, secret, "pfc_names_platform") == (
        False, f"PfC names platform {PLATFORM!r}, evidence claims 'm2me-someone-else'")


def test_ocsp_is_not_asked_about_a_pfc_of_another_issuer(attested: Attested) -> None:
    evidence, nonce, secret = attested.fresh()
    other_ca = pki.CertificateAuthority.create("Other M2MES CA")
    pfc = pki.issue_platform_credential(other_ca, attestation_key(attested), PLATFORM, model=MODEL)
    forged = dataclasses.replace(evidence, pfc=der(pfc))
    assert attested.check(forged, nonce, secret, "pfc_status_ocsp") == (
        False, "not asked: the PfC was not issued by the M2MES CA")


def attestation_key(a: Attested):
    from mcim_hil.network.attestation import tpm_public_key
    return tpm_public_key(a.agent.ak_public)


# --- the TPM clock --------------------------------------------------------------------------------

def test_a_quote_after_a_power_loss_is_refused_on_the_clock(m2mes: M2mes) -> None:
    with Swtpm(shared_identity=True) as swtpm:
        swtpm.power_loss()  # power off without TPM2_Shutdown: clockInfo.safe is 0 from now on
        with Tpm.open(swtpm.tcti) as tpm:
            agent = M2meAgent.boot(tpm, PLATFORM)
            agent.pfc = der(m2mes.platform_credential(agent.ak_public, PLATFORM))
            validator = m2mes.validator(ek_roots_of(swtpm))
            challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
            nonce = validator.new_nonce()
            result = validator.validate(agent.evidence(challenge, nonce), nonce, secret)
    assert [c.name for c in result.checks if not c.passed] == ["clock"]
    assert result.check("clock").detail == "clockInfo.safe is 0: the TPM clock may have gone backwards"


# --- what the storage key must be -----------------------------------------------------------------

AES128_CFB = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits=TPMU_SYM_KEY_BITS(aes=128),
                                 mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB))


def certified(a: Attested, public: TPM2B_PUBLIC, handle: ESYS_TR, nonce: bytes, evidence: Evidence) -> Evidence:
    try:
        certification = a.agent.tpm.certify(handle, a.agent.ak, nonce)
    finally:
        a.agent.tpm.flush(handle)
    return dataclasses.replace(evidence, storage_key_public=public.marshal(), certify_attest=certification.attest,
                               certify_signature=certification.signature)


def test_a_certified_storage_key_that_is_not_fixed_to_the_tpm_is_refused(attested: Attested) -> None:
    """A restricted decryption key made outside the TPM and imported: the TPM certifies it,
    but the MCIM sealed to it could be unwrapped wherever its private key is."""
    a = attested
    evidence, nonce, secret = a.fresh()
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = TPM2B_PUBLIC.from_pem(pem, objectAttributes=TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
                                   | TPMA_OBJECT.USERWITHAUTH, symmetric=AES128_CFB)
    sensitive = TPM2B_SENSITIVE.from_pem(pem)
    sensitive.sensitiveArea.seedValue = os.urandom(32)  # a parent's seed, sized to its nameAlg
    _, duplicate, seed = wrap(a.agent.storage_key.public.publicArea, public, sensitive)
    a.agent.tpm.flush(a.agent.ek)  # swtpm has 3 object slots: AK, storage key, and this one
    private = a.agent.tpm.import_sealed(a.agent.storage_key, public, duplicate, seed)
    handle = a.agent.tpm.load(a.agent.storage_key, private, public)
    passed, detail = a.check(certified(a, public, handle, nonce, evidence), nonce, secret, "storage_key_certified")
    assert not passed and detail.startswith("storage key is not a fixedTPM restricted decryption key (attributes ")


def test_a_certified_symmetric_storage_parent_cannot_take_an_mcim(attested: Attested) -> None:
    """A TPM-made restricted decryption key of type SYMCIPHER: a valid parent inside the TPM,
    but it has no public key the SHO could wrap to. The driver only makes the harness's own
    templates, so this key is made through the driver's ESAPI context."""
    a = attested
    evidence, nonce, secret = a.fresh()
    template = TPM2B_PUBLIC.parse("aes128cfb", objectAttributes=(
        TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT))
    a.agent.tpm.flush(a.agent.ek)  # swtpm has 3 object slots: AK, storage key, and this one
    handle, public, *_ = a.agent.tpm._ctx.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.OWNER)
    passed, detail = a.check(certified(a, public, handle, nonce, evidence), nonce, secret, "storage_key_certified")
    assert (passed, detail) == (False, "storage key cannot be a parent (no symmetric algorithm)")


def test_a_certification_without_the_tpm_generated_magic_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    forged = dataclasses.replace(fresh, certify_attest=b"\x00\x00\x00\x00" + fresh.certify_attest[4:])
    assert a.refused_by(forged, nonce) == "certification is not a TPM-generated TPM2_Certify attestation"


def test_an_rsa_storage_key_made_by_the_tpm_is_accepted(attested: Attested) -> None:
    a = attested
    evidence, nonce, secret = a.fresh()
    template = TPM2B_PUBLIC.parse("rsa2048:aes128cfb", objectAttributes=(
        TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT))
    a.agent.tpm.flush(a.agent.ek)
    handle, public, *_ = a.agent.tpm._ctx.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.OWNER)
    passed, detail = a.check(certified(a, public, handle, nonce, evidence), nonce, secret, "storage_key_certified")
    assert (passed, detail) == (True, "AK certified a fixedTPM restricted decryption key for this nonce")


# --- the verdict ------------------------------------------------------------------------------------

def test_the_verdict_names_the_validated_components_and_model_only_when_integrity_holds(attested: Attested) -> None:
    a = attested
    evidence, nonce, secret = a.fresh()
    good = a.validator.validate(evidence, nonce, secret)
    assert good.passed and good.validated_components == [name for name, _, _ in COMPONENTS]
    assert (good.platform_id, good.model) == (PLATFORM, MODEL) and good.pcr_values == evidence.pcr_values
    # a quote over another nonce: reference values still match, but the quote vouches for nothing
    nonce = a.validator.new_nonce()
    stale = a.agent.requote(a.evidence, a.validator.new_nonce(), certify_nonce=nonce)
    result = a.validator.validate(stale, nonce, a.secret)
    assert result.check("reference_values").passed and not result.check("quote_nonce").passed
    assert (result.validated_components, result.pcr_values) == ([], {})


def test_spent_nonces_are_remembered_up_to_4096(attested: Attested) -> None:
    """The PVA bounds what it remembers of spent nonces; older ones are refused as unknown."""
    v = attested.validator
    spent = [v.new_nonce() for _ in range(4097)]
    for nonce in spent:
        assert v._consume_nonce(nonce) is None
    assert v._consume_nonce(spent[1]) == "nonce was already used"
    assert v._consume_nonce(spent[0]) == "nonce was not issued by this PVA"


def test_a_nonce_of_the_minimum_size_is_long_enough(attested: Attested) -> None:
    v = attested.validator
    assert v._consume_nonce(os.urandom(16)) == "nonce was not issued by this PVA"  # 16 bytes: size is fine
    assert v._consume_nonce(os.urandom(15)) == "nonce has 15 bytes, fewer than 16"


# --- what the PVA remembers and accepts ---------------------------------------------------------------

def test_the_clock_history_moves_only_forward_and_only_on_trusted_evidence(attested: Attested,
                                                                            m2mes: M2mes) -> None:
    a = attested
    history: dict[str, tuple[int, int]] = {}  # the mapping a persistent PVA would hand in
    a.validator = m2mes.validator(ek_roots_of(a.swtpm), clock_history=history)
    evidence, nonce, secret = a.fresh()
    assert a.validator.validate(evidence, nonce, secret).passed
    counts = history[PLATFORM]  # first sight: remembered
    history[PLATFORM] = (-1, -1)
    evidence, nonce, secret = a.fresh()
    a.validator.validate(evidence, nonce, secret)
    assert history[PLATFORM] == counts  # newer counts replace older ones
    history[PLATFORM] = (10**6, 0)
    evidence, nonce, secret = a.fresh()
    result = a.validator.validate(evidence, nonce, secret)
    assert result.check("clock").detail.startswith(f"resetCount/restartCount {counts} went back")
    assert history[PLATFORM] == (10**6, 0)  # never moved back
    history[PLATFORM] = (-1, -1)
    evidence, _, secret = a.fresh()
    a.validator.validate(evidence, os.urandom(32), secret)  # a nonce this PVA never issued: untrusted
    assert history[PLATFORM] == (-1, -1)


def test_authenticity_only_validation_still_runs_and_fails_the_authenticity_checks(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    stale = a.agent.requote(a.evidence, nonce, certify_nonce=a.nonce, authority_nonce=nonce)
    result = a.validator.validate(stale, nonce, a.secret, check_integrity=False)
    assert not result.passed and not result.integrity_checked
    assert [c.name for c in result.checks if not c.passed] == ["storage_key_certified"]
    assert {c.name for c in result.checks}.isdisjoint({"pcr_selection", "pcr_digest", "event_log_replay",
                                                        "reference_values"})
    assert "ek_certificate_chain" in {c.name for c in result.checks}


def test_reference_values_that_are_not_sha256_are_refused(attested: Attested) -> None:
    with pytest.raises(AttestationError, match="^reference value for 'firmware' is not a SHA-256 digest$"):
        attested.validator.update_reference_values({"firmware": bytes(20)})


# --- whether a certificate is over a TPM key (the EK certificate, the PfC) ------------------------------

def _area_and_key(kind: str):
    from cryptography.hazmat.primitives.asymmetric import rsa
    private = rsa.generate_private_key(3 if kind == "rsa-e3" else 65537, 2048) if kind.startswith("rsa") \
        else ec.generate_private_key(
        ec.SECP384R1() if kind == "p384" else ec.SECP256R1())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return TPM2B_PUBLIC.from_pem(pem), private.public_key()


@pytest.mark.parametrize(("area_kind", "cert_kind", "same"), [
    ("p256", "p256", True), ("rsa", "rsa", True), ("rsa-e3", "rsa-e3", True), ("p256", "p384", False),
    ("p256", "rsa", False), ("rsa", "p256", False), ("rsa", "rsa", False)])
def test_a_certificate_is_over_a_tpm_key_only_for_the_same_key_type_curve_and_value(
        area_kind: str, cert_kind: str, same: bool) -> None:
    from mcim_hil.network.attestation import _certifies, parse_public
    public, key = _area_and_key(area_kind)
    if not same:
        _, key = _area_and_key(cert_kind)  # another key: for rsa/rsa another modulus, same exponent
    cert = pki.CertificateAuthority.create("EK CA").issue(key, "key")
    assert _certifies(cert, parse_public(public.marshal())) is same


def test_a_tpm_key_on_a_curve_the_pva_does_not_know_is_over_no_certificate() -> None:
    from mcim_hil.network.attestation import _certifies, parse_public
    public, key = _area_and_key("p256")
    public.publicArea.parameters.eccDetail.curveID = 0x0020  # TPM_ECC_SM2_P256
    assert _certifies(pki.CertificateAuthority.create("EK CA").issue(key, "key"), parse_public(public.marshal())) is False


def test_unsigned_reference_values_do_not_verify(m2mes: M2mes) -> None:
    with pytest.raises(AttestationError, match="^reference values are not signed$"):
        reference().verify(m2mes.ca.certificate.public_key())


# --- TPMT_SIGNATURE verification (quotes and certifications) -----------------------------------------

def _tpmt(sig_alg: int, hash_alg: int, *parts: bytes) -> bytes:
    return sig_alg.to_bytes(2, "big") + hash_alg.to_bytes(2, "big") + b"".join(
        len(p).to_bytes(2, "big") + p for p in parts)


def _signed(kind: str, data: bytes) -> tuple[object, bytes, object]:
    """(TpmPublic, marshalled TPMT_SIGNATURE over data, public key) with a software key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from mcim_hil.network.attestation import parse_public
    if kind == "ecdsa":
        private = ec.generate_private_key(ec.SECP256R1())
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        signature = _tpmt(0x0018, 0x000B, r.to_bytes(32, "big"), s.to_bytes(32, "big"))
    else:
        private = rsa.generate_private_key(65537, 2048)
        pad = padding.PKCS1v15() if kind == "rsassa" else padding.PSS(
            mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        signature = _tpmt(0x0014 if kind == "rsassa" else 0x0016, 0x000B, private.sign(data, pad, hashes.SHA256()))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return parse_public(TPM2B_PUBLIC.from_pem(pem).marshal()), signature, private.public_key()


@pytest.mark.parametrize("kind", ["ecdsa", "rsassa", "rsapss"])
def test_tpm_signatures_verify_and_refuse_trailing_bytes_and_other_data(kind: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from mcim_hil.network.attestation import TpmStructureError, verify_tpm_signature
    area, signature, key = _signed(kind, b"attested")
    assert verify_tpm_signature(area, signature, b"attested") == 0x000B  # the key taken from the area
    assert verify_tpm_signature(area, signature, b"attested", key) == 0x000B
    with pytest.raises(TpmStructureError, match="TPMT_SIGNATURE"):
        verify_tpm_signature(area, signature + b"\0", b"attested", key)
    with pytest.raises(InvalidSignature):
        verify_tpm_signature(area, signature, b"forged", key)


def test_a_tpm_signature_with_a_hash_or_scheme_the_pva_does_not_accept_is_refused() -> None:
    from mcim_hil.network.attestation import TpmStructureError, verify_tpm_signature
    area, signature, key = _signed("ecdsa", b"attested")
    with pytest.raises(TpmStructureError, match="^TPMT_SIGNATURE: hash 0x0004 not accepted$"):  # SHA-1
        verify_tpm_signature(area, signature[:2] + b"\x00\x04" + signature[4:], b"attested", key)
    with pytest.raises(TpmStructureError, match="^TPMT_SIGNATURE: scheme 0x001c not accepted$"):  # SM2
        verify_tpm_signature(area, b"\x00\x1c" + signature[2:], b"attested", key)


def test_a_tpm_signature_of_one_key_type_with_a_key_of_the_other_is_refused() -> None:
    from cryptography.exceptions import InvalidSignature
    from mcim_hil.network.attestation import verify_tpm_signature
    ec_area, ec_signature, ec_key = _signed("ecdsa", b"attested")
    rsa_area, rsa_signature, rsa_key = _signed("rsassa", b"attested")
    with pytest.raises(InvalidSignature, match="^ECDSA signature from a non-ECC key$"):
        verify_tpm_signature(rsa_area, ec_signature, b"attested", rsa_key)
    with pytest.raises(InvalidSignature, match="^RSA signature from a non-RSA key$"):
        verify_tpm_signature(ec_area, rsa_signature, b"attested", ec_key)


def test_an_rsa_certificate_with_the_same_modulus_but_another_exponent_is_over_another_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from mcim_hil.network.attestation import _certifies, parse_public
    public, key = _area_and_key("rsa")
    other = rsa.RSAPublicNumbers(3, key.public_numbers().n).public_key()
    cert = pki.CertificateAuthority.create("EK CA").issue(other, "key")
    assert _certifies(cert, parse_public(public.marshal())) is False


def test_no_challenge_and_no_earlier_binding_is_no_proof(attested: Attested, m2mes: M2mes) -> None:
    """An empty secret means no credential challenge was made: only a binding proven before may
    stand in, and a validator that never saw this AK has none (an empty proof equals no secret)."""
    validator = m2mes.validator(ek_roots_of(attested.swtpm))
    nonce = validator.new_nonce()
    evidence = dataclasses.replace(attested.agent.requote(attested.evidence, nonce), activation_proof=b"")
    check = validator.validate(evidence, nonce, b"").check("ak_bound_to_ek")
    assert (check.passed, check.detail) == (
        False, "no credential challenge answered and no earlier ActivateCredential for this EK and AK")


def test_a_verified_ek_certificate_and_pfc_are_kept_for_the_next_validation(attested: Attested) -> None:
    before = attested.validator.certificate_cache_hits
    evidence, nonce, secret = attested.fresh()
    result = attested.validator.validate(evidence, nonce, secret)
    assert result.passed and result.check("ek_certificate_chain").detail.startswith("EK certificate chains to ")
    assert attested.validator.certificate_cache_hits == before + 2  # the EK certificate's path and the PfC's


# --- a certification the M2ME leaves out: only a recorded one by a still-bound AK stands in ---------

def _without_certification(evidence: Evidence, **kept: bytes) -> Evidence:
    return dataclasses.replace(evidence, **{"certify_attest": b"", "certify_signature": b"", **kept})


def test_a_left_out_certification_stands_on_the_one_this_ak_made_before(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    check = a.validator.validate(_without_certification(a.agent.requote(a.evidence, nonce)), nonce, a.secret) \
        .check("storage_key_certified")
    assert (check.passed, check.detail) == (
        True, "AK certified this fixedTPM restricted decryption key before (its binding still holds)")


def test_a_left_out_certification_with_none_on_record_is_refused(attested: Attested, m2mes: M2mes) -> None:
    validator = m2mes.validator(ek_roots_of(attested.swtpm))  # has seen no certification by this AK
    challenge, secret = validator.credential_challenge(attested.agent.ek_public, attested.agent.ak_public)
    nonce = validator.new_nonce()
    evidence = _without_certification(attested.agent.evidence(challenge, nonce))
    result = validator.validate(evidence, nonce, secret)
    assert result.check("ak_bound_to_ek").passed
    assert [(c.name, c.detail) for c in result.failed] == [
        ("storage_key_certified", "no certification of the storage key, and none by this AK is on record")]


def test_a_left_out_certification_does_not_stand_on_the_record_when_the_ak_binding_fails(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    evidence = _without_certification(a.agent.requote(a.evidence, nonce), activation_proof=b"\x00" * 32)
    result = a.validator.validate(evidence, nonce, a.secret)
    assert [c.name for c in result.failed] == ["ak_bound_to_ek", "storage_key_certified"]
    assert result.check("storage_key_certified").detail == \
        "no certification of the storage key, and none by this AK is on record"


@pytest.mark.parametrize(("kept", "why"), [
    ("certify_attest", "TpmStructureError: TPMT_SIGNATURE: truncated"),        # the attestation without its signature
    ("certify_signature", "certification does not parse: TPMS_ATTEST: truncated"),  # a signature over nothing
])
def test_half_a_certification_is_checked_not_taken_for_left_out(attested: Attested, kept: str, why: str) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    fresh = a.agent.requote(a.evidence, nonce)
    half = _without_certification(fresh, **{kept: getattr(fresh, kept)})
    check = a.validator.validate(half, nonce, a.secret).check("storage_key_certified")
    assert (check.passed, check.detail.startswith(why)) == (False, True), check.detail


def _challenged(validator: PlatformValidator, agent: M2meAgent, *, proof: bytes | None = None,
                certified: bool = True) -> ValidationResult:
    challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
    nonce = validator.new_nonce()
    evidence = agent.evidence(challenge, nonce)
    if proof is not None:
        evidence = dataclasses.replace(evidence, activation_proof=proof)
    return validator.validate(evidence if certified else _without_certification(evidence), nonce, secret)


def test_a_certification_checked_while_the_ak_binding_failed_is_not_recorded(attested: Attested,
                                                                             m2mes: M2mes) -> None:
    validator = m2mes.validator(ek_roots_of(attested.swtpm))
    first = _challenged(validator, attested.agent, proof=b"\x00" * 32)
    assert [c.name for c in first.failed] == ["ak_bound_to_ek"]      # the certification itself verified
    second = _challenged(validator, attested.agent, certified=False)
    assert [(c.name, c.detail) for c in second.failed] == [
        ("storage_key_certified", "no certification of the storage key, and none by this AK is on record")]


def test_a_validator_that_keeps_no_bindings_records_no_certification(attested: Attested, m2mes: M2mes) -> None:
    validator = m2mes.validator(ek_roots_of(attested.swtpm), signature_memo=False)
    assert _challenged(validator, attested.agent).passed
    second = _challenged(validator, attested.agent, certified=False)
    assert [(c.name, c.detail) for c in second.failed] == [
        ("storage_key_certified", "no certification of the storage key, and none by this AK is on record")]


class _SizedRecord(set):
    """The validator's record of certifications, reporting a size it would take millions of
    platforms to reach here: the bound that keeps its memory finite is what is checked."""

    def __init__(self, items: set, size: int) -> None:
        super().__init__(items)
        self.size = size

    def __len__(self) -> int:
        return self.size


@pytest.mark.parametrize(("size", "forgotten"), [(4_000_000, False), (4_000_001, True)])
def test_the_record_of_certifications_is_emptied_once_past_four_million(attested: Attested, size: int,
                                                                        forgotten: bool) -> None:
    a = attested
    other = (b"another AK", b"another storage key")
    a.validator._certified = _SizedRecord({other}, size)
    evidence, nonce, secret = a.fresh()
    assert a.validator.validate(evidence, nonce, secret).passed
    assert (other not in a.validator._certified) is forgotten
    # this AK's certifications recorded: the storage key's and the unseal authority's
    assert len(set(a.validator._certified)) == (2 if forgotten else 3)


# --- the AK's binding is kept only when this validation proved it and every authenticity check held ---

def _unchallenged(validator: PlatformValidator, a: Attested, evidence: Evidence) -> tuple[bool, str]:
    """ak_bound_to_ek of the same evidence with no credential challenge (an empty secret and proof)."""
    nonce = validator.new_nonce()
    check = validator.validate(dataclasses.replace(a.agent.requote(evidence, nonce), activation_proof=b""),
                               nonce, b"").check("ak_bound_to_ek")
    return check.passed, check.detail


NO_BINDING = (False, "no credential challenge answered and no earlier ActivateCredential for this EK and AK")


def test_a_binding_proven_with_every_authenticity_check_is_kept(attested: Attested, m2mes: M2mes) -> None:
    validator = m2mes.validator(ek_roots_of(attested.swtpm))
    challenge, secret = validator.credential_challenge(attested.agent.ek_public, attested.agent.ak_public)
    nonce = validator.new_nonce()
    evidence = attested.agent.evidence(challenge, nonce)
    assert validator.validate(evidence, nonce, secret).passed
    assert _unchallenged(validator, attested, evidence) == (
        True, "AK bound to this EK by an earlier ActivateCredential, its PfC still verified")


def test_a_secret_this_validator_did_not_issue_proves_no_binding_to_keep(attested: Attested, m2mes: M2mes) -> None:
    validator = m2mes.validator(ek_roots_of(attested.swtpm))   # the fixture's challenge came from another
    nonce = validator.new_nonce()
    result = validator.validate(attested.agent.requote(attested.evidence, nonce), nonce, attested.secret)
    assert result.check("ak_bound_to_ek").detail == "ActivateCredential recovered the secret"
    assert _unchallenged(validator, attested, attested.evidence) == NO_BINDING


def test_a_binding_proven_under_a_pfc_of_another_key_is_not_kept(attested: Attested, m2mes: M2mes) -> None:
    validator = m2mes.validator(ek_roots_of(attested.swtpm))
    challenge, secret = validator.credential_challenge(attested.agent.ek_public, attested.agent.ak_public)
    nonce = validator.new_nonce()
    wrong_pfc = der(m2mes.platform_credential(attested.agent.ek_public, PLATFORM))  # certifies the EK, not the AK
    evidence = dataclasses.replace(attested.agent.evidence(challenge, nonce), pfc=wrong_pfc)
    result = validator.validate(evidence, nonce, secret)
    assert result.check("ak_bound_to_ek").passed and [c.name for c in result.failed] == ["pfc_binds_ak"]
    assert _unchallenged(validator, attested, evidence) == NO_BINDING


def test_reference_values_given_for_one_validation_are_the_ones_it_uses(attested: Attested, m2mes: M2mes) -> None:
    """A PVA keeps reference values per model and hands the PfC's model's to the validator,
    whatever values the validator itself was made with."""
    a = attested
    other = ReferenceValues({name: b"\x00" * 32 for name in m2mes.reference.components}, model=MODEL)
    validator = PlatformValidator(ek_roots_of(a.swtpm), m2mes.ca.certificate, m2mes.responder.respond,
                                  list(a.validator.pcr_selection), other)
    challenge, secret = validator.credential_challenge(a.agent.ek_public, a.agent.ak_public)
    nonce = validator.new_nonce()
    evidence = a.agent.evidence(challenge, nonce)
    assert validator.validate(evidence, nonce, secret, reference_values=m2mes.reference).passed
    nonce = validator.new_nonce()
    check = validator.validate(a.agent.requote(evidence, nonce), nonce, b"").check("reference_values")
    assert (check.passed, check.detail) == (False, "component 'bootloader' digest differs from its reference value")


def test_a_kept_ocsp_status_is_used_for_a_pfc_the_validation_did_not_keep(attested: Attested, m2mes: M2mes) -> None:
    """A PfC that names no platform is not kept (pfc_names_platform fails it), so each validation
    reads its status by its own serial: the kept OCSP answer is used, not asked anew."""
    validator = m2mes.validator(ek_roots_of(attested.swtpm))
    nameless = der(m2mes.ca.issue(tpm_public_key(attested.agent.ak_public), PLATFORM,
                                  extended_key_usage=[pki.OID_AK_CERTIFICATE]))
    details = []
    for _ in range(2):
        challenge, secret = validator.credential_challenge(attested.agent.ek_public, attested.agent.ak_public)
        nonce = validator.new_nonce()
        evidence = dataclasses.replace(attested.agent.evidence(challenge, nonce), pfc=nameless)
        details.append(validator.validate(evidence, nonce, secret).check("pfc_status_ocsp").detail)
    assert details == ["OCSP says good", "OCSP said (response kept until its nextUpdate) good"]
    assert (validator.ocsp_requests, validator.ocsp_cache_hits) == (1, 1)


def test_a_binding_proven_under_a_pfc_that_names_no_platform_is_not_kept(attested: Attested, m2mes: M2mes) -> None:
    """Such a PfC verifies but is not kept (only a PfC that names its platform is): no binding may
    rest on it, though pfc_names_platform is not among the checks a binding needs."""
    validator = m2mes.validator(ek_roots_of(attested.swtpm))
    challenge, secret = validator.credential_challenge(attested.agent.ek_public, attested.agent.ak_public)
    nonce = validator.new_nonce()
    nameless = der(m2mes.ca.issue(tpm_public_key(attested.agent.ak_public), PLATFORM,
                                  extended_key_usage=[pki.OID_AK_CERTIFICATE]))
    evidence = dataclasses.replace(attested.agent.evidence(challenge, nonce), pfc=nameless)
    result = validator.validate(evidence, nonce, secret)
    assert result.check("ak_bound_to_ek").passed and result.check("pfc_signature").passed
    assert "pfc_names_platform" in [c.name for c in result.failed]
    assert _unchallenged(validator, attested, evidence) == NO_BINDING
