"""A remote SW/FW update of the M2ME (seed 004, 5.1.3.6.8 and its NOTE 2; issue 12) through the real
stacks: swtpm measures the update, the emulated module reports its new revision, the supplier issues a
new PfC over the same AK and revokes the old one, the PVA obtains it, the IVF's result is superseded,
and a change of SHO afterwards takes the full validation (5.1.3.8.4.2 step 3 NOTE)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509

from mcim_hil.cli import main
from mcim_hil.m2me.components import M2ME_AGENT, MODULE_FIRMWARE, PLATFORM_FIRMWARE
from mcim_hil.m2me.update import InstalledImage, next_version, version_key
from mcim_hil.network import pki
from mcim_hil.network.sho import VIA_PVA
from mcim_hil.procedures import PROCEDURES, Procedure, RunOutcome, run_procedure
from mcim_hil.procedures.firmware_update import CHANGE_AFTER_UPDATE, procedure
from mcim_hil.session import Session

UPDATE = PROCEDURES["firmware-update"]
STEPS = ["before", "U1", "U2", "U3", "U4", "U5", "U6", "U7", "after"]
RELAYED = pytest.mark.session_options(air="relayed")


@pytest.fixture(autouse=True)
def module_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """The session bench's emulated module keeps the revision it had (an update flashes it)."""
    if "m2me" not in request.fixturenames:
        yield
        return
    bench = request.getfixturevalue("bench")
    modem = bench.emulated.modem_emulator
    revision = modem.revision if modem is not None else None
    yield
    if modem is not None:
        modem.revision = revision


def run(s: Session, proc: Procedure = UPDATE) -> RunOutcome:
    outcome = run_procedure(proc, s, s.record)
    assert [r.number for r in outcome.rows] == STEPS
    return outcome


def row(outcome: RunOutcome, number: Any):
    return next(r for r in outcome.rows if r.number == number)


def failed_at(outcome: RunOutcome, number: Any) -> str:
    assert not outcome.passed
    assert outcome.failed_step is not None and outcome.failed_step.number == number, \
        [(r.number, r.verdict, r.detail) for r in outcome.rows]
    return outcome.failed_step.detail


def ocsp_status(s: Session, der: bytes) -> pki.CertStatus:
    import os
    pfc, issuer = x509.load_der_x509_certificate(der), s.network.m2mes.certificate
    nonce = os.urandom(16)
    return pki.check_ocsp_response(s.network.m2mes.ocsp.respond(pki.ocsp_request(pfc, issuer, nonce)),
                                   pfc, issuer, nonce)


# -- the procedure passes ------------------------------------------------------------------------------

@RELAYED
def test_update_of_the_module_firmware_passes_every_step(m2me: Session) -> None:
    s = m2me
    old_pfc = s.m2me.pfc   # before the procedure runs, the M2ME presents the PfC of manufacture
    pcr = s.m2me.tre.pcr
    seen: dict[str, Any] = {}
    proc = UPDATE.after_step("before", lambda s: seen.update(pcr=s.devices.tpm.pcr_read([pcr])[pcr],
                                                             revision=s.devices.modem.identity().revision))
    outcome = run(s, proc)
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    # the module reports its new revision and the TPM's measurement PCR changed
    revision = s.devices.modem.identity().revision
    assert revision == next_version(seen["revision"]) and version_key(revision) > version_key(seen["revision"])
    assert s.devices.tpm.pcr_read([pcr])[pcr] != seen["pcr"]
    # a new PfC over the same AK, asserting a state whose reference values the supplier published
    old, new = x509.load_der_x509_certificate(old_pfc), x509.load_der_x509_certificate(s.m2me.pfc)
    assert new.serial_number != old.serial_number
    assert pki.same_public_key(new.public_key(), old.public_key())
    state = pki.platform_identity(new).version
    assert state and state.startswith("sha256:") and pki.platform_identity(old).version is None
    assert s.network.m2mes.expected_values(new)[MODULE_FIRMWARE] == s.state["update_package"].image_digest
    # the old one is revoked as superseded; the new one good
    assert str(ocsp_status(s, old_pfc)).startswith("revoked") and "superseded" in str(ocsp_status(s, old_pfc))
    assert ocsp_status(s, s.m2me.pfc).good
    # the PVA holds the new PfC (pushed in advance) and used it at U7; the IVF's result is superseded
    held = s.network.pva.pfc_of(s.m2me.platform_id)
    assert held is not None and int(held["serial"]) == new.serial_number and held["obtained"] == "pushed"
    assert "the PfC the PVA obtained in advance (pushed)" in row(outcome, "U7").detail
    result = s.network.ivf.result(s.m2me.platform_id)
    assert result is not None and "the components differ" in result["superseded_reason"]
    assert s.network.pva.counters()["pfc_pushes"] == 1 and s.network.pva.counters()["pfc_fetches"] == 0
    # the steps name their seed clause
    assert all("5.1.3.6.8" in r.title or r.number in ("before", "after") for r in outcome.rows)


@RELAYED
@pytest.mark.parametrize("component", [PLATFORM_FIRMWARE, M2ME_AGENT])
def test_the_other_components_update_too(m2me: Session, component: str) -> None:
    outcome = run(m2me, procedure(component))
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    assert f"{component} measured from the installed image" in row(outcome, "U3").detail
    assert m2me.m2me.updates.versions[component] == m2me.state["update_package"].version


@RELAYED
def test_without_the_push_the_pva_fetches_the_new_pfc_on_the_version_mismatch(m2me: Session) -> None:
    s = m2me

    def no_push(s: Session) -> None:
        s.network.m2mes.push_new_pfcs = False
    outcome = run(s, UPDATE.after_step("before", no_push))
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    assert "push off" in row(outcome, "U6").detail
    assert "fetched from the M2MES on a version mismatch" in row(outcome, "U7").detail
    held = s.network.pva.pfc_of(s.m2me.platform_id)
    assert held["obtained"] == "fetched" and int(held["serial"]) == x509.load_der_x509_certificate(
        s.m2me.pfc).serial_number
    assert s.network.pva.counters()["pfc_fetches"] == 1
    assert s.network.ivf.result(s.m2me.platform_id)["superseded_reason"]   # superseded when it fetched


# -- negative paths, each at its step ---------------------------------------------------------------------

def _unsigned(s: Session) -> None:
    s.state["update_package"] = replace(s.state["update_package"], signature=b"")


def _wrongly_signed(s: Session) -> None:
    other = pki.CertificateAuthority.create("someone else's code signing CA", organization="not the supplier")
    package = s.state["update_package"]
    s.state["update_package"] = replace(package, signature=other.sign(package.manifest_bytes()))


def _image_swapped(s: Session) -> None:   # the signed manifest, another image under it
    s.state["update_package"] = replace(s.state["update_package"], image=b"another image")


@RELAYED
@pytest.mark.parametrize("change, reason", [
    (_unsigned, "unsigned update: no supplier signature on its manifest"),
    (_wrongly_signed, "the signature does not verify with the supplier key given at manufacture"),
    (_image_swapped, "the signature does not verify with the supplier key given at manufacture"),
])
def test_an_update_the_supplier_did_not_sign_is_refused_at_u2(m2me: Session, change, reason: str) -> None:
    s = m2me
    outcome = run(s, UPDATE.after_step("U1", change))
    detail = failed_at(outcome, "U2")
    assert detail.startswith("M2ME refused the update of module-firmware") and reason in detail
    assert "\n" not in detail
    # nothing installed: the module keeps its revision, no image for the next boot, the old PfC stands
    assert s.m2me.updates.images == {} and s.m2me.updates.pending is None
    assert s.network.m2mes.update_of(s.m2me.platform_id)["status"] == "refused"
    assert ocsp_status(s, s.m2me.pfc).good
    assert s.network.ivf.result(s.m2me.platform_id)["superseded_reason"] is None


@RELAYED
def test_a_downgrade_is_refused_at_u2(m2me: Session) -> None:
    s = m2me
    running = s.devices.modem.identity().revision
    older = running.rsplit("_", 1)[0] + "_0.9.0"
    outcome = run(s, procedure(MODULE_FIRMWARE, older))
    detail = failed_at(outcome, "U2")
    assert f"downgrade refused: module-firmware {running} runs, the update is {older}" in detail
    assert s.devices.modem.identity().revision == running


@RELAYED
def test_a_tampered_image_is_measured_and_fails_the_next_validation_at_the_pva(m2me: Session) -> None:
    s = m2me

    def tamper(s: Session) -> None:   # the installed image altered at rest, before the next boot
        image = s.m2me.updates.images[MODULE_FIRMWARE]
        s.m2me.updates.images[MODULE_FIRMWARE] = InstalledImage(image.component, image.version, b"tampered")
    outcome = run(s, UPDATE.after_step("U2", tamper))
    detail = failed_at(outcome, "U7")
    assert detail.startswith("platform validation FAILED at the PVA: ")
    assert "reference_values: component 'module-firmware' digest differs from its reference value" in detail
    assert "\n" not in detail
    # the boot measured it (U3), the supplier issued the PfC of what it signed (U4): only the PVA can tell
    assert all(row(outcome, n).verdict == "passed" for n in ("U3", "U4", "U5", "U6"))


@RELAYED
def test_the_old_pfc_presented_after_the_update_is_refused_as_revoked(m2me: Session) -> None:
    s = m2me

    def present_old(s: Session) -> None:
        s.m2me.pfc = s.state["pfc_before"]
    outcome = run(s, UPDATE.after_step("U6", present_old))
    detail = failed_at(outcome, "U7")
    assert detail.startswith("platform validation FAILED at the PVA: pfc_status_ocsp: OCSP says the PfC is revoked")
    assert "(superseded)" in detail and "pfc_current: the PfC presented" in detail


@RELAYED
def test_reference_values_that_are_not_the_state_the_pfc_asserts_are_refused_at_u7(m2me: Session) -> None:
    s = m2me

    def alter_state(s: Session) -> None:   # the supplier's record of the new state altered after it issued the PfC
        new = x509.load_der_x509_certificate(s.m2me.pfc)
        identity = pki.platform_identity(new)
        values = {name: digest.hex() for name, digest in s.network.m2mes.expected_values(new).items()}
        values[MODULE_FIRMWARE] = "00" * 32
        s.network.m2mes.db.put("states", model=identity.model, state=identity.version, components=values)
    outcome = run(s, UPDATE.after_step("U4", alter_state))
    detail = failed_at(outcome, "U7")
    assert "reference_values: component 'platform-firmware' has no reference value" in detail


@RELAYED
def test_a_pfc_the_supplier_keeps_no_record_of_fails_pfc_current(m2me: Session) -> None:
    s = m2me

    def forget_platform(s: Session) -> None:   # the supplier lost the platform's record after the update
        s.network.m2mes.db.delete("platforms", platform_id=s.m2me.platform_id)
    proc = UPDATE.after_step("before", lambda s: setattr(s.network.m2mes, "push_new_pfcs", False))
    outcome = run(s, proc.after_step("U6", forget_platform))
    detail = failed_at(outcome, "U7")
    assert f"pfc_current: the M2MES has no PfC for {s.m2me.platform_id}: no PfC issued for this platform" in detail


@RELAYED
def test_a_pva_the_revocation_missed_fetches_the_new_pfc_and_forgets_the_old_one(m2me: Session) -> None:
    """The PVA proved the AK's binding under the old PfC and hears of neither the revocation nor
    the new PfC. The SHO's challenge request names the PfC it will present, so the PVA challenges
    the AK anew (MakeCredential) rather than lean on a binding proven under another PfC, fetches
    the new PfC on the version mismatch, and U7 passes the first time."""
    s = m2me
    challenges: list[int] = []

    def pva_not_told(s: Session) -> None:   # neither the revocation notice nor the push reach this PVA
        s.network.m2mes.notify.clear()
        s.network.m2mes.push_new_pfcs = False
        challenges.append(s.network.pva.counters()["challenges"])
    outcome = run(s, UPDATE.after_step("before", pva_not_told))
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    assert "fetched from the M2MES on a version mismatch" in row(outcome, "U7").detail
    assert s.network.pva.counters()["challenges"] == challenges[0] + 1   # the AK challenged again
    held = s.network.pva.pfc_of(s.m2me.platform_id)
    assert held["obtained"] == "fetched" and s.network.ivf.result(s.m2me.platform_id)["superseded_reason"]
    again = s.network.sho.request_validation(s.m2me.pcid)
    assert again.passed, again.result.summary()
    # the old PfC presented again: the 'good' OCSP answer kept from before the update is gone
    s.m2me.pfc = s.state["pfc_before"]
    s.network.sho.retrieve_platform_credential(s.m2me.pcid)
    result = s.network.sho.request_validation(s.m2me.pcid).result
    assert not result.check("pfc_status_ocsp").passed and "revoked" in result.check("pfc_status_ocsp").detail
    assert not result.check("pfc_current").passed


def test_the_ivf_supersedes_only_a_result_older_than_the_update_and_only_for_its_pva() -> None:
    from mcim_hil.network.bus import Bus
    from mcim_hil.network.ivf import Ivf
    from mcim_hil.network.messages import IntegrityInquiry, IntegrityResultIssue
    from mcim_hil.network.messages_update import IntegrityResultSupersede
    from mcim_hil.network.store import Store
    bus = Bus(None)
    ivf = Ivf(bus, Store(":memory:"), address="ivf.example", pva_addresses=["pva.example"], clock=lambda: 1000.0)

    def issue(at: float) -> None:
        bus.request(IntegrityResultIssue(sender="pva.example", recipient="ivf.example", platform_id="m2me-1",
                                         passed=True, validated_components=("module-firmware",),
                                         pcr_digest=b"\1" * 32, validated_at=at))

    def supersede(sender: str, before: float, reason: str = "update") -> bool:
        return bus.request(IntegrityResultSupersede(sender=sender, recipient="ivf.example", platform_id="m2me-1",
                                                    before=before, reason=reason)).superseded

    def inquiry():
        return bus.request(IntegrityInquiry(sender="sho.example", recipient="ivf.example", platform_id="m2me-1",
                                            required_components=()))
    issue(900.0)
    assert not supersede("sho.example", 950.0)            # only the PVA that issues results
    assert not supersede("pva.example", 900.0)            # a result validated at or after the update stands
    assert inquiry().available
    assert supersede("pva.example", 950.0, "firmware update of module-firmware to 2")
    assert not supersede("pva.example", 960.0, "another")  # the first reason stays
    miss = inquiry()
    assert not miss.available and miss.reason == "the integrity result was superseded (firmware update of " \
                                                 "module-firmware to 2)"
    issue(970.0)                                           # a fresh result from the PVA stands again
    assert inquiry().available


# -- a change of SHO after the update ----------------------------------------------------------------------

@RELAYED
def test_a_change_of_sho_after_the_update_takes_the_full_validation_and_passes(m2me: Session) -> None:
    s = m2me
    outcome = run_procedure(CHANGE_AFTER_UPDATE, s, s.record)
    assert [r.number for r in outcome.rows] == ["before", *range(1, 15), "after"]
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    step3, step4 = row(outcome, 3).detail, row(outcome, 4).detail
    assert "NOTE: the new SHO requests the PVA to validate integrity (the integrity result was superseded" in step3
    assert "the components differ" in step3 and step4.startswith("IVF result not used (the integrity result was "
                                                                 "superseded")
    used = s.record.meta["change_of_sho_integrity"]
    assert used["source"] == VIA_PVA and "firmware update of module-firmware" in used["fallback_reason"]
    # the new SHO's validation went with the new PfC, which the PVA checked as the current one
    last = s.network.pva.validations(s.m2me.platform_id)[-1]
    checks = {c["name"]: c for c in last["result"]["checks"]}
    assert last["passed"] and last["integrity_checked"] and checks["pfc_current"]["passed"]
    assert pki.platform_identity(x509.load_der_x509_certificate(s.m2me.pfc)).version
    # the new state's reference values were fetched once (U7) and kept for the change (step 3)
    assert s.network.pva.counters()["reference_values_requests"] == 2   # the model's, then the state's
    # the update's rows are kept as before.U*
    numbers = [st.number for st in s.record.steps]
    assert "before.U4" in numbers and "before.3" in numbers


# -- the fleet and the command line -----------------------------------------------------------------------

def test_fleet_with_updated_m2mes_validates_them_in_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fleet", "--devices", "14", "--real", "0", "--tampered", "2", "--updated", "3",
                 "--configurations", "2", "--workers", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "updated before (validated in full)" in out
    runs = {r["label"]: r for r in json.loads((tmp_path / "fleet.json").read_text())["runs"]}
    ivf, no_ivf = runs["with IVF"], runs["without IVF"]
    for run_ in (ivf, no_ivf):
        assert run_["updated"] == 3 and run_["updated_full"] == 3   # their IVF result superseded
        assert run_["changed"] == 12 and run_["refused_tampered"] == 2
    # with the IVF: the 2 tampered and the 3 updated have their integrity validated, the other 9 not
    assert ivf["fallbacks"] == 5 and ivf["pva_change"]["integrity_validations"] == 5
    assert no_ivf["pva_change"]["integrity_validations"] == 14


@pytest.mark.parametrize("args, line", [
    (["run", "--procedure", "change-sho", "--component", "m2me-agent"],
     "--component/--to apply to --procedure firmware-update only, not change-sho"),
    (["run", "--procedure", "firmware-update", "--component", "bootloader"], "invalid choice: 'bootloader'"),
    (["fleet", "--devices", "4", "--real", "0", "--tampered", "2", "--updated", "3"],
     "mcim-hil fleet: --updated must be between 0 and the 2 simulated M2MEs that are not tampered, not 3"),
])
def test_bad_arguments_are_one_line(args: list[str], line: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main([*args, "--out", str(tmp_path / "out")])
    except SystemExit as exc:   # argparse's usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert line in err and "Traceback" not in err


# -- the M2ME's rules for an update and its new PfC, one by one (a simulated TRE: no bench needed) ----------

@pytest.fixture(scope="module")
def supplier() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create("mcim-hil M2M equipment supplier PfC CA", organization="supplier")


@pytest.fixture
def agent(supplier: pki.CertificateAuthority):
    from cryptography.hazmat.primitives.serialization import Encoding

    from mcim_hil.fleet.simulated import SimulatedTpmMaker, SimulatedTre
    from mcim_hil.m2me.agent import M2me
    from mcim_hil.network.bus import Bus
    tre = SimulatedTre(SimulatedTpmMaker.create())
    m2me = M2me(bus=Bus(None), tre=tre, uicc=None, air=None, platform_id="m2me-1", adm1=bytes)  # type: ignore[arg-type]
    m2me.pfc = pki.issue_platform_credential(supplier, tre.keys().ak.public_key, "m2me-1",
                                             model="model-a").public_bytes(Encoding.DER)
    m2me.address = "10.45.0.9"
    m2me.updates.trust(supplier.certificate)
    m2me.updates.versions.update({MODULE_FIRMWARE: "R1.0", M2ME_AGENT: "0.1.0"})
    m2me.updates.flash_module = lambda version: None
    return m2me


def offer(supplier: pki.CertificateAuthority, *, platform: str = "m2me-1", model: str = "model-a",
          component: str = MODULE_FIRMWARE, version: str = "R1.1"):
    from mcim_hil.network.messages_update import FirmwareUpdateOffer, UpdatePackage
    package = UpdatePackage(model, component, version, b"image " + version.encode())
    package = replace(package, signature=supplier.sign(package.manifest_bytes()))
    return FirmwareUpdateOffer(sender="m2mes.supplier-m.example", recipient="10.45.0.9", platform_id=platform,
                               package=package)


@pytest.mark.parametrize("changes, reason", [
    ({"platform": "m2me-2"}, "update for platform m2me-2, this is m2me-1"),
    ({"model": "model-b"}, "update for model 'model-b', this M2ME is 'model-a'"),
    ({"component": "bootloader"}, "unknown component 'bootloader'"),
    ({"version": "R1.0"}, "module-firmware R1.0 already runs (the update is not newer)"),
    ({"version": "R0.9"}, "downgrade refused: module-firmware R1.0 runs, the update is R0.9"),
    ({"component": M2ME_AGENT, "version": "0.0.9"}, "downgrade refused: m2me-agent 0.1.0 runs"),
])
def test_the_m2me_refuses_an_offer_not_for_it_or_not_newer(agent, supplier, changes: dict, reason: str) -> None:
    receipt = agent.updates.on_offer(offer(supplier, **changes))
    assert not receipt.installed and reason in receipt.reason
    assert agent.updates.images == {} and agent.updates.pending is None


def test_the_m2me_installs_a_newer_signed_update_and_refuses_without_a_supplier_key_or_flasher(agent, supplier) -> None:
    updates = agent.updates
    flasher, updates.flash_module = updates.flash_module, None
    assert "cannot be flashed" in updates.on_offer(offer(supplier)).reason
    assert updates.on_offer(offer(supplier, component=M2ME_AGENT, version="0.2.0")).installed  # needs no module
    updates.flash_module = flasher
    trusted, updates.supplier = updates.supplier, None
    assert "no supplier key was given at manufacture" in updates.on_offer(offer(supplier)).reason
    updates.supplier = trusted
    receipt = updates.on_offer(offer(supplier, version="R1.10"))   # 10 > 0: numbers, not text
    assert receipt.installed and receipt.previous_version == "R1.0" and updates.versions[MODULE_FIRMWARE] == "R1.10"
    assert updates.boot_components([]) == [] and updates.pending.version == "R1.10"


def test_the_m2me_takes_only_a_new_pfc_of_its_supplier_over_its_own_ak(agent, supplier) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from mcim_hil.fleet.simulated import SimulatedTpmMaker, SimulatedTre
    from mcim_hil.m2me.update import UpdateError
    own_ak = agent.tre.keys().ak.public_key
    other_ak = SimulatedTre(SimulatedTpmMaker.create()).keys().ak.public_key
    impostor = pki.CertificateAuthority.create("impostor", organization="supplier")

    def pfc(ca, key, platform="m2me-1") -> bytes:
        return pki.issue_platform_credential(ca, key, platform, model="model-a", version="sha256:00").public_bytes(
            Encoding.DER)
    for der, reason in ((pfc(supplier, other_ak), "another key than this M2ME's AK"),
                        (pfc(impostor, own_ak), "does not verify with the supplier's certificate"),
                        (pfc(supplier, own_ak, "m2me-2"), "names platform m2me-2")):
        with pytest.raises(UpdateError, match=reason):
            agent.updates._take_pfc(der)
    before = agent.pfc
    renewal = agent.updates._take_pfc(pfc(supplier, own_ak))
    assert agent.pfc != before and renewal.state == "sha256:00"
    assert renewal.old_serial == x509.load_der_x509_certificate(before).serial_number
