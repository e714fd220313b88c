"""Vendor profiles of the emulated module: identity and vendor commands, one module per family.

A bench file chooses one with ``modem: {emulator: true, profile: quectel}``; the default
is the generic module (TS 27.007 only, plus the plain +CCID/+ICCID). The identity
strings say "emulated" so nobody mistakes the bench for the real module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Profile", "PROFILE_NAMES", "profile"]

Handler = Callable[[Any, str, str], list[str]]


@dataclass(frozen=True)
class Profile:
    name: str
    manufacturer: str            # +CGMI
    model: str                   # +CGMM
    revision: str                # +CGMR
    commands: dict[str, Handler] = field(default_factory=dict)   # vendor extended commands


def _generic() -> Profile:
    return Profile("generic", "mcim-hil", "EMU-LTE", "EMU-LTE_1.0.0")


def profile(name: str | None) -> Profile:
    """The profile called ``name`` (None: generic); ValueError naming the known ones otherwise."""
    from . import quectel, simcom, ublox
    known = {"generic": _generic, "quectel": quectel.profile, "u-blox": ublox.profile,
             "ublox": ublox.profile, "simcom": simcom.profile}
    key = (name or "generic").lower()
    if key not in known:
        raise ValueError(f"unknown modem profile {name!r} (known: {', '.join(PROFILE_NAMES)})")
    return known[key]()


PROFILE_NAMES = ("generic", "quectel", "u-blox", "simcom")
