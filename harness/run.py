"""``mcim-hil run``: a procedure on a bench, one row per seed step as it goes, run.json after."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from .bench import load_bench
from .m2me.components import MODULE_FIRMWARE, module_firmware_from
from .procedures import PROCEDURES, StepRow, run_procedure
from .record import Record
from .session import Session, SessionOptions

_VERDICT = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


class RowPrinter:
    """Plain lines, one per step, flushed as they come (readable in a CI log too)."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def header(self, title: str) -> None:
        print(title, file=self.out)
        print(f"{'step':>5}  {'entities':<24} {'duration':>9}  {'verdict':<7} what happened", file=self.out)
        self.out.flush()

    def __call__(self, row: StepRow) -> None:
        number = row.number if isinstance(row.number, int) else str(row.number)
        entities = ", ".join(row.entities)
        print(f"{number:>5}  {entities:<24.24} {row.duration_s * 1000:7.1f} ms  {_VERDICT[row.verdict]:<7} "
              f"{row.detail}", file=self.out)
        self.out.flush()


def session_options(bench, air: str) -> SessionOptions:
    """The session a bench file asks for: the supplier's reference for the module firmware."""
    golden = None
    if bench.m2me.module_firmware:
        golden = {MODULE_FIRMWARE: module_firmware_from(*bench.m2me.module_firmware)}
    return SessionOptions(air=air, platform_id=bench.m2me.platform_id, golden=golden)


def run_command(bench_file: str | None, procedure_name: str, air: str | None, out: str | None) -> int:
    bench = load_bench(bench_file)
    procedure = PROCEDURES[procedure_name]
    air = air or ("module" if bench.modem and bench.modem.emulator else "relayed")
    out_dir = Path(out) if out else Path("runs") / f"{procedure.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    record = Record(meta={"bench": str(bench.path), "bench_name": bench.name, "procedure": procedure.name,
                          "seed": procedure.seed, "air": air})
    printer = RowPrinter()
    t0 = time.perf_counter()
    try:
        with Session(bench, session_options(bench, air), record) as session:
            record.meta["setup_s"] = round(time.perf_counter() - t0, 3)
            record.meta["pcid"] = session.m2me.pcid
            record.meta["platform_id"] = session.m2me.platform_id
            printer.header(f"{procedure.title}\nbench {bench.name}, air interface: {air}, "
                           f"PCID {session.m2me.pcid}, platform {session.m2me.platform_id}")
            t1 = time.perf_counter()
            outcome = run_procedure(procedure, session, record, printer)
            record.meta["procedure_s"] = round(time.perf_counter() - t1, 3)
    finally:
        path = record.write(out_dir)
    verdict = "PASSED" if outcome.passed else f"FAILED at step {outcome.failed_step.number}" \
        if outcome.failed_step else "FAILED"
    print(f"{procedure.name}: {verdict} in {record.meta.get('procedure_s', 0):.2f} s "
          f"(bench set-up {record.meta.get('setup_s', 0):.2f} s); record: {path}")
    return 0 if outcome.passed else 1
