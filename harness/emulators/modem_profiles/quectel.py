"""Quectel (EG25-G, BG96 ...): +QCCID, +QINISTAT, +QCFG (Quectel AT manuals restating TS 27.007)."""

from __future__ import annotations

from typing import Any

from ..modem_at import CmeFailure, SyntaxFailure, params, string
from . import Profile

# +QINISTAT bitmap: 1 CPIN READY, 2 SMS initialised, 4 phonebook initialised.
_QINISTAT_ALL = 7
_QCFG_DEFAULTS = {"nwscanmode": "0", "iotopmode": "2", "nwscanseq": "020301", "roamservice": "255"}


def _qccid(modem: Any, form: str, args: str) -> list[str]:
    if form == "=?":
        return []
    if form != "":
        raise SyntaxFailure()
    return [f"+QCCID: {modem.iccid()}"]


def _qinistat(modem: Any, form: str, args: str) -> list[str]:
    if form == "=?":
        return ["+QINISTAT: (0-7)"]
    if form != "":
        raise SyntaxFailure()
    try:
        ready = modem.sim_state() == "READY"
    except CmeFailure:
        return ["+QINISTAT: 0"]
    return [f"+QINISTAT: {_QINISTAT_ALL if ready else 0}"]


def _qcfg(modem: Any, form: str, args: str) -> list[str]:
    # AT+QCFG="<setting>"[,<value>...]: read with the name alone, write with a value
    settings = modem.vendor_settings.setdefault("qcfg", dict(_QCFG_DEFAULTS))
    if form == "=?":
        return [f'+QCFG: "{name}"' for name in sorted(settings)]
    if form != "=":
        raise SyntaxFailure()
    fields = params(args)
    name = string(fields[0]).lower()
    if name not in settings:
        raise CmeFailure(50)
    if len(fields) == 1:
        return [f'+QCFG: "{name}",{settings[name]}']
    settings[name] = ",".join(fields[1:])
    return []


def profile() -> Profile:
    return Profile("quectel", "Quectel", "EG25", "EG25GGBR07A08M2G_EMULATED",
                   {"+QCCID": _qccid, "+QINISTAT": _qinistat, "+QCFG": _qcfg})
