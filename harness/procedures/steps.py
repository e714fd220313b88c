"""The operations the seeds' steps are made of, shared by both procedures.

Each function takes the session, does one thing of TR 33.812 5.1.3.7.1, checks it as a lab
engineer would, and returns one line saying what happened (or raises StepFailed).
"""

from __future__ import annotations

from typing import Any

from mcim_hil.network.attestation import ValidationResult

from mcim_hil.record import StepSkipped

from .base import StepFailed

# TS 24.008 10.5.5.14 / TS 24.301 9.9.3.9 causes the VNO gives for a failed AKA
_CAUSES = {3: "#3 illegal MS (RES != XRES)", 20: "#20 MAC failure at the card",
           21: "#21 synch failure", 2: "#2 IMSI unknown", 11: "#11 PLMN not allowed", 22: "#22 congestion"}


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


def icf_generates_avs(s: Any, number: int | str) -> str:
    kinds = _kinds(s, number)
    fetched = "CredentialResponse" in kinds
    if fetched:
        return "ICF had no temporary-access credential for the PCID: fetched it from the CCIF, generated AVs"
    return "ICF found the temporary-access credential for the PCID and generated AVs"


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

def sho_requests_validation(s: Any) -> str:
    outcome = s.network.sho.request_validation(s.m2me.pcid)
    s.state["validation"] = outcome
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
        raise StepFailed(f"MCIM not installed: {exc}") from exc
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
    s.m2me.report_status(error is None, error or "MCIM installed")
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
    result = s.m2me.attach(imsi)
    if not result.accepted:
        raise StepFailed(f"attach with the MCIM rejected: {_CAUSES.get(result.reject_cause, result.reject_cause)}")
    if s.m2me.identity_on_card() == s.m2me.pcid:
        raise StepFailed("the card still presents the PCID")
    return (f"attached with IMSI {imsi} (AKA with the SHO's AuC), address {result.ip_address}; "
            f"the PCID credential is no longer used")
