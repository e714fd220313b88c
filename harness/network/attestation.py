"""Platform validation (TR 33.812 5.1.3.6.8, the PVA): the validator that owns what outlives
one validation, its nonces and credential challenges (single use), its caches (verified
certificates, OCSP statuses, AK bindings, certified storage keys, parsed public areas, each with
the rule that keeps it correct) and its counters, and runs the checks over each evidence.

The checks themselves and their verdict (``CHECKS``, ``Check``, ``ValidationResult``) are in
attestation_checks.py; the evidence's formats and codecs in evidence.py. Both are re-exported
here, so ``from mcim_hil.network.attestation import ...`` gives every name. Never talks to a TPM.
With ``check_integrity=False`` only authenticity checks run (seed 004 change 4: the IVF
supplies the integrity result).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mcim_hil.network import pki
from mcim_hil.network.evidence import (  # noqa: F401  (re-exported: the wire formats' names)
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_CERTIFY,
    TPM_ST_ATTEST_QUOTE,
    TPM_ALG_RSA,
    TPM_ALG_SHA1,
    TPM_ALG_HMAC,
    TPM_ALG_AES,
    TPM_ALG_KEYEDHASH,
    TPM_ALG_XOR,
    TPM_ALG_SHA256,
    TPM_ALG_SHA384,
    TPM_ALG_SHA512,
    TPM_ALG_NULL,
    TPM_ALG_RSASSA,
    TPM_ALG_RSAES,
    TPM_ALG_RSAPSS,
    TPM_ALG_ECDSA,
    TPM_ALG_ECDAA,
    TPM_ALG_ECC,
    TPM_ALG_SYMCIPHER,
    TPM_ALG_CFB,
    TPM_ECC_NIST_P256,
    TPM_ECC_NIST_P384,
    TPM_ECC_NIST_P521,
    FIXED_TPM,
    ST_CLEAR,
    FIXED_PARENT,
    SENSITIVE_DATA_ORIGIN,
    USER_WITH_AUTH,
    ADMIN_WITH_POLICY,
    NO_DA,
    ENCRYPTED_DUPLICATION,
    RESTRICTED,
    DECRYPT,
    SIGN_ENCRYPT,
    _ATTRIBUTE_NAMES,
    HASH_NAMES,
    _HASHES,
    _CURVES,
    _SCHEME_DETAIL_SIZE,
    PCR_BANK,
    PCR_COUNT,
    MIN_NONCE_BYTES,
    AttestationError,
    TpmStructureError,
    _U16,
    _U32,
    _CLOCK,
    _Reader,
    TpmPublic,
    _hash_name,
    _read_symmetric,
    _read_scheme,
    parse_public,
    tpm_public_key,
    tpm_name,
    parse_pcr_selection,
    pcr_selection_bytes,
    Attest,
    parse_attest,
    verify_tpm_signature,
    extend,
    pcr_initial_value,
    Measurement,
    _EVIDENCE_BYTES,
    Evidence,
    ReferenceValues,
    CredentialChallenge,
    make_credential_challenge,
    _kdfa,
    _kdfe,
    _make_credential_ecc,
)

from mcim_hil.network.attestation_checks import (  # noqa: F401  (re-exported: the checks and their verdict)
    AK_REQUIRED,
    AUTHORITY_REQUIRED,
    CHECKS,
    PLATFORM_BOOT_PCRS,
    TPM_RH_OWNER,
    EK_REQUIRED,
    INTEGRITY_CHECKS,
    STORAGE_KEY_REQUIRED,
    _AUTHENTICITY_CHECKS,
    Check,
    ValidationResult,
    _area_key,
    _certificate_key,
    _certifies,
    _describe_selection,
    _Fail,
    _passed,
    _signature_hash,
    _Validation,
    _VerifiedCertificate,
    child_qualified_name,
)


# the cache keys' kind prefix. Keys of two TPM names are their concatenation: a name starts with its
# nameAlg, which fixes its length (TPM 2.0 Part 1 16), so ek_name + ak_name is unambiguous
_KINDS = {"ek": b"e", "pfc": b"p"}


class _CaFacts(pki.SignatureMemo):
    """The signature memo of a PVA, for its CA certificates only (pinned roots, intermediates,
    the M2MES CA): a leaf (EK certificate, PfC) that verified is in ``_verified`` until it
    expires or is revoked, so remembering its signature too would only cost memory per M2ME."""

    def __init__(self, cas: Iterable[x509.Certificate]) -> None:
        super().__init__()
        self._cas = frozenset(cas)

    def verify(self, child: x509.Certificate, issuer: x509.Certificate) -> None:
        if child in self._cas:
            super().verify(child, issuer)
        else:
            child.verify_directly_issued_by(issuer)

    def once(self, cert: x509.Certificate, tag: bytes, check: Callable[[], None]) -> None:
        if cert in self._cas:
            super().once(cert, tag, check)
        else:
            check()


# --- the validator -------------------------------------------------------------------------

class PlatformValidator:
    """The PVA's checks over one platform's evidence.

    ``ek_roots``: pinned TPM manufacturer / lab CA certificates (an intermediate may be pinned
    too: the walk stops at the first pinned certificate). ``m2mes_ca``: the CA that issues PfCs.
    ``ocsp``: sends a DER OCSPRequest about the PfC, returns the DER OCSPResponse (in-process
    ``OcspResponder.respond`` or a network client). ``pcr_selection``: the sha256-bank PCRs the
    quote must cover, which the event log must explain. ``reference_values``: the M2MES's
    expected digests; a signed set is checked against ``m2mes_ca`` here, once.
    ``clock_history``: last (resetCount, restartCount) per platform id (give a persistent
    mapping to survive restarts). Nonces live ``nonce_lifetime`` seconds and are single use.
    ``signature_memo``: remember certificate signatures that verified (off: verify every time).
    """

    def __init__(self, ek_roots: Sequence[x509.Certificate], m2mes_ca: x509.Certificate,
                 ocsp: Callable[[bytes], bytes], pcr_selection: Sequence[int],
                 reference_values: ReferenceValues | Mapping[str, bytes], *,
                 ek_intermediates: Sequence[x509.Certificate] = (), nonce_lifetime: float = 120.0,
                 clock_history: MutableMapping[str, tuple[int, int]] | None = None,
                 require_signed_reference_values: bool = False, signature_memo: bool = True,
                 ocsp_cache: bool = True) -> None:
        if not ek_roots:
            raise AttestationError("at least one EK root certificate must be pinned")
        self._ek_roots = list(ek_roots)
        self._ek_intermediates = list(ek_intermediates)
        self._m2mes_ca = m2mes_ca
        self._ocsp = ocsp
        self._selection = tuple(sorted(set(pcr_selection)))
        if not self._selection:
            raise AttestationError("the PCR selection is empty")
        self._nonce_lifetime = nonce_lifetime
        self._nonces: dict[bytes, float] = {}
        self._used_nonces: OrderedDict[bytes, None] = OrderedDict()  # recent, to tell 'reused' from 'unknown'
        self._challenges: OrderedDict[bytes, tuple[bytes, bytes, float]] = OrderedDict()
        self._clock_history = clock_history if clock_history is not None else {}
        self._lock = threading.Lock()
        # certificate signatures already verified (EK CA chain, PfC): immutable, safe to remember
        self._memo = _CaFacts([*self._ek_roots, *self._ek_intermediates, m2mes_ca]) if signature_memo else None
        self._names: dict[x509.Certificate, str] = {}
        self._reference = self._accept_reference_values(reference_values, require_signed_reference_values)
        # PfC serial -> checked OCSP status, reused until its nextUpdate (RFC 6960 4.2.2.1) or
        # until the issuer announces a revocation (forget_status); a revoked status is kept
        self._ocsp_cache: dict[int, pki.CertStatus] | None = {} if ocsp_cache else None
        # b"e" | b"p" + SHA-256 of the DER (one bytes, no tuple: 10^5 of them) -> facts of a certificate whose path verified; an EK
        # chain or a PfC is not walked again until it expires, or (a PfC) is revoked
        self._verified: dict[bytes, _VerifiedCertificate] | None = {} if signature_memo else None
        self._verified_by_serial: dict[int, bytes] = {}
        # EK name + AK name -> SHA-256 of the PfC that certified the AK, once ActivateCredential
        # proved the AK in the EK's TPM: no new MakeCredential while that PfC stays verified
        # (until its expiry or revocation); another AK or another PfC gets a challenge again
        self._bindings: dict[bytes, bytes] | None = {} if signature_memo else None
        # AK name + storage key name, certified by that AK (TPM2_Certify): the storage key is fixedTPM,
        # so the fact holds as long as the AK's binding does
        self._certified: set[bytes] = set()
        # TPM public areas (EK, AK, storage key) parsed before, by their bytes: a device sends the
        # same ones every time, and a parsed area is a pure function of them. The AK's key object
        # is not kept: OpenSSL holds ~2 KiB per key, 8 us to rebuild (10^5 M2MEs: 200 MiB)
        self._areas: dict[bytes, TpmPublic] = {}
        self.certificate_cache_hits = 0
        self.ocsp_requests = 0
        self.ocsp_cache_hits = 0

    def _area(self, data: bytes) -> TpmPublic:
        area = self._areas.get(data)
        if area is None:
            area = parse_public(data)  # raises on a malformed area: nothing kept
            if len(self._areas) > 300_000:
                self._areas.clear()
            self._areas[data] = area
        return area

    def _key(self, data: bytes, area: TpmPublic) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        return area.public_key()

    def _name_of(self, certificate: x509.Certificate) -> str:
        name = self._names.get(certificate)
        if name is None:
            name = self._names[certificate] = pki.describe_certificate(certificate)
        return name

    @property
    def pcr_selection(self) -> tuple[int, ...]:
        return self._selection

    @property
    def reference_values(self) -> ReferenceValues:
        return self._reference

    def _accept_reference_values(self, values: ReferenceValues | Mapping[str, bytes],
                                 require_signed: bool) -> ReferenceValues:
        if not isinstance(values, ReferenceValues):
            values = ReferenceValues(dict(values))
        for name, digest in values.components.items():
            if len(digest) != 32:
                raise AttestationError(f"reference value for {name!r} is not a SHA-256 digest")
        if values.signature is not None:
            values.verify(self._m2mes_ca.public_key())
        elif require_signed:
            raise AttestationError("unsigned reference values refused")
        return values

    def update_reference_values(self, values: ReferenceValues | Mapping[str, bytes], *,
                                require_signed: bool = False) -> None:
        """New reference values from the M2MES (e.g. after a firmware update)."""
        self._reference = self._accept_reference_values(values, require_signed)

    def forget_status(self, serial_number: int) -> None:
        """The PfC issuer announced a change (a revocation): ask OCSP again next time, and
        verify the PfC again."""
        with self._lock:
            if self._ocsp_cache is not None:
                self._ocsp_cache.pop(serial_number, None)
            key = self._verified_by_serial.pop(serial_number, None)
            if key is not None and self._verified is not None:
                self._verified.pop(key, None)
            if key is not None and self._bindings:  # revocations are rare: a scan is fine
                for binding in [b for b, pfc in self._bindings.items() if pfc == key[1:]]:
                    del self._bindings[binding]

    def _known_certificate(self, kind: str, digest: bytes, at: Any, count: bool = True) -> _VerifiedCertificate | None:
        with self._lock:
            key = _KINDS[kind] + digest
            found = self._verified.get(key) if self._verified is not None else None
            if found is None:
                return None
            if not found.holds(at):
                del self._verified[key]  # expired (or not yet valid): walk it again
                return None
            if count:
                self.certificate_cache_hits += 1
            return found

    def _keep_certificate(self, kind: str, digest: bytes, facts: _VerifiedCertificate) -> None:
        with self._lock:
            if self._verified is None:
                return
            if len(self._verified) > 4_000_000:
                self._verified.clear()
                self._verified_by_serial.clear()
            key = _KINDS[kind] + digest
            self._verified[key] = facts
            if kind == "pfc":
                self._verified_by_serial[facts.serial] = key

    def _cached_status(self, serial_number: int, now: Any) -> pki.CertStatus | None:
        with self._lock:
            status = self._ocsp_cache.get(serial_number) if self._ocsp_cache is not None else None
            if status is None:
                return None
            if status.next_update is None or now >= status.next_update:
                del self._ocsp_cache[serial_number]  # stale: RFC 6960 says ask again
                return None
            self.ocsp_cache_hits += 1
            return status

    def _keep_status(self, serial_number: int, status: pki.CertStatus) -> None:
        with self._lock:
            self.ocsp_requests += 1
            if self._ocsp_cache is not None and status.next_update is not None:
                if len(self._ocsp_cache) > 1_000_000:
                    self._ocsp_cache.clear()
                self._ocsp_cache[serial_number] = status

    # nonces and challenges

    def new_nonce(self) -> bytes:
        """32 random bytes, single use, valid for ``nonce_lifetime`` seconds."""
        nonce = os.urandom(32)
        now = time.monotonic()
        with self._lock:
            # issued in expiry order (one lifetime for all): the expired ones are the oldest. A
            # mass change has 10^5 challenges out at once; a scan of them all per nonce was O(n^2)
            nonces = self._nonces
            while len(nonces) > 1024:  # below that, an expired nonce still says "expired"
                oldest = next(iter(nonces))
                if nonces[oldest] >= now:
                    break
                del nonces[oldest]
            nonces[nonce] = now + self._nonce_lifetime
        return nonce

    def _consume_nonce(self, nonce: bytes) -> str | None:
        """None when fresh, else why not. The nonce is spent either way."""
        now = time.monotonic()
        with self._lock:
            expiry = self._nonces.pop(nonce, None)
            reused = expiry is None and nonce in self._used_nonces
            self._used_nonces[nonce] = None
            if len(self._used_nonces) > 4096:
                self._used_nonces.popitem(last=False)
        if len(nonce) < MIN_NONCE_BYTES:
            return f"nonce has {len(nonce)} bytes, fewer than {MIN_NONCE_BYTES}"
        if reused:
            return "nonce was already used"
        if expiry is None:
            return "nonce was not issued by this PVA"
        if expiry < now:
            return f"nonce expired {now - expiry:.1f} s ago"
        return None

    def binding_known(self, ek_public: bytes, ak_public: bytes, pfc: bytes = b"") -> bool:
        """True when ActivateCredential already proved this AK in this EK's TPM and the PfC that
        certified the AK is still verified (not expired, not revoked): no new challenge needed.
        With ``pfc`` (the one the validation will present), only a binding proven under that PfC:
        a platform whose PfC changed (a SW/FW update) is challenged anew."""
        try:
            key = self._area(ek_public).name + self._area(ak_public).name
        except (ValueError, TypeError, TpmStructureError):
            return False
        with self._lock:
            bound = self._bindings.get(key) if self._bindings is not None else None
        if bound is None or (pfc and hashlib.sha256(pfc).digest() != bound):
            return False
        return self._known_certificate("pfc", bound, pki.utc_now(), count=False) is not None

    def _bound_pfc(self, ek_name: bytes, ak_name: bytes) -> bytes | None:
        with self._lock:
            return self._bindings.get(ek_name + ak_name) if self._bindings is not None else None

    def _keep_binding(self, ek_name: bytes, ak_name: bytes, pfc_digest: bytes) -> None:
        with self._lock:
            if self._bindings is None:
                return
            if len(self._bindings) > 4_000_000:
                self._bindings.clear()
                self._certified.clear()
            self._bindings[ek_name + ak_name] = pfc_digest

    def credential_challenge(self, ek_public: bytes, ak_public: bytes) -> tuple[CredentialChallenge, bytes]:
        """``make_credential_challenge`` that also remembers which EK and AK it was made for, so
        ``ak_bound_to_ek`` also refuses evidence that swaps in another AK or EK afterwards."""
        challenge, secret = make_credential_challenge(ek_public, ak_public)
        now = time.monotonic()
        with self._lock:
            while self._challenges and (len(self._challenges) > 4096
                                        or next(iter(self._challenges.values()))[2] < now):
                self._challenges.popitem(last=False)
            self._challenges[hashlib.sha256(secret).digest()] = (
                tpm_name(ek_public), tpm_name(ak_public), now + self._nonce_lifetime)
        return challenge, secret

    def _take_challenge(self, secret: bytes) -> tuple[bytes, bytes] | None:
        """The (EK name, AK name) a challenge with this secret was made for; single use."""
        with self._lock:
            issued = self._challenges.pop(hashlib.sha256(secret).digest(), None)
        return issued[:2] if issued else None

    def _observe_clock(self, platform_id: str, counts: tuple[int, int], trusted: bool) -> tuple[int, int] | None:
        """The last (resetCount, restartCount) seen for the platform; remember ``counts`` if
        ``trusted`` and newer."""
        with self._lock:
            last = self._clock_history.get(platform_id)
            last = tuple(last) if last is not None else None  # a persistent mapping may give lists
            if trusted and (last is None or counts > last):
                self._clock_history[platform_id] = counts
        return last  # type: ignore[return-value]

    # the validation

    def validate(self, evidence: Evidence, nonce: bytes, expected_activation_secret: bytes, *,
                 check_integrity: bool = True, reference_values: ReferenceValues | None = None) -> ValidationResult:
        """Run every check over ``evidence`` for the quote/certify ``nonce`` this PVA issued.
        Never raises for bad evidence: each problem is the detail of a failed check.
        ``reference_values``: already accepted values (a PVA's per-model cache) instead of the
        validator's own."""
        run = _Validation(self, evidence, nonce, expected_activation_secret, self._consume_nonce(nonce),
                          reference_values or self._reference)
        for name in CHECKS if check_integrity else _AUTHENTICITY_CHECKS:
            run.run(name)
        return run.result(check_integrity)
