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

There is deliberately no TPM2_Clear here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tpm2_pytss import ESAPI, TCTILdr, TSS2_Exception
from tpm2_pytss.constants import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_CC,
    TPM2_ECC,
    TPM2_RC,
    TPM2_SE,
    TPM2_SU,
    TPMA_NV,
    TPMA_OBJECT,
    TPMA_SESSION,
    TSS2_RC,
)
from tpm2_pytss.types import (
    TPM2B_DIGEST,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPML_DIGEST_VALUES,
    TPML_PCR_SELECTION,
    TPMS_ATTEST,
    TPMS_ECC_PARMS,
    TPMS_ECC_POINT,
    TPMS_SCHEME_HASH,
    TPMT_ECC_SCHEME,
    TPMT_HA,
    TPMT_KDF_SCHEME,
    TPMT_PUBLIC,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TPMT_SYM_DEF_OBJECT,
    TPMU_ASYM_SCHEME,
    TPMU_HA,
    TPMU_PUBLIC_ID,
    TPMU_PUBLIC_PARMS,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)
from tpm2_pytss.utils import NoSuchIndex, create_ek_template

from .errors import DeviceNotFound, SafetyRefused, TpmError, TpmPowerLost, TpmTimeout
from .tpm_rc import _POWER_LOST, _describe, rc_name
from .tpm_templates import _AES128_CFB, _SESSION_AES128_CFB, _ak_template, _storage_key_template
from .tpm_watchdog import _Watchdog
from .hook import CommandEvent, CommandHook

T = TypeVar("T")
PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey]

# TCG EK Credential Profile 2.x, 2.2.1.4 (low range) / 2.2.1.5 (high range): EK certificate
# NV indices, in the order ek() looks for them (ECC first: cheaper to recreate than RSA).
EK_PROFILES: tuple[tuple[str, int], ...] = (
    ("EK-ECC256", 0x01C0000A),        # L-2 ECC NIST P-256
    ("EK-HIGH-ECC256", 0x01C00014),   # H-2 ECC NIST P-256
    ("EK-HIGH-ECC384", 0x01C00016),   # H-3 ECC NIST P-384 (swtpm_setup's ECC EK)
    ("EK-HIGH-ECC521", 0x01C00018),   # H-4 ECC NIST P-521
    ("EK-RSA2048", 0x01C00002),       # L-1 RSA 2048 (swtpm_setup's RSA EK)
    ("EK-HIGH-RSA2048", 0x01C00012),  # H-1 RSA 2048
    ("EK-HIGH-RSA3072", 0x01C0001C),  # H-6 RSA 3072
    ("EK-HIGH-RSA4096", 0x01C0001E),  # H-7 RSA 4096
)
EK_DEFAULT_PROFILE = "EK-ECC256"  # no certificate at all: the L-2 template
EK_NV_FIRST, EK_NV_LAST = 0x01C00000, 0x01C07FFF  # TCG handle registry: EK credential NV range

# TCG Registry of Reserved TPM 2.0 Handles 2.3.1: persistent object ranges
PERSISTENT_FIRST, PERSISTENT_LAST = 0x81000000, 0x81FFFFFF
OWNER_PERSISTENT_LAST = 0x817FFFFF
EK_PERSISTENT_FIRST, EK_PERSISTENT_LAST = 0x81010000, 0x8101FFFF  # endorsement primary keys

# TPM 2.0 Part 2, 6.13 TPM_PT: fixed properties (tpm2-pytss names only some of them)
PT_FIXED = 0x100
PT_LEVEL, PT_REVISION, PT_MANUFACTURER = 0x101, 0x102, 0x105
PT_VENDOR_STRING_1 = 0x106  # .. _4 = 0x109
PT_FIRMWARE_VERSION_1, PT_FIRMWARE_VERSION_2 = 0x10B, 0x10C
PT_NV_BUFFER_MAX = 0x12C
PT_HR_TRANSIENT_AVAIL = 0x207  # TPM 2.0 Part 2, 6.13: free transient object slots (variable)

_BANKS: dict[str, TPM2_ALG] = {
    "sha1": TPM2_ALG.SHA1, "sha256": TPM2_ALG.SHA256,
    "sha384": TPM2_ALG.SHA384, "sha512": TPM2_ALG.SHA512,
}
_HASH_NAMES: dict[int, str] = {int(alg): name for name, alg in _BANKS.items()}
_QUOTE_TRIES = 3  # another client extending a PCR between Quote and PCR_Read: quote again

# Longest a driver operation may wait for the TPM (bench file: tpm.timeout). swtpm answers
# in milliseconds; a discrete TPM's RSA key generation can take seconds.
DEFAULT_TIMEOUT_S = 30.0
_SOCKET_TCTIS = ("swtpm", "mssim")

# --- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TpmInfo:
    manufacturer: str            # TPM_PT_MANUFACTURER as its 4-char id ("IBM", "IFX", "STM")
    vendor: str                  # TPM_PT_VENDOR_STRING_1..4
    firmware_version: int        # TPM_PT_FIRMWARE_VERSION_1 << 32 | _2 (as in TPMS_ATTEST)
    firmware_version_text: str   # "major.minor" from TPM_PT_FIRMWARE_VERSION_1
    spec_revision: int           # TPM_PT_REVISION, e.g. 164 for 1.64
    spec_level: int              # TPM_PT_LEVEL


@dataclass(eq=False)
class Ek:
    handle: ESYS_TR
    public: TPM2B_PUBLIC = field(repr=False)
    public_key: PublicKey = field(repr=False)
    certificate: x509.Certificate | None = field(repr=False)
    profile: str = ""                    # TCG template name, e.g. "EK-HIGH-ECC384"
    certificate_index: int | None = None  # NV index the certificate came from


@dataclass(eq=False)
class Ak:
    handle: ESYS_TR
    public: TPM2B_PUBLIC = field(repr=False)
    name: bytes = field(repr=False)
    public_key: ec.EllipticCurvePublicKey = field(repr=False)


@dataclass(eq=False)
class StorageKey:
    handle: ESYS_TR
    public: TPM2B_PUBLIC = field(repr=False)
    name: bytes = field(repr=False)


@dataclass(frozen=True)
class Quote:
    attest: bytes                 # marshalled TPMS_ATTEST (what the signature covers)
    signature: bytes              # marshalled TPMT_SIGNATURE
    pcr_values: dict[int, bytes]  # the quoted PCRs, read at the same moment
    bank: str = "sha256"


@dataclass(frozen=True)
class Certification:
    attest: bytes     # marshalled TPMS_ATTEST of type TPM_ST_ATTEST_CERTIFY
    signature: bytes  # marshalled TPMT_SIGNATURE


Handle = Union[ESYS_TR, Ek, Ak, StorageKey]


# --- helpers ---------------------------------------------------------------------------------

def object_name(public: TPM2B_PUBLIC | TPMT_PUBLIC) -> bytes:
    """TPM 2.0 Part 1, 16: Name = nameAlg (2 bytes) || H_nameAlg(marshalled TPMT_PUBLIC)."""
    area = public.publicArea if isinstance(public, TPM2B_PUBLIC) else public
    alg = int(area.nameAlg)
    if alg not in _HASH_NAMES:
        raise ValueError(f"name algorithm 0x{alg:04x} not supported")
    return alg.to_bytes(2, "big") + hashlib.new(_HASH_NAMES[alg], area.marshal()).digest()


def _pcr_selection(pcrs: Sequence[int], bank: str) -> TPML_PCR_SELECTION:
    return TPML_PCR_SELECTION.parse(f"{bank}:{','.join(str(p) for p in pcrs)}")


def _selected(selection: TPML_PCR_SELECTION) -> list[int]:
    """PCR indices set in a selection (one bank), ascending."""
    found: list[int] = []
    for i in range(selection.count):
        sel = selection.pcrSelections[i]
        bits = bytes(sel.pcrSelect)[: sel.sizeofSelect]
        found += [octet * 8 + bit for octet, byte in enumerate(bits)
                  for bit in range(8) if byte >> bit & 1]
    return sorted(found)


def _bank_alg(bank: str) -> TPM2_ALG:
    try:
        return _BANKS[bank]
    except KeyError:
        raise ValueError(f"unknown PCR bank {bank!r}; one of {sorted(_BANKS)}") from None


def _unmarshal(cls: Any, data: Any) -> Any:
    """A pytss structure, or its marshalled bytes (all of them, nothing after)."""
    if isinstance(data, cls):
        return data
    if isinstance(data, (bytes, bytearray)):
        obj, used = cls.unmarshal(bytes(data))
        if used != len(data):
            raise ValueError(f"{cls.__name__}: {len(data) - used} bytes after the structure")
        return obj
    raise TypeError(f"expected {cls.__name__} or its marshalled bytes, got {type(data).__name__}")


def _der_certificate(blob: bytes) -> x509.Certificate:
    """An X.509 DER certificate from an NV index that may pad it (0x00 / 0xFF) at the end."""
    if len(blob) < 4 or blob[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    if blob[1] < 0x80:
        size = 2 + blob[1]
    else:
        octets = blob[1] & 0x7F
        size = 2 + octets + int.from_bytes(blob[2:2 + octets], "big")
    return x509.load_der_x509_certificate(blob[:size])


def _public_key(public: TPM2B_PUBLIC) -> PublicKey:
    key = serialization.load_der_public_key(public.to_der())
    assert isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey))
    return key


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


class _Operation:
    """The TPM2 commands one driver operation issued, for its hook event."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.status: str | None = None  # a tolerated response code, e.g. TPM_RC_INITIALIZE

    def note(self, command: str) -> None:
        if not self.commands or self.commands[-1] != command:
            self.commands.append(command)


# --- the driver ------------------------------------------------------------------------------

class Tpm:
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

    # -- keys -------------------------------------------------------------------------------

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

    def certify(self, obj_handle: Handle, ak: Ak | ESYS_TR, nonce: bytes) -> Certification:
        """TPM2_Certify: the AK signs the name and qualified name of a loaded object."""
        with self._operation() as op:
            attest, signature = self._call(
                op, "TPM2_Certify", self._ctx.certify, self._handle(obj_handle),
                self._handle(ak), nonce, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL))
        return Certification(attest=bytes(attest.attestationData),
                             signature=signature.marshal())

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
               salt: Handle | None = None) -> bytes:
        """TPM2_Unseal through PolicyPCR(pcrs, current values) + PolicyCommandCode(Unseal).

        A PCR state other than the one sealed to fails with TPM_RC_POLICY_FAIL. The event is
        flagged secret: the unsealed bytes never reach a log. With ``salt`` (a loaded key, e.g.
        the storage key) the policy session is salted with it and encrypts the response, so the
        secret does not cross a discrete TPM's bus in clear (TPM 2.0 Part 1, 21 and 19.6.13).
        """
        with self._operation(secret=True) as op:
            return self._unseal(op, self._handle(obj_handle), pcrs, bank, salt)

    def unseal_persistent(self, persistent_handle: int, pcrs: Sequence[int],
                          bank: str = "sha256", *, salt: Handle | None = None) -> bytes:
        """unseal() of a sealed object persisted at `persistent_handle`."""
        keep = [salt] if salt is not None else []
        with self._operation(secret=True) as op, self._room_for_persistent(op, keep):
            tr = self._call(op, "TPM2_ReadPublic", self._ctx.tr_from_tpmpublic,
                            persistent_handle)
            try:
                return self._unseal(op, tr, pcrs, bank, salt)
            finally:
                self._ctx.tr_close(tr)

    def _unseal(self, op: _Operation, handle: ESYS_TR, pcrs: Sequence[int], bank: str,
                salt: Handle | None = None) -> bytes:
        selection = _pcr_selection(sorted(set(pcrs)), bank)
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
            self._call(op, "TPM2_PolicyPCR", self._ctx.policy_pcr, session,
                       TPM2B_DIGEST(), selection)
            self._call(op, "TPM2_PolicyCommandCode", self._ctx.policy_command_code,
                       session, TPM2_CC.Unseal)
            data = self._call(op, "TPM2_Unseal", self._ctx.unseal, handle, session1=session)
        finally:
            self._flush_quietly(op, session)
        return bytes(data)

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

    # -- data sealed by the TPM itself under an owner policy (appended for the TRE) -----------

    def owner_unseal_policy(self) -> bytes:
        """The policy digest PolicySecret(TPM_RH_OWNER) + PolicyCommandCode(Unseal), computed by
        the TPM in a trial session: only who holds owner authorisation may unseal, in any PCR
        state (unlike the MCIM's PolicyPCR)."""
        with self._operation() as op:
            session = self._call(op, "TPM2_StartAuthSession", self._ctx.start_auth_session,
                                 ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.TRIAL,
                                 TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
            try:
                self._call(op, "TPM2_PolicySecret", self._ctx.policy_secret, ESYS_TR.OWNER, session,
                           expiration=0)
                self._call(op, "TPM2_PolicyCommandCode", self._ctx.policy_command_code, session,
                           TPM2_CC.Unseal)
                digest = self._call(op, "TPM2_PolicyGetDigest", self._ctx.policy_get_digest, session)
            finally:
                self._flush_quietly(op, session)
        return bytes(digest)

    def create_sealed(self, parent: StorageKey | ESYS_TR, data: bytes,
                      policy: bytes) -> tuple[bytes, bytes]:
        """TPM2_Create of a sealed data object under `parent`, unsealable only through `policy`
        (no userWithAuth), fixed to this TPM and parent. Returns (private, public) marshalled,
        for load(). The data never leaves in a hook event (flagged secret)."""
        template = TPM2B_PUBLIC(publicArea=TPMT_PUBLIC(
            type=TPM2_ALG.KEYEDHASH,
            nameAlg=TPM2_ALG.SHA256,
            objectAttributes=TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.NODA,
            authPolicy=TPM2B_DIGEST(policy),
        ))
        template.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG.NULL
        sensitive = TPM2B_SENSITIVE_CREATE()
        sensitive.sensitive.data = data
        with self._operation(secret=True) as op:
            private, public, *_ = self._call(op, "TPM2_Create", self._ctx.create, self._handle(parent),
                                             sensitive, template)
        return private.marshal(), public.marshal()

    def unseal_persistent_owner(self, persistent_handle: int, *, salt: Handle | None = None) -> bytes:
        """Unseal an object persisted at `persistent_handle` through owner_unseal_policy()
        (owner auth assumed empty, as for create_storage_key). ``salt`` as for unseal()."""
        if salt is None:
            tpm_key, symmetric = ESYS_TR.NONE, TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
        else:
            tpm_key, symmetric = self._handle(salt), _SESSION_AES128_CFB
        with self._operation(secret=True) as op:
            tr = self._call(op, "TPM2_ReadPublic", self._ctx.tr_from_tpmpublic, persistent_handle)
            try:
                session = self._call(op, "TPM2_StartAuthSession", self._ctx.start_auth_session,
                                     tpm_key, ESYS_TR.NONE, TPM2_SE.POLICY, symmetric, TPM2_ALG.SHA256)
                if salt is not None:
                    self._ctx.trsess_set_attributes(session, TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION)
                try:
                    self._call(op, "TPM2_PolicySecret", self._ctx.policy_secret, ESYS_TR.OWNER, session,
                               expiration=0)
                    self._call(op, "TPM2_PolicyCommandCode", self._ctx.policy_command_code, session,
                               TPM2_CC.Unseal)
                    data = self._call(op, "TPM2_Unseal", self._ctx.unseal, tr, session1=session)
                finally:
                    self._flush_quietly(op, session)
            finally:
                self._ctx.tr_close(tr)
        return bytes(data)

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

    # -- appended for the fault matrix's end-state check ---------------------------------------

    def transient_slots_free(self) -> int | None:
        """TPM_PT_HR_TRANSIENT_AVAIL: free transient object slots now (None if not reported).
        On a TPM without a resource manager, an object someone forgot to flush shows here."""
        with self._operation() as op:
            _, data = self._call(op, "TPM2_GetCapability", self._ctx.get_capability,
                                 TPM2_CAP.TPM_PROPERTIES, PT_HR_TRANSIENT_AVAIL, 1)
        props = [p for p in data.data.tpmProperties if int(p.property) == PT_HR_TRANSIENT_AVAIL]
        return int(props[0].value) if props else None
