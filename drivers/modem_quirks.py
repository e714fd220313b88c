"""What differs between the module families labs use most: which command reads the ICCID.

The driver identifies a module's family from +CGMI/+CGMM (TS 27.007 5.1, 5.2) and asks
here; a family not listed gets the TS 27.007-only behaviour, with the usual ICCID
commands tried in turn and +CRSM READ BINARY of EF.ICCID as the last resort.
Knows AT and nothing of TR 33.812.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Quirks", "quirks_for", "FAMILIES"]


@dataclass(frozen=True)
class Quirks:
    family: str                                   # "quectel", "u-blox", "simcom" or "generic"
    iccid_commands: tuple[tuple[str, str], ...]   # (command, prefix of its answer), in order


_GENERIC_ICCID = (("AT+CCID", "+CCID:"), ("AT+ICCID", "+ICCID:"))

# Vendor AT manuals: Quectel "AT+QCCID" -> "+QCCID: <iccid>"; u-blox "AT+CCID" -> "+CCID: <iccid>";
# SIMCom "AT+CICCID" -> "+ICCID: <iccid>".
FAMILIES: dict[str, Quirks] = {
    "quectel": Quirks("quectel", (("AT+QCCID", "+QCCID:"),) + _GENERIC_ICCID),
    "u-blox": Quirks("u-blox", (("AT+CCID", "+CCID:"),)),
    "simcom": Quirks("simcom", (("AT+CICCID", "+ICCID:"),) + _GENERIC_ICCID),
    "generic": Quirks("generic", _GENERIC_ICCID),
}

# (family, words found in +CGMI, model prefixes found in +CGMM)
_SIGNS = (
    ("quectel", ("QUECTEL",), ("EG2", "EC2", "BG9", "BG7", "EM0", "EM1", "RM5", "EP0")),
    ("u-blox", ("U-BLOX", "UBLOX"), ("SARA-", "LARA-", "TOBY-", "LISA-", "LENA-")),
    ("simcom", ("SIMCOM",), ("SIM7", "SIM8", "SIMCOM_SIM")),
)


def quirks_for(manufacturer: str, model: str) -> Quirks:
    """The family of a module from its +CGMI and +CGMM answers."""
    maker, product = manufacturer.upper(), model.upper()
    for family, makers, models in _SIGNS:
        if any(word in maker for word in makers) or product.startswith(models):
            return FAMILIES[family]
    return FAMILIES["generic"]
