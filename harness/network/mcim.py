"""The MCIM (TR 33.812: IMSI, K, OPc, AMF, Milenage r/c, SQN state, home PLMN, lifetime)
and its sealing for exactly one TPM in exactly one validated PCR state.

Sealing choice: a TPM sealed data object holds at most MAX_SYM_DATA = 128 bytes, and an
MCIM with operator-chosen Milenage constants takes ~170. So the SHO seals a fresh 32-byte
AES-256 key (``seal_mcim``) and sends the MCIM alongside encrypted under that key with
AES-256-GCM (the "MCIM envelope"); the envelope's AAD is the sealed object's name, so an
envelope only opens with the key of the object it came with. The sealed object:

- is a keyedhash data object (sign and decrypt clear) made from the secret in software;
- has fixedTPM and fixedParent CLEAR, as TPM2_Import requires (facts/tpm.md);
- has userWithAuth CLEAR and adminWithPolicy SET: every use needs the policy;
- has authPolicy = PolicyPCR(selection, SHA-256 of the validated PCR values), then
  PolicySecret(the TRE's unseal authority), then PolicyCommandCode(TPM2_CC_Unseal), computed
  here in software. The PCRs are the ones the PVA validated (the bench's ``tpm.seal_pcrs``:
  the platform's boot PCRs 0-7 and PCR 23 on a hardware TPM). PCR 23 alone could be reset and
  replayed by any local process; PolicySecret names an ordinary object the TRE created under its
  storage key, whose authValue only the TRE agent holds, and whose name the AK certified to the
  PVA. The policy admits Unseal only, so TPM2_Duplicate (whose DUP role always needs a policy
  naming it) is impossible;
- is wrapped (tpm2_pytss.utils.wrap, TPM 2.0 Part 1 23.3 duplication) for the certified
  storage key: only that TPM can TPM2_Import it, with no inner wrapper (empty
  encryption key, symmetricAlg NULL at Import).

The M2ME side: Import + Load under the storage key, then a policy session running
PolicyPCR (current values), PolicySecret (the authority's authValue, in an HMAC session) and
PolicyCommandCode(Unseal), Unseal -> key, ``open_mcim``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcim_hil.aka.milenage import DEFAULT_C, DEFAULT_R, Milenage

MCIM_FORMAT_VERSION = 1
ENVELOPE_VERSION = 1
ENVELOPE_KEY_BYTES = 32
MAX_SYM_DATA = 128                  # TPM 2.0 Part 2 10.4.3 / PC Client profile: TPM2B_SENSITIVE_DATA size
DEFAULT_AMF = b"\x80\x00"           # TS 33.401 Annex H: AMF separation bit set for E-UTRAN
SQN_MAX = (1 << 48) - 1             # TS 33.102 6.3.2: SQN is 48 bits

TPM_CC_POLICY_COMMAND_CODE = 0x0000016C  # TPM 2.0 Part 2 6.5.2
TPM_CC_POLICY_PCR = 0x0000017F
TPM_CC_POLICY_SECRET = 0x00000151
TPM_CC_UNSEAL = 0x0000015E
NAME_BYTES = 34                          # TPM 2.0 Part 1, 16: nameAlg (2) || SHA-256 digest (32)

# MCIM TLV tags (ours); each value is at most 255 bytes.
_TAG_IMSI, _TAG_K, _TAG_OPC, _TAG_AMF, _TAG_R, _TAG_C, _TAG_SQN, _TAG_PLMN, _TAG_NOT_AFTER = range(1, 10)
_TAG_NAMES = {_TAG_IMSI: "IMSI", _TAG_K: "K", _TAG_OPC: "OPc", _TAG_AMF: "AMF", _TAG_R: "r", _TAG_C: "c",
              _TAG_SQN: "SQN", _TAG_PLMN: "home PLMN", _TAG_NOT_AFTER: "not after"}
_ENVELOPE_AAD = b"mcim-hil MCIM envelope v1\0"
_IMSI = re.compile(r"[0-9]{6,15}")
_PLMN = re.compile(r"([0-9]{3})-([0-9]{2,3})")


class McimError(Exception):
    """An MCIM, an envelope or a sealing request is not acceptable (never shows key material)."""


@dataclass(frozen=True, repr=False)
class Mcim:
    """One subscription credential. ``k`` and ``opc`` are secrets: repr and str hide them."""
    imsi: str
    k: bytes
    opc: bytes
    home_plmn: str                   # "MCC-MNC", e.g. "001-01"
    not_after: dt.datetime           # lifetime, UTC
    amf: bytes = DEFAULT_AMF
    r: tuple[int, ...] = DEFAULT_R   # TS 35.206 4.1 rotations r1..r5
    c: tuple[bytes, ...] = DEFAULT_C  # TS 35.206 4.1 constants c1..c5
    sqn: int = 0                     # SQN state the USIM starts from

    def __post_init__(self) -> None:
        if not _IMSI.fullmatch(self.imsi):
            raise McimError("IMSI must be 6..15 digits")
        if len(self.k) != 16 or len(self.opc) != 16:
            raise McimError("K and OPc must be 16 bytes each")
        if len(self.amf) != 2:
            raise McimError("AMF must be 2 bytes")
        if len(self.r) != 5 or any(not 0 <= x < 128 for x in self.r):
            raise McimError("Milenage r must be five rotations in 0..127")
        if len(self.c) != 5 or any(len(x) != 16 for x in self.c):
            raise McimError("Milenage c must be five 16-byte constants")
        if not 0 <= self.sqn <= SQN_MAX:
            raise McimError("SQN must fit 48 bits")
        if not _PLMN.fullmatch(self.home_plmn):
            raise McimError("home PLMN must be 'MCC-MNC' (3 digits, dash, 2 or 3 digits)")
        if self.not_after.tzinfo is None:
            raise McimError("not_after must be timezone-aware")
        object.__setattr__(self, "r", tuple(self.r))
        object.__setattr__(self, "c", tuple(bytes(x) for x in self.c))

    def __repr__(self) -> str:
        return (f"Mcim(imsi={self.imsi!r}, k=<hidden>, opc=<hidden>, amf={self.amf.hex()}, "
                f"home_plmn={self.home_plmn!r}, sqn={self.sqn}, not_after={self.not_after.isoformat()})")

    __str__ = __repr__

    @property
    def mcc(self) -> str:
        return self.home_plmn.split("-")[0]

    @property
    def mnc(self) -> str:
        return self.home_plmn.split("-")[1]

    def expired(self, at: dt.datetime | None = None) -> bool:
        return (at or dt.datetime.now(dt.timezone.utc)) > self.not_after

    def milenage(self) -> Milenage:
        return Milenage(self.k, self.opc, self.r, self.c)

    def to_bytes(self) -> bytes:
        """Version byte then TLVs (tag, 1-byte length, value). Secret: never log it."""
        fields = [(_TAG_IMSI, self.imsi.encode()), (_TAG_K, self.k), (_TAG_OPC, self.opc), (_TAG_AMF, self.amf),
                  (_TAG_R, bytes(self.r)), (_TAG_C, b"".join(self.c)), (_TAG_SQN, self.sqn.to_bytes(6, "big")),
                  (_TAG_PLMN, self.home_plmn.encode()),
                  (_TAG_NOT_AFTER, struct.pack(">q", int(self.not_after.timestamp())))]
        out = bytearray([MCIM_FORMAT_VERSION])
        for tag, value in fields:
            out += bytes([tag, len(value)]) + value
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Mcim:
        if not data or data[0] != MCIM_FORMAT_VERSION:
            raise McimError(f"MCIM encoding version {data[0] if data else 'missing'} not supported")
        values: dict[int, bytes] = {}
        pos = 1
        while pos < len(data):
            if pos + 2 > len(data):
                raise McimError("MCIM encoding truncated in a tag header")
            tag, size = data[pos], data[pos + 1]
            value = data[pos + 2:pos + 2 + size]
            if len(value) != size:
                raise McimError(f"MCIM encoding truncated in {_TAG_NAMES.get(tag, f'tag {tag}')}")
            if tag not in _TAG_NAMES:
                raise McimError(f"MCIM encoding has unknown tag {tag}")
            if tag in values:
                raise McimError(f"MCIM encoding repeats {_TAG_NAMES[tag]}")
            values[tag] = value
            pos += 2 + size
        missing = [name for tag, name in _TAG_NAMES.items() if tag not in values]
        if missing:
            raise McimError("MCIM encoding lacks " + ", ".join(missing))
        c = values[_TAG_C]
        if len(c) != 80 or len(values[_TAG_SQN]) != 6 or len(values[_TAG_NOT_AFTER]) != 8:
            raise McimError("MCIM encoding has a field of the wrong size")
        try:
            return cls(imsi=values[_TAG_IMSI].decode("ascii"), k=values[_TAG_K], opc=values[_TAG_OPC],
                       amf=values[_TAG_AMF], r=tuple(values[_TAG_R]),
                       c=tuple(c[i:i + 16] for i in range(0, 80, 16)),
                       sqn=int.from_bytes(values[_TAG_SQN], "big"),
                       home_plmn=values[_TAG_PLMN].decode("ascii"),
                       not_after=dt.datetime.fromtimestamp(struct.unpack(">q", values[_TAG_NOT_AFTER])[0],
                                                           dt.timezone.utc))
        except (UnicodeDecodeError, OverflowError, OSError, ValueError) as exc:
            raise McimError(f"MCIM encoding has an invalid field ({type(exc).__name__})") from None


# --- the envelope ------------------------------------------------------------------------

def seal_mcim_envelope(mcim: Mcim, key: bytes, binding: bytes) -> bytes:
    """AES-256-GCM of ``mcim.to_bytes()``; ``binding`` (the sealed object's name) goes in the AAD."""
    if len(key) != ENVELOPE_KEY_BYTES:
        raise McimError(f"envelope key must be {ENVELOPE_KEY_BYTES} bytes")
    nonce = os.urandom(12)
    return bytes([ENVELOPE_VERSION]) + nonce + AESGCM(key).encrypt(nonce, mcim.to_bytes(), _ENVELOPE_AAD + binding)


def open_mcim(envelope: bytes, key: bytes, binding: bytes) -> Mcim:
    """The MCIM from its envelope, with the key unsealed from the TPM; refuses a tampered
    envelope, a wrong key or an envelope of another sealed object."""
    if len(key) != ENVELOPE_KEY_BYTES:
        raise McimError(f"envelope key must be {ENVELOPE_KEY_BYTES} bytes")
    if len(envelope) < 1 + 12 + 16 or envelope[0] != ENVELOPE_VERSION:
        raise McimError("MCIM envelope is truncated or of an unknown version")
    try:
        clear = AESGCM(key).decrypt(envelope[1:13], envelope[13:], _ENVELOPE_AAD + binding)
    except InvalidTag:
        raise McimError("MCIM envelope does not authenticate (altered, wrong key or other sealed object)") from None
    return Mcim.from_bytes(clear)


# --- sealing for one TPM -----------------------------------------------------------------

@dataclass(frozen=True)
class SealedObject:
    """A sealed data object wrapped for one storage key, as TPM2_Import takes it
    (marshalled TPM2B_PUBLIC, TPM2B_PRIVATE, TPM2B_ENCRYPTED_SECRET)."""
    public: bytes
    duplicate: bytes
    seed: bytes
    encryption_key: bytes = b""          # inner wrapper key; empty: none (symmetricAlg NULL)
    storage_key_name: bytes = b""        # the TPM name of the parent it was wrapped for
    pcr_selection: tuple[int, ...] = ()  # sha256 bank
    policy_digest: bytes = b""

    def __repr__(self) -> str:
        return (f"SealedObject(name={self.name.hex()}, parent={self.storage_key_name.hex()}, "
                f"pcrs={list(self.pcr_selection)})")

    @property
    def name(self) -> bytes:
        """The sealed object's TPM name (nameAlg || SHA-256(TPMT_PUBLIC))."""
        return _name_of(self.public)


def _name_of(tpm2b_public: bytes) -> bytes:
    if len(tpm2b_public) < 4 or int.from_bytes(tpm2b_public[:2], "big") != len(tpm2b_public) - 2:
        raise McimError("TPM2B_PUBLIC size field does not match its length")
    name_alg = int.from_bytes(tpm2b_public[4:6], "big")
    if name_alg != 0x000B:  # TPM_ALG_SHA256
        raise McimError(f"name algorithm {name_alg:#06x} not supported")
    return tpm2b_public[4:6] + hashlib.sha256(tpm2b_public[2:]).digest()


def _pcr_selection_struct(pcr_selection: Sequence[int]):  # -> TPML_PCR_SELECTION
    from tpm2_pytss.types import TPML_PCR_SELECTION
    pcrs = sorted(set(pcr_selection))
    if not pcrs or any(not 0 <= p < 24 for p in pcrs):
        raise McimError("PCR selection must name PCRs in 0..23")
    # the same construction the TPM driver uses for PolicyPCR, so the marshalled selection
    # (sizeofSelect 3) and hence the policy digest agree
    return TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, pcrs)))


def policy_secret_update(digest: bytes, authority_name: bytes) -> bytes:
    """TPM2_PolicySecret(authority, no policyRef) on ``digest`` (TPM 2.0 Part 3, 23.4, PolicyUpdate:
    the command code and the authorising entity's name, then a second hash over the empty policyRef)."""
    # an object's SHA-256 name only: a hierarchy's (its 4-byte handle) would be the owner policy again
    if len(authority_name) != NAME_BYTES or authority_name[:2] != b"\x00\x0b":
        raise McimError("the unseal authority's name is not a SHA-256 TPM name")
    digest = hashlib.sha256(digest + struct.pack(">I", TPM_CC_POLICY_SECRET) + authority_name).digest()
    return hashlib.sha256(digest).digest()


def policy_digest(pcr_selection: Sequence[int], pcr_values: Mapping[int, bytes], authority_name: bytes) -> bytes:
    """authPolicy = PolicyPCR(selection, SHA-256(values in selection order)), then
    PolicySecret(the TRE's unseal authority), then PolicyCommandCode(TPM2_CC_Unseal) (TPM 2.0 Part 3
    23.7, 23.4 and 23.11), from a zero digest; the order the TPM driver's policy session runs.

    PolicyPCR alone let any local process that can reset and replay the PCRs unseal (issue 9);
    PolicySecret needs the authValue of an object only the TRE agent holds."""
    pcrs = sorted(set(pcr_selection))
    if set(pcr_values) != set(pcrs):
        raise McimError(f"PCR values for {sorted(pcr_values)} do not match the selection {pcrs}")
    if any(len(pcr_values[p]) != 32 for p in pcrs):
        raise McimError("PCR values must be SHA-256 digests")
    selection = _pcr_selection_struct(pcrs).marshal()
    pcr_digest = hashlib.sha256(b"".join(pcr_values[p] for p in pcrs)).digest()
    digest = bytes(32)
    digest = hashlib.sha256(digest + struct.pack(">I", TPM_CC_POLICY_PCR) + selection + pcr_digest).digest()
    digest = policy_secret_update(digest, authority_name)
    digest = hashlib.sha256(digest + struct.pack(">II", TPM_CC_POLICY_COMMAND_CODE, TPM_CC_UNSEAL)).digest()
    return digest


def seal_for_tpm(secret: bytes, storage_key_public: bytes, pcr_selection: Sequence[int],
                 pcr_values: Mapping[int, bytes], *, authority_name: bytes) -> SealedObject:
    """Seal ``secret`` (1..128 bytes) for the TPM holding ``storage_key_public`` (marshalled
    TPM2B_PUBLIC of a restricted decryption key), unsealable only in the given PCR state and only
    by who holds the authValue of the object named ``authority_name`` (the TRE's, certified by the
    AK the PVA validated)."""
    from tpm2_pytss.constants import TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE
    from tpm2_pytss.utils import wrap

    if not 1 <= len(secret) <= MAX_SYM_DATA:
        raise McimError(f"a sealed secret holds 1..{MAX_SYM_DATA} bytes")
    try:
        parent, used = TPM2B_PUBLIC.unmarshal(bytes(storage_key_public))
    except Exception as exc:  # tpm2-pytss raises its own TSS2 error types for bad input
        raise McimError(f"storage key public area does not parse ({type(exc).__name__})") from exc
    if used != len(storage_key_public):
        raise McimError("storage key public area has trailing bytes")
    attributes = int(parent.publicArea.objectAttributes)
    if not attributes & TPMA_OBJECT.RESTRICTED or not attributes & TPMA_OBJECT.DECRYPT:
        raise McimError("storage key is not a restricted decryption key: it cannot be a parent")
    pcrs = tuple(sorted(set(pcr_selection)))
    policy = policy_digest(pcrs, pcr_values, authority_name)
    # fixedTPM / fixedParent clear (Import refuses them), no userWithAuth: the policy only
    attrs = TPMA_OBJECT.ADMINWITHPOLICY
    sensitive, public = TPM2B_SENSITIVE.keyedhash_from_secret(bytes(secret), objectAttributes=attrs)
    public.publicArea.authPolicy = policy
    try:
        encryption_key, duplicate, seed = wrap(parent.publicArea, public, sensitive)
    except ValueError as exc:
        raise McimError(f"cannot wrap for this storage key: {exc}") from exc
    return SealedObject(public=public.marshal(), duplicate=duplicate.marshal(), seed=seed.marshal(),
                        encryption_key=bytes(encryption_key), storage_key_name=_name_of(bytes(storage_key_public)),
                        pcr_selection=pcrs, policy_digest=policy)


def seal_mcim(mcim: Mcim, storage_key_public: bytes, pcr_selection: Sequence[int],
              pcr_values: Mapping[int, bytes], *, authority_name: bytes) -> tuple[SealedObject, bytes]:
    """Seal a fresh envelope key for the TPM and encrypt the MCIM under it.
    Returns (sealed key object, MCIM envelope)."""
    key = os.urandom(ENVELOPE_KEY_BYTES)
    sealed = seal_for_tpm(key, storage_key_public, pcr_selection, pcr_values, authority_name=authority_name)
    return sealed, seal_mcim_envelope(mcim, key, sealed.name)
