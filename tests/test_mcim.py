"""The MCIM, its envelope, and its sealing for one TPM: software checks, then the real TPM
(swtpm through the driver) importing and unsealing it only in the right state."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPMA_OBJECT
from tpm2_pytss.types import (
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE,
    TPMT_SYM_DEF_OBJECT,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)
from tpm2_pytss.utils import unwrap

from mcim_hil.drivers.errors import TpmError
from mcim_hil.drivers.tpm import AuthObject, StorageKey, Tpm, object_name
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.m2me.tre import create_unseal_authority
from mcim_hil.network import attestation
from mcim_hil.network.mcim import (
    Mcim,
    McimError,
    SealedObject,
    open_mcim,
    policy_digest,
    seal_for_tpm,
    seal_mcim,
    seal_mcim_envelope,
)

PCRS = (8, 9, 10)
AUTHORITY = b"\x00\x0b" + bytes(range(32))   # a TPM name (SHA-256): the TRE's unseal authority
K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")    # TS 35.208 test set 1
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")


def a_mcim(**changes: object) -> Mcim:
    fields: dict[str, object] = dict(imsi="001010123456789", k=K, opc=OPC, home_plmn="001-01",
                                     not_after=dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc),
                                     amf=b"\xb9\xb9", sqn=0x0000000000FF)
    fields.update(changes)
    return Mcim(**fields)  # type: ignore[arg-type]


# --- the MCIM ------------------------------------------------------------------------------

def test_mcim_roundtrips_through_its_encoding() -> None:
    custom_c = tuple(bytes([i]) * 16 for i in range(5))
    for mcim in (a_mcim(), a_mcim(r=(10, 20, 30, 40, 50), c=custom_c, home_plmn="310-410")):
        assert Mcim.from_bytes(mcim.to_bytes()) == mcim
    assert a_mcim().mcc == "001" and a_mcim().mnc == "01"


def test_repr_and_str_hide_k_and_opc() -> None:
    mcim = a_mcim()
    for text in (repr(mcim), str(mcim), f"{mcim}", repr([mcim])):
        assert K.hex() not in text and OPC.hex() not in text
        assert repr(K) not in text and repr(OPC) not in text
        assert "k=<hidden>" in text and "opc=<hidden>" in text and "001010123456789" in text


def test_malformed_encodings_are_refused_without_showing_keys() -> None:
    good = a_mcim().to_bytes()
    for bad, message in ((good[:-3], "truncated"), (b"\x02" + good[1:], "version"),
                         (good + b"\x63\x01\x00", "unknown tag"), (good + good[1:18], "repeats"),
                         (good[:1] + good[18:], "lacks IMSI")):
        with pytest.raises(McimError, match=message) as caught:
            Mcim.from_bytes(bad)
        assert K.hex() not in str(caught.value) and OPC.hex() not in str(caught.value)


def test_invalid_fields_are_refused() -> None:
    with pytest.raises(McimError, match="IMSI"):
        a_mcim(imsi="12ab")
    with pytest.raises(McimError, match="home PLMN"):
        a_mcim(home_plmn="00101")
    with pytest.raises(McimError, match="48 bits"):
        a_mcim(sqn=1 << 48)
    with pytest.raises(McimError, match="timezone"):
        a_mcim(not_after=dt.datetime(2031, 1, 1))


def test_envelope_opens_only_with_its_key_and_binding() -> None:
    key, binding = os.urandom(32), b"\x00\x0b" + os.urandom(32)
    envelope = seal_mcim_envelope(a_mcim(), key, binding)
    assert K not in envelope and OPC not in envelope
    assert open_mcim(envelope, key, binding) == a_mcim()
    with pytest.raises(McimError, match="does not authenticate"):
        open_mcim(envelope, os.urandom(32), binding)
    with pytest.raises(McimError, match="does not authenticate"):
        open_mcim(envelope, key, b"\x00\x0b" + os.urandom(32))
    with pytest.raises(McimError, match="does not authenticate"):
        open_mcim(envelope[:-1] + bytes([envelope[-1] ^ 1]), key, binding)


# --- sealing in software -------------------------------------------------------------------

_AES128_CFB = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits=TPMU_SYM_KEY_BITS(aes=128),
                                  mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB))


def software_storage_key() -> tuple[TPM2B_PUBLIC, TPM2B_SENSITIVE]:
    """A restricted decryption parent whose private key we hold, to unwrap in software."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = TPM2B_PUBLIC.from_pem(pem, objectAttributes=TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
                                   | TPMA_OBJECT.USERWITHAUTH, symmetric=_AES128_CFB)
    return public, TPM2B_SENSITIVE.from_pem(pem)


def pcr_values(seed: bytes = b"") -> dict[int, bytes]:
    return {pcr: attestation.extend(bytes(32), bytes([pcr]) * 32 + seed)[:32] for pcr in PCRS}


def test_sealed_object_has_the_attributes_import_and_policy_need() -> None:
    parent, _ = software_storage_key()
    sealed = seal_for_tpm(b"s" * 32, parent.marshal(), PCRS, pcr_values(), authority_name=AUTHORITY)
    area = attestation.parse_public(sealed.public)
    assert area.type == attestation.TPM_ALG_KEYEDHASH
    assert not area.attributes & (attestation.FIXED_TPM | attestation.FIXED_PARENT)  # Import refuses them
    assert not area.attributes & attestation.USER_WITH_AUTH  # only the policy authorises Unseal
    assert not area.attributes & (attestation.SIGN_ENCRYPT | attestation.DECRYPT)  # a sealed data object
    assert area.auth_policy == sealed.policy_digest == policy_digest(PCRS, pcr_values(), AUTHORITY)
    assert sealed.storage_key_name == attestation.tpm_name(parent.marshal())
    assert sealed.pcr_selection == PCRS and sealed.encryption_key == b""
    assert sealed.name == area.name


def test_policy_depends_on_every_pcr_value_and_on_the_unseal_authority() -> None:
    base = policy_digest(PCRS, pcr_values(), AUTHORITY)
    for pcr in PCRS:
        changed = dict(pcr_values())
        changed[pcr] = bytes(32)
        assert policy_digest(PCRS, changed, AUTHORITY) != base
    # another object (e.g. one an attacker made with an authValue of its choosing) is another policy
    assert policy_digest(PCRS, pcr_values(), AUTHORITY[:-1] + b"\xff") != base
    with pytest.raises(McimError, match="do not match the selection"):
        policy_digest(PCRS, {8: bytes(32)}, AUTHORITY)
    for not_a_name in (b"", b"\x40\x00\x00\x01", b"\x00\x0c" + bytes(32), AUTHORITY + b"\0"):  # owner: the old hole
        with pytest.raises(McimError, match="unseal authority"):
            policy_digest(PCRS, pcr_values(), not_a_name)


def test_wrap_opens_with_the_parent_private_key_only() -> None:
    parent, parent_private = software_storage_key()
    sealed = seal_for_tpm(b"the envelope key", parent.marshal(), PCRS, pcr_values(), authority_name=AUTHORITY)
    public, _ = TPM2B_PUBLIC.unmarshal(sealed.public)
    duplicate, _ = TPM2B_PRIVATE.unmarshal(sealed.duplicate)
    seed, _ = TPM2B_ENCRYPTED_SECRET.unmarshal(sealed.seed)
    sensitive = unwrap(parent.publicArea, parent_private.sensitiveArea, public, duplicate, seed)
    assert bytes(sensitive.sensitiveArea.sensitive.bits) == b"the envelope key"
    other, other_private = software_storage_key()  # a whole other key pair: the seed decrypts to garbage
    with pytest.raises(InvalidSignature):  # the duplicate's outer HMAC does not verify
        unwrap(other.publicArea, other_private.sensitiveArea, public, duplicate, seed)


def test_seal_refuses_bad_inputs() -> None:
    parent, _ = software_storage_key()
    with pytest.raises(McimError, match="1..128"):
        seal_for_tpm(b"x" * 129, parent.marshal(), PCRS, pcr_values(), authority_name=AUTHORITY)
    signing = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=TPMA_OBJECT.SIGN_ENCRYPT)
    with pytest.raises(McimError, match="restricted decryption"):
        seal_for_tpm(b"x", signing.marshal(), PCRS, pcr_values(), authority_name=AUTHORITY)
    with pytest.raises(McimError, match="trailing"):
        seal_for_tpm(b"x", parent.marshal() + b"\0", PCRS, pcr_values(), authority_name=AUTHORITY)


def test_sealed_object_repr_is_not_secret() -> None:
    parent, _ = software_storage_key()
    sealed, envelope = seal_mcim(a_mcim(), parent.marshal(), PCRS, pcr_values(), authority_name=AUTHORITY)
    assert repr(sealed).startswith("SealedObject(name=000b")
    assert isinstance(sealed, SealedObject) and len(envelope) > 100


# --- the real TPM --------------------------------------------------------------------------

@pytest.fixture()
def swtpm() -> Iterator[Swtpm]:
    with Swtpm(shared_identity=True) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def other_swtpm() -> Iterator[Swtpm]:
    """Another TPM with its own seeds (its own swtpm_setup run)."""
    with Swtpm() as emulator:
        yield emulator


def measure(tpm: Tpm) -> None:
    for pcr in PCRS:
        tpm.measure(pcr, f"component in PCR {pcr}".encode())


def test_software_policy_equals_the_tpm_trial_session(swtpm: Swtpm) -> None:
    with Tpm.open(swtpm.tcti) as tpm:
        measure(tpm)
        values = tpm.pcr_read(PCRS)
        authority = create_unseal_authority(tpm, tpm.create_storage_key())
        name = object_name(tpm.read_public(authority.handle))
        # PolicyPCR(current values) + PolicySecret(authority) + PolicyCommandCode(Unseal), by the TPM
        assert policy_digest(PCRS, values, name) == tpm.trial_unseal_policy(PCRS, secret=authority)


def sealed_for_this_tpm(tpm: Tpm, secret: bytes, state: dict[int, bytes] | None = None
                        ) -> tuple[SealedObject, ESYS_TR, AuthObject, StorageKey]:
    """A secret sealed as the SHO seals it, imported and loaded under the TPM's storage key."""
    storage_key = tpm.create_storage_key()
    authority = create_unseal_authority(tpm, storage_key)
    sealed = seal_for_tpm(secret, storage_key.public.marshal(), PCRS, state or tpm.pcr_read(PCRS),
                          authority_name=object_name(tpm.read_public(authority.handle)))
    handle = tpm.load(storage_key, tpm.import_sealed(storage_key, sealed.public, sealed.duplicate, sealed.seed),
                      sealed.public)
    return sealed, handle, authority, storage_key


def test_sealed_mcim_imports_and_unseals_in_the_validated_state(swtpm: Swtpm) -> None:
    with Tpm.open(swtpm.tcti) as tpm:
        measure(tpm)
        storage_key = tpm.create_storage_key()
        authority = create_unseal_authority(tpm, storage_key)
        sealed, envelope = seal_mcim(a_mcim(), storage_key.public.marshal(), PCRS, tpm.pcr_read(PCRS),
                                     authority_name=object_name(tpm.read_public(authority.handle)))
        private = tpm.import_sealed(storage_key, sealed.public, sealed.duplicate, sealed.seed)
        handle = tpm.load(storage_key, private, sealed.public)
        try:
            key = tpm.unseal(handle, PCRS, secret=authority)
            assert open_mcim(envelope, key, sealed.name) == a_mcim()
            tpm.measure(10, b"something ran after validation")
            with pytest.raises(TpmError, match=r"TPM2_Unseal: TPM_RC_POLICY_FAIL .*a policy check failed"):
                tpm.unseal(handle, PCRS, secret=authority)  # the PCR policy, not any other failure
        finally:
            tpm.flush(handle)


def test_sealed_for_another_state_does_not_unseal(swtpm: Swtpm) -> None:
    with Tpm.open(swtpm.tcti) as tpm:
        measure(tpm)
        validated = tpm.pcr_read(PCRS)
        validated[9] = bytes(32)  # the PVA saw another firmware
        _, handle, authority, _ = sealed_for_this_tpm(tpm, b"k" * 32, validated)
        try:
            with pytest.raises(TpmError, match=r"TPM2_Unseal: TPM_RC_POLICY_FAIL .*a policy check failed"):
                tpm.unseal(handle, PCRS, secret=authority)
        finally:
            tpm.flush(handle)


def test_in_the_sealed_state_only_the_authoritys_value_unseals(swtpm: Swtpm) -> None:
    """Issue 9: the right PCRs are not enough. Without PolicySecret, with a wrong authValue, or
    with PolicySecret on an object of one's own (made with an authValue of one's choosing), the
    TPM refuses; only the TRE's authority and its value open the sealed object."""
    with Tpm.open(swtpm.tcti) as tpm:
        measure(tpm)
        _, handle, authority, storage_key = sealed_for_this_tpm(tpm, b"k" * 32)
        try:
            with pytest.raises(TpmError, match="POLICY"):
                tpm.unseal(handle, PCRS)
            with pytest.raises(TpmError, match="TPM2_PolicySecret.*AUTH"):
                tpm.unseal(handle, PCRS, secret=AuthObject(authority.handle, b"a guess".ljust(32, b"\0")))
            # the attacker's own object, with an authValue it chose: PolicySecret passes, the policy does not
            mine = create_unseal_authority(tpm, storage_key, handle=authority.handle + 0x10)
            try:
                with pytest.raises(TpmError, match="POLICY"):
                    tpm.unseal(handle, PCRS, secret=mine)
            finally:
                tpm.evict(mine.handle)
            assert tpm.unseal(handle, PCRS, secret=authority) == b"k" * 32
        finally:
            tpm.flush(handle)


def test_wrapped_for_another_tpm_fails_import(swtpm: Swtpm, other_swtpm: Swtpm) -> None:
    with Tpm.open(swtpm.tcti) as tpm:
        measure(tpm)
        target = tpm.create_storage_key()
        sealed = seal_for_tpm(b"k" * 32, target.public.marshal(), PCRS, tpm.pcr_read(PCRS), authority_name=AUTHORITY)
    with Tpm.open(other_swtpm.tcti) as other:
        storage_key = other.create_storage_key()
        assert storage_key.name != target.name
        with pytest.raises(TpmError, match="TPM2_Import") as caught:
            other.import_sealed(storage_key, sealed.public, sealed.duplicate, sealed.seed)
        assert "INTEGRITY" in str(caught.value).upper()


def test_validated_platform_gets_its_mcim_through_an_m2msimmobj(swtpm: Swtpm) -> None:
    """PVA result -> SHO seals to the certified storage key and validated PCRs -> M2MSIMMobj ->
    the M2ME checks it, imports, unseals and opens the MCIM."""
    from attestation_support import M2meAgent, M2mes, der, ek_roots_of

    from mcim_hil.network import m2msimmobj

    sho_key = ec.generate_private_key(ec.SECP256R1())
    m2mes = M2mes.create()
    validator = m2mes.validator(ek_roots_of(swtpm))
    with Tpm.open(swtpm.tcti) as tpm:
        agent = M2meAgent.boot(tpm, "m2me-7")
        agent.pfc = der(m2mes.platform_credential(agent.ak_public, "m2me-7"))
        challenge, secret = validator.credential_challenge(agent.ek_public, agent.ak_public)
        nonce = validator.new_nonce()
        result = validator.validate(agent.evidence(challenge, nonce), nonce, secret)
        assert result.passed, result.summary()
        tpm.flush(agent.ek)  # three transient slots on swtpm: make room for the sealed object
        tpm.flush(agent.ak)

        # SHO
        assert result.storage_key_public is not None
        assert result.unseal_authority_name == object_name(tpm.read_public(agent.authority.handle))
        sealed, envelope = seal_mcim(a_mcim(), result.storage_key_public, validator.pcr_selection, result.pcr_values,
                                     authority_name=result.unseal_authority_name)
        xml = m2msimmobj.build(sealed, mcim_envelope=envelope, metadata={"IMSI": a_mcim().imsi}, signer=sho_key)
        assert K not in xml and OPC not in xml and K.hex().encode() not in xml

        # M2ME
        obj = m2msimmobj.parse(xml, sho_key.public_key())
        assert obj.sealed.storage_key_name == agent.storage_key.name
        private = tpm.import_sealed(agent.storage_key, obj.sealed.public, obj.sealed.duplicate, obj.sealed.seed)
        handle = tpm.load(agent.storage_key, private, obj.sealed.public)
        try:
            key = tpm.unseal(handle, obj.sealed.pcr_selection, secret=agent.authority)
        finally:
            tpm.flush(handle)
    assert open_mcim(obj.mcim_envelope, key, obj.sealed.name) == a_mcim()
