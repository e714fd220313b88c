"""The initial network access credential as the network delivers a renewed one to a TRE
(TR 33.812 5.1.3.8.4.3, last paragraphs: "delivered as a MCIM to the M2ME ... stored, and used
exclusively in the TRE"): its record format, and a sealed object wrapped for the TRE's storage
key under the TRE's access-credential policy, PolicySecret(the TRE's unseal authority) +
PolicyCommandCode(Unseal), so that TPM2_Import accepts it only in that TPM and only the TRE agent
(who alone holds the authority's authValue) can unseal it, in any PCR state: the M2ME must
always be able to fall back to it. (PolicySecret(owner) with the empty owner auth of a bench
TPM let any local process unseal it.)
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from .mcim import (
    MAX_SYM_DATA,
    TPM_CC_POLICY_COMMAND_CODE,
    TPM_CC_UNSEAL,
    McimError,
    SealedObject,
    _name_of,
    policy_secret_update,
)

RECORD_FORMAT = ">B15s16s16s2sd"   # version, PCID (ASCII, space-padded), K, OPc, AMF, not_after
RECORD_VERSION = 1


@dataclass(frozen=True)
class AccessCredential:
    """PCID, K, OPc, AMF and the end of its lifetime. Keys out of repr."""

    pcid: str
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    amf: bytes
    not_after: float            # epoch seconds

    def lifetime_left(self, now: float) -> float:
        return self.not_after - now

    def to_bytes(self) -> bytes:
        return struct.pack(RECORD_FORMAT, RECORD_VERSION, self.pcid.ljust(15).encode(), self.k, self.opc,
                           self.amf, self.not_after)

    @classmethod
    def from_bytes(cls, data: bytes) -> AccessCredential:
        if len(data) != struct.calcsize(RECORD_FORMAT) or data[0] != RECORD_VERSION:
            raise ValueError("not an initial-access credential record")
        _, pcid, k, opc, amf, not_after = struct.unpack(RECORD_FORMAT, data)
        return cls(pcid.decode().strip(), k, opc, amf, not_after)


def access_policy_digest(authority_name: bytes) -> bytes:
    """PolicySecret(the TRE's unseal authority, no policyRef) then PolicyCommandCode(Unseal), from
    a zero digest (TPM 2.0 Part 3, 23.4 PolicyUpdate and 23.11): no PolicyPCR, any PCR state."""
    digest = policy_secret_update(bytes(32), authority_name)
    return hashlib.sha256(digest + struct.pack(">II", TPM_CC_POLICY_COMMAND_CODE, TPM_CC_UNSEAL)).digest()


def seal_for_tre(credential: AccessCredential, storage_key_public: bytes, authority_public: bytes) -> SealedObject:
    """Wrap the credential record for the TPM holding ``storage_key_public`` (TPM2_Import), under
    the policy of the TRE's unseal authority ``authority_public`` (its marshalled TPM2B_PUBLIC)."""
    if not authority_public:
        raise McimError("no unseal authority given: the credential would not be bound to the TRE")
    authority_name = _name_of(bytes(authority_public))
    from tpm2_pytss.constants import TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE
    from tpm2_pytss.utils import wrap

    record = credential.to_bytes()
    assert len(record) <= MAX_SYM_DATA
    try:
        parent, used = TPM2B_PUBLIC.unmarshal(bytes(storage_key_public))
    except Exception as exc:  # tpm2-pytss raises its own error types for bad input
        raise McimError(f"storage key public area does not parse ({type(exc).__name__})") from exc
    attributes = int(parent.publicArea.objectAttributes)
    if used != len(storage_key_public) or not attributes & TPMA_OBJECT.RESTRICTED \
            or not attributes & TPMA_OBJECT.DECRYPT:
        raise McimError("not the public area of a restricted decryption key: it cannot be a parent")
    sensitive, public = TPM2B_SENSITIVE.keyedhash_from_secret(record, objectAttributes=TPMA_OBJECT.ADMINWITHPOLICY
                                                              | TPMA_OBJECT.NODA)
    policy = access_policy_digest(authority_name)
    public.publicArea.authPolicy = policy
    encryption_key, duplicate, seed = wrap(parent.publicArea, public, sensitive)
    return SealedObject(public=public.marshal(), duplicate=duplicate.marshal(), seed=seed.marshal(),
                        encryption_key=bytes(encryption_key), storage_key_name=_name_of(bytes(storage_key_public)),
                        policy_digest=policy)
