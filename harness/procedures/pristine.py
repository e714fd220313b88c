"""Seed 004, 4th change: TR 33.812 5.1.3.8.4.3, the change of SHO by going back to the pristine
state and re-doing the initial provisioning, in 15 steps.

"before" runs the seed's initial provisioning (initial-ivf) into the same record, as change-sho
does. Step 3 removes the old SHO's MCIM (TPM object evicted, the card re-personalised with the
PCID credential the TRE keeps) and the M2ME attaches again with its PCID (4-6: AKA with the RO's
ICF). The DRF leads it to the new SHO (8), which validates it through the PVA and the IVF (9-11)
and authorises the DRF to authorise its DPF (12). "after": the new MCIM attaches, the old IMSI
is refused by the old SHO.
"""

from __future__ import annotations

from . import change_sho
from . import pristine_steps as pop
from . import steps as op
from .base import Procedure, SeedStep

M2ME, SUBSCRIBER, VNO, ICF, DRF, DPF, NSHO, OSHO, PVA, IVF = ("M2ME", "Subscriber", "VNO", "RO/ICF", "RO/DRF",
                                                              "RO/DPF", "NSHO", "OSHO", "PVA", "IVF")


def before_m2me_provisioned_by_old_sho(s): return op.provisioned_by_old_sho(s, change_sho.INITIAL)
def step_01_subscriber_contacts_new_sho(s): return pop.subscriber_contacts_new_sho(s)
def step_02_subscriber_instructs_m2me(s): return pop.subscriber_instructs_pristine(s)
def step_03_m2me_returns_to_pristine(s): return pop.m2me_returns_to_pristine(s)
def step_04_m2me_attaches_with_pcid(s): return pop.m2me_attaches_with_pcid(s)
def step_05_vno_contacts_icf_and_authenticates(s): return pop.vno_gets_avs_from_icf_and_authenticates(s, 5)
def step_06_vno_provides_ip_to_reach_drf(s): return op.vno_assigns_ip(s, 6)
def step_07_m2me_connects_to_drf(s): return op.connect_and_forward(s)
def step_08_drf_aids_discovery(s): return pop.drf_aids_discovery(s)
def step_09_new_sho_requests_pva_and_inquires_ivf(s): return pop.new_sho_requests_validation_via_ivf(s, 9)
def step_10_pva_authenticity_ivf_integrity(s): return op.pva_validates_authenticity_ivf_provides_integrity(s)
def step_11_results_to_new_sho(s): return pop.pva_sends_results(s, 11)
def step_12_new_sho_authorises_drf_dpf(s): return pop.new_sho_authorises_via_drf(s, 12)
def step_13_dpf_downloads(s): return op.dpf_downloads(s)
def step_14_m2me_provisions_and_reports(s): return pop.m2me_provisions_and_reports(s)
def step_15_ro_reports_to_new_sho(s): return op.dpf_reports_to_new_sho(s)
def after_m2me_attaches_with_new_mcim(s): return op.attach_with_new_mcim(s)


PROCEDURE = Procedure(
    name="pristine",
    seed="004_b1edbfb25cf4318a",
    title="TR 33.812 5.1.3.8.4.3: change of SHO by going back to the pristine state (seed 004, 15 steps)",
    steps=(
        SeedStep("before", "M2ME provisioned by the old SHO and attached with its MCIM", (M2ME, VNO, OSHO),
                 before_m2me_provisioned_by_old_sho),
        SeedStep(1, "Subscriber contacts the new SHO, transfers the M2ME's parameters", (SUBSCRIBER, NSHO, DRF),
                 step_01_subscriber_contacts_new_sho),
        SeedStep(2, "Subscriber instructs the M2ME to re-provision", (SUBSCRIBER, M2ME),
                 step_02_subscriber_instructs_m2me),
        SeedStep(3, "M2ME removes the old SHO's MCIM and returns to the pristine state", (M2ME, OSHO),
                 step_03_m2me_returns_to_pristine),
        SeedStep(4, "M2ME attaches to a VNO with its PCID", (M2ME, VNO), step_04_m2me_attaches_with_pcid,
                 kinds=("AttachRequest", "AT+CGATT=1"), leads=2),
        SeedStep(5, "VNO gets AVs from the RO's ICF and authenticates the PCID/M2ME", (VNO, ICF, M2ME),
                 step_05_vno_contacts_icf_and_authenticates,
                 kinds=("AuthDataRequest", "AuthDataResponse", "AuthDataReject", "AuthenticationRequest",
                        "AUTHENTICATE", "SELECT")),
        SeedStep(6, "VNO provides IP connectivity to reach the RO's DRF", (VNO, M2ME),
                 step_06_vno_provides_ip_to_reach_drf,
                 kinds=("AttachAccept", "AttachReject", "AT+CEREG?", "AT+CGPADDR=1")),
        SeedStep(7, "M2ME connects to the DRF of the RO", (M2ME, ICF, DRF), step_07_m2me_connects_to_drf),
        SeedStep(8, "DRF aids the M2ME to find the new SHO", (DRF, M2ME, DPF, NSHO), step_08_drf_aids_discovery),
        SeedStep(9, "New SHO requests the PVA (authenticity), inquires the IVF (integrity)", (NSHO, M2ME, PVA, IVF),
                 step_09_new_sho_requests_pva_and_inquires_ivf,
                 kinds=("PlatformCredentialRequest", "IntegrityInquiry", "ChallengeRequest", "EvidenceRequest",
                        "ValidationRequest"), leads=2),
        SeedStep(10, "PVA validates authenticity; the IVF provides the integrity result", (PVA, "M2MES", IVF),
                 step_10_pva_authenticity_ivf_integrity, kinds=("ReferenceValuesRequest", "OcspRequest")),
        SeedStep(11, "PVA and IVF send their results to the new SHO", (PVA, IVF, NSHO), step_11_results_to_new_sho,
                 kinds=("ValidationResultMessage",)),
        SeedStep(12, "New SHO authorises the DRF to authorise its DPF", (NSHO, DRF, DPF),
                 step_12_new_sho_authorises_drf_dpf),
        SeedStep(13, "DPF downloads the MCIM object to the M2ME", (DPF, M2ME), step_13_dpf_downloads),
        SeedStep(14, "M2ME provisions the MCIM into the TRE, reports to the RO", (M2ME, DPF),
                 step_14_m2me_provisions_and_reports),
        SeedStep(15, "RO reports the provisioning status to the new SHO", (DPF, NSHO), step_15_ro_reports_to_new_sho,
                 after_failure=True),
        SeedStep("after", "M2ME attaches with the new SHO's MCIM; the old IMSI is refused", (M2ME, VNO, NSHO),
                 after_m2me_attaches_with_new_mcim),
    ),
)
