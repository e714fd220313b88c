"""The initial network access credential (PCID, K, OPc, lifetime) lives in the TRE from
manufacture on (TR 33.812 5.1.3.8.4.3, last paragraphs): sealed by the TPM under its own policy
at its own persistent handle, apart from any MCIM; the card is written from it."""

from __future__ import annotations

import pytest
from tpm2_pytss.constants import TPMA_OBJECT

from mcim_hil.cli import _describe
from mcim_hil.drivers.errors import TpmError
from mcim_hil.drivers.sja2 import Sja2
from mcim_hil.m2me.tre import ACCESS_CREDENTIAL_HANDLE, MCIM_HANDLE
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.session import Session

RELAYED = pytest.mark.session_options(air="relayed")


@RELAYED
def test_manufacture_seals_the_pcid_credential_in_the_tre_apart_from_any_mcim(m2me: Session) -> None:
    s = m2me
    tpm = s.devices.tpm
    assert ACCESS_CREDENTIAL_HANDLE in tpm.list_persistent() and MCIM_HANDLE not in tpm.list_persistent()
    public = tpm.read_public(ACCESS_CREDENTIAL_HANDLE).publicArea
    # its own policy (owner secret + Unseal), no password use, fixed to this TPM
    assert bytes(public.authPolicy) == tpm.owner_unseal_policy()
    assert not public.objectAttributes & TPMA_OBJECT.USERWITHAUTH
    assert public.objectAttributes & TPMA_OBJECT.FIXEDTPM
    # the MCIM's policy (PCR state) does not open it: the TPM refuses
    with pytest.raises(TpmError):
        tpm.unseal_persistent(ACCESS_CREDENTIAL_HANDLE, s.tre.pcr_selection, salt=s.tre.keys().storage_key)
    credential = s.tre.access_credential()
    keys = Sja2(s.devices.uicc).read_keys(adm1=s.bench.uicc.adm1.resolve_key()).usim
    assert credential.pcid == s.m2me.pcid == s.m2me.identity_on_card()
    assert keys.k == credential.k and keys.op_opc == credential.opc
    assert 729 < credential.lifetime_left() / 86400 <= 730    # the CCIF's two years
    assert credential.k.hex() not in repr(credential) and credential.opc.hex() not in repr(credential)


@RELAYED
def test_bench_check_says_where_the_credential_lives(m2me: Session) -> None:
    credential = m2me.tre.access_credential()
    m2me.tre.release()   # as in bench check: no session keys loaded (swtpm has 3 object slots)
    rows = dict(_describe("tpm", m2me.devices, None))
    line = rows["initial-access credential"]
    assert f"persistent 0x{ACCESS_CREDENTIAL_HANDLE:08x}" in line and m2me.m2me.pcid in line
    assert "730 days left" in line or "729 days left" in line
    assert credential.k.hex() not in line and credential.opc.hex() not in line


@RELAYED
def test_no_mcim_install_touches_the_initial_access_credential(m2me: Session) -> None:
    s = m2me
    tpm = s.devices.tpm
    before = tpm.read_public(ACCESS_CREDENTIAL_HANDLE).marshal()
    outcome = run_procedure(PROCEDURES["initial-ivf"], s, s.record)
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    assert MCIM_HANDLE in tpm.list_persistent()
    assert tpm.read_public(ACCESS_CREDENTIAL_HANDLE).marshal() == before
    assert s.m2me.identity_on_card() != s.m2me.pcid and s.tre.access_credential().pcid == s.m2me.pcid
