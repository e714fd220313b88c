"""``mcim-hil run``: a procedure on a bench, one row per seed step as it goes, the artifacts after.

The artifacts (run.json, apdu.pcap, at.log, tpm.log, sequence.txt, report.html) go into
``--out DIR``; on a terminal a live status line shows the step running now.

Everything a run can refuse is checked before the bench comes up (the bench file's keys, the
``--out`` folder), so a wrong argument never costs a procedure. SIGTERM (what CI and labgrid
send) unwinds exactly as Ctrl-C does: every device is stopped, the work folder removed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .bench import Bench, load_bench
from .m2me.components import MODULE_FIRMWARE, module_firmware_from
from .procedures import PROCEDURES, Procedure, run_procedure
from .record import Record
from .report import StepProgress, write_artifacts
from .report.artifacts import REPORT_FILE
from .session import Session, SessionOptions


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: a KeyboardInterrupt, so it unwinds through the same clean-up as Ctrl-C."""

    signal_name = "SIGTERM"


class BenchUnusable(Exception):
    """The bench file or the arguments cannot run this command; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def signal_name(exc: KeyboardInterrupt) -> str:
    return getattr(exc, "signal_name", "SIGINT")


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGINT raise (Terminated / KeyboardInterrupt) once; later ones are ignored so
    that they cannot cut the clean-up short (every stop has its own timeout)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def session_options(bench, air: str) -> SessionOptions:
    """The session a bench file asks for: the supplier's reference for the module firmware."""
    golden = None
    if bench.m2me.module_firmware:
        golden = {MODULE_FIRMWARE: module_firmware_from(*bench.m2me.module_firmware)}
    return SessionOptions(air=air, platform_id=bench.m2me.platform_id, golden=golden)


def emulator_problems(bench: Bench) -> list[str]:
    """What the emulated devices of a bench need from its file (before any is started)."""
    problems = []
    uicc = bench.uicc
    if uicc and uicc.emulator and uicc.adm1 is None and not (uicc.card_state and uicc.card_state.exists()):
        problems.append(f"{bench.path}: uicc.secrets.adm1: missing (the virtual card is made with it)")
    if bench.modem and bench.modem.emulator and not (uicc and (uicc.emulator or isinstance(uicc.reader, str))):
        problems.append(f"{bench.path}: uicc: the emulated modem needs a SIM reader "
                        "(uicc.emulator, or uicc.reader by name)")
    return problems


def run_problems(bench: Bench, air: str) -> list[str]:
    """What a procedure needs from the bench file, each problem naming the file and the key."""
    where = bench.path
    problems = [p for p in emulator_problems(bench) if ": uicc.secrets.adm1:" not in p]   # said below
    if bench.tpm is None:
        problems.append(f"{where}: tpm: missing (the M2ME's TRE is a TPM)")
    elif not bench.tpm.emulator and not bench.tpm.ek_ca:
        problems.append(f"{where}: tpm.ek_ca: missing (the PVA validates a real TPM's EK certificate "
                        "against its manufacturer's CA certificates)")
    if bench.uicc is None:
        problems.append(f"{where}: uicc: missing (the MCIM is installed on a UICC)")
    elif bench.uicc.adm1 is None:
        problems.append(f"{where}: uicc.secrets.adm1: missing (the card is personalised with it)")
    # the module's radio is ours when we emulate the modem, or reach a running one's (bench up's air link)
    if air == "module" and not (bench.modem and (bench.modem.emulator or bench.modem.air_link)):
        reached = f" it reaches a module at modem.port {bench.modem.port}," if bench.modem and bench.modem.port else ""
        problems.append(f"{where}: --air module needs the emulated modem (modem.emulator: at-pty);{reached} "
                        "a running module cannot reach this network over the air: use --air relayed")
    return problems


def out_problems(out_dir: Path) -> list[str]:
    """Whether ``out_dir`` can take the artifacts: checked (and created) before the run."""
    for parent in [out_dir, *out_dir.parents]:
        if parent.exists():
            if not parent.is_dir():
                what = "is" if parent == out_dir else f"is under {parent}, which is"
                return [f"--out {out_dir}: {what} not a folder"]
            break
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"--out {out_dir}: cannot create the folder: {exc.strerror or exc}"]
    if not os.access(out_dir, os.W_OK | os.X_OK):
        return [f"--out {out_dir}: the folder is not writable"]
    return []


def run_command(bench_file: str | None, procedure_name: str, air: str | None, out: str | None,
                gsmtap: str | None = None, reveal_session_keys: bool = False,
                procedure: Procedure | None = None) -> int:
    """``procedure``: one built with options (firmware-update's --component/--to) in place of the name's."""
    bench = load_bench(bench_file)
    procedure = procedure or PROCEDURES[procedure_name]
    air = air or ("module" if bench.modem and bench.modem.emulator else "relayed")
    out_dir = Path(out) if out else Path("runs") / f"{procedure.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    problems = run_problems(bench, air)
    if problems:
        raise BenchUnusable(problems)
    problems = out_problems(out_dir)
    if problems:
        raise BenchUnusable(problems)
    record = Record(meta={"bench": str(bench.path), "bench_name": bench.name, "procedure": procedure.name,
                          "title": procedure.title, "seed": procedure.seed, "air": air},
                    reveal_session_keys=reveal_session_keys)
    if reveal_session_keys:
        print(f"{procedure.name}: session keys (RES, CK, IK, Kc) are revealed in the artifacts in {out_dir}: "
              "keep that folder as secret as the air trace it decrypts", file=sys.stderr)
    t0 = time.perf_counter()
    bench_up = False
    close_error: Exception | None = None
    interrupted: KeyboardInterrupt | None = None
    with StepProgress(procedure.steps) as progress:
        try:
            progress.status(f"bringing up bench {bench.name}")
            options = session_options(bench, air)
            options.gsmtap = gsmtap
            session = Session(bench, options, record)
            session.__enter__()     # on failure it has closed itself
            bench_up = True
            try:
                record.meta["setup_s"] = round(time.perf_counter() - t0, 3)
                record.meta["pcid"] = session.m2me.pcid
                record.meta["platform_id"] = session.m2me.platform_id
                progress.header(f"{procedure.title}\nbench {bench.name}, air interface: {air}, "
                                f"PCID {session.m2me.pcid}, platform {session.m2me.platform_id}")
                t1 = time.perf_counter()
                outcome = run_procedure(procedure, session, record, progress)
                record.meta["procedure_s"] = round(time.perf_counter() - t1, 3)
            finally:
                progress.status("closing the bench")
                try:
                    session.close()
                except Exception as exc:   # an emulator that crashed: said after the verdict
                    close_error = exc
        except KeyboardInterrupt as exc:
            interrupted = exc
            where = _running_step(progress) if bench_up else "while bringing up the bench"
        finally:
            progress.status("writing the artifacts")
            written = write_artifacts(record, out_dir)
    if interrupted is not None:
        print(f"{procedure.name}: terminated by {signal_name(interrupted)} {where}; the bench was stopped; "
              f"artifacts in {out_dir}", file=sys.stderr)
        return 143 if isinstance(interrupted, Terminated) else 130
    verdict = "PASSED" if outcome.passed else f"FAILED at step {outcome.failed_step.number}" \
        if outcome.failed_step else "FAILED"
    print(f"{procedure.name}: {verdict} in {record.meta.get('procedure_s', 0):.2f} s "
          f"(bench set-up {record.meta.get('setup_s', 0):.2f} s)")
    print(f"artifacts in {out_dir}: {', '.join(written)}; open {written[REPORT_FILE]}")
    if close_error is not None:
        print(f"{procedure.name}: {_first_line(close_error)}", file=sys.stderr)
        return 1
    return 0 if outcome.passed else 1


def _running_step(progress: StepProgress) -> str:
    if progress.done < len(progress.steps):
        return f"at step {progress.steps[progress.done].number}"
    return "after the last step"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line.removesuffix("; stderr tail:")
