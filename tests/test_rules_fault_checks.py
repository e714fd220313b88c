"""The fault matrix's end-state checks (harness/faults/checks.py) fail, each for its own reason,
when the devices are left in the state it guards against: the card presenting no credential of
this M2ME, two SHOs' credentials active, a retry counter lower, an MCIM object the card does not
match, the initial-access credential gone, a transient object leaked. Real stacks: the session's
card through pcscd, its swtpm, and a fresh swtpm for the TPM's checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mcim_hil.drivers.tpm import Tpm
from mcim_hil.drivers.uicc import ADM1
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.faults.checks import Baseline, baseline, credential_checks, tpm_checks
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.session import Session

RELAYED = pytest.mark.session_options(air="relayed")


def _by_name(checks) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.passed, c.detail) for c in checks}


@pytest.fixture()
def provisioned(m2me: Session) -> Session:
    outcome = run_procedure(PROCEDURES["initial-ivf"], m2me, m2me.record)
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    return m2me


@RELAYED
def test_a_provisioned_m2me_passes_every_credential_check(provisioned: Session) -> None:
    s = provisioned
    before = baseline(s, s.devices.tpm.tcti)
    credential, checks = credential_checks(s, before)
    assert credential == "old MCIM"
    assert all(passed for passed, _ in _by_name(checks).values()), checks
    assert _by_name(checks)["a real attach with it"] == (True, "attached with old MCIM")


@RELAYED
def test_two_shos_active_fail_the_check(provisioned: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    s = provisioned
    before = baseline(s, s.devices.tpm.tcti)
    net, pcid = s.network, s.m2me.pcid
    assert net.nsho is not None
    # the new SHO's books also show an active subscription for this M2ME (a change left half done)
    monkeypatch.setattr(net.nsho, "imsi_of", lambda p: "001040000000001" if p == pcid else None)
    monkeypatch.setattr(net.nsho, "subscriber", lambda imsi: {"state": "active"} if imsi == "001040000000001" else None)
    _, checks = credential_checks(s, before)
    assert _by_name(checks)["never two SHOs' credentials active"] == (False, "active at: old SHO, new SHO")


@RELAYED
def test_a_lower_adm1_counter_fails_the_check(provisioned: Session) -> None:
    s = provisioned
    uicc = s.devices.uicc
    uicc.reconnect()      # a new card session: ADM1 not verified, so its counter reads
    before = baseline(s, s.devices.tpm.tcti)
    tries = uicc.pin_tries_left(ADM1)
    assert tries == before.adm1_tries and tries >= 3
    with pytest.raises(Exception, match="63C"):   # one wrong ADM1 try (never the last one)
        uicc.verify_adm(b"00000000")
    try:
        _, checks = credential_checks(s, before)
        passed, detail = _by_name(checks)["retry counters not lower"]
        assert not passed and detail == f"ADM1 {tries}->{tries - 1}"
    finally:   # the right key puts the counter back
        uicc.verify_adm(s.bench.uicc.adm1.resolve_key())
    assert uicc.pin_tries_left(ADM1) in (None, tries)


@RELAYED
def test_a_card_presenting_no_credential_of_this_m2me_fails_the_check(provisioned: Session,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    s = provisioned
    before = baseline(s, s.devices.tpm.tcti)
    monkeypatch.setattr(s.m2me, "identity_on_card", lambda: "001019999999999")   # what the card would read after a foreign write
    credential, checks = credential_checks(s, before)
    assert credential == "none"
    assert _by_name(checks)["one credential on the card"] == (
        False, "the card presents an IMSI that is no credential of this M2ME")
    assert not _by_name(checks)["a real attach with it"][0]


@pytest.fixture()
def fresh_tpm() -> Iterator[Swtpm]:
    with Swtpm(shared_identity=True) as emulator:
        yield emulator


def test_the_tpm_checks_name_a_missing_credential_an_unmatched_mcim_and_a_leaked_object(fresh_tpm: Swtpm) -> None:
    tcti = fresh_tpm.tcti
    with Tpm.open(tcti) as tpm:
        free = tpm.transient_slots_free()
    before = Baseline(3, 3, free)
    # a TPM that never held the initial-access credential, with the card said to be on an MCIM
    checks = _by_name(tpm_checks(tcti, "old MCIM", before))
    assert checks["the TPM's MCIM objects match the card"] == (False, "0 MCIM object(s) (none) with the card on old MCIM")
    assert checks["the initial-access credential kept"] == (False, "0x81000a10 GONE")
    assert checks["no transient TPM object leaked"] == (True, f"{free} free transient slots, {free} before")
    # no MCIM object and the card on the PCID: that part holds
    assert _by_name(tpm_checks(tcti, "initial-access", before))["the TPM's MCIM objects match the card"][0]
    # an object left loaded by someone (swtpm keeps transient objects across connections)
    from tpm2_pytss import ESAPI, TCTILdr, TPM2B_PUBLIC
    name, _, conf = tcti.partition(":")
    tcti_ctx = TCTILdr(name, conf)
    esapi = ESAPI(tcti_ctx)
    esapi.create_primary(None, TPM2B_PUBLIC.parse("ecc256"))   # never flushed
    esapi.close()
    tcti_ctx.close()
    leaked = _by_name(tpm_checks(tcti, "initial-access", before))["no transient TPM object leaked"]
    assert leaked == (False, f"{free - 1} free transient slots, {free} before")
