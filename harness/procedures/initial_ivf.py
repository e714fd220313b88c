"""Seed 004, 3rd change: TR 33.812 5.1.3.7.1 in 14 steps, the PVA issuing its integrity
validation result to the IVF (step 10), so a later new SHO can inquire instead of having the
PVA validate again (seed 004, 4th change)."""

from __future__ import annotations

from . import steps as op
from .base import Procedure, SeedStep

M2ME, VNO, ICF, DRF, DPF, SHO, PVA, IVF, CCIF = ("M2ME", "VNO", "RO/ICF", "RO/DRF", "RO/DPF", "SHO", "PVA",
                                                "IVF", "CCIF")


def step_01_m2me_attaches_with_pcid(s): return op.attach_with_pcid(s)
def step_02_vno_contacts_icf(s): return op.vno_contacts_icf(s, 2) + "; " + op.icf_generates_avs(s, 2)
def step_03_ro_transfers_avs_vno_authenticates(s): return op.ro_transfers_avs(s, 3) + "; " + op.vno_runs_aka(s, 3)
def step_04_vno_provides_ip(s): return op.vno_assigns_ip(s, 4)
def step_05_m2me_connects_ro_forwards_pcid(s): return op.connect_and_forward(s)
def step_06_ro_assists_sho_discovery(s): return op.bootstrap_and_discovery(s)
def step_07_ro_registers_m2me_at_sho(s): return op.drf_registers_at_sho(s)
def step_08_sho_requests_validation(s): return op.sho_requests_validation(s, issue_to_ivf=True)
def step_09_pva_validates(s): return op.pva_validates(s, 9)
def step_10_pva_sends_results_and_issues_to_ivf(s): return op.pva_returns_result_and_issues_to_ivf(s, 10)
def step_11_sho_authorises_dpf(s): return op.sho_builds_and_authorises(s)
def step_12_dpf_downloads_mcim(s): return op.dpf_downloads(s)
def step_13_m2me_provisions_and_reports(s): return op.m2me_installs_and_reports(s)
def step_14_dpf_reports_to_sho(s): return op.dpf_reports_to_sho(s)
def after_m2me_attaches_with_mcim(s): return op.attach_with_mcim(s)


PROCEDURE = Procedure(
    name="initial-ivf",
    seed="004_b1edbfb25cf4318a",
    title="TR 33.812 5.1.3.7.1 with the IVF (seed 004, 3rd change, 14 steps)",
    steps=(
        SeedStep(1, "M2ME attaches to the VNO with its PCID", (M2ME, VNO), step_01_m2me_attaches_with_pcid,
                 kinds=("AttachRequest", "AT+CGATT=1"), leads=3),
        SeedStep(2, "VNO contacts the RO's ICF", (VNO, ICF, CCIF), step_02_vno_contacts_icf,
                 kinds=("AuthDataRequest",)),
        SeedStep(3, "RO transfers AVs; the VNO authenticates the PCID/M2ME", (ICF, VNO, M2ME),
                 step_03_ro_transfers_avs_vno_authenticates,
                 kinds=("AuthDataResponse", "AuthDataReject", "AuthenticationRequest", "AUTHENTICATE", "SELECT")),
        SeedStep(4, "VNO provides IP connectivity to reach the RO", (VNO, M2ME), step_04_vno_provides_ip,
                 kinds=("AttachAccept", "AttachReject", "AT+CEREG?", "AT+CGPADDR=1")),
        SeedStep(5, "M2ME connects to the RO; ICF forwards the PCID to the DRF", (M2ME, ICF, DRF),
                 step_05_m2me_connects_ro_forwards_pcid),
        SeedStep(6, "RO assists the M2ME in discovering its SHO", (DRF, M2ME, DPF), step_06_ro_assists_sho_discovery),
        SeedStep(7, "RO registers the M2ME at the SHO", (DRF, SHO), step_07_ro_registers_m2me_at_sho),
        SeedStep(8, "SHO requests the PVA to validate the M2ME", (SHO, M2ME, PVA), step_08_sho_requests_validation,
                 kinds=("PlatformCredentialRequest",), leads=2),
        SeedStep(9, "PVA validates authenticity and integrity", (PVA, "M2MES"), step_09_pva_validates,
                 kinds=("ReferenceValuesRequest", "OcspRequest")),
        SeedStep(10, "PVA sends results to the SHO and issues the integrity result to the IVF", (PVA, SHO, IVF),
                 step_10_pva_sends_results_and_issues_to_ivf, kinds=("IntegrityResultIssue", "ValidationResultMessage")),
        SeedStep(11, "SHO, on a positive validation, authorises the DPF", (SHO, DPF), step_11_sho_authorises_dpf),
        SeedStep(12, "DPF downloads the MCIM object to the M2ME", (DPF, M2ME), step_12_dpf_downloads_mcim),
        SeedStep(13, "M2ME provisions the MCIM into the TRE, reports to the DPF", (M2ME, DPF),
                 step_13_m2me_provisions_and_reports),
        SeedStep(14, "DPF reports the provisioning status to the SHO", (DPF, SHO), step_14_dpf_reports_to_sho,
                 after_failure=True),
        SeedStep("after", "M2ME attaches to the SHO's network with the MCIM", (M2ME, VNO, SHO),
                 after_m2me_attaches_with_mcim),
    ),
)
