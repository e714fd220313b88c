"""The fault matrix on the real stacks (swtpm with its power-cut relay, the virtual card behind
pcscd, the network's bus): a representative handful of cases of the change of SHO, each on a
bench restored from the golden TPM state, judged by what the devices hold afterwards.
The whole matrix is `mcim-hil faults --procedure change-sho` (benchmarks/bench_faults.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcim_hil.bench import load_bench
from mcim_hil.cli import main
from mcim_hil.drivers.uicc import CardError
from mcim_hil.faults.matrix import FAILED_CLEANLY, RECOVERED, UNUSABLE, CaseRunner
from mcim_hil.faults.points import FaultPoint, points_for
from mcim_hil.procedures import PROCEDURES

CHANGE = PROCEDURES["change-sho"]


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseRunner]:
    case_runner = CaseRunner(load_bench(), CHANGE, tmp_path_factory.mktemp("faults"))
    case_runner.prepare()
    try:
        yield case_runner
    finally:
        case_runner.close()


@pytest.fixture(scope="module")
def probe(runner: CaseRunner) -> Any:
    result, record = runner.run(None)
    assert result.outcome == RECOVERED, result.detail
    assert result.credential == "new MCIM"
    return record


@pytest.fixture(scope="module")
def modem_runner(runner: CaseRunner) -> Iterator[CaseRunner]:
    """Cases with the modem: the module attaches itself and the card is reached over AT+CSIM."""
    case_runner = CaseRunner(runner.state.bench, CHANGE, runner.workdir / "with-modem", air="module")
    case_runner.state.golden = runner.state.golden
    try:
        yield case_runner
    finally:
        case_runner.close()


@pytest.fixture(scope="module")
def modem_probe(modem_runner: CaseRunner) -> Any:
    result, record = modem_runner.run(None)
    assert result.outcome == RECOVERED, result.detail
    return record


def point(probe: Any, step: int, kind: str, fault: str) -> FaultPoint:
    return next(p for p in points_for(CHANGE, probe, [step], [kind]) if p.fault == fault)


def test_fault_points_are_aimed_at_what_each_step_really_sends(probe: Any) -> None:
    points = points_for(CHANGE, probe)
    by_step = {(p.step, p.kind): p.target for p in points}
    assert by_step[(9, "bus")] == "CredentialsDiscarded"
    assert by_step[(7, "bus")] == "M2MSIMMobjDownload"
    assert by_step[(12, "tpm")] == "TPM2_Import"
    assert by_step[(8, "tpm")] == "TPM2_EvictControl"
    assert (8, "bus") not in by_step          # the discard on the M2ME sends nothing
    assert {p.fault for p in points if p.kind == "uicc"} == {"error-sw", "silent", "removed", "pcscd-restart"}
    assert {p.fault for p in points if p.kind == "bus"} == {"lost", "duplicated", "delayed", "reordered",
                                                            "unreachable"}
    assert points_for(CHANGE, probe, [9], ["uicc"]) == []   # step 9 never reaches the card


def test_a_lost_discard_notice_is_sent_again_and_the_change_completes(runner: CaseRunner, probe: Any) -> None:
    case, record = runner.run(point(probe, 9, "bus", "lost"))
    assert case.outcome == RECOVERED and case.failed_step is None
    assert case.credential == "new MCIM" and all(c.passed for c in case.checks)
    assert [f["kind"] for f in record.meta["bus_faults"]] == ["CredentialsDiscarded"]


def test_an_unreachable_m2me_at_the_download_fails_cleanly_on_the_old_mcim(runner: CaseRunner,
                                                                          probe: Any) -> None:
    case, _ = runner.run(point(probe, 7, "bus", "unreachable"))
    assert case.outcome == FAILED_CLEANLY and case.failed_step == 7
    assert "MessageLost" in case.detail and "after 3 attempts" in case.detail
    # nothing discarded yet: the old SHO's MCIM still attaches, the TPM holds its object
    assert case.credential == "old MCIM"
    assert {c.name: c.passed for c in case.checks} == dict.fromkeys((
        "one credential on the card", "a real attach with it", "never two SHOs' credentials active",
        "retry counters not lower", "the TPM's MCIM objects match the card", "the initial-access credential kept",
        "no transient TPM object leaked"), True)


def test_power_lost_before_the_import_falls_back_to_the_initial_access_credential(runner: CaseRunner,
                                                                                   probe: Any) -> None:
    case, _ = runner.run(point(probe, 12, "tpm", "power-before"))
    assert case.outcome == FAILED_CLEANLY and case.failed_step == 12
    assert "TPM2_Import" in case.detail and "lost power" in case.detail
    # the host's TPM connection is opened anew after the cut (libtss2's old one is stuck in an error state)
    assert "the M2ME restarted after the power loss; fell back to the initial-access credential" in case.detail
    # step 8 already put the card on the initial-access credential; it attaches with it
    assert case.credential == "initial-access"
    assert next(c for c in case.checks if c.name == "a real attach with it").passed


def test_a_card_error_during_the_install_leaves_the_initial_access_credential(runner: CaseRunner,
                                                                              probe: Any) -> None:
    case, _ = runner.run(point(probe, 12, "uicc", "error-sw"))
    assert case.outcome == FAILED_CLEANLY and case.failed_step == 12
    assert case.credential == "initial-access"


def test_a_card_that_stops_answering_during_the_install_fails_cleanly_in_bounded_time(runner: CaseRunner,
                                                                                    probe: Any) -> None:
    case, _ = runner.run(point(probe, 12, "uicc", "silent"))
    assert case.outcome == FAILED_CLEANLY and case.failed_step == 12
    assert "no answer within 2 s" in case.detail
    assert case.credential in ("initial-access", "new MCIM")
    assert next(c for c in case.checks if c.name == "a real attach with it").passed


def test_the_end_state_check_catches_a_spent_retry(runner: CaseRunner) -> None:
    """A case whose end state is wrong is UNUSABLE and names the check: here a PIN1 try spent
    (the test's own wrong PIN, on the virtual card) between steps 9 and 10."""
    def wrong_pin(s: Any) -> None:
        with pytest.raises(CardError):
            s.devices.uicc.verify_pin(b"0000")

    spending = CaseRunner(runner.state.bench, CHANGE.after_step(9, wrong_pin), runner.workdir / "spending")
    spending.state = runner.state   # the same golden TPM
    try:
        case, _ = spending.run(None)
    finally:
        spending.close()
    assert case.outcome == UNUSABLE
    assert "retry counters not lower: PIN1 3->2" in case.detail


# A finding of the matrix, fixed: step 8 used to evict the old MCIM from the TPM before the card's
# K/OPc were overwritten, so a card write that failed left the card on the old MCIM with no TPM
# object behind it. The card is written first now (transactionally).
@pytest.mark.parametrize("fault", ["error-sw", "removed"])
def test_a_card_fault_during_the_discard_leaves_one_whole_credential(runner: CaseRunner, probe: Any,
                                                                      fault: str) -> None:
    case, _ = runner.run(point(probe, 8, "uicc", fault))
    assert case.outcome != UNUSABLE, case.detail


# A finding of the matrix, fixed for step 12: a success report the DPF never took (lost on every
# retry) used to leave a new MCIM no network would activate. The M2ME now gives it up and falls
# back to its initial-access credential.
def test_a_status_report_the_dpf_never_gets_falls_back_to_the_pcid(runner: CaseRunner, probe: Any) -> None:
    case, _ = runner.run(point(probe, 12, "bus", "unreachable"))
    assert case.outcome != UNUSABLE, case.detail
    assert "fell back to the initial-access credential" in case.detail, case.detail


# A finding of the matrix, fixed: when the DPF's status report never reaches the new SHO (step 13),
# the M2ME kept a new MCIM the network never activated. The attach with it is rejected with cause #2
# (IMSI unknown): the M2ME gives it up and falls back to the PCID credential.
def test_a_status_report_that_never_arrives_leaves_a_credential_that_attaches(runner: CaseRunner,
                                                                              probe: Any) -> None:
    case, record = runner.run(point(probe, 13, "bus", "unreachable"))
    assert case.outcome == FAILED_CLEANLY and case.failed_step == 13, case.detail
    assert case.credential == "initial-access"
    after = next(st for st in record.steps if st.number == "after")
    assert "#2 IMSI unknown" in after.detail and "attached with the PCID" in after.detail, after.detail


# A finding of the matrix, fixed: power lost at step 8's evict left the card on the PCID credential
# and the old MCIM's object in the TPM. The M2ME restarts and evicts again; the change goes on.
@pytest.mark.parametrize("fault", ["power-before", "power-after"])
def test_power_lost_at_the_discards_evict_restarts_and_evicts_again(runner: CaseRunner, probe: Any,
                                                                    fault: str) -> None:
    case, record = runner.run(point(probe, 8, "tpm", fault))
    assert case.outcome != UNUSABLE, case.detail
    step8 = next(st for st in record.steps if st.number == 8)
    assert "the TPM lost power at the evict 1 time(s): the M2ME restarted and evicted again" in step8.detail, \
        step8.detail


def test_cli_faults_writes_the_table_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["faults", "--procedure", "change-sho", "--steps", "10", "--kinds", "bus", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "bus:lost" in out and "totals: 5 cases: 4 passed after recovery, 1 failed cleanly, 0 UNUSABLE" in out
    data = json.loads((tmp_path / "faults.json").read_text())
    assert data["totals"] == {RECOVERED: 4, FAILED_CLEANLY: 1, UNUSABLE: 0}
    unreachable = next(c for c in data["cases"] if c["fault"] == "unreachable")
    # step 10's acknowledgement answers step 9's notice: the group's leader (9) sends it and fails
    assert unreachable["step"] == 10 and unreachable["target"] == "DiscardAcknowledgement"
    assert unreachable["summary"] == "failed cleanly at step 9"
    assert "failed cleanly at step 9" in (tmp_path / "faults.html").read_text()


def test_cli_faults_refuses_an_unknown_kind_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["faults", "--kinds", "bus,radio"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip() == "mcim-hil faults: ValueError: --kinds: unknown radio (choose from bus, uicc, tpm, modem)"


# -- modem faults: on benches with the modem; the card's writes go over AT+CSIM ------------------

def test_modem_fault_points_hit_the_csim_that_carries_a_steps_card_write(modem_probe: Any) -> None:
    points = points_for(CHANGE, modem_probe, kinds=["modem"])
    assert {p.fault for p in points} == {"silence", "garbage", "reset", "no-carrier", "cme-error"}
    aimed = {(p.step, p.at_command, p.code) for p in points}
    assert (8, "+CSIM", 0xD6) in aimed and (12, "+CSIM", 0xD6) in aimed   # UPDATE BINARY


def test_a_silent_module_at_the_install_is_asked_again_and_the_change_completes(modem_runner: CaseRunner,
                                                                               modem_probe: Any) -> None:
    case, record = modem_runner.run(point(modem_probe, 12, "modem", "silence"))
    assert case.outcome == RECOVERED, case.detail
    assert case.credential == "new MCIM"
    timeouts = [e for st in record.steps if st.number == 12 for e in st.events
                if e.get("device") == "modem" and e.get("status") == "TIMEOUT"]
    assert len(timeouts) == 1


def test_a_module_restart_during_the_discard_keeps_the_old_mcim_whole(modem_runner: CaseRunner,
                                                                     modem_probe: Any) -> None:
    # the restart resets the card: the write sent again finds no EF selected and no ADM1 verified;
    # the card's write is transactional, so the old MCIM stays whole and attaches
    case, _ = modem_runner.run(point(modem_probe, 8, "modem", "reset"))
    assert case.outcome == FAILED_CLEANLY and case.failed_step == 8, case.detail
    assert case.credential == "old MCIM"
    assert next(c for c in case.checks if c.name == "a real attach with it").passed


def test_no_carrier_at_the_install_falls_back_to_the_initial_access_credential(modem_runner: CaseRunner,
                                                                              modem_probe: Any) -> None:
    case, _ = modem_runner.run(point(modem_probe, 12, "modem", "no-carrier"))
    assert case.outcome == FAILED_CLEANLY and case.failed_step == 12, case.detail
    assert "NO CARRIER" in case.detail and case.credential == "initial-access"
