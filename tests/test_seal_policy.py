"""Issue 9 §4, second bullet: the MCIM key must not unseal for any local process.

The sealed MCIM key's policy was PolicyPCR(23) + PolicyCommandCode(Unseal). PCR 23 is
resettable at locality 0 (PC Client PTP), so any process on the M2ME could reset it, replay the
event log and unseal with plain tpm2-tools; the PCID credential's PolicySecret(owner) opened to
anyone with the (empty) owner auth. Both now also need PolicySecret on the TRE's unseal
authority, an object only the TRE agent holds the authValue of. These tests run the attacks
with plain tpm2-tools against the swtpm of a manufactured / provisioned M2ME.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mcim_hil.bench import BenchFileError, load_bench
from mcim_hil.m2me.tre import ACCESS_CREDENTIAL_HANDLE, MCIM_HANDLE
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.record import Record
from mcim_hil.session import Session, SessionOptions

TOOLS = ("tpm2_startauthsession", "tpm2_policypcr", "tpm2_policycommandcode", "tpm2_unseal",
         "tpm2_pcrreset", "tpm2_pcrextend", "tpm2_flushcontext", "tpm2_policysecret", "tpm2_createprimary")
needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason="tpm2-tools is not installed (scripts/setup.sh installs it)")


def _tool(tcti: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TPM2TOOLS_TCTI=tcti, TSS2_LOG="all+NONE")
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def _unseal_with_a_plain_policy_session(tcti: str, cwd: Path, handle: int = MCIM_HANDLE, *, pcrs: bool = True,
                                        secret: tuple[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """What any local process can run: [PolicyPCR(23, current)] [+ PolicySecret(object, auth)] +
    PolicyCommandCode(Unseal), Unseal of the object at ``handle`` into stolen.bin."""
    _tool(tcti, "tpm2_startauthsession", "--policy-session", "-S", "session.ctx", cwd=cwd).check_returncode()
    try:
        if pcrs:
            _tool(tcti, "tpm2_policypcr", "-S", "session.ctx", "-l", "sha256:23", cwd=cwd).check_returncode()
        if secret is not None:
            obj, auth = secret
            _tool(tcti, "tpm2_policysecret", "-S", "session.ctx", "-c", obj, *([auth] if auth else []),
                  cwd=cwd).check_returncode()
        _tool(tcti, "tpm2_policycommandcode", "-S", "session.ctx", "TPM2_CC_Unseal", cwd=cwd).check_returncode()
        return _tool(tcti, "tpm2_unseal", "-c", f"0x{handle:08x}", "-p", "session:session.ctx",
                     "-o", "stolen.bin", cwd=cwd)
    finally:
        _tool(tcti, "tpm2_flushcontext", "session.ctx", cwd=cwd)


def _stolen(cwd: Path) -> bytes:
    path = cwd / "stolen.bin"
    leaked = path.read_bytes() if path.exists() else b""
    path.unlink(missing_ok=True)
    return leaked


def _a_primary_of_its_own(tcti: str, cwd: Path) -> tuple[str, str]:
    """An object whose authValue the attacker chose: PolicySecret on it succeeds, and names it."""
    _tool(tcti, "tpm2_createprimary", "-C", "o", "-p", "chosen-by-the-attacker", "-c", "mine.ctx",
          cwd=cwd).check_returncode()
    return "mine.ctx", "chosen-by-the-attacker"


@needs_tools
def test_a_local_process_cannot_reset_pcr23_replay_and_unseal_the_mcim_key(tmp_path: Path) -> None:
    bench = load_bench(None)
    with Session(bench, SessionOptions(air="relayed"), Record()) as session:
        if session.emulated is None:
            pytest.skip("the attack is run against the emulated bench's swtpm only")
        outcome = run_procedure(PROCEDURES["initial"], session, session.record)
        assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
        log = list(session.tre.event_log)
        tpm = session.devices.tpm
        tcti = tpm.tcti
        tpm.close()                  # swtpm serves one client: hand it to the attacker's tools
        # a rogue component changes PCR 23: the sealed policy no longer matches ...
        _tool(tcti, "tpm2_pcrextend", f"23:sha256={'ab' * 32}", cwd=tmp_path).check_returncode()
        assert _unseal_with_a_plain_policy_session(tcti, tmp_path).returncode != 0
        # ... so it resets PCR 23 at locality 0 and replays the event log the M2ME measured
        _tool(tcti, "tpm2_pcrreset", "23", cwd=tmp_path).check_returncode()
        for entry in log:
            _tool(tcti, "tpm2_pcrextend", f"{entry.pcr}:sha256={entry.digest.hex()}",
                  cwd=tmp_path).check_returncode()
        stolen = _unseal_with_a_plain_policy_session(tcti, tmp_path)
        leaked = _stolen(tmp_path)
        assert stolen.returncode != 0 and not leaked, f"tpm2_unseal gave {len(leaked)} bytes of the MCIM key"
        # ... and with PolicySecret on an object of its own (its authValue its choice): another policy
        mine = _a_primary_of_its_own(tcti, tmp_path)
        stolen = _unseal_with_a_plain_policy_session(tcti, tmp_path, secret=mine)
        leaked = _stolen(tmp_path)
        _tool(tcti, "tpm2_flushcontext", "mine.ctx", cwd=tmp_path)
    assert stolen.returncode != 0 and not leaked, f"tpm2_unseal gave {len(leaked)} bytes of the MCIM key"


@needs_tools
def test_a_local_process_cannot_unseal_the_pcid_credential(tmp_path: Path) -> None:
    """The initial-access credential at 0x81000A10 unseals in any PCR state (the M2ME must always
    be able to fall back to it), but for the TRE agent only: PolicySecret with the bench TPM's
    empty owner auth, or with an object of one's own, is another policy."""
    bench = load_bench(None)
    with Session(bench, SessionOptions(air="relayed"), Record()) as session:
        if session.emulated is None:
            pytest.skip("the attack is run against the emulated bench's swtpm only")
        assert session.tre.access_credential().pcid == session.m2me.pcid   # the TRE itself can
        session.tre.release()
        tpm = session.devices.tpm
        tcti = tpm.tcti
        tpm.close()                  # swtpm serves one client: hand it to the attacker's tools
        attempts = {}
        attempts["owner"] = _unseal_with_a_plain_policy_session(
            tcti, tmp_path, ACCESS_CREDENTIAL_HANDLE, pcrs=False, secret=("o", ""))
        leaked = _stolen(tmp_path)
        mine = _a_primary_of_its_own(tcti, tmp_path)
        attempts["own object"] = _unseal_with_a_plain_policy_session(
            tcti, tmp_path, ACCESS_CREDENTIAL_HANDLE, pcrs=False, secret=mine)
        leaked += _stolen(tmp_path)
        _tool(tcti, "tpm2_flushcontext", "mine.ctx", cwd=tmp_path)
    assert not leaked, f"tpm2_unseal gave {len(leaked)} bytes of the PCID credential"
    for how, attempt in attempts.items():
        assert attempt.returncode != 0 and "policy" in attempt.stderr.lower(), (how, attempt.stderr)


# -- tpm.seal_pcrs: the PCRs the PVA quotes and the MCIM is sealed to ------------------------------

def _bench_with_tpm_key(tmp_path: Path, line: str, tpm_section: str = "  emulator: swtpm\n") -> Path:
    lab = Path(__file__).resolve().parent.parent / "lab_config"
    text = (lab / "emulated.yaml").read_text().replace("emulated-secrets/", f"{lab}/emulated-secrets/")
    text = text.replace("tpm:\n  emulator: swtpm\n", "tpm:\n" + tpm_section + line)
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    return path


def test_seal_pcrs_is_a_bench_file_key_checked_at_load(tmp_path: Path) -> None:
    assert load_bench(_bench_with_tpm_key(tmp_path, "")).tpm.seal_pcrs == (23,)           # swtpm
    hardware = _bench_with_tpm_key(tmp_path, "", '  tcti: "device:/dev/tpmrm0"\n')
    assert load_bench(hardware, probe=False).tpm.seal_pcrs == (0, 1, 2, 3, 4, 5, 6, 7, 23)
    assert load_bench(_bench_with_tpm_key(tmp_path, "  seal_pcrs: [23, 7, 0]\n")).tpm.seal_pcrs == (0, 7, 23)
    for value, reason in (("[0, 23, 23]", "PCR 23 named twice"),
                          ("[23, 24]", "expected a list of PCR indices 0..23"),
                          ("[23, true]", "expected a list of PCR indices 0..23"),
                          ("[]", "expected a list of PCR indices 0..23"),
                          ("23", "expected list, got int"),
                          ("[0, 7]", "must include PCR 23")):
        path = _bench_with_tpm_key(tmp_path, f"  seal_pcrs: {value}\n")
        with pytest.raises(BenchFileError) as refused:
            load_bench(path)
        assert str(refused.value).startswith(f"{path}: tpm.seal_pcrs: ")   # one line: file and key
        assert reason in str(refused.value) and "\n" not in str(refused.value)


def test_the_cli_names_the_file_and_key_of_bad_seal_pcrs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mcim_hil.cli import main
    path = _bench_with_tpm_key(tmp_path, "  seal_pcrs: [23, 99]\n")
    assert main(["bench", "check", "--bench", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "tpm.seal_pcrs" in err[0] and "Traceback" not in err[0]


def test_the_mcim_is_sealed_to_every_pcr_the_pva_validated(tmp_path: Path) -> None:
    """seal_pcrs 0-7 + 23 (a hardware TPM's default) on swtpm: the PVA quotes them all, the SHO seals
    to them all, and a changed boot PCR (extendable by anyone, resettable by no one) keeps the MCIM
    sealed even for the TRE."""
    from mcim_hil.drivers.errors import TpmError
    bench = load_bench(_bench_with_tpm_key(tmp_path, "  seal_pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 23]\n"))
    with Session(bench, SessionOptions(air="relayed"), Record()) as session:
        outcome = run_procedure(PROCEDURES["initial"], session, session.record)
        assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
        selection = bench.tpm.seal_pcrs
        assert tuple(session.network.pva.pcr_selection) == selection
        validation = session.network.sho.db.get("validations", pcid=session.m2me.pcid)
        assert sorted(int(p) for p in validation["pcr_values"]) == list(selection)
        assert session.tre.unseal_mcim(selection)
        session.tre.tpm.pcr_extend(0, bytes(32))         # another boot than the validated one
        with pytest.raises(TpmError, match="TPM2_Unseal.*POLICY"):
            session.tre.unseal_mcim(selection)


def test_a_tpm_that_keeps_its_state_re_manufactures_cleanly_run_after_run(tmp_path: Path) -> None:
    """tpm.state_dir (as a hardware TPM): the second run's TRE cannot know the first run's authority
    value; manufacture makes a new authority, evicts what was sealed to the old one, and the run
    provisions again."""
    from mcim_hil.m2me.tre import UNSEAL_AUTHORITY_HANDLE
    state = tmp_path / "tpm-state"
    bench = load_bench(_bench_with_tpm_key(tmp_path, f"  state_dir: {state}\n"))
    names = []
    for run in (1, 2):
        with Session(bench, SessionOptions(air="relayed"), Record()) as session:
            if run == 2:   # the first run's MCIM was evicted at manufacture: nothing sealed to the old authority
                assert MCIM_HANDLE not in session.devices.tpm.list_persistent()
            names.append(session.tre.unseal_authority_name())
            outcome = run_procedure(PROCEDURES["initial"], session, session.record)
            assert outcome.passed, (run, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"])
            assert {MCIM_HANDLE, ACCESS_CREDENTIAL_HANDLE, UNSEAL_AUTHORITY_HANDLE} <= set(
                session.devices.tpm.list_persistent())
    assert names[0] != names[1]
