"""The checks of a platform validation (TR 33.812 5.1.3.6.8, the PVA), one method each, and
their verdict: what a faithful verifier concludes from the evidence an M2ME's agent sends.

``_Validation`` is one run of the checks over one piece of evidence; the validator that owns
the nonces, challenges, caches and counters it consults is ``attestation.PlatformValidator``
(which re-exports every name here). Checks and their order (``CHECKS``): see facts/tpm.md
"What a faithful platform validation checks". Authenticity only (seed 004 change 4, the IVF
supplying the integrity result) runs the checks outside ``INTEGRITY_CHECKS``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mcim_hil.network import pki
from mcim_hil.network.evidence import (
    DECRYPT,
    FIXED_PARENT,
    FIXED_TPM,
    HASH_NAMES,
    PCR_BANK,
    RESTRICTED,
    SENSITIVE_DATA_ORIGIN,
    SIGN_ENCRYPT,
    TPM_ALG_ECC,
    TPM_ALG_NULL,
    TPM_ALG_RSA,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_CERTIFY,
    TPM_ST_ATTEST_QUOTE,
    USER_WITH_AUTH,
    _ATTRIBUTE_NAMES,
    _CURVES,
    _U16,
    Attest,
    Evidence,
    ReferenceValues,
    TpmPublic,
    TpmStructureError,
    _hash_name,
    extend,
    parse_attest,
    parse_public,
    pcr_initial_value,
    verify_tpm_signature,
)

if TYPE_CHECKING:
    from mcim_hil.network.attestation import PlatformValidator


AK_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN_ENCRYPT
STORAGE_KEY_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | DECRYPT
EK_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | DECRYPT
# the TRE's unseal authority: TPM-made (a random name), never leaves the TPM, used by its authValue
AUTHORITY_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | USER_WITH_AUTH
TPM_RH_OWNER = 0x40000001   # TPM 2.0 Part 2, 7.4: a hierarchy's qualified name is its handle
# PC Client PFP: PCRs 0-7 hold the platform firmware's boot measurements (SRTM). Their event log
# (UEFI) is not part of the M2ME's: the quote binds them and the seal follows them, nothing replays them.
PLATFORM_BOOT_PCRS = frozenset(range(8))

CHECKS = ("ek_certificate_chain", "ek_public_matches_certificate", "ak_attributes", "ak_bound_to_ek",
          "nonce_fresh", "quote_signature", "quote_nonce", "pcr_selection", "pcr_digest",
          "event_log_replay", "reference_values", "clock", "pfc_signature", "pfc_binds_ak",
          "pfc_names_platform", "pfc_status_ocsp", "storage_key_certified", "unseal_authority_certified")
INTEGRITY_CHECKS = frozenset({"pcr_selection", "pcr_digest", "event_log_replay", "reference_values"})
_AUTHENTICITY_CHECKS = tuple(name for name in CHECKS if name not in INTEGRITY_CHECKS)

# --- the verdict ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class ValidationResult:
    """The PVA's verdict. ``pcr_values`` (the validated PCR state) and ``storage_key_public``
    are what the SHO seals the MCIM to."""
    passed: bool
    checks: list[Check]
    validated_components: list[str]
    platform_id: str
    pcr_digest: bytes | None
    storage_key_public: bytes | None
    integrity_checked: bool = True
    pcr_values: dict[int, bytes] = field(default_factory=dict)
    model: str | None = None
    unseal_authority_name: bytes | None = None

    def check(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r} in this result")

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return f"PASS {self.platform_id}: {len(self.checks)} checks"
        return f"FAIL {self.platform_id}: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_dict() for c in self.checks],
                "validated_components": list(self.validated_components), "platform_id": self.platform_id,
                "pcr_digest": self.pcr_digest.hex() if self.pcr_digest is not None else None,
                "storage_key_public": self.storage_key_public.hex() if self.storage_key_public is not None else None,
                "integrity_checked": self.integrity_checked,
                "pcr_values": {str(k): v.hex() for k, v in sorted(self.pcr_values.items())},
                "model": self.model,
                "unseal_authority_name": self.unseal_authority_name.hex() if self.unseal_authority_name else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationResult:
        def opt(value: str | None) -> bytes | None:
            return bytes.fromhex(value) if value is not None else None
        return cls(passed=bool(data["passed"]),
                   checks=[Check(c["name"], bool(c["passed"]), c["detail"]) for c in data["checks"]],
                   validated_components=list(data["validated_components"]),
                   platform_id=data["platform_id"], pcr_digest=opt(data.get("pcr_digest")),
                   storage_key_public=opt(data.get("storage_key_public")),
                   integrity_checked=bool(data.get("integrity_checked", True)),
                   pcr_values={int(k): bytes.fromhex(v) for k, v in data.get("pcr_values", {}).items()},
                   model=data.get("model"), unseal_authority_name=opt(data.get("unseal_authority_name")))


_PASSED: dict[tuple[str, str], Check] = {}


def _passed(name: str, detail: str) -> Check:
    """A PASS verdict; a Check is immutable, so equal ones are shared (most details are the
    same for every M2ME: a validation then builds no Check object). Bounded."""
    key = (name, detail)
    check = _PASSED.get(key)
    if check is None:
        check = Check(name, True, detail)
        if len(_PASSED) < 4096:
            _PASSED[key] = check
    return check


class _Fail(Exception):
    """A check's verdict is FAIL; the message is the check's detail."""


@dataclass(frozen=True, slots=True)
class _VerifiedCertificate:
    """What a PVA keeps of an EK certificate or a PfC whose path verified: valid while ``at`` is
    inside every certificate's validity on the path; a PfC's entry goes with its revocation."""
    not_before: Any
    not_after: Any
    detail: str
    key: bytes                                   # the certified public key, encoded
    serial: int
    identity: pki.PlatformIdentity | None = None  # a PfC's platform

    def holds(self, at: Any) -> bool:
        return self.not_before <= at <= self.not_after



# --- the checks ---------------------------------------------------------------------------

class _Validation:
    """One run of the checks over one piece of evidence: parses each structure once, and
    keeps a parse failure as the FAIL detail of every check that needs the structure."""

    def __init__(self, validator: PlatformValidator, evidence: Evidence, nonce: bytes, secret: bytes,
                 nonce_problem: str | None, reference: ReferenceValues) -> None:
        self.v = validator
        self.reference = reference
        self.evidence = evidence
        self.nonce = nonce
        self.secret = secret
        self.nonce_problem = nonce_problem
        self.now = pki.utc_now()
        self.results: dict[str, Check] = {}
        self.matched: list[str] = []
        self.identity: pki.PlatformIdentity | None = None
        self._parsed: dict[str, Any] = {}
        self._facts: dict[tuple[str, bytes], _VerifiedCertificate | None] = {}  # (kind, DER) -> facts
        self.proven_binding = False  # ActivateCredential answered this validation's challenge
        self._digests: dict[bytes, bytes] = {}  # SHA-256 of the evidence's certificates, once each

    # running and the verdict

    def run(self, name: str) -> None:
        try:
            self.results[name] = _passed(name, getattr(self, name)())
        except _Fail as exc:
            self.results[name] = Check(name, False, str(exc))
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm, pki.PkiError) as exc:
            self.results[name] = Check(name, False, f"{type(exc).__name__}: {exc}")

    def passed(self, *names: str) -> bool:
        return all(name in self.results and self.results[name].passed for name in names)

    def result(self, check_integrity: bool) -> ValidationResult:
        checks = [self.results[name] for name in CHECKS if name in self.results]
        if self.proven_binding and self.passed("ek_certificate_chain", "ek_public_matches_certificate",
                                               "ak_attributes", "ak_bound_to_ek", "pfc_signature",
                                               "pfc_binds_ak", "pfc_status_ocsp") \
                and self._verified("pfc", self.evidence.pfc) is not None:
            self.v._keep_binding(self.ek.name, self.ak.name, self._digest(self.evidence.pfc))
        # components count as validated only when the quote vouches for the log that names them
        integrity_trusted = check_integrity and self.passed(
            "nonce_fresh", "quote_signature", "quote_nonce", "pcr_selection", "pcr_digest", "event_log_replay",
            "reference_values")
        try:
            digest: bytes | None = self.quote.pcr_digest
        except _Fail:
            digest = None
        return ValidationResult(
            passed=all(c.passed for c in checks), checks=checks,
            validated_components=list(self.matched) if integrity_trusted else [],
            platform_id=self.identity.platform_id if self.identity else self.evidence.platform_id,
            pcr_digest=digest,
            storage_key_public=self.evidence.storage_key_public if self.passed("storage_key_certified") else None,
            integrity_checked=check_integrity,
            pcr_values=dict(self.evidence.pcr_values) if integrity_trusted else {},
            model=self.identity.model if self.identity else None,
            unseal_authority_name=self.authority.name if self.passed("unseal_authority_certified") else None)

    # parsed structures

    def _parse(self, what: str, make: Callable[[], Any]) -> Any:
        value = self._parsed.get(what)
        if value is not None and value.__class__ is not _Fail:
            return value
        if what not in self._parsed:
            try:
                self._parsed[what] = make()
            except (ValueError, TypeError, UnsupportedAlgorithm, pki.PkiError) as exc:
                self._parsed[what] = _Fail(f"{what} does not parse: {exc}")
        value = self._parsed[what]
        if isinstance(value, _Fail):
            raise value
        return value

    @property
    def ek_certificate(self) -> x509.Certificate:
        return self._parse("EK certificate", lambda: x509.load_der_x509_certificate(self.evidence.ek_certificate))

    @property
    def ek(self) -> TpmPublic:
        value = self._parsed.get("EK public area")  # parsed already: the common case, no closure
        if value is not None and value.__class__ is not _Fail:
            return value
        return self._parse("EK public area", lambda: self.v._area(self.evidence.ek_public))

    @property
    def ak(self) -> TpmPublic:
        value = self._parsed.get("AK public area")  # parsed already: the common case, no closure
        if value is not None and value.__class__ is not _Fail:
            return value
        return self._parse("AK public area", lambda: self.v._area(self.evidence.ak_public))

    @property
    def ak_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        return self._parse("AK public key", lambda: self.v._key(self.evidence.ak_public, self.ak))

    @property
    def quote(self) -> Attest:
        value = self._parsed.get("quote")  # parsed already: the common case, no closure
        if value is not None and value.__class__ is not _Fail:
            return value
        return self._parse("quote", lambda: parse_attest(self.evidence.quote_attest))

    @property
    def storage_key(self) -> TpmPublic:
        return self._parse("storage key public area", lambda: self.v._area(self.evidence.storage_key_public))

    @property
    def authority(self) -> TpmPublic:
        # parsed each time, not kept in the validator's area cache: sized for EK, AK and storage key
        return self._parse("unseal authority public area", lambda: parse_public(self.evidence.authority_public))

    @property
    def pfc(self) -> x509.Certificate:
        return self._parse("PfC", lambda: x509.load_der_x509_certificate(self.evidence.pfc))

    @property
    def pfc_identity(self) -> pki.PlatformIdentity:
        return self._parse("PfC platform identity", lambda: pki.platform_identity(self.pfc))

    # the checks, in CHECKS order; each returns its PASS detail or raises _Fail

    def _digest(self, der: bytes) -> bytes:
        digest = self._digests.get(der)
        if digest is None:
            digest = self._digests[der] = hashlib.sha256(der).digest()
        return digest

    def _verified(self, kind: str, der: bytes) -> _VerifiedCertificate | None:
        key = (kind, der)  # several checks ask: the DER's hash is computed once, its digest once
        try:
            return self._facts[key]
        except KeyError:
            facts = self._facts[key] = self.v._known_certificate(kind, self._digest(der), self.now)
            return facts

    def _keep(self, kind: str, der: bytes, path: list[x509.Certificate], detail: str,
              identity: pki.PlatformIdentity | None = None) -> None:
        leaf = path[0]
        facts = _VerifiedCertificate(max(c.not_valid_before_utc for c in path),
                                     min(c.not_valid_after_utc for c in path), detail, _certificate_key(leaf),
                                     leaf.serial_number, identity)
        self._facts[(kind, der)] = facts
        self.v._keep_certificate(kind, self._digest(der), facts)

    def ek_certificate_chain(self) -> str:
        known = self._verified("ek", self.evidence.ek_certificate)
        if known is not None:
            return known.detail
        try:
            path = pki.verify_chain(self.ek_certificate, self.v._ek_intermediates, self.v._ek_roots, at=self.now,
                                    eku=pki.OID_EK_CERTIFICATE, memo=self.v._memo)
        except pki.ChainError as exc:
            raise _Fail(f"EK certificate path broken at {exc}") from exc
        detail = sys.intern("EK certificate chains to " + self.v._name_of(path[-1]))  # one per CA, kept per M2ME
        self._keep("ek", self.evidence.ek_certificate, path, detail)
        return detail

    def ek_public_matches_certificate(self) -> str:
        ek = self.ek
        if not ek.has(EK_REQUIRED) or ek.attributes & SIGN_ENCRYPT:
            raise _Fail(f"EK attributes {ek.attribute_names()} are not those of an endorsement key")
        known = self._verified("ek", self.evidence.ek_certificate)
        if not (known.key == _area_key(ek) if known is not None else _certifies(self.ek_certificate, ek)):
            raise _Fail("EK public area holds a different key than the EK certificate")
        return "EK public area holds the certified key"

    def ak_attributes(self) -> str:
        ak = self.ak
        if not ak.has(AK_REQUIRED):
            missing = [name for bit, name in _ATTRIBUTE_NAMES.items() if AK_REQUIRED & bit and not ak.attributes & bit]
            raise _Fail("AK lacks " + ", ".join(missing))
        if ak.attributes & DECRYPT:
            raise _Fail("AK is also a decryption key")
        if ak.type not in (TPM_ALG_ECC, TPM_ALG_RSA):
            raise _Fail(f"AK type {ak.type:#06x} is not ECC or RSA")
        return "restricted signing key: " + ", ".join(ak.attribute_names())

    def ak_bound_to_ek(self) -> str:
        if not self.secret:  # no challenge was made: only an earlier proven binding may stand in for it
            return self._known_binding()
        secret_ok = hmac.compare_digest(self.evidence.activation_proof, self.secret)
        issued = self.v._take_challenge(self.secret)
        if not secret_ok:
            raise _Fail("activation proof differs from the credential secret: the AK is not in the EK's TPM")
        if issued is None:
            return "ActivateCredential recovered the secret"
        ek_name, ak_name = issued
        if self.ek.name != ek_name:
            raise _Fail("evidence names another EK than the one challenged")
        if self.ak.name != ak_name:
            raise _Fail("evidence names another AK than the one challenged")
        self.proven_binding = True
        return "ActivateCredential recovered the secret made for this EK and AK name"

    def _known_binding(self) -> str:
        bound_pfc = self.v._bound_pfc(self.ek.name, self.ak.name)
        if bound_pfc is None:
            raise _Fail("no credential challenge answered and no earlier ActivateCredential for this EK and AK")
        if bound_pfc != self._digest(self.evidence.pfc):
            raise _Fail("the binding of this AK was proven under another PfC")
        if self._verified("pfc", self.evidence.pfc) is None:
            raise _Fail("the PfC under which this AK's binding was proven expired or was revoked")
        return "AK bound to this EK by an earlier ActivateCredential, its PfC still verified"

    def nonce_fresh(self) -> str:
        if self.nonce_problem:
            raise _Fail(self.nonce_problem)
        return f"{len(self.nonce)}-byte nonce issued by this PVA, first use"

    def quote_signature(self) -> str:
        quote = self.quote
        if quote.magic != TPM_GENERATED_VALUE:
            raise _Fail(f"quote magic {quote.magic:#010x} is not TPM_GENERATED_VALUE")
        if quote.type != TPM_ST_ATTEST_QUOTE:
            raise _Fail(f"attestation type {quote.type:#06x} is not a quote")
        try:
            alg = verify_tpm_signature(self.ak, self.evidence.quote_signature, self.evidence.quote_attest,
                                       self.ak_key)
        except InvalidSignature as exc:
            raise _Fail("quote signature does not verify with the AK") from exc
        return f"{HASH_NAMES[alg]} signature by the AK verifies"

    def quote_nonce(self) -> str:
        if self.quote.extra_data != self.nonce:
            raise _Fail("quote extraData is not the nonce of this validation")
        return "quote extraData equals the nonce"

    def pcr_selection(self) -> str:
        signed = self.quote.pcr_selection
        wanted = {PCR_BANK: frozenset(self.v._selection)}
        if {alg: pcrs for alg, pcrs in signed.items() if pcrs} != wanted:
            raise _Fail(f"quote covers {_describe_selection(signed)}, PVA asked for {_describe_selection(wanted)}")
        return f"quote covers {_describe_selection(wanted)}"

    def pcr_digest(self) -> str:
        selection, reported = self.v._selection, self.evidence.pcr_values
        if set(reported) != set(selection):
            raise _Fail(f"reported PCRs {sorted(reported)} differ from the selection {list(selection)}")
        if any(len(reported[pcr]) != 32 for pcr in selection):
            raise _Fail("a reported PCR value is not 32 bytes")
        # TPM 2.0 Part 3 18.4: pcrDigest is hashed with the signing scheme's hash
        hash_alg = _signature_hash(self.evidence.quote_signature)
        digest = hashlib.new(_hash_name(hash_alg), b"".join(reported[p] for p in selection)).digest()
        if not hmac.compare_digest(digest, self.quote.pcr_digest):
            raise _Fail("quote pcrDigest differs from the digest of the reported PCR values")
        return "quote pcrDigest matches the reported PCR values"

    def event_log_replay(self) -> str:
        replayed = {pcr: pcr_initial_value(pcr) for pcr in self.v._selection}
        for event in self.evidence.measurements:
            if event.pcr not in replayed:
                raise _Fail(f"{event.component!r} measured into PCR {event.pcr}, which the quote does not cover")
            if len(event.digest) != 32:
                raise _Fail(f"{event.component!r} digest is not SHA-256")
            replayed[event.pcr] = extend(replayed[event.pcr], event.digest)
        logged = {event.pcr for event in self.evidence.measurements}
        bound = [pcr for pcr in self.v._selection if pcr in PLATFORM_BOOT_PCRS and pcr not in logged]
        for pcr in self.v._selection:
            if pcr not in bound and replayed[pcr] != self.evidence.pcr_values.get(pcr):
                raise _Fail(f"replaying the event log does not give the reported PCR {pcr}")
        detail = f"{len(self.evidence.measurements)} events replay to the reported PCR values"
        if bound:  # quoted and sealed to as they are; the firmware's own log is not checked here
            detail += f"; boot PCRs {','.join(map(str, bound))} bound as quoted"
        return detail

    def reference_values(self) -> str:
        reference = self.reference
        model = self._pfc_platform().model
        if reference.model is not None and model != reference.model:
            raise _Fail(f"PfC model {model!r} has no reference values (have {reference.model!r})")
        seen: list[str] = []
        for event in self.evidence.measurements:
            expected = reference.components.get(event.component)
            if expected is None:
                raise _Fail(f"component {event.component!r} has no reference value")
            if not hmac.compare_digest(expected, event.digest):
                raise _Fail(f"component {event.component!r} digest differs from its reference value")
            if event.component not in seen:
                seen.append(event.component)
        missing = sorted(name for name in reference.components if name not in seen)
        if missing:
            raise _Fail("components not measured: " + ", ".join(missing))
        self.matched = seen
        return "components match: " + ", ".join(seen)

    def clock(self) -> str:
        quote = self.quote
        if quote.safe != 1:
            raise _Fail("clockInfo.safe is 0: the TPM clock may have gone backwards")
        counts = (quote.reset_count, quote.restart_count)
        # only an authentic, fresh quote may move the remembered counters
        last = self.v._observe_clock(self.evidence.platform_id, counts,
                                     self.passed("quote_signature", "nonce_fresh"))
        if last is not None and counts < last:
            raise _Fail(f"resetCount/restartCount {counts} went back from {last}")
        return f"safe, resetCount {counts[0]}, restartCount {counts[1]}"

    def pfc_signature(self) -> str:
        known = self._verified("pfc", self.evidence.pfc)
        if known is not None:
            return known.detail
        try:
            path = pki.verify_chain(self.pfc, [], [self.v._m2mes_ca], at=self.now, eku=pki.OID_AK_CERTIFICATE,
                                    memo=self.v._memo)
        except pki.ChainError as exc:
            raise _Fail(f"PfC does not verify: {exc}") from exc
        detail = sys.intern("PfC issued by " + self.v._name_of(self.v._m2mes_ca))
        try:
            identity: pki.PlatformIdentity | None = self.pfc_identity
        except _Fail:
            identity = None
        if identity is not None:  # only a PfC that names its platform is kept
            self._keep("pfc", self.evidence.pfc, path, detail, identity)
        return detail

    def pfc_binds_ak(self) -> str:
        known = self._verified("pfc", self.evidence.pfc)
        certified = known.key if known is not None else _certificate_key(self.pfc)
        if certified != _area_key(self.ak):
            raise _Fail("PfC certifies another key than the AK")
        return "PfC certifies the AK"

    def pfc_names_platform(self) -> str:
        named = self._pfc_platform()
        if named.platform_id != self.evidence.platform_id:
            raise _Fail(f"PfC names platform {named.platform_id!r}, evidence claims {self.evidence.platform_id!r}")
        self.identity = named
        return f"platform {named.platform_id} model {named.model}"

    def _pfc_platform(self) -> pki.PlatformIdentity:
        known = self._verified("pfc", self.evidence.pfc)
        if known is not None and known.identity is not None:
            return known.identity
        return self.pfc_identity

    def pfc_status_ocsp(self) -> str:
        known = self._verified("pfc", self.evidence.pfc)
        serial = known.serial if known is not None else None
        status = self.v._cached_status(serial, self.now) if serial is not None else None
        if status is not None:
            if not status.good:
                raise _Fail(f"OCSP says the PfC is {status}")
            return "OCSP said (response kept until its nextUpdate) good"
        pfc, issuer = self.pfc, self.v._m2mes_ca
        if pfc.issuer != issuer.subject:
            raise _Fail("not asked: the PfC was not issued by the M2MES CA")
        status = self.v._cached_status(pfc.serial_number, self.now)
        how = "OCSP says"
        if status is not None:
            how = "OCSP said (response kept until its nextUpdate)"
        else:
            ocsp_nonce = os.urandom(16)
            request = pki.ocsp_request(pfc, issuer, ocsp_nonce)
            try:
                response = self.v._ocsp(request)
            except Exception as exc:  # a network client may raise anything; the verdict is FAIL
                raise _Fail(f"OCSP responder unreachable: {type(exc).__name__}: {exc}") from exc
            try:
                status = pki.check_ocsp_response(response, pfc, issuer, ocsp_nonce, at=self.now)
            except pki.OcspError as exc:
                raise _Fail(f"OCSP response refused: {exc}") from exc
            self.v._keep_status(pfc.serial_number, status)
        if not status.good:
            raise _Fail(f"OCSP says the PfC is {status}")
        return f"{how} good"

    def storage_key_certified(self) -> str:
        key = self.storage_key
        certified = self.ak.name + key.name
        # an earlier certification by this AK still holds while the AK's binding does (fixedTPM key);
        # it stands in only for a certification the M2ME left out: one that is presented is checked
        presented = bool(self.evidence.certify_attest or self.evidence.certify_signature)
        known = not presented and self.passed("ak_bound_to_ek") and certified in self.v._certified
        if not known:
            if not presented:
                raise _Fail("no certification of the storage key, and none by this AK is on record")
            attest = self._parse("certification", lambda: parse_attest(self.evidence.certify_attest))
            if attest.magic != TPM_GENERATED_VALUE or attest.type != TPM_ST_ATTEST_CERTIFY:
                raise _Fail("certification is not a TPM-generated TPM2_Certify attestation")
            try:
                verify_tpm_signature(self.ak, self.evidence.certify_signature, self.evidence.certify_attest,
                                     self.ak_key)
            except InvalidSignature as exc:
                raise _Fail("certification signature does not verify with the AK") from exc
            if attest.extra_data != self.nonce:
                raise _Fail("certification extraData is not the nonce of this validation")
            if attest.certified_name != key.name:
                raise _Fail("certification is about another object than the storage key")
        if not key.has(STORAGE_KEY_REQUIRED) or key.attributes & SIGN_ENCRYPT:
            raise _Fail("storage key is not a fixedTPM restricted decryption key "
                        f"(attributes {', '.join(key.attribute_names())})")
        if key.symmetric[0] == TPM_ALG_NULL or key.type not in (TPM_ALG_ECC, TPM_ALG_RSA):
            raise _Fail("storage key cannot be a parent (no symmetric algorithm)")
        if known:
            return "AK certified this fixedTPM restricted decryption key before (its binding still holds)"
        if self.passed("ak_bound_to_ek") and self.v._bindings is not None:
            with self.v._lock:
                if len(self.v._certified) > 4_000_000:
                    self.v._certified.clear()
                self.v._certified.add(certified)
        return "AK certified a fixedTPM restricted decryption key for this nonce"

    def unseal_authority_certified(self) -> str:
        """The object the MCIM's policy names in PolicySecret (issue 9): an ordinary object of this
        TPM under the certified storage key, so its authValue is the TRE's and no one can make an
        object of the same name with a value of their own (as anyone can a primary)."""
        if not self.evidence.authority_public:
            raise _Fail("no unseal authority: nothing would bind the unseal to the TRE agent")
        authority = self.authority
        # tagged apart from the storage keys' records (bytes keys of AK name + key name): a certified
        # storage key (a primary) must never stand in for an authority that was not certified as one
        certified = b"unseal authority" + self.ak.name + authority.name
        presented = bool(self.evidence.authority_certify_attest or self.evidence.authority_certify_signature)
        known = not presented and self.passed("ak_bound_to_ek", "storage_key_certified") \
            and certified in self.v._certified
        if not known:
            if not presented:
                raise _Fail("no certification of the unseal authority, and none by this AK is on record")
            attest = self._parse("authority certification", lambda: parse_attest(self.evidence.authority_certify_attest))
            if attest.magic != TPM_GENERATED_VALUE or attest.type != TPM_ST_ATTEST_CERTIFY:
                raise _Fail("authority certification is not a TPM-generated TPM2_Certify attestation")
            try:
                verify_tpm_signature(self.ak, self.evidence.authority_certify_signature,
                                     self.evidence.authority_certify_attest, self.ak_key)
            except InvalidSignature as exc:
                raise _Fail("authority certification signature does not verify with the AK") from exc
            if attest.extra_data != self.nonce:
                raise _Fail("authority certification extraData is not the nonce of this validation")
            if attest.certified_name != authority.name:
                raise _Fail("authority certification is about another object than the unseal authority")
            # judged against a certified storage key only (a failed one fails the validation already)
            if self.passed("storage_key_certified") \
                    and attest.certified_qualified_name != child_qualified_name(self.storage_key, authority):
                raise _Fail("the unseal authority is not a child of the certified storage key")
        if not authority.has(AUTHORITY_REQUIRED):
            raise _Fail("unseal authority is not a TPM-made fixedTPM object used by its authValue "
                        f"(attributes {', '.join(authority.attribute_names())})")
        if known:
            return "AK certified this unseal authority before (its binding still holds)"
        if self.passed("ak_bound_to_ek", "storage_key_certified") and self.v._bindings is not None:
            with self.v._lock:   # the record's cap is kept by storage_key_certified, just before
                self.v._certified.add(certified)
        return "AK certified the TRE's unseal authority, a child of the storage key, for this nonce"


def child_qualified_name(parent: TpmPublic, child: TpmPublic) -> bytes:
    """TPM 2.0 Part 1, 16: QN(child) = nameAlg || H(QN(parent) || Name(child)); the parent is a
    primary of the owner hierarchy, QN(parent) = nameAlg || H(TPM_RH_OWNER || Name(parent))."""
    def qualified(outer: bytes, name: bytes, alg: int) -> bytes:
        return alg.to_bytes(2, "big") + hashlib.new(_hash_name(alg), outer + name).digest()
    return qualified(qualified(TPM_RH_OWNER.to_bytes(4, "big"), parent.name, parent.name_alg),
                     child.name, child.name_alg)


def _certificate_key(certificate: x509.Certificate) -> bytes:
    """A certificate's public key, encoded for comparison with a TPM public area (``_area_key``)."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.name.encode() + b":" + key.public_bytes(serialization.Encoding.X962,
                                                                   serialization.PublicFormat.UncompressedPoint)
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return b"rsa:" + numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big") + b":" + \
            numbers.e.to_bytes(4, "big")
    return b"other:" + key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _certifies(certificate: x509.Certificate, area: TpmPublic) -> bool:
    """True when ``certificate`` is over the key of the TPM public area ``area``."""
    return _certificate_key(certificate) == _area_key(area)


def _area_key(area: TpmPublic) -> bytes:
    """The key of a TPM public area, encoded as ``_certificate_key`` encodes a certificate's
    (compared on the encoding, without building a key object from the TPM side)."""
    if area.type == TPM_ALG_ECC:
        curve = _CURVES.get(area.curve or 0)
        if curve is None:
            return b"unsupported ECC curve"
        size = curve[1]
        return curve[0].name.encode() + b":" + b"\x04" + area.x.rjust(size, b"\0") + area.y.rjust(size, b"\0")
    if area.type == TPM_ALG_RSA:
        n = int.from_bytes(area.unique, "big")
        return b"rsa:" + n.to_bytes((n.bit_length() + 7) // 8, "big") + b":" + (area.exponent or 65537).to_bytes(4, "big")
    return b"no key"


def _signature_hash(signature: bytes) -> int:
    if len(signature) < 4:
        raise TpmStructureError("TPMT_SIGNATURE: truncated")
    return _U16.unpack_from(signature, 2)[0]


def _describe_selection(selection: Mapping[int, Iterable[int]]) -> str:
    return "; ".join(f"{HASH_NAMES.get(alg, hex(alg))}:{','.join(map(str, sorted(pcrs)))}"
                     for alg, pcrs in sorted(selection.items())) or "nothing"
