"""The TPM driver's keys and attestation: the EK from its TCG template and certificate, the AK and
storage keys (primaries from fixed templates), ActivateCredential, Quote and Certify. A mixin of
:class:`mcim_hil.drivers.tpm.Tpm`, which owns the connection, the hook events and the object slots."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_CAP, TPM2_SE, TPMA_NV, TPMA_OBJECT
from tpm2_pytss.types import (
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_SENSITIVE_CREATE,
    TPMS_ATTEST,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
)
from tpm2_pytss.utils import NoSuchIndex, create_ek_template

from .errors import TpmError
from .tpm_templates import _ak_template, _storage_key_template
from .tpm_types import (
    _HASH_NAMES,
    _QUOTE_TRIES,
    EK_DEFAULT_PROFILE,
    EK_NV_FIRST,
    EK_NV_LAST,
    EK_PROFILES,
    PT_NV_BUFFER_MAX,
    Ak,
    AuthObject,
    Certification,
    Ek,
    Handle,
    Quote,
    StorageKey,
    _der_certificate,
    _Operation,
    _pcr_selection,
    _public_key,
    _spki,
    _unmarshal,
    object_name,
)


class _KeysAndAttestation:
    """Tpm's key and attestation operations (see tpm.py for the connection they run on)."""

    # -- keys (primaries from fixed templates) -------------------------------------------------------------------------------

    def _nv_indices(self, op: _Operation, first: int, last: int) -> set[int]:
        found: set[int] = set()
        more, start = True, first
        while more:
            more, data = self._call(op, "TPM2_GetCapability", self._ctx.get_capability,
                                    TPM2_CAP.HANDLES, start, 64)
            handles = [int(h) for h in data.data.handles]
            found.update(h for h in handles if first <= h <= last)
            if not handles or handles[-1] >= last:
                break
            start = handles[-1] + 1
        return found

    def _nv_read_all(self, op: _Operation, index: int) -> bytes:
        nv = self._call(op, "TPM2_NV_ReadPublic", self._ctx.tr_from_tpmpublic, index)
        try:
            nv_public, _ = self._call(op, "TPM2_NV_ReadPublic", self._ctx.nv_read_public, nv)
            area = nv_public.nvPublic
            # EK Credential Profile: certificate indices are AUTHREAD (empty auth) and OWNERREAD
            auth = nv if area.attributes & TPMA_NV.AUTHREAD else ESYS_TR.OWNER
            chunk = self._fixed_properties(op).get(PT_NV_BUFFER_MAX, 512) or 512
            data = b""
            while len(data) < area.dataSize:
                size = min(chunk, area.dataSize - len(data))
                data += bytes(self._call(op, "TPM2_NV_Read", self._ctx.nv_read, nv, size,
                                         len(data), auth_handle=auth))
            return data
        finally:
            self._ctx.tr_close(nv)

    def ek(self, profile: str | None = None) -> Ek:
        """The endorsement key recreated (CreatePrimary) from the TCG template of its certificate.

        profile None: the first EK_PROFILES entry whose certificate index exists, else the L-2
        template with no certificate. The returned key's public equals the certificate's key
        (checked here). The caller flushes ``.handle`` when done.
        """
        if profile is not None and profile not in dict(EK_PROFILES):
            raise ValueError(f"unknown EK profile {profile!r}; one of {[p for p, _ in EK_PROFILES]}")
        with self._operation() as op:
            present = self._nv_indices(op, EK_NV_FIRST, EK_NV_LAST)
            if profile is None:
                profile = next((p for p, idx in EK_PROFILES if idx in present),
                               EK_DEFAULT_PROFILE)
            index = dict(EK_PROFILES).get(profile)

            def nv_read(handle: Any) -> bytes:
                if int(handle) not in present:
                    raise NoSuchIndex(int(handle))
                return self._nv_read_all(op, int(handle))

            try:
                cert_der, template = create_ek_template(profile, nv_read)
            except ValueError as exc:
                raise TpmError(self.tcti, "TPM2_NV_Read", f"EK profile {profile}: {exc}") from exc
            certificate = None
            if cert_der:
                try:
                    certificate = _der_certificate(cert_der)
                except ValueError as exc:
                    raise TpmError(self.tcti, "TPM2_NV_Read",
                                   f"EK certificate at 0x{index:08x} does not parse: {exc}") from exc
            handle, public, *_ = self._call(op, "TPM2_CreatePrimary", self._ctx.create_primary,
                                            TPM2B_SENSITIVE_CREATE(), template,
                                            ESYS_TR.ENDORSEMENT)
            try:
                key = _public_key(public)
                if certificate is not None and _spki(key) != _spki(certificate.public_key()):
                    raise TpmError(self.tcti, "TPM2_CreatePrimary",
                                   f"EK from template {profile} does not match its certificate")
            except BaseException:
                self._flush_quietly(op, handle)
                raise
        return Ek(handle=self._hand_out(handle), public=public, public_key=key,
                  certificate=certificate, profile=profile,
                  certificate_index=index if certificate is not None else None)

    def create_ak(self) -> Ak:
        """Restricted ECC P-256 signing key, primary in the endorsement hierarchy.

        In the endorsement hierarchy, quotes carry the real reset/restart counters and firmware
        version. A primary from a fixed template is the same key on every call for this TPM
        (until its endorsement seed changes), so it survives reboots without being persisted.
        """
        with self._operation() as op:
            handle, public, *_ = self._call(op, "TPM2_CreatePrimary", self._ctx.create_primary,
                                            TPM2B_SENSITIVE_CREATE(), _ak_template(),
                                            ESYS_TR.ENDORSEMENT)
        key = _public_key(public)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return Ak(handle=self._hand_out(handle), public=public, name=object_name(public),
                  public_key=key)

    def create_storage_key(self) -> StorageKey:
        """Restricted decrypt ECC P-256 key (AES-128-CFB), primary in the owner hierarchy:
        a parent for TPM2_Import. Owner hierarchy auth is assumed empty."""
        with self._operation() as op:
            handle, public, *_ = self._call(op, "TPM2_CreatePrimary", self._ctx.create_primary,
                                            TPM2B_SENSITIVE_CREATE(), _storage_key_template(),
                                            ESYS_TR.OWNER)
        return StorageKey(handle=self._hand_out(handle), public=public,
                          name=object_name(public))

    # -- attestation ------------------------------------------------------------------------

    def activate_credential(self, ak: Ak | ESYS_TR, ek: Ek,
                            credential_blob: TPM2B_ID_OBJECT | bytes,
                            secret: TPM2B_ENCRYPTED_SECRET | bytes) -> bytes:
        """TPM2_ActivateCredential: the credential a verifier made for (EK, AK name).

        The EK's USER role: a password session when its template sets userWithAuth (TCG high
        range), else PolicySecret(TPM_RH_ENDORSEMENT) (TCG low range policy A).
        """
        blob = _unmarshal(TPM2B_ID_OBJECT, credential_blob)
        seed = _unmarshal(TPM2B_ENCRYPTED_SECRET, secret)
        with self._operation(secret=True) as op:
            ek_session = ESYS_TR.PASSWORD
            if not ek.public.publicArea.objectAttributes & TPMA_OBJECT.USERWITHAUTH:
                ek_session = self._call(op, "TPM2_StartAuthSession",
                                        self._ctx.start_auth_session,
                                        ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                        TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                                        ek.public.publicArea.nameAlg)
            try:
                if ek_session != ESYS_TR.PASSWORD:
                    self._call(op, "TPM2_PolicySecret", self._ctx.policy_secret,
                               ESYS_TR.ENDORSEMENT, ek_session, expiration=0)
                credential = self._call(op, "TPM2_ActivateCredential",
                                        self._ctx.activate_credential, self._handle(ak),
                                        self._handle(ek), blob, seed,
                                        session1=ESYS_TR.PASSWORD, session2=ek_session)
            finally:
                if ek_session != ESYS_TR.PASSWORD:
                    self._flush_quietly(op, ek_session)
        return bytes(credential)

    def quote(self, ak: Ak | ESYS_TR, nonce: bytes, pcrs: Sequence[int],
              bank: str = "sha256") -> Quote:
        """TPM2_Quote over `pcrs` with `nonce` as extraData, and the PCR values it covers."""
        if not pcrs:
            raise ValueError("a quote needs at least one PCR")
        selection = _pcr_selection(sorted(set(pcrs)), bank)
        with self._operation() as op:
            for _ in range(_QUOTE_TRIES):
                attest, signature = self._call(op, "TPM2_Quote", self._ctx.quote,
                                               self._handle(ak), selection, nonce)
                values = self._pcr_read(op, pcrs, bank)
                attest_bytes = bytes(attest.attestationData)
                body, _ = TPMS_ATTEST.unmarshal(attest_bytes)
                signed = bytes(body.attested.quote.pcrDigest)
                algorithm = _HASH_NAMES.get(int(signature.signature.any.hashAlg), "sha256")
                if hashlib.new(algorithm, b"".join(values[p] for p in sorted(values))
                               ).digest() == signed:
                    return Quote(attest=attest_bytes, signature=signature.marshal(),
                                 pcr_values=values, bank=bank)
            raise TpmError(self.tcti, "TPM2_Quote",
                           "PCRs kept changing between TPM2_Quote and TPM2_PCR_Read")

    def certify(self, obj_handle: Handle | AuthObject, ak: Ak | ESYS_TR, nonce: bytes) -> Certification:
        """TPM2_Certify: the AK signs the name and qualified name of a loaded object.

        An :class:`AuthObject` names a persistent object whose authValue is not empty: the
        command's ADMIN authorisation then goes in an HMAC session, never as a password."""
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
        if not isinstance(obj_handle, AuthObject):
            with self._operation() as op:
                attest, signature = self._call(op, "TPM2_Certify", self._ctx.certify, self._handle(obj_handle),
                                               self._handle(ak), nonce, scheme)
        else:
            with self._operation(secret=True) as op, self._room_for_persistent(op, [ak]), \
                    self._authorised(op, obj_handle) as (tr, session):
                attest, signature = self._call(op, "TPM2_Certify", self._ctx.certify, tr, self._handle(ak),
                                               nonce, scheme, session1=session)
        return Certification(attest=bytes(attest.attestationData),
                             signature=signature.marshal())

    def create_storage_key_for(self, label: bytes) -> StorageKey:
        """A storage key of its own for ``label`` (e.g. one SHO): the SRK template with
        unique.x = SHA-256(label), so each label gets another primary from the same owner seed,
        the same one every time. An object wrapped for one such key imports under no other."""
        template = _storage_key_template()
        template.publicArea.unique.ecc.x = hashlib.sha256(label).digest()
        with self._operation() as op:
            handle, public, *_ = self._call(op, "TPM2_CreatePrimary", self._ctx.create_primary,
                                            TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.OWNER)
        return StorageKey(handle=self._hand_out(handle), public=public, name=object_name(public))
