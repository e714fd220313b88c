"""Seed 004, TR 33.812 5.1.3.8.4.3 end to end on the emulated bench: the M2ME, provisioned by the
old SHO, goes back to the pristine state (its PCID credential from the TRE onto the card), attaches
again with the PCID and is provisioned by the new SHO; and after a failed change of SHO, the same
procedure completes the change."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mcim_hil.m2me.tre import ACCESS_CREDENTIAL_HANDLE, MCIM_HANDLE
from mcim_hil.procedures import PROCEDURES, RunOutcome, run_procedure
from mcim_hil.session import Session
from report_support import leaks, run_and_write

PRISTINE = PROCEDURES["pristine"]
CHANGE = PROCEDURES["change-sho"]
STEPS = ["before", *range(1, 16), "after"]
RELAYED = pytest.mark.session_options(air="relayed")


def passed(outcome: RunOutcome) -> RunOutcome:
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    return outcome


def messages(s: Session, step: int | str) -> list[dict]:
    return [e for st in s.record.steps if st.number == step for e in st.events if e["type"] == "message"]


def check_with_new_sho(s: Session, old_imsi: str) -> None:
    net, pcid = s.network, s.m2me.pcid
    new_imsi = s.m2me.identity_on_card()
    assert new_imsi.startswith(net.nsho.plmn) and new_imsi == net.nsho.imsi_of(pcid)
    assert net.nsho.subscriber(new_imsi)["state"] == "active"
    assert net.sho.subscriber(old_imsi)["state"] == "discarded"
    assert s.m2me.attached_as == new_imsi
    after = messages(s, "after")
    assert any(e["kind"] == "AuthDataRequest" and e["recipient"] == net.addresses.nsho for e in after)
    rejects = [e for e in after if e["kind"] == "AttachReject"]
    assert rejects and rejects[-1]["fields"]["imsi"] == old_imsi and rejects[-1]["fields"]["cause"] == 2
    tpm = s.devices.tpm
    assert MCIM_HANDLE in tpm.list_persistent() and ACCESS_CREDENTIAL_HANDLE in tpm.list_persistent()


@RELAYED
def test_pristine_passes_every_step(m2me: Session) -> None:
    s = m2me
    seen: dict[str, object] = {}

    def after_3(s: Session) -> None:
        seen["card"] = s.m2me.identity_on_card()
        seen["mcim"] = MCIM_HANDLE in s.devices.tpm.list_persistent()
        seen["attached"] = s.m2me.attached_as

    outcome = passed(run_procedure(PRISTINE.after_step(3, after_3), s, s.record))
    assert [r.number for r in outcome.rows] == STEPS
    net, pcid = s.network, s.m2me.pcid
    old_imsi = net.sho.imsi_of(pcid)
    # step 3: MCIM object gone, PCID on the card, detached; the old SHO was told
    assert seen == {"card": pcid, "mcim": False, "attached": None}
    assert any(e["kind"] == "CredentialsDiscarded" and e["recipient"] == net.addresses.sho for e in messages(s, 3))
    # steps 4-6: a real attach with the PCID, the AKA vector from the RO's ICF, the card answering
    assert any(e["kind"] == "AttachRequest" for e in messages(s, 4))
    five = [st for st in s.record.steps if st.number == 5][0].events
    assert any(e.get("kind") == "AuthDataRequest" and e.get("recipient") == net.addresses.icf for e in five)
    assert any((e.get("command") or "").startswith("AUTHENTICATE") for e in five)
    # step 8: the DRF led the M2ME to the new SHO; 9-11: PVA authenticity + the IVF's integrity result
    assert any(e["kind"] == "BootstrapMessage" and e["fields"]["sho_address"] == net.addresses.nsho
               for e in messages(s, 8))
    assert any(e["kind"] == "IntegrityInquiry" for e in messages(s, 9))
    # step 12: new SHO -> DRF -> DPF
    hops = [(e["kind"], e["sender"], e["recipient"]) for e in messages(s, 12)
            if e["kind"].startswith("Drf")]
    assert hops == [("DrfAuthorisationRequest", net.addresses.nsho, net.addresses.drf),
                    ("DrfProvisioningAuthorisation", net.addresses.drf, net.addresses.dpf)]
    check_with_new_sho(s, old_imsi)


@RELAYED
def test_drf_leading_to_another_sho_is_refused_by_the_m2me_at_step_8(m2me: Session) -> None:
    s = m2me

    def old_sho_registers_again(s: Session) -> None:
        s.network.sho.register_subscription_at_ro(s.m2me.pcid)

    outcome = run_procedure(PRISTINE.after_step(7, old_sho_registers_again), s, s.record)
    assert outcome.failed_step is not None and outcome.failed_step.number == 8
    assert "the subscriber instructed" in outcome.failed_step.detail
    assert s.m2me.identity_on_card() == s.m2me.pcid   # still on its initial-access credential


@RELAYED
def test_pristine_completes_a_change_of_sho_whose_install_failed(m2me: Session) -> None:
    s = m2me

    def duplicate_corrupted(s: Session) -> None:
        pending = s.m2me.pending
        dup = pending.sealed.duplicate
        s.m2me.pending = replace(pending, sealed=replace(pending.sealed, duplicate=dup[:10] + bytes([dup[10] ^ 1]) + dup[11:]))

    failed = run_procedure(CHANGE.after_step(8, duplicate_corrupted), s, s.record)
    assert failed.failed_step is not None and failed.failed_step.number == 12
    assert s.m2me.attached_as == s.m2me.pcid         # recovered on the PCID
    old_imsi = s.network.sho.imsi_of(s.m2me.pcid)
    # the same session, the same record: pristine's 15 steps (no second initial provisioning)
    first = len(s.record.steps)
    resumed = replace(PRISTINE, steps=PRISTINE.steps[1:])
    outcome = passed(run_procedure(resumed, s, s.record))
    assert "already discarded" in outcome.rows[2].detail
    for st in s.record.steps[:first]:
        st.number = f"change.{st.number}"    # so messages(s, "after") sees pristine's own
    check_with_new_sho(s, old_imsi)


@pytest.mark.session_options(air="module")
def test_pristine_with_the_module_attach(m2me: Session) -> None:
    s = m2me
    if s.emulated is None or s.emulated.modem_emulator is None:
        pytest.skip("the module's own attach needs the emulated modem (its radio reaches this network)")
    outcome = passed(run_procedure(PRISTINE, s, s.record))
    assert "module attach" in outcome.rows[4].detail
    attach = [e for st in s.record.steps if st.number in (4, 5, 6) for e in st.events]
    assert any(e.get("command") == "AT+CGATT=1" for e in attach)
    assert any(e.get("kind") == "AuthenticationResponse" for e in attach)
    check_with_new_sho(s, s.network.sho.imsi_of(s.m2me.pcid))


@pytest.mark.parametrize("procedure", ["pristine", "change-sho-preprovisioned", "renew-access-credential"])
def test_no_artifact_of_the_new_procedures_holds_a_secret(tmp_path: Path, procedure: str) -> None:
    run = run_and_write(tmp_path, air="relayed", procedure=procedure)
    assert run.outcome.passed, [(r.number, r.detail) for r in run.outcome.rows if r.verdict != "passed"]
    assert {"PCID K", "PCID OPc", "MCIM K", "MCIM OPc"} <= set(run.secrets)
    found = [leak for f in sorted(run.out_dir.iterdir()) for leak in leaks(f, run.secrets)]
    assert found == []
