"""Issue 9 §4: every artifact of every procedure is scanned for every secret of its run, raw and
as hex in both cases, and holds none.

The secrets are taken where they are made, not from the record: the network's credentials (CCIF,
SHOs), the credential the TRE is manufactured with, the TRE's unseal authority value, every MCIM the SHOs seal and the fresh key each is sealed under (a spy that calls the real
sealing function), every initial-access credential the DPF seals for the TRE, ADM1 and PIN1 of the
bench, and the session keys (RES, CK, IK, Kc) recomputed with Milenage for every AKA of the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import mcim_hil.m2me.tre as tre_module
import mcim_hil.network.mcim as mcim_module
import mcim_hil.network.ro.dpf as dpf_module
import mcim_hil.network.sho as sho_module
from report_support import leaks, run_and_write
from secrets_support import session_keys_of

PROCEDURES = [("initial", "relayed"), ("initial", "module"), ("initial-ivf", "relayed"),
              ("change-sho", "relayed"), ("pristine", "relayed"), ("renew-access-credential", "relayed"),
              ("firmware-update-change-sho", "relayed")]


class Made:
    """The secrets the network made during a run, by a name the scan reports."""

    def __init__(self) -> None:
        self.secrets: dict[str, bytes] = {}

    def add(self, what: str, **values: bytes) -> None:
        n = sum(1 for name in self.secrets if name.startswith(what)) // max(len(values), 1)
        for field, value in values.items():
            self.secrets[f"{what} {n} {field}"] = value


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Made:
    made = Made()
    real_seal_for_tpm, real_seal_mcim, real_seal_for_tre = \
        mcim_module.seal_for_tpm, sho_module.seal_mcim, dpf_module.seal_for_tre
    real_manufacture = tre_module.TrustedEnvironment.seal_access_credential
    real_authority = tre_module.create_unseal_authority

    def seal_for_tpm(secret: bytes, *args: Any, **kwargs: Any) -> Any:
        made.add("MCIM key", key=secret)
        return real_seal_for_tpm(secret, *args, **kwargs)

    def seal_mcim(mcim: Any, *args: Any, **kwargs: Any) -> Any:
        made.add("issued MCIM", K=mcim.k, OPc=mcim.opc)
        return real_seal_mcim(mcim, *args, **kwargs)

    def seal_for_tre(credential: Any, *args: Any, **kwargs: Any) -> Any:
        made.add("access credential", K=credential.k, OPc=credential.opc)
        return real_seal_for_tre(credential, *args, **kwargs)

    def manufacture(tre: Any, credential: Any, *args: Any, **kwargs: Any) -> Any:
        made.add("manufactured credential", K=credential.k, OPc=credential.opc)
        return real_manufacture(tre, credential, *args, **kwargs)

    def create_unseal_authority(*args: Any, **kwargs: Any) -> Any:
        authority = real_authority(*args, **kwargs)
        made.add("TRE unseal authority", value=authority.auth_value)   # its authValue (issue 9)
        return authority

    monkeypatch.setattr(tre_module.TrustedEnvironment, "seal_access_credential", manufacture)
    monkeypatch.setattr(tre_module, "create_unseal_authority", create_unseal_authority)
    monkeypatch.setattr(mcim_module, "seal_for_tpm", seal_for_tpm)
    monkeypatch.setattr(sho_module, "seal_mcim", seal_mcim)
    monkeypatch.setattr(dpf_module, "seal_for_tre", seal_for_tre)
    return made


@pytest.mark.parametrize(("procedure", "air"), PROCEDURES, ids=[f"{p}-{a}" for p, a in PROCEDURES])
def test_no_artifact_of_any_procedure_holds_any_secret(tmp_path: Path, made: Made, procedure: str,
                                                       air: str) -> None:
    run = run_and_write(tmp_path, air=air, procedure=procedure)
    assert run.outcome.passed, [(r.number, r.detail) for r in run.outcome.rows if r.verdict != "passed"]
    run.secrets.update(made.secrets)
    assert any(name.startswith("MCIM key") for name in run.secrets)
    assert any(name.startswith("TRE unseal authority") for name in run.secrets)
    assert {"PCID K", "PCID OPc", "ADM1", "PIN1"} <= set(run.secrets)
    keys = session_keys_of(run)
    attaches = sum(1 for m in run.run_json_messages() if m["kind"] == "AuthenticationRequest")
    assert attaches >= 2 and len(keys) == 4 * attaches      # every AKA's keys found, none guessed
    files = sorted(run.out_dir.iterdir())
    assert {f.name for f in files} >= {"run.json", "apdu.pcap", "at.log", "tpm.log", "sequence.txt", "report.html"}
    found = [leak for f in files for leak in leaks(f, run.secrets | keys)]
    assert found == []
