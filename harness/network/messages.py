"""The messages of TR 33.812 5.1.3.7.1 / 5.1.3.8.4, one class per arrow of the seeds.

Every message names its ``sender`` and ``recipient`` (bus addresses) and carries typed
fields. ``SECRET_FIELDS`` names the fields that must never be written out: plain names
for the message's own fields, dotted names (``"avs.ck"``) for fields inside a nested
value (each element of a list). ``to_record()`` gives the fields with secrets replaced
by ``"<redacted>"`` and bytes as hex; ``repr`` shows the same, so a message in a trace
or an exception never shows a key.

Step numbers in the docstrings are the seeds': "000 sN" is the initial provisioning
(5.1.3.7.1), "004 c3 sN" the 3rd change (with the IVF), "004 c4 sN" the 4th change
(re-provisioning via the old SHO, 5.1.3.8.4.2) and "004 c4p sN" its pristine variant
(5.1.3.8.4.3).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # the types travel in messages; the modules are other helpers'
    from mcim_hil.aka.auc import AuthenticationVector
    from mcim_hil.network.attestation import Evidence, ValidationResult

REDACTED = "<redacted>"

# NAS causes (TS 24.008 10.5.5.14 / TS 24.301 9.9.3.9, Annex A)
CAUSE_IMSI_UNKNOWN = 2      # IMSI unknown in HLR/HSS
CAUSE_ILLEGAL_MS = 3        # Illegal MS/UE: what an AUTHENTICATION REJECT amounts to
CAUSE_NETWORK_FAILURE = 17  # TS 24.008 G.3
CAUSE_MAC_FAILURE = 20      # TS 24.008 G.3
CAUSE_SYNCH_FAILURE = 21    # TS 24.008 G.3
CAUSE_PROTOCOL_ERROR = 111  # protocol error, unspecified


@dataclass(frozen=True, kw_only=True, repr=False)
class Message:
    """Base of every message: who sends it to whom."""

    sender: str
    recipient: str

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()
    # session keys (RES): redacted like secrets; the record may reveal them (--reveal-session-keys)
    SESSION_KEY_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_record(self) -> dict[str, Any]:
        """The fields (sender and recipient excluded) for a trace: secrets redacted, bytes as hex."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("sender", "recipient"):
                continue
            out[f.name] = _plain(getattr(self, f.name), f.name, self.SECRET_FIELDS | self.SESSION_KEY_FIELDS)
        return out

    def session_key_values(self) -> dict[str, bytes]:
        """The session-key fields that are set, by name (for the record to redact or reveal)."""
        return {name: value for name in self.SESSION_KEY_FIELDS
                if isinstance(value := getattr(self, name, None), bytes) and value}

    def secret_values(self) -> list[bytes | str]:
        """The values of the top-level secret fields, for the record's scrubber."""
        values: list[bytes | str] = []
        for name in self.SECRET_FIELDS:
            if "." in name:
                continue
            value = getattr(self, name, None)
            if isinstance(value, (bytes, str)) and value:
                values.append(value)
        return values

    def __repr__(self) -> str:
        fields_text = ", ".join(f"{k}={v!r}" for k, v in self.to_record().items())
        return f"{self.kind}({self.sender} -> {self.recipient}: {fields_text})"


def _plain(value: Any, path: str, secrets: frozenset[str]) -> Any:
    """``value`` as JSON-friendly data, with the secret paths below ``path`` redacted."""
    if path in secrets:
        return None if value is None else REDACTED
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, path, secrets) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{path}.{k}", secrets) for k, v in value.items()}
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return _plain(to_dict(), path, secrets)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), f"{path}.{f.name}", secrets)
                for f in dataclasses.fields(value)}
    return str(value)


def _hide(*names: str) -> frozenset[str]:
    return frozenset(names)


# ---------------------------------------------------------------------------------------
# Initial attach over the VNO's air interface (000 s1-s6; 004 c3 s1-s4; 004 c4p s4-s6)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, repr=False)
class AttachRequest(Message):
    """M2ME -> VNO (000 s1). ``imsi`` is the PCID before provisioning (IMSI-formatted,
    000 s1 NOTE), the MCIM's IMSI after."""

    imsi: str


@dataclass(frozen=True, kw_only=True, repr=False)
class AuthDataRequest(Message):
    """VNO -> ICF for a PCID (000 s2), VNO -> SHO's AuC for an MCIM IMSI."""

    imsi: str
    count: int = 1


@dataclass(frozen=True, kw_only=True, repr=False)
class ResyncRequest(Message):
    """VNO -> AV source after a synch failure: RAND and AUTS (TS 33.102 6.3.5)."""

    imsi: str
    rand: bytes
    auts: bytes
    count: int = 1


@dataclass(frozen=True, kw_only=True, repr=False)
class AuthDataResponse(Message):
    """ICF/AuC -> VNO: AVs for the claimed identity (000 s4). XRES, CK, IK never leave
    the network in a trace."""

    imsi: str
    avs: tuple["AuthenticationVector", ...]

    SECRET_FIELDS = _hide("avs.xres", "avs.ck", "avs.ik")


@dataclass(frozen=True, kw_only=True, repr=False)
class AuthDataReject(Message):
    """ICF/AuC -> VNO: no credential for that identity, or a resync that failed."""

    imsi: str
    reason: str


@dataclass(frozen=True, kw_only=True, repr=False)
class CredentialRequest(Message):
    """ICF -> CCIF: the temporary-access credential of a PCID it lacks (000 s3 NOTE)."""

    pcid: str


@dataclass(frozen=True, kw_only=True, repr=False)
class CredentialResponse(Message):
    """CCIF -> ICF: the PCID's temporary-access credential (000 s3 NOTE)."""

    pcid: str
    found: bool
    k: bytes | None = None
    opc: bytes | None = None
    amf: bytes = b"\x80\x00"
    not_after: float | None = None   # the credential's lifetime (5.1.3.8.4.3, last paragraph)

    SECRET_FIELDS = _hide("k", "opc")


@dataclass(frozen=True, kw_only=True, repr=False)
class AuthenticationRequest(Message):
    """VNO -> M2ME (000 s5): RAND and AUTN of one AV."""

    imsi: str
    rand: bytes
    autn: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class AuthenticationResponse(Message):
    """M2ME -> VNO (000 s5): RES computed by the USIM."""

    imsi: str
    res: bytes

    SESSION_KEY_FIELDS = _hide("res")


@dataclass(frozen=True, kw_only=True, repr=False)
class AuthenticationFailure(Message):
    """M2ME -> VNO: cause #20 MAC failure or #21 synch failure with AUTS (TS 24.008 G.3)."""

    imsi: str
    cause: int
    auts: bytes | None = None
    status_word: str | None = None  # what the USIM answered, for the trace


@dataclass(frozen=True, kw_only=True, repr=False)
class AuthenticationReject(Message):
    """VNO -> M2ME: RES != XRES (TS 24.301 5.4.2.5, TS 24.008 4.7.7.5.1)."""

    imsi: str


@dataclass(frozen=True, kw_only=True, repr=False)
class AttachAccept(Message):
    """VNO -> M2ME (000 s6): IP connectivity with an address from the VNO's pool."""

    imsi: str
    ip_address: str
    home: bool


@dataclass(frozen=True, kw_only=True, repr=False)
class AttachReject(Message):
    """VNO -> M2ME: attach refused with a NAS cause."""

    imsi: str
    cause: int


@dataclass(frozen=True, kw_only=True, repr=False)
class DetachRequest(Message):
    """M2ME -> VNO: release the bearer and the address."""

    imsi: str


@dataclass(frozen=True, kw_only=True, repr=False)
class DetachAccept(Message):
    """VNO -> M2ME."""

    imsi: str


# ---------------------------------------------------------------------------------------
# Manufacturing (before 000 s1): the M2MES gets the PCID credential from the CCIF
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, repr=False)
class CredentialIssueRequest(Message):
    """M2MES -> CCIF: a temporary-access credential for a pristine M2ME being personalised."""

    platform_id: str


@dataclass(frozen=True, kw_only=True, repr=False)
class CredentialIssued(Message):
    """CCIF -> M2MES: the PCID and its key material, to be written into the pristine UICC."""

    platform_id: str
    pcid: str
    k: bytes
    opc: bytes
    amf: bytes = b"\x80\x00"
    not_after: float | None = None   # the credential's lifetime (5.1.3.8.4.3, last paragraph)

    SECRET_FIELDS = _hide("k", "opc")


# ---------------------------------------------------------------------------------------
# Discovery and registration (000 s7-s12; 004 c3 s5-s7)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectRequest(Message):
    """M2ME -> RO (ICF) over the VNO's IP connectivity (000 s7)."""

    pcid: str
    ip_address: str


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectAccept(Message):
    """ICF -> M2ME (000 s7)."""

    pcid: str


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectReject(Message):
    """ICF -> M2ME: unknown PCID."""

    pcid: str
    reason: str


@dataclass(frozen=True, kw_only=True, repr=False)
class BootstrapRequest(Message):
    """ICF -> DRF: PCID and IP address of the M2ME (000 s8)."""

    pcid: str
    ip_address: str


@dataclass(frozen=True, kw_only=True, repr=False)
class BootstrapRequestAck(Message):
    """DRF -> ICF: the DRF found the M2ME's DPF and SHO (000 s9) or not."""

    pcid: str
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class BootstrapMessage(Message):
    """DRF -> M2ME (000 s10): where the DPF and the SHO are, the MCIM and M2M application
    provisioning contexts, and the SHO's public key that signs the M2MSIMMobj."""

    pcid: str
    dpf_address: str
    sho_address: str
    mcim_provisioning_context: dict[str, str]
    m2m_application_context: dict[str, str]
    sho_verify_key: bytes  # DER SubjectPublicKeyInfo
    bootstrap_token: bytes = b""   # shown to the DPF: proof the DRF bootstrapped this M2ME

    SECRET_FIELDS = _hide("bootstrap_token")


@dataclass(frozen=True, kw_only=True, repr=False)
class BootstrapAck(Message):
    """M2ME -> DRF: bootstrap performed (000 s11)."""

    pcid: str
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class SubscriberRegistration(Message):
    """SHO -> RO (DRF): register the M2ME as subscribing to this SHO, for future discovery
    queries (004 c4 s14; also the SHO's contract set up before 000 s1)."""

    pcid: str
    sho_address: str
    sho_plmn: str
    dpf_address: str
    sho_verify_key: bytes
    m2m_application_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, repr=False)
class SubscriberRegistrationAck(Message):
    """DRF -> SHO."""

    pcid: str
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class RegistrationRequest(Message):
    """DRF -> SHO: register the M2ME for connection to the SHO's network (000 s12)."""

    pcid: str
    m2me_address: str


@dataclass(frozen=True, kw_only=True, repr=False)
class RegistrationAck(Message):
    """SHO -> DRF (000 s12)."""

    pcid: str
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class RegistryQuery(Message):
    """DPF -> DRF: which SHO is registered for this PCID."""

    pcid: str


@dataclass(frozen=True, kw_only=True, repr=False)
class RegistryEntry(Message):
    """DRF -> DPF."""

    pcid: str
    found: bool
    sho_address: str | None = None
    dpf_address: str | None = None


# ---------------------------------------------------------------------------------------
# Platform validation (000 s13-s15; 004 c3 s8-s10; 004 c4 s3-s5; 004 c4p s9-s11)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, repr=False)
class PlatformCredentialRequest(Message):
    """SHO -> M2ME: "the SHO retrieved the PfC from the M2ME" (000 s13 editor's note)."""

    pcid: str


@dataclass(frozen=True, kw_only=True, repr=False)
class PlatformCredentialResponse(Message):
    """M2ME -> SHO: PfC, EK certificate and public parts of the EK and AK (marshalled TPM2B_PUBLIC)."""

    pcid: str
    platform_id: str
    pfc: bytes             # DER X.509
    ek_certificate: bytes  # DER X.509
    ek_public: bytes
    ak_public: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class ChallengeRequest(Message):
    """SHO -> PVA: a fresh nonce and a credential challenge for this platform's EK and AK.
    ``pfc``: the PfC the SHO will present (DER); an AK binding the PVA proved under another PfC
    (before a firmware update) does not spare the M2ME its ActivateCredential."""

    platform_id: str
    ek_public: bytes
    ak_public: bytes
    pfc: bytes = b""


@dataclass(frozen=True, kw_only=True, repr=False)
class Challenge(Message):
    """PVA -> SHO: nonce, PCR selection to quote, and the MakeCredential blob for the TPM."""

    platform_id: str
    nonce: bytes
    pcr_selection: tuple[int, ...]
    credential_challenge: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class EvidenceRequest(Message):
    """SHO -> M2ME: quote these PCRs over the nonce, activate the credential, certify the storage key."""

    pcid: str
    nonce: bytes
    pcr_selection: tuple[int, ...]
    credential_challenge: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class EvidenceResponse(Message):
    """M2ME -> SHO: the platform evidence (mcim_hil.network.attestation.Evidence)."""

    pcid: str
    evidence: "Evidence"


@dataclass(frozen=True, kw_only=True, repr=False)
class ValidationRequest(Message):
    """SHO -> PVA: validate the authenticity (and integrity) of the M2ME (000 s13)."""

    pfc: bytes
    m2me_identity: str  # platform id
    pcid: str
    evidence: "Evidence"
    nonce: bytes
    check_integrity: bool = True
    issue_to_ivf: bool = False  # 004 c3 s10: the PVA issues the integrity result to the IVF
    required_components: tuple[str, ...] = ()  # the SHO's requirement (004 c4 s3 NOTE)


@dataclass(frozen=True, kw_only=True, repr=False)
class ValidationResultMessage(Message):
    """PVA -> SHO: the validation result, each check with its verdict (000 s15)."""

    pcid: str
    result: "ValidationResult"


@dataclass(frozen=True, kw_only=True, repr=False)
class OcspRequest(Message):
    """PVA -> M2MES's OCSP responder: is the PfC revoked? (RFC 6960 DER)."""

    request_der: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class OcspResponse(Message):
    """M2MES -> PVA: signed OCSP response (RFC 6960 DER)."""

    response_der: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class ReferenceValuesRequest(Message):
    """PVA -> M2MES: the published reference values of the components."""

    model: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class ReferenceValuesResponse(Message):
    """M2MES -> PVA: component -> expected SHA-256 digest for a model, signed by the M2MES CA."""

    model: str | None
    components: dict[str, bytes]
    signature: bytes | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class IntegrityResultIssue(Message):
    """PVA -> IVF: the M2ME's integrity validation result (004 c3 s10; 004 2nd change)."""

    platform_id: str
    passed: bool
    validated_components: tuple[str, ...]
    pcr_digest: bytes | None
    validated_at: float


@dataclass(frozen=True, kw_only=True, repr=False)
class IntegrityResultAck(Message):
    """IVF -> PVA."""

    platform_id: str
    stored: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class IntegrityInquiry(Message):
    """NSHO -> IVF: is there an integrity result for this platform? (004 c4 s3)."""

    platform_id: str
    required_components: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, repr=False)
class IntegrityInquiryResponse(Message):
    """IVF -> NSHO: hit (with the result) or miss (004 c4 s4)."""

    platform_id: str
    available: bool
    passed: bool = False
    validated_components: tuple[str, ...] = ()
    pcr_digest: bytes | None = None
    validated_at: float | None = None
    expires_at: float | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class SupplierNotice(Message):
    """M2MES -> PVA: what the supplier changed that a PVA may have kept: a PfC revoked
    (``revoked_serial``) or new reference values published for ``model``."""

    revoked_serial: int | None = None
    model: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class SupplierNoticeAck(Message):
    """PVA -> M2MES."""


# ---------------------------------------------------------------------------------------
# Download and provisioning (000 s16-s21; 004 c3 s11-s14; 004 c4 s6-s13)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, repr=False)
class ProvisioningAuthorisation(Message):
    """SHO -> RO (DPF): the M2MSIMMobj and the authorisation to provision it (000 s17)."""

    pcid: str
    m2msimmobj: bytes  # TNDS XML, the MCIM inside sealed for the M2ME's TPM


@dataclass(frozen=True, kw_only=True, repr=False)
class ProvisioningAuthorisationAck(Message):
    """DPF -> SHO: accepted, or refused with the reason."""

    pcid: str
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class ManagementSessionOpen(Message):
    """M2ME -> DPF: open an OMA DM management session (000 s11). ``sho_address`` names the
    SHO the M2ME was told to take its MCIM from (bootstrap, or the owner's re-provisioning
    instruction, 004 c4 s2)."""

    pcid: str
    m2me_address: str
    sho_address: str
    bootstrap_token: bytes = b""   # from the DRF's bootstrap message

    SECRET_FIELDS = _hide("bootstrap_token")


@dataclass(frozen=True, kw_only=True, repr=False)
class ManagementSessionAccept(Message):
    """DPF -> M2ME."""

    pcid: str
    session_id: str


@dataclass(frozen=True, kw_only=True, repr=False)
class M2MSIMMobjDownload(Message):
    """DPF -> M2ME: the whole MCIM object in one message, checked whole by the M2ME (000 s18,
    atomic as 004 c4 s7 requires)."""

    pcid: str
    session_id: str
    m2msimmobj: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class DownloadReceipt(Message):
    """M2ME -> DPF: the object arrived whole and its integrity checked, or why not."""

    pcid: str
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class ProvisioningStatus(Message):
    """M2ME -> DPF (000 s20) and DPF -> SHO (000 s21): success/failure of the provisioning."""

    pcid: str
    success: bool
    detail: str = ""


@dataclass(frozen=True, kw_only=True, repr=False)
class ProvisioningStatusAck(Message):
    """DPF -> M2ME, SHO -> DPF."""

    pcid: str


# ---------------------------------------------------------------------------------------
# Change of SHO (004 c4, 5.1.3.8.4.2 and 5.1.3.8.4.3)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, repr=False)
class SubscriptionChangeRequest(Message):
    """M2ME subscriber -> NSHO: the M2ME's parameters (004 c4 s1, c4p s1)."""

    pcid: str
    platform_id: str
    m2me_address: str | None = None
    old_sho_address: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class SubscriptionChangeAck(Message):
    """NSHO -> M2ME subscriber, with the key that will sign the new SHO's M2MSIMMobj."""

    pcid: str
    accepted: bool
    sho_verify_key: bytes = b""  # DER SubjectPublicKeyInfo
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class ReprovisioningInstruction(Message):
    """M2ME subscriber -> M2ME: re-provision from this new SHO (004 c4 s2, c4p s2)."""

    pcid: str
    new_sho_address: str
    new_sho_verify_key: bytes  # DER SubjectPublicKeyInfo: checks the new SHO's M2MSIMMobj
    pristine: bool = False     # 5.1.3.8.4.3: go back to the pristine state first
    nonce: bytes = b""         # fresh per instruction: the M2ME refuses one it has seen
    signature: bytes = b""     # the subscriber's ECDSA over signed_bytes(); empty: unsigned

    def signed_bytes(self) -> bytes:
        """What the subscriber signs: every field that says what to do, for which M2ME."""
        parts = [b"mcim-hil reprovisioning v1", self.pcid.encode(), self.new_sho_address.encode(), self.new_sho_verify_key, b"\x01" if self.pristine else b"\x00",
                 self.nonce]
        return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


@dataclass(frozen=True, kw_only=True, repr=False)
class ReprovisioningAck(Message):
    """M2ME -> M2ME subscriber."""

    pcid: str
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class CredentialsDiscarded(Message):
    """M2ME -> OSHO: the current AVs and MCIM credentials of the old SHO are discarded (004 c4 s9)."""

    pcid: str
    imsi: str


@dataclass(frozen=True, kw_only=True, repr=False)
class DiscardAcknowledgement(Message):
    """OSHO -> M2ME: receipt of the discard notice (004 c4 s10)."""

    pcid: str
    imsi: str
    acknowledged: bool
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class DiscardAcknowledgementRelay(Message):
    """M2ME -> DPF: the OSHO's acknowledgement, for the DPF to relay to the NSHO (004 c4 s11)."""

    pcid: str
    imsi: str
    acknowledged: bool
    old_sho_address: str


@dataclass(frozen=True, kw_only=True, repr=False)
class DiscardConfirmation(Message):
    """DPF -> NSHO: the relayed acknowledgement, privacy-filtered: nothing names the old SHO
    or its IMSI (004 c4 s11)."""

    pcid: str
    old_credentials_discarded: bool


@dataclass(frozen=True, kw_only=True, repr=False)
class DiscardConfirmationAck(Message):
    """NSHO -> DPF."""

    pcid: str


# 5.1.3.8.4's later arrows live in their own module (this one would hold two jobs); re-exported
from .messages_change import *  # noqa: E402,F401,F403


ALL_MESSAGES: tuple[type[Message], ...] = tuple(
    cls for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, Message) and cls is not Message
)
