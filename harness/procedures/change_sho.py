"""Seed 004, 4th change: TR 33.812 5.1.3.8.4.2, the change of SHO by re-provisioning over the
connectivity the old SHO provides, in 14 steps, the new SHO taking the integrity validation
result from the IVF (steps 3-5).

"before" runs the seed's own initial provisioning (seed 004, 3rd change: the PVA issues its
integrity result to the IVF, which steps 3-5 rely on) into the same record, ending with the M2ME
attached with the old SHO's MCIM. "after": the M2ME attaches with the new SHO's MCIM.

Order of the seed, kept: the old MCIM is discarded (s8: TPM object evicted, the card's IMSI/K/OPc
overwritten with the initial-access credential the TRE keeps) before the new one is installed
(s12). If the install fails, the M2ME falls back to the initial-access credential (TRE -> UICC),
reports the failure (s12, s13), and "after" shows the recovery: an attach with the PCID.
"""

from __future__ import annotations

from . import initial_ivf
from . import steps as op
from .base import Procedure, SeedStep

M2ME, SUBSCRIBER, DPF, DRF, NSHO, OSHO, PVA, IVF, VNO = ("M2ME", "Subscriber", "RO/DPF", "RO/DRF", "NSHO", "OSHO",
                                                       "PVA", "IVF", "VNO")

# the initial provisioning the change starts from
INITIAL = initial_ivf.PROCEDURE


def before_m2me_provisioned_by_old_sho(s): return op.provisioned_by_old_sho(s, INITIAL)
def step_01_subscriber_contacts_new_sho(s): return op.subscriber_contacts_new_sho(s)
def step_02_subscriber_instructs_m2me(s): return op.subscriber_instructs_m2me(s)
def step_03_new_sho_requests_pva_and_inquires_ivf(s): return op.new_sho_requests_validation_via_ivf(s)
def step_04_pva_authenticity_ivf_integrity(s): return op.pva_validates_authenticity_ivf_provides_integrity(s)
def step_05_pva_indicates_success(s): return op.pva_indicates_success_to_new_sho(s)
def step_06_new_sho_sends_mcim_to_dpf(s): return op.new_sho_sends_mcim_to_dpf(s)
def step_07_dpf_downloads_over_old_sho(s): return op.dpf_downloads_over_old_sho(s)
def step_08_m2me_discards_old_credentials(s): return op.m2me_discards_old_credentials(s)
def step_09_m2me_tells_old_sho(s): return op.m2me_tells_old_sho(s)
def step_10_old_sho_acknowledges(s): return op.old_sho_acknowledges(s)
def step_11_m2me_relays_ack_via_dpf(s): return op.m2me_relays_ack_via_dpf(s)
def step_12_m2me_provisions_new_mcim(s): return op.m2me_installs_new_mcim(s)
def step_13_dpf_reports_to_new_sho(s): return op.dpf_reports_to_new_sho(s)
def step_14_new_sho_registers_at_ro(s): return op.new_sho_registers_at_ro(s)
def after_m2me_attaches_with_new_mcim(s): return op.attach_after_change(s)


PROCEDURE = Procedure(
    name="change-sho",
    seed="004_b1edbfb25cf4318a",
    title="TR 33.812 5.1.3.8.4.2: change of SHO over the old SHO's connectivity, IVF inquiry "
          "(seed 004, 4th change, 14 steps)",
    steps=(
        SeedStep("before", "M2ME provisioned by the old SHO and attached with its MCIM", (M2ME, VNO, OSHO),
                 before_m2me_provisioned_by_old_sho),
        SeedStep(1, "Subscriber contacts the new SHO, transfers the M2ME's parameters", (SUBSCRIBER, NSHO),
                 step_01_subscriber_contacts_new_sho),
        SeedStep(2, "Subscriber instructs the M2ME to re-provision", (SUBSCRIBER, M2ME, DPF),
                 step_02_subscriber_instructs_m2me),
        SeedStep(3, "New SHO requests the PVA (authenticity), inquires the IVF (integrity)", (NSHO, M2ME, PVA, IVF),
                 step_03_new_sho_requests_pva_and_inquires_ivf,
                 kinds=("PlatformCredentialRequest", "IntegrityInquiry", "ChallengeRequest", "EvidenceRequest",
                        "ValidationRequest"), leads=2),
        SeedStep(4, "PVA validates authenticity; the IVF provides the integrity result", (PVA, "M2MES", IVF),
                 step_04_pva_authenticity_ivf_integrity, kinds=("ReferenceValuesRequest", "OcspRequest")),
        SeedStep(5, "PVA indicates the successful validation to the new SHO", (PVA, NSHO),
                 step_05_pva_indicates_success, kinds=("ValidationResultMessage",)),
        SeedStep(6, "New SHO sends its MCIM to the DPF", (NSHO, DPF), step_06_new_sho_sends_mcim_to_dpf),
        SeedStep(7, "DPF sends the whole new MCIM over the old SHO's connectivity", (DPF, M2ME),
                 step_07_dpf_downloads_over_old_sho),
        SeedStep(8, "M2ME discards the old SHO's AVs and MCIM credentials", (M2ME,),
                 step_08_m2me_discards_old_credentials),
        SeedStep(9, "M2ME tells the old SHO it discarded them", (M2ME, OSHO), step_09_m2me_tells_old_sho,
                 kinds=("CredentialsDiscarded",), leads=1),
        SeedStep(10, "Old SHO acknowledges", (OSHO, M2ME), step_10_old_sho_acknowledges,
                 kinds=("DiscardAcknowledgement",)),
        SeedStep(11, "M2ME sends the acknowledgement to the DPF, relayed to the new SHO", (M2ME, DPF, NSHO),
                 step_11_m2me_relays_ack_via_dpf),
        SeedStep(12, "M2ME provisions the new MCIM into the TRE with the DPF's aid", (M2ME, DPF),
                 step_12_m2me_provisions_new_mcim),
        SeedStep(13, "DPF reports the provisioning status to the new SHO", (DPF, NSHO),
                 step_13_dpf_reports_to_new_sho, after_failure=True),
        SeedStep(14, "New SHO registers the M2ME as subscribing to it at the RO", (NSHO, DRF),
                 step_14_new_sho_registers_at_ro),
        SeedStep("after", "M2ME attaches with the new SHO's MCIM (after a failed install: with the PCID)",
                 (M2ME, VNO, NSHO), after_m2me_attaches_with_new_mcim, after_failure=True),
    ),
)
