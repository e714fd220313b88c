"""The TPM driver's sealing: TPM2_Import and TPM2_Load of wrapped objects, sealed data objects the
TPM creates itself, the objects whose authValue authorises a policy (PolicySecret), and TPM2_Unseal
through a policy session: PolicyPCR (current values), PolicySecret, PolicyCommandCode(Unseal), in
that order (the order a sealer's policy digest must follow). A mixin of
:class:`mcim_hil.drivers.tpm.Tpm`, which owns the connection, the hook events and the object slots."""

from __future__ import annotations

from collections.abc import Sequence

from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_CC, TPM2_SE, TPMA_OBJECT, TPMA_SESSION
from tpm2_pytss.types import (
    TPM2B_DIGEST,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMT_PUBLIC,
    TPMT_SYM_DEF,
    TPMT_SYM_DEF_OBJECT,
)

from .tpm_templates import _AES128_CFB, _SESSION_AES128_CFB
from .tpm_types import AuthObject, Handle, StorageKey, _Operation, _pcr_selection, _unmarshal


class _Sealing:
    """Tpm's sealing operations (see tpm.py for the connection they run on)."""

    # -- import, load, unseal ---------------------------------------------------------------

    def import_sealed(self, parent: StorageKey | ESYS_TR, public: TPM2B_PUBLIC | bytes,
                      duplicate: TPM2B_PRIVATE | bytes, seed: TPM2B_ENCRYPTED_SECRET | bytes,
                      encryption_key: bytes = b"",
                      symmetric: TPMT_SYM_DEF_OBJECT | None = None) -> TPM2B_PRIVATE:
        """TPM2_Import of an object wrapped for `parent`; returns its private part for load().

        symmetric None: AES-128-CFB inner wrapper when an encryption_key is given, else none.
        """
        pub = _unmarshal(TPM2B_PUBLIC, public)
        dup = _unmarshal(TPM2B_PRIVATE, duplicate)
        sym_seed = _unmarshal(TPM2B_ENCRYPTED_SECRET, seed)
        if symmetric is None:
            symmetric = _AES128_CFB if encryption_key else TPMT_SYM_DEF_OBJECT(
                algorithm=TPM2_ALG.NULL)
        with self._operation(secret=bool(encryption_key)) as op:
            return self._call(op, "TPM2_Import", self._ctx.import_, self._handle(parent),
                              encryption_key, pub, dup, sym_seed, symmetric)

    def load(self, parent: StorageKey | ESYS_TR, private: TPM2B_PRIVATE | bytes,
             public: TPM2B_PUBLIC | bytes) -> ESYS_TR:
        """TPM2_Load; the caller flushes the returned handle."""
        priv = _unmarshal(TPM2B_PRIVATE, private)
        pub = _unmarshal(TPM2B_PUBLIC, public)
        with self._operation() as op:
            handle = self._call(op, "TPM2_Load", self._ctx.load, self._handle(parent), priv, pub)
        return self._hand_out(handle)

    def unseal(self, obj_handle: Handle, pcrs: Sequence[int], bank: str = "sha256", *,
               salt: Handle | None = None, secret: AuthObject | None = None) -> bytes:
        """TPM2_Unseal through PolicyPCR(pcrs, current values) [+ PolicySecret(secret)] +
        PolicyCommandCode(Unseal). No PCRs: no PolicyPCR (a policy of any PCR state).

        A PCR state other than the one sealed to, or another authorising object, fails with
        TPM_RC_POLICY_FAIL. The event is flagged secret: the unsealed bytes never reach a log.
        With ``salt`` (a loaded key, e.g. the storage key) the policy session is salted with it and
        encrypts the response, so the secret does not cross a discrete TPM's bus in clear (TPM 2.0
        Part 1, 21 and 19.6.13). ``secret``'s authValue goes in an HMAC session (Part 1, 19.6).
        """
        with self._operation(secret=True) as op:
            return self._unseal(op, self._handle(obj_handle), pcrs, bank, salt, secret)

    def unseal_persistent(self, persistent_handle: int, pcrs: Sequence[int],
                          bank: str = "sha256", *, salt: Handle | None = None,
                          secret: AuthObject | None = None) -> bytes:
        """unseal() of a sealed object persisted at `persistent_handle`."""
        keep = [salt] if salt is not None else []
        with self._operation(secret=True) as op, self._room_for_persistent(op, keep):
            tr = self._call(op, "TPM2_ReadPublic", self._ctx.tr_from_tpmpublic,
                            persistent_handle)
            try:
                return self._unseal(op, tr, pcrs, bank, salt, secret)
            finally:
                self._ctx.tr_close(tr)

    def _unseal(self, op: _Operation, handle: ESYS_TR, pcrs: Sequence[int], bank: str,
                salt: Handle | None = None, secret: AuthObject | None = None) -> bytes:
        if salt is None:
            tpm_key, symmetric = ESYS_TR.NONE, TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
        else:
            tpm_key, symmetric = self._handle(salt), _SESSION_AES128_CFB
        session = self._call(op, "TPM2_StartAuthSession", self._ctx.start_auth_session,
                             tpm_key, ESYS_TR.NONE, TPM2_SE.POLICY, symmetric, TPM2_ALG.SHA256)
        if salt is not None:
            # response parameter encryption: outData comes back encrypted under the session key
            self._ctx.trsess_set_attributes(session, TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION)
        try:
            # the salt did its work at StartAuthSession: only the sealed object must stay loaded
            self._unseal_policy(op, session, pcrs, bank, secret, [handle])
            data = self._call(op, "TPM2_Unseal", self._ctx.unseal, handle, session1=session)
        finally:
            self._flush_quietly(op, session)
        return bytes(data)

    def _unseal_policy(self, op: _Operation, session: ESYS_TR, pcrs: Sequence[int], bank: str,
                       secret: AuthObject | None, keep: Sequence[Handle] = ()) -> None:
        """The policy commands, in the order every sealer's digest follows."""
        if pcrs:
            self._call(op, "TPM2_PolicyPCR", self._ctx.policy_pcr, session, TPM2B_DIGEST(),
                       _pcr_selection(sorted(set(pcrs)), bank))
        if secret is not None:
            # the authorising object is persistent: the TPM loads it for the command (a free slot)
            with self._room_for_persistent(op, keep), self._authorised(op, secret) as (tr, hmac_session):
                self._call(op, "TPM2_PolicySecret", self._ctx.policy_secret, tr, session,
                           expiration=0, session1=hmac_session)
        self._call(op, "TPM2_PolicyCommandCode", self._ctx.policy_command_code, session,
                   TPM2_CC.Unseal)

    def trial_unseal_policy(self, pcrs: Sequence[int] = (), bank: str = "sha256", *,
                            secret: AuthObject | None = None) -> bytes:
        """The policy digest unseal() satisfies (current PCR values), computed by the TPM itself in
        a trial session: what a sealer's software computation must equal."""
        with self._operation(secret=secret is not None) as op:
            session = self._call(op, "TPM2_StartAuthSession", self._ctx.start_auth_session,
                                 ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.TRIAL,
                                 TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
            try:
                self._unseal_policy(op, session, pcrs, bank, secret)
                digest = self._call(op, "TPM2_PolicyGetDigest", self._ctx.policy_get_digest, session)
            finally:
                self._flush_quietly(op, session)
        return bytes(digest)

    # -- objects the TPM creates itself -------------------------------------------------------

    def create_sealed(self, parent: StorageKey | ESYS_TR, data: bytes,
                      policy: bytes) -> tuple[bytes, bytes]:
        """TPM2_Create of a sealed data object under `parent`, unsealable only through `policy`
        (no userWithAuth), fixed to this TPM and parent. Returns (private, public) marshalled,
        for load(). The data never leaves in a hook event (flagged secret) and crosses the bus
        encrypted."""
        template = TPM2B_PUBLIC(publicArea=TPMT_PUBLIC(
            type=TPM2_ALG.KEYEDHASH,
            nameAlg=TPM2_ALG.SHA256,
            objectAttributes=TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.NODA,
            authPolicy=TPM2B_DIGEST(policy),
        ))
        template.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG.NULL
        sensitive = TPM2B_SENSITIVE_CREATE()
        sensitive.sensitive.data = data
        return self._create_encrypted(parent, sensitive, template)

    def create_auth_object(self, parent: StorageKey | ESYS_TR, auth_value: bytes) -> tuple[bytes, bytes]:
        """TPM2_Create of an object whose only use is its authValue: an HMAC-SHA256 key the TPM
        generates (sensitiveDataOrigin: a random name no one can make again, unlike a primary's,
        which depends on its template alone), fixedTPM and fixedParent, userWithAuth, noDA (the
        value is meant to be long and random: no dictionary to slow down). Returns (private,
        public) marshalled, for load(); the authValue never leaves in a hook event and crosses
        the bus encrypted."""
        if not 1 <= len(auth_value) <= 32:
            raise ValueError("an authValue holds 1..32 bytes (the name algorithm's digest size)")
        template = TPM2B_PUBLIC(publicArea=TPMT_PUBLIC(
            type=TPM2_ALG.KEYEDHASH,
            nameAlg=TPM2_ALG.SHA256,
            objectAttributes=TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
            | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA | TPMA_OBJECT.SIGN_ENCRYPT,
        ))
        scheme = template.publicArea.parameters.keyedHashDetail.scheme
        scheme.scheme = TPM2_ALG.HMAC
        scheme.details.hmac.hashAlg = TPM2_ALG.SHA256
        sensitive = TPM2B_SENSITIVE_CREATE()
        sensitive.sensitive.userAuth = auth_value
        return self._create_encrypted(parent, sensitive, template)

    def _create_encrypted(self, parent: StorageKey | ESYS_TR, sensitive: TPM2B_SENSITIVE_CREATE,
                          template: TPM2B_PUBLIC) -> tuple[bytes, bytes]:
        """TPM2_Create with inSensitive encrypted on the bus: the parent's authorisation goes in an
        HMAC session salted with the parent and encrypting the first command parameter (TPM 2.0
        Part 1, 21)."""
        with self._operation(secret=True) as op:
            session = self._call(op, "TPM2_StartAuthSession", self._ctx.start_auth_session,
                                 self._handle(parent), ESYS_TR.NONE, TPM2_SE.HMAC, _SESSION_AES128_CFB,
                                 TPM2_ALG.SHA256)
            self._ctx.trsess_set_attributes(session, TPMA_SESSION.DECRYPT | TPMA_SESSION.CONTINUESESSION)
            try:
                private, public, *_ = self._call(op, "TPM2_Create", self._ctx.create, self._handle(parent),
                                                 sensitive, template, session1=session)
            finally:
                self._flush_quietly(op, session)
        return private.marshal(), public.marshal()
