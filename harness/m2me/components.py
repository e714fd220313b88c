"""The M2ME's measured components: what its boot extends into the TRE, and what the equipment
supplier publishes reference values for (TR 33.812 5.1.3.6.8: the PVA validates integrity
against them).

Each is read from the device or the code that really runs: the platform firmware (DMI),
the module firmware (identified over AT), the M2ME agent (its own source).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .tre import Component

PLATFORM_FIRMWARE = "platform-firmware"
MODULE_FIRMWARE = "module-firmware"
M2ME_AGENT = "m2me-agent"
COMPONENTS = (PLATFORM_FIRMWARE, MODULE_FIRMWARE, M2ME_AGENT)   # in boot (measurement) order

_DMI = Path("/sys/class/dmi/id")


def platform_firmware() -> Component:
    fields = []
    for name in ("bios_vendor", "bios_version", "bios_date"):
        try:
            fields.append((_DMI / name).read_text().strip())
        except OSError:
            fields.append("unknown")
    return Component(PLATFORM_FIRMWARE, "\n".join(fields).encode())


def module_firmware(modem: Any) -> Component:
    """The cellular module's identity and firmware revision (+CGMI/+CGMM/+CGMR)."""
    ident = modem.identity()
    return module_firmware_from(ident.manufacturer, ident.model, ident.revision)


def module_firmware_from(manufacturer: str, model: str, revision: str) -> Component:
    return Component(MODULE_FIRMWARE, f"{manufacturer}\n{model}\n{revision}".encode())


def m2me_agent() -> Component:
    """The agent's code as it runs: every source file of the M2ME side, in name order."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return Component(M2ME_AGENT, h.digest())


def measured_components(modem: Any | None) -> list[Component]:
    parts = [platform_firmware()]
    if modem is not None:
        parts.append(module_firmware(modem))
    parts.append(m2me_agent())
    return parts


# -- what an update replaces: versions and images (5.1.3.6.8, remote update of SW/FW) ------------

def installed_versions(modem: Any | None) -> dict[str, str]:
    """The version of each component as the devices tell it: the BIOS version (DMI), the module's
    revision (+CGMR), the agent's package version."""
    try:
        bios = (_DMI / "bios_version").read_text().strip() or "unknown"
    except OSError:
        bios = "unknown"
    versions = {PLATFORM_FIRMWARE: bios, M2ME_AGENT: _agent_version()}
    if modem is not None:
        versions[MODULE_FIRMWARE] = modem.identity().revision
    return versions


def _agent_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("mcim-hil")
    except PackageNotFoundError:
        return "0.0.0"


def component_image(name: str, version: str, modem: Any | None) -> bytes:
    """The image of ``name`` at ``version`` as the supplier builds it: the bytes the M2ME's boot
    measures once it runs (for the module: its identity at that revision, as +CGMI/+CGMM/+CGMR
    then read)."""
    if name == MODULE_FIRMWARE:
        if modem is None:
            raise ValueError("a module-firmware image needs the module's manufacturer and model")
        ident = modem.identity()
        return module_firmware_from(ident.manufacturer, ident.model, version).data
    if name == PLATFORM_FIRMWARE:
        return f"mcim-hil platform firmware\n{version}".encode()
    if name == M2ME_AGENT:
        return b"mcim-hil m2me agent " + version.encode() + b"\0" + m2me_agent().data
    raise ValueError(f"unknown component {name!r} (one of {', '.join(COMPONENTS)})")
