"""A SIMULATED TRE: software keys in place of a TPM, for fleets larger than a lab has TPMs.

It implements the TRE interface the TPM-backed one does (harness/m2me/tre.py:
boot, pcr_selection, keys, endorsement_key, activate_credential, quote, certify_storage_key,
unseal_authority_public, certify_unseal_authority), so
the M2ME agent, the SHO, the PVA and the IVF run unchanged on it. Its answers are TPM 2.0
formats: TPM2B_PUBLIC areas (ECC P-256 EK, restricted ECDSA AK, restricted decryption storage
key), TPMS_ATTEST quotes and certifications signed as TPMT_SIGNATURE (ECDSA P-256, SHA-256), and
ActivateCredential done as TPM 2.0 Part 1 24 says (ECDH seed, KDFe, HMAC integrity, AES-CFB).
The PVA checks them with the code it uses for a real TPM's; nothing in the network knows a
simulated device from a real one except its label.

tpm2-pytss marshals what varies by key or PCR state (a public area's template, TPMS_QUOTE_INFO,
TPMS_CERTIFY_INFO); the few fixed-width fields around them (TPMS_ATTEST's header and clock,
TPMT_SIGNATURE's r and s) are packed here, because building the whole tpm2-pytss object cost
~250 us per quote. tests/test_fleet.py pins every structure byte for byte against
tpm2-pytss's own ``marshal()`` of the whole object.

Each simulated TRE has its own keys, derived from its own random 32-byte seed (a shard keeps
10^5 seeds, not 3x10^5 keys); its EK certificate comes from the fleet's simulated TPM
manufacturer CA (``SimulatedTpmMaker``), which the PVA pins like swtpm's local CA.
It holds no MCIM: a simulated fleet stops before the install (step 12 needs a real TPM).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers import algorithms

try:  # cryptography >= 43 keeps CFB among the "decrepit" modes; TPM 2.0 still uses it
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover
    from cryptography.hazmat.primitives.ciphers.modes import CFB
from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC, TPM2_GENERATED, TPM2_ST, TPMA_OBJECT
from tpm2_pytss.internal.crypto import _decrypt, _kdfa, kdfe
from tpm2_pytss.types import (
    TPM2B_DIGEST,
    TPM2B_PUBLIC,
    TPML_PCR_SELECTION,
    TPMS_CERTIFY_INFO,
    TPMS_ECC_PARMS,
    TPMS_ECC_POINT,
    TPMS_PCR_SELECTION,
    TPMS_QUOTE_INFO,
    TPMS_SCHEME_HASH,
    TPMT_ECC_SCHEME,
    TPMT_KDF_SCHEME,
    TPMT_PUBLIC,
    TPMT_SYM_DEF_OBJECT,
    TPMU_ASYM_SCHEME,
    TPMU_PUBLIC_ID,
    TPMU_PUBLIC_PARMS,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)

from mcim_hil.m2me.tre import MEASUREMENT_PCR, Component, EndorsementKey, MeasuredComponent
from mcim_hil.network import pki

SIMULATED = "simulated"
# TCG EK Credential Profile 2.x B.3.4, template L-2 (ECC NIST P-256): PolicySecret(TPM_RH_ENDORSEMENT)
EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
# TCG EK Credential Profile 2.x 3.2: tcg-kp-EKCertificate
OID_EK_CERTIFICATE = pki.OID_EK_CERTIFICATE
FIRMWARE_VERSION = 0x0001_0000_0000_0001  # what a simulated TRE says in TPMS_ATTEST
_SERIALS = itertools.count(1)
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDSA_SIGNATURE_HEAD = int(TPM2_ALG.ECDSA).to_bytes(2, "big") + int(TPM2_ALG.SHA256).to_bytes(2, "big")


class SimulatedTreError(Exception):
    """A simulated TRE cannot do this (it holds no MCIM), or a challenge does not open."""


def _aes128_cfb() -> TPMT_SYM_DEF_OBJECT:
    return TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits=TPMU_SYM_KEY_BITS(aes=128),
                               mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB))


def _ecc_public(key: ec.EllipticCurvePublicKey, attributes: int, *, scheme: int = TPM2_ALG.NULL,
                symmetric: bool = False, policy: bytes = b"") -> TPM2B_PUBLIC:
    numbers = key.public_numbers()
    details = (TPMU_ASYM_SCHEME(ecdsa=TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256)) if scheme == TPM2_ALG.ECDSA
               else TPMU_ASYM_SCHEME())
    return TPM2B_PUBLIC(publicArea=TPMT_PUBLIC(
        type=TPM2_ALG.ECC, nameAlg=TPM2_ALG.SHA256, objectAttributes=attributes, authPolicy=policy,
        parameters=TPMU_PUBLIC_PARMS(eccDetail=TPMS_ECC_PARMS(
            symmetric=_aes128_cfb() if symmetric else TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
            scheme=TPMT_ECC_SCHEME(scheme=scheme, details=details),
            curveID=TPM2_ECC.NIST_P256, kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL))),
        unique=TPMU_PUBLIC_ID(ecc=TPMS_ECC_POINT(x=numbers.x.to_bytes(32, "big"), y=numbers.y.to_bytes(32, "big"))),
    ))


_FIXED = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
EK_ATTRIBUTES = _FIXED | TPMA_OBJECT.ADMINWITHPOLICY | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
AK_ATTRIBUTES = _FIXED | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT
STORAGE_ATTRIBUTES = (_FIXED | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA | TPMA_OBJECT.RESTRICTED
                      | TPMA_OBJECT.DECRYPT)
# the TRE's unseal authority, as the TPM driver's create_auth_object makes it (an HMAC key)
AUTHORITY_ATTRIBUTES = _FIXED | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA | TPMA_OBJECT.SIGN_ENCRYPT


def _authority_public(unique: bytes) -> TPM2B_PUBLIC:
    public = TPM2B_PUBLIC(publicArea=TPMT_PUBLIC(type=TPM2_ALG.KEYEDHASH, nameAlg=TPM2_ALG.SHA256,
                                                 objectAttributes=AUTHORITY_ATTRIBUTES))
    scheme = public.publicArea.parameters.keyedHashDetail.scheme
    scheme.scheme = TPM2_ALG.HMAC
    scheme.details.hmac.hashAlg = TPM2_ALG.SHA256
    public.publicArea.unique.keyedHash = unique
    return public


class SimulatedTpmMaker:
    """The simulated TPMs' manufacturer: a CA that certifies each simulated TRE's EK."""

    def __init__(self, ca: pki.CertificateAuthority) -> None:
        self.ca = ca

    @classmethod
    def create(cls) -> SimulatedTpmMaker:
        return cls(pki.CertificateAuthority.create("mcim-hil SIMULATED TPM EK CA",
                                                   organization="mcim-hil simulated TPM maker"))

    @property
    def certificate(self) -> x509.Certificate:
        """What the PVA pins for simulated TREs."""
        return self.ca.certificate

    def certify_ek(self, ek_public: ec.EllipticCurvePublicKey, serial: str) -> x509.Certificate:
        usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=True,
                              data_encipherment=False, key_agreement=True, key_cert_sign=False,
                              crl_sign=False, encipher_only=False, decipher_only=False)
        return self.ca.issue(ek_public, f"simulated TPM {serial}", key_usage=usage,
                             extended_key_usage=[OID_EK_CERTIFICATE])


class Marshalled(bytes):
    """A marshalled TPM structure kept as bytes (a fleet keeps 10^5 of them), with the
    ``marshal()`` of a tpm2-pytss object."""

    def marshal(self) -> bytes:
        return bytes(self)


@dataclass
class SimulatedKey:
    """Shaped as the TPM driver's Ak / StorageKey: ``public`` (marshalled TPM2B_PUBLIC), ``name``,
    ``public_key`` (unmarshalled from ``public`` on demand). Built when asked for: a TRE keeps
    only the marshalled area."""

    public: Marshalled = field(repr=False)

    @property
    def name(self) -> bytes:
        return _name_of_marshalled(self.public)

    @property
    def point(self) -> bytes:
        """X9.62 uncompressed P-256 point: the area's last field, TPMS_ECC_POINT (two 32-byte TPM2B)."""
        unique = bytes(self.public)[-68:]
        return b"\x04" + unique[2:34] + unique[36:68]

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.point)


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _name_of_marshalled(tpm2b_public: bytes) -> bytes:
    """TPM 2.0 Part 1 16 over a marshalled TPM2B_PUBLIC: nameAlg || SHA-256(TPMT_PUBLIC)."""
    return TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(tpm2b_public[2:]).digest()


# P-256 group order (SEC 2 2.4.2): a private scalar is in [1, n-1]
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _derived_key(seed: bytes, label: bytes) -> ec.EllipticCurvePrivateKey:
    """A TRE's private key, derived from its 32-byte seed (HMAC-SHA-256 as a PRF): a fleet keeps
    10^5 seeds, not 3x10^5 keys. Each TRE's seed is random, so each TRE has its own keys."""
    scalar = int.from_bytes(hmac.new(seed, label, hashlib.sha256).digest(), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


_LOADED: dict[tuple[bytes, bytes], ec.EllipticCurvePrivateKey] = {}  # the last key used (a quote and a certify in a row)


def _loaded(seed: bytes, label: bytes) -> ec.EllipticCurvePrivateKey:
    key = _LOADED.get((seed, label))
    if key is None:
        key = _derived_key(seed, label)
        _LOADED.clear()
        _LOADED[(seed, label)] = key
    return key


# The public area of each kind of key marshalled once by tpm2-pytss (with P-256's generator); a TRE's
# area is that with its own point (TPMS_ECC_POINT, two 32-byte TPM2B, is the area's last field)
_TEMPLATES: dict[tuple[int, int, bool, bytes], bytes] = {}


def _ecc_public_bytes(point: bytes, attributes: int, *, scheme: int = TPM2_ALG.NULL,
                      symmetric: bool = False, policy: bytes = b"") -> bytes:
    """``_ecc_public(...).marshal()`` of the key with the 64-byte ``point`` (x || y), from the
    template of its kind (tests/test_fleet.py pins that the two are the same bytes)."""
    kind = (int(attributes), int(scheme), symmetric, policy)
    template = _TEMPLATES.get(kind)
    if template is None:
        generator = ec.EllipticCurvePublicNumbers(  # any valid point: its bytes are cut off
            0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
            0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5, ec.SECP256R1()).public_key()
        template = _TEMPLATES[kind] = _ecc_public(generator, attributes, scheme=scheme, symmetric=symmetric,
                                                  policy=policy).marshal()[:-68]
    return template + b"\x00\x20" + point[:32] + b"\x00\x20" + point[32:]


def _xy(key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = key.public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


_MAGIC = int(TPM2_GENERATED.VALUE).to_bytes(4, "big")
_CLOCK_INFO = struct.Struct(">QIIBQ")  # TPMS_CLOCK_INFO (clock, resetCount, restartCount, safe), firmwareVersion
_QUOTE_INFOS: dict[tuple[bytes, bytes], bytes] = {}  # (pcrSelect bitmap, pcrDigest) -> TPMS_QUOTE_INFO


def _tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _quote_info(bitmap: bytes, digest: bytes) -> bytes:
    """TPMS_QUOTE_INFO marshalled by tpm2-pytss; one per PCR state (a fleet has few)."""
    info = _QUOTE_INFOS.get((bitmap, digest))
    if info is None:
        selection = TPML_PCR_SELECTION(pcrSelections=[TPMS_PCR_SELECTION(
            hash=TPM2_ALG.SHA256, sizeofSelect=len(bitmap), pcrSelect=bitmap)])
        info = TPMS_QUOTE_INFO(pcrSelect=selection, pcrDigest=TPM2B_DIGEST(digest)).marshal()
        if len(_QUOTE_INFOS) < 4096:
            _QUOTE_INFOS[(bitmap, digest)] = info
    return info


@dataclass
class SimulatedKeys:
    ak: SimulatedKey
    storage_key: SimulatedKey


@dataclass(frozen=True)
class SimulatedQuote:
    attest: bytes
    signature: bytes
    pcr_values: dict[int, bytes]
    bank: str = "sha256"


@dataclass(frozen=True)
class SimulatedCertification:
    attest: bytes
    signature: bytes


_EVENT_LOGS: dict[tuple[int, tuple[tuple[str, bytes], ...]], tuple[tuple[MeasuredComponent, ...], bytes]] = {}


def _measured(pcr: int, components: Sequence[Component]) -> tuple[tuple[MeasuredComponent, ...], bytes]:
    """The event log and the PCR value of booting ``components`` (immutable: one per configuration,
    shared by the TREs that booted it)."""
    key = (pcr, tuple((c.name, c.digest) for c in components))
    found = _EVENT_LOGS.get(key)
    if found is None:
        value = b"\0" * 32
        log = []
        for name, digest in key[1]:
            value = hashlib.sha256(value + digest).digest()  # TPM2_PCR_Extend, sha256 bank
            log.append(MeasuredComponent(name, pcr, digest))
        found = (tuple(log), value)
        if len(_EVENT_LOGS) < 4096:
            _EVENT_LOGS[key] = found
    return found


class SimulatedTre:
    """One simulated M2ME's trusted environment (label: ``simulated``). Compact (a shard keeps
    10^5): its seed, EK certificate, three marshalled public areas, its PCR and its counters."""

    label = SIMULATED
    __slots__ = ("pcr", "event_log", "_number", "_material", "_ek_certificate", "_pcr_value", "_clock",
                 "_reset_count")

    def __init__(self, maker: SimulatedTpmMaker, pcr: int = MEASUREMENT_PCR) -> None:
        self.pcr = pcr
        self.event_log: Sequence[MeasuredComponent] = ()
        self._number = next(_SERIALS)
        seed = os.urandom(32)
        ek, ak = _derived_key(seed, b"EK"), _derived_key(seed, b"AK")
        # the storage key's private part is never used here (a simulated TRE imports no MCIM)
        storage = _derived_key(seed, b"storage key").public_key()
        # one bytes object: the seed, then the EK's, the AK's and the storage key's points (x || y);
        # the public areas are rebuilt from their templates when asked for (~1 us)
        self._material = seed + _xy(ek.public_key()) + _xy(ak.public_key()) + _xy(storage)
        self._ek_certificate = maker.certify_ek(ek.public_key(), self.serial).public_bytes(
            serialization.Encoding.DER)
        self._pcr_value = b"\0" * 32
        self._clock = 0
        self._reset_count = 1

    @property
    def serial(self) -> str:
        return f"sim-{self._number:08d}"

    @property
    def _seed(self) -> bytes:
        return self._material[:32]

    @property
    def _ek_public(self) -> bytes:
        return _ecc_public_bytes(self._material[32:96], EK_ATTRIBUTES, symmetric=True, policy=EK_POLICY)

    @property
    def _ak_public(self) -> bytes:
        return _ecc_public_bytes(self._material[96:160], AK_ATTRIBUTES, scheme=TPM2_ALG.ECDSA)

    @property
    def _storage_public(self) -> bytes:
        return _ecc_public_bytes(self._material[160:224], STORAGE_ATTRIBUTES, symmetric=True)

    @property
    def _authority(self) -> bytes:
        # the unseal authority (issue 9): a child of the storage key whose name is random (its
        # unique field derived from this TRE's random seed), rebuilt when asked for
        unique = hmac.new(self._seed, b"unseal authority", hashlib.sha256).digest()
        return bytes(_authority_public(unique).marshal())

    # -- boot -------------------------------------------------------------------------------

    def boot(self, components: Sequence[Component]) -> list[MeasuredComponent]:
        """Reset the measurement PCR, extend each component into it (TPM2_PCR_Extend, sha256 bank)."""
        self.event_log, self._pcr_value = _measured(self.pcr, components)
        self._reset_count += 1
        return list(self.event_log)

    @property
    def pcr_selection(self) -> list[int]:
        return [self.pcr]

    def pcr_value(self, pcr: int) -> bytes:
        return self._pcr_value if pcr == self.pcr else b"\0" * 32

    # -- keys -------------------------------------------------------------------------------

    def keys(self) -> SimulatedKeys:
        return SimulatedKeys(SimulatedKey(Marshalled(self._ak_public)), SimulatedKey(Marshalled(self._storage_public)))

    def release(self) -> None:
        """Nothing to flush."""

    def endorsement_key(self) -> EndorsementKey:
        return EndorsementKey(self._ek_public, self._ek_certificate)

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential (Part 1 24.4-24.6, Part 3 12.5): recover the seed with the EK
        (ECDH + KDFe, label "IDENTITY"), check the outer HMAC over the AK's name, decrypt."""
        def tpm2b(data: bytes, what: str) -> tuple[bytes, bytes]:
            if len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                raise SimulatedTreError(f"ActivateCredential: {what} truncated")
            size = int.from_bytes(data[:2], "big")
            return data[2:2 + size], data[2 + size:]

        point, _ = tpm2b(encrypted_secret, "TPM2B_ENCRYPTED_SECRET")
        x, rest = tpm2b(point, "ephemeral point x")
        y, _ = tpm2b(rest, "ephemeral point y")
        ephemeral = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                                  ec.SECP256R1()).public_key()
        ek = _loaded(self._seed, b"EK")
        z = ek.exchange(ec.ECDH(), ephemeral)
        own_x = ek.public_key().public_numbers().x.to_bytes(32, "big")
        seed = kdfe(TPM2_ALG.SHA256, z, b"IDENTITY\x00", x, own_x, 256)
        blob, _ = tpm2b(credential_blob, "TPM2B_ID_OBJECT")
        integrity, encrypted = tpm2b(blob, "integrityHMAC")
        name = _name_of_marshalled(self._ak_public)
        hmac_key = _kdfa(TPM2_ALG.SHA256, seed, b"INTEGRITY", b"", b"", 256)
        expected = hmac.new(hmac_key, encrypted + name, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, integrity):
            raise SimulatedTreError("ActivateCredential: integrity check failed (TPM_RC_INTEGRITY)")
        sym_key = _kdfa(TPM2_ALG.SHA256, seed, b"STORAGE", name, b"", 128)
        credential = _decrypt(algorithms.AES, CFB, sym_key, encrypted)
        secret, _ = tpm2b(credential, "TPM2B_DIGEST")
        return secret

    # -- attestation ------------------------------------------------------------------------

    def _attest(self, kind: int, nonce: bytes, attested: bytes) -> bytes:
        """TPMS_ATTEST (Part 2 10.12.12): its fixed fields marshalled here, ``attested`` (the
        TPMU_ATTEST member) by tpm2-pytss; tests/test_fleet.py pins the bytes against
        ``TPMS_ATTEST(...).marshal()`` (building the whole tpm2-pytss object cost ~250 us a quote)."""
        self._clock += 1
        return (_MAGIC + int(kind).to_bytes(2, "big") + _tpm2b(_name_of_marshalled(self._ak_public)) + _tpm2b(nonce)
                + _CLOCK_INFO.pack(self._clock, self._reset_count, 0, 1, FIRMWARE_VERSION) + attested)

    def _sign(self, data: bytes) -> bytes:
        """TPMT_SIGNATURE (Part 2 11.3.4), ECDSA with SHA-256: sigAlg, hash, r and s as TPM2B."""
        r, s = decode_dss_signature(_loaded(self._seed, b"AK").sign(data, _ECDSA_SHA256))
        return _ECDSA_SIGNATURE_HEAD + _tpm2b(r.to_bytes(32, "big")) + _tpm2b(s.to_bytes(32, "big"))

    def quote(self, nonce: bytes, pcrs: Sequence[int]) -> SimulatedQuote:
        """TPM2_Quote (Part 3 18.4) over sha256-bank PCRs, pcrDigest = SHA-256 of their concatenation."""
        selected = sorted(set(pcrs))
        bitmap = bytearray(3)
        for pcr in selected:
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        values = {pcr: self.pcr_value(pcr) for pcr in selected}
        digest = hashlib.sha256(b"".join(values[p] for p in selected)).digest()
        attest = self._attest(TPM2_ST.ATTEST_QUOTE, nonce, _quote_info(bytes(bitmap), digest))
        return SimulatedQuote(attest, self._sign(attest), values)

    def certify_storage_key(self, nonce: bytes) -> SimulatedCertification:
        """TPM2_Certify (Part 3 18.2) of the storage key by the AK."""
        name = _name_of_marshalled(self._storage_public)
        qualified = TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(b"\x40\x00\x00\x01" + name).digest()
        attest = self._attest(TPM2_ST.ATTEST_CERTIFY, nonce,
                              TPMS_CERTIFY_INFO(name=name, qualifiedName=qualified).marshal())
        return SimulatedCertification(attest, self._sign(attest))

    def unseal_authority_public(self) -> bytes:
        return self._authority

    def certify_unseal_authority(self, nonce: bytes) -> SimulatedCertification:
        """TPM2_Certify of the unseal authority by the AK: its qualified name is that of a child of
        the storage key (TPM 2.0 Part 1, 16)."""
        name = _name_of_marshalled(self._authority)
        storage = _name_of_marshalled(self._storage_public)
        parent = TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(b"\x40\x00\x00\x01" + storage).digest()
        qualified = TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(parent + name).digest()
        attest = self._attest(TPM2_ST.ATTEST_CERTIFY, nonce,
                              TPMS_CERTIFY_INFO(name=name, qualifiedName=qualified).marshal())
        return SimulatedCertification(attest, self._sign(attest))

    # -- no sealed MCIM here -------------------------------------------------------------------

    def has_mcim(self) -> bool:
        return False

    def install_sealed(self, *args: object, **kwargs: object) -> bytes:
        raise SimulatedTreError("a simulated TRE does not import MCIMs: the install needs a real TPM")

    def discard_mcim(self) -> bool:
        return False
