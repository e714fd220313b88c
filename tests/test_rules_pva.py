"""The PVA's storage-key certification rules over evidence from a real TPM (swtpm), each
forgery failing exactly ``storage_key_certified`` with the reason of the rule it breaks.

test_attestation.py replays both nonces together; here the certification alone reuses an old
nonce (the quote is fresh), so only the certify-nonce comparison can catch it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from tpm2_pytss.constants import TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC

from attestation_support import M2meAgent, M2mes, der, ek_roots_of
from mcim_hil.drivers.tpm import Tpm
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.network.attestation import CredentialChallenge, Evidence, PlatformValidator, ValidationResult

PLATFORM = "m2me-rules-0001"


@dataclasses.dataclass
class Attested:
    agent: M2meAgent
    validator: PlatformValidator
    evidence: Evidence
    nonce: bytes
    secret: bytes

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
        yield Attested(agent, validator, evidence, nonce, secret)


def test_certification_over_an_old_nonce_is_refused(attested: Attested) -> None:
    a = attested
    nonce = a.validator.new_nonce()
    stale = a.agent.requote(a.evidence, nonce, certify_nonce=a.nonce)  # fresh quote, old certification
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
