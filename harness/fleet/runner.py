"""Running a fleet: the simulated M2MEs sharded by M2ME over a local process pool or a Dask
cluster (``--scheduler tcp://HOST:8786``), the real benches one after the other, and the
shards' results merged into one summary per mode (with and without the IVF)."""

from __future__ import annotations

import math
import os
import queue
import signal
import threading
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .population import FleetError, FleetSpec, SharedPki
from .shard import ShardResult, ShardTask, run_shard

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class ModeSummary:
    """One run of the fleet (with or without the IVF), shards and real benches merged."""

    with_ivf: bool
    m2mes: int = 0
    simulated: int = 0
    real: int = 0
    changed: int = 0
    refused: int = 0
    tampered: int = 0
    refused_tampered: int = 0
    tampered_accepted: int = 0
    fallbacks: int = 0
    updated: int = 0
    updated_full: int = 0
    pva_change: dict[str, float] = field(default_factory=dict)
    pva_provisioning: dict[str, float] = field(default_factory=dict)
    change_s: float = 0.0
    provisioning_s: float = 0.0
    m2mes_per_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    load: list[tuple[float, float]] = field(default_factory=list)  # (s into the change, PVA CPU s per s)
    peak_rss_mib: float = 0.0
    base_rss_mib: float = 0.0                # the shards' processes before their first M2ME
    refusals: dict[str, int] = field(default_factory=dict)
    shards: int = 0
    executor: str = ""
    real_benches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "with IVF" if self.with_ivf else "without IVF"

    def counts(self) -> dict[str, Any]:
        """What must not depend on how the fleet was run (pool, Dask, shard count)."""
        return {"m2mes": self.m2mes, "changed": self.changed, "refused": self.refused,
                "refused_tampered": self.refused_tampered, "tampered_accepted": self.tampered_accepted,
                "fallbacks": self.fallbacks, "updated": self.updated, "updated_full": self.updated_full,
                "refusals": dict(sorted(self.refusals.items())),
                **{f"pva_{k}": self.pva_change.get(k, 0) for k in
                   ("authenticity_checks", "integrity_validations", "ocsp_requests", "reference_values_requests",
                    "ivf_issues")}}


def shard_tasks(spec: FleetSpec, shards: int, with_ivf: bool, pki: SharedPki) -> list[ShardTask]:
    """The simulated M2MEs dealt round-robin into ``shards`` (never an empty shard)."""
    count = max(1, min(shards, spec.simulated))
    tampered = frozenset(spec.tampered_indexes())
    updated = frozenset(spec.updated_indexes())
    return [ShardTask(i, tuple(range(i, spec.simulated, count)), tampered, spec.configurations, with_ivf, pki,
                      updated) for i in range(count) if spec.simulated > i]


def _pool_worker(task: ShardTask, updates: Any) -> ShardResult:
    return run_shard(task, lambda phase, n: updates.put((task.shard, phase, n)))


def _worker_signals() -> None:
    """In a shard's process: SIGTERM ends it quietly (the parent's handler, inherited by fork,
    would raise in the middle of a shard), SIGINT is for the parent (Ctrl-C reaches the whole
    process group; the parent stops the shards)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_pool(pool: ProcessPoolExecutor, futures: Sequence[Future[Any]]) -> None:
    """Cancel the shards not started and end the running ones now (SIGTERM, then SIGKILL)
    rather than wait for them: a stopped fleet has no result to wait for."""
    for future in futures:
        future.cancel()
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=2.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=2.0)
    pool.shutdown(wait=False, cancel_futures=True)


def run_local(tasks: Sequence[ShardTask], workers: int, progress: Progress | None = None) -> list[ShardResult]:
    """The shards on a local process pool, one process per shard."""
    import multiprocessing

    total = sum(len(t.indexes) for t in tasks)
    context = multiprocessing.get_context("fork")  # the shards need nothing re-imported
    with context.Manager() as manager:
        updates = manager.Queue()
        where: dict[int, tuple[str, int]] = {}
        sizes = {t.shard: len(t.indexes) for t in tasks}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                try:
                    shard, phase, n = updates.get(timeout=0.2)
                except (queue.Empty, EOFError, OSError):
                    continue
                where[shard] = (phase, n)
                if not progress:
                    continue
                # the fleet is changing once every shard is; until then it is provisioning
                if len(where) == len(tasks) and all(p == "change" for p, _ in where.values()):
                    progress("change", sum(n for _, n in where.values()), total)
                else:
                    progress("provisioning", sum(sizes[s] if p == "change" else n for s, (p, n) in where.items()),
                             total)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(tasks))), mp_context=context,
                                   initializer=_worker_signals)
        futures: list[Future[ShardResult]] = []
        try:
            futures = [pool.submit(_pool_worker, task, updates) for task in tasks]
            results = [future.result() for future in futures]
        except BaseException:   # SIGTERM / Ctrl-C (Terminated, KeyboardInterrupt) or a failed shard
            _stop_pool(pool, futures)
            raise
        else:
            pool.shutdown(wait=True)
        finally:
            stop.set()
            watcher.join()
    return results


def connect(scheduler: str, timeout_s: float = 10.0) -> Any:
    """A Dask client of an existing cluster, or FleetError in one line."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise FleetError(f"--scheduler {scheduler}: dask.distributed is not installed ({exc})") from exc
    try:
        return Client(scheduler, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FleetError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({reason})") from None


def run_dask(tasks: Sequence[ShardTask], client: Any, progress: Progress | None = None) -> list[ShardResult]:
    """The shards as tasks on a Dask cluster; results in shard order."""
    from distributed import as_completed

    total = sum(len(t.indexes) for t in tasks)
    futures = client.map(run_shard, list(tasks), pure=False, key=[f"mcim-hil-fleet-shard-{t.shard}-"
                                                                  f"{'ivf' if t.with_ivf else 'noivf'}-{os.getpid()}"
                                                                  for t in tasks])
    results: dict[int, ShardResult] = {}
    try:
        for future in as_completed(futures, loop=client.loop):
            result = future.result()
            results[result.shard] = result
            if progress:
                progress("shards done", sum(r.m2mes for r in results.values()), total)
    except BaseException:   # SIGTERM / Ctrl-C or a failed shard: the cluster drops the others
        client.cancel(futures, force=True)
        raise
    return [results[t.shard] for t in tasks]


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


def load_over_time(results: Sequence[ShardResult], buckets: int = 60) -> list[tuple[float, float]]:
    """The fleet's PVA CPU seconds per wall second over the change, all shards' PVAs together."""
    if not results:
        return []
    start = min(r.change_started for r in results)
    end = max(r.change_started - start + r.change_s for r in results)
    width = max(end / buckets, 1e-3)
    cpu = [0.0] * (int(end / width) + 1)
    for r in results:
        offset = r.change_started - start
        last_cpu = 0.0
        for t, c in r.load:
            slot = min(len(cpu) - 1, int((offset + t) / width))
            cpu[slot] += c - last_cpu
            last_cpu = c
    return [(round(i * width, 4), round(c / width, 5)) for i, c in enumerate(cpu)]


def merge(with_ivf: bool, results: Sequence[ShardResult], real: Sequence[dict[str, Any]], spec: FleetSpec,
          executor: str) -> ModeSummary:
    s = ModeSummary(with_ivf, m2mes=spec.devices, simulated=spec.simulated, real=spec.real,
                    tampered=spec.tampered, shards=len(results), executor=executor, real_benches=list(real))
    latencies = array("d")  # 8 bytes per M2ME
    for r in results:
        s.changed += r.changed
        s.refused += r.refused
        s.refused_tampered += r.refused_tampered
        s.tampered_accepted += r.tampered_accepted
        s.fallbacks += r.fallbacks
        s.updated += r.updated
        s.updated_full += r.updated_full
        for key, value in r.pva_change.items():
            s.pva_change[key] = round(s.pva_change.get(key, 0) + value, 6)
        for key, value in r.pva_provisioning.items():
            s.pva_provisioning[key] = round(s.pva_provisioning.get(key, 0) + value, 6)
        for key, value in r.refusals.items():
            s.refusals[key] = s.refusals.get(key, 0) + value
        latencies.extend(r.latencies_s)
        s.peak_rss_mib += r.peak_rss_mib
        s.base_rss_mib += r.base_rss_mib
    s.change_s = max((r.change_s for r in results), default=0.0)
    s.provisioning_s = max((r.provisioning_s for r in results), default=0.0)
    for bench in real:
        s.changed += bench["changed"]
        s.refused += not bench["changed"]
        s.fallbacks += bench["fallback"]
        for key, value in bench["pva_change"].items():
            s.pva_change[key] = round(s.pva_change.get(key, 0) + value, 6)
        latencies.append(bench["change_s"])
    s.m2mes_per_s = round(s.simulated / s.change_s, 1) if s.change_s else 0.0
    s.latency_p50_ms = round(percentile(latencies, 50) * 1e3, 3)
    s.latency_p99_ms = round(percentile(latencies, 99) * 1e3, 3)
    s.load = load_over_time(results)
    s.peak_rss_mib = round(s.peak_rss_mib, 1)
    s.base_rss_mib = round(s.base_rss_mib, 1)
    return s


def run_mode(spec: FleetSpec, with_ivf: bool, pki: SharedPki, *, workers: int, client: Any = None,
             real: Callable[[bool], list[dict[str, Any]]] | None = None,
             progress: Progress | None = None) -> ModeSummary:
    """One mode: the real benches first (one after the other), then the simulated shards."""
    benches = real(with_ivf) if real and spec.real else []
    tasks = shard_tasks(spec, workers, with_ivf, pki) if spec.simulated else []
    if client is not None:
        results = run_dask(tasks, client, progress)
        executor = f"dask {client.scheduler.address}"
    else:
        results = run_local(tasks, workers, progress) if tasks else []
        executor = f"process pool of {workers}"
    return merge(with_ivf, results, benches, spec, executor)
