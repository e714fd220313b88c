"""Seed 000: TR 33.812 5.1.3.7.1, initial provisioning of the MCIM, in 21 steps.

Steps 1-6 initial attach, 7-12 discovery and registration, 13-21 MCIM application provision;
then "the M2ME can attach to the network of the SHO by using the MCIM".
"""

from __future__ import annotations


from . import steps as op
from .base import Procedure, SeedStep

M2ME, VNO, ICF, DRF, DPF, SHO, PVA, CCIF = "M2ME", "VNO", "RO/ICF", "RO/DRF", "RO/DPF", "SHO", "PVA", "CCIF"


def step_01_m2me_attaches_with_pcid(s): return op.attach_with_pcid(s)
def step_02_vno_contacts_icf(s): return op.vno_contacts_icf(s, 2)
def step_03_icf_generates_avs(s): return op.icf_generates_avs(s, 3)
def step_04_ro_transfers_avs(s): return op.ro_transfers_avs(s, 4)
def step_05_vno_authenticates_m2me(s): return op.vno_runs_aka(s, 5)
def step_06_vno_provides_ip(s): return op.vno_assigns_ip(s, 6)
def step_07_m2me_connects_to_ro(s): return op.m2me_connects_to_ro(s)
def step_08_icf_requests_drf_bootstrap(s): return op.icf_requests_bootstrap(s)
def step_09_drf_generates_bootstrap(s): return op.drf_generates_bootstrap(s)
def step_10_drf_sends_bootstrap(s): return op.drf_sends_bootstrap(s)
def step_11_m2me_performs_bootstrap(s): return op.m2me_bootstraps(s)
def step_12_drf_registers_m2me_at_sho(s): return op.drf_registers_at_sho(s)
def step_13_sho_requests_validation(s): return op.sho_requests_validation(s)
def step_14_pva_validates(s): return op.pva_validates(s, 14)
def step_15_pva_sends_results(s): return op.pva_returns_result(s, 15)
def step_16_sho_builds_m2msimmobj(s): return op.sho_builds_m2msimmobj(s)
def step_17_sho_authorises_dpf(s): return op.sho_authorises_dpf(s)
def step_18_dpf_downloads_mcim(s): return op.dpf_downloads(s)
def step_19_m2me_provisions_mcim(s): return op.m2me_installs(s)
def step_20_m2me_reports_status(s): return op.m2me_reports_status(s)
def step_21_dpf_reports_to_sho(s): return op.dpf_reports_to_sho(s)
def after_m2me_attaches_with_mcim(s): return op.attach_with_mcim(s)


PROCEDURE = Procedure(
    name="initial",
    seed="000_51cdc66faac10b80",
    title="TR 33.812 5.1.3.7.1: initial provisioning of the MCIM (21 steps)",
    steps=(
        SeedStep(1, "M2ME attaches to the VNO with its PCID", (M2ME, VNO), step_01_m2me_attaches_with_pcid,
                 kinds=("AttachRequest", "AT+CGATT=1"), leads=5),
        SeedStep(2, "VNO contacts the RO's ICF with the PCID", (VNO, ICF), step_02_vno_contacts_icf,
                 kinds=("AuthDataRequest",)),
        SeedStep(3, "ICF looks up the temporary-access credential, generates AVs", (ICF, CCIF),
                 step_03_icf_generates_avs, kinds=("CredentialRequest", "CredentialResponse")),
        SeedStep(4, "RO transfers AVs for the PCID to the VNO", (ICF, VNO), step_04_ro_transfers_avs,
                 kinds=("AuthDataResponse", "AuthDataReject")),
        SeedStep(5, "VNO authenticates the M2ME with AKA", (VNO, M2ME), step_05_vno_authenticates_m2me,
                 kinds=("AuthenticationRequest", "AUTHENTICATE", "SELECT")),
        SeedStep(6, "VNO provides IP connectivity and an address", (VNO, M2ME), step_06_vno_provides_ip,
                 kinds=("AttachAccept", "AttachReject", "AT+CEREG?", "AT+CGPADDR=1")),
        SeedStep(7, "M2ME connects to the RO over IP", (M2ME, ICF), step_07_m2me_connects_to_ro),
        SeedStep(8, "ICF requests the DRF to bootstrap (PCID, IP address)", (ICF, DRF),
                 step_08_icf_requests_drf_bootstrap),
        SeedStep(9, "DRF finds the DPF and SHO, generates the bootstrap message", (DRF,),
                 step_09_drf_generates_bootstrap),
        SeedStep(10, "DRF sends the bootstrap message to the M2ME", (DRF, M2ME), step_10_drf_sends_bootstrap),
        SeedStep(11, "M2ME performs the bootstrap, opens a management session", (M2ME, DPF),
                 step_11_m2me_performs_bootstrap),
        SeedStep(12, "RO (DRF) registers the M2ME at the SHO", (DRF, SHO), step_12_drf_registers_m2me_at_sho),
        SeedStep(13, "SHO sends PfC and M2ME identity to the PVA, requests validation", (SHO, M2ME, PVA),
                 step_13_sho_requests_validation, kinds=("PlatformCredentialRequest",), leads=2),
        SeedStep(14, "PVA validates authenticity and integrity", (PVA, "M2MES"), step_14_pva_validates,
                 kinds=("ReferenceValuesRequest", "OcspRequest")),
        SeedStep(15, "PVA sends the validation results to the SHO", (PVA, SHO), step_15_pva_sends_results,
                 kinds=("ValidationResultMessage",)),
        SeedStep(16, "SHO encrypts the MCIM for the TRE, builds M2MSIMMobj", (SHO,), step_16_sho_builds_m2msimmobj),
        SeedStep(17, "SHO delivers M2MSIMMobj to the DPF, authorises provisioning", (SHO, DPF),
                 step_17_sho_authorises_dpf),
        SeedStep(18, "DPF downloads the MCIM object to the M2ME", (DPF, M2ME), step_18_dpf_downloads_mcim),
        SeedStep(19, "M2ME decrypts M2MSIMMobj with the TRE, provisions the MCIM", (M2ME,),
                 step_19_m2me_provisions_mcim),
        SeedStep(20, "M2ME reports the provisioning status to the DPF", (M2ME, DPF), step_20_m2me_reports_status,
                 after_failure=True),
        SeedStep(21, "DPF reports the provisioning status to the SHO", (DPF, SHO), step_21_dpf_reports_to_sho,
                 after_failure=True),
        SeedStep("after", "M2ME attaches to the SHO's network with the MCIM", (M2ME, VNO, SHO),
                 after_m2me_attaches_with_mcim),
    ),
)
