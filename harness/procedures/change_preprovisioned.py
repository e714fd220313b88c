"""Seed 004, 4th change, the variant at the end of 5.1.3.8.4.2: the MCIMs of the old and the new
SHO both in the TRE before the card is switched, "strictly separated": each SHO seals its MCIM to
a storage key of the TRE certified for it alone (a primary of its own), so the TPM imports an
SHO's object under that key only. The steps are change-sho's, except:

- 6: the new SHO gets its own sealing parent (certified by the AK it validated) and seals to it;
- 7: the DPF downloads, and the M2ME keeps the new MCIM in the TRE beside the old one (card as is);
- 12: the M2ME switches the card to the new SHO's MCIM, unsealed under the new SHO's parent.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mcim_hil.m2me.tre import MCIM_HANDLE

from . import change_sho
from . import steps as op
from .base import Procedure, StepFailed


def new_sho_seals_to_its_own_parent(s: Any) -> str:
    nsho = op._new_sho(s)
    parent = nsho.request_sealing_parent(s.m2me.pcid)
    document = nsho.build_m2msimmobj(s.m2me.pcid)
    nsho.authorise_provisioning(s.m2me.pcid)
    from mcim_hil.network.attestation import tpm_name
    return (f"new SHO got a sealing parent of its own (name {tpm_name(parent).hex()[:16]}..., certified by the "
            f"validated AK over its nonce), sealed an MCIM for IMSI {nsho.imsi_of(s.m2me.pcid)} to it "
            f"(M2MSIMMobj {len(document)} bytes) and authorised DPF {s.network.ro.dpf.address}")


def dpf_downloads_and_m2me_preprovisions(s: Any) -> str:
    line = op.dpf_downloads_over_old_sho(s)
    try:
        pre = s.m2me.preprovision_mcim()
    except Exception as exc:
        raise StepFailed(f"the new SHO's MCIM was not pre-provisioned: {exc}") from exc
    held = s.devices.tpm.list_persistent()
    if MCIM_HANDLE not in held or pre.tre_handle not in held:
        raise StepFailed("the TRE does not hold both SHOs' MCIM objects")
    if s.m2me.identity_on_card() != s.state["old_mcim"].imsi:
        raise StepFailed("the card changed before the switch")
    return (line + f"; pre-provisioned in the TRE at 0x{pre.tre_handle:08x} under the new SHO's parent, beside "
            f"the old SHO's 0x{MCIM_HANDLE:08x}; the card still holds IMSI {s.state['old_mcim'].imsi}")


def m2me_switches_the_card(s: Any) -> str:
    try:
        installed = s.m2me.switch_to_preprovisioned()
    except Exception as exc:
        s.state["install_error"] = str(exc)
        s.m2me.report_status(False, str(exc))
        raise StepFailed(f"MCIM not switched: {exc}") from exc
    s.state["installed"] = installed
    s.m2me.report_status(True, "pre-provisioned MCIM in use")
    if not installed.imsi.startswith(op._new_sho(s).plmn):
        raise StepFailed(f"the card now holds IMSI {installed.imsi}, not one of the new SHO's PLMN")
    return (f"TRE unsealed the new SHO's MCIM key under that SHO's own parent (0x{installed.tre_handle:08x}); "
            f"UICC personalised with IMSI {installed.imsi}; reported success to the DPF")


_REPLACED = {6: ("New SHO seals its MCIM to its own sealing parent, sends it to the DPF",
                 new_sho_seals_to_its_own_parent),
             7: ("DPF sends the new MCIM over the old SHO's connectivity; the TRE keeps it beside the old one",
                 dpf_downloads_and_m2me_preprovisions),
             12: ("M2ME switches the card to the new SHO's pre-provisioned MCIM", m2me_switches_the_card)}

PROCEDURE = Procedure(
    name="change-sho-preprovisioned",
    seed=change_sho.PROCEDURE.seed,
    title="TR 33.812 5.1.3.8.4.2, variant: both SHOs' MCIMs pre-provisioned in the TRE, strictly separated "
          "(seed 004, 4th change)",
    steps=tuple(dataclasses.replace(st, title=_REPLACED[st.number][0], action=_REPLACED[st.number][1])
                if st.number in _REPLACED else st for st in change_sho.PROCEDURE.steps),
)
