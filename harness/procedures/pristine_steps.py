"""The operations of 5.1.3.8.4.3 (seed 004, going back to the pristine state), shared with the
other procedures where the seed's arrows are the same (steps.py)."""

from __future__ import annotations

from typing import Any

from mcim_hil.network.messages import ReprovisioningAck

from . import steps as op
from .base import StepFailed


def subscriber_contacts_new_sho(s: Any) -> str:
    """s1: the subscriber transfers the M2ME's parameters; the new SHO registers its contract at
    the RO's DRF, which is how the DRF can lead the M2ME to it at s8 (the seed leaves it FFS)."""
    line = op.subscriber_contacts_new_sho(s)
    nsho = op._new_sho(s)
    nsho.register_subscription_at_ro(s.m2me.pcid)
    entry = s.network.ro.drf.registry_entry(s.m2me.pcid) or {}
    if entry.get("sho_address") != nsho.address:
        raise StepFailed(f"the DRF's registry names {entry.get('sho_address')}, not {nsho.address}")
    return line + f"; new SHO registered the contract at the DRF {s.network.ro.drf.address} for discovery"


def subscriber_instructs_pristine(s: Any) -> str:
    """s2: the subscriber instructs the M2ME to re-provision by going back to the pristine state."""
    nsho = op._new_sho(s)
    reply = s.network.bus.request(s.subscriber.instruction(
        m2me_address=s.m2me.address, pcid=s.m2me.pcid, new_sho_address=nsho.address,
        new_sho_verify_key=s.state["change_ack"].sho_verify_key, pristine=True))
    if not isinstance(reply, ReprovisioningAck) or not reply.accepted:
        raise StepFailed(f"the M2ME refused the re-provisioning: {getattr(reply, 'reason', reply.kind)}")
    for key in ("installed", "install_error"):   # a fresh provisioning from here on
        s.state.pop(key, None)
    return (f"subscriber -> M2ME: go back to the pristine state, then re-provision from {nsho.address} (signed, "
            f"nonce; checked with the subscriber key registered at manufacture); accepted"
            + op.renew_access_credential_if_due(s))


def m2me_returns_to_pristine(s: Any) -> str:
    """s3: the old SHO's MCIM removed: TPM object evicted, card re-personalised from the TRE."""
    try:
        gone = s.m2me.return_to_pristine()
    except Exception as exc:
        raise StepFailed(f"the M2ME could not return to the pristine state: {exc}") from exc
    s.state["discarded"] = gone
    if s.m2me.tre.has_mcim():
        raise StepFailed(f"the TPM still holds an MCIM object at 0x{gone.tre_handle:08x}")
    on_card = s.m2me.identity_on_card()
    if on_card != s.m2me.pcid:
        raise StepFailed(f"the card presents {on_card}, not the PCID {s.m2me.pcid}")
    evicted = (f"MCIM object 0x{gone.tre_handle:08x} evicted from the TPM" if gone.tre_object_evicted
               else "no MCIM object was in the TPM")
    told = {True: f"old SHO told, IMSI {gone.imsi} discarded there",
            False: f"old SHO did NOT acknowledge the discard of IMSI {gone.imsi}",
            None: f"old SHO's IMSI {gone.imsi} already discarded there"}[gone.old_sho_acknowledged]
    if gone.old_sho_acknowledged is False:
        raise StepFailed(told)
    return (f"{evicted}; card re-personalised with the PCID credential from the TRE (0x{gone.card.tre_handle:08x}): "
            f"IMSI read back {on_card}, K/OPc read back equal; {told}; detached: pristine")


def m2me_attaches_with_pcid(s: Any) -> str:
    """s4: attach to a VNO with the PCID (the AKA runs on the card, the VNO asks the RO's ICF)."""
    return op.attach_with_pcid(s)


def vno_gets_avs_from_icf_and_authenticates(s: Any, number: int | str) -> str:
    """s5: the VNO contacts the RO's ICF, which transfers AVs; the VNO authenticates the PCID."""
    line = op.vno_contacts_icf(s, number)
    rejects = [e for e in op._events(s, number) if e.get("kind") == "AuthDataReject"]
    if rejects and not any(e.get("kind") == "AuthDataResponse" for e in op._events(s, number)):
        raise StepFailed(f"the RO's ICF gave no AVs for the PCID: {rejects[0]['fields'].get('reason')}")
    asked = [e for e in op._events(s, number) if e.get("kind") == "AuthDataRequest"]
    if asked[0]["recipient"] != s.network.ro.icf.address:
        raise StepFailed(f"the VNO asked {asked[0]['recipient']}, not the RO's ICF")
    return line + "; " + op.ro_transfers_avs(s, number) + "; " + op.vno_runs_aka(s, number)


def drf_aids_discovery(s: Any) -> str:
    """s8: the DRF's bootstrap leads the M2ME to the new SHO (checked by the M2ME against the
    subscriber's instruction); the M2ME opens its management session; the DRF registers it there."""
    nsho = op._new_sho(s)
    op.drf_sends_bootstrap(s)
    if s.m2me.bootstrap is None or s.m2me.bootstrap.sho_address != nsho.address:
        raise StepFailed("the M2ME was not led to the new SHO")
    accept = s.m2me.open_management_session()
    s.network.ro.drf.register_at_sho(s.m2me.pcid)
    return (f"DRF -> M2ME: SHO {nsho.address} (the one the subscriber instructed), DPF {s.m2me.bootstrap.dpf_address}; "
            f"management session {accept.session_id} open; DRF registered the M2ME at the new SHO")


def new_sho_requests_validation_via_ivf(s: Any, number: int | str) -> str:
    nsho = op._new_sho(s)
    s.state["validation"] = nsho.request_validation(s.m2me.pcid, via_ivf=True)
    if "IntegrityInquiry" not in op._kinds(s, number):
        raise StepFailed("the new SHO did not inquire the IVF")
    return (f"new SHO retrieved the PfC, asked {s.network.pva.address} to validate the authenticity of "
            f"{s.m2me.platform_id} and inquired {s.network.ivf.address} for its integrity result")


def pva_sends_results(s: Any, number: int | str) -> str:
    outcome = s.state["validation"]
    if "ValidationResultMessage" not in op._kinds(s, number):
        raise StepFailed("no validation result came back to the new SHO")
    s.record.meta["change_of_sho_integrity"] = {"source": outcome.source, "fallback_reason": outcome.fallback_reason}
    if not outcome.passed:
        raise StepFailed("PVA -> new SHO: validation FAIL")
    how = "IVF -> new SHO: integrity result" if outcome.source == op.VIA_IVF else "integrity validated by the PVA"
    return f"PVA -> new SHO: authenticity PASS; {how} PASS"


def new_sho_authorises_via_drf(s: Any, number: int | str) -> str:
    """s12: the new SHO authorises the RO's DRF to authorise its DPF (SHO -> DRF -> DPF)."""
    nsho = op._new_sho(s)
    document = nsho.build_m2msimmobj(s.m2me.pcid)
    nsho.authorise_provisioning(s.m2me.pcid, via_drf=True)
    hops = [(e["sender"], e["recipient"]) for e in op._events(s, number)
            if e.get("kind") in ("DrfAuthorisationRequest", "DrfProvisioningAuthorisation")]
    ro = s.network.ro
    if hops != [(nsho.address, ro.drf.address), (ro.drf.address, ro.dpf.address)]:
        raise StepFailed(f"the authorisation did not go new SHO -> DRF -> DPF: {hops}")
    if ro.dpf.authorised_by(s.m2me.pcid) != nsho.address:
        raise StepFailed(f"the DPF holds an authorisation for {ro.dpf.authorised_by(s.m2me.pcid)}")
    return (f"new SHO sealed an MCIM for IMSI {nsho.imsi_of(s.m2me.pcid)} (M2MSIMMobj {len(document)} bytes); "
            f"new SHO -> DRF -> DPF: provisioning authorised")


def m2me_provisions_and_reports(s: Any) -> str:
    """s14: into the TRE and onto the card; status to the RO's DPF."""
    line = op.m2me_installs_and_reports(s)
    nsho = op._new_sho(s)
    if not s.state["installed"].imsi.startswith(nsho.plmn):
        raise StepFailed(f"the installed IMSI {s.state['installed'].imsi} is not of the new SHO's PLMN {nsho.plmn}")
    return line
