"""The PVA: validates the authenticity and integrity of an M2ME for an SHO (000 steps 13-15).

It issues a fresh nonce and a credential challenge (MakeCredential to the M2ME's EK, bound to
its AK) per validation, gets the reference values of the PfC's model from the M2MES and asks
the M2MES's OCSP responder about the PfC, all as messages; runs the checks of
:class:`~mcim_hil.network.attestation.PlatformValidator`; answers the SHO; and when the SHO
asks for it (seed 004, 3rd change step 10) issues the integrity result to the IVF. The
activation secret it expects never leaves the PVA.

Two kinds of validation (seed 004, 4th change steps 3-5):
- authenticity only, when a new SHO takes the integrity result from the IVF: EK certificate
  chain, AK bound to the EK, PfC chain and status, and a quote and a certification by the
  certified AK over the SHO's fresh nonce. No reference values are fetched.
- authenticity and integrity: the above plus PCR selection and digest, event log replay and
  the reference values of the PfC's model.

What it keeps between validations, each with the rule that keeps it correct:
- EK certificates and PfCs whose path verified (by SHA-256 of their DER): not walked again while
  every certificate of the path is within its validity; a PfC's entry is dropped when the M2MES
  announces its revocation (SupplierNotice); signatures of CA certificates likewise;
- OCSP responses per PfC serial: until the response's nextUpdate, or until the M2MES announces
  a revocation (SupplierNotice), whichever comes first; a revoked status is never forgotten early;
- reference values per model, signature checked once: until the M2MES announces new ones;
  those of an updated platform's state (its PfC asserts it, 5.1.3.6.8 NOTE 2) per (model, state):
  a state's values never change, and they are checked against the state the PfC asserts;
- the latest PfC of an updated platform, obtained in advance (5.1.3.6.8: "the PVA must be able to
  obtain the new PfC"): pushed by the M2MES, or fetched from it when a validation presents another
  PfC than the one held (or one asserting a state while none is held). A presented PfC that is not
  the platform's current one fails ``pfc_current``. Learning a new PfC supersedes the platform's
  result at the IVF: its components changed (004 c4 s3 NOTE).

``counters()``: authenticity checks, integrity validations, OCSP and reference-values requests,
cache hits, and the CPU seconds spent in its handlers (also in the record's meta["pva"]).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from typing import Any, Callable

from cryptography import x509

from mcim_hil.network.attestation import (
    AttestationError,
    Check,
    PlatformValidator,
    ReferenceValues,
    ValidationResult,
)
from mcim_hil.network.bus import Bus, Entity, Retransmissions
from mcim_hil.network.messages import (
    Challenge,
    ChallengeRequest,
    IntegrityResultAck,
    IntegrityResultIssue,
    Message,
    OcspRequest,
    OcspResponse,
    ReferenceValuesRequest,
    ReferenceValuesResponse,
    SupplierNotice,
    SupplierNoticeAck,
    ValidationRequest,
    ValidationResultMessage,
)
from mcim_hil.network.messages_update import (
    IntegrityResultSupersede,
    IntegrityResultSupersedeAck,
    PlatformCredentialFetch,
    PlatformCredentialFetchResponse,
    PlatformCredentialNotice,
    PlatformCredentialNoticeAck,
    StateReferenceValuesRequest,
    expected_state,
)
from mcim_hil.network.pki import PkiError, PlatformIdentity, platform_identity
from mcim_hil.network.store import Store, Tables

NONCE_LIFETIME_S = 120.0
# DER of the OID tcg-at-platformVersion (2.23.133.5.1.5): a PfC holding it asserts an updated state
_ASSERTS_STATE = bytes.fromhex("0606678105050105")


class _ClockHistory(MutableMapping[str, tuple[int, int]]):
    """The last (resetCount, restartCount) seen per platform, kept in the PVA's table."""

    def __init__(self, db: Tables) -> None:
        self.db = db

    def __getitem__(self, platform_id: str) -> tuple[int, int]:
        row = self.db.get("clock", platform_id=platform_id)
        if row is None:
            raise KeyError(platform_id)
        return row["reset_count"], row["restart_count"]

    def __setitem__(self, platform_id: str, counts: tuple[int, int]) -> None:
        self.db.put("clock", platform_id=platform_id, reset_count=counts[0], restart_count=counts[1],
                    seen_at=time.time())

    def __delitem__(self, platform_id: str) -> None:
        if not self.db.delete("clock", platform_id=platform_id):
            raise KeyError(platform_id)

    def __iter__(self) -> Iterator[str]:
        return iter([row["platform_id"] for row in self.db.select("clock")])

    def __len__(self) -> int:
        return len(self.db.select("clock"))


class Pva(Entity):
    """Platform validation authority."""

    def __init__(self, bus: Bus, store: Store, *, address: str, m2mes_address: str,
                 m2mes_ca: x509.Certificate, ek_roots: Sequence[x509.Certificate],
                 pcr_selection: Sequence[int], ivf_address: str | None = None,
                 ek_intermediates: Sequence[x509.Certificate] = (),
                 nonce_lifetime_s: float = NONCE_LIFETIME_S, clock: Callable[[], float] = time.time) -> None:
        super().__init__(bus, address)
        self.m2mes_address = m2mes_address
        self.ivf_address = ivf_address
        self.clock = clock
        self._m2mes_ca = m2mes_ca
        self.db = store.entity("pva")
        self.db.define("clock", {"platform_id": "TEXT", "reset_count": "INTEGER", "restart_count": "INTEGER",
                                 "seen_at": "REAL"}, "platform_id")
        self.db.define("validations", {"nonce": "BLOB", "platform_id": "TEXT", "requester": "TEXT",
                                       "passed": "INTEGER", "integrity_checked": "INTEGER",
                                       "result": "JSON", "validated_at": "REAL"}, "nonce")
        self.db.define("pfcs", {"platform_id": "TEXT", "pfc": "BLOB", "serial": "TEXT", "state": "TEXT",
                                "obtained": "TEXT", "obtained_at": "REAL"}, "platform_id")
        self.validator = PlatformValidator(list(ek_roots), m2mes_ca, self._ask_ocsp, pcr_selection, {},
                                           ek_intermediates=list(ek_intermediates),
                                           nonce_lifetime=nonce_lifetime_s,
                                           clock_history=_ClockHistory(self.db))
        # nonce -> expected activation secret; in memory only (a secret), single use
        self._secrets: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        self._reference: dict[str | None, ReferenceValues] = {}  # per model, until the M2MES publishes anew
        self._counts: Counter[str] = Counter()
        self._cpu_s = 0.0
        self._local = threading.local()  # CPU time spent in peers' handlers, per thread
        self._pfc_platforms: set[str] = set()   # platforms whose PfC this PVA obtained (pfcs table)
        self.on(ChallengeRequest, self._challenge)
        # a ValidationRequest sent again because its result was lost or late gets that result: its
        # nonce is spent, so validating it twice would refuse the M2ME as a replay
        self._retransmissions = Retransmissions(bus)
        self.on(ValidationRequest, lambda msg: self._retransmissions.answer(msg, self._validate))
        self.on(SupplierNotice, self._supplier_notice)
        self.on(PlatformCredentialNotice, self._pfc_notice)

    def counters(self) -> dict[str, float | int]:
        """What this PVA did so far (a lab's load figures)."""
        with self._lock:
            counts = dict(self._counts)
            cpu = self._cpu_s
        return {"authenticity_checks": counts.get("authenticity_checks", 0),
                "integrity_validations": counts.get("integrity_validations", 0),
                "challenges": counts.get("challenges", 0),
                "ocsp_requests": self.validator.ocsp_requests,
                "ocsp_cache_hits": self.validator.ocsp_cache_hits,
                "certificate_cache_hits": self.validator.certificate_cache_hits,
                "reference_values_requests": counts.get("reference_values_requests", 0),
                "reference_values_cache_hits": counts.get("reference_values_cache_hits", 0),
                "ivf_issues": counts.get("ivf_issues", 0),
                "pfc_pushes": counts.get("pfc_pushes", 0),
                "pfc_fetches": counts.get("pfc_fetches", 0),
                "cpu_s": round(cpu, 6)}

    def request(self, message: Message, *kinds: type) -> Any:
        """Send, not counting the peer's handling (same thread on this bus) as the PVA's CPU."""
        started = time.thread_time()
        try:
            return super().request(message, *kinds)
        finally:
            self._local.outside = getattr(self._local, "outside", 0.0) + time.thread_time() - started

    def _account(self, started_cpu: float) -> None:
        outside = getattr(self._local, "outside", 0.0)
        self._local.outside = 0.0
        spent = time.thread_time() - started_cpu - outside
        with self._lock:
            self._cpu_s += spent
        self._publish_counters()

    def _publish_counters(self) -> None:
        if self.bus.record is not None:
            self.bus.record.meta["pva"] = self.counters()

    @property
    def pcr_selection(self) -> tuple[int, ...]:
        return self.validator.pcr_selection

    def validations(self, platform_id: str) -> list[dict]:
        """Past validations of a platform (verdicts and checks), oldest first."""
        rows = self.db.select("validations", platform_id=platform_id)
        return sorted(rows, key=lambda r: r["validated_at"])

    # -- handlers ------------------------------------------------------------------------------
    def _challenge(self, msg: ChallengeRequest) -> Message:
        self._local.outside = 0.0
        started = time.thread_time()
        nonce = self.validator.new_nonce()
        blob = b""  # the AK's binding to this EK already proven, its PfC still verified: no MakeCredential
        if not self.validator.binding_known(msg.ek_public, msg.ak_public, msg.pfc):
            challenge, secret = self.validator.credential_challenge(msg.ek_public, msg.ak_public)
            blob = challenge.to_bytes()
            with self._lock:
                self._secrets[nonce] = secret
                self._counts["challenges"] += 1
        self._account(started)
        return Challenge(sender=self.address, recipient=msg.sender, platform_id=msg.platform_id, nonce=nonce,
                         pcr_selection=self.validator.pcr_selection,
                         credential_challenge=blob)

    def _validate(self, msg: ValidationRequest) -> Message:
        self._local.outside = 0.0
        started = time.thread_time()
        with self._lock:
            secret = self._secrets.pop(msg.nonce, b"")  # unknown nonce: nonce_fresh and ak_bound_to_ek fail
            self._counts["authenticity_checks"] += 1
            if msg.check_integrity:
                self._counts["integrity_validations"] += 1
        current = None   # the PfC obtained in advance, or fetched (5.1.3.6.8); nothing to do for most
        if msg.m2me_identity in self._pfc_platforms or _ASSERTS_STATE in msg.pfc:
            current = self._pfc_current(msg.pfc)
        # authenticity only (004 c4 s4): the reference values are not needed, so not fetched
        reference = self._reference_values(msg.pfc) if msg.check_integrity else None
        result = self.validator.validate(msg.evidence, msg.nonce, secret, check_integrity=msg.check_integrity,
                                         reference_values=reference)
        result = _with_request_check(result, msg)
        if current is not None:
            result = _with_check(result, current)
        if msg.required_components and result.integrity_checked:
            # the result vouches for what this SHO asked to have validated (004 c4 s3 NOTE)
            wanted = set(msg.required_components)
            result = dataclasses.replace(result, validated_components=[
                c for c in result.validated_components if c in wanted])
        validated_at = self.clock()
        self.db.put("validations", nonce=msg.nonce, platform_id=result.platform_id, requester=msg.sender,
                    passed=result.passed, integrity_checked=result.integrity_checked, result=result.to_dict(),
                    validated_at=validated_at)
        self._account(started)
        if self.ivf_address is not None and result.integrity_checked and msg.issue_to_ivf:
            self._issue_to_ivf(result, validated_at)
            self._publish_counters()
        return ValidationResultMessage(sender=self.address, recipient=msg.sender, pcid=msg.pcid, result=result)

    def _supplier_notice(self, msg: SupplierNotice) -> Message:
        if msg.sender == self.m2mes_address:
            if msg.revoked_serial is not None:
                self.validator.forget_status(msg.revoked_serial)
            if msg.model is not None:
                with self._lock:
                    self._reference.pop(msg.model, None)
        return SupplierNoticeAck(sender=self.address, recipient=msg.sender)

    # -- a platform's new PfC after a SW/FW update (5.1.3.6.8, NOTE 2) -------------------------
    def pfc_of(self, platform_id: str) -> dict | None:
        """The PfC this PVA holds for an updated platform (DER, serial, state, pushed or fetched)."""
        return self.db.get("pfcs", platform_id=platform_id)

    def _pfc_notice(self, msg: PlatformCredentialNotice) -> Message:
        if msg.sender == self.m2mes_address and msg.pfc:
            with self._lock:
                self._counts["pfc_pushes"] += 1
            self._learn_pfc(msg.platform_id, msg.pfc, msg.superseded_serial, msg.issued_at, msg.reason, "pushed")
        return PlatformCredentialNoticeAck(sender=self.address, recipient=msg.sender, platform_id=msg.platform_id)

    def _learn_pfc(self, platform_id: str, pfc_der: bytes, superseded: int | None, issued_at: float,
                   reason: str, how: str) -> dict:
        pfc = x509.load_der_x509_certificate(pfc_der)
        state = platform_identity(pfc).version
        row = {"platform_id": platform_id, "pfc": pfc_der, "serial": str(pfc.serial_number), "state": state,
               "obtained": how, "obtained_at": self.clock()}
        self.db.put("pfcs", **row)
        self._pfc_platforms.add(platform_id)
        if superseded is not None:
            self.validator.forget_status(superseded)   # the old PfC's cached 'good' and binding go
            if self.ivf_address is not None:
                self.request(IntegrityResultSupersede(
                    sender=self.address, recipient=self.ivf_address, platform_id=platform_id, before=issued_at,
                    reason=f"{reason}: the components differ; PfC serial {superseded:#x} superseded by "
                           f"{pfc.serial_number:#x}"), IntegrityResultSupersedeAck)
        return row

    def _pfc_current(self, pfc_der: bytes) -> Check | None:
        """Whether the presented PfC is the platform's current one (asked only for a platform whose
        PfC this PVA holds, or a PfC asserting an updated state); None when it does not parse."""
        try:
            pfc = x509.load_der_x509_certificate(pfc_der)
            identity = platform_identity(pfc)
        except (ValueError, PkiError):
            return None  # the PfC checks say what is wrong with it
        held = self.pfc_of(identity.platform_id)
        serial = str(pfc.serial_number)
        if held is not None and held["serial"] == serial:
            return Check("pfc_current", True, f"the PfC the PVA obtained in advance ({held['obtained']})")
        # a version mismatch: ask the supplier which PfC is the platform's current one
        with self._lock:
            self._counts["pfc_fetches"] += 1
        reply = self.request(PlatformCredentialFetch(sender=self.address, recipient=self.m2mes_address,
                                                     platform_id=identity.platform_id),
                             PlatformCredentialFetchResponse)
        if not reply.pfc:
            return Check("pfc_current", False, f"the M2MES has no PfC for {identity.platform_id}: {reply.reason}")
        fetched = self._learn_pfc(identity.platform_id, reply.pfc, reply.superseded_serial, reply.issued_at,
                                  reply.reason, "fetched")
        if fetched["serial"] != serial:
            return Check("pfc_current", False, f"the PfC presented (serial {pfc.serial_number:#x}) is not the "
                                               f"platform's current one (serial {int(fetched['serial']):#x}, "
                                               f"fetched from the M2MES: {reply.reason})")
        return Check("pfc_current", True, f"fetched from the M2MES on a version mismatch ({reply.reason})")

    # -- talking to the M2MES and the IVF -----------------------------------------------------
    def _ask_ocsp(self, request_der: bytes) -> bytes:
        reply = self.request(OcspRequest(sender=self.address, recipient=self.m2mes_address,
                                         request_der=request_der), OcspResponse)
        return reply.response_der

    def _reference_values(self, pfc_der: bytes) -> ReferenceValues:
        """The reference values of the PfC's model: kept per model, else fetched from the M2MES
        and their signature checked."""
        try:
            identity: PlatformIdentity | None = platform_identity(x509.load_der_x509_certificate(pfc_der))
        except (ValueError, PkiError):
            identity = None  # the PfC checks will say what is wrong with it
        model = identity.model if identity else None
        if identity is not None and identity.version is not None:
            return self._state_reference_values(identity.model, identity.version)
        with self._lock:
            kept = self._reference.get(model)
            if kept is not None:
                self._counts["reference_values_cache_hits"] += 1
                return kept
            self._counts["reference_values_requests"] += 1
        reply = self.request(ReferenceValuesRequest(sender=self.address, recipient=self.m2mes_address,
                                                    model=model), ReferenceValuesResponse)
        values = ReferenceValues(dict(reply.components), reply.model, reply.signature)
        self.validator.update_reference_values(values, require_signed=True)
        accepted = self.validator.reference_values
        with self._lock:
            self._reference[model] = accepted
        return accepted

    def _state_reference_values(self, model: str, state: str) -> ReferenceValues:
        """The reference values of the state an updated platform's PfC asserts: fetched once per
        (model, state), signed by the M2MES and hashing to that state (else none: every component
        then fails reference_values)."""
        key = f"{model}\0{state}"
        with self._lock:
            kept = self._reference.get(key)
            if kept is not None:
                self._counts["reference_values_cache_hits"] += 1
                return kept
            self._counts["reference_values_requests"] += 1
        reply = self.request(StateReferenceValuesRequest(sender=self.address, recipient=self.m2mes_address,
                                                         model=model, state=state), ReferenceValuesResponse)
        values = ReferenceValues(dict(reply.components), model, reply.signature)
        try:
            values.verify(self._m2mes_ca.public_key())
        except AttestationError:   # not the supplier's: no component has a reference value
            return ReferenceValues({}, model)
        if expected_state(dict(values.components), model) != state:
            return ReferenceValues({}, model)   # not the state the PfC asserts
        with self._lock:
            self._reference[key] = values
        return values

    def _issue_to_ivf(self, result: ValidationResult, validated_at: float) -> None:
        # 004 c3 s10: the PVA issues the integrity validation result to the IVF
        with self._lock:
            self._counts["ivf_issues"] += 1
        self.request(IntegrityResultIssue(sender=self.address, recipient=self.ivf_address or "",
                                          platform_id=result.platform_id, passed=result.passed,
                                          validated_components=tuple(result.validated_components),
                                          pcr_digest=result.pcr_digest, validated_at=validated_at),
                     IntegrityResultAck)


def _with_request_check(result: ValidationResult, msg: ValidationRequest) -> ValidationResult:
    """The SHO's request must speak of the same platform and PfC as the evidence it forwards."""
    problems: list[str] = []
    if msg.pfc != msg.evidence.pfc:
        problems.append("the PfC in the request differs from the one in the evidence")
    if msg.m2me_identity != msg.evidence.platform_id:
        problems.append(f"request names {msg.m2me_identity!r}, evidence {msg.evidence.platform_id!r}")
    check = Check("request_matches_evidence", not problems,
                  "; ".join(problems) or "request and evidence name the same platform and PfC")
    return dataclasses.replace(result, checks=[*result.checks, check], passed=result.passed and not problems)


def _with_check(result: ValidationResult, check: Check) -> ValidationResult:
    return dataclasses.replace(result, checks=[*result.checks, check], passed=result.passed and check.passed)


def ek_roots_from(paths: Iterable[str]) -> list[x509.Certificate]:
    """Load pinned EK root certificates (PEM or DER files, e.g. swtpm's local CA)."""
    roots = []
    for path in paths:
        with open(path, "rb") as handle:
            data = handle.read()
        if b"-----BEGIN" in data:
            roots.extend(x509.load_pem_x509_certificates(data))
        else:
            roots.append(x509.load_der_x509_certificate(data))
    return roots
