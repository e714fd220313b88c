"""u-blox (SARA-R4/R5, LARA): +CCID and +UPSV (u-blox AT commands manual restating TS 27.007)."""

from __future__ import annotations

from typing import Any

from ..modem_at import SyntaxFailure, number, params
from . import Profile


def _upsv(modem: Any, form: str, args: str) -> list[str]:
    # +UPSV: power saving mode, 0 disabled (the default), 1..4 the u-blox modes
    if form == "?":
        return [f"+UPSV: {modem.vendor_settings.get('upsv', 0)}"]
    if form == "=?":
        return ["+UPSV: (0-4)"]
    if form != "=":
        raise SyntaxFailure()
    modem.vendor_settings["upsv"] = number(params(args)[0], 0, 4)
    return []


def profile() -> Profile:
    # +CCID is answered by the standard table ("+CCID: <iccid>", as u-blox modules do)
    return Profile("u-blox", "u-blox", "SARA-R410M-02B", "L0.0.00.00.05.08_EMULATED", {"+UPSV": _upsv})
