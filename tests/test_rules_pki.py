"""OCSP response checks that a well-behaved responder never exercises, each pinned by its
reason: no nonce echoed, another issuer's CertID, thisUpdate at and past the allowed skew,
no nextUpdate. The responses are built and signed with the issuer's own key (the CA's OCSP
signing method), so the signature check passes and only the rule under test can refuse them.
"""

from __future__ import annotations

import datetime as dt
import os
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from mcim_hil.network import pki
from mcim_hil.network.pki import CLOCK_SKEW, CertificateAuthority, OcspError, OcspResponder

NOW = pki.utc_now().replace(microsecond=0)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("M2MES CA", organization="mcim-hil M2MES")


@pytest.fixture(scope="module")
def pfc(ca: CertificateAuthority) -> x509.Certificate:
    return pki.issue_platform_credential(ca, ec.generate_private_key(ec.SECP256R1()).public_key(), "m2me-9",
                                         model="mk1")


def response(ca: CertificateAuthority, cert: x509.Certificate, nonce: bytes | None, *,
             this_update: dt.datetime = NOW, next_update: dt.datetime | None = NOW + dt.timedelta(minutes=10),
             about_issuer: x509.Certificate | None = None) -> bytes:
    """A 'good' answer signed by ``ca``, naming ``about_issuer`` (default ``ca``) in its CertID."""
    issuer = (about_issuer or ca.certificate)
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(request.issuer_name_hash, request.issuer_key_hash, cert.serial_number,
                                     hashes.SHA1(), ocsp.OCSPCertStatus.GOOD, this_update, next_update, None, None)
               .responder_id(ocsp.OCSPResponderEncoding.HASH, ca.certificate))
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return ca._sign_ocsp(builder).public_bytes(serialization.Encoding.DER)


def test_a_well_formed_response_passes(ca: CertificateAuthority, pfc: x509.Certificate) -> None:
    nonce = os.urandom(16)
    assert pki.check_ocsp_response(response(ca, pfc, nonce), pfc, ca.certificate, nonce, at=NOW).good


def test_a_response_without_the_nonce_is_refused(ca: CertificateAuthority, pfc: x509.Certificate) -> None:
    with pytest.raises(OcspError, match="^OCSP response carries no nonce$"):
        pki.check_ocsp_response(response(ca, pfc, None), pfc, ca.certificate, os.urandom(16), at=NOW)


def test_a_responder_without_a_request_nonce_answers_without_one(ca: CertificateAuthority,
                                                               pfc: x509.Certificate) -> None:
    bare = ocsp.OCSPRequestBuilder().add_certificate(pfc, ca.certificate, hashes.SHA1()).build()
    answer = OcspResponder(ca).respond(bare.public_bytes(serialization.Encoding.DER))
    with pytest.raises(OcspError, match="^OCSP response carries no nonce$"):
        pki.check_ocsp_response(answer, pfc, ca.certificate, os.urandom(16))


def test_a_response_naming_another_issuer_is_refused(ca: CertificateAuthority, pfc: x509.Certificate) -> None:
    other = CertificateAuthority.create("Other CA")
    nonce = os.urandom(16)
    with pytest.raises(OcspError, match="^OCSP response names another issuer$"):
        pki.check_ocsp_response(response(ca, pfc, nonce, about_issuer=other.certificate), pfc, ca.certificate,
                                nonce, at=NOW)


def test_this_update_may_be_ahead_by_the_clock_skew_but_no_more(ca: CertificateAuthority,
                                                                pfc: x509.Certificate) -> None:
    nonce = os.urandom(16)
    ahead = response(ca, pfc, nonce, this_update=NOW + CLOCK_SKEW, next_update=NOW + 2 * CLOCK_SKEW)
    assert pki.check_ocsp_response(ahead, pfc, ca.certificate, nonce, at=NOW).good
    with pytest.raises(OcspError, match="thisUpdate .* is in the future"):
        pki.check_ocsp_response(ahead, pfc, ca.certificate, nonce, at=NOW - dt.timedelta(seconds=1))


def test_next_update_may_be_behind_by_the_clock_skew_but_no_more(ca: CertificateAuthority,
                                                                 pfc: x509.Certificate) -> None:
    nonce = os.urandom(16)
    answer = response(ca, pfc, nonce, this_update=NOW - dt.timedelta(hours=1), next_update=NOW)
    assert pki.check_ocsp_response(answer, pfc, ca.certificate, nonce, at=NOW + CLOCK_SKEW).good
    with pytest.raises(OcspError, match="expired at nextUpdate"):
        pki.check_ocsp_response(answer, pfc, ca.certificate, nonce, at=NOW + CLOCK_SKEW + dt.timedelta(seconds=1))


def test_a_response_without_next_update_is_current(ca: CertificateAuthority, pfc: x509.Certificate) -> None:
    nonce = os.urandom(16)
    answer = response(ca, pfc, nonce, next_update=None)
    assert pki.check_ocsp_response(answer, pfc, ca.certificate, nonce, at=NOW + dt.timedelta(days=30)).good


# --- a delegated OCSP responder (RFC 6960 4.2.2.2) ---------------------------------------------

def delegate_of(ca: CertificateAuthority, *, eku: tuple = (x509.ExtendedKeyUsageOID.OCSP_SIGNING,),
                not_before: dt.datetime | None = None, not_after: dt.datetime | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    # NOW is taken at collection, minutes before a long suite gets here: valid from well before it
    cert = ca.issue(key.public_key(), "M2MES OCSP responder", extended_key_usage=eku,
                    not_before=not_before or NOW - dt.timedelta(days=1), not_after=not_after)
    return key, cert


def delegated(ca: CertificateAuthority, cert: x509.Certificate, nonce: bytes, key, delegate: x509.Certificate, *,
              by: ocsp.OCSPResponderEncoding = ocsp.OCSPResponderEncoding.HASH,
              carried: list[x509.Certificate] | None = None) -> bytes:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, ca.certificate, hashes.SHA1()).build()
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(request.issuer_name_hash, request.issuer_key_hash, cert.serial_number,
                                     hashes.SHA1(), ocsp.OCSPCertStatus.GOOD, NOW, NOW + dt.timedelta(minutes=10),
                                     None, None)
               .responder_id(by, delegate)
               .certificates(carried if carried is not None else [delegate])
               .add_extension(x509.OCSPNonce(nonce), critical=False))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("by", [ocsp.OCSPResponderEncoding.HASH, ocsp.OCSPResponderEncoding.NAME])
def test_a_delegated_responder_the_issuer_authorised_is_accepted(ca: CertificateAuthority, pfc: x509.Certificate,
                                                                 by: ocsp.OCSPResponderEncoding) -> None:
    key, delegate = delegate_of(ca)
    nonce = os.urandom(16)
    answer = delegated(ca, pfc, nonce, key, delegate, by=by)
    assert pki.check_ocsp_response(answer, pfc, ca.certificate, nonce, at=NOW).good


def test_a_delegated_responder_without_ocsp_signing_is_refused(ca: CertificateAuthority,
                                                               pfc: x509.Certificate) -> None:
    key, delegate = delegate_of(ca, eku=(x509.ExtendedKeyUsageOID.CLIENT_AUTH,))
    nonce = os.urandom(16)
    with pytest.raises(OcspError, match="OCSP responder certificate CN=M2MES OCSP responder lacks OCSPSigning$"):
        pki.check_ocsp_response(delegated(ca, pfc, nonce, key, delegate), pfc, ca.certificate, nonce, at=NOW)


def test_a_delegated_responder_without_any_eku_is_not_authorised(ca: CertificateAuthority,
                                                                 pfc: x509.Certificate) -> None:
    key, delegate = delegate_of(ca, eku=())
    nonce = os.urandom(16)
    with pytest.raises(OcspError, match="CN=M2MES OCSP responder is not authorised by O=mcim-hil M2MES,CN=M2MES CA$"):
        pki.check_ocsp_response(delegated(ca, pfc, nonce, key, delegate), pfc, ca.certificate, nonce, at=NOW)


def test_a_responder_certificate_another_ca_issued_is_not_authorised(ca: CertificateAuthority,
                                                                     pfc: x509.Certificate) -> None:
    key, delegate = delegate_of(CertificateAuthority.create("M2MES CA", organization="mcim-hil M2MES"))
    nonce = os.urandom(16)
    with pytest.raises(OcspError, match="is not authorised by O=mcim-hil M2MES,CN=M2MES CA$"):
        pki.check_ocsp_response(delegated(ca, pfc, nonce, key, delegate), pfc, ca.certificate, nonce, at=NOW)


def test_a_delegated_responder_is_valid_from_not_before_to_not_after_inclusive(ca: CertificateAuthority,
                                                                               pfc: x509.Certificate) -> None:
    nonce = os.urandom(16)
    for start, end in ((NOW, NOW + dt.timedelta(days=1)), (NOW - dt.timedelta(days=1), NOW)):
        key, delegate = delegate_of(ca, not_before=start, not_after=end)
        assert (delegate.not_valid_before_utc, delegate.not_valid_after_utc) == (start, end)
        answer = delegated(ca, pfc, nonce, key, delegate)
        assert pki.check_ocsp_response(answer, pfc, ca.certificate, nonce, at=NOW).good
    key, delegate = delegate_of(ca, not_before=NOW, not_after=NOW + dt.timedelta(days=1))
    with pytest.raises(OcspError, match="CN=M2MES OCSP responder is not valid now$"):
        pki.check_ocsp_response(delegated(ca, pfc, nonce, key, delegate), pfc, ca.certificate, nonce,
                                at=NOW - dt.timedelta(seconds=1))


@pytest.mark.parametrize("by", [ocsp.OCSPResponderEncoding.HASH, ocsp.OCSPResponderEncoding.NAME])
def test_a_carried_certificate_that_is_not_the_responder_is_not_used(ca: CertificateAuthority,
                                                                     pfc: x509.Certificate,
                                                                     by: ocsp.OCSPResponderEncoding) -> None:
    """A response carries a genuine delegate certificate but is signed by another key: the
    certificate must match the responder ID to count."""
    _, genuine = delegate_of(ca)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(
        x509.NameOID.COMMON_NAME, "someone else")])).issuer_name(ca.certificate.subject)
        .public_key(other_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
        .sign(other_key, hashes.SHA256()))
    nonce = os.urandom(16)
    answer = delegated(ca, pfc, nonce, other_key, other, by=by, carried=[genuine])
    with pytest.raises(OcspError, match="signed by a responder that O=mcim-hil M2MES,CN=M2MES CA did not authorise$"):
        pki.check_ocsp_response(answer, pfc, ca.certificate, nonce, at=NOW)


# --- the issuer's own signature, per key type ------------------------------------------------------

@pytest.mark.parametrize("kind", ["rsa-2048", "ed25519", "ec-p384"])
def test_responses_signed_with_each_issuer_key_type_verify_and_a_tampered_one_does_not(kind: str) -> None:
    issuer = CertificateAuthority.create(f"CA {kind}", key=kind)
    cert = issuer.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "device")
    nonce = os.urandom(16)
    answer = OcspResponder(issuer).respond(pki.ocsp_request(cert, issuer.certificate, nonce))
    assert pki.check_ocsp_response(answer, cert, issuer.certificate, nonce).good
    signature = ocsp.load_der_ocsp_response(answer).signature
    tampered = answer.replace(signature, signature[:-1] + bytes([signature[-1] ^ 1]))
    with pytest.raises(OcspError, match="^OCSP response signature does not verify with the responder's key$"):
        pki.check_ocsp_response(tampered, cert, issuer.certificate, nonce)


@pytest.mark.parametrize(("issuer_kind", "impostor_kind", "oid"), [
    ("rsa-2048", "ec-p256", "1.2.840.10045.4.3.2"), ("ec-p256", "rsa-2048", "1.2.840.113549.1.1.11"),
    ("ed25519", "ec-p256", "1.2.840.10045.4.3.2"), ("ec-p256", "ed25519", "1.3.101.112")])
def test_a_signature_algorithm_that_does_not_fit_the_issuers_key_is_refused(issuer_kind: str, impostor_kind: str,
                                                                             oid: str) -> None:
    issuer = CertificateAuthority.create("Some CA", key=issuer_kind)
    cert = issuer.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "device")
    impostor_key = pki.generate_private_key(impostor_kind)
    sign_hash = None if impostor_kind == "ed25519" else hashes.SHA256()
    impostor = (x509.CertificateBuilder().subject_name(issuer.certificate.subject)
                .issuer_name(issuer.certificate.subject).public_key(impostor_key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
                .not_valid_after(NOW + dt.timedelta(days=1)).sign(impostor_key, sign_hash))
    nonce = os.urandom(16)
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer.certificate, hashes.SHA1()).build()
    answer = (ocsp.OCSPResponseBuilder()
              .add_response_by_hash(request.issuer_name_hash, request.issuer_key_hash, cert.serial_number,
                                    hashes.SHA1(), ocsp.OCSPCertStatus.GOOD, NOW, NOW + dt.timedelta(minutes=10),
                                    None, None)
              .responder_id(ocsp.OCSPResponderEncoding.NAME, impostor)
              .add_extension(x509.OCSPNonce(nonce), critical=False)
              .sign(impostor_key, sign_hash).public_bytes(serialization.Encoding.DER))
    with pytest.raises(OcspError, match=f"^OCSP response signature algorithm {re.escape(oid)} does not fit"):
        pki.check_ocsp_response(answer, cert, issuer.certificate, nonce, at=NOW)


# --- the certificate path walk ------------------------------------------------------------------------

UNKNOWN_CRITICAL = (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True)


@pytest.mark.parametrize("memo", [False, True], ids=["no memo", "memo"])
def test_an_unknown_critical_extension_is_refused_on_the_leaf_and_on_an_intermediate(memo: bool) -> None:
    root = CertificateAuthority.create("Root")
    remembered = pki.SignatureMemo() if memo else None
    leaf = root.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "leaf",
                      extra_extensions=[UNKNOWN_CRITICAL])
    with pytest.raises(pki.ChainError, match="CN=leaf: unhandled critical extension 1.3.6.1.4.1.99999.1"):
        pki.verify_chain(leaf, [], [root.certificate], memo=remembered)
    key = ec.generate_private_key(ec.SECP256R1())
    odd = CertificateAuthority(root.issue(key.public_key(), "Odd CA", is_ca=True, path_length=0,
                                          extra_extensions=[UNKNOWN_CRITICAL]), key, parent=root)
    below = odd.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "below")
    with pytest.raises(pki.ChainError, match="CN=Odd CA: unhandled critical extension"):
        pki.verify_chain(below, [odd.certificate], [root.certificate], memo=remembered)


def test_an_intermediate_outside_its_validity_breaks_the_path() -> None:
    root = CertificateAuthority.create("Root")
    key = ec.generate_private_key(ec.SECP256R1())
    issued = root.issue(key.public_key(), "Late CA", is_ca=True, path_length=0,
                        not_before=NOW + dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=30))
    late = CertificateAuthority(issued, key, parent=root)
    leaf = late.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "leaf",
                      not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=30))
    assert len(pki.verify_chain(leaf, [issued], [root.certificate], at=NOW + dt.timedelta(days=2))) == 3
    with pytest.raises(pki.ChainError, match="^CN=Late CA: not valid before"):
        pki.verify_chain(leaf, [issued], [root.certificate], at=NOW)


def test_a_pinned_certificate_is_its_own_path() -> None:
    root = CertificateAuthority.create("Root")
    sub = CertificateAuthority.create("Sub", parent=root)
    assert pki.verify_chain(sub.certificate, [], [sub.certificate]) == [sub.certificate]


def test_a_missing_issuer_is_named_even_when_unrelated_intermediates_are_supplied() -> None:
    root, other = CertificateAuthority.create("Root"), CertificateAuthority.create("Other", parent=None)
    unrelated = CertificateAuthority.create("Unrelated CA", parent=root)
    leaf = other.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "leaf")
    with pytest.raises(pki.ChainError, match="^CN=leaf: issuer 'CN=Other' is neither a pinned root nor a supplied"):
        pki.verify_chain(leaf, [unrelated.certificate], [root.certificate])


def test_a_self_signed_intermediate_that_is_not_pinned_ends_the_walk() -> None:
    loop = CertificateAuthority.create("Loop CA")  # self-signed, supplied but not pinned
    leaf = loop.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "leaf")
    with pytest.raises(pki.ChainError, match="^CN=Loop CA: issuer 'CN=Loop CA' is neither a pinned root"):
        pki.verify_chain(leaf, [loop.certificate], [CertificateAuthority.create("Root").certificate])


def test_a_certificate_is_valid_at_its_not_before_and_not_after_instants() -> None:
    root = CertificateAuthority.create("Root")
    start, end = NOW - dt.timedelta(minutes=30), NOW + dt.timedelta(days=1)  # inside the root's own validity
    leaf = root.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "leaf", not_before=start, not_after=end)
    for at in (start, end):
        assert pki.verify_chain(leaf, [], [root.certificate], at=at)[0] == leaf
    with pytest.raises(pki.ChainError, match="^CN=leaf: not valid before"):
        pki.verify_chain(leaf, [], [root.certificate], at=start - dt.timedelta(seconds=1))
    with pytest.raises(pki.ChainError, match="^CN=leaf: expired"):
        pki.verify_chain(leaf, [], [root.certificate], at=end + dt.timedelta(seconds=1))


def test_an_unknown_extension_that_is_not_critical_is_accepted() -> None:
    root = CertificateAuthority.create("Root")
    extension = (UNKNOWN_CRITICAL[0], False)
    leaf = root.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "leaf", extra_extensions=[extension])
    assert pki.verify_chain(leaf, [], [root.certificate])[0] == leaf


def test_a_ca_whose_key_usage_lacks_key_cert_sign_cannot_issue() -> None:
    root = CertificateAuthority.create("Root")
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    signer = CertificateAuthority(root.issue(key.public_key(), "No-sign CA", is_ca=True, path_length=0,
                                             key_usage=usage), key, parent=root)
    leaf = signer.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "leaf")
    with pytest.raises(pki.ChainError, match="^CN=No-sign CA: keyUsage lacks keyCertSign$"):
        pki.verify_chain(leaf, [signer.certificate], [root.certificate])


def test_any_extended_key_usage_satisfies_a_required_purpose() -> None:
    root = CertificateAuthority.create("Root")
    leaf = root.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "leaf",
                      extended_key_usage=[x509.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    assert pki.verify_chain(leaf, [], [root.certificate], eku=pki.OID_AK_CERTIFICATE)[0] == leaf
    narrow = root.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "narrow",
                        extended_key_usage=[x509.ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(pki.ChainError, match="^CN=narrow: extendedKeyUsage lacks"):
        pki.verify_chain(narrow, [], [root.certificate], eku=pki.OID_AK_CERTIFICATE)
