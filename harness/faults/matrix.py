"""The fault matrix runner: a clean probe run aims the fault points, then every case runs the
procedure on a bench restored to a known state with one fault armed at one step, and the
devices are checked. A case ends "passed after recovery" or "failed cleanly at step S"; an
end state that fails a check is "UNUSABLE" and fails the run."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from mcim_hil.bench import Bench
from mcim_hil.emulated import EmulatedBench
from mcim_hil.emulators.pcscd import PcscdUnavailable
from mcim_hil.procedures.base import Procedure, run_procedure
from mcim_hil.session import Session, SessionOptions

from .bench_state import BenchState
from .pcscd_case import run_in_namespace
from .checks import Baseline, Check, credential_checks, tpm_checks, transient_free
from .points import DEVICE_KINDS_WITH_MODEM, KINDS, PCSCD_RESTART, Armed, FaultPoint, points_for, with_fault

SLOT_WAIT_S = 60.0
RECOVERED, FAILED_CLEANLY, UNUSABLE = "passed after recovery", "failed cleanly", "UNUSABLE"
SKIPPED = "skipped"   # the case cannot run here (pcscd-restart without a mount namespace); detail says why


@dataclass
class CaseResult:
    point: FaultPoint | None
    outcome: str                   # RECOVERED / FAILED_CLEANLY / UNUSABLE
    failed_step: int | str | None
    detail: str
    credential: str
    checks: list[Check] = field(default_factory=list)
    setup_s: float = 0.0
    run_s: float = 0.0

    @property
    def summary(self) -> str:
        if self.outcome == FAILED_CLEANLY:
            return f"failed cleanly at step {self.failed_step}"
        if self.outcome == UNUSABLE:
            return f"UNUSABLE (step {self.failed_step})" if self.failed_step is not None else "UNUSABLE"
        if self.outcome == SKIPPED:
            return f"skipped: {self.detail}"
        return self.outcome

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.point.step if self.point else None, "kind": self.point.kind if self.point else None,
                "fault": self.point.fault if self.point else None, "target": self.point.target if self.point else None,
                "outcome": self.outcome, "summary": self.summary, "failed_step": self.failed_step,
                "detail": self.detail, "credential": self.credential,
                "checks": [asdict(c) for c in self.checks], "setup_s": round(self.setup_s, 4),
                "run_s": round(self.run_s, 4)}


@dataclass
class MatrixResult:
    procedure: str
    cases: list[CaseResult]
    prepare_s: float
    total_s: float

    @property
    def unusable(self) -> list[CaseResult]:
        return [c for c in self.cases if c.outcome == UNUSABLE]

    def totals(self) -> dict[str, int]:
        out = {RECOVERED: 0, FAILED_CLEANLY: 0, UNUSABLE: 0}
        if any(c.outcome == SKIPPED for c in self.cases):
            out[SKIPPED] = 0
        for case in self.cases:
            out[case.outcome] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        setups = [c.setup_s for c in self.cases]
        return {"procedure": self.procedure, "totals": self.totals(), "cases": [c.to_dict() for c in self.cases],
                "prepare_s": round(self.prepare_s, 3), "total_s": round(self.total_s, 3),
                "setup_s_mean": round(sum(setups) / len(setups), 4) if setups else 0.0,
                "setup_s_max": round(max(setups), 4) if setups else 0.0}


class CaseRunner:
    """Runs one case (or the clean probe) on a freshly restored bench."""

    def __init__(self, bench: Bench, procedure: Procedure, workdir: Path, *, air: str = "relayed") -> None:
        self.state = BenchState(bench, workdir)
        self.procedure = procedure
        self.workdir = workdir
        self.air = air
        self._n = 0
        self._stopping: list[threading.Thread] = []
        self.pcscd: Any = None   # a PrivatePcscd, in a pcscd-restart case's child (pcscd_case.py)

    def prepare(self) -> None:
        self.state.prepare()

    def run(self, point: FaultPoint | None) -> tuple[CaseResult, Any]:
        """The case's result and its record (None for a case run in a child process)."""
        self._n += 1
        if point is not None and point.fault == PCSCD_RESTART and self.pcscd is None:
            return run_in_namespace(self, point, self.workdir / f"case-{self._n}"), None
        t0 = time.perf_counter()
        case_dir = self.workdir / f"case-{self._n}"
        bench = self.state.restore(case_dir, modem=self.air == "module")
        emulated, waited = self._start(bench, case_dir)
        setup_s = time.perf_counter() - t0 - waited
        try:
            return self._on(bench, emulated, point, setup_s)
        finally:
            self._stop_later(emulated, case_dir)

    def _start(self, bench: Bench, case_dir: Path) -> tuple[EmulatedBench, float]:
        """Start the case's bench; when every vpcd slot is taken (the last case's bench still
        stopping, or other benches on this machine), wait for one, bounded. Returns the bench
        and the seconds spent waiting (not set-up: the machine's, not the case's)."""
        deadline = time.monotonic() + SLOT_WAIT_S
        waited = 0.0
        while True:
            emulated = EmulatedBench(bench, case_dir / "bench", faults=True)
            t0 = time.perf_counter()
            try:
                emulated.start()
                return emulated, waited
            except PcscdUnavailable:
                self.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                waited += time.perf_counter() - t0   # the refused attempt and the pause

    def _stop_later(self, emulated: EmulatedBench, case_dir: Path) -> None:
        """The last case's bench stops while the next one starts (other ports, another slot)."""
        def stop() -> None:
            try:
                emulated.stop()
            finally:
                shutil.rmtree(case_dir, ignore_errors=True)
        worker = threading.Thread(target=stop, name="faults-case-stop")
        worker.start()
        self._stopping.append(worker)

    def close(self) -> None:
        """Wait for every case's bench to be stopped (nothing left running)."""
        for worker in self._stopping:
            worker.join()
        self._stopping.clear()

    def _on(self, bench: Bench, emulated: EmulatedBench, point: FaultPoint | None,
            setup_s: float) -> tuple[CaseResult, Any]:
        tcti = emulated.endpoints.tpm_tcti
        assert tcti is not None
        slots = transient_free(tcti)
        t0 = time.perf_counter()
        checks: list[Check] = []
        credential, failed, detail = "none", None, ""
        session = Session(bench, SessionOptions(air=self.air), emulated=emulated)
        with session as s:
            adm1, pin1 = s.devices.uicc.pin_tries_left(0x0A), s.devices.uicc.pin_tries_left(0x01)
            before = Baseline(adm1, pin1, slots)
            procedure = self.procedure
            if point is not None:
                armed = Armed(s.network.bus, emulated.uicc_emulator, emulated.tpm_emulator, s.devices.uicc.reconnect,
                              emulated.modem_emulator, uicc=s.devices.uicc, pcscd=self.pcscd)
                procedure = with_fault(procedure, point, armed)
            outcome = run_procedure(procedure, s, s.record)
            row = outcome.failed_step
            if row is not None:
                failed, detail = row.number, row.detail
            try:
                credential, found = credential_checks(s, before)
                checks += found
            except Exception as exc:  # noqa: BLE001 - a device that cannot even be asked is unusable
                checks.append(Check("devices answer after the case", False, f"{type(exc).__name__}: {exc}"))
            record = s.record
        try:
            checks += tpm_checks(tcti, credential, before)
        except Exception as exc:  # noqa: BLE001
            checks.append(Check("the TPM answers after the case", False, f"{type(exc).__name__}: {exc}"))
        if not all(c.passed for c in checks):
            verdict = UNUSABLE
            detail = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.passed) + (
                f" (step {failed}: {detail})" if failed is not None else "")
        else:
            verdict = FAILED_CLEANLY if failed is not None else RECOVERED
        return CaseResult(point, verdict, failed, detail, credential, checks, setup_s,
                          time.perf_counter() - t0), record


def run_matrix(bench: Bench, procedure: Procedure, *, steps: Iterable[int] | None = None,
               kinds: Iterable[str] = KINDS, workdir: Path | None = None, air: str = "relayed",
               on_case: Callable[[int, int, CaseResult], None] = lambda i, n, c: None,
               limit: int | None = None) -> MatrixResult:
    """Probe, then every fault point of ``steps`` x ``kinds`` (``limit``: the first N only).
    The modem's kinds run on benches with the modem (the module attaches itself, the card is
    reached over AT+CSIM), aimed by a probe on such a bench; the others on ``air``."""
    t0 = time.perf_counter()
    kinds = tuple(kinds)
    with tempfile.TemporaryDirectory(prefix="mcim-hil-faults-") as tmp:
        root = Path(workdir or tmp)
        plain = [k for k in kinds if k not in DEVICE_KINDS_WITH_MODEM]
        moded = [k for k in kinds if k in DEVICE_KINDS_WITH_MODEM]
        runners = ([(CaseRunner(bench, procedure, root, air=air), plain)] if plain else []) + (
            [(CaseRunner(bench, procedure, root / "with-modem", air="module"), moded)] if moded else [])
        try:
            return _run(runners, procedure, steps, on_case, limit, t0)
        finally:
            for runner, _ in runners:
                runner.close()


def _run(runners: list[tuple[CaseRunner, list[str]]], procedure: Procedure, steps: Iterable[int] | None,
         on_case: Callable[[int, int, CaseResult], None], limit: int | None, t0: float) -> MatrixResult:
    planned: list[tuple[CaseRunner, FaultPoint]] = []
    prepare_s = 0.0
    golden: BenchState | None = None
    for runner, kinds in runners:
        if golden is None:
            runner.prepare()
            golden, prepare_s = runner.state, runner.state.prepare_s
        else:
            runner.state.golden = golden.golden      # one TPM manufactured for every case
        probe, record = runner.run(None)
        if probe.outcome != RECOVERED:
            raise RuntimeError(f"{procedure.name}: the clean probe run ({runner.air} air) did not pass "
                               f"({probe.summary}: {probe.detail}); a fault matrix needs a bench that passes "
                               f"without faults")
        planned += [(runner, p) for p in points_for(procedure, record, steps, kinds)]
        runner.close()
    order = {n: i for i, n in enumerate(s.number for s in procedure.steps)}
    planned.sort(key=lambda rp: order.get(rp[1].step, 0))   # stable: by step, kinds as listed
    if limit is not None:
        planned = planned[:limit]
    cases: list[CaseResult] = []
    for i, (runner, point) in enumerate(planned, 1):
        case, _ = runner.run(point)
        cases.append(case)
        on_case(i, len(planned), case)
    return MatrixResult(procedure.name, cases, prepare_s, time.perf_counter() - t0)
