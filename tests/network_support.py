"""Test support for the network tests: the card side of the AKA written here from Milenage alone,
and a TPM-backed M2ME endpoint (swtpm through the TPM driver) for the end-to-end runs.

The USIM check below is this test's own (TS 33.102 6.3.3: MAC first, then SQN freshness,
AUTS with AMF 0000 on a synch failure), so the network's AuC is checked against an
independent card rather than against its own helper.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

from mcim_hil.aka.milenage import Milenage
from mcim_hil.drivers.tpm import Tpm
from mcim_hil.m2me.tre import create_unseal_authority
from mcim_hil.network import m2msimmobj
from mcim_hil.network.attestation import CredentialChallenge, Evidence, Measurement
from mcim_hil.network.bus import Bus
from mcim_hil.network.mcim import Mcim, open_mcim
from mcim_hil.network.messages import (
    BootstrapAck,
    BootstrapMessage,
    ConnectRequest,
    CredentialsDiscarded,
    DiscardAcknowledgement,
    DiscardAcknowledgementRelay,
    DownloadReceipt,
    EvidenceRequest,
    EvidenceResponse,
    M2MSIMMobjDownload,
    ManagementSessionAccept,
    ManagementSessionOpen,
    Message,
    PlatformCredentialRequest,
    PlatformCredentialResponse,
    ProvisioningStatus,
    ReprovisioningAck,
    ReprovisioningInstruction,
)
from mcim_hil.network.vno import Vno

SW_OK = b"\x90\x00"
SW_MAC_FAILURE = b"\x98\x62"  # TS 31.102 7.3


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


class SoftUsim:
    """A USIM's AUTHENTICATE in software: answers as the card would (data + SW)."""

    def __init__(self, k: bytes, opc: bytes, *, sqn_ms: int = 0, wrong_res: bool = False) -> None:
        self.milenage = Milenage(k, opc)
        self.sqn_ms = sqn_ms        # highest SQN accepted (no IND array: a plain counter card)
        self.wrong_res = wrong_res  # a card whose RES is off by one bit (RES != XRES)
        self.calls = 0

    def authenticate(self, rand: bytes, autn: bytes) -> bytes:
        self.calls += 1
        res, ck, ik, ak = self.milenage.f2345(rand)
        sqn = _xor(autn[:6], ak)
        amf = autn[6:8]
        if not hmac.compare_digest(self.milenage.f1(rand, sqn, amf), autn[8:]):
            return SW_MAC_FAILURE
        if int.from_bytes(sqn, "big") <= self.sqn_ms:
            sqn_ms = self.sqn_ms.to_bytes(6, "big")
            auts = _xor(sqn_ms, self.milenage.f5star(rand)) + self.milenage.f1star(rand, sqn_ms, b"\x00\x00")
            return b"\xdc" + bytes([len(auts)]) + auts + SW_OK
        self.sqn_ms = int.from_bytes(sqn, "big")
        if self.wrong_res:
            res = bytes([res[0] ^ 0x01]) + res[1:]
        return (b"\xdb" + bytes([len(res)]) + res + b"\x10" + ck + b"\x10" + ik + SW_OK)


# ---------------------------------------------------------------------------------------------
# A TPM-backed M2ME endpoint for the network's end-to-end tests (the lead's harness/m2me is the
# real device side; this is the smallest agent that answers the network's messages honestly).
# ---------------------------------------------------------------------------------------------
COMPONENTS: tuple[tuple[str, int, bytes], ...] = (
    ("bootloader", 8, b"m2me bootloader 2.0"),
    ("firmware", 9, b"m2me firmware 5.3"),
    ("agent", 10, b"m2me provisioning agent 1.1"),
)
PCRS = (8, 9, 10)


def reference_values(components: Sequence[tuple[str, int, bytes]] = COMPONENTS) -> dict[str, bytes]:
    return {name: hashlib.sha256(data).digest() for name, _, data in components}


@dataclass
class TpmM2me:
    """Measured boot into the TPM, EK/AK/storage key, and handlers for the network's messages."""

    bus: Bus
    tpm: Tpm
    platform_id: str
    pcid: str = ""
    usim: SoftUsim | None = None
    pfc: bytes = b""
    address: str = ""
    sho_address: str = ""
    dpf_address: str = ""
    sho_verify_key: bytes = b""
    session_id: str = ""
    mcim: Mcim | None = None
    pending: m2msimmobj.M2MSIMMobj | None = None
    received: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.measurements = [Measurement(name, pcr, self.tpm.measure(pcr, data)) for name, pcr, data in COMPONENTS]
        ek = self.tpm.ek()
        assert ek.certificate is not None
        self.ek_public = ek.public.marshal()
        self.ek_certificate = ek.certificate.public_bytes(serialization.Encoding.DER)
        self.tpm.flush(ek.handle)  # a raw swtpm has 3 object slots: AK, storage key, one more
        self.storage_key = self.tpm.create_storage_key()
        # the TRE's unseal authority (issue 9): the sealed MCIM's policy names it in PolicySecret
        self.authority = create_unseal_authority(self.tpm, self.storage_key)
        self.ak = self.tpm.create_ak()

    @property
    def ak_public(self) -> bytes:
        return self.ak.public.marshal()

    # -- the air and IP side, driven by the test ---------------------------------------------
    def attach(self, vno: Vno, imsi: str, usim: SoftUsim) -> str:
        result = vno.attach(imsi, usim.authenticate)
        assert result.accepted and result.ip_address, f"attach of {imsi} rejected: #{result.reject_cause}"
        if self.address:
            self.bus.unregister(self.address)
        self.address = result.ip_address
        self.bus.register(self.address, self.handle)
        return self.address

    def connect(self, icf: str) -> Message:
        return self.bus.request(ConnectRequest(sender=self.address, recipient=icf, pcid=self.pcid,
                                               ip_address=self.address))

    def open_session(self) -> ManagementSessionAccept:
        reply = self.bus.request(ManagementSessionOpen(sender=self.address, recipient=self.dpf_address,
                                                       pcid=self.pcid, m2me_address=self.address,
                                                       sho_address=self.sho_address,
                                                       bootstrap_token=getattr(self, "bootstrap_token", b"")))
        assert isinstance(reply, ManagementSessionAccept)
        self.session_id = reply.session_id
        return reply

    def provision(self) -> Mcim:
        """000 s19: import the wrapped key into the TRE, unseal it in the current PCR state, open the MCIM."""
        assert self.pending is not None
        sealed = self.pending.sealed
        private = self.tpm.import_sealed(self.storage_key, sealed.public, sealed.duplicate, sealed.seed,
                                         sealed.encryption_key)
        handle = self.tpm.load(self.storage_key, private, sealed.public)
        try:
            key = self.tpm.unseal(handle, sealed.pcr_selection, secret=self.authority)
        finally:
            self.tpm.flush(handle)
        self.mcim = open_mcim(self.pending.mcim_envelope, key, sealed.name)
        self.pending = None
        return self.mcim

    def report(self, success: bool, detail: str = "") -> Message:
        return self.bus.request(ProvisioningStatus(sender=self.address, recipient=self.dpf_address, pcid=self.pcid,
                                                   success=success, detail=detail))

    def discard_at(self, old_sho: str, imsi: str) -> DiscardAcknowledgement:
        reply = self.bus.request(CredentialsDiscarded(sender=self.address, recipient=old_sho, pcid=self.pcid,
                                                      imsi=imsi))
        assert isinstance(reply, DiscardAcknowledgement)
        return reply

    def relay_discard(self, ack: DiscardAcknowledgement) -> Message:
        return self.bus.request(DiscardAcknowledgementRelay(sender=self.address, recipient=self.dpf_address,
                                                            pcid=self.pcid, imsi=ack.imsi,
                                                            acknowledged=ack.acknowledged,
                                                            old_sho_address=ack.sender))

    # -- what the network sends it ----------------------------------------------------------------
    def handle(self, msg: Message) -> Message:
        self.received.append(msg.kind)
        if isinstance(msg, BootstrapMessage):
            self.sho_address, self.dpf_address = msg.sho_address, msg.dpf_address
            self.sho_verify_key = msg.sho_verify_key
            self.bootstrap_token = msg.bootstrap_token   # the DPF opens a session only with it
            return BootstrapAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=True)
        if isinstance(msg, PlatformCredentialRequest):
            return PlatformCredentialResponse(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                              platform_id=self.platform_id, pfc=self.pfc,
                                              ek_certificate=self.ek_certificate, ek_public=self.ek_public,
                                              ak_public=self.ak_public)
        if isinstance(msg, EvidenceRequest):
            return EvidenceResponse(sender=self.address, recipient=msg.sender, pcid=msg.pcid,
                                    evidence=self._evidence(msg))
        if isinstance(msg, M2MSIMMobjDownload):
            try:  # checked whole before anything is installed
                self.pending = m2msimmobj.parse(msg.m2msimmobj,
                                                serialization.load_der_public_key(self.sho_verify_key))
            except m2msimmobj.M2MSIMMobjError as exc:
                return DownloadReceipt(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=False,
                                       reason=str(exc))
            return DownloadReceipt(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=True)
        if isinstance(msg, ReprovisioningInstruction):
            self.sho_address, self.sho_verify_key = msg.new_sho_address, msg.new_sho_verify_key
            return ReprovisioningAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=True)
        raise AssertionError(f"the test M2ME does not expect {msg.kind}")

    def _evidence(self, msg: EvidenceRequest) -> Evidence:
        proof = b""  # no challenge: the PVA already holds this AK's binding to the EK
        if msg.credential_challenge:
            challenge = CredentialChallenge.from_bytes(msg.credential_challenge)
            ek = self.tpm.ek()
            try:
                proof = self.tpm.activate_credential(self.ak, ek, challenge.credential_blob,
                                                     challenge.encrypted_secret)
            finally:
                self.tpm.flush(ek.handle)
        quote = self.tpm.quote(self.ak, msg.nonce, msg.pcr_selection)
        certification = self.tpm.certify(self.storage_key, self.ak, msg.nonce)
        authority = self.tpm.certify(self.authority, self.ak, msg.nonce)
        return Evidence(platform_id=self.platform_id, ek_certificate=self.ek_certificate, ek_public=self.ek_public,
                        ak_public=self.ak_public, activation_proof=proof, quote_attest=quote.attest,
                        quote_signature=quote.signature, pcr_values=dict(quote.pcr_values),
                        measurements=list(self.measurements), pfc=self.pfc,
                        storage_key_public=self.storage_key.public.marshal(),
                        certify_attest=certification.attest, certify_signature=certification.signature,
                        authority_public=self.tpm.read_public(self.authority.handle).marshal(),
                        authority_certify_attest=authority.attest, authority_certify_signature=authority.signature)

