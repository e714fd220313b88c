"""The PVA's storage-key certification rules over evidence from a real TPM (swtpm), each
forgery failing exactly ``storage_key_certified`` with the reason of the rule it breaks.

test_attestation.py replays both nonces together; here the certification alone reuses an old
nonce (the quote is fresh), so only the certify-nonce comparison can catch it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

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
