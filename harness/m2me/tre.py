"""The TRE: the M2ME's TPM seen as TR 33.812's trusted environment.

Platform credential keys (EK, AK bound to it), measurement of the M2ME's components into a
PCR, quotes for the PVA, and the sealed MCIM: imported under a storage key the AK certified,
persisted, and unsealed only in the validated PCR state and only by this TRE.

The AK and the storage key are primaries from fixed templates: the same keys on every start of
the same TPM, so nothing of them has to be persisted. The sealed objects are, and so is the
TRE's unseal authority: an ordinary object the TPM created under the storage key at manufacture
(random sensitive data: no one can make an object of that name again, as anyone can a primary),
whose authValue, 32 random bytes, lives in this object's memory only. Every sealed object's
policy holds PolicySecret(authority): a local process that resets and replays the PCRs still
lacks the authValue. A new TrustedEnvironment (a new run on a bench whose TPM keeps its state)
holds no authValue: manufacture makes a new authority and evicts what was sealed to the old one.

The access credential's public metadata (PCID, end of lifetime, the sealed object's name) is
also written to an owner NV index whenever it is sealed or renewed, for `bench check` (another
process, no authority value) to show; the sealed object stays the authoritative copy.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from mcim_hil.drivers.errors import TpmError, TpmPowerLost, TpmTimeout
from mcim_hil.drivers.tpm import Ak, AuthObject, Certification, StorageKey, Tpm, object_name
from mcim_hil.drivers.tpm import OWNER_NV_ATTRIBUTES
from mcim_hil.network.access_credential import AccessCredential, access_policy_digest
from mcim_hil.network.evidence import tpm_name

# PC Client PTP: PCR 23 is "application support", resettable and extendable at locality 0.
# The M2ME's boot measurements go there, so a bench TPM that does not reboot between runs
# still starts each M2ME boot from a known value.
MEASUREMENT_PCR = 23
# Owner persistent range (TPM 2.0 Part 2, 7.5 / TCG handle registry): where the sealed MCIM lives.
MCIM_HANDLE = 0x81000A11
# ... and where the initial network access (PCID) credential lives, apart from any MCIM, from
# manufacture on: no install or discard of an MCIM touches this handle.
ACCESS_CREDENTIAL_HANDLE = 0x81000A10
# a second SHO's pre-provisioned MCIM (5.1.3.8.4.2 variant), under that SHO's own sealing parent
PREPROVISIONED_HANDLE = 0x81000A12
# the TRE's unseal authority: every sealed object above names it in PolicySecret
UNSEAL_AUTHORITY_HANDLE = 0x81000A0F
AUTHORITY_VALUE_BYTES = 32   # TPM 2.0 Part 1, 19.6.4: an authValue at most the nameAlg's digest size
# TCG Registry of Reserved TPM 2.0 Handles 2.2.2: owner NV range 0x01000000-0x013FFFFF. The access
# credential's public metadata, mirroring its persistent handle 0x81000A10. Owner write and read
# (the bench TPM's empty owner auth): the sealed object stays the authoritative copy, this one is
# what a bench check can show without the TRE's unseal authority.
ACCESS_METADATA_INDEX = 0x01000A10
# format byte, PCID (ASCII, space-padded), not_after (epoch seconds), the sealed object's TPM name
# (nameAlg + SHA-256: the copy describes the object at 0x81000A10 only when they are equal)
ACCESS_METADATA_FORMAT = ">B15sQ34s"
ACCESS_METADATA_VERSION = 1
DAY_S = 86400.0


@dataclass(frozen=True)
class AccessMetadata:
    """What anyone may know of the sealed access credential: never its keys."""

    pcid: str
    not_after: float         # epoch seconds (whole)
    sealed_name: bytes       # TPM name of the sealed object it describes

    def to_bytes(self) -> bytes:
        return struct.pack(ACCESS_METADATA_FORMAT, ACCESS_METADATA_VERSION, self.pcid.ljust(15).encode("ascii"),
                           int(self.not_after), self.sealed_name)

    @classmethod
    def from_bytes(cls, data: bytes) -> AccessMetadata:
        if len(data) != struct.calcsize(ACCESS_METADATA_FORMAT) or data[0] != ACCESS_METADATA_VERSION:
            raise ValueError("not an access-credential metadata record of this version")
        _, pcid, not_after, name = struct.unpack(ACCESS_METADATA_FORMAT, data)
        try:
            return cls(pcid.decode("ascii").strip(), float(not_after), name)
        except UnicodeDecodeError as exc:
            raise ValueError("its PCID is not ASCII") from exc


def write_access_metadata(tpm: Tpm, metadata: AccessMetadata) -> None:
    """Define (or resize) ACCESS_METADATA_INDEX and write the record whole."""
    record = metadata.to_bytes()
    tpm.nv_define(ACCESS_METADATA_INDEX, len(record))
    tpm.nv_write(ACCESS_METADATA_INDEX, record)


def read_access_metadata(tpm: Tpm) -> AccessMetadata | str:
    """The NV copy, or why there is none to trust (one line)."""
    where = f"NV index 0x{ACCESS_METADATA_INDEX:08x}"
    present = tpm.nv_read_public(ACCESS_METADATA_INDEX)
    if present is None:
        return f"no PCID and lifetime at {where} (manufactured by an older version: manufacture again)"
    if not present.written or (present.attributes & int(OWNER_NV_ATTRIBUTES)) != int(OWNER_NV_ATTRIBUTES):
        return f"{where} holds no PCID and lifetime record (never written, or not ours)"
    try:
        return AccessMetadata.from_bytes(tpm.nv_read(ACCESS_METADATA_INDEX))
    except ValueError as exc:
        return f"{where}: {exc} (written by another version: manufacture again)"


def lifetime_text(not_after: float, now: float) -> str:
    """"364 days left" or "EXPIRED 3 days ago" (whole days, rounded)."""
    left = not_after - now
    days = round(abs(left) / DAY_S)
    unit = "day" if days == 1 else "days"
    return f"{days} {unit} left" if left >= 0 else f"EXPIRED {days} {unit} ago"


def create_unseal_authority(tpm: Tpm, storage_key: StorageKey,
                            handle: int = UNSEAL_AUTHORITY_HANDLE) -> AuthObject:
    """A new unseal authority: 32 random bytes as authValue, the object created by the TPM under
    ``storage_key`` and persisted at ``handle`` in place of any there. Needs one free object slot.
    The returned AuthObject holds the value: keep it in memory only."""
    value = os.urandom(AUTHORITY_VALUE_BYTES)
    private, public = tpm.create_auth_object(storage_key, value)
    if handle in tpm.list_persistent():
        tpm.evict(handle)
    loaded = tpm.load(storage_key, private, public)
    try:
        tpm.persist(loaded, handle)
    finally:
        tpm.flush(loaded)
    return AuthObject(handle, value)


@dataclass(frozen=True)
class Component:
    """A measured part of the M2ME: its name and the bytes that identify it."""

    name: str
    data: bytes = field(repr=False)

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.data).digest()


@dataclass(frozen=True)
class MeasuredComponent:
    name: str
    pcr: int
    digest: bytes


@dataclass
class PlatformKeys:
    ak: Ak
    storage_key: StorageKey


@dataclass(frozen=True)
class EndorsementKey:
    """The EK's public parts; the key itself is flushed after each use (swtpm: 3 slots)."""

    public: bytes                   # marshalled TPM2B_PUBLIC
    certificate: bytes | None       # DER, from the TCG NV index


class TreError(Exception):
    """A TRE operation failed; the cause (a TpmError naming the TPM command) is chained."""


class TrustedEnvironment:
    def __init__(self, tpm: Tpm, pcr: int = MEASUREMENT_PCR, mcim_handle: int = MCIM_HANDLE) -> None:
        self.tpm = tpm
        self.pcr = pcr
        self.mcim_handle = mcim_handle
        self.event_log: list[MeasuredComponent] = []
        self._keys: PlatformKeys | None = None
        self._authority_value: bytes | None = None   # memory only: never logged, never persisted
        self._authority_public: bytes = b""          # its public area, read once when made

    def __repr__(self) -> str:  # never the authority's value
        return f"TrustedEnvironment({self.tpm!r}, pcr={self.pcr})"

    # -- boot -------------------------------------------------------------------------------

    def boot(self, components: Sequence[Component]) -> list[MeasuredComponent]:
        """Start of the M2ME: reset the measurement PCR and extend each component into it."""
        self.tpm.pcr_reset(self.pcr)
        self.event_log = []
        for component in components:
            self.tpm.pcr_extend(self.pcr, component.digest)
            self.event_log.append(MeasuredComponent(component.name, self.pcr, component.digest))
        return list(self.event_log)

    @property
    def pcr_selection(self) -> list[int]:
        return [self.pcr]

    # -- keys -------------------------------------------------------------------------------

    def keys(self) -> PlatformKeys:
        """AK and storage key, loaded once per session. A raw swtpm has 3 object slots:
        these two stay, the third is for the EK or the MCIM object, one at a time."""
        if self._keys is None:
            ak = self.tpm.create_ak()
            try:
                srk = self.tpm.create_storage_key()
            except TpmError:
                self.tpm.flush(ak)
                raise
            self._keys = PlatformKeys(ak, srk)
        return self._keys

    def release(self) -> None:
        """Flush the transient keys."""
        if self._keys is not None:
            for obj in (self._keys.storage_key, self._keys.ak):
                try:
                    self.tpm.flush(obj)
                except TpmError:
                    pass
            self._keys = None

    def forget_keys(self) -> None:
        """The TPM lost power: its transient keys are gone (nothing to flush); the next use
        creates them again (the same keys, from the same primary seeds)."""
        self._keys = None

    def endorsement_key(self) -> EndorsementKey:
        ek = self.tpm.ek()
        try:
            cert = ek.certificate
            from cryptography.hazmat.primitives.serialization import Encoding
            return EndorsementKey(ek.public.marshal(), cert.public_bytes(Encoding.DER) if cert else None)
        finally:
            self.tpm.flush(ek)

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """ActivateCredential with the EK and the AK: proves the AK lives in this EK's TPM."""
        keys = self.keys()
        ek = self.tpm.ek()
        try:
            return self.tpm.activate_credential(keys.ak, ek, credential_blob, encrypted_secret)
        finally:
            self.tpm.flush(ek)

    # -- attestation ------------------------------------------------------------------------

    def quote(self, nonce: bytes, pcrs: Sequence[int]):
        return self.tpm.quote(self.keys().ak, nonce, pcrs)

    def certify_storage_key(self, nonce: bytes) -> Certification:
        keys = self.keys()
        return self.tpm.certify(keys.storage_key, keys.ak, nonce)

    # -- the unseal authority -----------------------------------------------------------------

    def make_unseal_authority(self) -> bytes:
        """Manufacture: a fresh authValue and a new authority object (create_unseal_authority).
        Objects sealed to an earlier authority (an earlier run's, whose value died with its
        process) can never unseal again: they are evicted, so the re-manufactured TRE starts
        pristine. Returns the authority's name."""
        with self._storage_key_alone() as srk:
            held = self.tpm.list_persistent()
            for stale in (MCIM_HANDLE, PREPROVISIONED_HANDLE, ACCESS_CREDENTIAL_HANDLE):
                if stale in held:
                    self.tpm.evict(stale)
            self.tpm.nv_undefine(ACCESS_METADATA_INDEX)   # it described the evicted credential
            authority = create_unseal_authority(self.tpm, srk)
        self._authority_public = self.tpm.read_public(UNSEAL_AUTHORITY_HANDLE).marshal()
        self._authority_value = authority.auth_value
        return self.unseal_authority_name()

    def _authority(self) -> AuthObject:
        if self._authority_value is None:
            raise TreError(f"{self.tpm.tcti}: this TRE holds no unseal authority (not manufactured in this run)")
        return AuthObject(UNSEAL_AUTHORITY_HANDLE, self._authority_value)

    def unseal_authority_public(self) -> bytes:
        """The authority object's public area (marshalled TPM2B_PUBLIC): its name goes in the
        policy of everything sealed for this TRE."""
        self._authority()
        return self._authority_public

    def unseal_authority_name(self) -> bytes:
        self._authority()
        return tpm_name(self._authority_public)

    def certify_unseal_authority(self, nonce: bytes) -> Certification:
        """TPM2_Certify of the authority object by the AK over ``nonce`` (its own authorisation
        in an HMAC session): its qualified name shows it is a child of the certified storage key."""
        keys = self.keys()
        return self.tpm.certify(self._authority(), keys.ak, nonce)

    # -- the sealed MCIM --------------------------------------------------------------------

    def has_mcim(self) -> bool:
        return self.mcim_handle in self.tpm.list_persistent()

    def install_sealed(self, public: bytes, duplicate: bytes, seed: bytes, encryption_key: bytes,
                       pcrs: Sequence[int]) -> bytes:
        """Import the wrapped object under the storage key, unseal it in the current PCR state,
        and only then persist it; returns the unsealed secret. Nothing stays in the TPM when
        any part fails."""
        authority = self._authority()
        srk = self.keys().storage_key
        private = self.tpm.import_sealed(srk, public, duplicate, seed, encryption_key)
        handle = self.tpm.load(srk, private, public)
        try:
            secret = self.tpm.unseal(handle, pcrs, salt=srk, secret=authority)
            if self.has_mcim():
                self.tpm.evict(self.mcim_handle)
            self.tpm.persist(handle, self.mcim_handle)
        finally:
            self.tpm.flush(handle)
        return secret

    def unseal_mcim(self, pcrs: Sequence[int]) -> bytes:
        """The persisted MCIM secret, in the sealed PCR state only, by this TRE only."""
        authority = self._authority()
        return self.tpm.unseal_persistent(self.mcim_handle, pcrs, salt=self.keys().storage_key, secret=authority)

    def discard_mcim(self) -> bool:
        """Evict the sealed MCIM; True when there was one."""
        if not self.has_mcim():
            return False
        self.tpm.evict(self.mcim_handle)
        return True

    # -- the initial network access credential ----------------------------------------------

    def has_access_credential(self) -> bool:
        return ACCESS_CREDENTIAL_HANDLE in self.tpm.list_persistent()

    def seal_access_credential(self, credential: AccessCredential) -> int:
        """Manufacture: a new unseal authority first (make_unseal_authority), then the TPM seals the
        credential under the storage key with the policy PolicySecret(authority) +
        PolicyCommandCode(Unseal): this TRE only, in any PCR state, so the M2ME can always go back
        to it. Persisted at ACCESS_CREDENTIAL_HANDLE, its public metadata at ACCESS_METADATA_INDEX.
        Returns the handle."""
        policy = access_policy_digest(self.make_unseal_authority())
        with self._storage_key_alone() as srk:
            private, public = self.tpm.create_sealed(srk, credential.to_bytes(), policy)
            self._persist_access_object(srk, private, public)
        write_access_metadata(self.tpm, AccessMetadata(credential.pcid, credential.not_after, tpm_name(public)))
        return ACCESS_CREDENTIAL_HANDLE

    @contextmanager
    def _storage_key_alone(self) -> Iterator[StorageKey]:
        """The storage key without the AK: replacing a persistent object takes two more of a raw
        swtpm's three object slots (the new object loaded, the old one read for its eviction)."""
        self.release()
        srk = self.tpm.create_storage_key()
        try:
            yield srk
        finally:
            self.tpm.flush(srk)

    def _persist_access_object(self, srk: StorageKey, private: bytes, public: bytes) -> None:
        handle = self.tpm.load(srk, private, public)
        try:
            if self.has_access_credential():
                self.tpm.evict(ACCESS_CREDENTIAL_HANDLE)
            self.tpm.persist(handle, ACCESS_CREDENTIAL_HANDLE)
        finally:
            self.tpm.flush(handle)

    def access_credential(self) -> AccessCredential:
        """Unseal the initial-access credential (salted session: no clear key on the TPM's bus)."""
        if not self.has_access_credential():
            raise TreError(f"{self.tpm.tcti}: no initial-access credential at persistent "
                           f"0x{ACCESS_CREDENTIAL_HANDLE:08x} (not manufactured)")
        authority = self._authority()
        data = self.tpm.unseal_persistent(ACCESS_CREDENTIAL_HANDLE, (), salt=self.keys().storage_key,
                                          secret=authority)
        try:
            return AccessCredential.from_bytes(data)
        except ValueError as exc:
            raise TreError(f"{self.tpm.tcti}: 0x{ACCESS_CREDENTIAL_HANDLE:08x}: {exc}") from exc

    def install_access_credential(self, public: bytes, duplicate: bytes, seed: bytes,
                                  encryption_key: bytes) -> AccessCredential:
        """A renewed credential, wrapped by the network for this TPM's storage key: imported and
        loaded (the TPM checks its integrity), persisted in place of the old one, read back; its
        public metadata rewritten at ACCESS_METADATA_INDEX."""
        with self._storage_key_alone() as srk:
            private = self.tpm.import_sealed(srk, public, duplicate, seed, encryption_key)
            self._persist_access_object(srk, private.marshal(), public)
        credential = self.access_credential()
        try:
            write_access_metadata(self.tpm, AccessMetadata(credential.pcid, credential.not_after, tpm_name(public)))
        except (TpmPowerLost, TpmTimeout):
            raise   # the device's fault: the caller's recovery handles it as any other TPM command's
        except TpmError:
            # e.g. TPM_RC_NV_RATE on a discrete TPM: the renewed credential is installed and the sealed
            # copy is authoritative; failing here would report a renewal refused that took place.
            # The NV copy still names the old object: bench check says it describes another one.
            pass
        return credential


    # -- a sealing parent per SHO (pre-provisioned MCIMs, 5.1.3.8.4.2 variant) ----------------

    @contextmanager
    def _sealing_parent(self, label: bytes) -> Iterator[StorageKey]:
        self.release()   # three object slots on a raw swtpm: the parent, the object, one read
        parent = self.tpm.create_storage_key_for(label)
        try:
            yield parent
        finally:
            self.tpm.flush(parent)

    def certify_sealing_parent(self, label: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
        """The storage key for ``label`` and its TPM2_Certify by the AK over ``nonce``:
        (public, attest, signature)."""
        self.release()
        ak = self.tpm.create_ak()
        try:
            parent = self.tpm.create_storage_key_for(label)
            try:
                certification = self.tpm.certify(parent, ak, nonce)
                return parent.public.marshal(), certification.attest, certification.signature
            finally:
                self.tpm.flush(parent)
        finally:
            self.tpm.flush(ak)

    def sealing_parent_name(self, label: bytes) -> bytes:
        with self._sealing_parent(label) as parent:
            return bytes(parent.name)

    def install_sealed_under(self, label: bytes, handle: int, public: bytes, duplicate: bytes, seed: bytes,
                             encryption_key: bytes, pcrs: Sequence[int]) -> bytes:
        """install_sealed() under the storage key of ``label``, persisted at ``handle``: only an
        object wrapped for that key imports (the TPM checks it). Returns the unsealed secret."""
        with self._sealing_parent(label) as parent:
            private = self.tpm.import_sealed(parent, public, duplicate, seed, encryption_key)
            loaded = self.tpm.load(parent, private, public)
            try:
                secret = self.tpm.unseal(loaded, pcrs, salt=parent, secret=self._authority())
                if handle in self.tpm.list_persistent():
                    self.tpm.evict(handle)
                self.tpm.persist(loaded, handle)
            finally:
                self.tpm.flush(loaded)
        return secret

    def unseal_under(self, label: bytes, handle: int, pcrs: Sequence[int]) -> bytes:
        """The secret persisted at ``handle``, in the sealed PCR state (session salted with its parent)."""
        with self._sealing_parent(label) as parent:
            return self.tpm.unseal_persistent(handle, pcrs, salt=parent, secret=self._authority())


def describe_access_credential(tpm: Tpm, now: float | None = None) -> str:
    """Where the initial-access credential lives (bench check), its PCID and lifetime left from
    the NV copy of its public metadata when that copy describes the sealed object (never its keys:
    those only the TRE agent of the run that manufactured it can unseal)."""
    held = tpm.list_persistent()
    if ACCESS_CREDENTIAL_HANDLE not in held:
        return f"none at persistent 0x{ACCESS_CREDENTIAL_HANDLE:08x} (M2ME not manufactured)"
    if UNSEAL_AUTHORITY_HANDLE not in held:
        return (f"persistent 0x{ACCESS_CREDENTIAL_HANDLE:08x}, but no unseal authority at "
                f"0x{UNSEAL_AUTHORITY_HANDLE:08x}: it can never unseal (manufacture again)")
    authority = object_name(tpm.read_public(UNSEAL_AUTHORITY_HANDLE))
    sealed = tpm.read_public(ACCESS_CREDENTIAL_HANDLE)   # kept: its fields point into it
    policy = bytes(sealed.publicArea.authPolicy)
    if policy != access_policy_digest(authority):
        return (f"persistent 0x{ACCESS_CREDENTIAL_HANDLE:08x}, sealed to another unseal authority than "
                f"0x{UNSEAL_AUTHORITY_HANDLE:08x}'s: it can never unseal (manufacture again)")
    where = (f"persistent 0x{ACCESS_CREDENTIAL_HANDLE:08x}, sealed to the TRE's unseal authority "
             f"0x{UNSEAL_AUTHORITY_HANDLE:08x} (PolicySecret, any PCR state)")
    metadata = read_access_metadata(tpm)
    if isinstance(metadata, str):
        return f"{where}; {metadata}"
    if metadata.sealed_name != object_name(sealed):
        return (f"{where}; NV index 0x{ACCESS_METADATA_INDEX:08x} describes another sealed object (a renewal "
                "cut short?): PCID and lifetime unknown")
    return f"{where}, PCID {metadata.pcid}, {lifetime_text(metadata.not_after, time.time() if now is None else now)}"
