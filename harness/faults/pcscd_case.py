"""pcscd-restart cases (issue 9 §1, UICC: "pcscd restarted"). The system pcscd is shared by
every test and user, pcscd 1.9.9 keeps its socket at the compiled-in /run/pcscd, and libpcsclite
reads the socket's place once per process: so each such case runs in a child process of its own,
in its own mount namespace with a tmpfs over /run/pcscd (emulators/pcscd.py namespace_command),
where a private pcscd serves a vpcd reader on ports of its own. There the case's bench, the
restart at the step's card write and the end-state checks all run; the result comes back
pickled. Without root or unshare the case is listed as skipped, with the reason.

`python -m mcim_hil.faults.pcscd_case CASE_DIR` is the child: CASE_DIR/case.pickle in,
CASE_DIR/result.pickle out."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcim_hil.emulators.pcscd import READER_CONF_ENV, PrivatePcscd, namespace_command, namespace_unsupported

if TYPE_CHECKING:
    from .matrix import CaseResult, CaseRunner
    from .points import FaultPoint

CASE_TIMEOUT_S = 300.0   # a child case: bench start, the procedure, the checks, the stop


def run_in_namespace(runner: CaseRunner, point: FaultPoint, case_dir: Path) -> CaseResult:
    """``point`` run by a child in a mount namespace of its own; skipped where that cannot be."""
    from .matrix import SKIPPED, UNUSABLE, CaseResult
    reason = namespace_unsupported()
    if reason is not None:
        return CaseResult(point, SKIPPED, None, reason, "n/a")
    case_dir.mkdir(parents=True, exist_ok=True)
    with open(case_dir / "case.pickle", "wb") as out:
        pickle.dump({"bench": runner.state.bench, "procedure": runner.procedure.name, "golden": runner.state.golden,
                     "air": runner.air, "point": point}, out)
    cmd, env = namespace_command([sys.executable, "-m", "mcim_hil.faults.pcscd_case", str(case_dir)])
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=CASE_TIMEOUT_S)
        result_file = case_dir / "result.pickle"
        if proc.returncode != 0 or not result_file.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
            return CaseResult(point, UNUSABLE, None, f"the case's child (private pcscd) failed: {tail}", "unknown")
        with open(result_file, "rb") as result:
            case: CaseResult = pickle.load(result)
        # the child's start, its pcscd's and its bench's stop are this case's set-up too
        case.setup_s = time.perf_counter() - t0 - case.run_s
        return case
    except subprocess.TimeoutExpired:
        return CaseResult(point, UNUSABLE, None, f"the case's child (private pcscd) did not end within "
                          f"{CASE_TIMEOUT_S:g} s", "unknown")
    finally:
        shutil.rmtree(case_dir, ignore_errors=True)


def _child(case_dir: Path) -> int:
    from mcim_hil.procedures import PROCEDURES

    from .matrix import CaseRunner
    with open(case_dir / "case.pickle", "rb") as given:
        case: dict[str, Any] = pickle.load(given)
    with PrivatePcscd(case_dir / "pcscd") as pcscd:
        # this process's benches claim the private reader's slots, not the system's
        os.environ[READER_CONF_ENV] = str(pcscd.conf_dir)
        runner = CaseRunner(case["bench"], PROCEDURES[case["procedure"]], case_dir / "work", air=case["air"])
        runner.state.golden = case["golden"]
        runner.pcscd = pcscd
        try:
            result, _ = runner.run(case["point"])
        finally:
            runner.close()
    with open(case_dir / "result.pickle", "wb") as out:
        pickle.dump(result, out)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m mcim_hil.faults.pcscd_case CASE_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(_child(Path(sys.argv[1])))
