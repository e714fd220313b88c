"""pcscd restarted under a card session (issue 9 §1, UICC faults), on a private pcscd in a mount
namespace of its own (emulators/pcscd.py PrivatePcscd): the system pcscd is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcim_hil.bench import load_bench
from mcim_hil.emulators.pcscd import namespace_command, namespace_unsupported
from mcim_hil.faults.command import table
from mcim_hil.faults.matrix import FAILED_CLEANLY, RECOVERED, SKIPPED, CaseRunner, MatrixResult
from mcim_hil.faults.points import points_for
from mcim_hil.procedures import PROCEDURES


needs_namespace = pytest.mark.skipif(namespace_unsupported() is not None, reason=str(namespace_unsupported()))

# Runs inside the namespace: a card session on the private pcscd, pcscd restarted, then the
# same transport used again.
TRANSPORT_CHILD = '''
import json, sys, tempfile
from pathlib import Path
from mcim_hil.emulators.pcscd import PrivatePcscd
from mcim_hil.emulators import vuicc
from mcim_hil.drivers.uicc_transport import PcscTransport
from mcim_hil.drivers.errors import CardRemoved

SELECT_MF = bytes.fromhex("00A40004023F00")
out = {}
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    state = tmp / "card.json"
    vuicc.create_card_file(state, iccid="8949440000001155314", imsi="001010123456789",
                           k=bytes(16), opc=bytes(16), adm1=b"53253116", pin1=b"1234")
    with PrivatePcscd(tmp / "pcscd") as pcscd:
        out["port"] = pcscd.port
        with vuicc.VirtualUicc(state, pcscd.slot.port, reader=pcscd.slot.reader):
            card = PcscTransport.open(pcscd.slot.reader, timeout=5.0)
            out["sw_before"] = card.transmit(SELECT_MF)[1]
            out["context_before"] = card._context
            pcscd.restart()
            try:
                card.transmit(SELECT_MF)
                out["error"] = None
            except CardRemoved as exc:
                out["error"] = str(exc)
            out["context_after"] = card._context
            out["sw_after"] = card.transmit(SELECT_MF)[1]
            card.close()
            pcscd.stop()
            try:
                card = PcscTransport.open(pcscd.slot.reader, timeout=1.0)
                out["without_pcscd"] = "opened"
            except Exception as exc:
                out["without_pcscd"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
'''


def _in_namespace(tmp_path: Path, program: str, timeout: float = 120) -> dict:
    script = tmp_path / "child.py"
    script.write_text(program)
    cmd, env = namespace_command([sys.executable, str(script)])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _system_pcscd() -> str:
    return Path("/run/pcscd/pcscd.pid").read_text().strip()


@needs_namespace
def test_transport_opens_a_new_context_after_pcscd_restarts(tmp_path: Path) -> None:
    system_before = _system_pcscd()
    out = _in_namespace(tmp_path, TRANSPORT_CHILD)
    assert out["sw_before"] >> 8 in (0x61, 0x90)
    # the command that died with pcscd is reported, naming pcscd, not sent again
    assert out["error"] is not None and "pcscd restarted" in out["error"]
    assert "was not sent again" in out["error"]
    # ... and the transport works on a new context without the caller opening anything
    assert out["context_after"] != out["context_before"]
    assert out["sw_after"] >> 8 in (0x61, 0x90)
    # with pcscd gone for good: one clear line naming pcscd
    assert out["without_pcscd"].startswith("DeviceNotFound: pcscd:")
    # the private vpcd is not on the system pcscd's ports, and the system pcscd is the same one
    assert not 35963 <= out["port"] <= 35978
    assert _system_pcscd() == system_before


# ---- the fault matrix's pcscd-restart cases (change of SHO)

CHANGE = PROCEDURES["change-sho"]


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseRunner]:
    case_runner = CaseRunner(load_bench(), CHANGE, tmp_path_factory.mktemp("faults-pcscd"))
    case_runner.prepare()
    try:
        yield case_runner
    finally:
        case_runner.close()


@pytest.fixture(scope="module")
def probe(runner: CaseRunner) -> Any:
    result, record = runner.run(None)
    assert result.outcome == RECOVERED, result.detail
    return record


@needs_namespace
@pytest.mark.parametrize("step", [8, 12])
def test_pcscd_restarted_at_the_steps_card_write_leaves_usable_devices(runner: CaseRunner, probe: Any,
                                                                       step: int) -> None:
    system_before = _system_pcscd()
    point = next(p for p in points_for(CHANGE, probe, [step], ["uicc"]) if p.fault == "pcscd-restart")
    assert point.target.startswith("UPDATE")     # aimed at the step's card write
    case, record = runner.run(point)
    assert record is None                        # run by a child in its own namespace
    assert case.outcome in (RECOVERED, FAILED_CLEANLY), f"{case.summary}: {case.detail}"
    if case.outcome == FAILED_CLEANLY:
        assert case.failed_step == step and "pcscd restarted" in case.detail
    # the end-state checks ran (inside the namespace) and every one passed
    names = {c.name for c in case.checks}
    assert case.checks and all(c.passed for c in case.checks), case.checks
    assert {"a real attach with it", "retry counters not lower", "no transient TPM object leaked"} <= names
    assert case.credential in ("old MCIM", "new MCIM", "initial-access"), case.credential
    assert _system_pcscd() == system_before      # the shared pcscd never restarted


def test_without_a_mount_namespace_the_case_is_listed_as_skipped_with_the_reason(
        runner: CaseRunner, probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # a machine where we are not root: namespace_unsupported() says so (the real check reads geteuid)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    point = next(p for p in points_for(CHANGE, probe, [12], ["uicc"]) if p.fault == "pcscd-restart")
    case, _ = runner.run(point)
    assert case.outcome == SKIPPED
    assert case.summary == "skipped: a private pcscd needs root (its own mount namespace over /run/pcscd)"
    result = MatrixResult(CHANGE.name, [case], 0.0, 0.0)
    assert result.totals()[SKIPPED] == 1 and not result.unusable
    assert table(result)[1].split() == ["12", "skip"]
