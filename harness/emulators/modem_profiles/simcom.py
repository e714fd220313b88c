"""SIMCom (SIM7600, SIM7000): +CICCID and +CPSI? (SIMCom AT manuals restating TS 27.007)."""

from __future__ import annotations

from typing import Any

from ..modem_at import SyntaxFailure
from . import Profile


def _ciccid(modem: Any, form: str, args: str) -> list[str]:
    if form == "=?":
        return []
    if form != "":
        raise SyntaxFailure()
    return [f"+ICCID: {modem.iccid()}"]       # SIMCom answers +CICCID with +ICCID:


def _cpsi(modem: Any, form: str, args: str) -> list[str]:
    # +CPSI: <mode>,<op mode>,<MCC>-<MNC>,<TAC>,<cell id>,<PCI>,<band>,<EARFCN>,<dlbw>,<ulbw>,<RSRQ>,<RSRP>,<RSSI>,<RSSNR>
    if form == "=?":
        return ["+CPSI: (0-255)"]
    if form == "=":
        return []
    if form != "?":
        raise SyntaxFailure()
    plmn, cell = modem.plmn(), modem.serving_cell()
    if plmn is None or cell is None:
        return ["+CPSI: NO SERVICE,Online"]
    tac, ci = cell
    mcc, mnc = plmn[:3], plmn[3:]
    return [f"+CPSI: LTE,Online,{mcc}-{mnc},0x{tac.upper()},{int(ci, 16)},1,EUTRAN-BAND3,1300,5,5,-10,-91,-65,15"]


def profile() -> Profile:
    return Profile("simcom", "SIMCOM INCORPORATED", "SIMCOM_SIM7600G-H", "SIM7600M22_V2.0_EMULATED",
                   {"+CICCID": _ciccid, "+CPSI": _cpsi})
