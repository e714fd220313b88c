"""Test support for the PVA / PKI / MCIM tests: an M2MES with its CA and OCSP responder, and
an M2ME agent that measures its components and gathers evidence from a real TPM (swtpm)
through mcim_hil.drivers.tpm, as the device side would.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mcim_hil.drivers.tpm import Ak, AuthObject, Ek, StorageKey, Tpm
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.m2me.tre import create_unseal_authority
from mcim_hil.network import attestation, pki

PCRS = (8, 9, 10)
# (component, PCR, the bytes the M2ME measures)
COMPONENTS: tuple[tuple[str, int, bytes], ...] = (
    ("bootloader", 8, b"mcim-hil bootloader 1.4.2"),
    ("firmware", 9, b"mcim-hil m2me firmware 7.1"),
    ("m2me-agent", 10, b"mcim-hil provisioning agent 0.3"),
)
MODEL = "mcim-hil-m2me-mk1"


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def ek_roots_of(swtpm: Swtpm) -> list[x509.Certificate]:
    """The local CA chain swtpm_setup made (issuer, root): what a PVA pins for this lab's TPMs."""
    return [x509.load_pem_x509_certificate(p.read_bytes()) for p in swtpm.ek_ca_certificates()]


@dataclass
class M2mes:
    """The equipment supplier: PfC CA, OCSP responder, signed reference values."""
    ca: pki.CertificateAuthority
    responder: pki.OcspResponder
    reference: attestation.ReferenceValues

    @classmethod
    def create(cls, components: Sequence[tuple[str, int, bytes]] = COMPONENTS) -> M2mes:
        ca = pki.CertificateAuthority.create("mcim-hil M2MES CA", organization="mcim-hil M2MES")
        reference = attestation.ReferenceValues(
            {name: hashlib.sha256(data).digest() for name, _, data in components}, model=MODEL).sign(ca)
        return cls(ca, pki.OcspResponder(ca), reference)

    def platform_credential(self, ak_public: bytes, platform_id: str) -> x509.Certificate:
        return pki.issue_platform_credential(self.ca, attestation.tpm_public_key(ak_public), platform_id,
                                             model=MODEL)

    def validator(self, ek_roots: Sequence[x509.Certificate], **kwargs: Any) -> attestation.PlatformValidator:
        return attestation.PlatformValidator(ek_roots, self.ca.certificate, self.responder.respond, PCRS,
                                             self.reference, **kwargs)


@dataclass
class M2meAgent:
    """The device side: keys in the TPM, measured components, evidence on request."""
    tpm: Tpm
    platform_id: str
    ek: Ek
    ak: Ak
    storage_key: StorageKey
    authority: AuthObject | None = None   # the TRE's unseal authority (issue 9)
    pfc: bytes = b""
    measurements: list[attestation.Measurement] = field(default_factory=list)

    @classmethod
    def boot(cls, tpm: Tpm, platform_id: str, components: Sequence[tuple[str, int, bytes]] = COMPONENTS
             ) -> M2meAgent:
        """Measure each component into its PCR (a just-reset TPM), then make EK, AK, storage key."""
        measurements = [attestation.Measurement(name, pcr, tpm.measure(pcr, data)) for name, pcr, data in components]
        storage_key = tpm.create_storage_key()
        authority = create_unseal_authority(tpm, storage_key)   # before the EK and AK: 3 object slots
        return cls(tpm, platform_id, tpm.ek(), tpm.create_ak(), storage_key, authority,
                   measurements=measurements)

    def _authority_evidence(self, nonce: bytes) -> dict[str, bytes]:
        assert self.authority is not None
        certification = self.tpm.certify(self.authority, self.ak, nonce)
        return {"authority_public": self.tpm.read_public(self.authority.handle).marshal(),
                "authority_certify_attest": certification.attest,
                "authority_certify_signature": certification.signature}

    @property
    def ek_public(self) -> bytes:
        return self.ek.public.marshal()

    @property
    def ak_public(self) -> bytes:
        return self.ak.public.marshal()

    def evidence(self, challenge: attestation.CredentialChallenge, nonce: bytes, *,
                 certify_nonce: bytes | None = None, pcrs: Sequence[int] = PCRS) -> attestation.Evidence:
        assert self.ek.certificate is not None
        proof = self.tpm.activate_credential(self.ak, self.ek, challenge.credential_blob, challenge.encrypted_secret)
        quote = self.tpm.quote(self.ak, nonce, pcrs)
        certification = self.tpm.certify(self.storage_key, self.ak, certify_nonce if certify_nonce else nonce)
        return attestation.Evidence(
            platform_id=self.platform_id, ek_certificate=der(self.ek.certificate), ek_public=self.ek_public,
            ak_public=self.ak_public, activation_proof=proof, quote_attest=quote.attest,
            quote_signature=quote.signature, pcr_values=dict(quote.pcr_values),
            measurements=list(self.measurements), pfc=self.pfc, storage_key_public=self.storage_key.public.marshal(),
            certify_attest=certification.attest, certify_signature=certification.signature,
            **self._authority_evidence(nonce))

    def requote(self, evidence: attestation.Evidence, nonce: bytes, *, certify_nonce: bytes | None = None,
                authority_nonce: bytes | None = None) -> attestation.Evidence:
        """Same evidence, new quote and certifications (no new credential activation). The unseal
        authority's certification is over ``authority_nonce``, else ``certify_nonce``, else ``nonce``."""
        quote = self.tpm.quote(self.ak, nonce, PCRS)
        certification = self.tpm.certify(self.storage_key, self.ak, certify_nonce if certify_nonce else nonce)
        return dataclasses.replace(evidence, quote_attest=quote.attest, quote_signature=quote.signature,
                                   pcr_values=dict(quote.pcr_values), certify_attest=certification.attest,
                                   certify_signature=certification.signature,
                                   **self._authority_evidence(authority_nonce or certify_nonce or nonce))
