"""Who is where: the seeds' topology options, the addresses they give, and the built network.

TR 33.812 5.1.3.7.1 names three alternatives and the changes of seed 004 a fourth:
- ``ro_colocated_with_vno``: "the RO would also be the VNO that the M2ME initially accesses";
- ``pva_dpf_hosted_by_sho``: "the role of the PVA and the DPF may be hosted by the SHO";
- ``vno_is_sho``: "the VNO and SHO could be the same physical operator, although they will be
  logically separate entities" (so the SHO shares the VNO's PLMN: the M2ME is home once provisioned);
- ``ivf_host``: "The IVF is a logical function on the PVA. It may also be a logical function on
  the OSHO or a separate physical entity" (seed 004, 2nd change): ``pva``, ``old_sho``, ``separate``.
Seed 004's IVF keys beside them: ``ivf_lifetime_s`` (how long a published result stands; 0: it
is never available, the 4th change step 3 NOTE's first branch) and ``required_components`` per
SHO (``{old_sho: [...], new_sho: [...]}``, or a list for the new SHO alone): the components each
SHO requires validated; when the new SHO's differ from what the old SHO's validation vouched for,
the NOTE's second branch.
The options change addresses (and, for ``vno_is_sho``, the SHO's PLMN); each function stays its
own entity with the same behaviour.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcim_hil.network.bus import Bus, Entity
    from mcim_hil.network.ccif import Ccif
    from mcim_hil.network.ivf import Ivf
    from mcim_hil.network.m2mes import M2mes
    from mcim_hil.network.pva import Pva
    from mcim_hil.network.ro import RegistrationOperator
    from mcim_hil.network.sho import Sho
    from mcim_hil.network.store import Store
    from mcim_hil.network.vno import Vno
    from mcim_hil.record import Record

IVF_HOSTS = ("pva", "old_sho", "separate")
_IVF_HOST_ALIASES = {"osho": "old_sho"}
SHO_ROLES = ("old_sho", "new_sho")


class TopologyError(ValueError):
    """Network options that do not make a network."""


@dataclass(frozen=True)
class NetworkOptions:
    """The network of a run. PLMNs are MCC+MNC digits (test PLMNs of MCC 001 by default)."""

    ro_colocated_with_vno: bool = False
    pva_dpf_hosted_by_sho: bool = False
    vno_is_sho: bool = False
    ivf_host: str = "pva"
    sho_requests_pva_via_ro: bool = False   # 004 c3 s8: "or requests the RO to request the PVA"
    with_new_sho: bool = True          # a second SHO for the change of SHO (seed 004, 4th change)
    vno_plmn: str = "00101"
    ro_plmn: str = "00102"             # the PCIDs' MCC/MNC: they lead the VNO to the RO's ICF
    sho_plmn: str = "00103"
    nsho_plmn: str = "00104"
    ip_pool: str = "10.45.0.0/24"
    pcr_selection: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    ivf_lifetime_s: float = 24 * 3600.0
    mcim_lifetime_s: float = 365 * 24 * 3600.0
    # per SHO role, the components it requires validated (004 c4 s3 NOTE); a list: the new SHO's
    required_components: Any = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ivf_host", _IVF_HOST_ALIASES.get(self.ivf_host, self.ivf_host))
        object.__setattr__(self, "required_components", _required_by_role(self.required_components))
        if self.ivf_lifetime_s < 0:
            raise TopologyError(f"ivf_lifetime_s must be 0 or more seconds, not {self.ivf_lifetime_s!r}")
        if self.ivf_host not in IVF_HOSTS:
            raise TopologyError(f"ivf_host must be one of {', '.join(IVF_HOSTS)}, not {self.ivf_host!r}")
        for name in ("vno_plmn", "ro_plmn", "sho_plmn", "nsho_plmn"):
            plmn = getattr(self, name)
            if not (isinstance(plmn, str) and plmn.isdigit() and len(plmn) in (5, 6)):
                raise TopologyError(f"{name} must be MCC+MNC (5 or 6 digits), not {plmn!r}")
        if not self.pcr_selection or not all(isinstance(p, int) and 0 <= p < 24 for p in self.pcr_selection):
            raise TopologyError(f"pcr_selection must name PCRs 0..23, not {list(self.pcr_selection)}")
        homes = [self.ro_plmn, self.home_plmn_of_sho, self.nsho_plmn]
        if len(set(homes)) != len(homes):
            raise TopologyError(f"the RO, SHO and new SHO need distinct PLMNs, got {homes}")

    def required_of(self, role: str) -> tuple[str, ...]:
        """The components the SHO in ``role`` (old_sho, new_sho) requires validated."""
        return tuple(self.required_components.get(role, ()))

    @property
    def home_plmn_of_sho(self) -> str:
        """The SHO's PLMN: the VNO's when the VNO is the SHO."""
        return self.vno_plmn if self.vno_is_sho else self.sho_plmn

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, *, source: str = "network options") -> NetworkOptions:
        """Options from a bench file's mapping; unknown keys and wrong types fail naming the key."""
        data = dict(data or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        problems = [f"{source}: unknown key {key!r}" for key in data if key not in known]
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            default = known[key].default
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    problems.append(f"{source}: {key} must be true or false, not {value!r}")
                    continue
            elif key == "required_components":
                if not isinstance(value, (list, tuple, dict)):
                    problems.append(f"{source}: {key} must be a list or a mapping of {'/'.join(SHO_ROLES)} "
                                    f"to lists, not {value!r}")
                    continue
            elif isinstance(default, tuple):
                if not isinstance(value, (list, tuple)):
                    problems.append(f"{source}: {key} must be a list, not {value!r}")
                    continue
                value = tuple(value)
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    problems.append(f"{source}: {key} must be a number, not {value!r}")
                    continue
                value = float(value)
            elif isinstance(default, str):
                value = str(value)
            values[key] = value
        if problems:
            raise TopologyError("\n".join(problems))
        try:
            return cls(**values)
        except TopologyError as exc:
            raise TopologyError(f"{source}: {exc}") from exc


def _required_by_role(value: Any) -> dict[str, tuple[str, ...]]:
    if isinstance(value, dict):
        unknown = [k for k in value if k not in SHO_ROLES]
        if unknown:
            raise TopologyError(f"required_components: unknown SHO role(s) {unknown}, "
                                f"expected {', '.join(SHO_ROLES)}")
        out = {}
        for role, names in value.items():
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise TopologyError(f"required_components.{role} must be a list of component names")
            out[role] = tuple(names)
        return out
    if isinstance(value, (list, tuple)) and all(isinstance(n, str) for n in value):
        return {"new_sho": tuple(value)} if value else {}
    raise TopologyError(f"required_components must be a list or a mapping, not {value!r}")


@dataclass(frozen=True)
class Addresses:
    """Bus addresses of the network's functions (host names of their operators' domains)."""

    vno: str
    icf: str
    drf: str
    dpf: str
    ccif: str
    m2mes: str
    sho: str
    nsho: str
    pva: str
    ivf: str

    @classmethod
    def for_options(cls, options: NetworkOptions) -> Addresses:
        vno_domain = "vno-a.example"
        ro_domain = vno_domain if options.ro_colocated_with_vno else "ro-r.example"
        sho_domain = vno_domain if options.vno_is_sho else "sho-b.example"
        nsho_domain = "sho-c.example"
        supplier_domain = "supplier-m.example"
        pva_host = f"pva.{sho_domain}" if options.pva_dpf_hosted_by_sho else "pva.pva-v.example"
        ivf = {
            "pva": f"ivf.{pva_host}",
            "old_sho": f"ivf.{sho_domain}",
            "separate": "ivf.ivp-i.example",
        }[options.ivf_host]
        return cls(
            vno=f"vno.{vno_domain}",
            icf=f"icf.{ro_domain}",
            drf=f"drf.{ro_domain}",
            dpf=f"dpf.{sho_domain}" if options.pva_dpf_hosted_by_sho else f"dpf.{ro_domain}",
            ccif=f"ccif.{supplier_domain}",
            m2mes=f"m2mes.{supplier_domain}",
            sho=f"sho.{sho_domain}",
            nsho=f"sho.{nsho_domain}",
            pva=pva_host,
            ivf=ivf,
        )

    def operator_of(self, address: str) -> str:
        """The domain hosting a function: the part after its first label."""
        return address.split(".", 1)[1] if "." in address else address


@dataclass
class Network:
    """A whole network of a run, every function its own entity on one bus."""

    options: NetworkOptions
    addresses: Addresses
    bus: Bus
    store: Store
    record: Record | None
    vno: Vno
    ro: RegistrationOperator
    ccif: Ccif
    m2mes: M2mes
    pva: Pva
    ivf: Ivf
    sho: Sho
    nsho: Sho | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def entities(self) -> dict[str, Entity]:
        """Address -> entity, for reports and lookups."""
        found: list[Entity] = [self.vno, self.ro.icf, self.ro.drf, self.ro.dpf, self.ccif, self.m2mes,
                               self.pva, self.ivf, self.sho]
        if self.nsho is not None:
            found.append(self.nsho)
        return {entity.address: entity for entity in found}

    def close(self) -> None:
        self.store.close()
