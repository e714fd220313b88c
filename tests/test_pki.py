"""The M2MES PKI: path walk (good CA, bad CA, odd EK profiles), the PfC, and a real OCSP
exchange (good / revoked / unknown / wrong nonce / bad signature / stale)."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from mcim_hil.network import pki
from mcim_hil.network.pki import CertificateAuthority, ChainError, OcspError, OcspResponder


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority.create("Lab Root CA", organization="mcim-hil lab")


@pytest.fixture(scope="module")
def intermediate(root: CertificateAuthority) -> CertificateAuthority:
    return CertificateAuthority.create("Lab Issuing CA", parent=root, key="rsa-2048", path_length=0)


def new_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def ek_like(ca: CertificateAuthority, *, eku: x509.ObjectIdentifier = pki.OID_EK_CERTIFICATE) -> x509.Certificate:
    """A TCG-style EK certificate: empty subject, critical SAN with a directoryName, EKU."""
    san = x509.DirectoryName(x509.Name([x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.1"), "id:00001014"),
                                        x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.2"), "swtpm")]))
    usage = x509.KeyUsage(False, False, False, False, True, False, False, False, False)
    return ca.issue(new_key(), x509.Name([]), key_usage=usage, extended_key_usage=[eku],
                    subject_alternative_names=[san], san_critical=True)


# --- the path walk -------------------------------------------------------------------------

def test_leaf_through_intermediate_to_root(root: CertificateAuthority, intermediate: CertificateAuthority) -> None:
    leaf = intermediate.issue(new_key(), "device-1")
    path = pki.verify_chain(leaf, [intermediate.certificate], [root.certificate])
    assert path == [leaf, intermediate.certificate, root.certificate]
    assert intermediate.chain == [intermediate.certificate, root.certificate]


def test_pinned_intermediate_ends_the_walk(root: CertificateAuthority, intermediate: CertificateAuthority) -> None:
    leaf = intermediate.issue(new_key(), "device-2")
    assert pki.verify_chain(leaf, [], [intermediate.certificate]) == [leaf, intermediate.certificate]


def test_unknown_issuer_names_the_leaf(root: CertificateAuthority, intermediate: CertificateAuthority) -> None:
    leaf = intermediate.issue(new_key(), "device-3")
    with pytest.raises(ChainError) as caught:
        pki.verify_chain(leaf, [], [root.certificate])
    assert caught.value.link == "CN=device-3"
    assert "Lab Issuing CA" in caught.value.reason


def test_impostor_ca_with_the_same_name_fails_on_the_signature(root: CertificateAuthority) -> None:
    impostor = CertificateAuthority.create("Lab Root CA", organization="mcim-hil lab")
    leaf = impostor.issue(new_key(), "device-4")
    with pytest.raises(ChainError, match="signature does not verify") as caught:
        pki.verify_chain(leaf, [], [root.certificate])
    assert caught.value.link == "CN=device-4"


def test_expired_and_not_yet_valid(root: CertificateAuthority) -> None:
    now = pki.utc_now()
    old = root.issue(new_key(), "old", not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1))
    with pytest.raises(ChainError, match="expired"):
        pki.verify_chain(old, [], [root.certificate])
    early = root.issue(new_key(), "early", not_before=now + dt.timedelta(days=1))
    with pytest.raises(ChainError, match="not valid before"):
        pki.verify_chain(early, [], [root.certificate])
    assert pki.verify_chain(early, [], [root.certificate], at=now + dt.timedelta(days=2))


def test_end_entity_cannot_act_as_a_ca(root: CertificateAuthority) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    not_a_ca_cert = root.issue(private.public_key(), "not a CA")
    not_a_ca = CertificateAuthority(not_a_ca_cert, private, parent=root)
    leaf = not_a_ca.issue(new_key(), "device-5")
    with pytest.raises(ChainError, match="cA=FALSE") as caught:
        pki.verify_chain(leaf, [not_a_ca_cert], [root.certificate])
    assert caught.value.link == "CN=not a CA"


def test_path_length_constraint(root: CertificateAuthority, intermediate: CertificateAuthority) -> None:
    sub = CertificateAuthority.create("Sub CA", parent=intermediate)
    leaf = sub.issue(new_key(), "device-6")
    with pytest.raises(ChainError, match="pathLenConstraint 0 exceeded"):
        pki.verify_chain(leaf, [sub.certificate, intermediate.certificate], [root.certificate])


def test_ek_profile_with_empty_subject_and_critical_san(root: CertificateAuthority) -> None:
    ek = ek_like(root)
    assert pki.verify_chain(ek, [], [root.certificate], eku=pki.OID_EK_CERTIFICATE) == [ek, root.certificate]
    assert pki.describe_certificate(ek).startswith("serial 0x")


def test_wrong_eku_is_refused(root: CertificateAuthority) -> None:
    not_ek = ek_like(root, eku=x509.ObjectIdentifier("1.3.6.1.5.5.7.3.1"))
    with pytest.raises(ChainError, match="extendedKeyUsage lacks 2.23.133.8.1"):
        pki.verify_chain(not_ek, [], [root.certificate], eku=pki.OID_EK_CERTIFICATE)


def test_unknown_critical_extension_is_refused(root: CertificateAuthority) -> None:
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    leaf = root.issue(new_key(), "odd", extra_extensions=[(odd, True)])
    with pytest.raises(ChainError, match="unhandled critical extension 1.3.6.1.4.1.55555.1"):
        pki.verify_chain(leaf, [], [root.certificate])


def test_signature_memo_still_refuses_a_bad_pair(root: CertificateAuthority) -> None:
    memo = pki.SignatureMemo()
    leaf = root.issue(new_key(), "memo")
    pki.verify_chain(leaf, [], [root.certificate], memo=memo)
    pki.verify_chain(leaf, [], [root.certificate], memo=memo)
    impostor = CertificateAuthority.create("Lab Root CA", organization="mcim-hil lab")
    # the memo's earlier yes is for the real root's key: the impostor's leaf is checked and refused
    with pytest.raises(ChainError, match=r"^CN=memo: signature does not verify with O=mcim-hil lab,CN=Lab Root CA"):
        pki.verify_chain(impostor.issue(new_key(), "memo"), [], [root.certificate], memo=memo)


def test_ca_repr_hides_the_key(root: CertificateAuthority) -> None:
    assert repr(root) == "CertificateAuthority('O=mcim-hil lab,CN=Lab Root CA')"


# --- the platform credential ---------------------------------------------------------------

def test_platform_credential_names_the_platform(root: CertificateAuthority) -> None:
    ak = new_key()
    pfc = pki.issue_platform_credential(root, ak, "m2me-42", model="mk1", manufacturer="Acme")
    assert pfc.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "m2me-42"
    assert pki.platform_identity(pfc) == pki.PlatformIdentity("m2me-42", "mk1", "Acme")
    assert pki.same_public_key(pfc.public_key(), ak)
    assert pki.verify_chain(pfc, [], [root.certificate], eku=pki.OID_AK_CERTIFICATE)
    with pytest.raises(pki.PkiError, match="no subjectAltName"):
        pki.platform_identity(root.issue(new_key(), "plain"))


# --- blob signatures -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
def test_sign_and_verify_bytes(kind: str) -> None:
    key = pki.generate_private_key(kind)
    signature = pki.sign_bytes(key, b"reference values")
    pki.verify_bytes(key.public_key(), signature, b"reference values")
    with pytest.raises(InvalidSignature):
        pki.verify_bytes(key.public_key(), signature, b"reference valueS")


# --- OCSP ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def m2mes_ca() -> CertificateAuthority:
    return CertificateAuthority.create("M2MES CA", organization="mcim-hil M2MES")


@pytest.fixture()
def responder(m2mes_ca: CertificateAuthority) -> OcspResponder:
    return OcspResponder(m2mes_ca)


def ask(responder: OcspResponder, cert: x509.Certificate, issuer: x509.Certificate) -> pki.CertStatus:
    nonce = os.urandom(16)
    answer = responder.respond(pki.ocsp_request(cert, issuer, nonce))
    return pki.check_ocsp_response(answer, cert, issuer, nonce)


def test_ocsp_good(responder: OcspResponder, m2mes_ca: CertificateAuthority) -> None:
    pfc = pki.issue_platform_credential(m2mes_ca, new_key(), "m2me-1", model="mk1")
    status = ask(responder, pfc, m2mes_ca.certificate)
    assert status.good and str(status) == "good"
    assert status.next_update is not None and status.next_update > status.this_update


def test_ocsp_revoked_with_reason(responder: OcspResponder, m2mes_ca: CertificateAuthority) -> None:
    pfc = pki.issue_platform_credential(m2mes_ca, new_key(), "m2me-2", model="mk1")
    responder.revoke(pfc, x509.ReasonFlags.key_compromise)
    status = ask(responder, pfc, m2mes_ca.certificate)
    assert status.status is ocsp.OCSPCertStatus.REVOKED and not status.good
    assert status.revocation_reason is x509.ReasonFlags.key_compromise
    assert str(status).startswith("revoked at ")


def test_ocsp_unknown_for_a_serial_the_ca_never_issued(responder: OcspResponder,
                                                       m2mes_ca: CertificateAuthority) -> None:
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    # same issuer name and key, but not in the CA's records: a certificate it never issued
    forged = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
              .issuer_name(m2mes_ca.certificate.subject).public_key(stranger_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(pki.utc_now())
              .not_valid_after(pki.utc_now() + dt.timedelta(days=1)).sign(stranger_key, hashes.SHA256()))
    assert ask(responder, forged, m2mes_ca.certificate).status is ocsp.OCSPCertStatus.UNKNOWN


def test_ocsp_wrong_nonce_is_refused(responder: OcspResponder, m2mes_ca: CertificateAuthority) -> None:
    pfc = pki.issue_platform_credential(m2mes_ca, new_key(), "m2me-3", model="mk1")
    answer = responder.respond(pki.ocsp_request(pfc, m2mes_ca.certificate, b"A" * 16))
    with pytest.raises(OcspError, match="nonce differs"):
        pki.check_ocsp_response(answer, pfc, m2mes_ca.certificate, b"B" * 16)


def test_ocsp_bad_signature_is_refused(responder: OcspResponder, m2mes_ca: CertificateAuthority) -> None:
    pfc = pki.issue_platform_credential(m2mes_ca, new_key(), "m2me-4", model="mk1")
    nonce = os.urandom(16)
    answer = responder.respond(pki.ocsp_request(pfc, m2mes_ca.certificate, nonce))
    signature = ocsp.load_der_ocsp_response(answer).signature
    tampered = answer.replace(signature, signature[:-1] + bytes([signature[-1] ^ 1]))
    assert tampered != answer
    with pytest.raises(OcspError, match="signature does not verify"):
        pki.check_ocsp_response(tampered, pfc, m2mes_ca.certificate, nonce)


def test_ocsp_response_from_another_responder_is_refused(m2mes_ca: CertificateAuthority) -> None:
    """An impostor CA with the same name answers 'good' for our PfC: not our issuer's key."""
    impostor = CertificateAuthority.create("M2MES CA", organization="mcim-hil M2MES")
    pfc = pki.issue_platform_credential(m2mes_ca, new_key(), "m2me-5", model="mk1")
    nonce = os.urandom(16)
    answer = OcspResponder(impostor).respond(pki.ocsp_request(pfc, impostor.certificate, nonce))
    # its responder ID is the hash of its own key: refused before any later check
    with pytest.raises(OcspError, match="signed by a responder that O=mcim-hil M2MES,CN=M2MES CA did not authorise"):
        pki.check_ocsp_response(answer, pfc, m2mes_ca.certificate, nonce)


def test_ocsp_response_by_an_impostor_with_the_issuers_name_is_refused_on_the_signature(
        m2mes_ca: CertificateAuthority) -> None:
    """An impostor named like the issuer answers 'good' with the issuer's CertID and a responder
    ID by name: only the signature over the response tells it apart."""
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    now = pki.utc_now().replace(microsecond=0)
    impostor = (x509.CertificateBuilder().subject_name(m2mes_ca.certificate.subject)
                .issuer_name(m2mes_ca.certificate.subject).public_key(impostor_key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=1)).sign(impostor_key, hashes.SHA256()))
    pfc = pki.issue_platform_credential(m2mes_ca, new_key(), "m2me-5b", model="mk1")
    nonce = os.urandom(16)
    request = ocsp.load_der_ocsp_request(pki.ocsp_request(pfc, m2mes_ca.certificate, nonce))
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(request.issuer_name_hash, request.issuer_key_hash, pfc.serial_number,
                                     request.hash_algorithm, ocsp.OCSPCertStatus.GOOD, now,
                                     now + dt.timedelta(minutes=10), None, None)
               .responder_id(ocsp.OCSPResponderEncoding.NAME, impostor)
               .add_extension(x509.OCSPNonce(nonce), critical=False))
    answer = builder.sign(impostor_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    with pytest.raises(OcspError, match="^OCSP response signature does not verify with the responder's key$"):
        pki.check_ocsp_response(answer, pfc, m2mes_ca.certificate, nonce)


def test_ocsp_request_for_another_issuer_is_unauthorized(responder: OcspResponder) -> None:
    other = CertificateAuthority.create("Other CA")
    cert = other.issue(new_key(), "elsewhere")
    answer = responder.respond(pki.ocsp_request(cert, other.certificate, b"n" * 16))
    assert ocsp.load_der_ocsp_response(answer).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    with pytest.raises(OcspError, match="UNAUTHORIZED"):
        pki.check_ocsp_response(answer, cert, other.certificate, b"n" * 16)


def test_ocsp_malformed_request(responder: OcspResponder) -> None:
    answer = responder.respond(b"\x30\x03\x02\x01\x00")
    assert ocsp.load_der_ocsp_response(answer).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_stale_response_is_refused(responder: OcspResponder, m2mes_ca: CertificateAuthority) -> None:
    pfc = pki.issue_platform_credential(m2mes_ca, new_key(), "m2me-6", model="mk1")
    nonce = os.urandom(16)
    answer = responder.respond(pki.ocsp_request(pfc, m2mes_ca.certificate, nonce))
    with pytest.raises(OcspError, match="expired at nextUpdate"):
        pki.check_ocsp_response(answer, pfc, m2mes_ca.certificate, nonce,
                                at=pki.utc_now() + dt.timedelta(hours=1))


def test_ocsp_response_about_another_certificate_is_refused(responder: OcspResponder,
                                                           m2mes_ca: CertificateAuthority) -> None:
    asked = pki.issue_platform_credential(m2mes_ca, new_key(), "m2me-7", model="mk1")
    other = pki.issue_platform_credential(m2mes_ca, new_key(), "m2me-8", model="mk1")
    nonce = os.urandom(16)
    answer = responder.respond(pki.ocsp_request(other, m2mes_ca.certificate, nonce))
    with pytest.raises(OcspError, match="is about serial"):
        pki.check_ocsp_response(answer, asked, m2mes_ca.certificate, nonce)


def test_ocsp_request_nonce_size() -> None:
    ca = CertificateAuthority.create("n")
    cert = ca.issue(new_key(), "n")
    with pytest.raises(OcspError):
        pki.ocsp_request(cert, ca.certificate, b"")
    der = pki.ocsp_request(cert, ca.certificate, b"\x01" * 32)
    assert ocsp.load_der_ocsp_request(der).serial_number == cert.serial_number
