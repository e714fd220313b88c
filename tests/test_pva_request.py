"""Seed 004, 3rd change, step 8 with the topology option "the SHO requests the RO to request the
PVA" (topology.sho_requests_pva_via_ro): the trace shows SHO -> RO -> PVA and back."""

from __future__ import annotations

import pytest

from mcim_hil.bench import load_bench
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.session import Session

VIA_RO = pytest.mark.session_options(air="relayed", network={"sho_requests_pva_via_ro": True})


def _step8(s: Session) -> list[dict]:
    return [e for st in s.record.steps if st.number == 8 for e in st.events if e["type"] == "message"]


@VIA_RO
def test_the_sho_requests_the_ro_to_request_the_pva_at_step_8(m2me: Session) -> None:
    s = m2me
    outcome = run_procedure(PROCEDURES["initial-ivf"], s, s.record)
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    row = {r.number: r for r in outcome.rows}[8]
    relay = s.network.extra["pva_request"]
    assert f"requested the RO ({relay.address}) to request {s.network.pva.address}" in row.detail
    requests = [(e["sender"], e["recipient"], e["kind"]) for e in _step8(s) if e["direction"] == "request"]
    sho, pva = s.network.sho.address, s.network.pva.address
    for kind in ("ChallengeRequest", "ValidationRequest"):
        assert (sho, relay.address, kind) in requests and (relay.address, pva, kind) in requests
        assert (sho, pva, kind) not in requests
    # the PVA answered the RO, which it records as the requester
    assert {v["requester"] for v in s.network.pva.validations(s.m2me.platform_id)} == {relay.address}


@pytest.mark.session_options(air="relayed")
def test_without_the_option_the_sho_asks_the_pva_itself(m2me: Session) -> None:
    s = m2me
    assert run_procedure(PROCEDURES["initial-ivf"], s, s.record).passed
    assert "pva_request" not in s.network.extra
    sho, pva = s.network.sho.address, s.network.pva.address
    assert (sho, pva, "ValidationRequest") in [(e["sender"], e["recipient"], e["kind"]) for e in _step8(s)]


def test_the_option_is_a_bench_file_topology_key(tmp_path) -> None:
    from pathlib import Path
    lab = Path(__file__).resolve().parent.parent / "lab_config"
    text = (lab / "emulated.yaml").read_text().replace("emulated-secrets/", f"{lab}/emulated-secrets/")
    path = tmp_path / "bench.yaml"
    path.write_text(text.replace("  vno_is_sho: false", "  vno_is_sho: false\n  sho_requests_pva_via_ro: true"))
    bench = load_bench(path)
    assert bench.topology.sho_requests_pva_via_ro
    assert bench.topology.network_options()["sho_requests_pva_via_ro"] is True
