"""The TPM driver's vocabulary: constants from the TCG and TPM 2.0 specifications, the results
its operations hand out (keys, quotes, certifications), and the small conversions every part of
the driver shares. Split from tpm.py, which re-exports all of it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG
from tpm2_pytss.types import TPM2B_PUBLIC, TPML_PCR_SELECTION, TPMT_PUBLIC

T = TypeVar("T")
PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey]

# TCG EK Credential Profile 2.x, 2.2.1.4 (low range) / 2.2.1.5 (high range): EK certificate
# NV indices, in the order ek() looks for them (ECC first: cheaper to recreate than RSA).
EK_PROFILES: tuple[tuple[str, int], ...] = (
    ("EK-ECC256", 0x01C0000A),        # L-2 ECC NIST P-256
    ("EK-HIGH-ECC256", 0x01C00014),   # H-2 ECC NIST P-256
    ("EK-HIGH-ECC384", 0x01C00016),   # H-3 ECC NIST P-384 (swtpm_setup's ECC EK)
    ("EK-HIGH-ECC521", 0x01C00018),   # H-4 ECC NIST P-521
    ("EK-RSA2048", 0x01C00002),       # L-1 RSA 2048 (swtpm_setup's RSA EK)
    ("EK-HIGH-RSA2048", 0x01C00012),  # H-1 RSA 2048
    ("EK-HIGH-RSA3072", 0x01C0001C),  # H-6 RSA 3072
    ("EK-HIGH-RSA4096", 0x01C0001E),  # H-7 RSA 4096
)
EK_DEFAULT_PROFILE = "EK-ECC256"  # no certificate at all: the L-2 template
EK_NV_FIRST, EK_NV_LAST = 0x01C00000, 0x01C07FFF  # TCG handle registry: EK credential NV range

# TCG Registry of Reserved TPM 2.0 Handles 2.3.1: persistent object ranges
PERSISTENT_FIRST, PERSISTENT_LAST = 0x81000000, 0x81FFFFFF
OWNER_PERSISTENT_LAST = 0x817FFFFF
EK_PERSISTENT_FIRST, EK_PERSISTENT_LAST = 0x81010000, 0x8101FFFF  # endorsement primary keys

# TPM 2.0 Part 2, 6.13 TPM_PT: fixed properties (tpm2-pytss names only some of them)
PT_FIXED = 0x100
PT_LEVEL, PT_REVISION, PT_MANUFACTURER = 0x101, 0x102, 0x105
PT_VENDOR_STRING_1 = 0x106  # .. _4 = 0x109
PT_FIRMWARE_VERSION_1, PT_FIRMWARE_VERSION_2 = 0x10B, 0x10C
PT_NV_BUFFER_MAX = 0x12C
PT_HR_TRANSIENT_AVAIL = 0x207  # TPM 2.0 Part 2, 6.13: free transient object slots (variable)

_BANKS: dict[str, TPM2_ALG] = {
    "sha1": TPM2_ALG.SHA1, "sha256": TPM2_ALG.SHA256,
    "sha384": TPM2_ALG.SHA384, "sha512": TPM2_ALG.SHA512,
}
_HASH_NAMES: dict[int, str] = {int(alg): name for name, alg in _BANKS.items()}
_QUOTE_TRIES = 3  # another client extending a PCR between Quote and PCR_Read: quote again

# Longest a driver operation may wait for the TPM (bench file: tpm.timeout). swtpm answers
# in milliseconds; a discrete TPM's RSA key generation can take seconds.
DEFAULT_TIMEOUT_S = 30.0
_SOCKET_TCTIS = ("swtpm", "mssim")

# --- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TpmInfo:
    manufacturer: str            # TPM_PT_MANUFACTURER as its 4-char id ("IBM", "IFX", "STM")
    vendor: str                  # TPM_PT_VENDOR_STRING_1..4
    firmware_version: int        # TPM_PT_FIRMWARE_VERSION_1 << 32 | _2 (as in TPMS_ATTEST)
    firmware_version_text: str   # "major.minor" from TPM_PT_FIRMWARE_VERSION_1
    spec_revision: int           # TPM_PT_REVISION, e.g. 164 for 1.64
    spec_level: int              # TPM_PT_LEVEL


@dataclass(eq=False)
class Ek:
    handle: ESYS_TR
    public: TPM2B_PUBLIC = field(repr=False)
    public_key: PublicKey = field(repr=False)
    certificate: x509.Certificate | None = field(repr=False)
    profile: str = ""                    # TCG template name, e.g. "EK-HIGH-ECC384"
    certificate_index: int | None = None  # NV index the certificate came from


@dataclass(eq=False)
class Ak:
    handle: ESYS_TR
    public: TPM2B_PUBLIC = field(repr=False)
    name: bytes = field(repr=False)
    public_key: ec.EllipticCurvePublicKey = field(repr=False)


@dataclass(eq=False)
class StorageKey:
    handle: ESYS_TR
    public: TPM2B_PUBLIC = field(repr=False)
    name: bytes = field(repr=False)


@dataclass(frozen=True)
class Quote:
    attest: bytes                 # marshalled TPMS_ATTEST (what the signature covers)
    signature: bytes              # marshalled TPMT_SIGNATURE
    pcr_values: dict[int, bytes]  # the quoted PCRs, read at the same moment
    bank: str = "sha256"


@dataclass(frozen=True)
class Certification:
    attest: bytes     # marshalled TPMS_ATTEST of type TPM_ST_ATTEST_CERTIFY
    signature: bytes  # marshalled TPMT_SIGNATURE


Handle = Union[ESYS_TR, Ek, Ak, StorageKey]


@dataclass(frozen=True)
class AuthObject:
    """A persistent object whose authValue authorises a use (TPM2_PolicySecret, or TPM2_Certify
    of the object itself). The driver sends the value only inside an HMAC session: never in clear
    on the TPM's bus, never in a hook event."""
    handle: int
    auth_value: bytes = field(repr=False)


# --- helpers ---------------------------------------------------------------------------------

def object_name(public: TPM2B_PUBLIC | TPMT_PUBLIC) -> bytes:
    """TPM 2.0 Part 1, 16: Name = nameAlg (2 bytes) || H_nameAlg(marshalled TPMT_PUBLIC)."""
    area = public.publicArea if isinstance(public, TPM2B_PUBLIC) else public
    alg = int(area.nameAlg)
    if alg not in _HASH_NAMES:
        raise ValueError(f"name algorithm 0x{alg:04x} not supported")
    return alg.to_bytes(2, "big") + hashlib.new(_HASH_NAMES[alg], area.marshal()).digest()


def _pcr_selection(pcrs: Sequence[int], bank: str) -> TPML_PCR_SELECTION:
    return TPML_PCR_SELECTION.parse(f"{bank}:{','.join(str(p) for p in pcrs)}")


def _selected(selection: TPML_PCR_SELECTION) -> list[int]:
    """PCR indices set in a selection (one bank), ascending."""
    found: list[int] = []
    for i in range(selection.count):
        sel = selection.pcrSelections[i]
        bits = bytes(sel.pcrSelect)[: sel.sizeofSelect]
        found += [octet * 8 + bit for octet, byte in enumerate(bits)
                  for bit in range(8) if byte >> bit & 1]
    return sorted(found)


def _bank_alg(bank: str) -> TPM2_ALG:
    try:
        return _BANKS[bank]
    except KeyError:
        raise ValueError(f"unknown PCR bank {bank!r}; one of {sorted(_BANKS)}") from None


def _unmarshal(cls: Any, data: Any) -> Any:
    """A pytss structure, or its marshalled bytes (all of them, nothing after)."""
    if isinstance(data, cls):
        return data
    if isinstance(data, (bytes, bytearray)):
        obj, used = cls.unmarshal(bytes(data))
        if used != len(data):
            raise ValueError(f"{cls.__name__}: {len(data) - used} bytes after the structure")
        return obj
    raise TypeError(f"expected {cls.__name__} or its marshalled bytes, got {type(data).__name__}")


def _der_certificate(blob: bytes) -> x509.Certificate:
    """An X.509 DER certificate from an NV index that may pad it (0x00 / 0xFF) at the end."""
    if len(blob) < 4 or blob[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    if blob[1] < 0x80:
        size = 2 + blob[1]
    else:
        octets = blob[1] & 0x7F
        size = 2 + octets + int.from_bytes(blob[2:2 + octets], "big")
    return x509.load_der_x509_certificate(blob[:size])


def _public_key(public: TPM2B_PUBLIC) -> PublicKey:
    key = serialization.load_der_public_key(public.to_der())
    assert isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey))
    return key


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


class _Operation:
    """The TPM2 commands one driver operation issued, for its hook event."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.status: str | None = None  # a tolerated response code, e.g. TPM_RC_INITIALIZE

    def note(self, command: str) -> None:
        if not self.commands or self.commands[-1] != command:
            self.commands.append(command)
