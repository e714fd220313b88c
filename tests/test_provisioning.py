"""TR 33.812 initial MCIM provisioning end to end on the emulated bench (swtpm, pcscd + vpcd +
the virtual card, the modem on a pty), and its failures: each fails at the seed step where a
lab engineer would look, with nothing installed (no MCIM object in the TPM, the card unchanged).
"""

from __future__ import annotations

import hashlib

import pytest

from mcim_hil.aka.auc import AuC
from mcim_hil.drivers.sja2 import Sja2
from mcim_hil.emulators.swtpm import Swtpm
from mcim_hil.drivers.tpm import Tpm
from mcim_hil.m2me.components import MODULE_FIRMWARE, module_firmware_from
from mcim_hil.m2me.tre import MCIM_HANDLE
from mcim_hil.network import m2msimmobj
from mcim_hil.network.mcim import seal_mcim
from mcim_hil.network.pki import CertificateAuthority
from mcim_hil.procedures import PROCEDURES, Procedure, RunOutcome, run_procedure
from mcim_hil.session import Session

# These tests use the project's pytest plugin (fixtures/): `m2me` is a pristine, manufactured
# M2ME on the session's bench (--bench, default the emulated one), left as found after each test.
# `session_options` chooses the air interface and what the supplier or the PVA trust.
RELAYED = pytest.mark.session_options(air="relayed")


def module_attach_only(m2me: Session) -> None:
    if m2me.emulated is None or m2me.emulated.modem_emulator is None:
        pytest.skip("the module's own attach needs the emulated modem (its radio reaches this network)")


def adm1(m2me: Session) -> bytes:
    return m2me.bench.uicc.adm1.resolve_key()


def run(s: Session, procedure: Procedure) -> RunOutcome:
    return run_procedure(procedure, s, s.record)


def card_state(s: Session) -> dict[str, str]:
    """Digest per profile file: what provisioning would change. EF.USIM_SQN is left out (every
    AKA moves it); digests, so a failing comparison never prints key material."""
    snap = Sja2(s.devices.uicc).snapshot(adm1=adm1(s))
    return {ef.where: hashlib.sha256(data).hexdigest()[:16] for ef, data in snap.contents
            if ef.name != "EF.USIM_SQN"}


def assert_nothing_installed(s: Session, card_before: dict[str, str]) -> None:
    assert MCIM_HANDLE not in s.devices.tpm.list_persistent(), "an MCIM object was left in the TPM"
    assert s.m2me.identity_on_card() == s.m2me.pcid
    assert card_state(s) == card_before, "the card was changed"


def failed_at(outcome: RunOutcome) -> int | str:
    row = outcome.failed_step
    assert row is not None, "the run did not fail"
    return row.number


# -- the procedures pass ---------------------------------------------------------------------------

@pytest.mark.parametrize("air", [pytest.param("module", marks=pytest.mark.session_options(air="module")),
                                 pytest.param("relayed", marks=RELAYED)])
@pytest.mark.parametrize("name, steps", [("initial", 21), ("initial-ivf", 14)])
def test_procedure_passes_every_seed_step(m2me: Session, air: str, name: str, steps: int) -> None:
    s = m2me
    if air == "module":
        module_attach_only(s)
    pcid = s.m2me.pcid
    outcome = run(s, PROCEDURES[name])
    assert [r.verdict for r in outcome.rows] == ["passed"] * (steps + 1), [(r.number, r.detail) for r in outcome.rows]
    assert [r.number for r in outcome.rows] == list(range(1, steps + 1)) + ["after"]
    # the MCIM is in the TPM and on the card; the card no longer presents the PCID
    assert MCIM_HANDLE in s.devices.tpm.list_persistent()
    imsi = s.m2me.identity_on_card()
    assert imsi != pcid and imsi == s.network.sho.imsi_of(pcid)
    assert imsi.startswith(s.network.options.sho_plmn)
    # the AKA ran on the card: the attach step's AUTHENTICATE answers are in the record
    aka_step = 5 if name == "initial" else 3
    commands = [e.get("command") for e in next(st for st in s.record.steps if st.number == aka_step).events]
    if air == "relayed":
        assert "AUTHENTICATE" in commands
    else:
        assert "AuthenticationResponse" in [e.get("kind") for st in s.record.steps for e in st.events]
    if name == "initial-ivf":
        held = s.network.ivf.result(s.m2me.platform_id)
        assert held is not None and held["passed"]


# -- failures, each at its step, nothing installed ---------------------------------------------------

@pytest.mark.session_options(air="relayed", golden={
    MODULE_FIRMWARE: module_firmware_from("mcim-hil", "EMU-LTE", "EMU-LTE_0.9.0")})
def test_component_measured_differently_fails_validation_at_step_14(m2me: Session) -> None:
    s = m2me
    before = card_state(s)
    outcome = run(s, PROCEDURES["initial"])
    assert failed_at(outcome) == 14
    assert "reference_values" in outcome.failed_step.detail and MODULE_FIRMWARE in outcome.failed_step.detail
    assert [r.verdict for r in outcome.rows if isinstance(r.number, int) and r.number > 15] == ["skipped"] * 6
    assert_nothing_installed(s, before)


@RELAYED
def test_wrong_temporary_key_is_a_mac_failure_at_the_card_in_step_5(m2me: Session) -> None:
    s = m2me
    # the card holds another K than the one the CCIF issued for its PCID
    Sja2(s.devices.uicc).program(s.m2me.pcid, bytes(16), bytes(16), adm1=adm1(s))
    before = card_state(s)
    outcome = run(s, PROCEDURES["initial"])
    assert failed_at(outcome) == 5
    assert "#20 MAC failure at the card" in outcome.failed_step.detail
    assert_nothing_installed(s, before)


@pytest.mark.session_options(air="module")
def test_wrong_temporary_key_with_the_module_attach_is_denied_at_step_5(m2me: Session) -> None:
    s = m2me
    module_attach_only(s)
    Sja2(s.devices.uicc).program(s.m2me.pcid, bytes(16), bytes(16), adm1=adm1(s))
    outcome = run(s, PROCEDURES["initial"])
    assert failed_at(outcome) == 5
    assert s.devices.modem.registration().stat == 3  # +CEREG: registration denied


@RELAYED
def test_stale_sqn_is_resynchronised_and_the_procedure_passes(m2me: Session) -> None:
    s = m2me
    cred = s.network.ccif.db.get("credentials", pcid=s.m2me.pcid)
    # the card has already accepted a much higher SQN than the ICF's AuC will start from
    ahead = AuC(cred["k"], cred["opc"], seq_start=5000).generate_av()
    s.devices.uicc.select_adf_usim()
    s.devices.uicc.authenticate(ahead.rand, ahead.autn)
    outcome = run(s, PROCEDURES["initial"])
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows]
    assert "synch failure, AUTS resynchronised" in outcome.rows[4].detail
    kinds = [e.get("kind") for e in s.record.steps[4].events]
    assert "ResyncRequest" in kinds and kinds.count("AuthenticationRequest") == 2


@RELAYED
def test_quote_over_an_old_nonce_fails_at_step_14(m2me: Session) -> None:
    s = m2me
    honest = s.m2me.evidence
    stale = bytes(range(32))  # a nonce the PVA issued to nobody (a replayed quote)
    s.m2me.evidence = lambda nonce, pcrs, challenge: honest(stale, pcrs, challenge)
    before = card_state(s)
    outcome = run(s, PROCEDURES["initial"])
    assert failed_at(outcome) == 14
    assert "quote_nonce" in outcome.failed_step.detail
    assert_nothing_installed(s, before)


@RELAYED
def test_pfc_revoked_at_ocsp_fails_at_step_14(m2me: Session) -> None:
    s = m2me
    s.network.m2mes.revoke(s.m2me.platform_id)
    before = card_state(s)
    outcome = run(s, PROCEDURES["initial"])
    assert failed_at(outcome) == 14
    assert "pfc_status_ocsp" in outcome.failed_step.detail and "revoked" in outcome.failed_step.detail
    assert_nothing_installed(s, before)


@pytest.mark.session_options(air="relayed",
                             ek_roots=[CertificateAuthority.create("Some other TPM vendor EK CA").certificate])
def test_ek_certificate_from_an_unknown_ca_fails_at_step_14(m2me: Session) -> None:
    s = m2me
    before = card_state(s)
    outcome = run(s, PROCEDURES["initial"])
    assert failed_at(outcome) == 14
    assert "ek_certificate_chain" in outcome.failed_step.detail
    assert_nothing_installed(s, before)


@RELAYED
def test_m2msimmobj_wrapped_for_another_tpm_fails_import_at_step_19(m2me: Session) -> None:
    s = m2me
    with Swtpm() as other, Tpm.open(other.tcti) as other_tpm:
        other_key = other_tpm.create_storage_key()
        other_public = other_key.public.marshal()

    def rewrap_for_other_tpm(s: Session) -> None:
        sho = s.network.sho
        imsi = sho.imsi_of(s.m2me.pcid)
        row = sho.db.get("subscribers", imsi=imsi)
        current = m2msimmobj.parse(row["m2msimmobj"], sho._signing_key.public_key())
        from mcim_hil.network.mcim import Mcim
        import datetime as dt
        mcim = Mcim(imsi=imsi, k=row["k"], opc=row["opc"], home_plmn=sho.home_plmn,
                    not_after=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
        pcrs = s.devices.tpm.pcr_read(list(current.sealed.pcr_selection))
        authority = sho.db.get("validations", pcid=s.m2me.pcid)["unseal_authority_name"]
        sealed, envelope = seal_mcim(mcim, other_public, sorted(pcrs), pcrs, authority_name=authority)
        forged = m2msimmobj.build(sealed, mcim_envelope=envelope, metadata=dict(current.metadata),
                                  signer=sho._signing_key)
        sho.db.update("subscribers", {"imsi": imsi}, m2msimmobj=forged)

    before = card_state(s)
    outcome = run(s, PROCEDURES["initial"].after_step(16, rewrap_for_other_tpm))
    assert failed_at(outcome) == 19
    assert "TPM2_Import" in outcome.failed_step.detail
    # the failure is reported to the DPF and on to the SHO
    assert [r.verdict for r in outcome.rows if r.number in (20, 21)] == ["failed", "failed"]
    assert (s.network.ro.dpf.status(s.m2me.pcid) or {}).get("success") in (0, False)
    assert_nothing_installed(s, before)


@pytest.mark.parametrize("damage", ["truncated", "altered"])
@RELAYED
def test_damaged_m2msimmobj_is_refused_before_install_at_step_18(m2me: Session, damage: str) -> None:
    s = m2me

    def damage_in_transit(s: Session) -> None:
        dpf = s.network.ro.dpf
        row = dpf.db.get("authorisations", pcid=s.m2me.pcid)
        doc: bytes = row["m2msimmobj"]
        if damage == "truncated":
            doc = doc[: len(doc) * 2 // 3]
        else:  # one character of the wrapped MCIM changed
            at = doc.index(b"<Value>", doc.index(b"Duplicate</NodeName>")) + 20
            doc = doc[:at] + (b"A" if doc[at:at + 1] != b"A" else b"B") + doc[at + 1:]
        dpf.db.update("authorisations", {"pcid": s.m2me.pcid}, m2msimmobj=doc)

    before = card_state(s)
    outcome = run(s, PROCEDURES["initial"].after_step(17, damage_in_transit))
    assert failed_at(outcome) == 18
    reason = {"truncated": "document is truncated or not well-formed XML (",
              "altered": "integrity check failed: the object was altered or not signed by the SHO"}[damage]
    assert outcome.failed_step.detail.startswith(
        f"Refused: M2ME {s.m2me.pcid}: M2MSIMMobj download refused: {reason}")
    assert_nothing_installed(s, before)


@pytest.mark.session_options(air="relayed", network={"ro_colocated_with_vno": True, "pva_dpf_hosted_by_sho": True,
                                                     "vno_is_sho": True})
def test_two_operators_topology_of_the_seed_passes(m2me: Session) -> None:
    """Seed 000's closing notes: the RO is the VNO, PVA and DPF are hosted by the SHO, and the
    VNO and the SHO are the same operator."""
    s = m2me
    at = s.network.addresses
    assert at.icf.split(".", 1)[1] == at.vno.split(".", 1)[1]      # RO co-located with the VNO
    assert at.pva.split(".", 1)[1] == at.sho.split(".", 1)[1] == at.dpf.split(".", 1)[1]
    outcome = run(s, PROCEDURES["initial"])
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    assert s.m2me.identity_on_card().startswith(s.network.options.vno_plmn)  # home on the VNO's network
