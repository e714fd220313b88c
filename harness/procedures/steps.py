"""The operations the seeds' steps are made of, shared by both procedures.

Each function takes the session, does one thing of TR 33.812 5.1.3.7.1, checks it as a lab
engineer would, and returns one line saying what happened (or raises StepFailed).
"""

from __future__ import annotations

from typing import Any

from mcim_hil.m2me.agent import ProvisioningError
from mcim_hil.network.attestation import ValidationResult
from mcim_hil.network.messages import (
    ReprovisioningAck,
    SubscriptionChangeAck,
    SubscriptionChangeRequest,
)
from mcim_hil.network.sho import VIA_IVF
from mcim_hil.network.subscriber import SUBSCRIBER_ADDRESS

from mcim_hil.record import StepSkipped

from .base import StepFailed, run_procedure

# TS 24.008 10.5.5.14 / TS 24.301 9.9.3.9 causes the VNO gives for a failed AKA
_CAUSES = {3: "#3 illegal MS (RES != XRES)", 20: "#20 MAC failure at the card",
           21: "#21 synch failure", 2: "#2 IMSI unknown", 17: "#17 network failure", 11: "#11 PLMN not allowed", 22: "#22 congestion"}


def _events(session: Any, number: int | str) -> list[dict]:
    step = next((s for s in reversed(session.record.steps) if s.number == number), None)
    return step.events if step else []


def _kinds(session: Any, number: int | str) -> list[str]:
    return [e.get("kind") or e.get("command") for e in _events(session, number)]


# -- attach (000 s1-s6; 004 c3 s1-s4) -----------------------------------------------------------

def attach_with_pcid(s: Any) -> str:
    pcid = s.m2me.identity_on_card()
    if pcid != s.m2me.pcid:
        raise StepFailed(f"the card presents {pcid}, not the PCID {s.m2me.pcid} it was manufactured with")
    s.state["attach"] = s.m2me.attach(pcid)
    return f"M2ME sends attach with PCID {pcid} to {s.network.vno.address} ({s.state['attach'].how} attach)"


def vno_contacts_icf(s: Any, number: int | str) -> str:
    sent = [e for e in _events(s, number) if e.get("kind") == "AuthDataRequest"]
    if not sent:
        raise StepFailed("the VNO did not ask the ICF for authentication vectors")
    return f"{sent[0]['sender']} -> {sent[0]['recipient']}: AuthDataRequest for {s.m2me.pcid}"


def _icf_answer(s: Any) -> dict | None:
    """The ICF's answer to the VNO in the attach this step belongs to (its AVs or its refusal)."""
    icf = s.network.ro.icf.address
    answers = [e for e in s.state.get("group_events", []) if e.get("type") == "message" and e.get("sender") == icf
               and e.get("kind") in ("AuthDataResponse", "AuthDataReject")]
    return answers[-1] if answers else None


def icf_generates_avs(s: Any, number: int | str) -> str:
    """000 s3: judged by the AVs the ICF actually sent (their count; their values stay redacted)."""
    kinds = _kinds(s, number)
    fetched = "CredentialResponse" in kinds
    answer = _icf_answer(s)
    if answer is None:
        raise StepFailed("the ICF sent the VNO no answer for the PCID: no AV generated")
    if answer["kind"] == "AuthDataReject":
        raise StepFailed(f"the ICF generated no AV: {answer['fields'].get('reason')}")
    count = len(answer["fields"].get("avs") or ())
    if count == 0:
        raise StepFailed("the ICF answered with no AV for the PCID (an empty AuthDataResponse)")
    avs = f"generated {count} AV{'s' if count > 1 else ''}"
    if fetched:
        return f"ICF had no temporary-access credential for the PCID: fetched it from the CCIF, {avs}"
    return f"ICF found the temporary-access credential for the PCID and {avs}"


def ro_transfers_avs(s: Any, number: int | str) -> str:
    kinds = _kinds(s, number)
    if "AuthDataReject" in kinds and "AuthDataResponse" not in kinds:
        raise StepFailed("the RO has no authentication vectors for this PCID")
    if "AuthDataResponse" not in kinds:
        raise StepFailed("no AVs came back from the RO")
    return "RO (ICF) -> VNO: AV (RAND, XRES, CK, IK, AUTN)"


def vno_runs_aka(s: Any, number: int | str) -> str:
    result = s.state["attach"]
    kinds = _kinds(s, number)
    resynced = "ResyncRequest" in kinds
    if not result.accepted and result.reject_cause in (3, 20, 21):
        raise StepFailed(f"AKA failed: {_CAUSES[result.reject_cause]}"
                         + (" after resynchronisation" if resynced else ""))
    if "AuthenticationResponse" not in kinds and result.accepted is False:
        raise StepFailed(f"no AKA: attach rejected with {_CAUSES.get(result.reject_cause, result.reject_cause)}")
    how = "on the UICC through the module" if result.how == "module" else "on the UICC, relayed by the harness"
    extra = "; synch failure, AUTS resynchronised the ICF's SQN, then RES == XRES" if resynced else "; RES == XRES"
    return f"AKA ran {how}{extra}"


def vno_assigns_ip(s: Any, number: int | str) -> str:
    result = s.state["attach"]
    if not result.accepted or not result.ip_address:
        raise StepFailed(f"attach rejected: {_CAUSES.get(result.reject_cause, result.reject_cause)}")
    return f"VNO provides IP connectivity: M2ME address {result.ip_address}"


# -- discovery and registration ---------------------------------------------------------------

def m2me_connects_to_ro(s: Any) -> str:
    s.m2me.connect_to_ro(s.network.ro.icf.address)
    return f"M2ME {s.m2me.address} connects to the RO ({s.network.ro.icf.address})"


def icf_requests_bootstrap(s: Any) -> str:
    s.network.ro.icf.request_bootstrap(s.m2me.pcid)
    return f"ICF -> DRF: bootstrap for PCID {s.m2me.pcid} at {s.m2me.address}"


def drf_generates_bootstrap(s: Any) -> str:
    msg = s.network.ro.drf.bootstrap_message(s.m2me.pcid)
    return f"DRF registry: DPF {msg.dpf_address}, SHO {msg.sho_address}; bootstrap message generated"


def drf_sends_bootstrap(s: Any) -> str:
    s.network.ro.drf.send_bootstrap(s.m2me.pcid)
    boot = s.m2me.bootstrap
    return (f"DRF -> M2ME: DPF {boot.dpf_address}, SHO {boot.sho_address}, MCIM provisioning context "
            f"{boot.mcim_provisioning_context.get('management_object', '')}")


def m2me_bootstraps(s: Any) -> str:
    accept = s.m2me.open_management_session()
    return f"M2ME bootstrapped; management session {accept.session_id} open with the DPF"


def drf_registers_at_sho(s: Any) -> str:
    s.network.ro.drf.register_at_sho(s.m2me.pcid)
    return f"DRF -> SHO {s.network.sho.address}: M2ME {s.m2me.pcid} registered for the SHO's network"


def bootstrap_and_discovery(s: Any) -> str:
    """004 c3 s6: the RO assists the M2ME in discovering its SHO (the bootstrap)."""
    drf_sends_bootstrap(s)
    return m2me_bootstraps(s) + f"; SHO {s.m2me.bootstrap.sho_address} discovered"


def connect_and_forward(s: Any) -> str:
    """004 c3 s5: the M2ME connects to the RO, which forwards the PCID from ICF to DRF."""
    return m2me_connects_to_ro(s) + "; " + icf_requests_bootstrap(s)


# -- validation ---------------------------------------------------------------------------------

def sho_requests_validation(s: Any, *, issue_to_ivf: bool = False) -> str:
    """000 s13 / 004 c3 s8; ``issue_to_ivf``: seed 004's PVA issues its result to the IVF (c3 s10)."""
    outcome = s.network.sho.request_validation(s.m2me.pcid, issue_to_ivf=issue_to_ivf)
    s.state["validation"] = outcome
    relay = s.network.extra.get("pva_request")
    if relay is not None:   # 004 c3 s8: "or requests the RO to request the PVA"
        asked = [kind for sho, kind in relay.relayed if sho == s.network.sho.address]
        if "ValidationRequest" not in asked:
            raise StepFailed(f"the SHO's validation request did not go through the RO ({relay.address})")
        return (f"SHO retrieved the PfC from the M2ME and requested the RO ({relay.address}) to request "
                f"{s.network.pva.address} to validate platform {s.m2me.platform_id} (nonce, quote of PCRs "
                f"{list(s.network.pva.pcr_selection)}, EK/AK credential)")
    return (f"SHO retrieved the PfC from the M2ME and asked {s.network.pva.address} to validate platform "
            f"{s.m2me.platform_id} (nonce, quote of PCRs {list(s.network.pva.pcr_selection)}, EK/AK credential)")


def pva_validates(s: Any, number: int | str) -> str:
    outcome = s.state["validation"]
    result: ValidationResult = outcome.result
    failed = [c for c in result.checks if not c.passed]
    if failed or not outcome.passed:
        names = "; ".join(f"{c.name}: {c.detail}" for c in failed) or \
            f"components missing: {', '.join(outcome.missing_components)}"
        raise StepFailed(f"platform validation FAILED: {names}")
    return (f"{len(result.checks)} checks passed; components validated: "
            f"{', '.join(result.validated_components)}")


def pva_returns_result(s: Any, number: int | str) -> str:
    kinds = _kinds(s, number)
    if "ValidationResultMessage" not in kinds:
        raise StepFailed("no validation result came back to the SHO")
    verdict = "PASS" if s.state["validation"].passed else "FAIL"
    return f"PVA -> SHO: validation result {verdict}"


def pva_returns_result_and_issues_to_ivf(s: Any, number: int | str) -> str:
    line = pva_returns_result(s, number)
    if "IntegrityResultIssue" not in _kinds(s, number):
        raise StepFailed("the PVA did not issue the integrity validation result to the IVF")
    held = s.network.ivf.result(s.m2me.platform_id)
    if held is None:
        raise StepFailed(f"the IVF holds no result for {s.m2me.platform_id}")
    return line + f"; integrity result issued to the IVF ({s.network.ivf.address})"


# -- the MCIM -----------------------------------------------------------------------------------

def sho_builds_m2msimmobj(s: Any) -> str:
    document = s.network.sho.build_m2msimmobj(s.m2me.pcid)
    s.state["m2msimmobj_size"] = len(document)
    imsi = s.network.sho.imsi_of(s.m2me.pcid)
    return (f"MCIM for IMSI {imsi} sealed to the TRE's certified storage key under the validated PCRs; "
            f"M2MSIMMobj (TNDS, signed) {len(document)} bytes")


def sho_authorises_dpf(s: Any) -> str:
    s.network.sho.authorise_provisioning(s.m2me.pcid)
    return f"SHO -> DPF {s.network.ro.dpf.address}: M2MSIMMobj delivered, provisioning authorised"


def sho_builds_and_authorises(s: Any) -> str:
    """004 c3 s11: upon a positive validation, the SHO authorises the DPF."""
    return sho_builds_m2msimmobj(s) + "; " + sho_authorises_dpf(s)


def dpf_downloads(s: Any) -> str:
    s.network.ro.dpf.download(s.m2me.pcid)
    return "DPF -> M2ME: M2MSIMMobj downloaded whole, signature and structure checked before install"


def m2me_installs(s: Any) -> str:
    try:
        installed = s.m2me.install_mcim()
    except Exception as exc:
        s.state["install_error"] = str(exc)
        said = str(exc)   # the agent may have said it already
        raise StepFailed(said if said.startswith("MCIM not installed") else f"MCIM not installed: {said}") from exc
    s.state["installed"] = installed
    return (f"TRE imported and unsealed the MCIM (persistent 0x{installed.tre_handle:08x}); "
            f"UICC personalised with IMSI {installed.imsi}")


def _install_attempted(s: Any) -> None:
    if "installed" not in s.state and "install_error" not in s.state:
        raise StepSkipped("no MCIM object reached the M2ME: nothing to report")


def m2me_reports_status(s: Any) -> str:
    _install_attempted(s)
    error = s.state.get("install_error")
    s.m2me.report_status(error is None, error or "MCIM installed")
    if error:
        raise StepFailed(f"M2ME -> DPF: provisioning FAILED ({error})")
    return "M2ME -> DPF: provisioning success"


def m2me_installs_and_reports(s: Any) -> str:
    """004 c3 s13."""
    try:
        line = m2me_installs(s)
    finally:
        status = m2me_reports_status_quiet(s)
    return line + "; " + status


def m2me_reports_status_quiet(s: Any) -> str:
    error = s.state.get("install_error")
    try:
        s.m2me.report_status(error is None, error or "MCIM installed")
    except ProvisioningError as exc:   # the DPF never took the success: the M2ME gave the MCIM up
        s.state.pop("installed", None)
        s.state["install_error"] = str(exc)
        raise StepFailed(f"M2ME -> DPF: status report lost; {exc}") from exc
    return "reported " + ("failure" if error else "success") + " to the DPF"


def dpf_reports_to_sho(s: Any) -> str:
    _install_attempted(s)
    s.network.ro.dpf.report_status(s.m2me.pcid)
    contract = s.network.sho.contract(s.m2me.pcid) or {}
    if s.state.get("install_error"):
        raise StepFailed(f"DPF -> SHO: provisioning failed; SHO contract state {contract.get('state')}")
    return f"DPF -> SHO: provisioning success; SHO contract state {contract.get('state')}"


def attach_with_mcim(s: Any) -> str:
    """After the last step: the M2ME attaches to the SHO's network with the MCIM."""
    installed = s.state.get("installed")
    if installed is None:
        raise StepFailed("no MCIM installed")
    s.m2me.detach()
    imsi = s.m2me.identity_on_card()
    if imsi != installed.imsi:
        raise StepFailed(f"the card presents {imsi}, not the MCIM's IMSI {installed.imsi}")
    return _attached_with_mcim(s, imsi, s.m2me.attach(imsi))


def _attached_with_mcim(s: Any, imsi: str, result: Any) -> str:
    if not result.accepted:
        raise StepFailed(f"attach with the MCIM rejected: {_CAUSES.get(result.reject_cause, result.reject_cause)}")
    if s.m2me.identity_on_card() == s.m2me.pcid:
        raise StepFailed("the card still presents the PCID")
    return (f"attached with IMSI {imsi} (AKA with the SHO's AuC), address {result.ip_address}; "
            f"the PCID credential is no longer used")


# -- change of SHO over the old SHO's connectivity (004 c4, 5.1.3.8.4.2) ------------------------

# The M2ME subscriber (the owner) on the bus: it speaks to the new SHO (s1) and to the M2ME (s2),
# its instructions signed with the key registered in the M2ME at manufacture.
SUBSCRIBER = SUBSCRIBER_ADDRESS


def _new_sho(s: Any) -> Any:
    if s.network.nsho is None:
        raise StepFailed("the network has no new SHO (NetworkOptions.with_new_sho is off)")
    return s.network.nsho


def provisioned_by_old_sho(s: Any, procedure: Any) -> str:
    """Precondition: the initial provisioning, its steps recorded in the same record, then the
    M2ME attached with the old SHO's MCIM (that procedure's "after"): the old SHO's connectivity."""
    first = len(s.record.steps)
    try:
        outcome = run_procedure(procedure, s, s.record)
    finally:
        # what the initial run installed is the old MCIM; the change's steps start afresh
        s.state["old_mcim"] = s.state.pop("installed", None)
        s.state.pop("install_error", None)
        # its steps keep their seed numbers under "before." in the record, so the reports never
        # mix them up with the change's own steps 1-14
        for step in s.record.steps[first:]:
            step.number = f"before.{step.number}"
            for event in step.events:
                event["step"] = step.number
    if not outcome.passed:
        bad = outcome.failed_step or next((r for r in outcome.rows if r.verdict != "passed"), None)
        where = f"step {bad.number} ({bad.title}): {bad.detail}" if bad else "no step ran"
        raise StepFailed(f"the initial provisioning ({procedure.name}) did not pass, at {where}")
    old = s.state["old_mcim"]
    return (f"{procedure.name}: steps 1-{len(outcome.rows) - 1} and after passed (before.*); "
            f"MCIM of SHO {s.network.sho.address} (IMSI {old.imsi}) installed, M2ME attached with it at {s.m2me.address}")


def subscriber_contacts_new_sho(s: Any) -> str:
    """004 c4 s1: the subscriber transfers the M2ME's parameters to the new SHO."""
    nsho = _new_sho(s)
    reply = s.network.bus.request(SubscriptionChangeRequest(
        sender=SUBSCRIBER, recipient=nsho.address, pcid=s.m2me.pcid, platform_id=s.m2me.platform_id,
        m2me_address=s.m2me.address, old_sho_address=s.network.sho.address))
    if not isinstance(reply, SubscriptionChangeAck) or not reply.accepted:
        raise StepFailed(f"the new SHO refused the change: {getattr(reply, 'reason', reply.kind)}")
    s.state["change_ack"] = reply
    contract = nsho.contract(s.m2me.pcid) or {}
    return (f"subscriber -> new SHO {nsho.address}: M2ME {s.m2me.pcid} (platform {s.m2me.platform_id}, "
            f"at {s.m2me.address}, leaving {s.network.sho.address}); contract {contract.get('state')}")


def subscriber_instructs_m2me(s: Any) -> str:
    """004 c4 s2: the subscriber instructs the M2ME; it opens its management session naming the new SHO."""
    nsho = _new_sho(s)
    reply = s.network.bus.request(s.subscriber.instruction(
        m2me_address=s.m2me.address, pcid=s.m2me.pcid, new_sho_address=nsho.address,
        new_sho_verify_key=s.state["change_ack"].sho_verify_key))
    if not isinstance(reply, ReprovisioningAck) or not reply.accepted:
        raise StepFailed(f"the M2ME refused the re-provisioning: {getattr(reply, 'reason', reply.kind)}")
    accept = s.m2me.open_management_session()
    session = s.network.ro.dpf.session(s.m2me.pcid) or {}
    if session.get("sho_address") != nsho.address:
        raise StepFailed(f"the management session names SHO {session.get('sho_address')}, not {nsho.address}")
    return (f"subscriber -> M2ME: re-provision from {nsho.address} (signed, nonce; the M2ME checked it with the "
            f"subscriber key registered at manufacture); M2ME opened management session "
            f"{accept.session_id} with the DPF naming the new SHO" + renew_access_credential_if_due(s))


def renew_access_credential_if_due(s: Any) -> str:
    """During a change of SHO (5.1.3.8.4.3, last paragraph): the M2ME renews its initial-access
    credential when it expires within its margin; the row says which."""
    try:
        renewed = s.m2me.renew_access_credential_if_due()
    except Exception as exc:
        raise StepFailed(f"renewing the initial-access credential failed: {exc}") from exc
    if renewed is None:
        return ""
    s.state["access_renewed"] = renewed
    return (f"; initial-access credential had {renewed.old_lifetime_left_s / 86400:.0f} days left: renewed through "
            f"the DPF (issued by the CCIF) into the TRE 0x{renewed.tre_handle:08x}, "
            f"{renewed.lifetime_left_s / 86400:.0f} days left")


def new_sho_requests_validation_via_ivf(s: Any) -> str:
    """004 c4 s3: the new SHO asks the PVA for authenticity and inquires the IVF for integrity."""
    nsho = _new_sho(s)
    s.state["validation"] = nsho.request_validation(s.m2me.pcid, via_ivf=True)
    if "IntegrityInquiry" not in _kinds(s, 3):
        raise StepFailed("the new SHO did not inquire the IVF")
    outcome = s.state["validation"]
    answer = ("the IVF's result stands" if outcome.source == VIA_IVF
              else f"NOTE: the new SHO requests the PVA to validate integrity ({outcome.fallback_reason})")
    return (f"new SHO retrieved the PfC, asked {s.network.pva.address} to validate the authenticity of "
            f"{s.m2me.platform_id} and inquired {s.network.ivf.address} for its integrity result; {answer}")


def pva_validates_authenticity_ivf_provides_integrity(s: Any) -> str:
    """004 c4 s4: authenticity at the PVA; integrity from the IVF, else validated by the PVA (s3 NOTE)."""
    outcome = s.state["validation"]
    result: ValidationResult = outcome.result
    failed = [c for c in result.checks if not c.passed]
    if failed:
        raise StepFailed("platform validation FAILED: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    if outcome.missing_components:
        raise StepFailed(f"components the new SHO requires were not validated: "
                         f"{', '.join(outcome.missing_components)}")
    if outcome.source == VIA_IVF:
        if result.integrity_checked:
            raise StepFailed("the IVF result was used, yet the PVA validated integrity as well")
        held = outcome.integrity
        return (f"PVA validated authenticity ({len(result.checks)} checks, integrity not checked again); "
                f"IVF provided the integrity result: passed, components {', '.join(held.validated_components)}, "
                f"PCR state the TPM quotes now")
    if not result.integrity_checked:
        raise StepFailed("the IVF result was not used and the PVA did not validate integrity either")
    return (f"IVF result not used ({outcome.fallback_reason}): the PVA validated authenticity and integrity "
            f"({len(result.checks)} checks; components {', '.join(result.validated_components)})")


def pva_indicates_success_to_new_sho(s: Any) -> str:
    """004 c4 s5."""
    outcome = s.state["validation"]
    if "ValidationResultMessage" not in _kinds(s, 5):
        raise StepFailed("no validation result came back to the new SHO")
    s.record.meta["change_of_sho_integrity"] = {"source": outcome.source, "fallback_reason": outcome.fallback_reason}
    if not outcome.passed:
        raise StepFailed("PVA -> new SHO: validation FAIL")
    how = "integrity from the IVF" if outcome.source == VIA_IVF else "integrity validated by the PVA"
    return f"PVA -> new SHO: validation PASS ({how})"


def new_sho_sends_mcim_to_dpf(s: Any) -> str:
    """004 c4 s6: the new SHO builds its MCIM's M2MSIMMobj and authorises the DPF."""
    nsho = _new_sho(s)
    document = nsho.build_m2msimmobj(s.m2me.pcid)
    nsho.authorise_provisioning(s.m2me.pcid)
    return (f"new SHO sealed an MCIM for IMSI {nsho.imsi_of(s.m2me.pcid)} to the TRE (M2MSIMMobj "
            f"{len(document)} bytes) and authorised DPF {s.network.ro.dpf.address}")


def dpf_downloads_over_old_sho(s: Any) -> str:
    """004 c4 s7: the whole MCIM object, over the connectivity of the old SHO, checked before anything else."""
    old = s.state.get("old_mcim")
    if old is None or s.m2me.attached_as != old.imsi:
        raise StepFailed(f"the M2ME is attached as {s.m2me.attached_as}, not with the old SHO's MCIM")
    s.network.ro.dpf.download(s.m2me.pcid)
    if s.m2me.pending is None:
        raise StepFailed("the M2ME kept no M2MSIMMobj")
    return (f"DPF -> M2ME over the old SHO's connectivity (attached as {old.imsi}): M2MSIMMobj downloaded "
            f"whole, the new SHO's signature and the structure checked before any other step")


def m2me_discards_old_credentials(s: Any) -> str:
    """004 c4 s8."""
    losses = s.m2me.power_losses
    try:
        discarded = s.m2me.discard_old_mcim()
    except Exception as exc:
        raise StepFailed(f"the old SHO's credentials were not all discarded: {exc}") from exc
    s.state["discarded"] = discarded
    if s.m2me.tre.has_mcim():
        raise StepFailed(f"the TPM still holds an MCIM object at 0x{discarded.tre_handle:08x}")
    if not s.m2me.tre.has_access_credential():
        raise StepFailed("the initial-access credential is gone from the TRE")
    on_card = s.m2me.identity_on_card()
    if on_card == discarded.imsi or on_card != discarded.card.pcid:
        raise StepFailed(f"the card presents {on_card}, not the PCID {discarded.card.pcid}")
    evicted = (f"sealed MCIM object 0x{discarded.tre_handle:08x} evicted from the TPM"
               if discarded.tre_object_evicted else "no sealed MCIM object was in the TPM")
    if s.m2me.power_losses > losses:
        evicted += (f" (the TPM lost power at the evict {s.m2me.power_losses - losses} time(s): the M2ME "
                    f"restarted and evicted again)")
    card = discarded.card
    return (f"{evicted}; card's IMSI {discarded.imsi} and its K/OPc overwritten with the initial-access "
            f"credential from the TRE (0x{card.tre_handle:08x}, kept): IMSI read back {on_card}, K/OPc read back "
            f"equal (ADM1); the agent forgot the old MCIM ({discarded.home_plmn}); no AVs kept by the M2ME "
            f"(the AKA runs on the card)")


def m2me_tells_old_sho(s: Any) -> str:
    """004 c4 s9."""
    ack = s.m2me.notify_old_sho_discarded()
    s.state["discard_ack"] = ack
    return f"M2ME -> old SHO {ack.sender}: AVs and MCIM credentials of IMSI {ack.imsi} discarded"


def old_sho_acknowledges(s: Any) -> str:
    """004 c4 s10."""
    ack = s.state["discard_ack"]
    if not ack.acknowledged:
        raise StepFailed(f"the old SHO did not acknowledge: {ack.reason}")
    row = s.network.sho.subscriber(ack.imsi) or {}
    return f"old SHO -> M2ME: acknowledged; the old SHO's IMSI {ack.imsi} is now {row.get('state')}"


def m2me_relays_ack_via_dpf(s: Any) -> str:
    """004 c4 s11: to the DPF, which relays it to the new SHO without naming the old SHO or its IMSI."""
    nsho = _new_sho(s)
    s.m2me.relay_discard_acknowledgement()
    if not nsho.old_credentials_discarded(s.m2me.pcid):
        raise StepFailed("the new SHO has no confirmation that the old credentials are discarded")
    relayed = [e for e in _events(s, 11) if e.get("kind") == "DiscardConfirmation"]
    old_imsi, old_sho = s.state["discarded"].imsi, s.network.sho.address
    if not relayed or any(old_imsi in str(e) or old_sho in str(e) for e in relayed):
        raise StepFailed("the relay to the new SHO is missing or names the old SHO or its IMSI")
    return "M2ME -> DPF -> new SHO: discard confirmed; the relay names neither the old SHO nor its IMSI"


def m2me_installs_new_mcim(s: Any) -> str:
    """004 c4 s12: the new MCIM into the TRE and onto the card, status to the DPF."""
    line = m2me_installs_and_reports(s)
    nsho = _new_sho(s)
    if not s.state["installed"].imsi.startswith(nsho.plmn):
        raise StepFailed(f"the installed IMSI {s.state['installed'].imsi} is not of the new SHO's PLMN {nsho.plmn}")
    return line


def _fallback_line(s: Any) -> str:
    fallback = s.m2me.fallback
    if fallback is None:
        return ""
    if fallback.restored is None:
        return f"; the M2ME could NOT fall back to its initial-access credential ({fallback.error})"
    return (f"; the M2ME fell back to its initial-access credential (PCID {fallback.restored.pcid}, TRE "
            f"0x{fallback.restored.tre_handle:08x} -> UICC)")


def dpf_reports_to_new_sho(s: Any) -> str:
    """004 c4 s13."""
    nsho = _new_sho(s)
    _install_attempted(s)
    s.network.ro.dpf.report_status(s.m2me.pcid)
    state = (nsho.contract(s.m2me.pcid) or {}).get("state")
    if s.state.get("install_error"):
        raise StepFailed(f"DPF -> new SHO: provisioning failed; contract state {state}" + _fallback_line(s))
    return f"DPF -> new SHO: provisioning success; contract state {state}"


def new_sho_registers_at_ro(s: Any) -> str:
    """004 c4 s14: the M2ME subscribes to the new SHO, for future discovery."""
    nsho = _new_sho(s)
    nsho.register_subscription_at_ro(s.m2me.pcid)
    entry = s.network.ro.drf.registry_entry(s.m2me.pcid) or {}
    if entry.get("sho_address") != nsho.address:
        raise StepFailed(f"the DRF's registry names {entry.get('sho_address')}, not {nsho.address}")
    return f"new SHO -> DRF: {s.m2me.pcid} subscribes to {nsho.address} (registry updated)"


def recovery_attach_with_pcid(s: Any) -> str:
    """After a failed install: the M2ME, back on its initial-access credential, attaches with the
    PCID (AKA with the RO's ICF), so it can be re-provisioned (e.g. ``--procedure pristine``)."""
    fallback = s.m2me.fallback
    if fallback is None or fallback.restored is None:
        raise StepFailed("the install failed and the M2ME holds no working credential"
                         + (f" ({fallback.error})" if fallback else ""))
    s.m2me.detach()
    on_card = s.m2me.identity_on_card()
    if on_card != s.m2me.pcid:
        raise StepFailed(f"the card presents {on_card}, not the PCID {s.m2me.pcid}")
    result = s.m2me.attach(on_card)
    if not result.accepted:
        raise StepFailed(f"recovery attach with the PCID rejected: {_CAUSES.get(result.reject_cause, result.reject_cause)}")
    return (f"recovered: attached with the PCID {on_card} (AKA with the RO's ICF), address {result.ip_address}; "
            f"the card holds the initial-access credential (lifetime left "
            f"{fallback.restored.lifetime_left_s / 86400:.0f} days)")


def attach_after_change(s: Any) -> str:
    """After 004 c4: with the new MCIM when it was installed, else the recovery with the PCID."""
    if s.state.get("install_error"):
        return recovery_attach_with_pcid(s)
    if "installed" not in s.state:
        raise StepSkipped("no MCIM was installed and none failed: nothing to attach with")
    return attach_with_new_mcim(s)


def attach_with_new_mcim(s: Any) -> str:
    """After 004 c4: the M2ME attaches with the new MCIM; the network refuses the old IMSI. A
    network that does not know the new IMSI (its SHO never activated it: s13's report lost) makes
    the M2ME fall back to its initial-access credential: the step fails, naming the recovery."""
    installed = s.state.get("installed")
    if installed is None:
        raise StepFailed("no MCIM installed")
    s.m2me.detach()
    imsi = s.m2me.identity_on_card()
    if imsi != installed.imsi:
        raise StepFailed(f"the card presents {imsi}, not the MCIM's IMSI {installed.imsi}")
    try:
        result = s.m2me.attach_new_mcim(imsi)
    except ProvisioningError as exc:
        s.state.pop("installed", None)
        s.state["install_error"] = str(exc)
        raise StepFailed(f"attach with the new MCIM rejected (#2 IMSI unknown); {exc}") from exc
    if s.m2me.installed is None and s.m2me.fallback is not None:
        s.state.pop("installed", None)
        s.state["install_error"] = s.m2me.fallback.cause
        how = (f"attached with the PCID {s.m2me.pcid}, address {result.ip_address}" if result.accepted else
               f"the attach with the PCID rejected too: {_CAUSES.get(result.reject_cause, result.reject_cause)}")
        raise StepFailed(f"attach with the new MCIM's IMSI {installed.imsi} rejected: {_CAUSES[2]}, the new "
                         f"SHO never activated it" + _fallback_line(s) + f"; {how}")
    line = _attached_with_mcim(s, imsi, result)
    nsho = _new_sho(s)
    old_imsi = s.state["discarded"].imsi
    if not imsi.startswith(nsho.plmn) or imsi == old_imsi:
        raise StepFailed(f"the card presents {imsi}, not an IMSI of the new SHO's PLMN {nsho.plmn}")

    def no_aka(rand: bytes, autn: bytes) -> bytes:
        raise StepFailed(f"the VNO ran an AKA for the discarded IMSI {old_imsi}")
    refused = s.network.vno.attach(old_imsi, no_aka)
    if refused.accepted:
        raise StepFailed(f"the network still accepts the old IMSI {old_imsi}")
    return line + f"; the old IMSI {old_imsi} is refused ({_CAUSES.get(refused.reject_cause, refused.reject_cause)})"
