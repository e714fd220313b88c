"""Platform validation (TR 33.812 5.1.3.6.8, the PVA): what a faithful verifier checks in the
evidence an M2ME's agent sends, each check named in the result with its verdict.

The evidence comes as marshalled TPM structures (TPM2B_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE)
and DER certificates; this module never talks to a TPM. It parses the few TPM structures it
needs itself (TPM 2.0 Part 2) rather than through tpm2-pytss's CFFI objects: that is ~10x
faster, keeps the parse strict (no trailing bytes), and lets the PVA compute names and keys
itself instead of trusting the device. ``make_credential_challenge`` does MakeCredential itself
for an ECC EK (AES-CFB), else through tpm2-pytss's ``make_credential``, with the AK name
computed here.

Checks and their order (``CHECKS``): see facts/tpm.md "What a faithful platform validation
checks". With ``check_integrity=False`` only authenticity checks run (seed 004 change 4: the
IVF supplies the integrity result).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

try:  # cryptography >= 43 keeps CFB among the "decrepit" modes; TPM 2.0 still uses it
    from cryptography.hazmat.decrepit.ciphers.modes import CFB as _CFB
except ImportError:  # pragma: no cover
    from cryptography.hazmat.primitives.ciphers.modes import CFB as _CFB

from mcim_hil.network import pki

# --- TPM 2.0 Part 2 constants --------------------------------------------------------------

TPM_GENERATED_VALUE = 0xFF544347  # Part 2 6.2: "\xffTCG", marks TPM-produced attestations
TPM_ST_ATTEST_CERTIFY = 0x8017    # Part 2 6.9
TPM_ST_ATTEST_QUOTE = 0x8018      # Part 2 6.9

TPM_ALG_RSA = 0x0001              # Part 2 6.3 (TPM_ALG_ID)
TPM_ALG_SHA1 = 0x0004
TPM_ALG_HMAC = 0x0005
TPM_ALG_AES = 0x0006
TPM_ALG_KEYEDHASH = 0x0008
TPM_ALG_XOR = 0x000A
TPM_ALG_SHA256 = 0x000B
TPM_ALG_SHA384 = 0x000C
TPM_ALG_SHA512 = 0x000D
TPM_ALG_NULL = 0x0010
TPM_ALG_RSASSA = 0x0014
TPM_ALG_RSAES = 0x0015
TPM_ALG_RSAPSS = 0x0016
TPM_ALG_ECDSA = 0x0018
TPM_ALG_ECDAA = 0x001A
TPM_ALG_ECC = 0x0023
TPM_ALG_SYMCIPHER = 0x0025
TPM_ALG_CFB = 0x0043

TPM_ECC_NIST_P256 = 0x0003        # Part 2 6.4 (TPM_ECC_CURVE)
TPM_ECC_NIST_P384 = 0x0004
TPM_ECC_NIST_P521 = 0x0005

# Part 2 8.3 TPMA_OBJECT bits
FIXED_TPM = 1 << 1
ST_CLEAR = 1 << 2
FIXED_PARENT = 1 << 4
SENSITIVE_DATA_ORIGIN = 1 << 5
USER_WITH_AUTH = 1 << 6
ADMIN_WITH_POLICY = 1 << 7
NO_DA = 1 << 10
ENCRYPTED_DUPLICATION = 1 << 11
RESTRICTED = 1 << 16
DECRYPT = 1 << 17
SIGN_ENCRYPT = 1 << 18

_ATTRIBUTE_NAMES = {FIXED_TPM: "fixedTPM", ST_CLEAR: "stClear", FIXED_PARENT: "fixedParent",
                    SENSITIVE_DATA_ORIGIN: "sensitiveDataOrigin", USER_WITH_AUTH: "userWithAuth",
                    ADMIN_WITH_POLICY: "adminWithPolicy", NO_DA: "noDA",
                    ENCRYPTED_DUPLICATION: "encryptedDuplication", RESTRICTED: "restricted",
                    DECRYPT: "decrypt", SIGN_ENCRYPT: "sign"}

HASH_NAMES = {TPM_ALG_SHA1: "sha1", TPM_ALG_SHA256: "sha256", TPM_ALG_SHA384: "sha384",
              TPM_ALG_SHA512: "sha512"}
_HASHES = {TPM_ALG_SHA256: hashes.SHA256(), TPM_ALG_SHA384: hashes.SHA384(), TPM_ALG_SHA512: hashes.SHA512()}
_CURVES = {TPM_ECC_NIST_P256: (ec.SECP256R1(), 32), TPM_ECC_NIST_P384: (ec.SECP384R1(), 48),
           TPM_ECC_NIST_P521: (ec.SECP521R1(), 66)}
# TPMT_ECC_SCHEME / TPMT_RSA_SCHEME details: most carry one hashAlg, ECDAA adds a count, RSAES nothing.
_SCHEME_DETAIL_SIZE = {TPM_ALG_NULL: 0, TPM_ALG_RSAES: 0, TPM_ALG_ECDAA: 4}
PCR_BANK = TPM_ALG_SHA256
PCR_COUNT = 24                    # PC Client platform: 24 PCRs
MIN_NONCE_BYTES = 16

AK_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN_ENCRYPT
STORAGE_KEY_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | DECRYPT
EK_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | DECRYPT

CHECKS = ("ek_certificate_chain", "ek_public_matches_certificate", "ak_attributes", "ak_bound_to_ek",
          "nonce_fresh", "quote_signature", "quote_nonce", "pcr_selection", "pcr_digest",
          "event_log_replay", "reference_values", "clock", "pfc_signature", "pfc_binds_ak",
          "pfc_names_platform", "pfc_status_ocsp", "storage_key_certified")
INTEGRITY_CHECKS = frozenset({"pcr_selection", "pcr_digest", "event_log_replay", "reference_values"})


class AttestationError(Exception):
    """Bad input to the attestation library itself (not a failed check: those are results)."""


class TpmStructureError(ValueError):
    """A marshalled TPM structure does not parse."""


# --- parsing the TPM structures ------------------------------------------------------------

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_CLOCK = struct.Struct(">QIIBQ")  # TPMS_CLOCK_INFO (clock, resetCount, restartCount, safe) + firmwareVersion


class _Reader:
    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise TpmStructureError(f"{self.what}: truncated at byte {self.pos} (wanted {n} more)")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        if self.pos + 2 > len(self.data):
            self.take(2)
        value = _U16.unpack_from(self.data, self.pos)[0]
        self.pos += 2
        return value

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            self.take(4)
        value = _U32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return value

    def tpm2b(self) -> bytes:
        return self.take(self.u16())

    def end(self) -> None:
        if self.pos != len(self.data):
            raise TpmStructureError(f"{self.what}: {len(self.data) - self.pos} trailing bytes")


@dataclass(frozen=True)
class TpmPublic:
    """The fields of a TPMT_PUBLIC the PVA and the SHO look at. ``area`` is the marshalled
    TPMT_PUBLIC (the TPM2B without its size), what the object's name hashes."""
    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    symmetric: tuple[int, int, int]     # (algorithm, keyBits, mode), algorithm NULL when none
    scheme: int                         # signing / decryption scheme, TPM_ALG_NULL when none
    scheme_hash: int
    curve: int | None = None
    rsa_bits: int | None = None
    exponent: int | None = None
    x: bytes = b""                      # ECC point
    y: bytes = b""
    unique: bytes = b""                 # RSA modulus / keyedhash or symcipher unique
    area: bytes = b""

    @property
    def name(self) -> bytes:
        """TPM 2.0 Part 1 16: nameAlg || H_nameAlg(TPMT_PUBLIC)."""
        return _U16.pack(self.name_alg) + hashlib.new(_hash_name(self.name_alg), self.area).digest()

    def has(self, attributes: int) -> bool:
        return self.attributes & attributes == attributes

    def attribute_names(self) -> list[str]:
        return [name for bit, name in _ATTRIBUTE_NAMES.items() if self.attributes & bit]

    def public_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        """The key as a cryptography object (ECC or RSA only)."""
        if self.type == TPM_ALG_ECC:
            if self.curve not in _CURVES:
                raise TpmStructureError(f"TPMT_PUBLIC: unsupported ECC curve {self.curve:#06x}")
            curve, size = _CURVES[self.curve]
            if len(self.x) > size or len(self.y) > size:
                raise TpmStructureError("TPMT_PUBLIC: ECC point longer than the curve")
            point = b"\x04" + self.x.rjust(size, b"\0") + self.y.rjust(size, b"\0")
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        if self.type == TPM_ALG_RSA:
            exponent = self.exponent or 65537  # Part 2 12.2.3.5: 0 means 2^16 + 1
            return rsa.RSAPublicNumbers(exponent, int.from_bytes(self.unique, "big")).public_key()
        raise TpmStructureError(f"TPMT_PUBLIC: type {self.type:#06x} has no public key")


def _hash_name(alg: int) -> str:
    try:
        return HASH_NAMES[alg]
    except KeyError:
        raise TpmStructureError(f"unsupported hash algorithm {alg:#06x}") from None


def _read_symmetric(r: _Reader) -> tuple[int, int, int]:
    algorithm = r.u16()
    if algorithm == TPM_ALG_NULL:
        return (TPM_ALG_NULL, 0, TPM_ALG_NULL)
    return (algorithm, r.u16(), r.u16())


def _read_scheme(r: _Reader) -> tuple[int, int]:
    scheme = r.u16()
    size = _SCHEME_DETAIL_SIZE.get(scheme, 2)
    if size == 0:
        return scheme, TPM_ALG_NULL
    hash_alg = r.u16()
    if size == 4:
        r.u16()  # ECDAA count
    return scheme, hash_alg


def parse_public(tpm2b_public: bytes) -> TpmPublic:
    """Parse a marshalled TPM2B_PUBLIC (Part 2 12.2.5) strictly."""
    outer = _Reader(tpm2b_public, "TPM2B_PUBLIC")
    area = outer.tpm2b()
    outer.end()
    r = _Reader(area, "TPMT_PUBLIC")
    kind, name_alg, attributes = r.u16(), r.u16(), r.u32()
    auth_policy = r.tpm2b()
    fields: dict[str, Any] = {}
    if kind == TPM_ALG_ECC:
        symmetric = _read_symmetric(r)
        scheme, scheme_hash = _read_scheme(r)
        fields["curve"] = r.u16()
        kdf = r.u16()
        if kdf != TPM_ALG_NULL:
            r.u16()
        fields["x"], fields["y"] = r.tpm2b(), r.tpm2b()
    elif kind == TPM_ALG_RSA:
        symmetric = _read_symmetric(r)
        scheme, scheme_hash = _read_scheme(r)
        fields["rsa_bits"], fields["exponent"] = r.u16(), r.u32()
        fields["unique"] = r.tpm2b()
    elif kind == TPM_ALG_KEYEDHASH:
        symmetric = (TPM_ALG_NULL, 0, TPM_ALG_NULL)
        scheme = r.u16()
        scheme_hash = TPM_ALG_NULL
        if scheme == TPM_ALG_HMAC:
            scheme_hash = r.u16()
        elif scheme == TPM_ALG_XOR:
            scheme_hash = r.u16()
            r.u16()  # kdf
        fields["unique"] = r.tpm2b()
    elif kind == TPM_ALG_SYMCIPHER:
        symmetric = _read_symmetric(r)
        scheme, scheme_hash = TPM_ALG_NULL, TPM_ALG_NULL
        fields["unique"] = r.tpm2b()
    else:
        raise TpmStructureError(f"TPMT_PUBLIC: unsupported object type {kind:#06x}")
    r.end()
    _hash_name(name_alg)
    return TpmPublic(kind, name_alg, attributes, auth_policy, symmetric, scheme, scheme_hash,
                     area=area, **fields)


def tpm_public_key(tpm2b_public: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The cryptography public key of a marshalled TPM2B_PUBLIC (for the M2MES issuing a PfC)."""
    return parse_public(tpm2b_public).public_key()


def tpm_name(tpm2b_public: bytes) -> bytes:
    """The TPM name of an object, computed from its public area (never trust the device's)."""
    return parse_public(tpm2b_public).name


def parse_pcr_selection(r: _Reader) -> dict[int, frozenset[int]]:
    """TPML_PCR_SELECTION (Part 2 10.9.7) -> {hash alg: PCR indices}."""
    count = r.u32()
    if count > 16:
        raise TpmStructureError(f"{r.what}: {count} PCR banks is not plausible")
    banks: dict[int, frozenset[int]] = {}
    for _ in range(count):
        alg = r.u16()
        bitmap = r.take(r.u8())
        pcrs = frozenset(8 * i + bit for i, byte in enumerate(bitmap) for bit in range(8) if byte >> bit & 1)
        if alg in banks:
            raise TpmStructureError(f"{r.what}: bank {alg:#06x} selected twice")
        banks[alg] = pcrs
    return banks


def pcr_selection_bytes(pcrs: Iterable[int], bank: int = PCR_BANK) -> bytes:
    """A one-bank TPML_PCR_SELECTION with sizeofSelect 3 (PCR_SELECT_MIN, as tpm2-tools / tpm2-pytss send)."""
    bitmap = bytearray(3)
    for pcr in pcrs:
        if not 0 <= pcr < PCR_COUNT:
            raise AttestationError(f"PCR {pcr} outside 0..{PCR_COUNT - 1}")
        bitmap[pcr // 8] |= 1 << (pcr % 8)
    return _U32.pack(1) + _U16.pack(bank) + bytes([3]) + bytes(bitmap)


@dataclass(frozen=True)
class Attest:
    """The fields of a TPMS_ATTEST (Part 2 10.12.12) for a quote or a certification."""
    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: int
    firmware_version: int
    pcr_selection: dict[int, frozenset[int]] = field(default_factory=dict)  # quote
    pcr_digest: bytes = b""                                                  # quote
    certified_name: bytes = b""                                              # certify
    certified_qualified_name: bytes = b""                                    # certify


def parse_attest(data: bytes) -> Attest:
    r = _Reader(data, "TPMS_ATTEST")
    magic, kind = r.u32(), r.u16()
    signer, extra = r.tpm2b(), r.tpm2b()
    clock, reset, restart, safe, firmware = _CLOCK.unpack(r.take(_CLOCK.size))
    if kind == TPM_ST_ATTEST_QUOTE:
        selection = parse_pcr_selection(r)
        attest = Attest(magic, kind, signer, extra, clock, reset, restart, safe, firmware,
                        pcr_selection=selection, pcr_digest=r.tpm2b())
    elif kind == TPM_ST_ATTEST_CERTIFY:
        attest = Attest(magic, kind, signer, extra, clock, reset, restart, safe, firmware,
                        certified_name=r.tpm2b(), certified_qualified_name=r.tpm2b())
    else:
        raise TpmStructureError(f"TPMS_ATTEST: type {kind:#06x} is neither a quote nor a certification")
    r.end()
    return attest


def verify_tpm_signature(public: TpmPublic, signature: bytes, data: bytes,
                         key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None = None) -> int:
    """Verify a marshalled TPMT_SIGNATURE (Part 2 11.3.4) over ``data`` with the key of ``public``;
    returns the signature's hash algorithm. Raises InvalidSignature or TpmStructureError."""
    r = _Reader(signature, "TPMT_SIGNATURE")
    sig_alg, hash_alg = r.u16(), r.u16()
    if hash_alg not in _HASHES:
        raise TpmStructureError(f"TPMT_SIGNATURE: hash {hash_alg:#06x} not accepted")
    key = key or public.public_key()
    if sig_alg == TPM_ALG_ECDSA:
        r_, s_ = r.tpm2b(), r.tpm2b()
        r.end()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidSignature("ECDSA signature from a non-ECC key")
        der = encode_dss_signature(int.from_bytes(r_, "big"), int.from_bytes(s_, "big"))
        key.verify(der, data, ec.ECDSA(_HASHES[hash_alg]))
    elif sig_alg in (TPM_ALG_RSASSA, TPM_ALG_RSAPSS):
        sig = r.tpm2b()
        r.end()
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignature("RSA signature from a non-RSA key")
        if sig_alg == TPM_ALG_RSASSA:
            key.verify(sig, data, padding.PKCS1v15(), _HASHES[hash_alg])
        else:
            key.verify(sig, data, padding.PSS(mgf=padding.MGF1(_HASHES[hash_alg]),
                                              salt_length=padding.PSS.AUTO), _HASHES[hash_alg])
    else:
        raise TpmStructureError(f"TPMT_SIGNATURE: scheme {sig_alg:#06x} not accepted")
    return hash_alg


def extend(pcr_value: bytes, digest: bytes) -> bytes:
    """TPM2_PCR_Extend in the sha256 bank: new = SHA-256(old || digest)."""
    return hashlib.sha256(pcr_value + digest).digest()


def pcr_initial_value(pcr: int) -> bytes:
    """PC Client: PCRs 17..22 (D-RTM) start at all ones after TPM2_Startup, the others at zero."""
    return b"\xff" * 32 if 17 <= pcr <= 22 else b"\0" * 32


# --- what the M2ME sends -------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    """One event of the M2ME's measurement log: ``digest`` (SHA-256) of ``component`` was
    extended into ``pcr``."""
    component: str
    pcr: int
    digest: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, "pcr": self.pcr, "digest": self.digest.hex()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        return cls(str(data["component"]), int(data["pcr"]), bytes.fromhex(data["digest"]))


_EVIDENCE_BYTES = ("ek_certificate", "ek_public", "ak_public", "activation_proof", "quote_attest",
                   "quote_signature", "pfc", "storage_key_public", "certify_attest", "certify_signature")


@dataclass
class Evidence:
    """What the M2ME's agent sends the PVA (all TPM structures marshalled, certificates DER)."""
    platform_id: str
    ek_certificate: bytes
    ek_public: bytes              # TPM2B_PUBLIC
    ak_public: bytes              # TPM2B_PUBLIC
    activation_proof: bytes       # the secret ActivateCredential recovered
    quote_attest: bytes           # TPMS_ATTEST
    quote_signature: bytes        # TPMT_SIGNATURE
    pcr_values: dict[int, bytes]
    measurements: list[Measurement]
    pfc: bytes
    storage_key_public: bytes     # TPM2B_PUBLIC of the key the MCIM will be sealed to
    certify_attest: bytes         # TPMS_ATTEST of TPM2_Certify(storage key, AK)
    certify_signature: bytes      # TPMT_SIGNATURE

    def __repr__(self) -> str:
        return (f"Evidence(platform_id={self.platform_id!r}, pcrs={sorted(self.pcr_values)}, "
                f"measurements={len(self.measurements)})")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"platform_id": self.platform_id}
        for name in _EVIDENCE_BYTES:
            out[name] = getattr(self, name).hex()
        out["pcr_values"] = {str(pcr): value.hex() for pcr, value in sorted(self.pcr_values.items())}
        out["measurements"] = [m.to_dict() for m in self.measurements]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        try:
            return cls(platform_id=str(data["platform_id"]),
                       pcr_values={int(k): bytes.fromhex(v) for k, v in data["pcr_values"].items()},
                       measurements=[Measurement.from_dict(m) for m in data["measurements"]],
                       **{name: bytes.fromhex(data[name]) for name in _EVIDENCE_BYTES})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AttestationError(f"evidence does not decode: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class ReferenceValues:
    """The M2MES's expected SHA-256 digest per component, optionally for one ``model`` and
    signed (``sign``) so the PVA can check who vouches for them."""
    components: Mapping[str, bytes]
    model: str | None = None
    signature: bytes | None = None

    def canonical_bytes(self) -> bytes:
        """What the signature covers: a length-prefixed, sorted encoding."""
        out = bytearray(b"mcim-hil reference values v1\0")
        model = (self.model or "").encode()
        out += _U16.pack(len(model)) + model
        for name in sorted(self.components):
            raw = name.encode()
            out += _U16.pack(len(raw)) + raw + _U16.pack(len(self.components[name])) + self.components[name]
        return bytes(out)

    def sign(self, signer: pki.CertificateAuthority | Any) -> ReferenceValues:
        """A signed copy; ``signer`` is a CertificateAuthority or a private key."""
        data = self.canonical_bytes()
        signature = signer.sign(data) if isinstance(signer, pki.CertificateAuthority) else pki.sign_bytes(signer, data)
        return ReferenceValues(dict(self.components), self.model, signature)

    def verify(self, public_key: Any) -> None:
        if self.signature is None:
            raise AttestationError("reference values are not signed")
        try:
            pki.verify_bytes(public_key, self.signature, self.canonical_bytes())
        except InvalidSignature as exc:
            raise AttestationError("reference values signature does not verify with the M2MES key") from exc

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "components": {k: v.hex() for k, v in sorted(self.components.items())},
                "signature": self.signature.hex() if self.signature else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceValues:
        return cls({k: bytes.fromhex(v) for k, v in data["components"].items()}, data.get("model"),
                   bytes.fromhex(data["signature"]) if data.get("signature") else None)


# --- the credential challenge (AK bound to EK) ---------------------------------------------

@dataclass(frozen=True)
class CredentialChallenge:
    """TPM2_MakeCredential output for the device's ActivateCredential: marshalled
    TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET. ``to_bytes`` concatenates them (both self-sized)."""
    credential_blob: bytes
    encrypted_secret: bytes

    def to_bytes(self) -> bytes:
        return self.credential_blob + self.encrypted_secret

    @classmethod
    def from_bytes(cls, data: bytes) -> CredentialChallenge:
        r = _Reader(data, "credential challenge")
        r.tpm2b()  # the credential blob; the split after it is what matters
        split = r.pos
        r.tpm2b()
        r.end()
        return cls(data[:split], data[split:])

    def to_dict(self) -> dict[str, str]:
        return {"credential_blob": self.credential_blob.hex(), "encrypted_secret": self.encrypted_secret.hex()}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> CredentialChallenge:
        return cls(bytes.fromhex(data["credential_blob"]), bytes.fromhex(data["encrypted_secret"]))


def make_credential_challenge(ek_public: bytes, ak_public: bytes) -> tuple[CredentialChallenge, bytes]:
    """Encrypt a fresh 32-byte secret to the EK, bound to the AK name computed here from
    ``ak_public``; only a TPM holding both (ActivateCredential) recovers it.
    Returns (challenge for the device, expected secret)."""
    ek = parse_public(ek_public)
    if not ek.has(RESTRICTED | DECRYPT):
        raise AttestationError("EK public area is not a restricted decryption key")
    ak_name = parse_public(ak_public).name
    secret = os.urandom(32)
    if ek.type == TPM_ALG_ECC and ek.curve in _CURVES and ek.name_alg in _HASHES \
            and ek.symmetric[0] == TPM_ALG_AES and ek.symmetric[2] == TPM_ALG_CFB:
        return _make_credential_ecc(ek, secret, ak_name), secret
    from tpm2_pytss.types import TPM2B_PUBLIC
    from tpm2_pytss.utils import make_credential

    ek_struct, _ = TPM2B_PUBLIC.unmarshal(ek_public)
    blob, encrypted = make_credential(ek_struct, secret, ak_name)
    return CredentialChallenge(blob.marshal(), encrypted.marshal()), secret


def _kdfa(hash_alg: int, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int) -> bytes:
    """TPM 2.0 Part 1 11.4.10.2: KDFa, SP 800-108 counter mode with HMAC."""
    name, out, counter = _hash_name(hash_alg), b"", 0
    while len(out) * 8 < bits:
        counter += 1
        out += hmac.new(key, _U32.pack(counter) + label + b"\0" + context_u + context_v + _U32.pack(bits),
                        name).digest()
    return out[:(bits + 7) // 8]


def _kdfe(hash_alg: int, z: bytes, label: bytes, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """TPM 2.0 Part 1 11.4.10.3: KDFe, SP 800-56A concatenation KDF."""
    name, out, counter = _hash_name(hash_alg), b"", 0
    while len(out) * 8 < bits:
        counter += 1
        out += hashlib.new(name, _U32.pack(counter) + z + label + b"\0" + party_u + party_v).digest()
    return out[:(bits + 7) // 8]


def _make_credential_ecc(ek: TpmPublic, secret: bytes, ak_name: bytes) -> CredentialChallenge:
    """TPM2_MakeCredential for an ECC EK (Part 1 24.4-24.6, Annex C.6.1): an ephemeral ECDH
    seed (KDFe, "IDENTITY"), the credential AES-CFB encrypted under KDFa(seed, "STORAGE", AK
    name), an outer HMAC under KDFa(seed, "INTEGRITY") over it and the AK name. Done here with
    the cryptography library: ~5x faster than through tpm2-pytss's objects, same bytes."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    curve, size = _CURVES[ek.curve]  # type: ignore[index]
    ephemeral = ec.generate_private_key(curve)
    z = ephemeral.exchange(ec.ECDH(), ek.public_key())  # type: ignore[arg-type]
    point = ephemeral.public_key().public_numbers()
    ex, ey = point.x.to_bytes(size, "big"), point.y.to_bytes(size, "big")
    digest_bits = _HASHES[ek.name_alg].digest_size * 8
    seed = _kdfe(ek.name_alg, z, b"IDENTITY", ex, ek.x.rjust(size, b"\0"), digest_bits)
    sym_key = _kdfa(ek.name_alg, seed, b"STORAGE", ak_name, b"", ek.symmetric[1])
    encryptor = Cipher(algorithms.AES(sym_key), _CFB(b"\0" * 16)).encryptor()
    enc_credential = encryptor.update(_U16.pack(len(secret)) + secret) + encryptor.finalize()
    hmac_key = _kdfa(ek.name_alg, seed, b"INTEGRITY", b"", b"", digest_bits)
    integrity = hmac.new(hmac_key, enc_credential + ak_name, _hash_name(ek.name_alg)).digest()
    inner = _U16.pack(len(integrity)) + integrity + enc_credential
    ephemeral_point = _U16.pack(size) + ex + _U16.pack(size) + ey
    return CredentialChallenge(_U16.pack(len(inner)) + inner, _U16.pack(len(ephemeral_point)) + ephemeral_point)


# --- the verdict ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class ValidationResult:
    """The PVA's verdict. ``pcr_values`` (the validated PCR state) and ``storage_key_public``
    are what the SHO seals the MCIM to."""
    passed: bool
    checks: list[Check]
    validated_components: list[str]
    platform_id: str
    pcr_digest: bytes | None
    storage_key_public: bytes | None
    integrity_checked: bool = True
    pcr_values: dict[int, bytes] = field(default_factory=dict)
    model: str | None = None

    def check(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r} in this result")

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return f"PASS {self.platform_id}: {len(self.checks)} checks"
        return f"FAIL {self.platform_id}: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_dict() for c in self.checks],
                "validated_components": list(self.validated_components), "platform_id": self.platform_id,
                "pcr_digest": self.pcr_digest.hex() if self.pcr_digest is not None else None,
                "storage_key_public": self.storage_key_public.hex() if self.storage_key_public is not None else None,
                "integrity_checked": self.integrity_checked,
                "pcr_values": {str(k): v.hex() for k, v in sorted(self.pcr_values.items())},
                "model": self.model}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationResult:
        def opt(value: str | None) -> bytes | None:
            return bytes.fromhex(value) if value is not None else None
        return cls(passed=bool(data["passed"]),
                   checks=[Check(c["name"], bool(c["passed"]), c["detail"]) for c in data["checks"]],
                   validated_components=list(data["validated_components"]),
                   platform_id=data["platform_id"], pcr_digest=opt(data.get("pcr_digest")),
                   storage_key_public=opt(data.get("storage_key_public")),
                   integrity_checked=bool(data.get("integrity_checked", True)),
                   pcr_values={int(k): bytes.fromhex(v) for k, v in data.get("pcr_values", {}).items()},
                   model=data.get("model"))


class _Fail(Exception):
    """A check's verdict is FAIL; the message is the check's detail."""


# --- the validator -------------------------------------------------------------------------

class PlatformValidator:
    """The PVA's checks over one platform's evidence.

    ``ek_roots``: pinned TPM manufacturer / lab CA certificates (an intermediate may be pinned
    too: the walk stops at the first pinned certificate). ``m2mes_ca``: the CA that issues PfCs.
    ``ocsp``: sends a DER OCSPRequest about the PfC, returns the DER OCSPResponse (in-process
    ``OcspResponder.respond`` or a network client). ``pcr_selection``: the sha256-bank PCRs the
    quote must cover, which the event log must explain. ``reference_values``: the M2MES's
    expected digests; a signed set is checked against ``m2mes_ca`` here, once.
    ``clock_history``: last (resetCount, restartCount) per platform id (give a persistent
    mapping to survive restarts). Nonces live ``nonce_lifetime`` seconds and are single use.
    ``signature_memo``: remember certificate signatures that verified (off: verify every time).
    """

    def __init__(self, ek_roots: Sequence[x509.Certificate], m2mes_ca: x509.Certificate,
                 ocsp: Callable[[bytes], bytes], pcr_selection: Sequence[int],
                 reference_values: ReferenceValues | Mapping[str, bytes], *,
                 ek_intermediates: Sequence[x509.Certificate] = (), nonce_lifetime: float = 120.0,
                 clock_history: MutableMapping[str, tuple[int, int]] | None = None,
                 require_signed_reference_values: bool = False, signature_memo: bool = True,
                 ocsp_cache: bool = True) -> None:
        if not ek_roots:
            raise AttestationError("at least one EK root certificate must be pinned")
        self._ek_roots = list(ek_roots)
        self._ek_intermediates = list(ek_intermediates)
        self._m2mes_ca = m2mes_ca
        self._ocsp = ocsp
        self._selection = tuple(sorted(set(pcr_selection)))
        if not self._selection:
            raise AttestationError("the PCR selection is empty")
        self._nonce_lifetime = nonce_lifetime
        self._nonces: dict[bytes, float] = {}
        self._used_nonces: OrderedDict[bytes, None] = OrderedDict()  # recent, to tell 'reused' from 'unknown'
        self._challenges: OrderedDict[bytes, tuple[bytes, bytes, float]] = OrderedDict()
        self._clock_history = clock_history if clock_history is not None else {}
        self._lock = threading.Lock()
        # certificate signatures already verified (EK CA chain, PfC): immutable, safe to remember
        self._memo = pki.SignatureMemo() if signature_memo else None
        self._names: dict[x509.Certificate, str] = {}
        self._reference = self._accept_reference_values(reference_values, require_signed_reference_values)
        # PfC serial -> checked OCSP status, reused until its nextUpdate (RFC 6960 4.2.2.1) or
        # until the issuer announces a revocation (forget_status); a revoked status is kept
        self._ocsp_cache: dict[int, pki.CertStatus] | None = {} if ocsp_cache else None
        self.ocsp_requests = 0
        self.ocsp_cache_hits = 0

    def _name_of(self, certificate: x509.Certificate) -> str:
        name = self._names.get(certificate)
        if name is None:
            name = self._names[certificate] = pki.describe_certificate(certificate)
        return name

    @property
    def pcr_selection(self) -> tuple[int, ...]:
        return self._selection

    @property
    def reference_values(self) -> ReferenceValues:
        return self._reference

    def _accept_reference_values(self, values: ReferenceValues | Mapping[str, bytes],
                                 require_signed: bool) -> ReferenceValues:
        if not isinstance(values, ReferenceValues):
            values = ReferenceValues(dict(values))
        for name, digest in values.components.items():
            if len(digest) != 32:
                raise AttestationError(f"reference value for {name!r} is not a SHA-256 digest")
        if values.signature is not None:
            values.verify(self._m2mes_ca.public_key())
        elif require_signed:
            raise AttestationError("unsigned reference values refused")
        return values

    def update_reference_values(self, values: ReferenceValues | Mapping[str, bytes], *,
                                require_signed: bool = False) -> None:
        """New reference values from the M2MES (e.g. after a firmware update)."""
        self._reference = self._accept_reference_values(values, require_signed)

    def forget_status(self, serial_number: int) -> None:
        """The PfC issuer announced a change (a revocation): ask OCSP again next time."""
        with self._lock:
            if self._ocsp_cache is not None:
                self._ocsp_cache.pop(serial_number, None)

    def _cached_status(self, serial_number: int, now: Any) -> pki.CertStatus | None:
        with self._lock:
            status = self._ocsp_cache.get(serial_number) if self._ocsp_cache is not None else None
            if status is None:
                return None
            if status.next_update is None or now >= status.next_update:
                del self._ocsp_cache[serial_number]  # stale: RFC 6960 says ask again
                return None
            self.ocsp_cache_hits += 1
            return status

    def _keep_status(self, serial_number: int, status: pki.CertStatus) -> None:
        with self._lock:
            self.ocsp_requests += 1
            if self._ocsp_cache is not None and status.next_update is not None:
                if len(self._ocsp_cache) > 1_000_000:
                    self._ocsp_cache.clear()
                self._ocsp_cache[serial_number] = status

    # nonces and challenges

    def new_nonce(self) -> bytes:
        """32 random bytes, single use, valid for ``nonce_lifetime`` seconds."""
        nonce = os.urandom(32)
        now = time.monotonic()
        with self._lock:
            if len(self._nonces) > 1024:
                for old in [n for n, expiry in self._nonces.items() if expiry < now]:
                    del self._nonces[old]
            self._nonces[nonce] = now + self._nonce_lifetime
        return nonce

    def _consume_nonce(self, nonce: bytes) -> str | None:
        """None when fresh, else why not. The nonce is spent either way."""
        now = time.monotonic()
        with self._lock:
            expiry = self._nonces.pop(nonce, None)
            reused = expiry is None and nonce in self._used_nonces
            self._used_nonces[nonce] = None
            if len(self._used_nonces) > 4096:
                self._used_nonces.popitem(last=False)
        if len(nonce) < MIN_NONCE_BYTES:
            return f"nonce has {len(nonce)} bytes, fewer than {MIN_NONCE_BYTES}"
        if reused:
            return "nonce was already used"
        if expiry is None:
            return "nonce was not issued by this PVA"
        if expiry < now:
            return f"nonce expired {now - expiry:.1f} s ago"
        return None

    def credential_challenge(self, ek_public: bytes, ak_public: bytes) -> tuple[CredentialChallenge, bytes]:
        """``make_credential_challenge`` that also remembers which EK and AK it was made for, so
        ``ak_bound_to_ek`` also refuses evidence that swaps in another AK or EK afterwards."""
        challenge, secret = make_credential_challenge(ek_public, ak_public)
        now = time.monotonic()
        with self._lock:
            while self._challenges and (len(self._challenges) > 4096
                                        or next(iter(self._challenges.values()))[2] < now):
                self._challenges.popitem(last=False)
            self._challenges[hashlib.sha256(secret).digest()] = (
                tpm_name(ek_public), tpm_name(ak_public), now + self._nonce_lifetime)
        return challenge, secret

    def _take_challenge(self, secret: bytes) -> tuple[bytes, bytes] | None:
        """The (EK name, AK name) a challenge with this secret was made for; single use."""
        with self._lock:
            issued = self._challenges.pop(hashlib.sha256(secret).digest(), None)
        return issued[:2] if issued else None

    def _observe_clock(self, platform_id: str, counts: tuple[int, int], trusted: bool) -> tuple[int, int] | None:
        """The last (resetCount, restartCount) seen for the platform; remember ``counts`` if
        ``trusted`` and newer."""
        with self._lock:
            last = self._clock_history.get(platform_id)
            last = tuple(last) if last is not None else None  # a persistent mapping may give lists
            if trusted and (last is None or counts > last):
                self._clock_history[platform_id] = counts
        return last  # type: ignore[return-value]

    # the validation

    def validate(self, evidence: Evidence, nonce: bytes, expected_activation_secret: bytes, *,
                 check_integrity: bool = True, reference_values: ReferenceValues | None = None) -> ValidationResult:
        """Run every check over ``evidence`` for the quote/certify ``nonce`` this PVA issued.
        Never raises for bad evidence: each problem is the detail of a failed check.
        ``reference_values``: already accepted values (a PVA's per-model cache) instead of the
        validator's own."""
        run = _Validation(self, evidence, nonce, expected_activation_secret, self._consume_nonce(nonce),
                          reference_values or self._reference)
        for name in CHECKS:
            if check_integrity or name not in INTEGRITY_CHECKS:
                run.run(name)
        return run.result(check_integrity)


class _Validation:
    """One run of the checks over one piece of evidence: parses each structure once, and
    keeps a parse failure as the FAIL detail of every check that needs the structure."""

    def __init__(self, validator: PlatformValidator, evidence: Evidence, nonce: bytes, secret: bytes,
                 nonce_problem: str | None, reference: ReferenceValues) -> None:
        self.v = validator
        self.reference = reference
        self.evidence = evidence
        self.nonce = nonce
        self.secret = secret
        self.nonce_problem = nonce_problem
        self.now = pki.utc_now()
        self.results: dict[str, Check] = {}
        self.matched: list[str] = []
        self.identity: pki.PlatformIdentity | None = None
        self._parsed: dict[str, Any] = {}

    # running and the verdict

    def run(self, name: str) -> None:
        try:
            self.results[name] = Check(name, True, getattr(self, name)())
        except _Fail as exc:
            self.results[name] = Check(name, False, str(exc))
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm, pki.PkiError) as exc:
            self.results[name] = Check(name, False, f"{type(exc).__name__}: {exc}")

    def passed(self, *names: str) -> bool:
        return all(name in self.results and self.results[name].passed for name in names)

    def result(self, check_integrity: bool) -> ValidationResult:
        checks = [self.results[name] for name in CHECKS if name in self.results]
        # components count as validated only when the quote vouches for the log that names them
        integrity_trusted = check_integrity and self.passed(
            "nonce_fresh", "quote_signature", "quote_nonce", "pcr_selection", "pcr_digest", "event_log_replay",
            "reference_values")
        try:
            digest: bytes | None = self.quote.pcr_digest
        except _Fail:
            digest = None
        return ValidationResult(
            passed=all(c.passed for c in checks), checks=checks,
            validated_components=list(self.matched) if integrity_trusted else [],
            platform_id=self.identity.platform_id if self.identity else self.evidence.platform_id,
            pcr_digest=digest,
            storage_key_public=self.evidence.storage_key_public if self.passed("storage_key_certified") else None,
            integrity_checked=check_integrity,
            pcr_values=dict(self.evidence.pcr_values) if integrity_trusted else {},
            model=self.identity.model if self.identity else None)

    # parsed structures

    def _parse(self, what: str, make: Callable[[], Any]) -> Any:
        if what not in self._parsed:
            try:
                self._parsed[what] = make()
            except (ValueError, TypeError, UnsupportedAlgorithm, pki.PkiError) as exc:
                self._parsed[what] = _Fail(f"{what} does not parse: {exc}")
        value = self._parsed[what]
        if isinstance(value, _Fail):
            raise value
        return value

    @property
    def ek_certificate(self) -> x509.Certificate:
        return self._parse("EK certificate", lambda: x509.load_der_x509_certificate(self.evidence.ek_certificate))

    @property
    def ek(self) -> TpmPublic:
        return self._parse("EK public area", lambda: parse_public(self.evidence.ek_public))

    @property
    def ak(self) -> TpmPublic:
        return self._parse("AK public area", lambda: parse_public(self.evidence.ak_public))

    @property
    def ak_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        return self._parse("AK public key", lambda: self.ak.public_key())

    @property
    def quote(self) -> Attest:
        return self._parse("quote", lambda: parse_attest(self.evidence.quote_attest))

    @property
    def pfc(self) -> x509.Certificate:
        return self._parse("PfC", lambda: x509.load_der_x509_certificate(self.evidence.pfc))

    @property
    def pfc_identity(self) -> pki.PlatformIdentity:
        return self._parse("PfC platform identity", lambda: pki.platform_identity(self.pfc))

    # the checks, in CHECKS order; each returns its PASS detail or raises _Fail

    def ek_certificate_chain(self) -> str:
        try:
            path = pki.verify_chain(self.ek_certificate, self.v._ek_intermediates, self.v._ek_roots, at=self.now,
                                    eku=pki.OID_EK_CERTIFICATE, memo=self.v._memo)
        except pki.ChainError as exc:
            raise _Fail(f"EK certificate path broken at {exc}") from exc
        return "EK certificate chains to " + self.v._name_of(path[-1])

    def ek_public_matches_certificate(self) -> str:
        ek = self.ek
        if not ek.has(EK_REQUIRED) or ek.attributes & SIGN_ENCRYPT:
            raise _Fail(f"EK attributes {ek.attribute_names()} are not those of an endorsement key")
        if not _certifies(self.ek_certificate, ek):
            raise _Fail("EK public area holds a different key than the EK certificate")
        return "EK public area holds the certified key"

    def ak_attributes(self) -> str:
        ak = self.ak
        missing = [name for bit, name in _ATTRIBUTE_NAMES.items() if AK_REQUIRED & bit and not ak.attributes & bit]
        if missing:
            raise _Fail("AK lacks " + ", ".join(missing))
        if ak.attributes & DECRYPT:
            raise _Fail("AK is also a decryption key")
        if ak.type not in (TPM_ALG_ECC, TPM_ALG_RSA):
            raise _Fail(f"AK type {ak.type:#06x} is not ECC or RSA")
        return "restricted signing key: " + ", ".join(ak.attribute_names())

    def ak_bound_to_ek(self) -> str:
        secret_ok = hmac.compare_digest(self.evidence.activation_proof, self.secret)
        issued = self.v._take_challenge(self.secret)
        if not secret_ok:
            raise _Fail("activation proof differs from the credential secret: the AK is not in the EK's TPM")
        if issued is None:
            return "ActivateCredential recovered the secret"
        ek_name, ak_name = issued
        if self.ek.name != ek_name:
            raise _Fail("evidence names another EK than the one challenged")
        if self.ak.name != ak_name:
            raise _Fail("evidence names another AK than the one challenged")
        return "ActivateCredential recovered the secret made for this EK and AK name"

    def nonce_fresh(self) -> str:
        if self.nonce_problem:
            raise _Fail(self.nonce_problem)
        return f"{len(self.nonce)}-byte nonce issued by this PVA, first use"

    def quote_signature(self) -> str:
        quote = self.quote
        if quote.magic != TPM_GENERATED_VALUE:
            raise _Fail(f"quote magic {quote.magic:#010x} is not TPM_GENERATED_VALUE")
        if quote.type != TPM_ST_ATTEST_QUOTE:
            raise _Fail(f"attestation type {quote.type:#06x} is not a quote")
        try:
            alg = verify_tpm_signature(self.ak, self.evidence.quote_signature, self.evidence.quote_attest,
                                       self.ak_key)
        except InvalidSignature as exc:
            raise _Fail("quote signature does not verify with the AK") from exc
        return f"{HASH_NAMES[alg]} signature by the AK verifies"

    def quote_nonce(self) -> str:
        if self.quote.extra_data != self.nonce:
            raise _Fail("quote extraData is not the nonce of this validation")
        return "quote extraData equals the nonce"

    def pcr_selection(self) -> str:
        signed = self.quote.pcr_selection
        wanted = {PCR_BANK: frozenset(self.v._selection)}
        if {alg: pcrs for alg, pcrs in signed.items() if pcrs} != wanted:
            raise _Fail(f"quote covers {_describe_selection(signed)}, PVA asked for {_describe_selection(wanted)}")
        return f"quote covers {_describe_selection(wanted)}"

    def pcr_digest(self) -> str:
        selection, reported = self.v._selection, self.evidence.pcr_values
        if set(reported) != set(selection):
            raise _Fail(f"reported PCRs {sorted(reported)} differ from the selection {list(selection)}")
        if any(len(reported[pcr]) != 32 for pcr in selection):
            raise _Fail("a reported PCR value is not 32 bytes")
        # TPM 2.0 Part 3 18.4: pcrDigest is hashed with the signing scheme's hash
        hash_alg = _signature_hash(self.evidence.quote_signature)
        digest = hashlib.new(_hash_name(hash_alg), b"".join(reported[p] for p in selection)).digest()
        if not hmac.compare_digest(digest, self.quote.pcr_digest):
            raise _Fail("quote pcrDigest differs from the digest of the reported PCR values")
        return "quote pcrDigest matches the reported PCR values"

    def event_log_replay(self) -> str:
        replayed = {pcr: pcr_initial_value(pcr) for pcr in self.v._selection}
        for event in self.evidence.measurements:
            if event.pcr not in replayed:
                raise _Fail(f"{event.component!r} measured into PCR {event.pcr}, which the quote does not cover")
            if len(event.digest) != 32:
                raise _Fail(f"{event.component!r} digest is not SHA-256")
            replayed[event.pcr] = extend(replayed[event.pcr], event.digest)
        for pcr in self.v._selection:
            if replayed[pcr] != self.evidence.pcr_values.get(pcr):
                raise _Fail(f"replaying the event log does not give the reported PCR {pcr}")
        return f"{len(self.evidence.measurements)} events replay to the reported PCR values"

    def reference_values(self) -> str:
        reference = self.reference
        if reference.model is not None and self.pfc_identity.model != reference.model:
            raise _Fail(f"PfC model {self.pfc_identity.model!r} has no reference values (have {reference.model!r})")
        seen: list[str] = []
        for event in self.evidence.measurements:
            expected = reference.components.get(event.component)
            if expected is None:
                raise _Fail(f"component {event.component!r} has no reference value")
            if not hmac.compare_digest(expected, event.digest):
                raise _Fail(f"component {event.component!r} digest differs from its reference value")
            if event.component not in seen:
                seen.append(event.component)
        missing = sorted(name for name in reference.components if name not in seen)
        if missing:
            raise _Fail("components not measured: " + ", ".join(missing))
        self.matched = seen
        return "components match: " + ", ".join(seen)

    def clock(self) -> str:
        quote = self.quote
        if quote.safe != 1:
            raise _Fail("clockInfo.safe is 0: the TPM clock may have gone backwards")
        counts = (quote.reset_count, quote.restart_count)
        # only an authentic, fresh quote may move the remembered counters
        last = self.v._observe_clock(self.evidence.platform_id, counts,
                                     self.passed("quote_signature", "nonce_fresh"))
        if last is not None and counts < last:
            raise _Fail(f"resetCount/restartCount {counts} went back from {last}")
        return f"safe, resetCount {counts[0]}, restartCount {counts[1]}"

    def pfc_signature(self) -> str:
        try:
            pki.verify_chain(self.pfc, [], [self.v._m2mes_ca], at=self.now, eku=pki.OID_AK_CERTIFICATE,
                             memo=self.v._memo)
        except pki.ChainError as exc:
            raise _Fail(f"PfC does not verify: {exc}") from exc
        return "PfC issued by " + self.v._name_of(self.v._m2mes_ca)

    def pfc_binds_ak(self) -> str:
        if not _certifies(self.pfc, self.ak):
            raise _Fail("PfC certifies another key than the AK")
        return "PfC certifies the AK"

    def pfc_names_platform(self) -> str:
        named = self.pfc_identity
        if named.platform_id != self.evidence.platform_id:
            raise _Fail(f"PfC names platform {named.platform_id!r}, evidence claims {self.evidence.platform_id!r}")
        self.identity = named
        return f"platform {named.platform_id} model {named.model}"

    def pfc_status_ocsp(self) -> str:
        pfc, issuer = self.pfc, self.v._m2mes_ca
        if pfc.issuer != issuer.subject:
            raise _Fail("not asked: the PfC was not issued by the M2MES CA")
        status = self.v._cached_status(pfc.serial_number, self.now)
        how = "OCSP says"
        if status is not None:
            how = "OCSP said (response kept until its nextUpdate)"
        else:
            ocsp_nonce = os.urandom(16)
            request = pki.ocsp_request(pfc, issuer, ocsp_nonce)
            try:
                response = self.v._ocsp(request)
            except Exception as exc:  # a network client may raise anything; the verdict is FAIL
                raise _Fail(f"OCSP responder unreachable: {type(exc).__name__}: {exc}") from exc
            try:
                status = pki.check_ocsp_response(response, pfc, issuer, ocsp_nonce, at=self.now)
            except pki.OcspError as exc:
                raise _Fail(f"OCSP response refused: {exc}") from exc
            self.v._keep_status(pfc.serial_number, status)
        if not status.good:
            raise _Fail(f"OCSP says the PfC is {status}")
        return f"{how} good"

    def storage_key_certified(self) -> str:
        attest = self._parse("certification", lambda: parse_attest(self.evidence.certify_attest))
        key = self._parse("storage key public area", lambda: parse_public(self.evidence.storage_key_public))
        if attest.magic != TPM_GENERATED_VALUE or attest.type != TPM_ST_ATTEST_CERTIFY:
            raise _Fail("certification is not a TPM-generated TPM2_Certify attestation")
        try:
            verify_tpm_signature(self.ak, self.evidence.certify_signature, self.evidence.certify_attest, self.ak_key)
        except InvalidSignature as exc:
            raise _Fail("certification signature does not verify with the AK") from exc
        if attest.extra_data != self.nonce:
            raise _Fail("certification extraData is not the nonce of this validation")
        if attest.certified_name != key.name:
            raise _Fail("certification is about another object than the storage key")
        if not key.has(STORAGE_KEY_REQUIRED) or key.attributes & SIGN_ENCRYPT:
            raise _Fail("storage key is not a fixedTPM restricted decryption key "
                        f"(attributes {', '.join(key.attribute_names())})")
        if key.symmetric[0] == TPM_ALG_NULL or key.type not in (TPM_ALG_ECC, TPM_ALG_RSA):
            raise _Fail("storage key cannot be a parent (no symmetric algorithm)")
        return "AK certified a fixedTPM restricted decryption key for this nonce"


def _certifies(certificate: x509.Certificate, area: TpmPublic) -> bool:
    """True when ``certificate`` is over the key of ``area`` (compared on the encoded key,
    without building a key object from the TPM side)."""
    key = certificate.public_key()
    if area.type == TPM_ALG_ECC and isinstance(key, ec.EllipticCurvePublicKey):
        curve = _CURVES.get(area.curve or 0)
        if curve is None or curve[0].name != key.curve.name:
            return False
        size = curve[1]
        point = b"\x04" + area.x.rjust(size, b"\0") + area.y.rjust(size, b"\0")
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint) == point
    if area.type == TPM_ALG_RSA and isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return numbers.n == int.from_bytes(area.unique, "big") and numbers.e == (area.exponent or 65537)
    return False


def _signature_hash(signature: bytes) -> int:
    if len(signature) < 4:
        raise TpmStructureError("TPMT_SIGNATURE: truncated")
    return _U16.unpack_from(signature, 2)[0]


def _describe_selection(selection: Mapping[int, Iterable[int]]) -> str:
    return "; ".join(f"{HASH_NAMES.get(alg, hex(alg))}:{','.join(map(str, sorted(pcrs)))}"
                     for alg, pcrs in sorted(selection.items())) or "nothing"
