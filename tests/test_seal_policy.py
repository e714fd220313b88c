"""Issue 9 §4, second bullet: the MCIM key must not unseal for any local process.

Today the sealed MCIM key's policy is PolicyPCR(23) + PolicyCommandCode(Unseal). PCR 23 is
resettable at locality 0 (PC Client PTP), so any process on the M2ME can reset it, replay the
event log and unseal with plain tpm2-tools. This test runs that attack against the swtpm of a
provisioned M2ME. It is marked xfail(strict) until the seal is bound to the validated boot PCRs
and to the TRE agent's own authorisation: then it XPASSes, fails as strict, and the marker goes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mcim_hil.bench import load_bench
from mcim_hil.m2me.tre import MCIM_HANDLE
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.record import Record
from mcim_hil.session import Session, SessionOptions

TOOLS = ("tpm2_startauthsession", "tpm2_policypcr", "tpm2_policycommandcode", "tpm2_unseal",
         "tpm2_pcrreset", "tpm2_pcrextend", "tpm2_flushcontext")
needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason="tpm2-tools is not installed (scripts/setup.sh installs it)")


def _tool(tcti: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TPM2TOOLS_TCTI=tcti, TSS2_LOG="all+NONE")
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def _unseal_with_a_plain_policy_session(tcti: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """What any local process can run: PolicyPCR(23, current) + PolicyCommandCode(Unseal), Unseal."""
    _tool(tcti, "tpm2_startauthsession", "--policy-session", "-S", "session.ctx", cwd=cwd).check_returncode()
    try:
        _tool(tcti, "tpm2_policypcr", "-S", "session.ctx", "-l", "sha256:23", cwd=cwd).check_returncode()
        _tool(tcti, "tpm2_policycommandcode", "-S", "session.ctx", "TPM2_CC_Unseal", cwd=cwd).check_returncode()
        return _tool(tcti, "tpm2_unseal", "-c", f"0x{MCIM_HANDLE:08x}", "-p", "session:session.ctx",
                     "-o", "stolen.bin", cwd=cwd)
    finally:
        _tool(tcti, "tpm2_flushcontext", "session.ctx", cwd=cwd)


@needs_tools
@pytest.mark.xfail(strict=True, reason="issue 9 §4: the MCIM key is still sealed under PCR 23 alone")
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
        leaked = (tmp_path / "stolen.bin").read_bytes() if (tmp_path / "stolen.bin").exists() else b""
        (tmp_path / "stolen.bin").unlink(missing_ok=True)
    assert stolen.returncode != 0 and not leaked, f"tpm2_unseal gave {len(leaked)} bytes of the MCIM key"
