"""The equipment supplier's PKI: certificate authorities, the platform credential (PfC),
a real OCSP responder, and a certification path walk that copes with TPM EK certificates.

TR 33.812 5.1.3.6.8 has the PVA validate the PfC "e.g. by way of OCSP"; here the M2MES
CA issues the PfC over the TPM attestation key and an ``OcspResponder`` answers real,
signed RFC 6960 responses built with cryptography's ``x509.ocsp`` builders.

EK certificates made by TPM vendors (and by swtpm's local CA) have profiles a web PKI
verifier refuses (empty or placeholder subject, critical SAN holding a directoryName),
so ``verify_chain`` walks the path itself: signature, validity, issuer name,
basicConstraints / keyUsage for every CA, pathLen, EKU on the leaf, unknown critical
extensions refused. Each failure names the link that failed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, SignatureAlgorithmOID

# TCG EK Credential Profile 2.0, 3.2.16: EKU of an EK certificate (tcg-kp-EKCertificate).
OID_EK_CERTIFICATE = x509.ObjectIdentifier("2.23.133.8.1")
# TCG OID registry: tcg-kp-AIKCertificate, the EKU of a certificate over an attestation key.
OID_AK_CERTIFICATE = x509.ObjectIdentifier("2.23.133.8.3")
# TCG Platform Certificate Profile: tcg-common = 2.23.133.5.1, attributes 1 (manufacturer),
# 4 (model) and 6 (serial). The PfC carries platform id and model in a SAN directoryName.
OID_PLATFORM_MANUFACTURER = x509.ObjectIdentifier("2.23.133.5.1.1")
OID_PLATFORM_MODEL = x509.ObjectIdentifier("2.23.133.5.1.4")
OID_PLATFORM_SERIAL = x509.ObjectIdentifier("2.23.133.5.1.6")
# TCG OID registry: tcg-at-platformVersion; in a PfC, the expected system state it asserts
# (TR 33.812 5.1.3.6.8 NOTE 2), here the SHA-256 of the reference values of that state
OID_PLATFORM_VERSION = x509.ObjectIdentifier("2.23.133.5.1.5")

KEY_KINDS = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "ed25519")
MAX_PATH_DEPTH = 8
CLOCK_SKEW = dt.timedelta(minutes=5)

# Extensions a path walk understands; any other extension marked critical is refused (RFC 5280 4.2).
_HANDLED_CRITICAL = frozenset({
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
})


class PkiError(Exception):
    """A certificate, a path or an OCSP exchange is not acceptable."""


class ChainError(PkiError):
    """A certification path does not verify; ``link`` names the certificate where it broke."""

    def __init__(self, link: str, reason: str) -> None:
        self.link = link
        self.reason = reason
        super().__init__(f"{link}: {reason}")


class OcspError(PkiError):
    """An OCSP request or response is malformed, unauthentic, stale or for something else."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- keys and raw signatures -------------------------------------------------------------

def generate_private_key(kind: str = "ec-p256") -> CertificateIssuerPrivateKeyTypes:
    """A fresh private key of one of ``KEY_KINDS``."""
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}; choose one of {', '.join(KEY_KINDS)}")


def signing_hash(key: CertificateIssuerPrivateKeyTypes | CertificateIssuerPublicKeyTypes
                 ) -> hashes.HashAlgorithm | None:
    """The hash that goes with a key when it signs certificates, OCSP responses or blobs."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return hashes.SHA256()
    return None  # EdDSA hashes internally


def sign_bytes(private_key: CertificateIssuerPrivateKeyTypes, data: bytes) -> bytes:
    """Sign a blob (reference values, an M2MSIMMobj): ECDSA, RSA-PSS or EdDSA by key type."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(signing_hash(private_key)))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, _pss(), hashes.SHA256())
    if isinstance(private_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return private_key.sign(data)
    raise TypeError(f"cannot sign with a {type(private_key).__name__}")


def verify_bytes(public_key: CertificatePublicKeyTypes, signature: bytes, data: bytes) -> None:
    """Check a ``sign_bytes`` signature; raises cryptography's InvalidSignature."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(signing_hash(public_key)))
    elif isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, _pss(), hashes.SHA256())
    elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        public_key.verify(signature, data)
    else:
        raise InvalidSignature(f"unsupported public key type {type(public_key).__name__}")


def signature_algorithm_name(key: CertificateIssuerPrivateKeyTypes | CertificatePublicKeyTypes) -> str:
    """A short name for the scheme ``sign_bytes`` uses with this key (e.g. ``ecdsa-sha256``)."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"ecdsa-{signing_hash(key).name}"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa-pss-sha256"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if isinstance(key, (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)):
        return "ed448"
    raise TypeError(f"unsupported key type {type(key).__name__}")


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def public_key_bits(public_key: CertificatePublicKeyTypes) -> bytes:
    """The subjectPublicKey BIT STRING contents (what RFC 6960 CertID's issuerKeyHash hashes)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return public_key.public_bytes(serialization.Encoding.X962,
                                       serialization.PublicFormat.UncompressedPoint)
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    """True when two public keys are the same key (compared on their SubjectPublicKeyInfo)."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def describe_certificate(cert: x509.Certificate) -> str:
    """How a certificate is named in errors: its subject, or serial + issuer when the subject is empty."""
    subject = cert.subject.rfc4514_string()
    if subject:
        return subject
    return f"serial {cert.serial_number:#x} issued by {cert.issuer.rfc4514_string()}"


# --- certificate authorities -------------------------------------------------------------

class CertificateAuthority:
    """A CA with its key in memory; remembers what it issued so its OCSP responder can tell
    ``good`` from ``unknown``. The private key never appears in repr."""

    def __init__(self, certificate: x509.Certificate, private_key: CertificateIssuerPrivateKeyTypes,
                 parent: CertificateAuthority | None = None) -> None:
        if not same_public_key(certificate.public_key(), private_key.public_key()):
            raise PkiError(f"{describe_certificate(certificate)}: private key does not match the certificate")
        self.certificate = certificate
        self._private_key = private_key
        self.parent = parent
        # serials issued (for OCSP's good vs unknown): a CA's status table, not its certificates
        self._issued: set[int] = set()

    def __repr__(self) -> str:
        return f"CertificateAuthority({describe_certificate(self.certificate)!r})"

    @classmethod
    def create(cls, common_name: str, *, parent: CertificateAuthority | None = None,
               key: str = "ec-p256", organization: str | None = None,
               not_after: dt.datetime | None = None, path_length: int | None = None) -> CertificateAuthority:
        """A new root CA (``parent=None``) or an intermediate CA issued by ``parent``."""
        private_key = generate_private_key(key)
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        subject = x509.Name(attributes)
        now = utc_now()
        not_after = not_after or now + dt.timedelta(days=3650)
        ca_usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                 data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                 crl_sign=True, encipher_only=False, decipher_only=False)
        if parent is None:
            builder = (x509.CertificateBuilder()
                       .subject_name(subject).issuer_name(subject)
                       .public_key(private_key.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(not_after)
                       .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
                       .add_extension(ca_usage, critical=True)
                       .add_extension(x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()),
                                      critical=False))
            certificate = builder.sign(private_key, signing_hash(private_key))
            return cls(certificate, private_key)
        certificate = parent.issue(private_key.public_key(), subject, not_after=not_after, key_usage=ca_usage,
                                   is_ca=True, path_length=path_length)
        return cls(certificate, private_key, parent)

    @property
    def chain(self) -> list[x509.Certificate]:
        """This CA's certificate followed by its parents' up to the root."""
        out, ca = [], self
        while ca is not None:
            out.append(ca.certificate)
            ca = ca.parent
        return out

    def issued(self, serial_number: int) -> bool:
        return serial_number in self._issued

    def issue(self, public_key: CertificatePublicKeyTypes, subject: x509.Name | str, *,
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              key_usage: x509.KeyUsage | None = None,
              extended_key_usage: Sequence[x509.ObjectIdentifier] = (),
              subject_alternative_names: Sequence[x509.GeneralName] = (), san_critical: bool = False,
              extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
              is_ca: bool = False, path_length: int | None = None) -> x509.Certificate:
        """Issue a certificate over ``public_key``; ``subject`` may be a plain common name."""
        if isinstance(subject, str):
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        now = utc_now()
        not_before = not_before or now - dt.timedelta(minutes=5)
        not_after = not_after or now + dt.timedelta(days=365)
        if not_after > self.certificate.not_valid_after_utc:
            not_after = self.certificate.not_valid_after_utc  # never outlive the issuer
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(self.certificate.subject)
                   .public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None),
                                  critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self._private_key.public_key()), critical=False))
        if key_usage is not None:
            builder = builder.add_extension(key_usage, critical=True)
        if extended_key_usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
        if subject_alternative_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(subject_alternative_names)),
                                            critical=san_critical)
        for extension, critical in extra_extensions:
            builder = builder.add_extension(extension, critical=critical)
        certificate = builder.sign(self._private_key, signing_hash(self._private_key))
        self._issued.add(certificate.serial_number)
        return certificate

    def sign(self, data: bytes) -> bytes:
        """Sign a blob with the CA key (``verify_bytes`` with ``certificate.public_key()`` checks it)."""
        return sign_bytes(self._private_key, data)

    @property
    def signature_algorithm(self) -> str:
        """The scheme ``sign`` uses (``signature_algorithm_name`` of the CA key)."""
        return signature_algorithm_name(self._private_key)

    def _sign_ocsp(self, builder: ocsp.OCSPResponseBuilder) -> ocsp.OCSPResponse:
        return builder.sign(self._private_key, signing_hash(self._private_key))


# --- the platform credential -------------------------------------------------------------

@dataclass(frozen=True)
class PlatformIdentity:
    """What a PfC asserts about the platform besides its attestation key."""
    platform_id: str
    model: str
    manufacturer: str | None = None
    version: str | None = None   # the expected system state asserted (tcg-at-platformVersion), if any


def issue_platform_credential(ca: CertificateAuthority, ak_public_key: CertificatePublicKeyTypes,
                              platform_id: str, *, model: str, not_after: dt.datetime | None = None,
                              manufacturer: str | None = None, version: str | None = None) -> x509.Certificate:
    """The M2MES's PfC: an X.509 certificate over the TPM attestation key, subject CN = platform id,
    a SAN directoryName carrying TCG platform serial / model (/ manufacturer), EKU tcg-kp-AIKCertificate."""
    if not platform_id or not model:
        raise PkiError("a platform credential needs a platform id and a model")
    attributes = [x509.NameAttribute(OID_PLATFORM_SERIAL, platform_id),
                  x509.NameAttribute(OID_PLATFORM_MODEL, model)]
    if manufacturer:
        attributes.insert(0, x509.NameAttribute(OID_PLATFORM_MANUFACTURER, manufacturer))
    if version:
        attributes.append(x509.NameAttribute(OID_PLATFORM_VERSION, version))
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, platform_id)]
    organisations = ca.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if organisations:
        subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(organisations[0].value)))
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False)
    return ca.issue(ak_public_key, x509.Name(subject), not_after=not_after, key_usage=usage,
                    extended_key_usage=[OID_AK_CERTIFICATE],
                    subject_alternative_names=[x509.DirectoryName(x509.Name(attributes))])


def platform_identity(pfc: x509.Certificate) -> PlatformIdentity:
    """Read platform id / model back from a PfC; raises PkiError when they are missing."""
    try:
        san = pfc.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound as exc:
        raise PkiError(f"{describe_certificate(pfc)}: no subjectAltName with the platform identity") from exc
    for name in san.get_values_for_type(x509.DirectoryName):
        serial = name.get_attributes_for_oid(OID_PLATFORM_SERIAL)
        model = name.get_attributes_for_oid(OID_PLATFORM_MODEL)
        if serial and model:
            maker = name.get_attributes_for_oid(OID_PLATFORM_MANUFACTURER)
            version = name.get_attributes_for_oid(OID_PLATFORM_VERSION)
            return PlatformIdentity(str(serial[0].value), str(model[0].value),
                                    str(maker[0].value) if maker else None,
                                    str(version[0].value) if version else None)
    raise PkiError(f"{describe_certificate(pfc)}: subjectAltName lacks platform serial and model")


# --- the path walk -----------------------------------------------------------------------

class SignatureMemo:
    """Remembers what already verified about immutable certificates: (child, issuer) signature
    pairs and certificates whose extensions passed the profile checks. A certificate's bytes
    never change, so a verified fact stays true; validity periods are checked every time.
    Certificates are remembered by their SHA-256 fingerprint (a PVA of 10^6 platforms keeps
    digests, not certificates). Bounded; cleared when full."""

    def __init__(self, capacity: int = 1 << 22) -> None:
        self._capacity = capacity
        self._seen: set[tuple[object, ...]] = set()

    def _remember(self, key: tuple[object, ...]) -> None:
        if len(self._seen) >= self._capacity:
            self._seen.clear()
        self._seen.add(key)

    @staticmethod
    def _id(cert: x509.Certificate) -> bytes:
        return cert.fingerprint(hashes.SHA256())

    def verify(self, child: x509.Certificate, issuer: x509.Certificate) -> None:
        key = (self._id(child), self._id(issuer))
        if key in self._seen:
            return
        child.verify_directly_issued_by(issuer)
        self._remember(key)

    def once(self, cert: x509.Certificate, tag: bytes, check: Callable[[], None]) -> None:
        """Run ``check`` (a profile check named ``tag`` about ``cert``) unless it passed before."""
        key = (tag, self._id(cert))
        if key in self._seen:
            return
        check()
        self._remember(key)


def verify_chain(leaf: x509.Certificate, intermediates: Iterable[x509.Certificate],
                 roots: Iterable[x509.Certificate], *, at: dt.datetime | None = None,
                 eku: x509.ObjectIdentifier | None = None,
                 memo: SignatureMemo | None = None) -> list[x509.Certificate]:
    """Walk from ``leaf`` to one of the pinned ``roots`` through ``intermediates``; return the
    path (leaf first, root last) or raise ChainError naming the failing link.

    ``eku``: when the leaf has an extendedKeyUsage extension it must list this purpose.
    A leaf that is itself pinned is accepted after its own checks. ``memo`` remembers
    signatures and profile checks that passed (validity is checked every time)."""
    at = at or utc_now()
    roots = list(roots)
    pool = list(intermediates)

    def once(cert: x509.Certificate, tag: bytes, check: Callable[[], None]) -> None:
        if memo is None:
            check()
        else:
            memo.once(cert, tag, check)

    _check_validity(leaf, at)
    once(leaf, b"extensions", lambda: _check_extensions(leaf))
    if eku is not None:
        _check_eku(leaf, eku)
    if leaf in roots:
        return [leaf]
    path = [leaf]
    current = leaf
    for _ in range(MAX_PATH_DEPTH):
        issuer_name = current.issuer
        candidates = [c for c in roots if c.subject == issuer_name]
        candidates += [c for c in pool if c.subject == issuer_name and c not in path]
        if not candidates:
            raise ChainError(describe_certificate(current),
                             f"issuer {issuer_name.rfc4514_string()!r} is neither a pinned root nor a "
                             "supplied intermediate")
        failure = ""
        for candidate in candidates:
            try:
                if memo is None:
                    current.verify_directly_issued_by(candidate)
                else:
                    memo.verify(current, candidate)
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as exc:
                failure = (f"signature does not verify with {describe_certificate(candidate)}'s key "
                           f"({exc or type(exc).__name__})")
                continue
            _check_validity(candidate, at)
            below = len(path) - 1
            once(candidate, b"extensions", lambda: _check_extensions(candidate))
            once(candidate, b"ca/%d" % below, lambda: _check_ca(candidate, below))
            path.append(candidate)
            if candidate in roots:
                return path
            current = candidate
            break
        else:
            raise ChainError(describe_certificate(current), failure)
    raise ChainError(describe_certificate(leaf), f"no path to a pinned root within {MAX_PATH_DEPTH} links")


def _check_validity(cert: x509.Certificate, at: dt.datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise ChainError(describe_certificate(cert), f"not valid before {cert.not_valid_before_utc.isoformat()}")
    if at > cert.not_valid_after_utc:
        raise ChainError(describe_certificate(cert), f"expired {cert.not_valid_after_utc.isoformat()}")


def _check_extensions(cert: x509.Certificate) -> None:
    try:
        extensions = cert.extensions
    except ValueError as exc:
        raise ChainError(describe_certificate(cert), f"malformed extensions ({exc})") from exc
    for extension in extensions:
        if extension.critical and extension.oid not in _HANDLED_CRITICAL:
            raise ChainError(describe_certificate(cert),
                             f"unhandled critical extension {extension.oid.dotted_string}")


def _check_ca(cert: x509.Certificate, intermediates_below: int) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise ChainError(describe_certificate(cert), "issues certificates but has no basicConstraints") from exc
    if not constraints.ca:
        raise ChainError(describe_certificate(cert), "issues certificates but basicConstraints says cA=FALSE")
    if constraints.path_length is not None and intermediates_below > constraints.path_length:
        raise ChainError(describe_certificate(cert), f"pathLenConstraint {constraints.path_length} exceeded "
                                                     f"({intermediates_below} intermediates below)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise ChainError(describe_certificate(cert), "keyUsage lacks keyCertSign")


def _check_eku(cert: x509.Certificate, eku: x509.ObjectIdentifier) -> None:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if eku not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
        raise ChainError(describe_certificate(cert), f"extendedKeyUsage lacks {eku.dotted_string}")


# --- OCSP (RFC 6960) ---------------------------------------------------------------------

_CERTID_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class CertStatus:
    """The verified answer of an OCSP responder about one certificate."""
    status: ocsp.OCSPCertStatus
    this_update: dt.datetime
    next_update: dt.datetime | None = None
    revocation_time: dt.datetime | None = None
    revocation_reason: x509.ReasonFlags | None = None

    @property
    def good(self) -> bool:
        return self.status is ocsp.OCSPCertStatus.GOOD

    def __str__(self) -> str:
        if self.status is ocsp.OCSPCertStatus.REVOKED:
            reason = self.revocation_reason.name if self.revocation_reason else "unspecified"
            return f"revoked at {self.revocation_time.isoformat() if self.revocation_time else '?'} ({reason})"
        return self.status.name.lower()


def _cert_id_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of RFC 6960 4.1.1 CertID."""
    name = issuer.subject.public_bytes()
    key = public_key_bits(issuer.public_key())
    return hashlib.new(algorithm.name, name).digest(), hashlib.new(algorithm.name, key).digest()


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes) -> bytes:
    """A DER OCSPRequest for ``cert`` with a nonce extension (RFC 8954: 1..32 bytes)."""
    if not 1 <= len(nonce) <= 32:
        raise OcspError(f"OCSP nonce must be 1..32 bytes, got {len(nonce)}")
    request = (ocsp.OCSPRequestBuilder()
               .add_certificate(cert, issuer, hashes.SHA256())
               .add_extension(x509.OCSPNonce(nonce), critical=False)
               .build())
    return request.public_bytes(serialization.Encoding.DER)


class OcspResponder:
    """An OCSP responder for the certificates one CA issued, signing with the CA key itself
    (RFC 6960 4.2.2.2: the CA that issued the certificate may sign the response).

    ``good`` for a serial the CA issued and did not revoke, ``revoked`` after ``revoke``,
    ``unknown`` for any other serial; requests naming another issuer get ``unauthorized``,
    undecodable ones ``malformedRequest``. The request's nonce is echoed."""

    def __init__(self, ca: CertificateAuthority, *, validity: dt.timedelta = dt.timedelta(minutes=10)) -> None:
        self.ca = ca
        self._validity = validity
        self._revoked: dict[int, tuple[dt.datetime, x509.ReasonFlags]] = {}
        self._cert_ids: dict[str, tuple[bytes, bytes]] = {}  # per hash: cached issuer hashes

    def __repr__(self) -> str:
        return f"OcspResponder({describe_certificate(self.ca.certificate)!r}, revoked={len(self._revoked)})"

    def revoke(self, cert: x509.Certificate | int,
               reason: x509.ReasonFlags = x509.ReasonFlags.unspecified, *, at: dt.datetime | None = None) -> None:
        serial = cert if isinstance(cert, int) else cert.serial_number
        self._revoked[serial] = ((at or utc_now()).replace(microsecond=0), reason)

    def status_of(self, serial_number: int) -> ocsp.OCSPCertStatus:
        if serial_number in self._revoked:
            return ocsp.OCSPCertStatus.REVOKED
        if self.ca.issued(serial_number):
            return ocsp.OCSPCertStatus.GOOD
        return ocsp.OCSPCertStatus.UNKNOWN

    def respond(self, request_der: bytes) -> bytes:
        """Answer one DER OCSPRequest with a DER OCSPResponse."""
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            algorithm = request.hash_algorithm
            nonce = _nonce_of(request.extensions)
        except (ValueError, UnsupportedAlgorithm):
            return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        ours = self._cert_ids.get(algorithm.name)
        if ours is None:
            ours = self._cert_ids[algorithm.name] = _cert_id_hashes(self.ca.certificate, algorithm)
        if (request.issuer_name_hash, request.issuer_key_hash) != ours:
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        serial = request.serial_number
        status = self.status_of(serial)
        revoked_at, reason = self._revoked.get(serial, (None, None))
        now = utc_now().replace(microsecond=0)
        builder = (ocsp.OCSPResponseBuilder()
                   .add_response_by_hash(ours[0], ours[1], serial, algorithm, status, now,
                                         now + self._validity, revoked_at, reason)
                   .responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca.certificate))
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return self.ca._sign_ocsp(builder).public_bytes(serialization.Encoding.DER)


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


def _nonce_of(extensions: x509.Extensions) -> bytes | None:
    try:
        return extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def check_ocsp_response(response_der: bytes, cert: x509.Certificate, issuer: x509.Certificate,
                        nonce: bytes, *, at: dt.datetime | None = None) -> CertStatus:
    """Verify an OCSP response about ``cert`` and return the status it asserts.

    Raises OcspError unless: the response is successful, signed by ``issuer`` (or by a
    responder certificate ``issuer`` issued directly for OCSPSigning), echoes ``nonce``,
    speaks about ``cert`` under ``issuer``, and is current at ``at`` (with CLOCK_SKEW)."""
    at = at or utc_now()
    try:
        response = ocsp.load_der_ocsp_response(response_der)
    except ValueError as exc:
        raise OcspError(f"OCSP response does not decode ({exc})") from exc
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OcspError(f"OCSP responder answered {response.response_status.name}")
    signer = _ocsp_signer(response, issuer, at)
    _verify_ocsp_signature(response, signer)
    echoed = _nonce_of(response.extensions)
    if echoed is None:
        raise OcspError("OCSP response carries no nonce")
    if echoed != nonce:
        raise OcspError("OCSP response nonce differs from the request's")
    if response.serial_number != cert.serial_number:
        raise OcspError(f"OCSP response is about serial {response.serial_number:#x}, "
                        f"not {cert.serial_number:#x}")
    if (response.issuer_name_hash, response.issuer_key_hash) != _cert_id_hashes(issuer, response.hash_algorithm):
        raise OcspError("OCSP response names another issuer")
    this_update = response.this_update_utc
    next_update = response.next_update_utc
    if this_update > at + CLOCK_SKEW:
        raise OcspError(f"OCSP response thisUpdate {this_update.isoformat()} is in the future")
    if next_update is not None and next_update < at - CLOCK_SKEW:
        raise OcspError(f"OCSP response expired at nextUpdate {next_update.isoformat()}")
    return CertStatus(response.certificate_status, this_update, next_update,
                      response.revocation_time_utc, response.revocation_reason)


def _ocsp_signer(response: ocsp.OCSPResponse, issuer: x509.Certificate,
                 at: dt.datetime) -> CertificateIssuerPublicKeyTypes:
    """The key that must have signed the response: the issuer's, or a delegated responder's."""
    issuer_key = issuer.public_key()
    key_hash = response.responder_key_hash
    if key_hash is not None:
        if key_hash == hashlib.sha1(public_key_bits(issuer_key)).digest():  # RFC 6960 4.2.1 ResponderID byKey
            return issuer_key
    elif response.responder_name == issuer.subject:
        return issuer_key
    for delegate in response.certificates:
        matches = (key_hash == hashlib.sha1(public_key_bits(delegate.public_key())).digest()
                   if key_hash is not None else response.responder_name == delegate.subject)
        if not matches:
            continue
        try:
            delegate.verify_directly_issued_by(issuer)
            usages = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound) as exc:
            raise OcspError(f"OCSP responder certificate {describe_certificate(delegate)} is not "
                            f"authorised by {describe_certificate(issuer)}") from exc
        if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
            raise OcspError(f"OCSP responder certificate {describe_certificate(delegate)} lacks OCSPSigning")
        if not delegate.not_valid_before_utc <= at <= delegate.not_valid_after_utc:
            raise OcspError(f"OCSP responder certificate {describe_certificate(delegate)} is not valid now")
        return delegate.public_key()
    raise OcspError(f"OCSP response is signed by a responder that {describe_certificate(issuer)} did not authorise")


_ECDSA_OIDS = {SignatureAlgorithmOID.ECDSA_WITH_SHA256, SignatureAlgorithmOID.ECDSA_WITH_SHA384,
               SignatureAlgorithmOID.ECDSA_WITH_SHA512, SignatureAlgorithmOID.ECDSA_WITH_SHA224}
_RSA_OIDS = {SignatureAlgorithmOID.RSA_WITH_SHA256, SignatureAlgorithmOID.RSA_WITH_SHA384,
             SignatureAlgorithmOID.RSA_WITH_SHA512, SignatureAlgorithmOID.RSA_WITH_SHA224}


def _verify_ocsp_signature(response: ocsp.OCSPResponse, key: CertificateIssuerPublicKeyTypes) -> None:
    oid = response.signature_algorithm_oid
    data, signature = response.tbs_response_bytes, response.signature
    try:
        if oid in _ECDSA_OIDS and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(response.signature_hash_algorithm))
        elif oid in _RSA_OIDS and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), response.signature_hash_algorithm)
        elif oid == SignatureAlgorithmOID.ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise OcspError(f"OCSP response signature algorithm {oid.dotted_string} does not fit the signer's key")
    except InvalidSignature as exc:
        raise OcspError("OCSP response signature does not verify with the responder's key") from exc
