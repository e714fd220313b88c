"""The TPM driver's NV indices: define (or resize), write, read, read the public area to tell one
exists, undefine. Ordinary owner indices only, authorised by the owner hierarchy (a bench TPM's
owner auth is empty, as the rest of the driver assumes). The EK credential range is refused for
anything that changes it: its certificates are the TPM maker's and cannot be written back. A mixin
of :class:`mcim_hil.drivers.tpm.Tpm`, which owns the connection, the hook events and the timeouts."""

from __future__ import annotations

from dataclasses import dataclass

from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_NT, TPMA_NV
from tpm2_pytss.types import TPM2B_NV_PUBLIC, TPMS_NV_PUBLIC

from .errors import SafetyRefused, TpmError
from .tpm_types import EK_NV_FIRST, EK_NV_LAST, PT_NV_BUFFER_MAX, _Operation

# TCG Registry of Reserved TPM 2.0 Handles 2.2: NV indices are 0x01xxxxxx (handle type TPM_HT_NV_INDEX)
NV_FIRST, NV_LAST = 0x01000000, 0x01FFFFFF
# owner-written, owner-read with the owner's (empty) auth; NO_DA: a bench retrying does not
# push the TPM toward dictionary-attack lockout
OWNER_NV_ATTRIBUTES = TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.NO_DA


@dataclass(frozen=True)
class NvIndex:
    """An NV index's public area as the TPM reports it (TPM2_NV_ReadPublic)."""

    index: int
    size: int          # dataSize
    attributes: int    # TPMA_NV
    written: bool      # TPMA_NV_WRITTEN: a read before the first write fails (NV_UNINITIALIZED)


class _NvStorage:
    """Tpm's NV operations (see tpm.py for the connection they run on)."""

    def _changeable_nv(self, index: int, command: str) -> None:
        if not NV_FIRST <= index <= NV_LAST:
            raise ValueError(f"0x{index:08x} is not an NV index handle (0x01000000..0x01ffffff)")
        if EK_NV_FIRST <= index <= EK_NV_LAST:
            raise SafetyRefused(self.tcti, command,
                                f"0x{index:08x} is in the endorsement credential NV range")

    def _nv_public(self, op: _Operation, index: int) -> NvIndex | None:
        if index not in self._nv_indices(op, index, index):
            return None
        nv = self._call(op, "TPM2_NV_ReadPublic", self._ctx.tr_from_tpmpublic, index)
        try:
            public, _ = self._call(op, "TPM2_NV_ReadPublic", self._ctx.nv_read_public, nv)
        finally:
            self._ctx.tr_close(nv)
        area = public.nvPublic
        return NvIndex(index, int(area.dataSize), int(area.attributes),
                       bool(int(area.attributes) & TPMA_NV.WRITTEN))

    def nv_read_public(self, index: int) -> NvIndex | None:
        """The index's public area, or None when no such index is defined."""
        with self._operation() as op:
            return self._nv_public(op, index)

    def nv_define(self, index: int, size: int) -> NvIndex:
        """An ordinary owner index of ``size`` bytes (OWNER_NV_ATTRIBUTES): defined when missing,
        undefined and defined again when its size or attributes differ (its data is lost then),
        left alone otherwise."""
        self._changeable_nv(index, "TPM2_NV_DefineSpace")
        if size <= 0:
            raise ValueError(f"NV index size must be positive, got {size}")
        with self._operation() as op:
            present = self._nv_public(op, index)
            wanted = int(OWNER_NV_ATTRIBUTES)
            if present is not None and present.size == size and (present.attributes & ~int(TPMA_NV.WRITTEN)) == wanted:
                return present
            if present is not None:
                self._nv_undefine(op, index)
            public = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC(
                nvIndex=index, nameAlg=TPM2_ALG.SHA256,
                attributes=OWNER_NV_ATTRIBUTES | (TPM2_NT.ORDINARY << TPMA_NV.TPM2_NT_SHIFT),
                dataSize=size))
            nv = self._call(op, "TPM2_NV_DefineSpace", self._ctx.nv_define_space,
                            b"", public, ESYS_TR.OWNER)
            self._ctx.tr_close(nv)
        return NvIndex(index, size, wanted, False)

    def nv_write(self, index: int, data: bytes, offset: int = 0) -> None:
        """TPM2_NV_Write with owner authorisation, in chunks of TPM_PT_NV_BUFFER_MAX."""
        self._changeable_nv(index, "TPM2_NV_Write")
        with self._operation() as op:
            chunk = self._fixed_properties(op).get(PT_NV_BUFFER_MAX, 512) or 512
            nv = self._call(op, "TPM2_NV_ReadPublic", self._ctx.tr_from_tpmpublic, index)
            try:
                for start in range(0, len(data), chunk):
                    self._call(op, "TPM2_NV_Write", self._ctx.nv_write, nv,
                               data[start:start + chunk], offset + start, auth_handle=ESYS_TR.OWNER)
            finally:
                self._ctx.tr_close(nv)

    def nv_read(self, index: int) -> bytes:
        """The whole index (owner or its own empty auth, as its attributes allow). An index never
        written fails with TPM_RC_NV_UNINITIALIZED."""
        with self._operation() as op:
            return self._nv_read_all(op, index)

    def nv_undefine(self, index: int) -> bool:
        """TPM2_NV_UndefineSpace (owner); True when there was such an index."""
        self._changeable_nv(index, "TPM2_NV_UndefineSpace")
        with self._operation() as op:
            if self._nv_public(op, index) is None:
                return False
            self._nv_undefine(op, index)
            return True

    def _nv_undefine(self, op: _Operation, index: int) -> None:
        nv = self._call(op, "TPM2_NV_ReadPublic", self._ctx.tr_from_tpmpublic, index)
        try:
            self._call(op, "TPM2_NV_UndefineSpace", self._ctx.nv_undefine_space,
                       nv, ESYS_TR.OWNER)
        except TpmError:
            self._ctx.tr_close(nv)
            raise
        # ESYS forgets the index's metadata itself on a successful UndefineSpace
