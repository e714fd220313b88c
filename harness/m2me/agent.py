"""The M2ME agent: the software an M2M equipment runs for TR 33.812 provisioning.

It is the only code that uses the drivers for a procedure: it attaches through its air
interface (the AKA runs on the UICC), answers the network's messages (bootstrap, platform
credential, evidence, M2MSIMMobj download), installs the MCIM into the TRE and onto the UICC,
and reports the status to the DPF. Its address on the network is the IP the VNO gave it.
"""

from __future__ import annotations

import dataclasses
import hmac
import time
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcim_hil.drivers.errors import DeviceError, TpmPowerLost
from mcim_hil.drivers.sja2 import Sja2
from mcim_hil.drivers.uicc_files import MILENAGE_C_DEFAULT, MILENAGE_R_DEFAULT
from mcim_hil.drivers.uicc import Uicc
from mcim_hil.network import m2msimmobj
from mcim_hil.network.attestation import CredentialChallenge, Evidence, Measurement, tpm_name
from mcim_hil.network.bus import Bus, MessageLost, Refused, Retransmissions
from mcim_hil.network.mcim import Mcim, McimError, open_mcim
from mcim_hil.network.messages import (
    CAUSE_IMSI_UNKNOWN,
    AccessCredentialDelivery,
    AccessCredentialInstalled,
    AccessCredentialReplacementAccept,
    AccessCredentialReplacementOffer,
    AccessCredentialRenewalRequest,
    BootstrapAck,
    BootstrapMessage,
    ConnectAccept,
    ConnectRequest,
    CredentialsDiscarded,
    DiscardAcknowledgement,
    DiscardAcknowledgementRelay,
    DiscardConfirmationAck,
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
    ProvisioningStatusAck,
    ReprovisioningAck,
    ReprovisioningInstruction,
    SealingParentRequest,
    SealingParentResponse,
)

from .air import AirInterface, Attachment
from .tre import ACCESS_CREDENTIAL_HANDLE, PREPROVISIONED_HANDLE, Component, TreError, TrustedEnvironment
from .update import FirmwareUpdateOffer, UpdateAgent


# renew the initial-access credential during a change of SHO when it has less than this left
# (5.1.3.8.4.3, last paragraph: "about to expire")
ACCESS_RENEWAL_MARGIN_S = 30 * 86400.0

# 004 c4 s8: the old MCIM's TPM object evicted again after a power loss, at most this many times
EVICT_ATTEMPTS = 3
EVICT_BACKOFF_S = 0.05


class ProvisioningError(Exception):
    """The M2ME could not install the MCIM; nothing was installed (TRE and card as before)."""


@dataclass(frozen=True)
class InstalledMcim:
    """What the M2ME reports about its installed MCIM: no key material."""

    imsi: str
    home_plmn: str
    tre_handle: int


@dataclass(frozen=True)
class ShoChange:
    """A change of SHO in progress (004 c4, 5.1.3.8.4.2): whom the M2ME leaves, for whom."""

    old_sho_address: str
    old_imsi: str
    new_sho_address: str
    new_sho_verify_key: bytes = b""
    pristine: bool = False      # 5.1.3.8.4.3: back to the pristine state, then the initial provisioning


@dataclass(frozen=True)
class DiscardedCredentials:
    """What the M2ME discarded of the old SHO (004 c4 s8): names and handles, no key material."""

    imsi: str
    home_plmn: str
    tre_handle: int
    tre_object_evicted: bool    # the sealed MCIM object was in the TPM and is gone
    card: RestoredAccess        # the card's old IMSI/K/OPc overwritten with the PCID credential
    old_sho_acknowledged: bool | None = None   # pristine s3: told the old SHO (None: nothing to tell)


@dataclass(frozen=True)
class RestoredAccess:
    """The initial-access credential put back on the card from the TRE: no key material."""

    pcid: str
    tre_handle: int
    lifetime_left_s: float
    keys_read_back: bool        # the card's K/OPc read back (ADM1) equal the TRE's


@dataclass(frozen=True)
class RenewedAccess:
    """The initial-access credential renewed into the TRE: no key material."""

    pcid: str
    tre_handle: int
    old_lifetime_left_s: float
    lifetime_left_s: float


@dataclass(frozen=True)
class Preprovisioned:
    """A second SHO's MCIM kept in the TRE, under that SHO's own sealing parent, until a change
    switches the card to it (5.1.3.8.4.2 variant). The envelope is ciphertext: its key is sealed."""

    sho_address: str
    imsi: str
    home_plmn: str
    tre_handle: int
    envelope: bytes = dataclasses.field(repr=False)
    binding: bytes = dataclasses.field(repr=False)   # the sealed key object's name
    pcrs: tuple[int, ...] = ()


@dataclass(frozen=True)
class Fallback:
    """An install failed: what the M2ME fell back to (or why it could not)."""

    cause: str
    restored: RestoredAccess | None
    error: str | None = None
    restarted: bool = False      # the TPM lost power: the M2ME restarted (keys reloaded, PCRs re-measured)


def _power_lost(error: BaseException | None) -> bool:
    """Whether the TPM lost power under this failure (anywhere in its cause chain)."""
    while error is not None:
        if isinstance(error, TpmPowerLost):
            return True
        error = error.__cause__ or error.__context__
    return False


class M2me:
    def __init__(self, *, bus: Bus, tre: TrustedEnvironment, uicc: Uicc, air: AirInterface,
                 platform_id: str, adm1: Callable[[], bytes]) -> None:
        self.bus = bus
        self.tre = tre
        self.uicc = uicc
        self.air = air
        self.platform_id = platform_id
        self._adm1 = adm1                  # read only when the card is written
        self.pcid = ""
        self.pfc = b""                     # DER, from the equipment supplier
        self.address: str | None = None    # IP address from the VNO
        self.attached_as: str | None = None  # the identity the M2ME attached with
        self.bootstrap: BootstrapMessage | None = None
        self.session_id: str | None = None
        self.pending: m2msimmobj.M2MSIMMobj | None = None
        self.installed: InstalledMcim | None = None
        self.measurements: list[Measurement] = []
        self._components: list[Component] = []   # measured at the last start, again after a power loss
        self.received: list[str] = []
        self.change: ShoChange | None = None                 # 004 c4: a change of SHO in progress
        self.discarded: DiscardedCredentials | None = None   # 004 c4 s8
        self.discard_ack: DiscardAcknowledgement | None = None  # 004 c4 s10
        self.fallback: Fallback | None = None                # an install failed: back to the PCID
        self.subscriber_key = b""          # DER SPKI of the M2ME subscriber, registered at manufacture
        self.clock: Callable[[], float] = time.time   # tests move it
        self.access_renewal_margin_s = ACCESS_RENEWAL_MARGIN_S
        self.access_renewed: RenewedAccess | None = None   # the latest network-initiated replacement
        self._access_offer: str | None = None              # the DPF whose replacement offer was accepted
        self.sealing_parents: dict[bytes, str] = {}        # parent name -> the SHO it was certified for
        self.preprovisioned: Preprovisioned | None = None
        self._instruction_nonces: set[bytes] = set()
        self._retransmissions = Retransmissions(bus, keep=8)   # answers to the subscriber's instructions
        self.power_losses = 0        # TPM power losses the M2ME restarted after and went on
        self.updates = UpdateAgent(self)                   # remote SW/FW updates (5.1.3.6.8), update.py

    # -- start ------------------------------------------------------------------------------

    def boot(self, components: list[Component]) -> list[Measurement]:
        """The M2ME's start: its components are measured into the TRE."""
        self._components = list(components)
        log = self.tre.boot(components)
        self.measurements = [Measurement(m.name, m.pcr, m.digest) for m in log]
        return self.measurements

    def identity_on_card(self) -> str:
        """The identity the UICC presents (the PCID while pristine, the MCIM's IMSI after)."""
        self.uicc.select_adf_usim()
        return self.uicc.read_imsi()

    # -- 000 s1-s6: attach ------------------------------------------------------------------

    def attach(self, imsi: str | None = None) -> Attachment:
        imsi = imsi or self.identity_on_card()
        result = self.air.attach(imsi)
        if result.accepted:
            self.attached_as = imsi
        if result.accepted and result.ip_address:
            if self.address and self.bus.is_registered(self.address):
                self.bus.unregister(self.address)
            self.address = result.ip_address
            self.bus.register(self.address, self.handle)
        return result

    def attach_new_mcim(self, imsi: str | None = None) -> Attachment:
        """After a change of SHO (004 c4): attach with the new MCIM on the card. A network that
        does not know its IMSI (cause #2: the new SHO never activated it, its status report never
        arrived, s13) will never serve it: the M2ME gives the new MCIM up, falls back to the
        initial-access credential (``self.fallback``) and attaches with the PCID instead. Any other
        reject (congestion, a failure of the network) may pass: the MCIM is kept."""
        imsi = imsi or self.identity_on_card()
        result = self.attach(imsi)
        new = self.installed
        if (result.accepted or result.reject_cause != CAUSE_IMSI_UNKNOWN or self.discarded is None
                or new is None or imsi != new.imsi):
            return result
        self.installed = None
        error = self._install_failed(f"the network does not know the new MCIM's IMSI {imsi} (cause #2 IMSI "
                                     f"unknown): the new SHO never activated it")
        if self.fallback is None or self.fallback.restored is None:
            raise error
        return self.attach(self.pcid)

    def detach(self) -> None:
        if self.attached_as is not None:
            self.air.detach(self.attached_as)
            self.attached_as = None
        if self.address and self.bus.is_registered(self.address):
            self.bus.unregister(self.address)
        self.address = None

    # -- 000 s7, s11, s20: what the M2ME sends -------------------------------------------------

    def connect_to_ro(self, icf_address: str) -> ConnectAccept:
        """000 s7: reach the RO over the IP connectivity the VNO provides."""
        reply = self.bus.request(ConnectRequest(sender=self._address(), recipient=icf_address, pcid=self.pcid,
                                                ip_address=self._address()))
        if not isinstance(reply, ConnectAccept):
            raise Refused(icf_address, "connect", getattr(reply, "reason", None), reply)
        return reply

    def open_management_session(self) -> ManagementSessionAccept:
        """000 s11: after the bootstrap, open the management session with the DPF."""
        boot = self._bootstrap()
        reply = self.bus.request(ManagementSessionOpen(sender=self._address(), recipient=boot.dpf_address,
                                                       pcid=self.pcid, m2me_address=self._address(),
                                                       sho_address=boot.sho_address,
                                                       bootstrap_token=boot.bootstrap_token))
        if not isinstance(reply, ManagementSessionAccept):
            raise Refused(boot.dpf_address, "management session", getattr(reply, "reason", None), reply)
        self.session_id = reply.session_id
        return reply

    def report_status(self, success: bool, detail: str = "") -> ProvisioningStatusAck:
        """000 s20 / 004 c4 s12: the provisioning status, to the DPF. In a change of SHO, a success
        the DPF never took means the new SHO never activates the new MCIM: the M2ME gives it up and
        falls back to its initial-access credential rather than keep one no network serves."""
        boot = self._bootstrap()
        try:
            reply = self.bus.request(ProvisioningStatus(sender=self._address(), recipient=boot.dpf_address,
                                                        pcid=self.pcid, success=success, detail=detail))
        except (MessageLost, Refused) as exc:
            if success and self.discarded is not None and self.installed is not None:
                self.installed = None
                raise self._install_failed(f"the DPF did not take the success report ({exc}): the new "
                                           f"MCIM would never be activated") from exc
            raise
        if not isinstance(reply, ProvisioningStatusAck):
            raise Refused(boot.dpf_address, "status report", getattr(reply, "reason", None), reply)
        return reply

    # -- 000 s19: install ----------------------------------------------------------------------

    def install_mcim(self) -> InstalledMcim:
        """Decrypt the M2MSIMMobj with the TRE and provision the MCIM: the sealed key object is
        imported and persisted in the TPM, the MCIM personalises the UICC. All or nothing: if the
        card cannot be written, the TRE object is evicted again."""
        if self.pending is None:
            raise ProvisioningError("no M2MSIMMobj was downloaded")
        obj, self.pending = self.pending, None
        sealed = obj.sealed
        tre_had_mcim = self.tre.has_mcim()
        try:
            key = self.tre.install_sealed(sealed.public, sealed.duplicate, sealed.seed, sealed.encryption_key,
                                          sealed.pcr_selection)
        except DeviceError as exc:
            raise self._install_failed(f"TRE refused the sealed MCIM: {exc}", exc) from exc
        try:
            mcim = open_mcim(obj.mcim_envelope, key, sealed.name)
            self._personalise_card(mcim)
        except (McimError, DeviceError) as exc:
            if not tre_had_mcim:
                self.tre.discard_mcim()
            raise self._install_failed(f"MCIM not installed: {exc}", exc) from exc
        self.installed = InstalledMcim(mcim.imsi, mcim.home_plmn, self.tre.mcim_handle)
        return self.installed

    def _install_failed(self, cause: str, error: BaseException | None = None) -> ProvisioningError:
        """Never left without a credential: once the old SHO's MCIM is discarded (a change of SHO),
        a failed install falls back to the initial-access credential, from the TRE to the card.
        After a power loss the M2ME restarts first: the TPM's transient keys and PCRs are gone."""
        if self.discarded is None:
            return ProvisioningError(cause)
        restarted = _power_lost(error)
        try:
            if restarted:
                self.restart_after_power_loss()
            if self.tre.has_mcim():
                self.tre.discard_mcim()   # half an install is no credential
            self.fallback = Fallback(cause, self.restore_access_credential(), restarted=restarted)
        except (DeviceError, TreError, ProvisioningError) as exc:
            self.fallback = Fallback(cause, None, f"{exc}; {self.device_state()}", restarted=restarted)
            return ProvisioningError(f"{cause}; falling back to the initial-access credential FAILED too: "
                                     f"{self.fallback.error}")
        again = "the M2ME restarted after the power loss; " if restarted else ""
        return ProvisioningError(f"{cause}; {again}fell back to the initial-access credential "
                                 f"(PCID {self.fallback.restored.pcid}, from TRE 0x{ACCESS_CREDENTIAL_HANDLE:08x})")

    def restart_after_power_loss(self) -> None:
        """What the M2ME does when its power comes back: the TRE reloads its keys (the TPM lost
        them) and the components are measured again (the PCRs were reset). The host's TPM
        connection is opened anew: the one the power cut broke is unusable."""
        self.tre.tpm.reopen()
        self.tre.forget_keys()
        self.boot(self._components)

    def device_state(self) -> str:
        """What the TPM and the card hold now, read from them (for a failure that leaves the M2ME
        without a working credential): the persistent objects, the identity the card presents."""
        try:
            held = self.tre.tpm.list_persistent()
            tpm = (f"TPM: MCIM object {'present' if self.tre.mcim_handle in held else 'absent'}, initial-access "
                   f"credential {'present' if ACCESS_CREDENTIAL_HANDLE in held else 'ABSENT'} "
                   f"(0x{ACCESS_CREDENTIAL_HANDLE:08x})")
        except DeviceError as exc:
            tpm = f"TPM: unreadable ({exc.__class__.__name__})"
        try:
            imsi = self.identity_on_card()
            card = f"card {self.uicc.name}: presents IMSI {imsi}" + (" (the PCID)" if imsi == self.pcid else "")
            keys = Sja2(self.uicc).read_keys(adm1=self._adm1()).usim
            credential = self.tre.access_credential()
            same = hmac.compare_digest(keys.k, credential.k) and hmac.compare_digest(keys.op_opc, credential.opc)
            card += (", K/OPc read back equal to the initial-access credential's" if same else
                     ", K/OPc read back NOT the initial-access credential's: it cannot attach")
        except (DeviceError, TreError) as exc:
            card = (f"card {self.uicc.name}: " + (card.split(": ", 1)[1] + ", " if "card" in locals() else "")
                    + f"key files unreadable ({exc.__class__.__name__})")
        return f"state: {tpm}; {card}"

    def restore_access_credential(self) -> RestoredAccess:
        """The initial-access credential, unsealed in the TRE, personalises the card (IMSI = PCID,
        K/OPc, the default Milenage constants, SQN reset); the key files are read back (ADM1) and
        compared in the agent, never shown. The TRE keeps its sealed copy."""
        credential = self.tre.access_credential()
        adm1 = self._adm1()
        card = Sja2(self.uicc)
        card.program(credential.pcid, credential.k, credential.opc, adm1=adm1,
                     milenage_r=tuple(MILENAGE_R_DEFAULT), milenage_c=tuple(MILENAGE_C_DEFAULT),
                     mnc_len=2, reset_sqn=True)
        keys = card.read_keys(adm1=adm1).usim
        same = hmac.compare_digest(keys.k, credential.k) and hmac.compare_digest(keys.op_opc, credential.opc)
        if not same:
            raise ProvisioningError(f"{self.uicc.name}: the card's key files do not read back as the "
                                    f"initial-access credential written to them")
        self.installed = None
        return RestoredAccess(credential.pcid, ACCESS_CREDENTIAL_HANDLE, credential.lifetime_left(self.clock()), True)

    def _personalise_card(self, mcim: Mcim) -> None:
        """The SJA2 profile writes IMSI, K, OPc (Milenage constants as given), SQN reset."""
        Sja2(self.uicc).program(mcim.imsi, mcim.k, mcim.opc, adm1=self._adm1(),
                                milenage_r=tuple(mcim.r), milenage_c=tuple(mcim.c),
                                mnc_len=len(mcim.mnc), reset_sqn=True)

    # -- what the network sends -----------------------------------------------------------------

    def handle(self, msg: Message) -> Message:
        self.received.append(msg.kind)
        if isinstance(msg, BootstrapMessage):
            return self._on_bootstrap(msg)
        if isinstance(msg, PlatformCredentialRequest):
            keys = self.tre.keys()
            ek = self.tre.endorsement_key()
            return PlatformCredentialResponse(sender=self._address(), recipient=msg.sender, pcid=msg.pcid,
                                              platform_id=self.platform_id, pfc=self.pfc,
                                              ek_certificate=ek.certificate or b"", ek_public=ek.public,
                                              ak_public=keys.ak.public.marshal())
        if isinstance(msg, EvidenceRequest):
            return EvidenceResponse(sender=self._address(), recipient=msg.sender, pcid=msg.pcid,
                                    evidence=self.evidence(msg.nonce, list(msg.pcr_selection),
                                                           msg.credential_challenge))
        if isinstance(msg, M2MSIMMobjDownload):
            return self._on_download(msg)
        if isinstance(msg, ReprovisioningInstruction):
            return self._on_reprovisioning(msg)
        if isinstance(msg, SealingParentRequest):
            return self._on_sealing_parent(msg)
        if isinstance(msg, AccessCredentialReplacementOffer):
            return self._on_access_offer(msg)
        if isinstance(msg, AccessCredentialDelivery):
            return self._on_access_delivery(msg)
        if isinstance(msg, FirmwareUpdateOffer):
            return self.updates.on_offer(msg)
        raise Refused(self._address(), msg.kind, "the M2ME agent does not handle this message")

    def _on_bootstrap(self, msg: BootstrapMessage) -> BootstrapAck:
        """000 s11: perform the bootstrap: keep the DPF and SHO addresses and the SHO's key."""
        try:
            serialization.load_der_public_key(msg.sho_verify_key)
        except ValueError:
            return BootstrapAck(sender=self._address(), recipient=msg.sender, pcid=msg.pcid, accepted=False,
                                reason="the SHO verification key is not a public key")
        change = self.change
        if change is not None and change.pristine and (msg.sho_address != change.new_sho_address
                                                       or msg.sho_verify_key != change.new_sho_verify_key):
            # 004 c4p s8: the DRF must lead to the SHO the subscriber instructed, with its key
            return BootstrapAck(sender=self._address(), recipient=msg.sender, pcid=msg.pcid, accepted=False,
                                reason=f"the DRF names SHO {msg.sho_address}; the subscriber instructed "
                                       f"{change.new_sho_address}")
        self.bootstrap = msg
        return BootstrapAck(sender=self._address(), recipient=msg.sender, pcid=msg.pcid, accepted=True)

    def _on_download(self, msg: M2MSIMMobjDownload) -> DownloadReceipt:
        """000 s18: the download is atomic: the whole object is checked before anything is kept."""
        try:
            key = serialization.load_der_public_key(self._bootstrap().sho_verify_key)
            self.pending = m2msimmobj.parse(msg.m2msimmobj, key)
        except m2msimmobj.M2MSIMMobjError as exc:
            self.pending = None
            return DownloadReceipt(sender=self._address(), recipient=msg.sender, pcid=msg.pcid, accepted=False,
                                   reason=str(exc))
        return DownloadReceipt(sender=self._address(), recipient=msg.sender, pcid=msg.pcid, accepted=True)

    def evidence(self, nonce: bytes, pcrs: list[int], credential_challenge: bytes) -> Evidence:
        """000 s13: the platform's evidence for the PVA, from the TRE."""
        proof = b""  # no challenge: the PVA already holds this AK's binding to the EK
        if credential_challenge:
            challenge = CredentialChallenge.from_bytes(credential_challenge)
            proof = self.tre.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
        ek = self.tre.endorsement_key()
        keys = self.tre.keys()
        quote = self.tre.quote(nonce, pcrs)
        certify_attest = certify_signature = b""   # the PVA also holds this AK's certification of it
        authority_attest = authority_signature = b""
        if credential_challenge:
            certification = self.tre.certify_storage_key(nonce)
            certify_attest, certify_signature = certification.attest, certification.signature
            certification = self.tre.certify_unseal_authority(nonce)
            authority_attest, authority_signature = certification.attest, certification.signature
        return Evidence(platform_id=self.platform_id, ek_certificate=ek.certificate or b"", ek_public=ek.public,
                        ak_public=keys.ak.public.marshal(), activation_proof=proof,
                        quote_attest=quote.attest, quote_signature=quote.signature,
                        pcr_values=dict(quote.pcr_values), measurements=list(self.measurements), pfc=self.pfc,
                        storage_key_public=keys.storage_key.public.marshal(),
                        certify_attest=certify_attest, certify_signature=certify_signature,
                        authority_public=self.tre.unseal_authority_public(),
                        authority_certify_attest=authority_attest, authority_certify_signature=authority_signature)

    # -- 004 c4 (5.1.3.8.4.2): change of SHO over the old SHO's connectivity -------------------------

    def _on_reprovisioning(self, msg: ReprovisioningInstruction) -> ReprovisioningAck:
        """004 c4 s2: the subscriber instructs a re-provisioning from a new SHO. The M2ME keeps its
        old MCIM (its connectivity) until the new one is downloaded whole (s7-s8). A retransmission
        of the last instruction (the same message in the same bus exchange: the subscriber never got
        the answer) gets the first answer again; the same instruction sent anew is a replay."""
        return self._retransmissions.answer(msg, self._answer_reprovisioning)

    def _answer_reprovisioning(self, msg: ReprovisioningInstruction) -> ReprovisioningAck:
        def answer(accepted: bool, reason: str | None = None) -> ReprovisioningAck:
            return ReprovisioningAck(sender=self._address(), recipient=msg.sender, pcid=msg.pcid,
                                     accepted=accepted, reason=reason)

        refused = self._unauthentic(msg)
        if refused:
            return answer(False, refused)
        if msg.pristine:
            return self._on_pristine_instruction(msg, answer)
        if self.installed is None or self.bootstrap is None:
            return answer(False, "no MCIM installed: there is no old SHO to re-provision from")
        if msg.new_sho_address == self.bootstrap.sho_address:
            return answer(False, f"{msg.new_sho_address} is already this M2ME's SHO")
        try:
            serialization.load_der_public_key(msg.new_sho_verify_key)
        except ValueError:
            return answer(False, "the new SHO verification key is not a public key")
        self.change = ShoChange(self.bootstrap.sho_address, self.installed.imsi, msg.new_sho_address)
        self.discarded, self.discard_ack, self.pending, self.fallback = None, None, None, None
        # from now on the management session names the new SHO, and only an M2MSIMMobj signed by
        # the new SHO is accepted (the DPF stays the RO's)
        self.bootstrap = dataclasses.replace(self.bootstrap, sho_address=msg.new_sho_address,
                                             sho_verify_key=msg.new_sho_verify_key)
        return answer(True)

    def _unauthentic(self, msg: ReprovisioningInstruction) -> str | None:
        """Why an instruction is not the registered subscriber's, fresh and for this M2ME; None if it is."""
        if not self.subscriber_key:
            return "no subscriber key was registered at manufacture"
        if not msg.signature:
            return "unsigned instruction"
        if msg.pcid != self.pcid:
            return f"instruction for another M2ME (PCID {msg.pcid})"
        if len(msg.nonce) < 16:
            return "instruction without a fresh nonce"
        key = serialization.load_der_public_key(self.subscriber_key)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        try:
            key.verify(msg.signature, msg.signed_bytes(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "not signed by the subscriber registered at manufacture"
        if msg.nonce in self._instruction_nonces:
            return "replayed instruction (nonce already used)"
        self._instruction_nonces.add(msg.nonce)
        return None

    # -- the initial-access credential's lifetime (5.1.3.8.4.3, last paragraphs) ------------------

    def access_lifetime_left(self) -> float:
        return self.tre.access_credential().lifetime_left(self.clock())

    def renew_access_credential_if_due(self) -> RenewedAccess | None:
        """During a change of SHO: with less than the margin left, ask the RO's DPF for a new
        initial-access credential (the CCIF issues it) and install it into the TRE."""
        if self.access_lifetime_left() > self.access_renewal_margin_s:
            return None
        return self.renew_access_credential()

    def _on_access_offer(self, msg: AccessCredentialReplacementOffer) -> AccessCredentialReplacementAccept:
        """Network-initiated replacement: only from the DPF the DRF bootstrapped this M2ME to."""
        def answer(accepted: bool, reason: str | None = None, key: bytes = b"",
                   authority: bytes = b"") -> AccessCredentialReplacementAccept:
            return AccessCredentialReplacementAccept(sender=self._address(), recipient=msg.sender, pcid=msg.pcid,
                                                     accepted=accepted, storage_key_public=key,
                                                     authority_public=authority, reason=reason)
        if self.bootstrap is None or msg.sender != self.bootstrap.dpf_address:
            return answer(False, f"{msg.sender} is not this M2ME's DPF")
        if msg.pcid != self.pcid:
            return answer(False, f"offer for another M2ME (PCID {msg.pcid})")
        self._access_offer = msg.sender
        return answer(True, key=self.tre.keys().storage_key.public.marshal(),
                      authority=self.tre.unseal_authority_public())

    def _on_access_delivery(self, msg: AccessCredentialDelivery) -> AccessCredentialInstalled:
        def answer(success: bool, detail: str) -> AccessCredentialInstalled:
            return AccessCredentialInstalled(sender=self._address(), recipient=msg.sender, pcid=msg.pcid,
                                             success=success, detail=detail)
        if self._access_offer != msg.sender:
            return answer(False, "no replacement was offered by this DPF")
        self._access_offer = None
        old = self.access_lifetime_left()
        try:
            credential = self.tre.install_access_credential(msg.public, msg.duplicate, msg.seed, msg.encryption_key)
        except (DeviceError, TreError) as exc:
            return answer(False, f"the TRE refused the new initial-access credential: {exc}")
        if credential.pcid != self.pcid:
            return answer(False, f"the new credential is for PCID {credential.pcid}")
        self.access_renewed = RenewedAccess(self.pcid, ACCESS_CREDENTIAL_HANDLE, old,
                                            credential.lifetime_left(self.clock()))
        return answer(True, f"installed at TRE 0x{ACCESS_CREDENTIAL_HANDLE:08x}")

    # -- 5.1.3.8.4.2 variant: MCIMs of two SHOs pre-provisioned, each under its SHO's own parent ----

    def _on_sealing_parent(self, msg: SealingParentRequest) -> SealingParentResponse:
        public, attest, signature = self.tre.certify_sealing_parent(msg.sender.encode(), msg.nonce)
        self.sealing_parents[tpm_name(public)] = msg.sender
        return SealingParentResponse(sender=self._address(), recipient=msg.sender, pcid=msg.pcid,
                                     storage_key_public=public, certify_attest=attest, certify_signature=signature)

    def preprovision_mcim(self) -> Preprovisioned:
        """Keep the downloaded MCIM of another SHO in the TRE without touching the card: its key
        object imports only under the sealing parent certified for the SHO that signed it."""
        if self.pending is None:
            raise ProvisioningError("no M2MSIMMobj was downloaded")
        obj, self.pending = self.pending, None
        sealed = obj.sealed
        sho = self.sealing_parents.get(sealed.storage_key_name)
        if sho is None or sho != self._bootstrap().sho_address:
            raise ProvisioningError("the M2MSIMMobj is not sealed to the sealing parent of the SHO that signed it")
        try:
            key = self.tre.install_sealed_under(sho.encode(), PREPROVISIONED_HANDLE, sealed.public, sealed.duplicate,
                                                sealed.seed, sealed.encryption_key, sealed.pcr_selection)
            mcim = open_mcim(obj.mcim_envelope, key, sealed.name)   # checked now, written to the card later
        except (DeviceError, McimError) as exc:
            if PREPROVISIONED_HANDLE in self.tre.tpm.list_persistent():
                self.tre.tpm.evict(PREPROVISIONED_HANDLE)
            raise ProvisioningError(f"TRE refused the pre-provisioned MCIM: {exc}") from exc
        self.preprovisioned = Preprovisioned(sho, mcim.imsi, mcim.home_plmn, PREPROVISIONED_HANDLE,
                                             obj.mcim_envelope, sealed.name, tuple(sealed.pcr_selection))
        return self.preprovisioned

    def switch_to_preprovisioned(self) -> InstalledMcim:
        """The change (s12 of the variant): unseal the new SHO's key under its own parent, open its
        MCIM and personalise the card with it."""
        pre = self.preprovisioned
        if pre is None:
            raise ProvisioningError("no MCIM was pre-provisioned")
        try:
            key = self.tre.unseal_under(pre.sho_address.encode(), pre.tre_handle, pre.pcrs)
            mcim = open_mcim(pre.envelope, key, pre.binding)
            self._personalise_card(mcim)
        except (DeviceError, McimError) as exc:
            raise self._install_failed(f"switching to the pre-provisioned MCIM failed: {exc}") from exc
        self.preprovisioned = None
        self.installed = InstalledMcim(mcim.imsi, mcim.home_plmn, pre.tre_handle)
        return self.installed

    def renew_access_credential(self) -> RenewedAccess:
        boot = self._bootstrap()
        old = self.access_lifetime_left()
        srk = self.tre.keys().storage_key
        reply = self.bus.request(AccessCredentialRenewalRequest(sender=self._address(), recipient=boot.dpf_address,
                                                                pcid=self.pcid, storage_key_public=srk.public.marshal(),
                                                                authority_public=self.tre.unseal_authority_public()))
        if not isinstance(reply, AccessCredentialDelivery) or reply.pcid != self.pcid:
            raise Refused(boot.dpf_address, "access credential renewal", getattr(reply, "reason", None), reply)
        try:
            credential = self.tre.install_access_credential(reply.public, reply.duplicate, reply.seed,
                                                            reply.encryption_key)
        except (DeviceError, TreError) as exc:
            raise ProvisioningError(f"the TRE refused the renewed initial-access credential: {exc}") from exc
        if credential.pcid != self.pcid:
            raise ProvisioningError(f"the renewed credential is for PCID {credential.pcid}, not {self.pcid}")
        return RenewedAccess(self.pcid, ACCESS_CREDENTIAL_HANDLE, old, credential.lifetime_left(self.clock()))

    # -- 004 c4p (5.1.3.8.4.3): back to the pristine state ------------------------------------------

    def _on_pristine_instruction(self, msg: ReprovisioningInstruction,
                                 answer: Callable[..., ReprovisioningAck]) -> ReprovisioningAck:
        """004 c4p s2: accepted with an MCIM installed, or already back on the PCID credential (a
        change of SHO whose install failed). The target SHO is kept: the DRF must lead to it (s8)."""
        try:
            serialization.load_der_public_key(msg.new_sho_verify_key)
        except ValueError:
            return answer(False, "the new SHO verification key is not a public key")
        if self.installed is not None and self.bootstrap is not None:
            old_sho, old_imsi = self.bootstrap.sho_address, self.installed.imsi
        elif self.change is not None and self.discarded is not None:
            old_sho, old_imsi = self.change.old_sho_address, self.change.old_imsi   # already discarded
        else:
            return answer(False, "no MCIM installed and no earlier change: the M2ME is pristine already")
        self.change = ShoChange(old_sho, old_imsi, msg.new_sho_address, msg.new_sho_verify_key, pristine=True)
        self.pending, self.fallback = None, None
        return answer(True)

    def return_to_pristine(self) -> DiscardedCredentials:
        """004 c4p s3: remove the old SHO's MCIM (TPM object evicted, the card re-personalised with
        the PCID credential from the TRE, read back), tell the old SHO while its connectivity
        lasts (unless a failed change told it already), and detach: the M2ME is pristine."""
        change = self._change()
        if not change.pristine:
            raise ProvisioningError("no return to the pristine state was instructed")
        already = self.discarded if self.discarded is not None and self.installed is None else None
        home_plmn = self.installed.home_plmn if self.installed else (already.home_plmn if already else "")
        try:
            card, evicted = self._card_then_tre_to_access_credential()
        except ProvisioningError as exc:
            raise ProvisioningError(f"the old SHO's MCIM could not be removed: {exc}") from exc
        acknowledged: bool | None = None
        if already is None and self.address:
            reply = self.bus.request(CredentialsDiscarded(sender=self._address(), recipient=change.old_sho_address,
                                                          pcid=self.pcid, imsi=change.old_imsi))
            acknowledged = isinstance(reply, DiscardAcknowledgement) and reply.acknowledged
        self.discarded = DiscardedCredentials(imsi=change.old_imsi, home_plmn=home_plmn,
                                              tre_handle=self.tre.mcim_handle, tre_object_evicted=evicted,
                                              card=card, old_sho_acknowledged=acknowledged)
        self.detach()
        self.bootstrap, self.session_id, self.discard_ack = None, None, None
        return self.discarded

    def _card_then_tre_to_access_credential(self) -> tuple[RestoredAccess, bool]:
        """The old MCIM given up for the initial-access credential (004 c4 s8, c4p s3). The card
        first: its write is transactional, so a card that fails keeps the old MCIM whole with its
        TPM object still behind it (the fault matrix found the other order left neither)."""
        try:
            card = self.restore_access_credential()
        except (DeviceError, TreError) as exc:
            raise ProvisioningError(f"the card's old K/OPc could not be overwritten (the old MCIM stays "
                                    f"whole on the card and in the TRE): {exc}") from exc
        try:
            evicted = self._evict_old_mcim()
        except DeviceError as exc:
            raise ProvisioningError(f"TRE could not evict the old MCIM object (the card already holds the "
                                    f"initial-access credential): {exc}") from exc
        return card, evicted

    def _evict_old_mcim(self) -> bool:
        """Evict the old MCIM's sealed object; True when there was one. The card is already on the
        initial-access credential, so an object left behind would be a second SHO's credential: when
        the TPM loses power at the evict, the M2ME restarts (keys, PCRs) and evicts again, bounded
        (a cut after the evict ran leaves nothing to evict: the object was there all the same)."""
        held: bool | None = None
        for attempt in range(1, EVICT_ATTEMPTS + 1):
            try:
                if held is None:
                    held = self.tre.has_mcim()
                if held:
                    self.tre.discard_mcim()
                return held
            except DeviceError as exc:
                if attempt == EVICT_ATTEMPTS or not _power_lost(exc):
                    raise
                self.power_losses += 1
                time.sleep(EVICT_BACKOFF_S * attempt)
                self.restart_after_power_loss()
        raise AssertionError("unreachable")

    def discard_old_mcim(self) -> DiscardedCredentials:
        """004 c4 s8: before installing the new MCIM, discard ALL of the old SHO's credentials: the
        sealed MCIM object is evicted from the TRE, the card's IMSI/K/OPc are overwritten with the
        initial-access credential from the TRE (read back), and the agent forgets the old MCIM. The
        agent holds no AVs or AKA keys of its own (the AKA runs on the card). The initial-access
        credential in the TRE is never touched. Refused while no new M2MSIMMobj is here, whole and
        checked (s7), so the old MCIM is never given up for nothing."""
        change = self._change()
        if self.pending is None and (self.preprovisioned is None
                                     or self.preprovisioned.sho_address != change.new_sho_address):
            raise ProvisioningError("no new M2MSIMMobj was downloaded: the old SHO's MCIM is kept")
        old = self.installed
        card, evicted = self._card_then_tre_to_access_credential()
        self.installed = None
        self.discarded = DiscardedCredentials(imsi=change.old_imsi, home_plmn=old.home_plmn if old else "",
                                              tre_handle=self.tre.mcim_handle, tre_object_evicted=evicted,
                                              card=card)
        return self.discarded

    def notify_old_sho_discarded(self) -> DiscardAcknowledgement:
        """004 c4 s9-s10: tell the old SHO its AVs and MCIM credentials are discarded; its acknowledgement."""
        change = self._change()
        if self.discarded is None:
            raise ProvisioningError("the old SHO's MCIM credentials are not discarded yet")
        reply = self.bus.request(CredentialsDiscarded(sender=self._address(), recipient=change.old_sho_address,
                                                      pcid=self.pcid, imsi=change.old_imsi))
        if not isinstance(reply, DiscardAcknowledgement):
            raise Refused(change.old_sho_address, "discard notice", getattr(reply, "reason", None), reply)
        self.discard_ack = reply
        return reply

    def relay_discard_acknowledgement(self) -> DiscardConfirmationAck:
        """004 c4 s11: the old SHO's acknowledgement, to the DPF, which relays it (filtered) to the new SHO."""
        self._change()
        ack = self.discard_ack
        if ack is None:
            raise ProvisioningError("the old SHO has not acknowledged the discard")
        boot = self._bootstrap()
        reply = self.bus.request(DiscardAcknowledgementRelay(sender=self._address(), recipient=boot.dpf_address,
                                                             pcid=self.pcid, imsi=ack.imsi,
                                                             acknowledged=ack.acknowledged,
                                                             old_sho_address=ack.sender))
        if not isinstance(reply, DiscardConfirmationAck):
            raise Refused(boot.dpf_address, "discard acknowledgement relay", getattr(reply, "reason", None), reply)
        return reply

    def _change(self) -> ShoChange:
        if self.change is None:
            raise ProvisioningError("no change of SHO was instructed")
        return self.change

    # -- helpers --------------------------------------------------------------------------------

    def _address(self) -> str:
        if not self.address:
            raise ProvisioningError("the M2ME has no IP connectivity (not attached)")
        return self.address

    def _bootstrap(self) -> BootstrapMessage:
        if self.bootstrap is None:
            raise ProvisioningError("the M2ME has not been bootstrapped (no DPF/SHO address)")
        return self.bootstrap
