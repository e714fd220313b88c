"""The registration operator (RO): ICF (initial connectivity), DRF (discovery and registration), DPF (download and provisioning)."""

from __future__ import annotations

from dataclasses import dataclass

from mcim_hil.network.ro.dpf import Dpf
from mcim_hil.network.ro.drf import Drf
from mcim_hil.network.ro.icf import Icf

__all__ = ["Dpf", "Drf", "Icf", "RegistrationOperator"]


@dataclass
class RegistrationOperator:
    """The RO's three functions, each its own entity on the bus."""

    icf: Icf
    drf: Drf
    dpf: Dpf
