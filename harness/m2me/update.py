"""The M2ME's side of a remote SW/FW update (TR 33.812 5.1.3.6.8: "In case remote update of the
M2M equipment's SW/FW requires a new PfC, the PVA must be able to obtain the new PfC").

The agent takes an update of one component (platform firmware, module firmware, the M2ME agent)
only when the equipment supplier signed it with the key the M2ME was given at manufacture, it is
for this M2ME's model, and it is newer than what runs (no downgrade). It keeps the image for the
next boot, where the image is what gets measured into the TRE (a measured boot: an image altered
at rest is not refused here, the PVA finds it). After that boot it reports to the supplier and
takes the new PfC, over its own AK, asserting the new expected state (5.1.3.6.8 NOTE 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from mcim_hil.network import pki
from mcim_hil.network.bus import Refused
from mcim_hil.network.messages_update import (
    FirmwareUpdateOffer,
    FirmwareUpdateReceipt,
    FirmwareUpdateReport,
    PlatformCredentialUpdate,
)

from .components import COMPONENTS, MODULE_FIRMWARE
from .tre import Component


class UpdateError(Exception):
    """The update could not be completed; the message says at which part and why."""


@dataclass(frozen=True)
class InstalledImage:
    """A component's image kept for the next boot (what the boot measures)."""

    component: str
    version: str
    data: bytes = field(repr=False)

    def as_component(self) -> Component:
        return Component(self.component, self.data)


@dataclass(frozen=True)
class PfcRenewal:
    """The PfC an update replaced: serials only."""

    old_serial: int
    new_serial: int
    state: str | None


def version_key(version: str) -> tuple[int, ...]:
    """The numbers of a version string, in order (EMU-LTE_1.0.10 -> (1, 0, 10)): what 'newer' means."""
    return tuple(int(n) for n in re.findall(r"[0-9]+", version))


def next_version(version: str) -> str:
    """The version after ``version``: its last number plus one (1.0.0 -> 1.0.1), else '.1' appended."""
    found = list(re.finditer(r"[0-9]+", version))
    if not found:
        return f"{version}.1"
    last = found[-1]
    return f"{version[:last.start()]}{int(last.group()) + 1}{version[last.end():]}"


class UpdateAgent:
    """Receives, checks and installs updates for an M2ME agent; reports them after the next boot."""

    def __init__(self, m2me: Any) -> None:
        self.m2me = m2me
        self.supplier: x509.Certificate | None = None     # given at manufacture
        self.versions: dict[str, str] = {}                # component -> version that runs
        self.images: dict[str, InstalledImage] = {}       # component -> image for the (next) boot
        # the module flashes itself (a real module's FOTA is vendor-specific): set where it can be done
        self.flash_module: Callable[[str], None] | None = None
        self.pending: InstalledImage | None = None        # installed, not yet reported after a boot
        self.renewed: PfcRenewal | None = None

    def trust(self, supplier_certificate: x509.Certificate) -> None:
        """Manufacture: the supplier's certificate whose key signs updates."""
        self.supplier = supplier_certificate

    def on_offer(self, msg: FirmwareUpdateOffer) -> FirmwareUpdateReceipt:
        package = msg.package
        address = self.m2me._address()

        def answer(installed: bool, reason: str | None = None, previous: str = "") -> FirmwareUpdateReceipt:
            return FirmwareUpdateReceipt(sender=address, recipient=msg.sender, platform_id=self.m2me.platform_id,
                                         installed=installed, component=package.component,
                                         version=package.version, previous_version=previous, reason=reason)
        refused = self.refusal(msg)
        if refused:
            return answer(False, refused)
        previous = self.versions.get(package.component, "")
        if package.component == MODULE_FIRMWARE:
            try:
                self.flash_module(package.version)   # type: ignore[misc]  (refusal() checked it is set)
            except Exception as exc:  # the module's own failure: nothing installed
                return answer(False, f"the module did not take the image: {type(exc).__name__}: {exc}", previous)
        image = InstalledImage(package.component, package.version, package.image)
        self.images[package.component] = image
        self.versions[package.component] = package.version
        self.pending = image
        return answer(True, previous=previous)

    def refusal(self, msg: FirmwareUpdateOffer) -> str | None:
        """Why this offer is not installed, or None."""
        package = msg.package
        if self.supplier is None:
            return "no supplier key was given at manufacture"
        if not package.signature:
            return "unsigned update: no supplier signature on its manifest"
        try:
            pki.verify_bytes(self.supplier.public_key(), package.signature, package.manifest_bytes())
        except (InvalidSignature, ValueError, TypeError):
            return "the signature does not verify with the supplier key given at manufacture"
        if msg.platform_id != self.m2me.platform_id:
            return f"update for platform {msg.platform_id}, this is {self.m2me.platform_id}"
        model = self._model()
        if package.model != model:
            return f"update for model {package.model!r}, this M2ME is {model!r}"
        if package.component not in COMPONENTS:
            return f"unknown component {package.component!r} (this M2ME measures {', '.join(COMPONENTS)})"
        running = self.versions.get(package.component)
        if running is not None and version_key(package.version) < version_key(running):
            return f"downgrade refused: {package.component} {running} runs, the update is {package.version}"
        if running is not None and version_key(package.version) == version_key(running):
            return f"{package.component} {running} already runs (the update is not newer)"
        if package.component == MODULE_FIRMWARE and self.flash_module is None:
            return "this bench's module cannot be flashed from here (a real module's FOTA is vendor-specific)"
        return None

    def boot_components(self, measured: list[Component]) -> list[Component]:
        """What the next boot measures: ``measured`` (read from the devices), an installed image in
        place of its component (the boot measures the image it starts)."""
        return [self.images[c.name].as_component() if c.name in self.images else c for c in measured]

    def report(self, m2mes_address: str) -> PfcRenewal:
        """After the boot that measured the update: tell the supplier, take the new PfC (checked: the
        supplier issued it, over this M2ME's AK)."""
        if self.pending is None:
            raise UpdateError("no installed update waits to be reported")
        image = self.pending
        reply = self.m2me.bus.request(FirmwareUpdateReport(sender=self.m2me._address(), recipient=m2mes_address,
                                                           platform_id=self.m2me.platform_id,
                                                           component=image.component, version=image.version))
        if not isinstance(reply, PlatformCredentialUpdate):
            raise Refused(m2mes_address, "update report", getattr(reply, "reason", None), reply)
        if not reply.pfc:
            raise UpdateError(f"the supplier issued no new PfC: {reply.reason}")
        renewal = self._take_pfc(reply.pfc)
        self.pending = None
        return renewal

    def _take_pfc(self, der: bytes) -> PfcRenewal:
        assert self.supplier is not None
        try:
            pfc = x509.load_der_x509_certificate(der)
            pki.verify_chain(pfc, [], [self.supplier], eku=pki.OID_AK_CERTIFICATE)
            identity = pki.platform_identity(pfc)
        except (ValueError, pki.PkiError) as exc:
            raise UpdateError(f"the new PfC does not verify with the supplier's certificate: {exc}") from exc
        if not pki.same_public_key(pfc.public_key(), self.m2me.tre.keys().ak.public_key):
            raise UpdateError("the new PfC certifies another key than this M2ME's AK")
        if identity.platform_id != self.m2me.platform_id:
            raise UpdateError(f"the new PfC names platform {identity.platform_id}")
        old = x509.load_der_x509_certificate(self.m2me.pfc)
        self.m2me.pfc = pfc.public_bytes(serialization.Encoding.DER)
        self.renewed = PfcRenewal(old.serial_number, pfc.serial_number, identity.version)
        return self.renewed

    def _model(self) -> str | None:
        try:
            return pki.platform_identity(x509.load_der_x509_certificate(self.m2me.pfc)).model
        except (ValueError, pki.PkiError):
            return None
