"""``mcim-hil run``: a procedure on a bench, one row per seed step as it goes, the artifacts after.

The artifacts (run.json, apdu.pcap, at.log, tpm.log, sequence.txt, report.html) go into
``--out DIR``; on a terminal a live status line shows the step running now.
"""

from __future__ import annotations

import time
from pathlib import Path

from .bench import load_bench
from .m2me.components import MODULE_FIRMWARE, module_firmware_from
from .procedures import PROCEDURES, run_procedure
from .record import Record
from .report import StepProgress, write_artifacts
from .report.artifacts import REPORT_FILE
from .session import Session, SessionOptions


def session_options(bench, air: str) -> SessionOptions:
    """The session a bench file asks for: the supplier's reference for the module firmware."""
    golden = None
    if bench.m2me.module_firmware:
        golden = {MODULE_FIRMWARE: module_firmware_from(*bench.m2me.module_firmware)}
    return SessionOptions(air=air, platform_id=bench.m2me.platform_id, golden=golden)


def run_command(bench_file: str | None, procedure_name: str, air: str | None, out: str | None,
                gsmtap: str | None = None) -> int:
    bench = load_bench(bench_file)
    procedure = PROCEDURES[procedure_name]
    air = air or ("module" if bench.modem and bench.modem.emulator else "relayed")
    out_dir = Path(out) if out else Path("runs") / f"{procedure.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    record = Record(meta={"bench": str(bench.path), "bench_name": bench.name, "procedure": procedure.name,
                          "title": procedure.title, "seed": procedure.seed, "air": air})
    t0 = time.perf_counter()
    with StepProgress(procedure.steps) as progress:
        try:
            progress.status(f"bringing up bench {bench.name}")
            options = session_options(bench, air)
            options.gsmtap = gsmtap
            with Session(bench, options, record) as session:
                record.meta["setup_s"] = round(time.perf_counter() - t0, 3)
                record.meta["pcid"] = session.m2me.pcid
                record.meta["platform_id"] = session.m2me.platform_id
                progress.header(f"{procedure.title}\nbench {bench.name}, air interface: {air}, "
                                f"PCID {session.m2me.pcid}, platform {session.m2me.platform_id}")
                t1 = time.perf_counter()
                outcome = run_procedure(procedure, session, record, progress)
                record.meta["procedure_s"] = round(time.perf_counter() - t1, 3)
                progress.status("closing the bench")
        finally:
            progress.status("writing the artifacts")
            written = write_artifacts(record, out_dir)
    verdict = "PASSED" if outcome.passed else f"FAILED at step {outcome.failed_step.number}" \
        if outcome.failed_step else "FAILED"
    print(f"{procedure.name}: {verdict} in {record.meta.get('procedure_s', 0):.2f} s "
          f"(bench set-up {record.meta.get('setup_s', 0):.2f} s)")
    print(f"artifacts in {out_dir}: {', '.join(written)}; open {written[REPORT_FILE]}")
    return 0 if outcome.passed else 1
