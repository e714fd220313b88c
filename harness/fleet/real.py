"""The fleet's real benches: each its own emulated (or real) devices, running the whole change of
SHO (``change-sho``: initial-ivf, then the 14 steps) with real device commands, exactly as
``mcim-hil run`` does; its run.json and report go beside fleet.json.

Without the IVF the bench's IVF keeps no result that stands (``ivf_lifetime_s: 0``), so the new
SHO has the PVA validate integrity too (seed 004 c4 s3 NOTE): the same procedure, unmodified.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mcim_hil.bench import load_bench
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.record import Record
from mcim_hil.report import write_artifacts
from mcim_hil.run import session_options
from mcim_hil.session import Session


def run_real_bench(bench_file: str | None, with_ivf: bool, out_dir: Path, index: int) -> dict[str, Any]:
    """One real bench through change-sho; its counts for the fleet's summary."""
    bench = load_bench(bench_file)
    air = "module" if bench.modem and bench.modem.emulator else "relayed"
    options = session_options(bench, air)
    if not with_ivf:
        options.network = {"ivf_lifetime_s": 0.0}
    procedure = PROCEDURES["change-sho"]
    mode = "ivf" if with_ivf else "no-ivf"
    record = Record(meta={"bench": str(bench.path), "bench_name": bench.name, "procedure": procedure.name,
                          "title": procedure.title, "seed": procedure.seed, "air": air,
                          "fleet": {"device": "real", "index": index, "with_ivf": with_ivf}})
    mark: dict[str, Any] = {}

    def change_starts(s: Session) -> None:
        mark["pva"] = s.network.pva.counters()
        mark["t"] = time.perf_counter()

    counters: dict[str, Any] = {}
    try:
        with Session(bench, options, record) as session:
            outcome = run_procedure(procedure.after_step("before", change_starts), session, record)
            change_s = time.perf_counter() - mark.get("t", time.perf_counter())
            counters = session.network.pva.counters()
            platform_id = session.m2me.platform_id
            used = record.meta.get("change_of_sho_integrity", {})
    finally:
        write_artifacts(record, out_dir / f"real-{index}-{mode}")
    before = mark.get("pva", {})
    failed = outcome.failed_step.number if outcome.failed_step else None
    return {"index": index, "with_ivf": with_ivf, "platform_id": platform_id, "label": "real (emulated bench)" if bench.tpm and
            bench.tpm.emulator else "real", "bench": bench.name, "changed": outcome.passed, "failed_step": failed,
            "fallback": bool(used.get("fallback_reason")), "source": used.get("source"),
            "change_s": change_s, "pva_change": {k: round(v - before.get(k, 0), 6) for k, v in counters.items()},
            "artifacts": str(out_dir / f"real-{index}-{mode}")}


def real_runner(bench_file: str | None, count: int, out_dir: Path):
    """A function of the mode that runs ``count`` real benches one after the other."""
    def run(with_ivf: bool) -> list[dict[str, Any]]:
        return [run_real_bench(bench_file, with_ivf, out_dir, i) for i in range(count)]
    return run
