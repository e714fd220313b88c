"""Seed 004, 4th change (TR 33.812 5.1.3.8.4.2) end to end on the emulated bench: the M2ME,
provisioned by the old SHO and attached with its MCIM, is re-provisioned by the new SHO over that
connectivity; the new SHO takes the integrity result from the IVF (or, when the IVF has none
that stands, has the PVA validate integrity again)."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import pytest

from mcim_hil.drivers.sja2 import Sja2
from mcim_hil.m2me.tre import ACCESS_CREDENTIAL_HANDLE, MCIM_HANDLE
from mcim_hil.network.bus import Refused
from mcim_hil.network.messages import ManagementSessionOpen, ReprovisioningInstruction
from mcim_hil.network.subscriber import M2meSubscriber
from mcim_hil.network.sho import VIA_IVF, VIA_PVA
from mcim_hil.procedures import PROCEDURES, Procedure, RunOutcome, run_procedure
from mcim_hil.session import Session

CHANGE = PROCEDURES["change-sho"]
STEPS = ["before", *range(1, 15), "after"]
RELAYED = pytest.mark.session_options(air="relayed")


def run(s: Session, procedure: Procedure = CHANGE) -> RunOutcome:
    outcome = run_procedure(procedure, s, s.record)
    assert [r.number for r in outcome.rows] == STEPS
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    return outcome


def mcim_object(s: Session) -> bytes | None:
    """The public area of the persisted MCIM object (it differs per sealed MCIM), or None."""
    tpm = s.devices.tpm
    return tpm.read_public(MCIM_HANDLE).marshal() if MCIM_HANDLE in tpm.list_persistent() else None


def integrity_checks_at_pva(s: Session) -> list[int]:
    return [v["integrity_checked"] for v in s.network.pva.validations(s.m2me.platform_id)]


def check_changed(s: Session) -> None:
    """What an engineer checks after the change: new IMSI on the card, in the new SHO's PLMN, active
    there; the old one discarded at the old SHO and refused; the DRF leads to the new SHO."""
    net, pcid = s.network, s.m2me.pcid
    assert net.nsho is not None
    new_imsi = s.m2me.identity_on_card()
    old_imsi = net.sho.imsi_of(pcid)
    assert new_imsi.startswith(net.nsho.plmn) and new_imsi == net.nsho.imsi_of(pcid)
    assert old_imsi is not None and old_imsi.startswith(net.sho.plmn)
    assert net.nsho.subscriber(new_imsi)["state"] == "active"
    assert net.sho.subscriber(old_imsi)["state"] == "discarded"
    assert net.ro.drf.registry_entry(pcid)["sho_address"] == net.addresses.nsho
    assert s.m2me.attached_as == new_imsi and s.m2me.address
    # the "after" attach went through the new SHO's AuC; the probe of the old IMSI got "unknown"
    after = [e for st in s.record.steps if st.number == "after" for e in st.events if e["type"] == "message"]
    assert any(e["kind"] == "AuthDataRequest" and e["recipient"] == net.addresses.nsho for e in after)
    rejects = [e for e in after if e["kind"] == "AttachReject"]
    assert rejects and rejects[-1]["fields"]["imsi"] == old_imsi and rejects[-1]["fields"]["cause"] == 2


# -- the change passes --------------------------------------------------------------------------------

@RELAYED
def test_change_of_sho_passes_every_step_with_the_ivf_result(m2me: Session) -> None:
    s = m2me
    seen: dict[str, bytes | None] = {}

    def keep(name: str) -> Callable[[Session], None]:
        return lambda s: seen.__setitem__(name, mcim_object(s))

    procedure = (CHANGE.after_step("before", keep("old")).after_step(8, keep("after 8"))
                 .after_step(12, keep("after 12")))
    outcome = run(s, procedure)
    # the old MCIM object was in the TPM, gone after step 8; a new one is there after step 12
    assert seen["old"] is not None and seen["after 8"] is None
    assert seen["after 12"] is not None and seen["after 12"] != seen["old"]
    assert "evicted from the TPM" in outcome.rows[8].detail
    # steps 3-5: the IVF's integrity result was used; the PVA checked authenticity only
    assert s.record.meta["change_of_sho_integrity"]["source"] == VIA_IVF
    assert integrity_checks_at_pva(s) == [1, 0]  # the initial validation, then the new SHO's
    requests = [m for m in s.record.messages() if m["kind"] == "ValidationRequest"]
    assert [m["fields"]["check_integrity"] for m in requests] == [True, False]
    assert "IVF provided the integrity result" in outcome.rows[4].detail
    check_changed(s)
    # the initial provisioning's own steps are in the same record, under "before."
    numbers = [st.number for st in s.record.steps]
    assert numbers[:2] == ["before", "before.1"] and "before.after" in numbers
    assert numbers[-15:] == STEPS[1:]


@pytest.mark.session_options(air="module")
def test_change_of_sho_with_the_module_attach(m2me: Session) -> None:
    s = m2me
    if s.emulated is None or s.emulated.modem_emulator is None:
        pytest.skip("the module's own attach needs the emulated modem (its radio reaches this network)")
    run(s)
    assert s.record.meta["change_of_sho_integrity"]["source"] == VIA_IVF
    assert "AuthenticationResponse" in [e.get("kind") for st in s.record.steps if st.number == "after"
                                        for e in st.events]
    check_changed(s)


# -- no IVF result that stands: the PVA validates integrity again (004 c4 s3 NOTE) ------------------------

@pytest.mark.session_options(air="relayed", network={"ivf_lifetime_s": 0.0})
def test_expired_ivf_result_makes_the_pva_validate_integrity(m2me: Session) -> None:
    s = m2me
    outcome = run(s)
    used = s.record.meta["change_of_sho_integrity"]
    assert used["source"] == VIA_PVA and "expired" in used["fallback_reason"]
    assert "IVF result not used (the integrity result has expired)" in outcome.rows[4].detail
    # the new SHO asked twice: authenticity with the IVF's result in mind, then integrity too
    assert integrity_checks_at_pva(s)[-1] == 1
    inquiry = [m for m in s.record.messages() if m["kind"] == "IntegrityInquiryResponse"][-1]
    assert inquiry["fields"]["available"] is False
    check_changed(s)


@RELAYED
def test_missing_ivf_result_makes_the_pva_validate_integrity(m2me: Session) -> None:
    s = m2me

    def ivf_forgets(s: Session) -> None:
        assert s.network.ivf.db.delete("results", platform_id=s.m2me.platform_id)

    outcome = run(s, CHANGE.after_step("before", ivf_forgets))
    used = s.record.meta["change_of_sho_integrity"]
    assert used["source"] == VIA_PVA and used["fallback_reason"] == "no integrity result for this platform"
    assert "the PVA validated authenticity and integrity" in outcome.rows[4].detail
    assert integrity_checks_at_pva(s) == [1, 1]
    check_changed(s)


# -- the new MCIM cannot be installed: the seed discards the old one first (s8 before s12), and the
# -- M2ME falls back to its initial-access credential from the TRE --------------------------------------

def _pcr_changes(s: Session) -> None:
    # a component measured after the validation: the new MCIM is sealed to the old PCR state
    s.devices.tpm.pcr_extend(s.tre.pcr, bytes(32))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _duplicate_corrupted(s: Session) -> None:
    # the downloaded object corrupted in the M2ME's storage between s7 and s12
    pending = s.m2me.pending
    s.m2me.pending = replace(pending, sealed=replace(pending.sealed, duplicate=_flip(pending.sealed.duplicate, 10)))


def _envelope_corrupted(s: Session) -> None:
    pending = s.m2me.pending
    s.m2me.pending = replace(pending, mcim_envelope=_flip(pending.mcim_envelope, 20))


INSTALL_FAILURES = {
    "unseal refused (PCR state changed)": (_pcr_changes, "TRE refused the sealed MCIM"),
    "TPM import refused (corrupt duplicate)": (_duplicate_corrupted, "TPM2_Import"),
    "corrupt object (MCIM envelope)": (_envelope_corrupted, "MCIM envelope does not authenticate"),
}


@RELAYED
@pytest.mark.parametrize("failure", list(INSTALL_FAILURES))
def test_install_failing_at_step_12_falls_back_to_the_initial_access_credential(m2me: Session,
                                                                                failure: str) -> None:
    s = m2me
    tamper, cause = INSTALL_FAILURES[failure]
    outcome = run_procedure(CHANGE.after_step(8, tamper), s, s.record)
    verdicts = {r.number: r.verdict for r in outcome.rows}
    rows = {r.number: r for r in outcome.rows}
    assert outcome.failed_step is not None and outcome.failed_step.number == 12
    assert cause in rows[12].detail and "fell back to the initial-access credential" in rows[12].detail
    assert rows[12].detail.count("MCIM not installed") <= 1, rows[12].detail   # said once
    assert verdicts[13] == "failed" and "fell back to its initial-access credential" in rows[13].detail
    assert verdicts[14] == "skipped"
    # the recovery: an attach with the PCID, through the RO's ICF
    assert verdicts["after"] == "passed" and "recovered: attached with the PCID" in rows["after"].detail
    net, pcid = s.network, s.m2me.pcid
    after = [e for st in s.record.steps if st.number == "after" for e in st.events if e["type"] == "message"]
    assert any(e["kind"] == "AuthDataRequest" and e["recipient"] == net.addresses.icf for e in after)
    assert s.m2me.attached_as == pcid and s.m2me.address
    # what the M2ME is left with: no MCIM object in the TPM, the initial-access credential still in
    # the TRE and on the card (keys read back equal), the old IMSI no longer served by the old SHO
    tpm = s.devices.tpm
    assert MCIM_HANDLE not in tpm.list_persistent() and ACCESS_CREDENTIAL_HANDLE in tpm.list_persistent()
    assert s.m2me.installed is None
    assert s.m2me.identity_on_card() == pcid
    credential = s.tre.access_credential()
    keys = Sja2(s.devices.uicc).read_keys(adm1=s.bench.uicc.adm1.resolve_key()).usim
    assert credential.pcid == pcid and keys.k == credential.k and keys.op_opc == credential.opc
    old_imsi = net.sho.imsi_of(pcid)
    assert net.sho.subscriber(old_imsi)["state"] == "discarded"
    # the failure reached the DPF and the new SHO; its IMSI never became active
    assert net.ro.dpf.status(pcid)["success"] in (0, False)
    assert net.nsho.contract(pcid)["state"] == "provisioning failed"
    assert net.nsho.subscriber(net.nsho.imsi_of(pcid))["state"] == "discarded"


@RELAYED
def test_step_8_overwrites_the_cards_old_keys_and_keeps_the_initial_access_credential(m2me: Session) -> None:
    s = m2me
    seen: dict[str, object] = {}
    adm1 = s.bench.uicc.adm1.resolve_key()

    def keep(name: str) -> Callable[[Session], None]:
        def look(s: Session) -> None:
            keys = Sja2(s.devices.uicc).read_keys(adm1=adm1).usim
            seen[name] = (s.m2me.identity_on_card(), keys.k, keys.op_opc,
                          ACCESS_CREDENTIAL_HANDLE in s.devices.tpm.list_persistent(),
                          s.devices.tpm.read_public(ACCESS_CREDENTIAL_HANDLE).marshal())
        return look

    outcome = run(s, CHANGE.after_step("before", keep("old")).after_step(8, keep("after 8"))
                  .after_step(12, keep("after 12")))
    credential = s.tre.access_credential()
    old, after8, after12 = seen["old"], seen["after 8"], seen["after 12"]
    assert old[0] != s.m2me.pcid and old[1] != credential.k        # the old SHO's MCIM on the card
    assert after8[0] == s.m2me.pcid and after8[1] == credential.k and after8[2] == credential.opc
    assert after12[0] != s.m2me.pcid and after12[1] not in (old[1], credential.k)
    # the initial-access credential's sealed object: the same, untouched by every install and discard
    assert old[3] and after8[3] and after12[3] and old[4] == after8[4] == after12[4]
    assert "K/OPc read back equal" in outcome.rows[8].detail


# -- the subscriber's instruction is authenticated (step 2) ----------------------------------------------

class _Forger:
    """Stands in for the subscriber at step 2 and sends what ``make`` builds from a genuine one."""

    def __init__(self, real: M2meSubscriber, make: Callable[[M2meSubscriber, dict], ReprovisioningInstruction]):
        self.real, self.make, self.address = real, make, real.address

    def instruction(self, **kw: object) -> ReprovisioningInstruction:
        return self.make(self.real, kw)


FORGERIES: dict[str, tuple[Callable[[M2meSubscriber, dict], ReprovisioningInstruction], str]] = {
    "unsigned": (lambda real, kw: replace(real.instruction(**kw), signature=b""), "unsigned instruction"),
    "signed by another key": (lambda real, kw: M2meSubscriber().instruction(**kw),
                              "not signed by the subscriber registered at manufacture"),
    "an attacker's SHO key slipped in": (
        lambda real, kw: replace(real.instruction(**kw), new_sho_verify_key=M2meSubscriber().public_key),
        "not signed by the subscriber registered at manufacture"),
    "for another M2ME": (lambda real, kw: real.instruction(**{**kw, "pcid": "001029999999999"}),
                         "instruction for another M2ME"),
}


@RELAYED
@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_an_instruction_not_from_the_subscriber_is_refused_at_step_2(m2me: Session, forgery: str) -> None:
    s = m2me
    make, reason = FORGERIES[forgery]

    def forger_takes_over(s: Session) -> None:
        s.subscriber = _Forger(s.subscriber, make)

    outcome = run_procedure(CHANGE.after_step(1, forger_takes_over), s, s.record)
    assert outcome.failed_step is not None and outcome.failed_step.number == 2
    assert reason in outcome.failed_step.detail
    # nothing changed on the M2ME: still the old SHO's MCIM, no change in progress
    assert s.m2me.change is None and s.m2me.installed is not None
    assert MCIM_HANDLE in s.devices.tpm.list_persistent()


@RELAYED
def test_a_replayed_instruction_is_refused_at_step_2(m2me: Session) -> None:
    s = m2me
    sent: list[ReprovisioningInstruction] = []

    def replay(real: M2meSubscriber, kw: dict) -> ReprovisioningInstruction:
        return sent[0]

    def recorded_earlier(s: Session) -> None:
        real = s.subscriber
        msg = real.instruction(m2me_address=s.m2me.address, pcid=s.m2me.pcid, new_sho_address=s.network.nsho.address,
                               new_sho_verify_key=s.state["change_ack"].sho_verify_key)
        assert s.network.bus.request(msg).accepted     # the genuine one, seen on the bus
        sent.append(msg)
        s.subscriber = _Forger(real, replay)

    outcome = run_procedure(CHANGE.after_step(1, recorded_earlier), s, s.record)
    assert outcome.failed_step is not None and outcome.failed_step.number == 2
    assert "replayed instruction (nonce already used)" in outcome.failed_step.detail


@RELAYED
@pytest.mark.parametrize("fault", ["delayed", "duplicated"])
def test_a_retransmitted_instruction_gets_its_first_answer_at_step_2(m2me: Session, fault: str) -> None:
    """The answer to step 2's instruction comes too late (or the instruction arrives twice): the
    subscriber's retransmission carries the same nonce; the M2ME answers it as it did the first
    time rather than take it for a replay, and the change completes."""
    s = m2me

    def inject(s: Session) -> None:
        s.network.bus.inject("ReprovisioningInstruction", fault)

    run(s, CHANGE.after_step(1, inject))
    delivered = [e for e in s.record.messages() if e["kind"] == "ReprovisioningInstruction"
                 and e["direction"] == "request"]
    assert len(delivered) == 2
    answers = [e for e in s.record.messages() if e["kind"] == "ReprovisioningAck"]
    assert len(answers) == 2 and all(a["fields"]["accepted"] for a in answers)
    check_changed(s)


@RELAYED
@pytest.mark.parametrize("fault", ["lost", "delayed", "reordered"])
def test_a_validation_result_lost_or_late_is_answered_again_not_refused_as_a_replay(m2me: Session,
                                                                                  fault: str) -> None:
    """Steps 3-5: the PVA's result never reaches the new SHO in time, so the SHO sends its
    ValidationRequest again in the same exchange. Its nonce is spent: validating it anew would
    refuse the M2ME (nonce_fresh). The PVA answers the retransmission with the result it gave,
    validates once, and the change completes (found by the fault matrix at step 5)."""
    s = m2me
    seen: dict[str, int] = {}

    def inject(s: Session) -> None:
        seen.update(s.network.pva.counters())
        s.network.bus.inject("ValidationResultMessage", fault)

    run(s, CHANGE.after_step(2, inject))
    requests = [e for e in s.record.messages() if e["kind"] == "ValidationRequest" and e["direction"] == "request"]
    assert len(requests) >= 2                              # the SHO did send it again
    after = s.network.pva.counters()
    assert after["authenticity_checks"] - seen["authenticity_checks"] == 1   # validated once
    check_changed(s)


@RELAYED
def test_the_dpf_opens_a_session_only_for_the_m2me_the_drf_bootstrapped(m2me: Session) -> None:
    s = m2me
    run(s)
    dpf, pcid = s.network.ro.dpf, s.m2me.pcid
    genuine = s.m2me.bootstrap.bootstrap_token
    assert genuine
    for token in (b"", bytes(16), genuine[:-1] + bytes([genuine[-1] ^ 1])):
        with pytest.raises(Refused, match="not the bootstrap token|has not bootstrapped"):
            s.network.bus.request(ManagementSessionOpen(sender="10.45.0.99", recipient=dpf.address, pcid=pcid,
                                                        m2me_address="10.45.0.99", sho_address=s.network.nsho.address,
                                                        bootstrap_token=token))
    with pytest.raises(Refused, match="not the DPF registered"):
        s.network.bus.request(ManagementSessionOpen(sender="10.45.0.99", recipient=dpf.address,
                                                    pcid="001029999999999", m2me_address="10.45.0.99",
                                                    sho_address=s.network.nsho.address, bootstrap_token=genuine))
    assert dpf.session(pcid)["m2me_address"] == s.m2me.address   # the M2ME's own session stands


# -- the devices fail at step 12: the card refuses a write, the TPM loses power ------------------------

UPDATE_BINARY, SW_MEMORY_PROBLEM = 0xD6, 0x6581     # TS 102 221 10.1.2, 10.2.1.4


def _card_write_fails_once(s: Session) -> None:
    # the first write of the new MCIM onto the card fails (memory problem); the card works again after
    s.emulated.uicc_emulator.fail_command(UPDATE_BINARY, SW_MEMORY_PROBLEM, times=1)


def _power_lost(s: Session) -> None:
    # the M2ME loses power between the discard (s8-s11) and the install: the TPM comes back with its
    # PCRs reset and its transient objects gone; persistent objects (the initial-access credential) stay
    s.emulated.tpm_emulator.power_loss()


def _tpm_clock_made_safe_again(s: Session) -> None:
    """After a power loss the TPM's clockInfo.safe is 0 (its clock may have gone backwards) and
    the PVA refuses the quote, as it should. The TPM sets it again once it writes its clock to NV
    (every 2^22 ms of uptime, TPM 2.0 Part 1 36.6); the lab engineer moves the clock forward past
    that with tpm2_setclock, as on a real bench, rather than wait 70 minutes."""
    import subprocess
    import yaml
    tcti = ["-T", s.devices.tpm.tcti]
    clock = yaml.safe_load(subprocess.run(["tpm2_readclock", *tcti], check=True, capture_output=True,
                                          text=True, timeout=30).stdout)["clock_info"]["clock"]
    subprocess.run(["tpm2_setclock", *tcti, str(clock + (1 << 22) + 1000)], check=True, capture_output=True,
                   timeout=30)


DEVICE_FAILURES = {
    "card write fails": (8, _card_write_fails_once, "6581", None),
    "power lost": (11, _power_lost, "lost power", _tpm_clock_made_safe_again),
}


def _resume_pristine(s: Session) -> RunOutcome:
    """`--procedure pristine` on the same M2ME, after the failed change (no second initial provisioning)."""
    first = len(s.record.steps)
    for st in s.record.steps[:first]:
        st.number = f"change.{st.number}"
    pristine = PROCEDURES["pristine"]
    return run_procedure(replace(pristine, steps=pristine.steps[1:]), s, s.record)


@RELAYED
@pytest.mark.parametrize("failure", list(DEVICE_FAILURES))
def test_a_device_failing_at_step_12_falls_back_and_pristine_completes_the_change(m2me: Session,
                                                                                 failure: str) -> None:
    s = m2me
    after, fault, cause, before_pristine = DEVICE_FAILURES[failure]
    outcome = run_procedure(CHANGE.after_step(after, fault), s, s.record)
    rows = {r.number: r for r in outcome.rows}
    assert outcome.failed_step is not None and outcome.failed_step.number == 12
    assert cause in rows[12].detail and "fell back to the initial-access credential" in rows[12].detail
    assert rows[13].verdict == "failed" and "fell back to its initial-access credential" in rows[13].detail
    assert rows["after"].verdict == "passed" and "recovered: attached with the PCID" in rows["after"].detail
    pcid = s.m2me.pcid
    assert s.m2me.attached_as == pcid and s.m2me.identity_on_card() == pcid
    tpm = s.devices.tpm
    assert MCIM_HANDLE not in tpm.list_persistent() and ACCESS_CREDENTIAL_HANDLE in tpm.list_persistent()
    credential = s.tre.access_credential()
    keys = Sja2(s.devices.uicc).read_keys(adm1=s.bench.uicc.adm1.resolve_key()).usim
    assert keys.k == credential.k and keys.op_opc == credential.opc
    # then --procedure pristine completes the change: the new SHO's MCIM attaches
    old_imsi = s.network.sho.imsi_of(pcid)
    if before_pristine is not None:
        before_pristine(s)
    done = _resume_pristine(s)
    assert done.passed, [(r.number, r.detail) for r in done.rows if r.verdict != "passed"]
    nsho = s.network.nsho
    new_imsi = s.m2me.identity_on_card()
    assert new_imsi.startswith(nsho.plmn) and nsho.subscriber(new_imsi)["state"] == "active"
    assert s.m2me.attached_as == new_imsi and new_imsi != old_imsi


@RELAYED
def test_a_card_that_cannot_be_written_at_all_still_holds_the_initial_access_credential(m2me: Session) -> None:
    # step 8 already put the initial-access credential on the card: the fallback finds the key
    # files equal, writes nothing and reads them back; the change fails at 12, the PCID attaches
    s = m2me
    card = s.emulated.uicc_emulator

    def card_write_fails(s: Session) -> None:
        card.fail_command(UPDATE_BINARY, SW_MEMORY_PROBLEM, times=1000)
    try:
        outcome = run_procedure(CHANGE.after_step(8, card_write_fails), s, s.record)
    finally:
        card.clear_faults()
    rows = {r.number: r for r in outcome.rows}
    assert outcome.failed_step is not None and outcome.failed_step.number == 12
    assert "6581" in rows[12].detail and "fell back to the initial-access credential" in rows[12].detail
    assert rows["after"].verdict == "passed" and s.m2me.attached_as == s.m2me.pcid


@RELAYED
def test_a_card_gone_at_step_12_says_what_the_devices_hold(m2me: Session) -> None:
    # the fallback itself is impossible: the run says, at step 12, what the TPM and the card hold
    s = m2me
    card = s.emulated.uicc_emulator
    try:
        outcome = run_procedure(CHANGE.after_step(11, lambda s: card.remove()), s, s.record)
    finally:
        card.insert()
    rows = {r.number: r for r in outcome.rows}
    assert not outcome.passed and outcome.failed_step is not None and outcome.failed_step.number == 12
    detail = rows[12].detail
    assert "falling back to the initial-access credential FAILED too" in detail
    assert "state: TPM: MCIM object absent, initial-access credential present" in detail
    assert f"card {s.devices.uicc.name}: key files unreadable (CardRemoved)" in detail
    assert rows[13].verdict == "failed" and "could NOT fall back" in rows[13].detail
    assert rows["after"].verdict == "failed" and "holds no working credential" in rows["after"].detail
    assert MCIM_HANDLE not in s.devices.tpm.list_persistent()
