"""The TRE's rules on a real TPM (swtpm through the driver), without a bench: measurements start
from a reset PCR, the sealed MCIM is persisted only after it unsealed in the current state and
through the TRE's own unseal authority, nothing stays in the TPM when that fails, a new MCIM
replaces the old one, discard is honest, and no secret crosses the TPM's bus in clear.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from mcim_hil.drivers.errors import TpmError
from mcim_hil.drivers.tpm import Tpm, object_name
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.m2me.tre import (
    ACCESS_CREDENTIAL_HANDLE,
    ACCESS_METADATA_INDEX,
    MCIM_HANDLE,
    PREPROVISIONED_HANDLE,
    MEASUREMENT_PCR,
    Component,
    TreError,
    TrustedEnvironment,
    create_unseal_authority,
    describe_access_credential,
)
from mcim_hil.network.access_credential import AccessCredential
from mcim_hil.network.mcim import SealedObject, seal_for_tpm

COMPONENTS = [Component("bootloader", b"boot 1.0"), Component("m2me-agent", b"agent 0.3")]


@pytest.fixture
def tre() -> Iterator[TrustedEnvironment]:
    with Swtpm(shared_identity=True) as swtpm, Tpm.open(swtpm.tcti) as tpm:
        environment = TrustedEnvironment(tpm)
        environment.make_unseal_authority()   # what manufacture does first
        try:
            yield environment
        finally:
            environment.release()


def expected_pcr(components: list[Component]) -> bytes:
    value = bytes(32)
    for component in components:
        value = hashlib.sha256(value + hashlib.sha256(component.data).digest()).digest()
    return value


def sealed_for(tre: TrustedEnvironment, secret: bytes, pcr_value: bytes | None = None,
               authority_name: bytes | None = None) -> SealedObject:
    state = {MEASUREMENT_PCR: pcr_value} if pcr_value else tre.tpm.pcr_read(tre.pcr_selection)
    return seal_for_tpm(secret, tre.keys().storage_key.public.marshal(), tre.pcr_selection, state,
                        authority_name=authority_name or tre.unseal_authority_name())


def install(tre: TrustedEnvironment, sealed: SealedObject) -> bytes:
    return tre.install_sealed(sealed.public, sealed.duplicate, sealed.seed, sealed.encryption_key, tre.pcr_selection)


def test_each_boot_measures_from_a_reset_pcr(tre: TrustedEnvironment) -> None:
    tre.tpm.measure(MEASUREMENT_PCR, b"left over from an earlier run")
    log = tre.boot(COMPONENTS)
    assert [(m.name, m.pcr) for m in log] == [("bootloader", MEASUREMENT_PCR), ("m2me-agent", MEASUREMENT_PCR)]
    assert tre.tpm.pcr_read([MEASUREMENT_PCR])[MEASUREMENT_PCR] == expected_pcr(COMPONENTS)
    tre.boot(COMPONENTS)
    assert tre.tpm.pcr_read([MEASUREMENT_PCR])[MEASUREMENT_PCR] == expected_pcr(COMPONENTS)
    assert tre.event_log == log


def test_the_mcim_is_persisted_after_it_unsealed_and_unseals_in_that_state_only(tre: TrustedEnvironment) -> None:
    tre.boot(COMPONENTS)
    assert not tre.has_mcim()
    assert install(tre, sealed_for(tre, b"k" * 32)) == b"k" * 32
    assert MCIM_HANDLE in tre.tpm.list_persistent()
    assert tre.unseal_mcim(tre.pcr_selection) == b"k" * 32
    tre.boot([*COMPONENTS, Component("debugger", b"attached")])
    with pytest.raises(TpmError, match="TPM2_Unseal"):
        tre.unseal_mcim(tre.pcr_selection)


def test_nothing_stays_in_the_tpm_when_the_state_is_not_the_sealed_one(tre: TrustedEnvironment) -> None:
    tre.boot(COMPONENTS)
    with pytest.raises(TpmError, match="TPM2_Unseal"):
        install(tre, sealed_for(tre, b"k" * 32, pcr_value=bytes(32)))
    assert not tre.has_mcim()
    # the loaded object was flushed: the one free object slot of swtpm takes the next import
    assert install(tre, sealed_for(tre, b"n" * 32)) == b"n" * 32


# issue 9: re-provisioning over an MCIM at 0x81000A11 used to fail with TPM_RC_OBJECT_MEMORY
# (3 object slots on swtpm); the driver now makes room for a command naming a persistent object.
def test_the_mcim_unseals_through_this_tres_authority_only(tre: TrustedEnvironment) -> None:
    """Issue 9: sealed to another authority (the one an earlier manufacture made, or anyone's),
    it does not install; a re-manufactured TRE (new authority, the old value gone with its
    process) evicts what was sealed to the old one."""
    tre.boot(COMPONENTS)
    with pytest.raises(TpmError, match="TPM2_Unseal.*POLICY"):
        install(tre, sealed_for(tre, b"k" * 32, authority_name=b"\x00\x0b" + bytes(32)))
    assert not tre.has_mcim()
    install(tre, sealed_for(tre, b"k" * 32))
    for handle in (PREPROVISIONED_HANDLE, ACCESS_CREDENTIAL_HANDLE):   # stand-ins sealed to the old authority
        tre.tpm.persist(tre.keys().ak, handle)
    old = tre.unseal_authority_name()
    again = TrustedEnvironment(tre.tpm)   # the next run on a TPM that kept its state
    with pytest.raises(TreError, match="no unseal authority"):
        again.unseal_mcim(again.pcr_selection)
    tre.release()
    assert again.make_unseal_authority() != old
    assert not again.has_mcim()
    held = again.tpm.list_persistent()
    assert PREPROVISIONED_HANDLE not in held and ACCESS_CREDENTIAL_HANDLE not in held
    again.release()


def test_a_new_mcim_replaces_the_old_one(tre: TrustedEnvironment) -> None:
    tre.boot(COMPONENTS)
    install(tre, sealed_for(tre, b"old" * 8))
    install(tre, sealed_for(tre, b"new" * 8))
    assert tre.tpm.list_persistent().count(MCIM_HANDLE) == 1
    assert tre.unseal_mcim(tre.pcr_selection) == b"new" * 8


def test_discard_says_whether_there_was_an_mcim(tre: TrustedEnvironment) -> None:
    tre.boot(COMPONENTS)
    assert tre.discard_mcim() is False
    install(tre, sealed_for(tre, b"k" * 32))
    assert tre.discard_mcim() is True
    assert not tre.has_mcim() and MCIM_HANDLE not in tre.tpm.list_persistent()


# --- the unsealed key never crosses the TPM bus in clear --------------------------------------------

class BusSniffer:
    """A TCP relay between the driver and swtpm (its command port and control port, P and P+1)
    that keeps every byte the TPM sends back: what a probe on a discrete TPM's bus would see."""

    def __init__(self, swtpm: Swtpm) -> None:
        self.responses = bytearray()
        self.requests = bytearray()
        self._sockets: list[socket.socket] = []
        for _ in range(50):
            first = socket.socket()
            first.bind(("127.0.0.1", 0))
            second = socket.socket()
            try:
                second.bind(("127.0.0.1", first.getsockname()[1] + 1))
            except OSError:
                first.close()
                second.close()
                continue
            break
        self.port = first.getsockname()[1]
        for listener, upstream in ((first, swtpm.port), (second, swtpm.ctrl_port)):
            listener.listen()
            self._sockets.append(listener)
            threading.Thread(target=self._accept, args=(listener, upstream, listener is first), daemon=True).start()

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def _accept(self, listener: socket.socket, upstream: int, keep: bool) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", upstream))
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, keep, self.requests), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, keep, self.responses), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, keep: bool, into: bytearray) -> None:
        try:
            while data := source.recv(65536):
                if keep:
                    into += data
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # pass the end on: the control channel reads to EOF
        except OSError:
            pass

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


@pytest.mark.parametrize("salted", [True, False], ids=["salted session", "plain session (control)"])
def test_the_unsealed_secret_crosses_the_tpm_bus_only_encrypted(salted: bool) -> None:
    secret = os.urandom(32)
    with Swtpm(shared_identity=True) as swtpm:
        sniffer = BusSniffer(swtpm)
        try:
            with Tpm.open(sniffer.tcti) as tpm:
                tre = TrustedEnvironment(tpm)
                tre.boot(COMPONENTS)
                srk = tre.keys().storage_key
                authority = create_unseal_authority(tpm, srk)
                sealed = sealed_for(tre, secret, authority_name=object_name(tpm.read_public(authority.handle)))
                private = tpm.import_sealed(srk, sealed.public, sealed.duplicate, sealed.seed)
                handle = tpm.load(srk, private, sealed.public)
                try:
                    assert tpm.unseal(handle, tre.pcr_selection, salt=srk if salted else None,
                                      secret=authority) == secret
                finally:
                    tpm.flush(handle)
                    tre.release()
        finally:
            sniffer.close()
    assert (secret in sniffer.responses) is not salted
    # the authority's value: encrypted into TPM2_Create, then only HMACs (PolicySecret)
    assert authority.auth_value not in sniffer.requests + sniffer.responses


def test_manufacture_sends_the_access_credential_and_the_authority_value_encrypted() -> None:
    credential = AccessCredential("001020000000001", os.urandom(16), os.urandom(16), b"\x80\x00", 2e9)
    with Swtpm(shared_identity=True) as swtpm:
        sniffer = BusSniffer(swtpm)
        try:
            with Tpm.open(sniffer.tcti) as tpm:
                tre = TrustedEnvironment(tpm)
                tre.seal_access_credential(credential)
                assert tre.access_credential() == credential
                value = tre._authority_value
                tre.release()
        finally:
            sniffer.close()
    wire = sniffer.requests + sniffer.responses
    assert value and value not in wire
    assert credential.k not in wire and credential.opc not in wire


def test_re_manufacture_leaves_the_access_metadata_describing_the_new_credential_only() -> None:
    """Issue 7 §1: the NV copy of the PCID and lifetime follows the sealed credential: rewritten by a
    re-manufacture, gone with the credential a manufacture cut short evicted, and a copy that does
    not name the sealed object is not shown as its PCID."""
    first = AccessCredential("001020000000001", os.urandom(16), os.urandom(16), b"\x80\x00", 2e9)
    second = AccessCredential("001020000000002", os.urandom(16), os.urandom(16), b"\x80\x00", 2e9 + 5 * 86400)
    with Swtpm(shared_identity=True) as swtpm, Tpm.open(swtpm.tcti) as tpm:
        tre = TrustedEnvironment(tpm)
        tre.seal_access_credential(first)
        tre.release()
        assert describe_access_credential(tpm, now=2e9 - 100 * 86400).endswith(
            "PCID 001020000000001, 100 days left")
        stale = tpm.nv_read(ACCESS_METADATA_INDEX)
        again = TrustedEnvironment(tpm)           # the next run manufactures the same TPM again
        again.seal_access_credential(second)
        again.release()
        assert describe_access_credential(tpm, now=2e9).endswith("PCID 001020000000002, 5 days left")
        tpm.nv_write(ACCESS_METADATA_INDEX, stale)   # a copy of another object (a renewal cut short)
        line = describe_access_credential(tpm, now=2e9)
        assert "describes another sealed object" in line and "0010200000000" not in line
        TrustedEnvironment(tpm).make_unseal_authority()   # a manufacture cut short after its first part
        assert tpm.nv_read_public(ACCESS_METADATA_INDEX) is None
        assert ACCESS_CREDENTIAL_HANDLE not in tpm.list_persistent()
        assert "none at persistent" in describe_access_credential(tpm)


def test_a_renewal_the_tpm_will_not_copy_to_nv_is_still_installed_and_bench_check_says_so() -> None:
    """The sealed credential is the authoritative copy: a TPM refusing the NV write (here an index at
    0x01000A10 the platform made, that the owner can neither write nor delete) does not turn an
    installed renewal into a refused one; bench check says the NV copy is not the TRE's."""
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPMA_NV
    from tpm2_pytss.types import TPM2B_NV_PUBLIC, TPMS_NV_PUBLIC

    from mcim_hil.network.access_credential import seal_for_tre
    first = AccessCredential("001020000000001", os.urandom(16), os.urandom(16), b"\x80\x00", 2e9)
    renewed = AccessCredential("001020000000001", os.urandom(16), os.urandom(16), b"\x80\x00", 2e9 + 9 * 86400)
    with Swtpm(shared_identity=True) as swtpm, Tpm.open(swtpm.tcti) as tpm:
        tre = TrustedEnvironment(tpm)
        tre.seal_access_credential(first)
        tpm.nv_undefine(ACCESS_METADATA_INDEX)
        foreign = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC(
            nvIndex=ACCESS_METADATA_INDEX, nameAlg=TPM2_ALG.SHA256, authPolicy=os.urandom(32), dataSize=8,
            attributes=TPMA_NV.PPWRITE | TPMA_NV.PPREAD | TPMA_NV.OWNERREAD | TPMA_NV.PLATFORMCREATE
            | TPMA_NV.POLICY_DELETE))
        tpm._ctx.tr_close(tpm._ctx.nv_define_space(b"", foreign, ESYS_TR.PLATFORM))
        wrapped = seal_for_tre(renewed, tre.keys().storage_key.public.marshal(), tre.unseal_authority_public())
        assert tre.install_access_credential(wrapped.public, wrapped.duplicate, wrapped.seed,
                                             wrapped.encryption_key) == renewed
        tre.release()
        line = describe_access_credential(tpm, now=2e9)
        assert "\n" not in line and "0x01000a10 holds no PCID and lifetime record" in line and "days" not in line


# --- the TPM driver's handle rules and the SHO's sealing rules ---------------------------------------

def test_owner_persistent_handles_are_accepted_to_both_ends_and_the_ek_range_is_refused_to_both(
        tre: TrustedEnvironment) -> None:
    from mcim_hil.drivers.errors import SafetyRefused
    from mcim_hil.drivers.tpm import EK_PERSISTENT_FIRST, EK_PERSISTENT_LAST, OWNER_PERSISTENT_LAST, PERSISTENT_FIRST
    ak = tre.keys().ak
    for handle in (PERSISTENT_FIRST, OWNER_PERSISTENT_LAST, PERSISTENT_FIRST):  # the first one twice: evict is clean
        tre.tpm.persist(ak, handle)
        assert handle in tre.tpm.list_persistent()
        tre.tpm.evict(handle)
        assert handle not in tre.tpm.list_persistent()
    with pytest.raises(ValueError, match="is not an owner persistent handle"):
        tre.tpm.persist(ak, OWNER_PERSISTENT_LAST + 1)
    for handle in (EK_PERSISTENT_FIRST, EK_PERSISTENT_LAST):
        with pytest.raises(SafetyRefused, match="endorsement key range"):
            tre.tpm.evict(handle)


def test_the_sho_seals_1_to_128_bytes_to_a_restricted_decryption_parent_only() -> None:
    from tpm2_pytss.constants import TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC

    from mcim_hil.network.mcim import McimError, policy_digest

    def parent(attributes: int) -> bytes:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from tpm2_pytss.constants import TPM2_ALG
        from tpm2_pytss.types import TPMT_SYM_DEF_OBJECT, TPMU_SYM_KEY_BITS, TPMU_SYM_MODE
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        aes = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits=TPMU_SYM_KEY_BITS(aes=128),
                                  mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB))
        return TPM2B_PUBLIC.from_pem(pem, objectAttributes=attributes, symmetric=aes).marshal()

    good = parent(TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT)
    state = {MEASUREMENT_PCR: bytes(32)}
    authority = b"\x00\x0b" + bytes(32)
    assert seal_for_tpm(b"k" * 128, good, [MEASUREMENT_PCR], state, authority_name=authority).public
    with pytest.raises(McimError, match="1..128 bytes"):
        seal_for_tpm(b"", good, [MEASUREMENT_PCR], state, authority_name=authority)
    for attributes in (TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT, TPMA_OBJECT.DECRYPT):
        with pytest.raises(McimError, match="is not a restricted decryption key"):
            seal_for_tpm(b"k", parent(attributes), [MEASUREMENT_PCR], state, authority_name=authority)
    with pytest.raises(McimError, match="^PCR values must be SHA-256 digests$"):
        policy_digest([MEASUREMENT_PCR], {MEASUREMENT_PCR: bytes(20)}, authority)
    with pytest.raises(McimError, match="unseal authority"):   # a truncated name binds to nothing
        seal_for_tpm(b"k", good, [MEASUREMENT_PCR], state, authority_name=authority[:20])
