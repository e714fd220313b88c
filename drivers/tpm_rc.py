"""TPM and TSS response codes by name, and what they say about the TPM's power."""

from __future__ import annotations

from tpm2_pytss import TSS2_Exception
from tpm2_pytss.constants import TPM2_RC, TSS2_RC

_NOT_CODES = {"VER1", "FMT1", "WARN", "H", "P", "S", "N_MASK", "MAX_FM0",
              "A", "B", "C", "D", "E", "F"} | {f"RC{i}" for i in range(1, 10)}
_TPM_RC_NAMES: dict[int, str] = {
    int(value): f"TPM_RC_{name}" for name, value in vars(TPM2_RC).items()
    if name.isupper() and isinstance(value, int) and name not in _NOT_CODES
}
_TSS_BASE_NAMES: dict[int, str] = {
    int(value): name[len("BASE_RC_"):] for name, value in vars(TSS2_RC).items()
    if name.startswith("BASE_RC_") and isinstance(value, int)
}
# tss2_common.h: response code layers
_TSS_LAYERS = {6: "FAPI", 7: "ESYS", 8: "SYS", 9: "MU", 10: "TCTI", 11: "RESMGR", 13: "POLICY"}


def rc_name(rc: int) -> str:
    """Name of a TSS2/TPM response code: TPM_RC_POLICY_FAIL, TSS2_TCTI_RC_IO_ERROR..."""
    layer, base = (rc >> 16) & 0xFF, rc & 0xFFFF
    if layer in (0, 12):  # the TPM, or the TPM as relayed by a resource manager
        if base & 0x080:  # TPM 2.0 Part 2, 6.6: format-one, strip handle/parameter/session
            code = 0x080 | (base & 0x03F)
        else:
            code = base & 0x97F
        return _TPM_RC_NAMES.get(code, f"TPM_RC_0x{code:03X}")
    layer_name = _TSS_LAYERS.get(layer, f"LAYER{layer}")
    return f"TSS2_{layer_name}_RC_{_TSS_BASE_NAMES.get(base, f'0x{base:X}')}"


def _describe(exc: TSS2_Exception) -> str:
    where = ""
    if exc.fmt1:
        if exc.parameter:
            where = f", parameter {exc.parameter}"
        elif exc.session:
            where = f", session {exc.session}"
        elif exc.handle:
            where = f", handle {exc.handle}"
    return f"{rc_name(exc.rc)} (0x{int(exc.rc):x}{where}): {exc}"


# What a response code says about the TPM's power (TPM 2.0 Part 2, 6.6.3): TpmPowerLost
_POWER_LOST = {
    "TPM_RC_INITIALIZE": "the TPM was reset or lost power and is not started",
    "TPM_RC_FAILURE": "the TPM accepts no command: powered off, or in failure mode",
    **{f"TPM_RC_REFERENCE_H{i}": "an object or session the driver holds is no longer loaded: "
       "the TPM was reset or lost power" for i in range(7)},
    "TSS2_TCTI_RC_IO_ERROR": "the connection to the TPM broke during the command: it lost "
                             "power or went away",
}  # libtss2's socket TCTIs: their receive ignores a timeout
