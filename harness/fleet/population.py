"""Who is in a fleet: how many M2MEs, which are real benches and which SIMULATED TREs, their
platform configurations (component sets, one model each), which are tampered, which were updated
before the mass change (5.1.3.6.8: a new module firmware, a new PfC), and the PKI and reference
values every shard shares."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization

from mcim_hil.m2me.components import M2ME_AGENT, MODULE_FIRMWARE, PLATFORM_FIRMWARE
from mcim_hil.m2me.tre import Component
from mcim_hil.network import pki

from .simulated import SimulatedTpmMaker


class FleetError(ValueError):
    """A fleet that cannot run: one line for the user."""


@dataclass(frozen=True)
class FleetSpec:
    devices: int
    real: int = 1
    configurations: int = 1
    tampered: int = 0
    updated: int = 0        # simulated M2MEs whose module firmware the supplier updated before the change

    def __post_init__(self) -> None:
        if self.devices <= 0:
            raise FleetError(f"--devices must be at least 1, not {self.devices}")
        if self.real < 0:
            raise FleetError(f"--real must be 0 or more, not {self.real}")
        if self.real > self.devices:
            raise FleetError(f"--real {self.real} is more than --devices {self.devices}")
        if self.configurations <= 0:
            raise FleetError(f"--configurations must be at least 1, not {self.configurations}")
        if self.tampered < 0 or self.tampered > self.simulated:
            raise FleetError(f"--tampered must be between 0 and the {self.simulated} simulated M2MEs, "
                             f"not {self.tampered}")
        if self.updated < 0 or self.updated > self.simulated - self.tampered:
            raise FleetError(f"--updated must be between 0 and the {self.simulated - self.tampered} simulated "
                             f"M2MEs that are not tampered, not {self.updated}")

    @property
    def simulated(self) -> int:
        return self.devices - self.real

    def tampered_indexes(self) -> set[int]:
        """Which simulated M2MEs (0-based) are tampered: T of them, spread over the fleet."""
        if self.tampered == 0:
            return set()
        step = self.simulated / self.tampered
        return {int(k * step) for k in range(self.tampered)}


    def updated_indexes(self) -> set[int]:
        """Which simulated M2MEs (0-based) were updated: U of the untampered ones, spread over the fleet."""
        if self.updated == 0:
            return set()
        tampered = self.tampered_indexes()
        candidates = [i for i in range(self.simulated) if i not in tampered]
        step = len(candidates) / self.updated
        return {candidates[int(k * step)] for k in range(self.updated)}


def configuration(index: int) -> tuple[str, list[Component]]:
    """Platform configuration ``index``: its model name and the components its M2MEs measure."""
    model = f"mcim-hil-fleet-cfg{index:03d}"
    return model, [Component(PLATFORM_FIRMWARE, f"traffic-light platform firmware 2.{index}".encode()),
                   Component(MODULE_FIRMWARE, f"LTE-M module firmware R{index % 7}".encode()),
                   Component(M2ME_AGENT, hashlib.sha256(b"mcim-hil agent " + str(index).encode()).digest())]


def tampered(components: list[Component]) -> list[Component]:
    """The same M2ME after someone replaced its agent: one measurement differs."""
    return [c if c.name != M2ME_AGENT else Component(M2ME_AGENT, b"tampered agent") for c in components]


def update_module_firmware(net: Any, m2me: Any, components: list[Component]) -> list[Component]:
    """Before the mass change: the supplier updates this M2ME's module firmware exactly as
    ``--procedure firmware-update`` does (signed package, install, measured boot, a new PfC over
    the same AK, the old one revoked, the new one pushed to the PVA, which supersedes the IVF's
    result). Returns what the M2ME now measures."""
    from mcim_hil.m2me.update import next_version
    updates = m2me.updates
    updates.trust(net.m2mes.certificate)         # a real M2ME gets it at manufacture
    updates.flash_module = lambda version: None  # a simulated module is its image
    running = next(c for c in components if c.name == MODULE_FIRMWARE).data.decode()
    version = next_version(running)
    model = pki.platform_identity(_der_certificate(m2me.pfc)).model
    package = net.m2mes.sign_update(MODULE_FIRMWARE, version, version.encode(), model=model)
    receipt = net.m2mes.offer_update(m2me.platform_id, m2me.address, package)
    if not receipt.installed:
        raise FleetError(f"{m2me.platform_id}: the update was refused: {receipt.reason}")
    measured = updates.boot_components(components)
    m2me.boot(measured)
    updates.report(net.m2mes.address)
    net.m2mes.revoke_superseded(m2me.platform_id)
    net.m2mes.push_pfc(m2me.platform_id)
    return measured


def _der_certificate(der: bytes) -> Any:
    from cryptography import x509
    return x509.load_der_x509_certificate(der)


@dataclass(frozen=True)
class SharedPki:
    """What every shard shares: the simulated TPM maker's EK CA and the M2MES's PfC CA (PEM),
    so a PfC issued in one shard verifies in any PVA of the fleet."""

    maker_certificate: bytes
    maker_key: bytes
    m2mes_certificate: bytes
    m2mes_key: bytes

    @classmethod
    def create(cls) -> SharedPki:
        maker = SimulatedTpmMaker.create().ca
        m2mes = pki.CertificateAuthority.create("mcim-hil M2M equipment supplier PfC CA",
                                                organization="mcim-hil M2M equipment supplier")
        return cls(*_pem(maker), *_pem(m2mes))

    def maker(self) -> SimulatedTpmMaker:
        return SimulatedTpmMaker(_ca(self.maker_certificate, self.maker_key))

    def m2mes(self) -> pki.CertificateAuthority:
        return _ca(self.m2mes_certificate, self.m2mes_key)


def _pem(ca: pki.CertificateAuthority) -> tuple[bytes, bytes]:
    key = ca._private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    return ca.certificate.public_bytes(serialization.Encoding.PEM), key


def _ca(certificate: bytes, key: bytes) -> pki.CertificateAuthority:
    from cryptography import x509
    return pki.CertificateAuthority(x509.load_pem_x509_certificate(certificate),
                                    serialization.load_pem_private_key(key, None))  # type: ignore[arg-type]
