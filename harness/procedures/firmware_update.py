"""A remote SW/FW update of the M2ME, its new PfC and what it does to the IVF's result.

Seed 004, 5.1.3.6.8: "In case remote update of the M2M equipment's SW/FW requires a new PfC, the
PVA must be able to obtain the new PfC"; its NOTE 2: the PfC is a certificate by the M2MES
"asserting the expected system state of the M2ME", which the PVA may obtain in advance; and
5.1.3.8.4.2 step 3's NOTE: a new SHO must not take an IVF result whose components differ.

The seed numbers no steps for the update, so these are the bench's own, U1..U7, each naming the
clause it implements. "before" is seed 004's initial provisioning (initial-ivf, its rows kept as
before.N) ending with the M2ME attached with its MCIM; "after" reads what holds from the devices
and the network. ``firmware-update-change-sho`` runs all of it as its "before", then the 14
steps of the change of SHO (5.1.3.8.4.2) with the seed's numbers.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from mcim_hil.m2me.components import MODULE_FIRMWARE, component_image, installed_versions, measured_components
from mcim_hil.m2me.update import UpdateError, next_version
from mcim_hil.network import pki
from mcim_hil.record import PASSED

from . import change_sho, initial_ivf
from . import steps as op
from .base import Procedure, SeedStep, StepFailed, run_procedure

M2ME, M2MES, PVA, IVF, SHO, VNO = "M2ME", "M2MES", "PVA", "IVF", "SHO", "VNO"
NAME = "firmware-update"


def _modem(s: Any) -> Any:
    return s.devices.modem if s.devices is not None else None


def _pcr(s: Any) -> bytes:
    pcr = s.m2me.tre.pcr
    return s.m2me.tre.tpm.pcr_read([pcr])[pcr]


def _short(value: bytes | str, n: int = 12) -> str:
    text = value.hex() if isinstance(value, bytes) else value
    return text[:n] + "..."


def _serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def before_m2me_provisioned(s: Any) -> str:
    """The M2ME provisioned by its SHO (initial-ivf: the PVA issued its result to the IVF); what
    runs on it read from the devices, and where the bench can flash its module."""
    line = op.provisioned_by_old_sho(s, initial_ivf.PROCEDURE)
    updates = s.m2me.updates
    updates.versions.update(installed_versions(_modem(s)))
    modem = s.emulated.modem_emulator if s.emulated is not None else None
    if modem is not None:   # the emulated module takes the image and reports its revision (+CGMR)
        updates.flash_module = lambda revision: setattr(modem, "revision", revision)
    s.state["pcr_before"] = _pcr(s)
    s.state["pfc_before"] = s.m2me.pfc
    versions = ", ".join(f"{name} {version}" for name, version in updates.versions.items())
    return f"{line}; running: {versions}"


def step_u1_m2mes_signs_update(s: Any, component: str, to: str | None) -> str:
    """5.1.3.6.8, remote update of the M2ME's SW/FW: the supplier builds and signs the package."""
    running = s.m2me.updates.versions.get(component)
    if running is None:
        raise StepFailed(f"{component}: this M2ME does not run it (it runs {', '.join(s.m2me.updates.versions)})")
    version = to or next_version(running)
    try:
        image = component_image(component, version, _modem(s))
    except ValueError as exc:
        raise StepFailed(f"the M2MES cannot build the {component} image: {exc}") from exc
    model = pki.platform_identity(x509.load_der_x509_certificate(s.m2me.pfc)).model
    package = s.network.m2mes.sign_update(component, version, image, model=model)
    s.state["update_package"] = package
    return (f"M2MES built {component} {version} for model {model} (running: {running}); image "
            f"{len(image)} bytes, SHA-256 {_short(package.image_digest)}; manifest signed with the supplier's "
            f"key (the M2ME got its certificate at manufacture)")


def step_u2_m2me_checks_and_installs(s: Any) -> str:
    """5.1.3.6.8: the M2ME takes only a signed, newer update of its model, kept for its next boot."""
    package = s.state["update_package"]
    receipt = s.network.m2mes.offer_update(s.m2me.platform_id, s.m2me.address, package)
    if not receipt.installed:
        raise StepFailed(f"M2ME refused the update of {package.component} {package.version}: {receipt.reason}")
    flashed = "; the module flashed it (+CGMR reads the new revision)" if package.component == MODULE_FIRMWARE else ""
    return (f"M2MES -> M2ME: supplier signature, model and version checked; {package.component} "
            f"{receipt.previous_version} -> {receipt.version} installed for the next boot{flashed}")


def step_u3_m2me_restarts_measured(s: Any) -> str:
    """5.1.3.6.8 NOTE 2 (the system state the PfC asserts): the next boot measures the update into
    the TRE; the M2ME attaches again with its MCIM."""
    package = s.state["update_package"]
    before = _pcr(s)
    components = s.m2me.updates.boot_components(measured_components(_modem(s)))
    s.m2me.detach()
    log = s.m2me.boot(components)
    after = _pcr(s)
    if after == before:
        raise StepFailed(f"PCR {s.m2me.tre.pcr} did not change: the update was not measured")
    measured = next(m for m in log if m.component == package.component)
    imsi = s.m2me.identity_on_card()
    attached = s.m2me.attach(imsi)
    if not attached.accepted:
        raise StepFailed(f"after the restart the attach with the MCIM (IMSI {imsi}) was rejected: "
                         f"{attached.reject_cause}")
    return (f"restart: PCR {s.m2me.tre.pcr} {_short(before)} -> {_short(after)} (read from the TPM); "
            f"{package.component} measured from the installed image, digest {_short(measured.digest)}; "
            f"attached again with IMSI {imsi}, address {attached.ip_address}")


def step_u4_m2mes_issues_new_pfc(s: Any) -> str:
    """5.1.3.6.8 NOTE 2: the M2MES publishes the new state's reference values and issues a PfC over
    the same AK asserting that state."""
    old = x509.load_der_x509_certificate(s.m2me.pfc)
    try:
        renewal = s.m2me.updates.report(s.network.m2mes.address)
    except UpdateError as exc:
        raise StepFailed(f"no new PfC: {exc}") from exc
    new = x509.load_der_x509_certificate(s.m2me.pfc)
    if not pki.same_public_key(new.public_key(), old.public_key()):
        raise StepFailed("the new PfC is over another key than the old one's AK")
    values = s.network.m2mes.expected_values(new)
    package = s.state["update_package"]
    if values.get(package.component) != package.image_digest:
        raise StepFailed(f"the new state's reference value of {package.component} is not the signed image's digest")
    return (f"M2ME -> M2MES: {package.component} {package.version} runs; M2MES published the reference values "
            f"of state {_short(renewal.state or '', 19)} ({', '.join(sorted(values))}) and issued PfC serial "
            f"{renewal.new_serial:#x} over the same AK (was {renewal.old_serial:#x}); the M2ME checked it")


def step_u5_m2mes_revokes_old_pfc(s: Any) -> str:
    """5.1.3.6.8 (the PfC's validation by OCSP): the superseded PfC is revoked."""
    m2mes = s.network.m2mes
    serial = m2mes.revoke_superseded(s.m2me.platform_id)
    status = _ocsp_status(s, s.state["pfc_before"])
    if status.good:
        raise StepFailed(f"OCSP still says the old PfC {serial:#x} is {status}")
    return f"old PfC serial {serial:#x} revoked; OCSP answers: {status}; the PVAs were told (SupplierNotice)"


def _ocsp_status(s: Any, pfc_der: bytes) -> pki.CertStatus:
    """Ask the supplier's OCSP responder about a PfC, as any relying party would."""
    import os
    pfc, issuer = x509.load_der_x509_certificate(pfc_der), s.network.m2mes.certificate
    nonce = os.urandom(16)
    response = s.network.m2mes.ocsp.respond(pki.ocsp_request(pfc, issuer, nonce))
    return pki.check_ocsp_response(response, pfc, issuer, nonce)


def step_u6_pva_obtains_new_pfc(s: Any) -> str:
    """5.1.3.6.8: "the PVA must be able to obtain the new PfC" (NOTE 2: in advance); the IVF's
    result of the M2ME is superseded (5.1.3.8.4.2 step 3 NOTE: its components differ)."""
    pid = s.m2me.platform_id
    pushed = s.network.m2mes.push_pfc(pid)
    if not pushed:
        return ("the M2MES does not push new PfCs (push off): the PVA fetches the new one at the next "
                "validation, on the version mismatch, and supersedes the IVF's result then")
    held = s.network.pva.pfc_of(pid)
    if held is None or int(held["serial"]) != _serial(s.m2me.pfc):
        raise StepFailed(f"the PVA does not hold the new PfC {_serial(s.m2me.pfc):#x}")
    result = s.network.ivf.result(pid)
    if result is not None and not result.get("superseded_reason"):
        raise StepFailed("the IVF's result for the M2ME still stands after its components changed")
    return (f"M2MES -> {', '.join(pushed)}: PfC serial {int(held['serial']):#x} pushed, held by the PVA in "
            f"advance; PVA -> IVF: the result for {pid} superseded ({result['superseded_reason'] if result else 'none'})")


def step_u7_pva_validates_updated_m2me(s: Any) -> str:
    """5.1.3.6.8: the PVA validates the updated M2ME's PfC and integrity for its SHO (not issued to
    the IVF: a later new SHO has its integrity validated again)."""
    sho, pcid = s.network.sho, s.m2me.pcid
    # the SHO is the M2ME's home network now: it reaches it at the address its MCIM attach got
    sho.db.update("contracts", {"pcid": pcid}, m2me_address=s.m2me.address)
    sho.retrieve_platform_credential(pcid)   # the PfC the M2ME presents now
    outcome = sho.request_validation(pcid)
    result = outcome.result
    failed = [c for c in result.checks if not c.passed]
    if failed or not outcome.passed:
        first = sorted(failed, key=lambda c: not c.name.startswith("pfc"))   # the PfC first: the likelier cause
        raise StepFailed("platform validation FAILED at the PVA: " + "; ".join(f"{c.name}: {c.detail}" for c in first))
    current = next((c for c in result.checks if c.name == "pfc_current"), None)
    how = current.detail if current else "no PfC held for this platform"
    return (f"SHO retrieved PfC serial {_serial(s.m2me.pfc):#x}: {how}; {len(result.checks)} checks passed; "
            f"components validated: {', '.join(result.validated_components)} (result not issued to the IVF)")


def after_what_holds(s: Any) -> str:
    package = s.state["update_package"]
    pid = s.m2me.platform_id
    if _pcr(s) == s.state["pcr_before"]:
        raise StepFailed("the TPM's measurement PCR is back at its value before the update")
    if s.m2me.pfc == s.state["pfc_before"]:
        raise StepFailed("the M2ME still presents its old PfC")
    old_status = _ocsp_status(s, s.state["pfc_before"])
    result = s.network.ivf.result(pid)
    ivf = ("superseded" if result and result.get("superseded_reason") else "standing" if result else "none")
    running = s.m2me.updates.versions[package.component]
    module = ""
    if package.component == MODULE_FIRMWARE and _modem(s) is not None:
        module = f" (+CGMR: {_modem(s).identity().revision})"
    if s.m2me.attached_as != s.state["old_mcim"].imsi:
        raise StepFailed(f"the M2ME is attached as {s.m2me.attached_as}, not with its MCIM")
    return (f"{package.component} {running} runs{module}; PfC {_serial(s.m2me.pfc):#x} presented, old "
            f"{_serial(s.state['pfc_before']):#x} {old_status}; IVF result for {pid}: {ivf}; attached with the "
            f"MCIM (IMSI {s.m2me.attached_as})")


def procedure(component: str = MODULE_FIRMWARE, to: str | None = None) -> Procedure:
    """The update of ``component`` (to ``to``, default: its running version's next)."""
    return Procedure(
        name=NAME,
        seed="004_b1edbfb25cf4318a",
        title=f"TR 33.812 5.1.3.6.8 (seed 004): remote update of the M2ME's {component}, a new PfC "
              f"obtained by the PVA, the IVF's result superseded (steps U1-U7: the seed numbers none)",
        steps=(
            SeedStep("before", "M2ME provisioned by its SHO (initial-ivf) and attached with its MCIM",
                     (M2ME, VNO, SHO), before_m2me_provisioned),
            SeedStep("U1", "M2MES builds and signs the update (5.1.3.6.8)", (M2MES,),
                     lambda s: step_u1_m2mes_signs_update(s, component, to)),
            SeedStep("U2", "M2ME checks the signature, model and version; installs it (5.1.3.6.8)", (M2MES, M2ME),
                     step_u2_m2me_checks_and_installs),
            SeedStep("U3", "M2ME restarts: the update measured into the TRE (5.1.3.6.8 NOTE 2)", (M2ME, VNO),
                     step_u3_m2me_restarts_measured),
            SeedStep("U4", "M2MES issues the new state's reference values and a new PfC, same AK (5.1.3.6.8 NOTE 2)",
                     (M2ME, M2MES), step_u4_m2mes_issues_new_pfc),
            SeedStep("U5", "M2MES revokes the superseded PfC: OCSP says revoked (5.1.3.6.8)", (M2MES, PVA), step_u5_m2mes_revokes_old_pfc),
            SeedStep("U6", "PVA obtains the new PfC in advance; the IVF's result superseded (5.1.3.6.8)",
                     (M2MES, PVA, IVF), step_u6_pva_obtains_new_pfc),
            SeedStep("U7", "PVA validates the updated M2ME for its SHO (5.1.3.6.8)", (SHO, M2ME, PVA, M2MES),
                     step_u7_pva_validates_updated_m2me),
            SeedStep("after", "What holds: measurement, PfC, OCSP, IVF, attach", (M2ME, M2MES, IVF),
                     after_what_holds),
        ),
    )


PROCEDURE = procedure()


def _updated_before(s: Any, update: Procedure) -> str:
    """The whole update procedure as this procedure's precondition, its rows kept as before.X."""
    first = len(s.record.steps)
    try:
        outcome = run_procedure(update, s, s.record)
    finally:
        for step in s.record.steps[first:]:
            if not str(step.number).startswith("before"):
                step.number = f"before.{step.number}"
                for event in step.events:
                    event["step"] = step.number
    if not outcome.passed:
        bad = outcome.failed_step or next((r for r in outcome.rows if r.verdict != PASSED), None)
        where = f"step {bad.number} ({bad.title}): {bad.detail}" if bad else "no step ran"
        raise StepFailed(f"the firmware update ({update.name}) did not pass, at {where}")
    package = s.state["update_package"]
    return (f"{update.name}: before, U1-U7 and after passed (before.*); {package.component} {package.version} "
            f"runs, PfC {_serial(s.m2me.pfc):#x}; the IVF's result for {s.m2me.platform_id} superseded")


def change_after_update(component: str = MODULE_FIRMWARE, to: str | None = None) -> Procedure:
    """The change of SHO (5.1.3.8.4.2, 14 steps) after the update of ``component``."""
    update = procedure(component, to)
    first = SeedStep("before", "M2ME provisioned, then updated (firmware-update), attached with its MCIM",
                     (M2ME, M2MES, PVA, IVF, SHO), lambda s: _updated_before(s, update))
    return Procedure(
        name=f"{NAME}-change-sho",
        seed="004_b1edbfb25cf4318a",
        title=f"TR 33.812 5.1.3.8.4.2 after a remote update of the M2ME's {component}: the IVF's result "
              f"superseded, the change takes the full validation (seed 004, 4th change, 14 steps)",
        steps=(first, *change_sho.PROCEDURE.steps[1:]),
    )


CHANGE_AFTER_UPDATE = change_after_update()
