"""What an M2ME sends the PVA, as data: the TPM 2.0 structures of its evidence (TPM2B_PUBLIC,
TPMS_ATTEST, TPMT_SIGNATURE), parsed strictly here (TPM 2.0 Part 2), the measurement log, the
supplier's reference values, and the credential challenge (MakeCredential) that binds an AK to
an EK. Formats and their codecs only: what the PVA concludes from them is attestation.py's.

The PVA parses the few TPM structures it needs itself rather than through tpm2-pytss's CFFI
objects: that is ~10x faster, keeps the parse strict (no trailing bytes), and lets the PVA
compute names and keys itself instead of trusting the device. ``make_credential_challenge`` does
MakeCredential itself for an ECC EK (AES-CFB), else through tpm2-pytss's ``make_credential``,
with the AK name computed here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
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
_ECDSA = {alg: ec.ECDSA(h) for alg, h in _HASHES.items()}  # immutable: built once, not per signature
_CURVES = {TPM_ECC_NIST_P256: (ec.SECP256R1(), 32), TPM_ECC_NIST_P384: (ec.SECP384R1(), 48),
           TPM_ECC_NIST_P521: (ec.SECP521R1(), 66)}
# TPMT_ECC_SCHEME / TPMT_RSA_SCHEME details: most carry one hashAlg, ECDAA adds a count, RSAES nothing.
_SCHEME_DETAIL_SIZE = {TPM_ALG_NULL: 0, TPM_ALG_RSAES: 0, TPM_ALG_ECDAA: 4}
PCR_BANK = TPM_ALG_SHA256
PCR_COUNT = 24                    # PC Client platform: 24 PCRs
MIN_NONCE_BYTES = 16

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


_NAMES_OF: dict[int, tuple[str, ...]] = {}  # TPMA_OBJECT value -> its bits' names


@dataclass(frozen=True, slots=True)
class TpmPublic:
    """The fields of a TPMT_PUBLIC the PVA and the SHO look at, and the object's name (a hash of
    the marshalled TPMT_PUBLIC, computed at parse). Slotted, without the marshalled area: a PVA
    keeps 3 per M2ME, 10^5 M2MEs."""
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
    name: bytes = b""                   # TPM 2.0 Part 1 16: nameAlg || H_nameAlg(TPMT_PUBLIC)

    def has(self, attributes: int) -> bool:
        return self.attributes & attributes == attributes

    def attribute_names(self) -> list[str]:
        names = _NAMES_OF.get(self.attributes)
        if names is None:
            names = tuple(name for bit, name in _ATTRIBUTE_NAMES.items() if self.attributes & bit)
            if len(_NAMES_OF) < 1024:
                _NAMES_OF[self.attributes] = names
        return list(names)

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


_SYMMETRIC: dict[tuple[int, int, int], tuple[int, int, int]] = {}  # equal tuples shared (few kinds)


def _read_symmetric(r: _Reader) -> tuple[int, int, int]:
    algorithm = r.u16()
    if algorithm == TPM_ALG_NULL:
        return (TPM_ALG_NULL, 0, TPM_ALG_NULL)
    symmetric = (algorithm, r.u16(), r.u16())
    return _SYMMETRIC.setdefault(symmetric, symmetric) if len(_SYMMETRIC) < 256 else symmetric


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
    name = _U16.pack(name_alg) + hashlib.new(_hash_name(name_alg), area).digest()
    return TpmPublic(kind, name_alg, attributes, auth_policy, symmetric, scheme, scheme_hash,
                     name=name, **fields)


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


_ATTEST_HEAD = struct.Struct(">IHH")    # magic, type, qualifiedSigner.size
_ONE_BANK = struct.Struct(">IHB")       # TPML_PCR_SELECTION count, hash, sizeofSelect
_BITMAPS: dict[bytes, frozenset[int]] = {}


def _bitmap_pcrs(bitmap: bytes) -> frozenset[int]:
    pcrs = _BITMAPS.get(bitmap)
    if pcrs is None:
        pcrs = frozenset(8 * i + bit for i, byte in enumerate(bitmap) for bit in range(8) if byte >> bit & 1)
        if len(_BITMAPS) < 1024:
            _BITMAPS[bitmap] = pcrs
    return pcrs


def parse_attest(data: bytes) -> Attest:
    """Parse a marshalled TPMS_ATTEST (Part 2 10.12.12) strictly: a quote or a certification."""
    data = bytes(data)
    try:  # the shapes TPMs send, in one pass; anything else is read field by field below
        attest = _parse_attest_common(data)
    except struct.error:
        attest = None
    return attest if attest is not None else _parse_attest_by_field(data)


def _parse_attest_common(data: bytes) -> Attest | None:
    """A quote over one PCR bank or a certification; None for any other shape or any size that
    does not add up (the field-by-field reader then says what is wrong). Offsets only grow, so
    a TPM2B running past the end leaves ``p`` past the end and fails the final length test."""
    magic, kind, size = _ATTEST_HEAD.unpack_from(data, 0)
    p = 8 + size
    signer = data[8:p]
    size = _U16.unpack_from(data, p)[0]
    extra = data[p + 2:p + 2 + size]
    p += 2 + size
    clock, reset, restart, safe, firmware = _CLOCK.unpack_from(data, p)
    p += _CLOCK.size
    if kind == TPM_ST_ATTEST_QUOTE:
        count, alg, select = _ONE_BANK.unpack_from(data, p)
        if count != 1:
            return None
        p += 7
        bitmap = data[p:p + select]
        p += select
        size = _U16.unpack_from(data, p)[0]
        digest = data[p + 2:p + 2 + size]
        p += 2 + size
        if p != len(data):
            return None
        return Attest(magic, kind, signer, extra, clock, reset, restart, safe, firmware,
                      pcr_selection={alg: _bitmap_pcrs(bitmap)}, pcr_digest=digest)
    if kind == TPM_ST_ATTEST_CERTIFY:
        size = _U16.unpack_from(data, p)[0]
        certified = data[p + 2:p + 2 + size]
        p += 2 + size
        size = _U16.unpack_from(data, p)[0]
        qualified = data[p + 2:p + 2 + size]
        p += 2 + size
        if p != len(data):
            return None
        return Attest(magic, kind, signer, extra, clock, reset, restart, safe, firmware,
                      certified_name=certified, certified_qualified_name=qualified)
    return None


def _parse_attest_by_field(data: bytes) -> Attest:
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
        key.verify(der, data, _ECDSA[hash_alg])
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
                   "quote_signature", "pfc", "storage_key_public", "certify_attest", "certify_signature",
                   "authority_public", "authority_certify_attest", "authority_certify_signature")


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
    # the TRE's unseal authority (issue 9): the object whose authValue only the TRE agent holds;
    # its name goes in the sealed MCIM's policy (PolicySecret). Certified by the AK like the storage key.
    authority_public: bytes = b""             # TPM2B_PUBLIC
    authority_certify_attest: bytes = b""     # TPMS_ATTEST of TPM2_Certify(authority, AK)
    authority_certify_signature: bytes = b""  # TPMT_SIGNATURE

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
                       **{name: bytes.fromhex(data.get(name, "") if name.startswith("authority_") else data[name])
                          for name in _EVIDENCE_BYTES})
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
