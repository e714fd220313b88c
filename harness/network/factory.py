"""Build a whole network of TR 33.812 from options: every function its own entity on one recorded bus."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from cryptography import x509

from mcim_hil.network.bus import Bus
from mcim_hil.network.ccif import Ccif
from mcim_hil.network.ivf import Ivf
from mcim_hil.network.m2mes import M2mes
from mcim_hil.network.pki import CertificateAuthority
from mcim_hil.network.pva import Pva
from mcim_hil.network.ro import Dpf, Drf, Icf, RegistrationOperator
from mcim_hil.network.sho import Sho
from mcim_hil.network.store import Store
from mcim_hil.network.topology import Addresses, Network, NetworkOptions
from mcim_hil.network.vno import Vno
from mcim_hil.record import Record

STORE_FILE = "network.sqlite"


def build_network(options: NetworkOptions | Mapping[str, Any] | None, store_path: str | Path,
                  record: Record | None, *, ek_roots: Sequence[x509.Certificate] = (),
                  ek_intermediates: Sequence[x509.Certificate] = (),
                  clock: Callable[[], float] = time.time,
                  m2mes_ca: CertificateAuthority | None = None) -> Network:
    """The network of a run.

    ``options``: NetworkOptions or a bench file's mapping. ``store_path``: the SQLite file (a
    directory gets ``network.sqlite`` inside; ``":memory:"`` keeps nothing). ``ek_roots``: the
    TPM manufacturer / lab CA certificates the PVA pins (swtpm's local CA on the emulated bench);
    without any, the PVA refuses to start. ``clock`` drives lifetimes (IVF results, MCIMs).
    ``m2mes_ca``: the supplier's PfC CA when several networks share one (a sharded fleet).
    """
    if not isinstance(options, NetworkOptions):
        options = NetworkOptions.from_mapping(options)
    if not ek_roots:
        raise ValueError("build_network: the PVA needs at least one pinned EK root certificate (ek_roots)")
    path = Path(store_path) if str(store_path) != ":memory:" else None
    if path is not None and path.is_dir():
        path = path / STORE_FILE
    if path is not None:
        # one file per run: an earlier run's file (same --out, same test id) would hand this
        # network its state without its keys, which never reach the file
        path.unlink(missing_ok=True)
    store = Store(path if path is not None else ":memory:")
    bus = Bus(record)
    at = Addresses.for_options(options)
    sho_addresses = [at.sho] + ([at.nsho] if options.with_new_sho else [])

    ccif = Ccif(bus, store, address=at.ccif, pcid_plmn=options.ro_plmn, icf_addresses=[at.icf],
                m2mes_addresses=[at.m2mes], dpf_addresses=[at.dpf])
    m2mes = M2mes(bus, store, address=at.m2mes, ccif_address=at.ccif, ca=m2mes_ca)
    icf = Icf(bus, store, address=at.icf, ccif_address=at.ccif, drf_address=at.drf, dpf_address=at.dpf)
    drf = Drf(bus, store, address=at.drf, icf_address=at.icf, trusted_shos=sho_addresses)
    dpf = Dpf(bus, store, address=at.dpf, drf_address=at.drf, ccif_address=at.ccif)
    ivf_address = at.ivf
    pva = Pva(bus, store, address=at.pva, m2mes_address=at.m2mes, m2mes_ca=m2mes.certificate,
              ek_roots=ek_roots, ek_intermediates=ek_intermediates, pcr_selection=options.pcr_selection,
              ivf_address=ivf_address, clock=clock)
    m2mes.notify.append(at.pva)  # revocations and new reference values reach the PVA's caches
    ivf = Ivf(bus, store, address=ivf_address, pva_addresses=[at.pva], lifetime_s=options.ivf_lifetime_s,
              clock=clock)
    pva_request = None
    if options.sho_requests_pva_via_ro:   # the SHOs ask the RO, which requests the PVA (004 c3 s8)
        from mcim_hil.network.ro.pva_request import PvaRequest
        pva_request = PvaRequest(bus, address=f"pva-request.{at.operator_of(at.drf)}", pva_address=at.pva,
                                 sho_addresses=sho_addresses)
    common: dict[str, Any] = dict(drf_address=at.drf, dpf_address=at.dpf,
                                  pva_address=pva_request.address if pva_request else at.pva,
                                  ivf_address=ivf_address, mcim_lifetime_s=options.mcim_lifetime_s, clock=clock)
    sho = Sho(bus, store, name="SHO B", address=at.sho, plmn=options.home_plmn_of_sho,
              required_components=options.required_of("old_sho"), **common)
    nsho = None
    if options.with_new_sho:
        nsho = Sho(bus, store, name="SHO C", address=at.nsho, plmn=options.nsho_plmn,
                   required_components=options.required_of("new_sho"), **common)
    routes = {options.ro_plmn: at.icf, options.home_plmn_of_sho: at.sho}
    if nsho is not None:
        routes[options.nsho_plmn] = at.nsho
    vno = Vno(bus, store, name="VNO A", address=at.vno, plmn=options.vno_plmn, ip_pool=options.ip_pool,
              routes=routes)
    if record is not None:
        record.meta.setdefault("network", {
            "options": {k: (list(v) if isinstance(v, tuple) else
                            {r: list(c) for r, c in v.items()} if isinstance(v, dict) else v)
                        for k, v in vars(options).items()},
            "addresses": vars(at),
            "store": str(path) if path is not None else ":memory:",
        })
    return Network(options=options, addresses=at, bus=bus, store=store, record=record, vno=vno,
                   ro=RegistrationOperator(icf=icf, drf=drf, dpf=dpf), ccif=ccif, m2mes=m2mes, pva=pva,
                   ivf=ivf, sho=sho, nsho=nsho, extra={"pva_request": pva_request} if pva_request else {})
