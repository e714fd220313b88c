"""Seed 004, 5.1.3.8.4.3 last paragraph: "an appropriate network entity could initiate the
replacement of the initial network access credential". The seed numbers no steps; these are the
arrows the bench runs, after the seed's initial provisioning ("before", initial-ivf), while the
M2ME is attached with its MCIM. "after": what the TRE holds, and the RO's ICF serves the new one.
"""

from __future__ import annotations

from typing import Any

from . import change_sho
from . import steps as op
from .base import Procedure, SeedStep, StepFailed

M2ME, DPF, CCIF, ICF, VNO, SHO = "M2ME", "RO/DPF", "CCIF", "RO/ICF", "VNO", "SHO"


def before_m2me_provisioned(s: Any) -> str:
    s.state["access_before"] = s.tre.access_credential().not_after
    return op.provisioned_by_old_sho(s, change_sho.INITIAL)


def step_01_dpf_offers_replacement(s: Any) -> str:
    reply = s.network.ro.dpf.offer_access_replacement(s.m2me.pcid)
    return (f"DPF {s.network.ro.dpf.address} -> M2ME: replace the initial-access credential; the M2ME accepted, "
            f"naming its TRE's storage key ({len(reply.storage_key_public)} bytes)")


def step_02_ccif_issues(s: Any) -> str:
    not_after = s.network.ro.dpf.obtain_access_credential(s.m2me.pcid)
    kinds = op._kinds(s, 2)
    if "AccessCredentialRenewed" not in kinds or "AccessCredentialUpdateAck" not in kinds:
        raise StepFailed("the CCIF did not issue a new credential to the DPF and the ICF")
    days = (not_after - s.network.ccif.clock()) / 86400
    return (f"CCIF issued new K/OPc for {s.m2me.pcid} ({days:.0f} days), the RO's ICF updated; the DPF wrapped it "
            f"for the TRE's storage key (owner policy)")


def step_03_m2me_installs(s: Any) -> str:
    status = s.network.ro.dpf.deliver_access_credential(s.m2me.pcid)
    if not status.success:
        raise StepFailed(f"M2ME -> DPF: the new initial-access credential was NOT installed ({status.detail})")
    renewed = s.m2me.access_renewed
    return (f"DPF -> M2ME: delivered; {status.detail}; {renewed.old_lifetime_left_s / 86400:.0f} -> "
            f"{renewed.lifetime_left_s / 86400:.0f} days left")


def after_what_the_m2me_holds(s: Any) -> str:
    credential = s.tre.access_credential()
    if credential.not_after <= s.state["access_before"] or credential.pcid != s.m2me.pcid:
        raise StepFailed("the TRE still holds the old initial-access credential")
    if s.m2me.attached_as != s.state["old_mcim"].imsi:
        raise StepFailed(f"the M2ME is attached as {s.m2me.attached_as}, not with its MCIM")
    return (f"TRE 0x{s.m2me.access_renewed.tre_handle:08x}: PCID {credential.pcid}, "
            f"{credential.lifetime_left(s.m2me.clock()) / 86400:.0f} days left; still attached with the MCIM "
            f"(IMSI {s.m2me.attached_as}); the card is written from the TRE on the next return to the PCID")


PROCEDURE = Procedure(
    name="renew-access-credential",
    seed="004_b1edbfb25cf4318a",
    title="TR 33.812 5.1.3.8.4.3, last paragraph: network-initiated replacement of the initial-access credential",
    steps=(
        SeedStep("before", "M2ME provisioned by its SHO and attached with the MCIM", (M2ME, VNO, SHO),
                 before_m2me_provisioned),
        SeedStep(1, "DPF offers a new initial-access credential; the M2ME accepts", (DPF, M2ME),
                 step_01_dpf_offers_replacement),
        SeedStep(2, "CCIF issues it (the ICF updated); the DPF wraps it for the TRE", (DPF, CCIF, ICF),
                 step_02_ccif_issues),
        SeedStep(3, "DPF delivers it; the M2ME installs it into the TRE and reports", (DPF, M2ME),
                 step_03_m2me_installs),
        SeedStep("after", "What the M2ME holds", (M2ME,), after_what_the_m2me_holds),
    ),
)
