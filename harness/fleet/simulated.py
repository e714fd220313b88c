"""A SIMULATED TRE: software keys in place of a TPM, for fleets larger than a lab has TPMs.

It implements the TRE interface the TPM-backed one does (harness/m2me/tre.py:
boot, pcr_selection, keys, endorsement_key, activate_credential, quote, certify_storage_key,
unseal_authority_public, certify_unseal_authority), so
the M2ME agent, the SHO, the PVA and the IVF run unchanged on it. Its answers are TPM 2.0
formats, marshalled with tpm2-pytss: TPM2B_PUBLIC areas (ECC P-256 EK, restricted ECDSA AK,
restricted decryption storage key), TPMS_ATTEST quotes and certifications signed as
TPMT_SIGNATURE (ECDSA P-256, SHA-256), and ActivateCredential done as TPM 2.0 Part 1 24
says (ECDH seed, KDFe, HMAC integrity, AES-CFB). The PVA checks them with the code it uses for a
real TPM's; nothing in the network knows a simulated device from a real one except its label.

Each simulated TRE has its own keys; its EK certificate comes from the fleet's simulated TPM
manufacturer CA (``SimulatedTpmMaker``), which the PVA pins like swtpm's local CA.
It holds no MCIM: a simulated fleet stops before the install (step 12 needs a real TPM).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
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
    TPMS_ATTEST,
    TPMS_CERTIFY_INFO,
    TPMS_CLOCK_INFO,
    TPMS_ECC_PARMS,
    TPMS_ECC_POINT,
    TPMS_PCR_SELECTION,
    TPMS_QUOTE_INFO,
    TPMS_SCHEME_HASH,
    TPMS_SIGNATURE_ECC,
    TPMT_ECC_SCHEME,
    TPMT_KDF_SCHEME,
    TPMT_PUBLIC,
    TPMT_SIGNATURE,
    TPMT_SYM_DEF_OBJECT,
    TPMU_ASYM_SCHEME,
    TPMU_ATTEST,
    TPMU_PUBLIC_ID,
    TPMU_PUBLIC_PARMS,
    TPMU_SIGNATURE,
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


def _name(public: TPM2B_PUBLIC) -> bytes:
    """TPM 2.0 Part 1 16: nameAlg || SHA-256(TPMT_PUBLIC)."""
    return TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(public.publicArea.marshal()).digest()


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
    ``public_key`` (built on demand from the 65-byte ``point``: a fleet keeps 10^5 of these)."""

    public: Marshalled = field(repr=False)
    name: bytes = field(repr=False)
    point: bytes = field(repr=False)  # X9.62 uncompressed P-256 point

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.point)


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _sealed_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A private key kept as PKCS#8 DER (~140 bytes instead of a ~2 KiB OpenSSL object per key)."""
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


_LOADED: dict[bytes, ec.EllipticCurvePrivateKey] = {}  # the last key used (a quote and a certify in a row)


def _loaded(der: bytes) -> ec.EllipticCurvePrivateKey:
    key = _LOADED.get(der)
    if key is None:
        key = serialization.load_der_private_key(der, None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        _LOADED.clear()
        _LOADED[der] = key
    return key


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


class SimulatedTre:
    """One simulated M2ME's trusted environment (label: ``simulated``)."""

    label = SIMULATED

    def __init__(self, maker: SimulatedTpmMaker, pcr: int = MEASUREMENT_PCR) -> None:
        self.pcr = pcr
        self.event_log: list[MeasuredComponent] = []
        self.serial = f"sim-{next(_SERIALS):08d}"
        ek = ec.generate_private_key(ec.SECP256R1())
        ak = ec.generate_private_key(ec.SECP256R1())
        # the storage key's private part is never used here (a simulated TRE imports no MCIM): not kept
        storage = ec.generate_private_key(ec.SECP256R1()).public_key()
        self._ek, self._ak = _sealed_key(ek), _sealed_key(ak)
        ek_public = _ecc_public(ek.public_key(), EK_ATTRIBUTES, symmetric=True, policy=EK_POLICY)
        self._ek_certificate = maker.certify_ek(ek.public_key(), self.serial).public_bytes(
            serialization.Encoding.DER)
        ak_public = _ecc_public(ak.public_key(), AK_ATTRIBUTES, scheme=TPM2_ALG.ECDSA)
        storage_public = _ecc_public(storage, STORAGE_ATTRIBUTES, symmetric=True)
        self._keys = SimulatedKeys(
            SimulatedKey(Marshalled(ak_public.marshal()), _name(ak_public), _point(ak.public_key())),
            SimulatedKey(Marshalled(storage_public.marshal()), _name(storage_public), _point(storage)))
        self._ek_public = Marshalled(ek_public.marshal())
        # the unseal authority (issue 9): a child of the storage key with a random name
        self._authority = Marshalled(_authority_public(os.urandom(32)).marshal())
        self._pcrs: dict[int, bytes] = {}
        self._clock = 0
        self._reset_count = 1

    # -- boot -------------------------------------------------------------------------------

    def boot(self, components: Sequence[Component]) -> list[MeasuredComponent]:
        """Reset the measurement PCR, extend each component into it (TPM2_PCR_Extend, sha256 bank)."""
        value = b"\0" * 32
        self.event_log = []
        for component in components:
            value = hashlib.sha256(value + component.digest).digest()
            self.event_log.append(MeasuredComponent(component.name, self.pcr, component.digest))
        self._pcrs[self.pcr] = value
        self._reset_count += 1
        return list(self.event_log)

    @property
    def pcr_selection(self) -> list[int]:
        return [self.pcr]

    def pcr_value(self, pcr: int) -> bytes:
        return self._pcrs.get(pcr, b"\0" * 32)

    # -- keys -------------------------------------------------------------------------------

    def keys(self) -> SimulatedKeys:
        return self._keys

    def release(self) -> None:
        """Nothing to flush."""

    def endorsement_key(self) -> EndorsementKey:
        return EndorsementKey(bytes(self._ek_public), self._ek_certificate)

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
        ek = _loaded(self._ek)
        z = ek.exchange(ec.ECDH(), ephemeral)
        own_x = ek.public_key().public_numbers().x.to_bytes(32, "big")
        seed = kdfe(TPM2_ALG.SHA256, z, b"IDENTITY\x00", x, own_x, 256)
        blob, _ = tpm2b(credential_blob, "TPM2B_ID_OBJECT")
        integrity, encrypted = tpm2b(blob, "integrityHMAC")
        name = self._keys.ak.name
        hmac_key = _kdfa(TPM2_ALG.SHA256, seed, b"INTEGRITY", b"", b"", 256)
        expected = hmac.new(hmac_key, encrypted + name, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, integrity):
            raise SimulatedTreError("ActivateCredential: integrity check failed (TPM_RC_INTEGRITY)")
        sym_key = _kdfa(TPM2_ALG.SHA256, seed, b"STORAGE", name, b"", 128)
        credential = _decrypt(algorithms.AES, CFB, sym_key, encrypted)
        secret, _ = tpm2b(credential, "TPM2B_DIGEST")
        return secret

    # -- attestation ------------------------------------------------------------------------

    def _attest(self, kind: int, nonce: bytes, attested: TPMU_ATTEST) -> bytes:
        self._clock += 1
        return TPMS_ATTEST(magic=TPM2_GENERATED.VALUE, type=kind, qualifiedSigner=self._keys.ak.name,
                           extraData=nonce,
                           clockInfo=TPMS_CLOCK_INFO(clock=self._clock, resetCount=self._reset_count,
                                                     restartCount=0, safe=1),
                           firmwareVersion=FIRMWARE_VERSION, attested=attested).marshal()

    def _sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(_loaded(self._ak).sign(data, ec.ECDSA(hashes.SHA256())))
        return TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA, signature=TPMU_SIGNATURE(ecdsa=TPMS_SIGNATURE_ECC(
            hash=TPM2_ALG.SHA256, signatureR=r.to_bytes(32, "big"), signatureS=s.to_bytes(32, "big")))).marshal()

    def quote(self, nonce: bytes, pcrs: Sequence[int]) -> SimulatedQuote:
        """TPM2_Quote (Part 3 18.4) over sha256-bank PCRs, pcrDigest = SHA-256 of their concatenation."""
        selected = sorted(set(pcrs))
        bitmap = bytearray(3)
        for pcr in selected:
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        values = {pcr: self.pcr_value(pcr) for pcr in selected}
        digest = hashlib.sha256(b"".join(values[p] for p in selected)).digest()
        selection = TPML_PCR_SELECTION(pcrSelections=[TPMS_PCR_SELECTION(
            hash=TPM2_ALG.SHA256, sizeofSelect=3, pcrSelect=bytes(bitmap))])
        attest = self._attest(TPM2_ST.ATTEST_QUOTE, nonce, TPMU_ATTEST(
            quote=TPMS_QUOTE_INFO(pcrSelect=selection, pcrDigest=TPM2B_DIGEST(digest))))
        return SimulatedQuote(attest, self._sign(attest), values)

    def certify_storage_key(self, nonce: bytes) -> SimulatedCertification:
        """TPM2_Certify (Part 3 18.2) of the storage key by the AK."""
        key = self._keys.storage_key
        qualified = TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(b"\x40\x00\x00\x01" + key.name).digest()
        attest = self._attest(TPM2_ST.ATTEST_CERTIFY, nonce, TPMU_ATTEST(
            certify=TPMS_CERTIFY_INFO(name=key.name, qualifiedName=qualified)))
        return SimulatedCertification(attest, self._sign(attest))

    def unseal_authority_public(self) -> bytes:
        return bytes(self._authority)

    def certify_unseal_authority(self, nonce: bytes) -> SimulatedCertification:
        """TPM2_Certify of the unseal authority by the AK: its qualified name is that of a child of
        the storage key (TPM 2.0 Part 1, 16)."""
        storage = self._keys.storage_key
        name = TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(self._authority[2:]).digest()
        parent = TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(b"\x40\x00\x00\x01" + storage.name).digest()
        qualified = TPM2_ALG.SHA256.to_bytes(2, "big") + hashlib.sha256(parent + name).digest()
        attest = self._attest(TPM2_ST.ATTEST_CERTIFY, nonce, TPMU_ATTEST(
            certify=TPMS_CERTIFY_INFO(name=name, qualifiedName=qualified)))
        return SimulatedCertification(attest, self._sign(attest))

    # -- no sealed MCIM here -------------------------------------------------------------------

    def has_mcim(self) -> bool:
        return False

    def install_sealed(self, *args: object, **kwargs: object) -> bytes:
        raise SimulatedTreError("a simulated TRE does not import MCIMs: the install needs a real TPM")

    def discard_mcim(self) -> bool:
        return False
