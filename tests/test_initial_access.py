"""The initial network access credential (PCID, K, OPc, lifetime) lives in the TRE from
manufacture on (TR 33.812 5.1.3.8.4.3, last paragraphs): sealed by the TPM under its own policy
(PolicySecret on the TRE's unseal authority: any PCR state, this TRE only) at its own persistent
handle, apart from any MCIM; the card is written from it."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from tpm2_pytss.constants import TPMA_OBJECT

from mcim_hil.cli import _describe
from mcim_hil.drivers.errors import TpmError
from mcim_hil.drivers.sja2 import Sja2
from mcim_hil.drivers.tpm import object_name
from mcim_hil.m2me.tre import (
    ACCESS_CREDENTIAL_HANDLE,
    ACCESS_METADATA_INDEX,
    MCIM_HANDLE,
    UNSEAL_AUTHORITY_HANDLE,
    create_unseal_authority,
    describe_access_credential,
)
from mcim_hil.network.access_credential import access_policy_digest
from mcim_hil.network.messages import AccessCredentialReplacementOffer
from mcim_hil.procedures import PROCEDURES, run_procedure
from mcim_hil.session import Session

RELAYED = pytest.mark.session_options(air="relayed")


@RELAYED
def test_manufacture_seals_the_pcid_credential_in_the_tre_apart_from_any_mcim(m2me: Session) -> None:
    s = m2me
    tpm = s.devices.tpm
    assert ACCESS_CREDENTIAL_HANDLE in tpm.list_persistent() and MCIM_HANDLE not in tpm.list_persistent()
    public = tpm.read_public(ACCESS_CREDENTIAL_HANDLE).publicArea
    # its own policy (the TRE's unseal authority + Unseal, any PCR state), no password use, fixed to this TPM
    assert bytes(public.authPolicy) == access_policy_digest(s.tre.unseal_authority_name())
    assert not public.objectAttributes & TPMA_OBJECT.USERWITHAUTH
    assert public.objectAttributes & TPMA_OBJECT.FIXEDTPM
    # neither a PCR policy nor a policy without the authority's value opens it: the TPM refuses
    with pytest.raises(TpmError):
        tpm.unseal_persistent(ACCESS_CREDENTIAL_HANDLE, s.tre.pcr_selection, salt=s.tre.keys().storage_key)
    with pytest.raises(TpmError):
        tpm.unseal_persistent(ACCESS_CREDENTIAL_HANDLE, (), salt=s.tre.keys().storage_key)
    credential = s.tre.access_credential()
    keys = Sja2(s.devices.uicc).read_keys(adm1=s.bench.uicc.adm1.resolve_key()).usim
    assert credential.pcid == s.m2me.pcid == s.m2me.identity_on_card()
    assert keys.k == credential.k and keys.op_opc == credential.opc
    assert 729 < credential.lifetime_left(time.time()) / 86400 <= 730    # the CCIF's two years
    assert credential.k.hex() not in repr(credential) and credential.opc.hex() not in repr(credential)


@RELAYED
def test_bench_check_says_where_the_credential_lives(m2me: Session) -> None:
    credential = m2me.tre.access_credential()
    m2me.tre.release()   # as in bench check: no session keys loaded (swtpm has 3 object slots)
    rows = dict(_describe("tpm", m2me.devices, None))
    line = rows["initial-access credential"]
    # bench check holds no authority value: it says where the credential lives and to what it is
    # sealed (issue 9), and its PCID and lifetime left from the TRE's NV copy (issue 7 §1), never its keys
    assert f"persistent 0x{ACCESS_CREDENTIAL_HANDLE:08x}" in line
    assert f"sealed to the TRE's unseal authority 0x{UNSEAL_AUTHORITY_HANDLE:08x}" in line
    assert f"PCID {credential.pcid}, 730 days left" in line
    assert credential.k.hex() not in line and credential.opc.hex() not in line
    tpm = m2me.devices.tpm
    expired = describe_access_credential(tpm, now=credential.not_after + 3 * DAY)
    assert expired.endswith(f"PCID {credential.pcid}, EXPIRED 3 days ago")
    # an index an older version never wrote, or in another format: one line, no traceback
    record = tpm.nv_read(ACCESS_METADATA_INDEX)
    try:
        tpm.nv_write(ACCESS_METADATA_INDEX, b"\x09" + record[1:])
        line = describe_access_credential(tpm)
        assert "\n" not in line and f"0x{ACCESS_METADATA_INDEX:08x}" in line and "another version" in line
        assert credential.pcid not in line
        tpm.nv_undefine(ACCESS_METADATA_INDEX)
        line = describe_access_credential(tpm)
        assert f"persistent 0x{ACCESS_CREDENTIAL_HANDLE:08x}" in line and "older version" in line
        assert "days" not in line
    finally:
        tpm.nv_define(ACCESS_METADATA_INDEX, len(record))
        tpm.nv_write(ACCESS_METADATA_INDEX, record)


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


# -- lifetime and renewal (5.1.3.8.4.3, last paragraphs), on a clock the tests move ---------------------

DAY = 86400.0


def move_clocks(s: Session, to: float) -> None:
    """The M2ME's, the CCIF's and the RO's ICF's idea of now."""
    s.m2me.clock = s.network.ccif.clock = s.network.ro.icf.clock = lambda: to


def test_the_networks_access_policy_is_the_one_the_tpm_computes(tpm) -> None:
    authority = create_unseal_authority(tpm, tpm.create_storage_key())
    try:
        name = object_name(tpm.read_public(authority.handle))
        assert access_policy_digest(name) == tpm.trial_unseal_policy(secret=authority)
    finally:
        tpm.evict(authority.handle)


@RELAYED
def test_a_credential_about_to_expire_is_renewed_during_the_change(m2me: Session) -> None:
    s = m2me
    seen: dict[str, object] = {}
    expires = s.tre.access_credential().not_after
    later = expires - 10 * DAY          # inside the 30-day margin

    def ten_days_left(s: Session) -> None:
        seen["old"] = s.tre.access_credential()
        seen["object"] = s.devices.tpm.read_public(ACCESS_CREDENTIAL_HANDLE).marshal()
        seen["checked"] = describe_access_credential(s.devices.tpm, now=later)
        move_clocks(s, later)

    def card_after_3(s: Session) -> None:
        seen["card"] = Sja2(s.devices.uicc).read_keys(adm1=s.bench.uicc.adm1.resolve_key()).usim

    outcome = run_procedure(PROCEDURES["pristine"].after_step(1, ten_days_left).after_step(3, card_after_3),
                            s, s.record)
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    assert "10 days left: renewed through the DPF" in outcome.rows[2].detail
    old, new = seen["old"], s.tre.access_credential()
    assert new.pcid == old.pcid and new.k != old.k and new.opc != old.opc
    assert round(new.lifetime_left(later) / DAY) == 730
    assert s.devices.tpm.read_public(ACCESS_CREDENTIAL_HANDLE).marshal() != seen["object"]
    # the NV copy a bench check reads was rewritten with the renewal
    assert str(seen["checked"]).endswith(f"PCID {old.pcid}, 10 days left")
    assert describe_access_credential(s.devices.tpm, now=later).endswith(f"PCID {new.pcid}, 730 days left")
    # step 3 wrote the renewed credential to the card, and steps 4-6 authenticated with it
    assert seen["card"].k == new.k and seen["card"].op_opc == new.opc
    two = [e for st in s.record.steps if st.number == 2 for e in st.events if e["type"] == "message"]
    kinds = [e["kind"] for e in two]
    assert "AccessCredentialRenewalRequest" in kinds and "AccessCredentialDelivery" in kinds
    delivery = next(e for e in two if e["kind"] == "AccessCredentialDelivery")
    assert delivery["fields"]["encryption_key"] == "<redacted>"


@RELAYED
def test_an_expired_credential_fails_the_pcid_attach_at_step_5(m2me: Session) -> None:
    s = m2me

    def expired(s: Session) -> None:
        move_clocks(s, s.tre.access_credential().not_after + DAY)

    outcome = run_procedure(PROCEDURES["pristine"].after_step(3, expired), s, s.record)
    assert outcome.failed_step is not None and outcome.failed_step.number == 5
    assert "initial-access credential expired on" in outcome.failed_step.detail
    assert {r.number: r.verdict for r in outcome.rows}[6] == "failed"   # no IP connectivity either


@RELAYED
def test_the_network_replaces_the_credential_and_the_pcid_attach_uses_the_new_one(m2me: Session) -> None:
    s = m2me
    first = s.tre.access_credential()
    outcome = run_procedure(PROCEDURES["renew-access-credential"], s, s.record)
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    new = s.tre.access_credential()
    assert new.pcid == first.pcid and new.k != first.k and new.not_after >= first.not_after
    assert s.m2me.identity_on_card() != s.m2me.pcid          # the MCIM stays in use meanwhile
    # going back to the PCID later: the card gets the new credential and the ICF authenticates it
    for st in s.record.steps:
        st.number = f"renew.{st.number}"
    pristine = PROCEDURES["pristine"]
    card: list = []

    def card_after_3(s: Session) -> None:
        card.append(Sja2(s.devices.uicc).read_keys(adm1=s.bench.uicc.adm1.resolve_key()).usim)

    outcome = run_procedure(replace(pristine, steps=pristine.steps[1:]).after_step(3, card_after_3), s, s.record)
    assert outcome.passed, [(r.number, r.detail) for r in outcome.rows if r.verdict != "passed"]
    assert card[0].k == new.k and card[0].op_opc == new.opc
    assert "RES == XRES" in outcome.rows[4].detail


@RELAYED
def test_a_replacement_offered_by_another_than_the_m2mes_dpf_is_refused(m2me: Session) -> None:
    s = m2me
    run_procedure(PROCEDURES["initial-ivf"], s, s.record)
    reply = s.network.bus.request(AccessCredentialReplacementOffer(sender="dpf.rogue.example", recipient=s.m2me.address,
                                                                   pcid=s.m2me.pcid))
    assert not reply.accepted and "not this M2ME's DPF" in reply.reason


# -- the margin from the bench file (m2me.access_renewal_margin_days, default 30) ----------------------

def _bench_with(tmp_path, extra: str):
    from pathlib import Path
    lab = Path(__file__).resolve().parent.parent / "lab_config"
    text = (lab / "emulated.yaml").read_text().replace("emulated-secrets/", f"{lab}/emulated-secrets/")
    path = tmp_path / "bench.yaml"
    path.write_text(text + extra)
    return path


def test_the_renewal_margin_is_a_bench_file_key(tmp_path) -> None:
    from mcim_hil.bench import BenchFileError, load_bench
    assert load_bench(_bench_with(tmp_path, "")).m2me.access_renewal_margin_days == 30
    bench = load_bench(_bench_with(tmp_path, "m2me:\n  access_renewal_margin_days: 800\n"))
    assert bench.m2me.access_renewal_margin_days == 800
    with pytest.raises(BenchFileError, match="m2me.access_renewal_margin_days: must be 0 or more days"):
        load_bench(_bench_with(tmp_path, "m2me:\n  access_renewal_margin_days: -1\n"))


def test_a_margin_wider_than_the_lifetime_renews_at_step_2_of_a_run(tmp_path) -> None:
    # a fresh credential has 730 days left: with an 800-day margin the change renews it at step 2
    import json

    from mcim_hil.cli import main
    bench = _bench_with(tmp_path, "m2me:\n  access_renewal_margin_days: 800\n")
    out = tmp_path / "out"
    code = main(["run", "--bench", str(bench), "--procedure", "pristine", "--air", "relayed", "--out", str(out)])
    run = json.loads((out / "run.json").read_text())
    step2 = [s for s in run["steps"] if s["number"] == 2][-1]
    assert code == 0, [(s["number"], s["detail"]) for s in run["steps"] if s["verdict"] != "passed"]
    assert "initial-access credential had 730 days left: renewed through the DPF" in step2["detail"]


# -- seed 000 step 3 judges the AVs the ICF actually generated (issue 7 §7) ---------------------------

def _icf_answers(s: Session, make) -> None:
    """A defective ICF, scripted: it answers every AuthDataRequest with ``make(msg)``."""
    from mcim_hil.network.messages import AuthDataRequest
    s.network.ro.icf.on(AuthDataRequest, make)


@RELAYED
@pytest.mark.parametrize("answer", ["empty AuthDataResponse", "AuthDataReject"])
def test_step_3_fails_when_the_icf_generated_no_av(m2me: Session, answer: str) -> None:
    from mcim_hil.network.messages import AuthDataReject, AuthDataResponse
    s = m2me
    icf = s.network.ro.icf.address
    if answer == "AuthDataReject":
        _icf_answers(s, lambda msg: AuthDataReject(sender=icf, recipient=msg.sender, imsi=msg.imsi,
                                                   reason="no temporary-access credential for this PCID"))
        why = "the ICF generated no AV: no temporary-access credential for this PCID"
    else:
        _icf_answers(s, lambda msg: AuthDataResponse(sender=icf, recipient=msg.sender, imsi=msg.imsi, avs=()))
        why = "the ICF answered with no AV for the PCID (an empty AuthDataResponse)"
    outcome = run_procedure(PROCEDURES["initial"], s, s.record)
    assert outcome.failed_step is not None and outcome.failed_step.number == 3
    assert why in outcome.failed_step.detail
    assert s.m2me.attached_as is None and s.m2me.installed is None


@RELAYED
def test_step_3_counts_the_avs_the_icf_generated(m2me: Session) -> None:
    s = m2me
    outcome = run_procedure(PROCEDURES["initial"], s, s.record)
    assert outcome.passed
    assert outcome.rows[2].number == 3 and outcome.rows[2].detail.endswith("generated 1 AV")


def test_the_network_wraps_a_credential_only_for_a_storage_key_and_an_unseal_authority() -> None:
    """seal_for_tre (the DPF): a restricted decryption parent, whole; an unseal authority to name."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from tpm2_pytss.types import TPM2B_PUBLIC, TPMT_SYM_DEF_OBJECT, TPMU_SYM_KEY_BITS, TPMU_SYM_MODE
    from tpm2_pytss.constants import TPM2_ALG

    from mcim_hil.network.access_credential import AccessCredential, seal_for_tre
    from mcim_hil.network.attestation import parse_public, tpm_name
    from mcim_hil.network.mcim import McimError

    def public(attributes: int) -> bytes:
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        aes = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits=TPMU_SYM_KEY_BITS(aes=128),
                                  mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB))
        return TPM2B_PUBLIC.from_pem(pem, objectAttributes=attributes, symmetric=aes).marshal()

    credential = AccessCredential("001020000000001", bytes(16), bytes(16), b"\x80\x00", 2e9)
    parent = public(TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT)
    authority = public(TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.SIGN_ENCRYPT)   # any public area has a name
    sealed = seal_for_tre(credential, parent, authority)
    assert parse_public(sealed.public).auth_policy == sealed.policy_digest == access_policy_digest(tpm_name(authority))
    assert sealed.storage_key_name == tpm_name(parent)
    with pytest.raises(McimError, match="no unseal authority"):
        seal_for_tre(credential, parent, b"")
    for bad in (parent + b"\0", public(TPMA_OBJECT.DECRYPT), public(TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT)):
        with pytest.raises(McimError, match="restricted decryption key"):
            seal_for_tre(credential, bad, authority)
