"""The TPM 2.0 driver through a real swtpm: every operation, checked the way a verifier would."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss.constants import TPM2_ALG, TPM2_CC, TPM2_ST, TPMA_OBJECT
from tpm2_pytss.types import (
    TPM2B_SENSITIVE,
    TPML_PCR_SELECTION,
    TPM2B_PUBLIC,
    TPMS_ATTEST,
    TPMT_SIGNATURE,
    TPMT_SYM_DEF_OBJECT,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)
from tpm2_pytss.utils import make_credential, wrap

from mcim_hil.drivers.errors import DeviceNotFound, SafetyRefused, TpmError
from mcim_hil.drivers.hook import CommandEvent, CommandHook
from mcim_hil.drivers.tpm import Ak, AuthObject, Tpm, object_name, rc_name
from mcim_hil.emulators.swtpm import Swtpm

EKU_EK_CERTIFICATE = x509.ObjectIdentifier("2.23.133.8.1")  # TCG EK Credential Profile 3.2.16
TPM_GENERATED_VALUE = 0xFF544347  # TPM 2.0 Part 2, 6.2


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def swtpm() -> Iterator[Swtpm]:
    def children() -> set[str]:  # swtpm processes of ours (the plugin's session bench may hold one)
        done = subprocess.run(["pgrep", "-P", str(os.getpid()), "-x", "swtpm"], capture_output=True, text=True)
        return set(done.stdout.split())
    before = children()
    with Swtpm() as emulator:  # its own identity: the EK tests check its own CA
        yield emulator
    assert children() <= before, "no swtpm left behind"


@pytest.fixture()
def events() -> list[CommandEvent]:
    return []


@pytest.fixture()
def tpm(swtpm: Swtpm, events: list[CommandEvent]) -> Iterator[Tpm]:
    hook = CommandHook()
    hook.subscribe(events.append)
    with Tpm.open(swtpm.tcti, hook) as device:
        yield device


@pytest.fixture()
def ak(tpm: Tpm) -> Iterator[Ak]:
    key = tpm.create_ak()
    yield key
    tpm.flush(key)


# --- helpers (the verifier's side, written here, not taken from the driver) ------------------

def verify_ecdsa(public_key: ec.EllipticCurvePublicKey, attest: bytes, signature: bytes) -> None:
    sig, _ = TPMT_SIGNATURE.unmarshal(signature)
    assert sig.sigAlg == TPM2_ALG.ECDSA
    r = int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big")
    s = int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big")
    public_key.verify(encode_dss_signature(r, s), attest, ec.ECDSA(hashes.SHA256()))


def unseal_policy(selection: TPML_PCR_SELECTION, values: Sequence[bytes]) -> bytes:
    """TPM 2.0 Part 3, 23.7 PolicyPCR then 23.11 PolicyCommandCode(Unseal), in software."""
    digest = bytes(32)
    pcr_digest = hashlib.sha256(b"".join(values)).digest()
    digest = hashlib.sha256(digest + int(TPM2_CC.PolicyPCR).to_bytes(4, "big")
                            + selection.marshal() + pcr_digest).digest()
    return hashlib.sha256(digest + int(TPM2_CC.PolicyCommandCode).to_bytes(4, "big")
                          + int(TPM2_CC.Unseal).to_bytes(4, "big")).digest()


def tools_pcr(tcti: str, pcr: int) -> bytes:
    """The same PCR as tpm2-tools reads it: an independent reader."""
    out = subprocess.run(["tpm2_pcrread", f"sha256:{pcr}", "-T", tcti],
                         capture_output=True, text=True, check=True).stdout
    return bytes.fromhex(re.search(r"0x([0-9A-Fa-f]{64})", out).group(1))


AES128_CFB = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits=TPMU_SYM_KEY_BITS(aes=128),
                                 mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB))


# --- identity and PCRs ------------------------------------------------------------------------

def test_info_names_the_tpm(tpm: Tpm) -> None:
    info = tpm.info()
    assert info.manufacturer == "IBM"
    assert "SW" in info.vendor and "TPM" in info.vendor
    assert info.spec_revision >= 116  # TPM 2.0 library 1.16 or later
    assert info.firmware_version >> 32 != 0
    major, minor = info.firmware_version_text.split(".")
    assert int(major) == info.firmware_version >> 48


def test_pcr_read_reads_all_24_pcrs(tpm: Tpm, swtpm: Swtpm) -> None:
    tpm.measure(10, b"pcr ten")
    tpm.measure(12, b"pcr twelve")
    values = tpm.pcr_read(range(24))
    assert sorted(values) == list(range(24))  # more than the 8 one PCR_Read gives
    assert all(len(v) == 32 for v in values.values())
    for pcr in (0, 10, 12, 23):
        assert values[pcr] == tools_pcr(swtpm.tcti, pcr)


def test_extend_chains_sha256_of_old_and_digest(tpm: Tpm, swtpm: Swtpm) -> None:
    old = tpm.pcr_read([16])[16]
    digest = hashlib.sha256(b"component").digest()
    tpm.pcr_extend(16, digest)
    assert tpm.pcr_read([16])[16] == hashlib.sha256(old + digest).digest()

    before = tpm.pcr_read([16])[16]
    measured = tpm.measure(16, b"firmware image")
    assert measured == hashlib.sha256(b"firmware image").digest()
    after = hashlib.sha256(before + measured).digest()
    assert tpm.pcr_read([16])[16] == after == tools_pcr(swtpm.tcti, 16)

    with pytest.raises(ValueError):
        tpm.pcr_extend(16, b"short")


def test_pcr_reset_zeroes_a_resettable_pcr_only(tpm: Tpm) -> None:
    tpm.measure(23, b"application state")
    tpm.pcr_reset(23)
    assert tpm.pcr_read([23])[23] == bytes(32)
    before = tpm.pcr_read([0])[0]
    with pytest.raises(TpmError) as refused:
        tpm.pcr_reset(0)  # a boot PCR: not resettable at locality 0
    assert refused.value.command == "TPM2_PCR_Reset"
    assert refused.value.rc_name == "TPM_RC_LOCALITY"
    assert tpm.pcr_read([0])[0] == before


# --- keys ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile, persisted_by_setup", [
    (None, 0x81010016),            # default: the high-range ECC P-384 EK swtpm_setup certified
    ("EK-RSA2048", 0x81010001),    # the low-range RSA 2048 EK
])
def test_ek_certificate_chains_to_the_local_ca_and_holds_the_ek(
        tpm: Tpm, swtpm: Swtpm, profile: str | None, persisted_by_setup: int) -> None:
    ek = tpm.ek(profile)
    try:
        cert = ek.certificate
        assert cert is not None
        issuer_pem, root_pem = swtpm.ek_ca_certificates()
        issuer = x509.load_pem_x509_certificate(issuer_pem.read_bytes())
        root = x509.load_pem_x509_certificate(root_pem.read_bytes())
        cert.verify_directly_issued_by(issuer)
        issuer.verify_directly_issued_by(root)
        root.verify_directly_issued_by(root)
        assert EKU_EK_CERTIFICATE in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value

        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        assert cert.public_key().public_bytes(der, spki) == ek.public_key.public_bytes(der, spki)
        # the EK swtpm_setup made and persisted is the one recreated from the template
        assert tpm.read_public(persisted_by_setup).publicArea.marshal() == \
            ek.public.publicArea.marshal()
    finally:
        tpm.flush(ek)


def test_ek_profiles_follow_the_tcg_templates(tpm: Tpm) -> None:
    ek = tpm.ek()
    try:
        assert ek.profile == "EK-HIGH-ECC384" and ek.certificate_index == 0x01C00016
        assert ek.public.publicArea.objectAttributes & TPMA_OBJECT.USERWITHAUTH
        assert isinstance(ek.public_key, ec.EllipticCurvePublicKey)
        assert ek.public_key.curve.name == "secp384r1"
    finally:
        tpm.flush(ek)


def test_ak_is_a_restricted_p256_signing_key_named_by_its_public(tpm: Tpm, ak: Ak) -> None:
    area = ak.public.publicArea
    wanted = (TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
              | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT)
    assert int(area.objectAttributes) == int(wanted)
    assert not area.objectAttributes & TPMA_OBJECT.DECRYPT
    assert area.type == TPM2_ALG.ECC and ak.public_key.curve.name == "secp256r1"
    assert area.parameters.eccDetail.scheme.scheme == TPM2_ALG.ECDSA
    expected = (0x000B).to_bytes(2, "big") + hashlib.sha256(area.marshal()).digest()
    assert ak.name == expected


# --- credential activation -------------------------------------------------------------------

@pytest.mark.parametrize("profile", [None, "EK-RSA2048"])  # password session / PolicySecret
def test_activate_credential_returns_the_challenge(
        tpm: Tpm, ak: Ak, profile: str | None, events: list[CommandEvent]) -> None:
    ek = tpm.ek(profile)
    try:
        challenge = os.urandom(32)
        blob, secret = make_credential(ek.public, challenge, ak.name)
        assert tpm.activate_credential(ak, ek, blob, secret) == challenge
        # the same, from the marshalled bytes a network message carries
        assert tpm.activate_credential(ak, ek, blob.marshal(), secret.marshal()) == challenge
        activation = [e for e in events if "TPM2_ActivateCredential" in e.command]
        assert activation and all(e.secret for e in activation)
    finally:
        tpm.flush(ek)


def test_activate_credential_refuses_a_credential_for_another_name(tpm: Tpm, ak: Ak) -> None:
    ek = tpm.ek()
    try:
        other_name = ak.name[:2] + hashlib.sha256(b"another key").digest()
        blob, secret = make_credential(ek.public, os.urandom(32), other_name)
        with pytest.raises(TpmError) as failure:
            tpm.activate_credential(ak, ek, blob, secret)
        assert failure.value.command == "TPM2_ActivateCredential"
        assert failure.value.rc_name == "TPM_RC_INTEGRITY"
        assert tpm.tcti in str(failure.value)
    finally:
        tpm.flush(ek)


# --- quote and certify -------------------------------------------------------------------------

def test_quote_verifies_over_the_nonce_and_the_pcrs(tpm: Tpm, ak: Ak) -> None:
    tpm.measure(16, b"quoted state")
    nonce = os.urandom(32)
    pcrs = list(range(12)) + [16]  # 13 PCRs: more than one PCR_Read answers
    quote = tpm.quote(ak, nonce, pcrs)

    verify_ecdsa(ak.public_key, quote.attest, quote.signature)
    attest, used = TPMS_ATTEST.unmarshal(quote.attest)
    assert used == len(quote.attest)
    assert attest.magic == TPM_GENERATED_VALUE
    assert attest.type == TPM2_ST.ATTEST_QUOTE
    assert bytes(attest.extraData) == nonce
    signed_selection = attest.attested.quote.pcrSelect
    assert signed_selection.marshal() == TPML_PCR_SELECTION.parse(
        "sha256:" + ",".join(map(str, pcrs))).marshal()
    assert sorted(quote.pcr_values) == sorted(pcrs)
    assert bytes(attest.attested.quote.pcrDigest) == hashlib.sha256(
        b"".join(quote.pcr_values[p] for p in sorted(pcrs))).digest()
    assert quote.pcr_values == tpm.pcr_read(pcrs)
    # an AK in the endorsement hierarchy sees the real firmware version and safe clock
    assert attest.firmwareVersion == tpm.info().firmware_version
    assert attest.clockInfo.safe == 1

    forged = bytearray(quote.attest)
    forged[quote.attest.index(nonce)] ^= 1
    with pytest.raises(InvalidSignature):  # another nonce is not what was signed
        verify_ecdsa(ak.public_key, bytes(forged), quote.signature)


def test_certify_binds_the_storage_key_to_the_ak(tpm: Tpm, ak: Ak) -> None:
    storage = tpm.create_storage_key()
    try:
        area = storage.public.publicArea
        assert area.objectAttributes & TPMA_OBJECT.RESTRICTED
        assert area.objectAttributes & TPMA_OBJECT.DECRYPT
        assert area.parameters.eccDetail.symmetric.algorithm == TPM2_ALG.AES
        nonce = os.urandom(16)
        certification = tpm.certify(storage, ak, nonce)
        verify_ecdsa(ak.public_key, certification.attest, certification.signature)
        attest, _ = TPMS_ATTEST.unmarshal(certification.attest)
        assert attest.type == TPM2_ST.ATTEST_CERTIFY
        assert bytes(attest.extraData) == nonce
        assert bytes(attest.attested.certify.name) == storage.name
        assert storage.name == (0x000B).to_bytes(2, "big") + hashlib.sha256(area.marshal()).digest()
    finally:
        tpm.flush(storage)


# --- import and sealed storage ----------------------------------------------------------------

SEALED_PCRS = [7, 14]


def _wrapped_secret(tpm: Tpm, parent_public, secret: bytes):  # type: ignore[no-untyped-def]
    """What a network would send: a sealed data object wrapped for the M2ME's storage key."""
    selection = TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, SEALED_PCRS)))
    values = tpm.pcr_read(SEALED_PCRS)
    sensitive, public = TPM2B_SENSITIVE.keyedhash_from_secret(secret, objectAttributes=0)
    public.publicArea.authPolicy = unseal_policy(selection, [values[p] for p in SEALED_PCRS])
    enc_key, duplicate, seed = wrap(parent_public.publicArea, public, sensitive, None, AES128_CFB)
    return public, duplicate, seed, bytes(enc_key)


def test_imported_secret_unseals_under_the_sealed_pcrs_only(
        tpm: Tpm, events: list[CommandEvent]) -> None:
    storage = tpm.create_storage_key()
    secret = os.urandom(48)
    try:
        public, duplicate, seed, enc_key = _wrapped_secret(tpm, storage.public, secret)
        private = tpm.import_sealed(storage, public.marshal(), duplicate.marshal(),
                                    seed.marshal(), encryption_key=enc_key)
        sealed = tpm.load(storage, private, public)
        try:
            assert tpm.unseal(sealed, SEALED_PCRS) == secret
            # salted with the storage key, the answer is encrypted on the way (same secret back)
            assert tpm.unseal(sealed, SEALED_PCRS, salt=storage) == secret
            unseal_event = events[-1]
            assert "TPM2_Unseal" in unseal_event.command and unseal_event.secret
            assert unseal_event.status == "TPM_RC_SUCCESS"
            tpm.persist(sealed, 0x81000A99)
            try:
                assert tpm.unseal_persistent(0x81000A99, SEALED_PCRS) == secret
                assert tpm.unseal_persistent(0x81000A99, SEALED_PCRS, salt=storage) == secret
                assert events[-1].secret
            finally:
                tpm.evict(0x81000A99)

            tpm.measure(SEALED_PCRS[1], b"something else booted")
            with pytest.raises(TpmError) as failure:
                tpm.unseal(sealed, SEALED_PCRS)
            assert failure.value.command == "TPM2_Unseal"
            assert failure.value.rc_name == "TPM_RC_POLICY_FAIL"
            assert secret.hex() not in str(failure.value)
            assert events[-1].status == "TPM_RC_POLICY_FAIL" and events[-1].secret
        finally:
            tpm.flush(sealed)
    finally:
        tpm.flush(storage)


def test_an_auth_object_is_tpm_made_and_its_value_authorises_certify_and_policy_secret(
        tpm: Tpm, ak: Ak, events: list[CommandEvent]) -> None:
    """create_auth_object: the TPM picks the sensitive data, so two objects with the same value
    have different names; its value (sent only in HMAC sessions) authorises TPM2_Certify and
    PolicySecret, a wrong one is refused; no hook event shows it."""
    storage = tpm.create_storage_key()
    value = os.urandom(32)
    try:
        for wrong_size in (b"", bytes(33)):   # an authValue is 1..32 bytes (the SHA-256 digest size)
            with pytest.raises(ValueError, match="1..32 bytes"):
                tpm.create_auth_object(storage, wrong_size)
        assert tpm.create_auth_object(storage, b"\x01")
        made = [tpm.create_auth_object(storage, value) for _ in range(2)]
        publics = [TPM2B_PUBLIC.unmarshal(public)[0] for _, public in made]
        assert object_name(publics[0]) != object_name(publics[1])
        attributes = publics[0].publicArea.objectAttributes
        for bit in (TPMA_OBJECT.FIXEDTPM, TPMA_OBJECT.FIXEDPARENT, TPMA_OBJECT.SENSITIVEDATAORIGIN,
                    TPMA_OBJECT.USERWITHAUTH, TPMA_OBJECT.NODA):
            assert attributes & bit
        loaded = tpm.load(storage, *made[0])
        tpm.persist(loaded, 0x81000A98)
        tpm.flush(loaded)
    finally:
        tpm.flush(storage)
    try:
        right, wrong = AuthObject(0x81000A98, value), AuthObject(0x81000A98, bytes(32))
        assert value.hex() not in repr(right)
        certification = tpm.certify(right, ak, b"nonce-0123456789")
        attest, _ = TPMS_ATTEST.unmarshal(certification.attest)
        assert bytes(attest.attested.certify.name) == object_name(publics[0])
        with pytest.raises(TpmError, match="TPM2_Certify.*AUTH"):
            tpm.certify(wrong, ak, b"nonce-0123456789")
        assert tpm.trial_unseal_policy(secret=right) != tpm.trial_unseal_policy()
        with pytest.raises(TpmError, match="TPM2_PolicySecret.*AUTH"):
            tpm.trial_unseal_policy(secret=wrong)
        assert all(e.secret for e in events if {"TPM2_PolicySecret", "TPM2_Create"} & set(e.command.split("+")))
    finally:
        tpm.evict(0x81000A98)


def test_import_refuses_a_blob_wrapped_for_another_parent(tpm: Tpm) -> None:
    storage = tpm.create_storage_key()
    try:
        # the same template with another key's point: a blob for that parent, not this one
        other = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        other_parent = storage.public.__class__(publicArea=storage.public.publicArea)
        other_parent.publicArea.unique.ecc.x = other.x.to_bytes(32, "big")
        other_parent.publicArea.unique.ecc.y = other.y.to_bytes(32, "big")
        public, duplicate, seed, enc_key = _wrapped_secret(tpm, other_parent, b"not for you")
        with pytest.raises(TpmError) as failure:
            tpm.import_sealed(storage, public, duplicate, seed, encryption_key=enc_key)
        assert failure.value.command == "TPM2_Import"
        assert failure.value.rc_name == "TPM_RC_INTEGRITY"
    finally:
        tpm.flush(storage)


# --- persistence ---------------------------------------------------------------------------------

def test_persist_list_read_public_evict(tpm: Tpm, ak: Ak) -> None:
    handle = 0x81000123
    assert handle not in tpm.list_persistent()
    tpm.persist(ak, handle)
    try:
        assert handle in tpm.list_persistent()
        assert tpm.read_public(handle).publicArea.marshal() == ak.public.publicArea.marshal()
    finally:
        tpm.evict(handle)
    assert handle not in tpm.list_persistent()
    assert {0x81010001, 0x81010016} <= set(tpm.list_persistent())  # swtpm_setup's EKs


def test_evicting_an_endorsement_key_is_refused(tpm: Tpm, ak: Ak) -> None:
    with pytest.raises(SafetyRefused) as refusal:
        tpm.evict(0x81010001)
    assert refusal.value.command == "TPM2_EvictControl"
    assert 0x81010001 in tpm.list_persistent()
    with pytest.raises(ValueError):
        tpm.persist(ak, 0x01C00002)  # an NV index, not a persistent object handle


# --- NV indices ------------------------------------------------------------------------------------

def test_an_owner_nv_index_is_defined_written_read_resized_and_undefined(tpm: Tpm, events: list[CommandEvent]) -> None:
    index = 0x01000123   # TCG handle registry: owner NV range
    assert tpm.nv_read_public(index) is None
    defined = tpm.nv_define(index, 24)
    try:
        assert tpm.nv_read_public(index) == defined and defined.size == 24 and not defined.written
        with pytest.raises(TpmError, match="NV_UNINITIALIZED"):   # never written: nothing to read
            tpm.nv_read(index)
        data = os.urandom(24)
        tpm.nv_write(index, data)
        assert tpm.nv_read(index) == data and tpm.nv_read_public(index).written
        assert tpm.nv_define(index, 24).written      # same size: left alone, data kept
        assert tpm.nv_read(index) == data
        big = os.urandom(1500)                        # more than one TPM_PT_NV_BUFFER_MAX chunk
        assert tpm.nv_define(index, len(big)).size == len(big)
        tpm.nv_write(index, big)
        assert tpm.nv_read(index) == big
    finally:
        assert tpm.nv_undefine(index)
    assert tpm.nv_read_public(index) is None and not tpm.nv_undefine(index)
    writes = [e.command for e in events if "TPM2_NV_Write" in e.command]
    assert writes and all(e.device == "tpm" for e in events)


def test_the_endorsement_credential_nv_range_is_refused_to_define_write_and_undefine(tpm: Tpm) -> None:
    certificate_index = 0x01C00002                    # swtpm_setup's RSA EK certificate
    before = tpm.nv_read(certificate_index)
    for index in (0x01C00000, certificate_index, 0x01C07FFF):
        with pytest.raises(SafetyRefused, match="endorsement credential NV range") as refusal:
            tpm.nv_define(index, 8)
        assert refusal.value.command == "TPM2_NV_DefineSpace"
        with pytest.raises(SafetyRefused) as refusal:
            tpm.nv_write(index, b"x")
        assert refusal.value.command == "TPM2_NV_Write"
        with pytest.raises(SafetyRefused) as refusal:
            tpm.nv_undefine(index)
        assert refusal.value.command == "TPM2_NV_UndefineSpace"
    assert tpm.nv_read(certificate_index) == before and tpm.nv_read_public(certificate_index) is not None
    with pytest.raises(ValueError, match="not an NV index"):
        tpm.nv_define(0x81000123, 8)
    # the NV index range's own ends are NV indices (TPM 2.0 Part 2, 7.2: TPM_HT_NV_INDEX 01xxxxxx);
    # nothing is defined there, so undefining them finds nothing
    for index in (0x01000000, 0x01FFFFFF):
        assert tpm.nv_undefine(index) is False
    for index in (0x00FFFFFF, 0x02000000):
        with pytest.raises(ValueError, match="not an NV index"):
            tpm.nv_undefine(index)


# --- errors, slots, hook ---------------------------------------------------------------------------

def test_a_failing_command_names_itself_the_tcti_and_the_response_code(
        tpm: Tpm, events: list[CommandEvent]) -> None:
    with pytest.raises(TpmError) as failure:
        tpm.read_public(0x81000999)
    error = failure.value
    assert error.command == "TPM2_ReadPublic"
    assert error.rc_name == "TPM_RC_HANDLE" and error.rc is not None
    assert error.device == tpm.tcti and tpm.tcti in str(error)
    assert "TPM_RC_HANDLE" in str(error)
    assert isinstance(error.__cause__, Exception)
    assert events[-1].status == "TPM_RC_HANDLE" and events[-1].port == tpm.tcti


def test_close_flushes_what_was_handed_out(swtpm: Swtpm) -> None:
    # a raw swtpm has 3 object slots that outlive our connection
    with Tpm.open(swtpm.tcti) as first:
        first.create_ak()
        first.create_storage_key()
        first.ek()
        with pytest.raises(TpmError) as full:
            first.create_ak()
        assert full.value.rc_name == "TPM_RC_OBJECT_MEMORY"
        assert full.value.command == "TPM2_CreatePrimary"
    with Tpm.open(swtpm.tcti) as second:  # all three slots free again
        for key in (second.create_ak(), second.create_storage_key(), second.ek()):
            second.flush(key)


def test_hook_sees_one_event_per_operation(tpm: Tpm, ak: Ak, events: list[CommandEvent]) -> None:
    events.clear()
    t0 = time.perf_counter()
    tpm.quote(ak, b"nonce-for-hook", [0, 1])
    elapsed = time.perf_counter() - t0
    assert len(events) == 1
    event = events[0]
    assert event.device == "tpm" and event.port == tpm.tcti
    assert event.command.split("+")[0] == "TPM2_Quote" and "TPM2_PCR_Read" in event.command
    assert event.status == "TPM_RC_SUCCESS" and not event.secret
    assert 0 < event.duration_s <= elapsed  # measured, in seconds, around the TPM round trips


def test_a_dead_port_is_device_not_found() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # held, never listening: nobody answers there
        tcti = f"swtpm:host=127.0.0.1,port={port}"
        with pytest.raises(DeviceNotFound) as missing:
            Tpm.open(tcti)
    assert missing.value.device == tcti and tcti in str(missing.value)
    with pytest.raises(DeviceNotFound):
        Tpm.open("device:/dev/mcim-hil-no-such-tpm")


def test_response_code_names() -> None:
    assert rc_name(0x99D) == "TPM_RC_POLICY_FAIL"        # format one, session 1
    assert rc_name(0x18B) == "TPM_RC_HANDLE"
    assert rc_name(0x100) == "TPM_RC_INITIALIZE"
    assert rc_name(0x902) == "TPM_RC_OBJECT_MEMORY"
    assert rc_name(0x0A000A) == "TSS2_TCTI_RC_IO_ERROR"
    assert rc_name(0x070005) == "TSS2_ESYS_RC_BAD_REFERENCE"


def _transient_objects(tcti: str) -> int:
    """Loaded transient objects, as tpm2-tools sees them (an independent reader)."""
    out = subprocess.run(["tpm2_getcap", "handles-transient", "-T", tcti],
                         capture_output=True, text=True, check=True).stdout
    return len(re.findall(r"0x80", out))


def test_a_persisted_object_is_reached_with_every_slot_in_use(swtpm: Swtpm) -> None:
    # provisioning again: AK, storage key and the new sealed object fill swtpm's 3 slots,
    # then the old object at the persistent handle is read, unsealed and evicted
    with Tpm.open(swtpm.tcti) as tpm:
        ak = tpm.create_ak()
        storage = tpm.create_storage_key()
        old_secret, new_secret = os.urandom(32), os.urandom(32)
        public, duplicate, seed, enc_key = _wrapped_secret(tpm, storage.public, old_secret)
        old = tpm.load(storage, tpm.import_sealed(storage, public, duplicate, seed, enc_key), public)
        tpm.persist(old, 0x81000A11)
        tpm.flush(old)
        public, duplicate, seed, enc_key = _wrapped_secret(tpm, storage.public, new_secret)
        new = tpm.load(storage, tpm.import_sealed(storage, public, duplicate, seed, enc_key), public)
        try:
            assert tpm.read_public(0x81000A11).publicArea.objectAttributes is not None
            assert tpm.unseal_persistent(0x81000A11, SEALED_PCRS, salt=storage) == old_secret
            tpm.evict(0x81000A11)
            tpm.persist(new, 0x81000A11)
            assert tpm.unseal(new, SEALED_PCRS, salt=storage) == new_secret
            # the objects moved out to make room still answer through the caller's handles
            quote = tpm.quote(ak, b"still here", [16])
            verify_ecdsa(ak.public_key, quote.attest, quote.signature)
        finally:
            tpm.flush(new)
            tpm.evict(0x81000A11)
        tpm.flush(storage)
        tpm.flush(ak)
    assert _transient_objects(swtpm.tcti) == 0, "no transient object left behind"
