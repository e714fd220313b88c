"""Messages of 5.1.3.8.4 beyond the first arrows in messages.py: step 12 of 5.1.3.8.4.3 through the
DRF, the DPF's check with the DRF before a management session, the initial-access credential's
renewal, and the sealing parent per SHO of the pre-provisioned variant. messages.py re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Message, _hide

__all__ = ["DrfAuthorisationRequest", "DrfProvisioningAuthorisation", "BootstrapCheck", "BootstrapCheckResult", "AccessCredentialRenewalRequest", "AccessCredentialRenewal", "AccessCredentialRenewed", "AccessCredentialUpdateAck", "AccessCredentialDelivery", "AccessCredentialReplacementOffer", "AccessCredentialReplacementAccept", "AccessCredentialInstalled", "SealingParentRequest", "SealingParentResponse"]


@dataclass(frozen=True, kw_only=True, repr=False)
class DrfAuthorisationRequest(Message):
    """NSHO -> RO (DRF): authorise your DPF to provision this M2MSIMMobj (004 c4p s12)."""

    pcid: str
    m2msimmobj: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class DrfProvisioningAuthorisation(Message):
    """RO (DRF) -> its DPF: an SHO's M2MSIMMobj, authorised on that SHO's behalf (004 c4p s12).
    The answer is a ProvisioningAuthorisationAck."""

    pcid: str
    sho_address: str
    m2msimmobj: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class BootstrapCheck(Message):
    """RO (DPF) -> RO (DRF): did you bootstrap this M2ME, and is this its token? (000 s11)"""

    pcid: str
    bootstrap_token: bytes

    SECRET_FIELDS = _hide("bootstrap_token")


@dataclass(frozen=True, kw_only=True, repr=False)
class BootstrapCheckResult(Message):
    """RO (DRF) -> RO (DPF)."""

    pcid: str
    bootstrapped: bool
    reason: str | None = None


# ---------------------------------------------------------------------------------------
# The initial-access credential's renewal (5.1.3.8.4.3, last paragraphs)

@dataclass(frozen=True, kw_only=True, repr=False)
class AccessCredentialRenewalRequest(Message):
    """M2ME -> RO (DPF): my initial-access credential is about to expire; wrap a new one for
    this storage key (the TRE's, certified by the AK at validation), under the policy of this
    unseal authority (the TRE's, issue 9)."""

    pcid: str
    storage_key_public: bytes   # marshalled TPM2B_PUBLIC
    authority_public: bytes = b""   # marshalled TPM2B_PUBLIC of the TRE's unseal authority


@dataclass(frozen=True, kw_only=True, repr=False)
class AccessCredentialRenewal(Message):
    """RO (DPF) -> CCIF: issue a new credential for this PCID. Answered by AccessCredentialRenewed."""

    pcid: str


@dataclass(frozen=True, kw_only=True, repr=False)
class AccessCredentialRenewed(Message):
    """CCIF -> RO (DPF) and CCIF -> RO (ICF, as an update): the PCID's new K/OPc and lifetime."""

    pcid: str
    k: bytes
    opc: bytes
    amf: bytes
    not_after: float

    SECRET_FIELDS = _hide("k", "opc")


@dataclass(frozen=True, kw_only=True, repr=False)
class AccessCredentialUpdateAck(Message):
    """RO (ICF) -> CCIF."""

    pcid: str


@dataclass(frozen=True, kw_only=True, repr=False)
class AccessCredentialDelivery(Message):
    """RO (DPF) -> M2ME: the new credential as a sealed object for its TRE (TPM2_Import)."""

    pcid: str
    public: bytes
    duplicate: bytes
    seed: bytes
    encryption_key: bytes
    not_after: float

    SECRET_FIELDS = _hide("encryption_key")


@dataclass(frozen=True, kw_only=True, repr=False)
class AccessCredentialReplacementOffer(Message):
    """RO (DPF) -> M2ME: the network initiates the replacement of the initial-access credential."""

    pcid: str


@dataclass(frozen=True, kw_only=True, repr=False)
class AccessCredentialReplacementAccept(Message):
    """M2ME -> RO (DPF): accepted; wrap the new one for this storage key and unseal authority
    (or refused, why)."""

    pcid: str
    accepted: bool
    storage_key_public: bytes = b""
    authority_public: bytes = b""
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class AccessCredentialInstalled(Message):
    """M2ME -> RO (DPF): the answer to an AccessCredentialDelivery the DPF pushed."""

    pcid: str
    success: bool
    detail: str = ""


# ---------------------------------------------------------------------------------------
# Pre-provisioned MCIMs of two SHOs (5.1.3.8.4.2, the variant): a sealing parent per SHO

@dataclass(frozen=True, kw_only=True, repr=False)
class SealingParentRequest(Message):
    """SHO -> M2ME: a storage key of your TRE for my MCIM alone, certified by your AK over this nonce."""

    pcid: str
    nonce: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class SealingParentResponse(Message):
    """M2ME -> SHO: that storage key's public area and its TPM2_Certify by the AK."""

    pcid: str
    storage_key_public: bytes
    certify_attest: bytes
    certify_signature: bytes
