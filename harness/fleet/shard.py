"""One shard of a fleet: a slice of the SIMULATED M2MEs with their own network (SHOs, PVA, IVF
records), sharing only the PKI and the reference values with the other shards.

A shard runs the fleet's two phases on the network exactly as ``mcim-hil run`` builds it:
- provisioning (seed 004 3rd change, steps 8-10): each M2ME is manufactured (simulated TRE, PfC
  from the M2MES, PCID from the CCIF), boots, and the old SHO has the PVA validate it; with the
  IVF the PVA issues the integrity result there;
- the change (seed 004 4th change, steps 1 and 3-6): the subscriber contacts the new SHO, which
  has the PVA validate (authenticity only with the IVF; authenticity and integrity without) and,
  on success, seals its MCIM into an M2MSIMMobj. Tampered M2MEs were re-measured in between.
A simulated TRE cannot import an MCIM, so a simulated change ends at step 6; the real benches
run all 14 steps (harness/fleet/real.py).

``run_shard`` is a plain function of picklable arguments: a process pool and Dask both run it.
"""

from __future__ import annotations

import resource
import tempfile
import time
from array import array
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcim_hil.m2me.agent import M2me
from mcim_hil.m2me.tre import MEASUREMENT_PCR
from mcim_hil.network.factory import build_network
from mcim_hil.network.messages import SubscriptionChangeAck, SubscriptionChangeRequest
from mcim_hil.network.topology import NetworkOptions

from .population import SharedPki, configuration, tampered, update_module_firmware
from .simulated import SimulatedTre

OWNER = "owner.m2me-subscriber.example"
SAMPLES = 200  # PVA load samples per shard and phase


@dataclass(frozen=True)
class ShardTask:
    shard: int
    indexes: tuple[int, ...]        # simulated M2MEs of this shard (0-based fleet indexes)
    tampered: frozenset[int]
    configurations: int
    with_ivf: bool
    pki: SharedPki
    updated: frozenset[int] = frozenset()   # updated before the change (population.update_module_firmware)


@dataclass
class ShardResult:
    shard: int
    with_ivf: bool
    m2mes: int = 0
    changed: int = 0
    refused: int = 0
    refused_tampered: int = 0
    tampered_accepted: int = 0       # must stay 0: a tampered M2ME that got an MCIM
    fallbacks: int = 0               # IVF result not used (004 c4 s3 NOTE)
    pva_provisioning: dict[str, float] = field(default_factory=dict)
    pva_change: dict[str, float] = field(default_factory=dict)
    latencies_s: Sequence[float] = field(default_factory=lambda: array("d"))  # 8 bytes per M2ME
    load: list[tuple[float, float]] = field(default_factory=list)  # (s into the change, PVA CPU s so far)
    provisioning_s: float = 0.0
    change_s: float = 0.0
    change_started: float = 0.0      # wall clock, to line shards up
    peak_rss_mib: float = 0.0
    base_rss_mib: float = 0.0        # the shard's process before its first M2ME (interpreter, libraries)
    refusals: dict[str, int] = field(default_factory=dict)  # first failed check -> count
    updated: int = 0                 # M2MEs updated before the change
    updated_full: int = 0            # of them, integrity validated in full by the PVA (IVF result superseded)


def _rss_mib() -> float:
    """This process's resident set now (Linux /proc), else its peak so far."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _no_adm() -> bytes:
    raise RuntimeError("a simulated M2ME has no card to write")


def _diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0), 6) for k in after}


def run_shard(task: ShardTask, progress: Callable[[str, int], None] | None = None) -> ShardResult:
    """Run one shard; ``progress(phase, done)`` is called now and then (in this process)."""
    with tempfile.TemporaryDirectory(prefix="mcim-hil-fleet-shard-") as directory:
        return _run(task, Path(directory) / "network.sqlite", progress)


def _run(task: ShardTask, store: Path, progress: Callable[[str, int], None] | None) -> ShardResult:
    # the shard's records on disk, as a run's are: 10^5 M2MEs' rows are not kept in memory
    maker = task.pki.maker()
    options = NetworkOptions(pcr_selection=(MEASUREMENT_PCR,))
    net = build_network(options, store, None, ek_roots=[maker.certificate], m2mes_ca=task.pki.m2mes())
    assert net.nsho is not None
    models = {}
    for c in sorted({i % task.configurations for i in task.indexes}):
        model, components = configuration(c)
        net.m2mes.publish_reference_values({x.name: x.digest for x in components}, model=model)
        models[c] = (model, components)
    result = ShardResult(task.shard, task.with_ivf, m2mes=len(task.indexes), base_rss_mib=_rss_mib())
    every = max(1, len(task.indexes) // 20)

    # -- provisioning by the old SHO (004 c3 s8-s10) --------------------------------------------
    t0 = time.perf_counter()
    fleet: list[M2me] = []  # in task.indexes order
    for n, index in enumerate(task.indexes):
        model, components = models[index % task.configurations]
        tre = SimulatedTre(maker)
        platform_id = f"sim-m2me-{index:07d}"
        m2me = M2me(bus=net.bus, tre=tre, uicc=None, air=None, platform_id=platform_id,  # type: ignore[arg-type]
                    adm1=_no_adm)
        made = net.m2mes.personalise(platform_id, tre.keys().ak.public_key, model=model)
        m2me.pcid, m2me.pfc = made.pcid, made.pfc_der
        m2me.address = f"{platform_id}.simulated.fleet"
        net.bus.register(m2me.address, m2me.handle)
        m2me.boot(components)
        net.sho.add_contract(m2me.pcid, platform_id=platform_id, m2me_address=m2me.address)
        net.sho.request_validation(m2me.pcid, issue_to_ivf=task.with_ivf)
        if index in task.tampered:
            m2me.boot(tampered(components))  # its agent replaced after the validation
        if index in task.updated:
            update_module_firmware(net, m2me, components)
        fleet.append(m2me)
        if progress and n % every == 0:
            progress("provisioning", n)
    result.provisioning_s = time.perf_counter() - t0
    before = net.pva.counters()
    result.pva_provisioning = _diff(before, {})

    # -- all change to the new SHO (004 c4 s1, s3-s6) ------------------------------------------
    sample_every = max(1, len(fleet) // SAMPLES)
    result.change_started = time.time()
    t0 = time.perf_counter()
    latencies = array("d")
    for n, (index, m2me) in enumerate(zip(task.indexes, fleet)):
        started = time.perf_counter()
        ack = net.bus.request(SubscriptionChangeRequest(sender=OWNER, recipient=net.nsho.address, pcid=m2me.pcid,
                                                        platform_id=m2me.platform_id, m2me_address=m2me.address,
                                                        old_sho_address=net.sho.address))
        assert isinstance(ack, SubscriptionChangeAck) and ack.accepted
        outcome = net.nsho.request_validation(m2me.pcid, via_ivf=task.with_ivf)
        if outcome.fallback_reason:
            result.fallbacks += 1
        if index in task.updated:
            result.updated += 1
            result.updated_full += outcome.result.integrity_checked
        if outcome.passed:
            net.nsho.build_m2msimmobj(m2me.pcid)
            result.changed += 1
            if index in task.tampered:
                result.tampered_accepted += 1
        else:
            result.refused += 1
            result.refused_tampered += index in task.tampered
            first = outcome.result.failed[0].name if outcome.result.failed else "components missing"
            result.refusals[first] = result.refusals.get(first, 0) + 1
        latencies.append(time.perf_counter() - started)
        if n % sample_every == 0 or n == len(fleet) - 1:
            result.load.append((round(time.perf_counter() - t0, 4), net.pva.counters()["cpu_s"] - before["cpu_s"]))
        if progress and n % every == 0:
            progress("change", n)
    result.change_s = time.perf_counter() - t0
    result.latencies_s = latencies
    result.pva_change = _diff(net.pva.counters(), before)
    result.peak_rss_mib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, _rss_mib())
    net.close()
    return result
