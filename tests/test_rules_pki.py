"""OCSP response checks that a well-behaved responder never exercises, each pinned by its
reason: no nonce echoed, another issuer's CertID, thisUpdate at and past the allowed skew,
no nextUpdate. The responses are built and signed with the issuer's own key (the CA's OCSP
signing method), so the signature check passes and only the rule under test can refuse them.
"""

from __future__ import annotations

import datetime as dt
import os

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
