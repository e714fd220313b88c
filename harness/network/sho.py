"""The SHO: the operator whose MCIM the M2ME downloads (000 steps 12-17 and 21; 004 c4 steps 1-14).

It keeps its contracts with M2ME owners, takes the RO's registration of an M2ME (000 s12),
retrieves the PfC from the M2ME and has the PVA validate it (steps 13-15; as a new SHO it may
inquire the IVF for the integrity result instead, 004 c4 s3-s5), builds the MCIM (a fresh IMSI
of its PLMN, random K and OPc), seals it for the TPM's certified storage key under the
validated PCR state inside a signed M2MSIMMobj (step 16), authorises the DPF (step 17), takes
the status (step 21), and from then on runs the AuC for its IMSIs. As an old SHO it acknowledges
the M2ME's discard of its credentials (004 c4 s9-s10).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass
from typing import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcim_hil.aka.auc import AuC
from mcim_hil.network import m2msimmobj
from mcim_hil.network.attestation import (
    STORAGE_KEY_REQUIRED,
    Evidence,
    ValidationResult,
    parse_attest,
    parse_public,
    tpm_name,
    verify_tpm_signature,
)
from mcim_hil.network.bus import Bus, Entity, Refused
from mcim_hil.network.mcim import Mcim, seal_mcim
from mcim_hil.network.messages import (
    AuthDataRequest,
    AuthDataResponse,
    Challenge,
    ChallengeRequest,
    CredentialsDiscarded,
    DiscardAcknowledgement,
    DiscardConfirmation,
    DiscardConfirmationAck,
    DrfAuthorisationRequest,
    SealingParentRequest,
    SealingParentResponse,
    EvidenceRequest,
    EvidenceResponse,
    IntegrityInquiry,
    IntegrityInquiryResponse,
    Message,
    PlatformCredentialRequest,
    PlatformCredentialResponse,
    ProvisioningAuthorisation,
    ProvisioningAuthorisationAck,
    ProvisioningStatus,
    ProvisioningStatusAck,
    RegistrationAck,
    RegistrationRequest,
    ResyncRequest,
    SubscriberRegistration,
    SubscriberRegistrationAck,
    SubscriptionChangeAck,
    SubscriptionChangeRequest,
    ValidationRequest,
    ValidationResultMessage,
)
from mcim_hil.network import av_source
from mcim_hil.network.store import Store
from mcim_hil.network.subscription import UpdateLocationAnswer, UpdateLocationRequest

IMSI_DIGITS = 15  # TS 23.003 2.2

# contract states
CONTRACTED = "contracted"
REGISTERED = "registered"
VALIDATED = "validated"
VALIDATION_FAILED = "validation failed"
BUILT = "M2MSIMMobj built"
AUTHORISED = "authorised"
PROVISIONED = "provisioned"
PROVISIONING_FAILED = "provisioning failed"

# subscriber (IMSI) states: the AuC answers for ACTIVE IMSIs only
PENDING = "pending"
ACTIVE = "active"
DISCARDED = "discarded"

VIA_PVA = "pva"
VIA_IVF = "pva authenticity + ivf integrity"


@dataclass(frozen=True)
class ValidationOutcome:
    """What the SHO concluded from the PVA (and the IVF): ``passed`` and where integrity came from."""

    passed: bool
    source: str
    result: ValidationResult
    integrity: IntegrityInquiryResponse | None = None
    fallback_reason: str | None = None  # why an IVF hit was not used (004 c4 s3 NOTE)
    missing_components: tuple[str, ...] = ()  # required by this SHO, not validated by the PVA


class Sho(Entity):
    """A selected home operator (also the new or the old SHO of a change)."""

    def __init__(self, bus: Bus, store: Store, *, name: str, address: str, plmn: str, drf_address: str,
                 dpf_address: str, pva_address: str, ivf_address: str | None = None,
                 m2m_application_context: dict[str, str] | None = None,
                 required_components: tuple[str, ...] = (), mcim_lifetime_s: float = 365 * 24 * 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(bus, address)
        if not (plmn.isdigit() and len(plmn) in (5, 6)):
            raise ValueError(f"{address}: PLMN {plmn!r} is not MCC+MNC (5 or 6 digits)")
        self.name = name
        self.plmn = plmn
        self.drf_address = drf_address
        self.dpf_address = dpf_address
        self.pva_address = pva_address
        self.ivf_address = ivf_address
        self.m2m_application_context = dict(m2m_application_context or {"m2m_operator": name})
        self.required_components = tuple(required_components)
        self.mcim_lifetime_s = mcim_lifetime_s
        self.clock = clock
        self._signing_key = ec.generate_private_key(ec.SECP256R1())  # signs its M2MSIMMobjs
        # each SHO its own tables: sho_<address>, e.g. sho_sho_sho_b_example
        self.db = store.entity("sho_" + re.sub(r"[^a-z0-9]+", "_", address.lower()).strip("_"))
        self.db.define("contracts", {"pcid": "TEXT", "platform_id": "TEXT", "m2me_address": "TEXT",
                                     "old_sho_address": "TEXT", "state": "TEXT", "updated_at": "REAL"}, "pcid")
        self.db.define("platforms", {"pcid": "TEXT", "platform_id": "TEXT", "pfc": "BLOB",
                                     "ek_certificate": "BLOB", "ek_public": "BLOB", "ak_public": "BLOB"}, "pcid")
        self.db.define("validations", {"pcid": "TEXT", "passed": "INTEGER", "source": "TEXT", "result": "JSON",
                                       "storage_key_public": "BLOB", "pcr_values": "JSON",
                                       "unseal_authority_name": "BLOB", "validated_at": "REAL"}, "pcid")
        self.db.define("subscribers", {"imsi": "TEXT", "pcid": "TEXT", "k": "SECRET", "opc": "SECRET", "auc": "JSON",
                                       "state": "TEXT", "not_after": "REAL", "m2msimmobj": "BLOB",
                                       "updated_at": "REAL"}, "imsi")
        self.db.define("discards", {"pcid": "TEXT", "confirmed": "INTEGER", "at": "REAL"}, "pcid")
        self.db.index("subscribers", "pcid")
        self.on(RegistrationRequest, self._registration)
        self.on(AuthDataRequest, self._auth_data)
        self.on(ResyncRequest, self._auth_data)
        self.on(ProvisioningStatus, self._provisioning_status)
        self.on(SubscriptionChangeRequest, self._subscription_change)
        self.on(CredentialsDiscarded, self._credentials_discarded)
        self.on(DiscardConfirmation, self._discard_confirmation)
        # the VNO's Update Location: an MCIM subscriber is not limited to an APN here
        self.on(UpdateLocationRequest, lambda m: UpdateLocationAnswer(sender=self.address, recipient=m.sender,
                                                                      imsi=m.imsi))

    # -- identity --------------------------------------------------------------------------------
    @property
    def verify_key(self) -> bytes:
        """DER SubjectPublicKeyInfo of the key that signs this SHO's M2MSIMMobjs (sent in the bootstrap)."""
        return self._signing_key.public_key().public_bytes(serialization.Encoding.DER,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def home_plmn(self) -> str:
        """The PLMN as the MCIM writes it: "MCC-MNC"."""
        return f"{self.plmn[:3]}-{self.plmn[3:]}"

    # -- state, for procedures and tests -----------------------------------------------------------
    def contract(self, pcid: str) -> dict | None:
        return self.db.get("contracts", pcid=pcid)

    def subscriber(self, imsi: str) -> dict | None:
        """An IMSI's subscription (state, lifetime); K and OPc stay in the SHO."""
        row = self.db.get("subscribers", imsi=imsi)
        if row is None:
            return None
        return {key: row[key] for key in ("imsi", "pcid", "state", "not_after")}

    def imsi_of(self, pcid: str) -> str | None:
        """The IMSI of the latest MCIM built for an M2ME."""
        rows = self.db.select("subscribers", pcid=pcid)
        return max(rows, key=lambda r: int(r["imsi"]))["imsi"] if rows else None  # MSINs only grow

    # -- the contract (before 000 s1; 004 c4 s1) ------------------------------------------------------
    def add_contract(self, pcid: str, *, platform_id: str | None = None, m2me_address: str | None = None,
                     old_sho_address: str | None = None) -> None:
        """The M2ME owner's contract with this SHO (a business step, not a message of the seeds)."""
        self.db.put("contracts", pcid=pcid, platform_id=platform_id, m2me_address=m2me_address,
                    old_sho_address=old_sho_address, state=CONTRACTED, updated_at=time.time())

    def register_subscription_at_ro(self, pcid: str) -> SubscriberRegistrationAck:
        """Tell the RO's DRF that the M2ME subscribes to this SHO (004 c4 s14, and the initial contract)."""
        if self.contract(pcid) is None:
            raise Refused(self.address, f"subscription of {pcid}", "no contract for this M2ME")
        ack = self.request(SubscriberRegistration(sender=self.address, recipient=self.drf_address, pcid=pcid,
                                                  sho_address=self.address, sho_plmn=self.plmn,
                                                  dpf_address=self.dpf_address, sho_verify_key=self.verify_key,
                                                  m2m_application_context=self.m2m_application_context),
                           SubscriberRegistrationAck)
        if not ack.accepted:
            raise Refused(self.drf_address, f"subscription of {pcid}", ack.reason, ack)
        return ack

    # -- 000 s13-s15: validation ------------------------------------------------------------------------
    def retrieve_platform_credential(self, pcid: str) -> PlatformCredentialResponse:
        """000 s13 editor's note: the SHO retrieves the PfC (and EK/AK publics) from the M2ME."""
        m2me = self._m2me_address(pcid)
        reply = self.request(PlatformCredentialRequest(sender=self.address, recipient=m2me, pcid=pcid),
                             PlatformCredentialResponse)
        self.db.put("platforms", pcid=pcid, platform_id=reply.platform_id, pfc=reply.pfc,
                    ek_certificate=reply.ek_certificate, ek_public=reply.ek_public, ak_public=reply.ak_public)
        self.db.update("contracts", {"pcid": pcid}, platform_id=reply.platform_id, updated_at=time.time())
        return reply

    def request_validation(self, pcid: str, *, via_ivf: bool = False, issue_to_ivf: bool = False) -> ValidationOutcome:
        """000 s13-s15: the PVA validates authenticity and integrity. With ``via_ivf`` (a new SHO,
        004 c4 s3-s5) the IVF's integrity result is used when it is there, covers the components
        this SHO requires and matches the PCR state the TPM quotes now; else the PVA validates
        integrity too (004 c4 s3 NOTE). ``issue_to_ivf``: the PVA issues an integrity result to the
        IVF (004 c3 s10; also the fallback's fresh result of a change via the IVF)."""
        platform = self.db.get("platforms", pcid=pcid)
        if platform is None:
            self.retrieve_platform_credential(pcid)
            platform = self.db.get("platforms", pcid=pcid)
        assert platform is not None
        outcome: ValidationOutcome | None = None
        fallback: str | None = None
        if via_ivf:
            if self.ivf_address is None:
                raise Refused(self.address, f"IVF inquiry for {pcid}", "this SHO knows no IVF")
            inquiry = self.request(IntegrityInquiry(sender=self.address, recipient=self.ivf_address,
                                                    platform_id=platform["platform_id"],
                                                    required_components=self.required_components),
                                   IntegrityInquiryResponse)
            if not inquiry.available:
                fallback = inquiry.reason or "no integrity result at the IVF"
            elif not inquiry.passed:
                fallback = "the IVF's integrity result is a failure"
            else:
                evidence, result = self._validate_once(pcid, platform, check_integrity=False)
                fallback = _ivf_mismatch(inquiry, evidence, result)
                if fallback is None:
                    outcome = ValidationOutcome(passed=result.passed, source=VIA_IVF, result=result,
                                                integrity=inquiry)
                    self._keep_validation(pcid, outcome, evidence.pcr_values)
                    return outcome
        evidence, result = self._validate_once(pcid, platform, check_integrity=True,
                                               issue_to_ivf=issue_to_ivf or via_ivf)
        missing = sorted(set(self.required_components) - set(result.validated_components))
        outcome = ValidationOutcome(passed=result.passed and not missing, source=VIA_PVA, result=result,
                                    fallback_reason=fallback,
                                    missing_components=tuple(missing))
        self._keep_validation(pcid, outcome, result.pcr_values)
        return outcome

    def _validate_once(self, pcid: str, platform: dict, *, check_integrity: bool,
                       issue_to_ivf: bool = False) -> tuple[Evidence, ValidationResult]:
        challenge = self.request(ChallengeRequest(sender=self.address, recipient=self.pva_address,
                                                  platform_id=platform["platform_id"],
                                                  ek_public=platform["ek_public"], ak_public=platform["ak_public"],
                                                  pfc=platform["pfc"]),
                                 Challenge)
        evidence = self.request(EvidenceRequest(sender=self.address, recipient=self._m2me_address(pcid), pcid=pcid,
                                                nonce=challenge.nonce, pcr_selection=challenge.pcr_selection,
                                                credential_challenge=challenge.credential_challenge),
                                EvidenceResponse).evidence
        reply = self.request(ValidationRequest(sender=self.address, recipient=self.pva_address, pfc=platform["pfc"],
                                               m2me_identity=platform["platform_id"], pcid=pcid, evidence=evidence,
                                               nonce=challenge.nonce, check_integrity=check_integrity,
                                               issue_to_ivf=issue_to_ivf,
                                               required_components=self.required_components),
                             ValidationResultMessage)
        return evidence, reply.result

    def _keep_validation(self, pcid: str, outcome: ValidationOutcome, pcr_values: dict[int, bytes]) -> None:
        self.db.put("validations", pcid=pcid, passed=outcome.passed, source=outcome.source,
                    result=outcome.result.to_dict(), storage_key_public=outcome.result.storage_key_public,
                    unseal_authority_name=outcome.result.unseal_authority_name,
                    pcr_values={str(k): v.hex() for k, v in sorted(pcr_values.items())}, validated_at=time.time())
        self.db.update("contracts", {"pcid": pcid}, state=VALIDATED if outcome.passed else VALIDATION_FAILED,
                       updated_at=time.time())

    # -- 000 s16-s17: the MCIM, its M2MSIMMobj, the authorisation -------------------------------------------
    def request_sealing_parent(self, pcid: str) -> bytes:
        """5.1.3.8.4.2 variant: a storage key of the M2ME's TRE for this SHO's MCIM alone, certified
        by the AK this SHO's validation vouched for. Returns its public area (TPM2B_PUBLIC)."""
        validation = self.db.get("validations", pcid=pcid)
        platform = self.db.get("platforms", pcid=pcid)
        if validation is None or not validation["passed"] or platform is None:
            raise Refused(self.address, f"sealing parent of {pcid}", "the M2ME was not validated")
        nonce = os.urandom(32)
        reply = self.request(SealingParentRequest(sender=self.address, recipient=self._m2me_address(pcid), pcid=pcid,
                                                  nonce=nonce), SealingParentResponse)
        try:
            ak = parse_public(platform["ak_public"])
            verify_tpm_signature(ak, reply.certify_signature, reply.certify_attest)
            attest = parse_attest(reply.certify_attest)
            parent = parse_public(reply.storage_key_public)
        except Exception as exc:  # InvalidSignature or a structure error: the same refusal
            raise Refused(self.address, f"sealing parent of {pcid}",
                          f"the certification does not verify with the validated AK ({type(exc).__name__})") from exc
        if attest.extra_data != nonce or attest.certified_name != tpm_name(reply.storage_key_public):
            raise Refused(self.address, f"sealing parent of {pcid}", "the certification is not of that key or nonce")
        if not parent.has(STORAGE_KEY_REQUIRED):
            raise Refused(self.address, f"sealing parent of {pcid}", "not a restricted decryption key")
        self.db.update("validations", {"pcid": pcid}, storage_key_public=reply.storage_key_public)
        return reply.storage_key_public

    def build_m2msimmobj(self, pcid: str) -> bytes:
        """000 s16: a fresh MCIM sealed to the validated storage key and PCR state, in a signed M2MSIMMobj
        (to this SHO's own sealing parent once request_sealing_parent() got one)."""
        validation = self.db.get("validations", pcid=pcid)
        if validation is None or not validation["passed"]:
            raise Refused(self.address, f"MCIM for {pcid}",
                          "the M2ME was not validated" if validation is None else "the validation failed")
        pcr_values = {int(k): bytes.fromhex(v) for k, v in validation["pcr_values"].items()}
        if not pcr_values or validation["storage_key_public"] is None or not validation["unseal_authority_name"]:
            raise Refused(self.address, f"MCIM for {pcid}",
                          "the validation gave no PCR state, storage key or unseal authority")
        imsi = self._next_imsi()
        k, opc = os.urandom(16), os.urandom(16)
        not_after = self.clock() + self.mcim_lifetime_s
        mcim = Mcim(imsi=imsi, k=k, opc=opc, home_plmn=self.home_plmn,
                    not_after=dt.datetime.fromtimestamp(not_after, dt.timezone.utc))
        # issue 9: the PCRs the PVA validated, and PolicySecret on the TRE's certified unseal authority
        sealed, envelope = seal_mcim(mcim, validation["storage_key_public"], sorted(pcr_values), pcr_values,
                                     authority_name=validation["unseal_authority_name"])
        contract = self.contract(pcid) or {}
        metadata = {"pcid": pcid, "sho": self.address, "home_plmn": self.home_plmn,
                    "platform_id": contract.get("platform_id") or "",
                    "not_after": mcim.not_after.isoformat()}
        document = m2msimmobj.build(sealed, mcim_envelope=envelope, metadata=metadata, signer=self._signing_key)
        auc = AuC(k, opc, amf=mcim.amf, r=mcim.r, c=mcim.c)
        self.db.put("subscribers", imsi=imsi, pcid=pcid, k=k, opc=opc, auc=auc.to_dict(), state=PENDING,
                    not_after=not_after, m2msimmobj=document, updated_at=time.time())
        self.db.update("contracts", {"pcid": pcid}, state=BUILT, updated_at=time.time())
        return document

    def authorise_provisioning(self, pcid: str, *, via_drf: bool = False) -> ProvisioningAuthorisationAck:
        """000 s17: deliver the M2MSIMMobj to the RO's DPF and authorise the provisioning. With
        ``via_drf`` (004 c4p s12): authorise the RO's DRF to authorise its DPF."""
        imsi = self.imsi_of(pcid)
        row = self.db.get("subscribers", imsi=imsi) if imsi else None
        if row is None or row["state"] != PENDING:
            raise Refused(self.address, f"authorisation for {pcid}", "no M2MSIMMobj waiting for this M2ME")
        to = self.drf_address if via_drf else self.dpf_address
        message = (DrfAuthorisationRequest if via_drf else ProvisioningAuthorisation)(
            sender=self.address, recipient=to, pcid=pcid, m2msimmobj=row["m2msimmobj"])
        ack = self.request(message, ProvisioningAuthorisationAck)
        if not ack.accepted:
            raise Refused(to, f"authorisation for {pcid}", ack.reason, ack)
        self.db.update("contracts", {"pcid": pcid}, state=AUTHORISED, updated_at=time.time())
        return ack

    # -- handlers ---------------------------------------------------------------------------------------------
    def _registration(self, msg: RegistrationRequest) -> Message:
        # 000 s12: the RO's DRF registers the M2ME for connection to this SHO's network
        if msg.sender != self.drf_address:
            return RegistrationAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=False,
                                   reason=f"{msg.sender} is not the DRF of this SHO's RO")
        if self.contract(msg.pcid) is None:
            return RegistrationAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=False,
                                   reason="no contract for this M2ME")
        self.db.update("contracts", {"pcid": msg.pcid}, m2me_address=msg.m2me_address, state=REGISTERED,
                       updated_at=time.time())
        return RegistrationAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=True)

    def _auth_data(self, msg: AuthDataRequest | ResyncRequest) -> Message:
        """The SHO's AuC for its IMSIs once provisioned (and a resync, TS 33.102 6.3.5)."""
        row = self._active_subscriber(msg.imsi)
        auc = AuC.from_dict(row["auc"], k=row["k"], opc=row["opc"]) if row else None
        reply = av_source.answer(self.address, msg, auc, "no active subscription for this IMSI")
        if isinstance(reply, AuthDataResponse):
            self.db.update("subscribers", {"imsi": msg.imsi}, auc=auc.to_dict())
        return reply

    def _provisioning_status(self, msg: ProvisioningStatus) -> Message:
        # 000 s21: only the DPF this SHO authorised reports the status
        if msg.sender != self.dpf_address:
            raise Refused(self.address, f"provisioning status for {msg.pcid} from {msg.sender}",
                          "not this SHO's DPF")
        imsi = self.imsi_of(msg.pcid)
        if imsi is not None:
            self.db.update("subscribers", {"imsi": imsi}, state=ACTIVE if msg.success else DISCARDED,
                           updated_at=time.time())
        self.db.update("contracts", {"pcid": msg.pcid}, state=PROVISIONED if msg.success else PROVISIONING_FAILED,
                       updated_at=time.time())
        return ProvisioningStatusAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid)

    def _subscription_change(self, msg: SubscriptionChangeRequest) -> Message:
        # 004 c4 s1: the M2ME subscriber transfers the M2ME's parameters to the new SHO
        self.add_contract(msg.pcid, platform_id=msg.platform_id, m2me_address=msg.m2me_address,
                          old_sho_address=msg.old_sho_address)
        return SubscriptionChangeAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid, accepted=True,
                                     sho_verify_key=self.verify_key)

    def _credentials_discarded(self, msg: CredentialsDiscarded) -> Message:
        # 004 c4 s9-s10: as the old SHO, acknowledge the discard and stop serving the IMSI
        row = self.db.get("subscribers", imsi=msg.imsi)
        if row is None or row["pcid"] != msg.pcid:
            return DiscardAcknowledgement(sender=self.address, recipient=msg.sender, pcid=msg.pcid, imsi=msg.imsi,
                                          acknowledged=False, reason="not an IMSI of this SHO for that M2ME")
        self.db.update("subscribers", {"imsi": msg.imsi}, state=DISCARDED, updated_at=time.time())
        return DiscardAcknowledgement(sender=self.address, recipient=msg.sender, pcid=msg.pcid, imsi=msg.imsi,
                                      acknowledged=True)

    def _discard_confirmation(self, msg: DiscardConfirmation) -> Message:
        # 004 c4 s11: as the new SHO, the DPF relays the (filtered) acknowledgement
        self.db.put("discards", pcid=msg.pcid, confirmed=msg.old_credentials_discarded, at=time.time())
        return DiscardConfirmationAck(sender=self.address, recipient=msg.sender, pcid=msg.pcid)

    def old_credentials_discarded(self, pcid: str) -> bool:
        row = self.db.get("discards", pcid=pcid)
        return bool(row and row["confirmed"])

    # -- helpers ------------------------------------------------------------------------------------------------
    def _m2me_address(self, pcid: str) -> str:
        contract = self.contract(pcid)
        if contract is None or not contract["m2me_address"]:
            raise Refused(self.address, f"contact with {pcid}",
                          "no contract" if contract is None else "the M2ME is not registered yet")
        return contract["m2me_address"]

    def _active_subscriber(self, imsi: str) -> dict | None:
        row = self.db.get("subscribers", imsi=imsi)
        if row is None or row["state"] != ACTIVE or self.clock() > row["not_after"]:
            return None
        return row

    def _next_imsi(self) -> str:
        msin_digits = IMSI_DIGITS - len(self.plmn)
        msin = (self.db.max_number("subscribers", "imsi", after=len(self.plmn)) or 0) + 1
        return f"{self.plmn}{msin:0{msin_digits}d}"


def _ivf_mismatch(inquiry: IntegrityInquiryResponse, evidence: Evidence, result: ValidationResult) -> str | None:
    """Why the IVF's result cannot stand for this platform now, or None when it can."""
    if not result.passed:
        return None  # authenticity failed: the outcome is a failure either way, no second round
    if result.pcr_digest is None or inquiry.pcr_digest is None:
        return "no PCR digest to compare with the IVF's result"
    if not hmac.compare_digest(result.pcr_digest, inquiry.pcr_digest):
        return "the TPM quotes another PCR state than the one the IVF's result is about"
    reported = b"".join(evidence.pcr_values[p] for p in sorted(evidence.pcr_values))
    if not hmac.compare_digest(hashlib.sha256(reported).digest(), result.pcr_digest):
        return "the reported PCR values are not the quoted ones"
    return None
