"""TPM 2.0 driver over tpm2-pytss ESAPI: one method per device operation a lab engineer knows.

It knows TPMs and nothing of TR 33.812. Opened from a TCTI string as a bench file holds it
(``device:/dev/tpmrm0``, ``swtpm:host=127.0.0.1,port=N``, ``mssim:host=...,port=N``,
``tabrmd:``). Every operation emits one :class:`CommandEvent` on the hook, its ``command``
naming the TPM2 commands it issued in order (``TPM2_Quote+TPM2_PCR_Read``).

Transient slots: a raw swtpm has 3 object slots and no resource manager, and transient
objects outlive our connection. So every method flushes the sessions and objects it needed
on the way; the objects it returns (EK, AK, storage key, loaded object) belong to the
caller, who flushes them with :meth:`Tpm.flush`; :meth:`Tpm.close` flushes whatever of
them is still loaded.

Byte arguments standing for TPM2B structures (credential blob, encrypted secret, public,
duplicate, seed) are their marshalled form (``.marshal()``: 2-byte size then contents).

Its jobs live in four files: this one (the connection, hook events, object slots, PCRs,
persistence), tpm_keys.py (EK, AK, storage keys, ActivateCredential, Quote, Certify),
tpm_seal.py (Import, Load, sealed objects, policy sessions, Unseal) and tpm_nv.py (owner NV
indices: define, write, read, undefine); tpm_types.py holds the results and constants. ``from mcim_hil.drivers.tpm import ...`` reaches all of them.

There is deliberately no TPM2_Clear here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tpm2_pytss import ESAPI, TCTILdr, TSS2_Exception
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_CAP, TPM2_RC, TPM2_SE, TPM2_SU
from tpm2_pytss.types import TPM2B_PUBLIC, TPML_DIGEST_VALUES, TPMT_HA, TPMT_SYM_DEF, TPMU_HA

from .errors import DeviceNotFound, SafetyRefused, TpmError, TpmPowerLost, TpmTimeout
from .hook import CommandEvent, CommandHook
from .tpm_keys import _KeysAndAttestation
from .tpm_nv import NV_FIRST, NV_LAST, OWNER_NV_ATTRIBUTES, NvIndex, _NvStorage
from .tpm_rc import _POWER_LOST, _describe, rc_name
from .tpm_seal import _Sealing
from .tpm_types import (  # re-exported: the driver's public names stay importable from here
    _QUOTE_TRIES,
    _SOCKET_TCTIS,
    DEFAULT_TIMEOUT_S,
    EK_DEFAULT_PROFILE,
    EK_NV_FIRST,
    EK_NV_LAST,
    EK_PERSISTENT_FIRST,
    EK_PERSISTENT_LAST,
    EK_PROFILES,
    OWNER_PERSISTENT_LAST,
    PERSISTENT_FIRST,
    PERSISTENT_LAST,
    PT_FIRMWARE_VERSION_1,
    PT_FIRMWARE_VERSION_2,
    PT_FIXED,
    PT_HR_TRANSIENT_AVAIL,
    PT_LEVEL,
    PT_MANUFACTURER,
    PT_NV_BUFFER_MAX,
    PT_REVISION,
    PT_VENDOR_STRING_1,
    Ak,
    AuthObject,
    Certification,
    Ek,
    Handle,
    PublicKey,
    Quote,
    StorageKey,
    T,
    TpmInfo,
    _bank_alg,
    _Operation,
    _pcr_selection,
    _selected,
    object_name,
)
from .tpm_watchdog import _Watchdog

__all__ = ["Tpm", "TpmInfo", "Ek", "Ak", "StorageKey", "Quote", "Certification", "AuthObject", "Handle",
           "PublicKey", "object_name", "rc_name", "EK_PROFILES", "EK_DEFAULT_PROFILE", "EK_NV_FIRST", "EK_NV_LAST",
           "PERSISTENT_FIRST", "PERSISTENT_LAST", "OWNER_PERSISTENT_LAST", "EK_PERSISTENT_FIRST",
           "EK_PERSISTENT_LAST", "PT_HR_TRANSIENT_AVAIL", "PT_NV_BUFFER_MAX", "DEFAULT_TIMEOUT_S",
           "NvIndex", "NV_FIRST", "NV_LAST", "OWNER_NV_ATTRIBUTES"]


# --- the driver ------------------------------------------------------------------------------

class Tpm(_KeysAndAttestation, _Sealing, _NvStorage):
    """A TPM 2.0 reached through a TCTI; use :meth:`open`."""

    def __init__(self, tcti: str, tcti_ctx: TCTILdr, esapi: ESAPI, hook: CommandHook,
                 watchdog: _Watchdog | None = None) -> None:
        self.tcti = tcti
        self.hook = hook
        self._watchdog = watchdog
        self._given_up: str | None = None  # why the connection is no longer used
        self._tcti_ctx: TCTILdr | None = tcti_ctx
        self._esapi: ESAPI | None = esapi
        self._owned: list[ESYS_TR] = []  # transient objects handed to the caller, as they hold them
        # handed-out objects moved out and back (ContextSave, ContextLoad) to make room:
        # the caller's handle -> the object's ESYS_TR now
        self._moved: dict[int, ESYS_TR] = {}
        self._fixed: dict[int, int] | None = None

    # -- open / close ---------------------------------------------------------------------

    @classmethod
    def open(cls, tcti: str, hook: CommandHook | None = None,
             timeout: float = DEFAULT_TIMEOUT_S) -> Tpm:
        """Open ``name:conf`` (``swtpm:host=127.0.0.1,port=2321``, ``device:/dev/tpmrm0``...).

        ``timeout``: the longest one operation waits for the TPM on a socket TCTI; then it
        raises TpmTimeout and the connection is given up. (The kernel bounds /dev/tpm*.)
        """
        name, _, conf = tcti.partition(":")
        if not name:
            raise ValueError(f"TCTI {tcti!r}: expected name:conf")
        if timeout <= 0:
            raise ValueError(f"TPM timeout must be positive, got {timeout}")
        try:
            tcti_ctx = TCTILdr(name, conf or None)
        except TSS2_Exception as exc:
            raise DeviceNotFound(tcti, "Tss2_TctiLdr_Initialize", _describe(exc)) from exc
        watchdog = None
        if name in _SOCKET_TCTIS:
            opts = dict(kv.split("=", 1) for kv in (conf or "").split(",") if "=" in kv)
            port = int(opts.get("port", "2321"))  # tpm2-tss's default for both
            watchdog = _Watchdog({port}, timeout)
        try:
            esapi = ESAPI(tcti_ctx)
        except TSS2_Exception as exc:
            tcti_ctx.close()
            if watchdog is not None:
                watchdog.close()
            raise DeviceNotFound(tcti, "Esys_Initialize", _describe(exc)) from exc
        tpm = cls(tcti, tcti_ctx, esapi, hook if hook is not None else CommandHook(), watchdog)
        if name in ("swtpm", "mssim"):
            # a simulator may be powered on but not started; an OS-managed TPM already is
            try:
                tpm._startup()
            except TpmError as exc:
                tpm.close()
                if (exc.rc or 0) >> 16 == 10:  # TCTI layer: nobody answers there
                    raise DeviceNotFound(tcti, "TPM2_Startup", exc.message) from exc
                raise
        return tpm

    def _startup(self) -> None:
        with self._operation() as op:
            try:
                self._call(op, "TPM2_Startup", self._ctx.startup, TPM2_SU.CLEAR)
            except TpmError as exc:
                if exc.rc != TPM2_RC.INITIALIZE:  # already started: fine
                    raise
                op.status = exc.rc_name

    def reopen(self) -> None:
        """After a power loss or a given-up connection: libtss2's ESYS context stays in an
        internal-error state after a broken connection (every later call is BAD_SEQUENCE), so a
        new TCTI and ESYS context are opened on the same TCTI string, and started. Nothing is
        flushed: what this driver handed out is gone with the power (callers load it again)."""
        name, _, conf = self.tcti.partition(":")
        if self._esapi is not None:
            self._esapi.close()
        if self._tcti_ctx is not None:
            self._tcti_ctx.close()
        self._esapi = self._tcti_ctx = None
        self._owned.clear()
        self._moved.clear()
        self._given_up = None
        try:
            self._tcti_ctx = TCTILdr(name, conf or None)
            self._esapi = ESAPI(self._tcti_ctx)
        except TSS2_Exception as exc:
            raise DeviceNotFound(self.tcti, "Esys_Initialize", _describe(exc)) from exc
        if name in ("swtpm", "mssim"):
            self._startup()

    def close(self) -> None:
        """Flush the objects this driver handed out and still loaded, then let the TCTI go."""
        if self._esapi is None:
            return
        for handle in list(self._owned) if self._given_up is None else []:
            try:
                self.flush(handle)
            except TpmError:
                pass  # best effort: the TPM may have been power-cycled under us
        self._esapi.close()
        self._esapi = None
        if self._tcti_ctx is not None:
            self._tcti_ctx.close()
            self._tcti_ctx = None
        if self._watchdog is not None:
            self._watchdog.close()

    def __enter__(self) -> Tpm:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Tpm({self.tcti!r}{'' if self._esapi else ', closed'})"

    @property
    def _ctx(self) -> ESAPI:
        if self._esapi is None:
            raise TpmError(self.tcti, "open", "the TPM connection is closed")
        if self._given_up is not None:
            raise TpmError(self.tcti, "open", f"the TPM connection was given up: {self._given_up}; "
                           "reopen it")
        return self._esapi

    # -- one hook event per operation; TpmError per failing command ---------------------------

    @contextmanager
    def _operation(self, secret: bool = False) -> Iterator[_Operation]:
        op = _Operation()
        started, t0 = time.time(), time.perf_counter()
        status = "TPM_RC_SUCCESS"
        try:
            if self._watchdog is None:
                yield op
            else:
                with self._watchdog.armed():
                    yield op
        except TpmError as exc:
            status = exc.rc_name or "ERROR"
            raise
        except BaseException:
            status = "ERROR"
            raise
        finally:
            self.hook.emit(CommandEvent(
                device="tpm", port=self.tcti, command="+".join(op.commands) or "none",
                request=b"", response=b"", status=op.status or status, started=started,
                duration_s=time.perf_counter() - t0, secret=secret))

    def _call(self, op: _Operation, command: str, fn: Callable[..., T], *args: Any,
              **kwargs: Any) -> T:
        op.note(command)
        try:
            return fn(*args, **kwargs)
        except TSS2_Exception as exc:
            if self._watchdog is not None and self._watchdog.fired:
                self._given_up = f"no answer within {self._watchdog.timeout:g} s"
                raise TpmTimeout(self.tcti, command, f"{self._given_up} (the TPM may or may not "
                                 "have carried it out); the connection is given up",
                                 rc=int(exc.rc), rc_name="timeout") from exc
            name = rc_name(exc.rc)
            lost = _POWER_LOST.get(name) if command != "TPM2_Startup" else None
            if name.startswith("TPM_RC_REFERENCE_H") and not self._owned:
                lost = None  # nothing of ours was loaded: a caller's stale handle
            if lost:
                raise TpmPowerLost(self.tcti, command, f"{lost} ({name})", rc=int(exc.rc),
                                   rc_name=name) from exc
            raise TpmError(self.tcti, command, _describe(exc), rc=int(exc.rc),
                           rc_name=rc_name(exc.rc)) from exc

    def _flush_quietly(self, op: _Operation, handle: ESYS_TR) -> None:
        """Flush what an operation created, without hiding the operation's own error."""
        try:
            self._call(op, "TPM2_FlushContext", self._ctx.flush_context, handle)
        except TpmError:
            pass

    def _handle(self, obj: Handle) -> ESYS_TR:
        handle = obj.handle if isinstance(obj, (Ek, Ak, StorageKey)) else obj
        return self._moved.get(int(handle), handle)

    @contextmanager
    def _room_for_persistent(self, op: _Operation, keep: Sequence[Handle] = ()) -> Iterator[None]:
        """A free object slot for a command that names a persistent object: the TPM loads it
        into a transient slot for the command (TPM 2.0 Part 1, 30.4), and a raw TPM has no
        resource manager. When every slot holds an object we handed out, one that this
        command does not use is saved (TPM2_ContextSave), flushed and loaded back after;
        the caller's handle keeps naming it."""
        _, data = self._call(op, "TPM2_GetCapability", self._ctx.get_capability,
                             TPM2_CAP.TPM_PROPERTIES, PT_HR_TRANSIENT_AVAIL, 1)
        props = [p for p in data.data.tpmProperties if int(p.property) == PT_HR_TRANSIENT_AVAIL]
        kept = {int(self._handle(k)) for k in keep}
        movable = [h for h in self._owned if int(self._handle(h)) not in kept]
        if not props or int(props[0].value) > 0 or not movable:
            yield  # room enough, or nothing of ours to move: the TPM's answer stands
            return
        mine = movable[0]
        current = self._handle(mine)
        saved = self._call(op, "TPM2_ContextSave", self._ctx.context_save, current)
        self._call(op, "TPM2_FlushContext", self._ctx.flush_context, current)
        try:
            yield
        finally:
            self._moved[int(mine)] = self._call(op, "TPM2_ContextLoad", self._ctx.context_load,
                                                saved)

    @contextmanager
    def _authorised(self, op: _Operation, obj: AuthObject) -> Iterator[tuple[ESYS_TR, ESYS_TR]]:
        """The persistent object ``obj`` names, with its authValue set, and an HMAC session that
        authorises a use of it: the value itself never crosses the TPM's bus (TPM 2.0 Part 1,
        19.6.2). Yields (object, session); both are let go after."""
        tr = self._call(op, "TPM2_ReadPublic", self._ctx.tr_from_tpmpublic, obj.handle)
        try:
            self._ctx.tr_set_auth(tr, obj.auth_value)
            session = self._call(op, "TPM2_StartAuthSession", self._ctx.start_auth_session,
                                 ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.HMAC,
                                 TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
            try:
                yield tr, session
            finally:
                self._flush_quietly(op, session)
        finally:
            self._ctx.tr_close(tr)

    def _hand_out(self, handle: ESYS_TR) -> ESYS_TR:
        self._owned.append(handle)
        return handle

    # -- identity ---------------------------------------------------------------------------

    def _fixed_properties(self, op: _Operation) -> dict[int, int]:
        if self._fixed is None:
            props: dict[int, int] = {}
            more, start = True, PT_FIXED
            while more:
                more, data = self._call(op, "TPM2_GetCapability", self._ctx.get_capability,
                                        TPM2_CAP.TPM_PROPERTIES, start, 64)
                entries = list(data.data.tpmProperties)
                if not entries:
                    break
                for prop in entries:
                    props[int(prop.property)] = int(prop.value)
                start = int(entries[-1].property) + 1
                more = more and start < PT_FIXED + 0x100
            self._fixed = props
        return self._fixed

    def info(self) -> TpmInfo:
        """Manufacturer, vendor, firmware and spec revision (GetCapability TPM_PROPERTIES)."""
        with self._operation() as op:
            props = self._fixed_properties(op)

        def text(*keys: int) -> str:
            raw = b"".join(props.get(k, 0).to_bytes(4, "big") for k in keys)
            return raw.replace(b"\x00", b"").decode("ascii", "replace").strip()

        fw1 = props.get(PT_FIRMWARE_VERSION_1, 0)
        fw2 = props.get(PT_FIRMWARE_VERSION_2, 0)
        return TpmInfo(
            manufacturer=text(PT_MANUFACTURER),
            vendor=text(*(PT_VENDOR_STRING_1 + i for i in range(4))),
            firmware_version=fw1 << 32 | fw2,
            firmware_version_text=f"{fw1 >> 16}.{fw1 & 0xFFFF}",
            spec_revision=props.get(PT_REVISION, 0),
            spec_level=props.get(PT_LEVEL, 0),
        )

    # -- PCRs -----------------------------------------------------------------------------

    def pcr_read(self, pcrs: Sequence[int], bank: str = "sha256") -> dict[int, bytes]:
        """Read PCRs; TPM2_PCR_Read answers at most 8 digests a call, so loop."""
        with self._operation() as op:
            return self._pcr_read(op, pcrs, bank)

    def _pcr_read(self, op: _Operation, pcrs: Sequence[int], bank: str) -> dict[int, bytes]:
        _bank_alg(bank)
        wanted = sorted(set(pcrs))
        for _ in range(_QUOTE_TRIES):
            values: dict[int, bytes] = {}
            counter: int | None = None
            consistent = True
            while len(values) < len(wanted):
                left = [p for p in wanted if p not in values]
                update, selection, digests = self._call(
                    op, "TPM2_PCR_Read", self._ctx.pcr_read, _pcr_selection(left, bank))
                got = [p for p in _selected(selection) if p in left]
                if not got:
                    raise TpmError(self.tcti, "TPM2_PCR_Read",
                                   f"no digest for PCR(s) {left} in bank {bank}")
                for index, digest in zip(got, digests):
                    values[index] = bytes(digest)
                if counter is not None and update != counter:
                    consistent = False  # a PCR moved between two reads
                counter = update
            if consistent:
                return values
        raise TpmError(self.tcti, "TPM2_PCR_Read", "PCRs kept changing during the read")

    def pcr_extend(self, pcr: int, digest: bytes, bank: str = "sha256") -> None:
        alg = _bank_alg(bank)
        if not 0 <= pcr <= 31:
            raise ValueError(f"PCR {pcr} out of 0..31")
        size = hashlib.new(bank).digest_size
        if len(digest) != size:
            raise ValueError(f"a {bank} digest is {size} bytes, got {len(digest)}")
        values = TPML_DIGEST_VALUES(digests=[
            TPMT_HA(hashAlg=alg, digest=TPMU_HA(**{bank: digest}))])
        with self._operation() as op:
            self._call(op, "TPM2_PCR_Extend", self._ctx.pcr_extend,
                       ESYS_TR.PCR0 + pcr, values)

    def pcr_reset(self, pcr: int) -> None:
        """TPM2_PCR_Reset; PC Client TPMs allow it at locality 0 for PCR 16 and 23 only."""
        if not 0 <= pcr <= 31:
            raise ValueError(f"PCR {pcr} out of 0..31")
        with self._operation() as op:
            self._call(op, "TPM2_PCR_Reset", self._ctx.pcr_reset, ESYS_TR.PCR0 + pcr)

    def measure(self, pcr: int, data: bytes) -> bytes:
        """Extend sha256(data) into the sha256 bank of `pcr`; returns the digest."""
        digest = hashlib.sha256(data).digest()
        self.pcr_extend(pcr, digest, "sha256")
        return digest

    # -- persistence ------------------------------------------------------------------------

    def persist(self, handle: Handle, persistent_handle: int) -> ESYS_TR:
        """TPM2_EvictControl (owner): a persistent copy of a loaded object. The transient stays."""
        if not PERSISTENT_FIRST <= persistent_handle <= OWNER_PERSISTENT_LAST:
            raise ValueError(f"0x{persistent_handle:08x} is not an owner persistent handle")
        with self._operation() as op:
            return self._call(op, "TPM2_EvictControl", self._ctx.evict_control,
                              ESYS_TR.OWNER, self._handle(handle), persistent_handle)

    def evict(self, persistent_handle: int) -> None:
        """Remove a persistent object. The endorsement key range is refused (precious)."""
        if EK_PERSISTENT_FIRST <= persistent_handle <= EK_PERSISTENT_LAST:
            raise SafetyRefused(self.tcti, "TPM2_EvictControl",
                                f"0x{persistent_handle:08x} is in the endorsement key range")
        with self._operation() as op, self._room_for_persistent(op):
            tr = self._call(op, "TPM2_ReadPublic", self._ctx.tr_from_tpmpublic,
                            persistent_handle)
            try:
                self._call(op, "TPM2_EvictControl", self._ctx.evict_control,
                           ESYS_TR.OWNER, tr, persistent_handle)
            finally:
                self._ctx.tr_close(tr)  # ESYS keeps the metadata of an evicted object

    def list_persistent(self) -> list[int]:
        with self._operation() as op:
            found: list[int] = []
            more, start = True, PERSISTENT_FIRST
            while more:
                more, data = self._call(op, "TPM2_GetCapability", self._ctx.get_capability,
                                        TPM2_CAP.HANDLES, start, 64)
                handles = [int(h) for h in data.data.handles]
                found += [h for h in handles if h <= PERSISTENT_LAST]
                if not handles:
                    break
                start = handles[-1] + 1
            return found

    def read_public(self, persistent_handle: int) -> TPM2B_PUBLIC:
        with self._operation() as op, self._room_for_persistent(op):
            tr = self._call(op, "TPM2_ReadPublic", self._ctx.tr_from_tpmpublic,
                            persistent_handle)
            try:
                public, _, _ = self._call(op, "TPM2_ReadPublic", self._ctx.read_public, tr)
            finally:
                self._ctx.tr_close(tr)
        return public

    def flush(self, handle: Handle) -> None:
        """TPM2_FlushContext of a transient object or session."""
        mine = handle.handle if isinstance(handle, (Ek, Ak, StorageKey)) else handle
        tr = self._handle(handle)
        with self._operation() as op:
            try:
                self._call(op, "TPM2_FlushContext", self._ctx.flush_context, tr)
            finally:
                if mine in self._owned:
                    self._owned.remove(mine)
                self._moved.pop(int(mine), None)

    # -- appended for the fault matrix's end-state check ---------------------------------------

    def transient_slots_free(self) -> int | None:
        """TPM_PT_HR_TRANSIENT_AVAIL: free transient object slots now (None if not reported).
        On a TPM without a resource manager, an object someone forgot to flush shows here."""
        with self._operation() as op:
            _, data = self._call(op, "TPM2_GetCapability", self._ctx.get_capability,
                                 TPM2_CAP.TPM_PROPERTIES, PT_HR_TRANSIENT_AVAIL, 1)
        props = [p for p in data.data.tpmProperties if int(p.property) == PT_HR_TRANSIENT_AVAIL]
        return int(props[0].value) if props else None
